//! Policies that answer with well-formed values, each legal on its face,
//! that would make a follower claim an index for a set the leader never had
//! (built from `guest/` with the `hostile-*-flip` and `hostile-claim-*`
//! features; see `guest/src/component.rs`). Each runs as a real follower's
//! policy against a real leader on loopback, and must be contained: its bad
//! answers are refused against the host's own facts, the built-in policy
//! decides instead, and the follower ends ready with the leader's regions.
//! Also here: a component that fails every ordinary call is refused at load,
//! and one that keeps failing is rolled back on its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{
    LoadError, PolicyRuntime, PolicySource, RingView, RollbackRule, RouteAction, RouteCause,
    SyncRequest, WasmRuntime,
};
use regionsync::role::{RunningFollower, RunningLeader};
use regionsync_harness::cluster::{bumped, feed, leader_config, regions};
use regionsync_harness::cluster::{converged, follower_config};
use regionsync_tests::fixture;

fn runtime_with(stem: &str) -> Arc<PolicyRuntime> {
    let wasm = WasmRuntime::new(WasmConfig::default()).unwrap();
    Arc::new(PolicyRuntime::new(wasm, PolicySource::File(fixture(stem))).unwrap())
}

fn policy_named(name: &'static str) -> Arc<PolicyRuntime> {
    let wasm = WasmRuntime::new(WasmConfig::default()).unwrap();
    Arc::new(PolicyRuntime::new(wasm, PolicySource::Builtin(name)).unwrap())
}

async fn follower_with(
    policy: Arc<PolicyRuntime>,
    config: regionsync::follower::FollowerConfig,
) -> RunningFollower {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningFollower::start(config, policy, listener)
        .await
        .unwrap()
}

/// The fixtures misbehave from this index on.
const HOSTILE_FROM: u64 = regionsync_hostile_policies::FROM;

