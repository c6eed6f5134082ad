//! A node compiles policy components in a child process of its own binary
//! (`policy_runtime::compiler`): the real `regionsync` executable is the
//! child here, and the artefact it hands back must load, answer like one
//! compiled in process, and be what an in-process engine with the same
//! settings reads from the cache.

use std::path::PathBuf;

use regionsync::policy_runtime::cache::CacheOutcome;
use regionsync::policy_runtime::compiler::CompileIn;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{
    LoadError, NativePolicy, PolicyEngine, RingView, SyncRequest, WasmRuntime, builtin,
};

const RING: RingView = RingView {
    delta_floor: 1,
    first_index: 100,
    next_index: 200,
    capacity: 100,
};

/// Requests from before, inside and after the ring, with and without delta.
fn requests() -> impl Iterator<Item = SyncRequest> {
    [0, 99, 100, 150, 199, 200, 250]
        .into_iter()
        .flat_map(|start_index| {
            [false, true].map(|can_delta| SyncRequest {
                start_index,
                can_delta,
                must_delta: false,
            })
        })
}

/// The built-in policy `name` loads from where `outcome` says, and routes
/// every request as the same policy linked natively does.
fn loads_and_answers(rt: &WasmRuntime, name: &str, outcome: CacheOutcome) {
    let (policy, from) = rt.load_traced(builtin::by_name(name).unwrap()).unwrap();
    assert_eq!(from, outcome);
    assert_eq!(policy.info().name, name);
    let native = NativePolicy::by_name(name).unwrap();
    for request in requests() {
        assert_eq!(
            policy.route_request(request, RING).unwrap(),
            native.route_request(request, RING).unwrap(),
            "{name} on {request:?}"
        );
    }
}

fn child() -> CompileIn {
    CompileIn::Child(PathBuf::from(env!("CARGO_BIN_EXE_regionsync")))
}

fn runtime(compile_in: CompileIn, cache: &std::path::Path) -> WasmRuntime {
    WasmRuntime::new(WasmConfig {
        cache_dir: Some(cache.to_path_buf()),
        compile_in,
        ..Default::default()
    })
    .unwrap()
}

fn artefacts(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_component_compiled_in_a_child_answers_and_its_artefact_is_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(child(), dir.path());
    loads_and_answers(&rt, "conservative", CacheOutcome::Compiled);
    assert_eq!(artefacts(dir.path()), 1, "the artefact is cached on disk");
    // An engine in this process, with the node's settings, takes the
    // child's artefact as its own.
    let here = runtime(CompileIn::Process, dir.path());
    loads_and_answers(&here, "conservative", CacheOutcome::Disk);
}

#[test]
fn a_component_the_child_cannot_compile_is_refused_with_the_compilers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(child(), dir.path());
    // A component header, then bytes that are no section at all.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend_from_slice(&[0xFF; 64]);
    let refusal = |rt: &WasmRuntime| match rt.load(&bytes) {
        Err(LoadError::NotAComponent(reason)) => reason,
        Err(other) => panic!("expected the compiler's refusal, got {other}"),
        Ok(_) => panic!("a broken component loaded"),
    };
    // The compiler's own words, as the same compile in process gives them.
    let here = tempfile::tempdir().unwrap();
    let reason = refusal(&rt);
    assert!(!reason.is_empty());
    assert_eq!(reason, refusal(&runtime(CompileIn::Process, here.path())));
    assert_eq!(artefacts(dir.path()), 0, "nothing is cached for it");
}

#[test]
fn a_compiler_executable_that_cannot_run_leaves_the_compile_to_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(
        CompileIn::Child(dir.path().join("no-such-regionsync")),
        dir.path(),
    );
    loads_and_answers(&rt, "default", CacheOutcome::Compiled);
}

#[test]
fn a_node_process_on_a_fresh_data_directory_compiles_its_policy_in_a_child() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut leader = Command::new(env!("CARGO_BIN_EXE_regionsync"))
        .args([
            "leader",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cache = dir.path().join("policy-cache");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while artefacts(&cache) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compiled policy appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Its log is complete once it has stopped.
    leader.kill().unwrap();
    leader.wait().unwrap();
    let mut log = String::new();
    leader
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        !log.contains("instead of a child"),
        "the node compiled in process: {log}"
    );
    assert_eq!(artefacts(&cache), 1);
}
