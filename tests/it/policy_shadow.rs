//! Shadow mode through the real runtime and real components: a candidate is
//! asked every decision the node takes and compared, never acted on, and a
//! candidate that traps or loops costs the live path nothing.

use std::time::{Duration, Instant};

use regionsync::policy_runtime::shadow::{QUEUE, ShadowStatus};
use regionsync::policy_runtime::{
    LoadError, PolicyRuntime, PolicySource, RingView, RouteAction, SyncRequest, WasmRuntime,
    builtin,
};
use regionsync_harness::eventually::eventually_blocking;
use regionsync_tests::fixture;

const RING: RingView = RingView {
    first_index: 100,
    next_index: 200,
    capacity: 1_000,
    delta_floor: 1,
};

fn request(start_index: u64, can_delta: bool) -> SyncRequest {
    SyncRequest {
        start_index,
        can_delta,
        must_delta: false,
    }
}

fn runtime() -> PolicyRuntime {
    PolicyRuntime::new(
        WasmRuntime::new(Default::default()).unwrap(),
        PolicySource::Builtin("default"),
    )
    .unwrap()
}

/// The shadow's tallies once `done` holds (its thread runs behind).
fn settled(rt: &PolicyRuntime, done: impl Fn(&ShadowStatus) -> bool) -> ShadowStatus {
    eventually_blocking("the shadow to settle", Duration::from_secs(30), || {
        done(&rt.shadow_status().expect("a shadow runs"))
    });
    rt.shadow_status().expect("a shadow runs")
}

#[test]
fn a_shadow_counts_disagreements_by_function_with_examples_and_promote_makes_it_active() {
    let rt = runtime();
    assert!(matches!(rt.promote(), Err(LoadError::NoShadow)));
    let info = rt.start_shadow(builtin::CONSERVATIVE.to_vec()).unwrap();
    assert_eq!(info.name, "conservative");
    // In the ring: default replays, conservative would refuse the gap.
    for _ in 0..10 {
        let routed = rt.route_request(request(150, false), RING);
        assert_eq!(
            routed.action,
            RouteAction::History(150),
            "live stays default's"
        );
    }
    // Up to date: both agree.
    for _ in 0..5 {
        rt.route_request(request(200, false), RING);
    }
    rt.admit_full_sync(2); // default admits 4, conservative 1
    let s = settled(&rt, |s| {
        let r = s.by_function["route-request"];
        r.same + r.differ == 15 && s.by_function["admit-full-sync"].differ == 1
    });
    let r = s.by_function["route-request"];
    assert_eq!((r.same, r.differ, r.failed), (5, 10, 0));
    let first = s
        .examples
        .iter()
        .find(|e| e.function == "route-request")
        .unwrap();
    assert_eq!(first.live["reason"], "in-ring");
    assert_eq!(first.candidate["reason"], "gap-refused");
    assert_eq!(first.candidate["action"]["tag"], "full-sync");
    // Examples are bounded per function.
    assert!(s.examples.len() <= 2 * regionsync::policy_runtime::shadow::EXAMPLES);
    // Metrics show the same counts.
    let mut m = regionsync::metrics::Metrics::default();
    m.policy(&rt);
    let text = m.render();
    assert!(
        text.contains(
            "regionsync_policy_shadow_decisions_total{candidate=\"conservative\",function=\"route-request\",outcome=\"differ\"} 10"
        ),
        "{text}"
    );
    // Promote: the candidate is active, the shadow gone.
    let (old, new) = rt.promote().unwrap();
    assert_eq!(
        (old.name.as_str(), new.name.as_str()),
        ("default", "conservative")
    );
    assert!(rt.shadow_status().is_none());
    assert_eq!(
        rt.route_request(request(150, false), RING).action,
        RouteAction::FullSync
    );
}

#[test]
fn a_trapping_shadow_never_changes_a_live_decision() {
    let rt = runtime();
    rt.start_shadow(std::fs::read(fixture("hostile_trap")).unwrap())
        .unwrap();
    for start in [150, 199, 120] {
        // The fixture traps on these (a follower that takes deltas).
        let routed = rt.route_request(request(start, true), RING);
        assert_eq!(routed.action, RouteAction::History(start));
    }
    let s = settled(&rt, |s| s.by_function["route-request"].failed == 3);
    assert_eq!(s.by_function["route-request"].differ, 0);
    let example = &s.examples[0];
    assert!(
        example.candidate["error"]
            .as_str()
            .unwrap()
            .contains("trapped"),
        "{example:?}"
    );
    let live = rt.stats();
    assert_eq!(
        live.errors.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the live policy never failed"
    );
    assert_eq!(rt.stop_shadow().unwrap().name, "hostile-trap");
    assert!(rt.stop_shadow().is_none());
}

#[test]
fn a_looping_shadow_costs_the_live_path_nothing_and_what_it_cannot_take_is_skipped() {
    let rt = runtime();
    rt.start_shadow(std::fs::read(fixture("hostile_loop")).unwrap())
        .unwrap();
    // Each call sets the candidate spinning to its deadline; the live path
    // only enqueues. More calls than the queue holds: the rest are skipped.
    let calls = QUEUE as u64 + 1_000;
    let started = Instant::now();
    for _ in 0..calls {
        let routed = rt.route_request(request(150, true), RING);
        assert_eq!(routed.action, RouteAction::History(150));
    }
    let took = started.elapsed();
    let s = rt.shadow_status().unwrap();
    assert!(s.skipped > 0, "{s:?}");
    // Each candidate call runs to its deadline (milliseconds); had one sat
    // on the live path, these calls would have taken minutes.
    assert!(
        took < Duration::from_secs(10),
        "{calls} live calls took {took:?} with a looping shadow"
    );
    let s = settled(&rt, |s| s.by_function["route-request"].failed >= 1);
    assert!(
        s.examples[0].candidate["error"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{s:?}"
    );
    rt.stop_shadow();
}

#[test]
fn a_shadow_must_pass_the_checks_of_a_swap() {
    let rt = runtime();
    let err = rt
        .start_shadow(std::fs::read(fixture("hostile_plan_send")).unwrap())
        .unwrap_err();
    assert!(matches!(err, LoadError::SelfCheck { .. }), "{err}");
    let err = rt
        .start_shadow(std::fs::read(fixture("other_contract")).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("regionsync:policy@0.3.0"), "{err}");
    assert!(rt.shadow_status().is_none());
}
