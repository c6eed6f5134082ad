//! A policy component is untrusted code. These tests load real components
//! that misbehave (built from `tests/fixtures/hostile-policies`, or
//! written as component text) and check that the host contains each one and
//! keeps answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regionsync::policy_runtime::wasm::{WasmConfig, contract_export};
use regionsync::policy_runtime::{
    LoadError, PolicyEngine, PolicyError, PolicyRuntime, PolicySource, RingView, RouteAction,
    RouteCause, RouteReason, SyncRequest, WasmRuntime, builtin,
};
use regionsync_tests::fixture;

/// What sets the loop, memory and trap fixtures off: a request from a
/// follower that can take a delta, which the swap's self-check never asks.
const TRIGGER: SyncRequest = SyncRequest {
    start_index: 150,
    can_delta: true,
    must_delta: false,
};
/// A request from a follower that announced nothing.
fn at(start_index: u64) -> SyncRequest {
    SyncRequest {
        start_index,
        can_delta: false,
        must_delta: false,
    }
}

const RING: RingView = RingView {
    delta_floor: 1,
    first_index: 100,
    next_index: 200,
    capacity: 100,
};

fn runtime() -> WasmRuntime {
    WasmRuntime::new(WasmConfig {
        memory_limit: 8 << 20,
        ..Default::default()
    })
    .unwrap()
}

/// The component still answers ordinary calls after the failure.
fn still_answers(policy: &dyn PolicyEngine) {
    let r = policy
        .route_request(at(150), RING)
        .expect("answers after a failure");
    assert_eq!(r.action, RouteAction::History(150));
    assert_eq!(policy.backoff(0, 1).unwrap(), policy.backoff(0, 1).unwrap());
}

#[test]
fn built_components_import_nothing() {
    let rt = runtime();
    for bytes in [builtin::DEFAULT, builtin::CONSERVATIVE] {
        // `load` refuses any import; check the raw type as well.
        rt.load(bytes).unwrap();
    }
    let engine = wasmtime::Engine::default();
    for bytes in [builtin::DEFAULT, builtin::CONSERVATIVE] {
        let c = wasmtime::component::Component::new(&engine, bytes).unwrap();
        let ty = c.component_type();
        let imports: Vec<_> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        assert!(imports.is_empty(), "component imports {imports:?}");
        let exports: Vec<_> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        assert_eq!(exports, vec![contract_export()]);
    }
    println!(
        "default component: {} bytes, conservative: {} bytes",
        builtin::DEFAULT.len(),
        builtin::CONSERVATIVE.len()
    );
}

#[test]
fn an_endless_loop_is_stopped_by_the_deadline() {
    let rt = runtime();
    let policy = rt.load_file(&fixture("hostile_loop")).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let err = policy.route_request(TRIGGER, RING).unwrap_err();
        let took = t.elapsed();
        println!("endless loop stopped after {took:?}: {err}");
        assert!(
            matches!(err, PolicyError::Fuel(_) | PolicyError::Deadline(_)),
            "{err:?}"
        );
        // Judged by the error's kind; the bound only tells a stop from a
        // hang on a busy machine.
        assert!(took < Duration::from_secs(5), "stopped only after {took:?}");
        still_answers(&policy);
    }
}