/// Run `stem` as a durable follower's policy. `live`: the follower syncs
/// first and the leader passes the fixture's index while it streams (with
/// keepalives, i.e. empty frames, between); otherwise the leader is past it
/// before the follower's full sync starts.
async fn contained(stem: &str, live: bool) {
    let ldir = tempfile::tempdir().unwrap();
    let fdir = tempfile::tempdir().unwrap();
    let mut lc = leader_config(ldir.path());
    lc.keepalive = Duration::from_millis(100);
    // The conservative leader sends a full sync in several frames.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader = RunningLeader::start(lc, policy_named("conservative"), listener)
        .await
        .unwrap();
    let rs = regions(1, 1_200, 8);
    feed(&leader, &rs).await;
    let policy = runtime_with(stem);
    let mut fc = follower_config(&leader, Some(fdir.path()));
    fc.keepalive = Duration::from_millis(100);
    let follower = if live {
        let f = follower_with(policy.clone(), fc).await;
        converged(&leader, &f).await;
        for v in 2..=3 {
            feed(&leader, &bumped(&rs, v)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        f
    } else {
        feed(&leader, &bumped(&rs, 2)).await;
        follower_with(policy.clone(), fc).await
    };
    assert!(leader.shared().held(None).next_index > HOSTILE_FROM + 100);
    converged(&leader, &follower).await;
    let stats = policy.stats();
    let (errors, builtin) = (
        stats.errors.load(Ordering::Relaxed),
        stats.builtin_answers.load(Ordering::Relaxed),
    );
    assert!(errors > 0, "{stem}: the fixture never misbehaved");
    assert_eq!(
        builtin, errors,
        "{stem}: each refused answer was the built-in policy's"
    );
    // And the store on disk holds the same after a restart.
    let held = leader.shared().held(None);
    let (lead_digest, lead_next) = (held.digest.hex(), held.next_index);
    follower.shutdown().await;
    let mut fc = follower_config(&leader, Some(fdir.path()));
    fc.leader = "http://127.0.0.1:1".into(); // nowhere: the store alone
    let again = follower_with(regionsync_harness::cluster::policy(), fc).await;
    let st = again.shared().status();
    assert_eq!(
        (st.digest, st.next_index),
        (lead_digest, lead_next),
        "{stem}"
    );
    again.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_phase_flipped_on_a_live_stream_is_contained() {
    contained("hostile_snapshot_flip", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_phase_flipped_on_a_live_stream_is_contained() {
    contained("hostile_delta_flip", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_declared_mid_snapshot_without_a_claim_is_contained() {
    contained("hostile_complete_flip", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_claimed_at_another_index_is_contained() {
    contained("hostile_claim_elsewhere", false).await;
}

#[test]
fn a_component_whose_plan_send_always_traps_is_refused_at_load() {
    let rt = PolicyRuntime::with_default().unwrap();
    let err = rt
        .swap(PolicySource::File(fixture("hostile_plan_send")))
        .unwrap_err();
    let text = regionsync::error_chain(&err);
    assert!(matches!(err, LoadError::SelfCheck { .. }), "{text}");
    assert!(
        text.contains("plan-send") && text.contains("trapped"),
        "{text}"
    );
    assert_eq!(rt.info().name, "default");
}

/// Any index: the trap fixture fails every request from a follower that can
/// take a delta.
const TRIGGER: u64 = 0xDEAD_BEEF;

#[test]
fn a_failed_call_is_answered_by_the_builtin_policy_and_a_failing_policy_rolls_back() {
    let wasm = WasmRuntime::new(WasmConfig::default()).unwrap();
    let rt = PolicyRuntime::new(wasm, PolicySource::Builtin("conservative"))
        .unwrap()
        .with_rollback(RollbackRule {
            failures: 3,
            window: Duration::from_secs(60),
        });
    rt.swap(PolicySource::File(fixture("hostile_trap")))
        .unwrap();
    // A ring that holds the trigger: the built-in answer is a replay, so it
    // is the built-in policy's decision, not a blanket full sync.
    let ring = RingView {
        first_index: TRIGGER - 10,
        next_index: TRIGGER + 10,
        capacity: 100,
        delta_floor: 1,
    };
    let request = SyncRequest {
        start_index: TRIGGER,
        can_delta: true,
        must_delta: false,
    };
    for n in 1..=2 {
        let routed = rt.route_request(request, ring);
        assert_eq!(routed.action, RouteAction::History(TRIGGER));
        assert_eq!(routed.cause, RouteCause::Fallback);
        assert_eq!(rt.stats().builtin_answers.load(Ordering::Relaxed), n);
        assert_ne!(rt.info().name, "conservative", "not rolled back yet");
    }
    assert_eq!(rt.stats().rollbacks.load(Ordering::Relaxed), 0);
    assert!(rt.last_rollback().is_none());
    rt.route_request(request, ring);
    assert_eq!(rt.stats().rollbacks.load(Ordering::Relaxed), 1);
    assert_eq!(
        rt.info().name,
        "conservative",
        "back to the previous policy"
    );
    let said = rt.last_rollback().unwrap();
    assert!(said.contains("rolled back to conservative"), "{said}");
    // Status shows it.
    let shown = regionsync::status::PolicyStatus::of(&rt);
    assert_eq!((shown.rollbacks, shown.builtin_answers), (1, 3));
    assert_eq!(shown.last_rollback.as_deref(), Some(said.as_str()));
    // The previous policy answers the same request itself now.
    let routed = rt.route_request(request, ring);
    assert!(matches!(routed.cause, RouteCause::Policy(_)), "{routed:?}");
}

/// `regionsync policy check` catches every fixture, each with a message that
/// names the reason (and, for the on-frame fixtures, the case).
#[test]
fn policy_check_fails_every_hostile_fixture_and_names_the_reason() {
    let cases = [
        ("hostile_loop", "exceeded its budget"),
        ("hostile_memory", "exceeded its memory limit"),
        ("hostile_trap", "trapped"),
        ("hostile_plan_send", "plan-send"),
        ("hostile_snapshot_flip", "breaks the contract"),
        ("hostile_delta_flip", "breaks the contract"),
        ("hostile_complete_flip", "made complete without a claim"),
        ("hostile_claim_elsewhere", "claims index"),
        (
            "other_contract",
            "built against regionsync:policy@0.3.0, but this host speaks regionsync:policy@0.2.0",
        ),
    ];
    for (stem, why) in cases {
        let out = std::process::Command::new(regionsync_tests::regionsync_bin())
            .args(["policy", "check"])
            .arg(fixture(stem))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stem} passed the check:\n{said}");
        assert_eq!(err.trim().lines().count(), 1, "{stem}: {err}");
        assert!(
            err.contains("failed the check") && err.contains(why),
            "{stem}: wanted {why:?} in {err}"
        );
        assert!(said.contains("VIOLATION"), "{stem}: {said}");
    }
}