#[test]
fn the_wall_clock_deadline_stops_a_loop_when_fuel_would_not() {
    let rt = WasmRuntime::new(WasmConfig {
        fuel: u64::MAX,
        deadline: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let policy = rt.load_file(&fixture("hostile_loop")).unwrap();
    let t = Instant::now();
    let err = policy.route_request(TRIGGER, RING).unwrap_err();
    let took = t.elapsed();
    println!("endless loop with unlimited fuel stopped after {took:?}: {err}");
    assert_eq!(err, PolicyError::Deadline(Duration::from_millis(10)));
    assert!(took < Duration::from_secs(5), "stopped only after {took:?}");
    still_answers(&policy);
}

#[test]
fn unbounded_memory_growth_is_stopped_at_the_limit() {
    let rt = runtime();
    let policy = rt.load_file(&fixture("hostile_memory")).unwrap();
    let err = policy.route_request(TRIGGER, RING).unwrap_err();
    assert_eq!(err, PolicyError::Memory(8 << 20));
    still_answers(&policy);
}

#[test]
fn a_trap_is_an_error_not_a_panic() {
    let rt = runtime();
    let policy = rt.load_file(&fixture("hostile_trap")).unwrap();
    let err = policy.route_request(TRIGGER, RING).unwrap_err();
    assert!(matches!(err, PolicyError::Trap(_)), "{err:?}");
    still_answers(&policy);
}

#[test]
fn the_runtime_falls_back_to_the_builtin_answer_and_counts_it() {
    let runtime =
        PolicyRuntime::new(runtime(), PolicySource::File(fixture("hostile_trap"))).unwrap();
    let routed = runtime.route_request(TRIGGER, RING);
    assert_eq!(routed.cause, RouteCause::Fallback);
    // The built-in default's answer: a replay from the ring.
    assert_eq!(routed.action, RouteAction::History(TRIGGER.start_index));
    assert_eq!(routed.cause.as_str(), "policy_fallback");
    assert_eq!(runtime.stats().fallbacks.load(Ordering::Relaxed), 1);
    let routed = runtime.route_request(at(150), RING);
    assert_eq!(routed.cause, RouteCause::Policy(RouteReason::InRing));
}

/// A component built against the previous contract, 0.1.0.
const OTHER_VERSION: &str = r#"
(component
  (core module $m (func (export "describe") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $describe (result u32) (canon lift (core func $i "describe")))
  (instance $decisions (export "describe" (func $describe)))
  (export "regionsync:policy/decisions@0.1.0" (instance $decisions))
)
"#;

#[test]
fn a_component_of_another_contract_version_is_refused_naming_both() {
    let bytes = wat::parse_str(OTHER_VERSION).unwrap();
    let err = runtime().load(&bytes).err().expect("refused");
    assert!(
        matches!(&err, LoadError::ContractVersion { theirs, ours } if theirs == "0.1.0" && *ours == "0.2.0"),
        "{err}"
    );
    let said = err.to_string();
    assert!(said.contains("regionsync:policy@0.1.0"), "{said}");
    assert!(said.contains("regionsync:policy@0.2.0"), "{said}");
}

#[test]
fn garbage_and_core_modules_are_refused_with_a_clear_error() {
    let rt = runtime();
    let err = rt.load(b"definitely not wasm").err().unwrap();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
    assert!(
        err.to_string()
            .contains("not a valid WebAssembly component")
    );
    let core = wat::parse_str("(module)").unwrap();
    let err = rt.load(&core).err().unwrap();
    assert!(
        matches!(&err, LoadError::NotAComponent(why) if why.contains("core module")),
        "{err}"
    );
    let importer =
        wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#).unwrap();
    let err = rt.load(&importer).err().unwrap();
    assert!(
        matches!(&err, LoadError::Imports(names) if names == &["wasi:cli/environment@0.2.0"]),
        "{err}"
    );
    assert!(err.to_string().contains("must import nothing"));
}

#[test]
fn swap_changes_behaviour_and_a_refused_swap_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let conservative = dir.path().join("conservative.wasm");
    std::fs::write(&conservative, builtin::CONSERVATIVE).unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, wat::parse_str(OTHER_VERSION).unwrap()).unwrap();

    let rt = PolicyRuntime::new(runtime(), PolicySource::Builtin("default")).unwrap();
    assert_eq!(
        rt.route_request(at(150), RING).action,
        RouteAction::History(150)
    );

    let (old, new) = rt.swap_file(&conservative).unwrap();
    assert_eq!(
        (old.name.as_str(), new.name.as_str()),
        ("default", "conservative")
    );
    let r = rt.route_request(at(150), RING);
    assert_eq!(
        (r.action, r.cause),
        (
            RouteAction::FullSync,
            RouteCause::Policy(RouteReason::GapRefused)
        )
    );

    let err = rt.swap_file(&bad).unwrap_err();
    assert!(
        matches!(&err, LoadError::File { source, .. }
            if matches!(**source, LoadError::ContractVersion { .. })),
        "{err}"
    );
    assert!(regionsync::error_chain(&err).contains("0.1.0"), "{err}");
    assert_eq!(rt.info().name, "conservative");
    assert_eq!(rt.stats().failed_swaps.load(Ordering::Relaxed), 1);

    // A hostile component passes load (it misbehaves only on its trigger)
    // but must pass the self-check too; a missing file is refused.
    let err = rt.swap_file(&dir.path().join("missing.wasm")).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    assert!(err.to_string().contains("cannot read policy file"), "{err}");
    assert_eq!(rt.info().name, "conservative");
}

#[test]
fn calls_in_flight_during_swaps_never_fail() {
    let rt = Arc::new(PolicyRuntime::new(runtime(), PolicySource::Builtin("default")).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop) = (rt.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = rt.route_request(at(150), RING);
                    assert_ne!(r.cause, RouteCause::Fallback);
                    assert!(matches!(
                        r.action,
                        RouteAction::History(150) | RouteAction::FullSync
                    ));
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    for i in 0..20 {
        let name = if i % 2 == 0 {
            "conservative"
        } else {
            "default"
        };
        rt.swap(PolicySource::Builtin(name)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(calls > 0);
    assert_eq!(rt.stats().errors.load(Ordering::Relaxed), 0);
    assert_eq!(rt.stats().swaps.load(Ordering::Relaxed), 20);
}

#[test]
fn compiled_components_are_cached_in_memory_and_on_disk() {
    use regionsync::policy_runtime::cache::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    let config = WasmConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let rt = WasmRuntime::new(config.clone()).unwrap();
    assert_eq!(
        rt.load_traced(builtin::DEFAULT).unwrap().1,
        CacheOutcome::Compiled
    );
    assert_eq!(
        rt.load_traced(builtin::DEFAULT).unwrap().1,
        CacheOutcome::Memory
    );
    let fresh = WasmRuntime::new(config).unwrap();
    assert_eq!(
        fresh.load_traced(builtin::DEFAULT).unwrap().1,
        CacheOutcome::Disk
    );
    // A corrupted artefact is recompiled, never loaded.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut data = std::fs::read(&path).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xFF;
        std::fs::write(&path, data).unwrap();
    }
    let fresh = WasmRuntime::new(WasmConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let (policy, outcome) = fresh.load_traced(builtin::DEFAULT).unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(
        policy.route_request(at(150), RING).unwrap().action,
        RouteAction::History(150)
    );
}
