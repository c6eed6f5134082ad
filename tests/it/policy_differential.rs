//! The Wasm component and the natively linked guest library must take the
//! same decision for every input: they are one implementation, and this test
//! is what keeps the WIT conversions and the component build honest.

use regionsync::policy_runtime::{
    AnnouncedSync, CatchUpView, DigestCheck, FollowerPhase, FollowerState, FrameHeader,
    NativePolicy, PolicyEngine, RingView, StreamPhase, StreamView, SyncRequest, WasmRuntime,
    builtin,
};
use regionsync_tests::Rng;

const CASES: u64 = 10_000;

fn ring(rng: &mut Rng) -> RingView {
    let first = rng.near(&[0, 1, 100, 10_000]);
    let next = first.saturating_add(rng.near(&[0, 1, 999, 1_000, 1_001, 10_000]));
    RingView {
        first_index: first,
        next_index: next,
        capacity: rng.near(&[1, 10, 10_000, 80_000]),
        delta_floor: rng.near(&[0, 1, first]),
    }
}

fn follower_state(rng: &mut Rng) -> FollowerState {
    let phase = match rng.below(4) {
        0 => FollowerPhase::Awaiting,
        1 => FollowerPhase::Snapshot,
        2 => FollowerPhase::Delta,
        _ => FollowerPhase::Streaming,
    };
    FollowerState {
        phase,
        next_index: rng.near(&[0, 1, 500, u64::MAX]),
        snapshot_regions: rng.near(&[0, 1_000, u64::MAX]),
        complete: rng.bool(),
        ready: rng.bool(),
        force_full_sync: rng.below(4) == 0,
        resumable: rng.bool(),
    }
}

fn compare(name: &str, seed: u64) {
    let native = NativePolicy::by_name(name).unwrap();
    let wasm = WasmRuntime::new(Default::default())
        .unwrap()
        .load(builtin::by_name(name).unwrap())
        .unwrap();
    assert_eq!(native.info(), wasm.info());
    assert_eq!(native.limits(), wasm.limits());

    let mut rng = Rng::new(seed);
    let mut checked = 0u64;
    for case in 0..CASES {
        let r = ring(&mut rng);
        let request = SyncRequest {
            start_index: rng.near(&[0, r.delta_floor, r.first_index, r.next_index, u64::MAX]),
            can_delta: rng.bool(),
            must_delta: rng.below(4) == 0,
        };
        assert_eq!(
            native.route_request(request, r),
            wasm.route_request(request, r),
            "{name} route-request case {case}: {request:?} ring {r:?}"
        );

        let catch_up = CatchUpView {
            passes: rng.near(&[0, 1, 15, 16, 17]) as u32,
            pending: rng.near(&[0, 500, 1_000, 1_001, u64::MAX]),
        };
        assert_eq!(
            native.plan_catch_up(catch_up),
            wasm.plan_catch_up(catch_up),
            "{name} plan-catch-up case {case}: {catch_up:?}"
        );

        let view = StreamView {
            phase: if rng.bool() {
                StreamPhase::Live
            } else {
                StreamPhase::CatchingUp
            },
            cursor: rng.near(&[0, r.first_index, r.next_index]),
            ring: r,
        };
        assert_eq!(
            native.plan_send(view),
            wasm.plan_send(view),
            "{name} plan-send case {case}: {view:?}"
        );

        let running = rng.near(&[0, 1, 4, u32::MAX as u64]) as u32;
        assert_eq!(
            native.admit_full_sync(running),
            wasm.admit_full_sync(running),
            "{name} admit-full-sync case {case}: {running}"
        );

        let state = follower_state(&mut rng);
        assert_eq!(
            native.on_connect(state),
            wasm.on_connect(state),
            "{name} on-connect case {case}: {state:?}"
        );

        let frame = FrameHeader {
            error: rng.below(8) == 0,
            start_index: rng.near(&[0, state.next_index, u64::MAX]),
            region_count: rng.near(&[0, 1, 1_000]) as u32,
            announced: AnnouncedSync::ALL[rng.below(4) as usize],
            digest: DigestCheck::ALL[rng.below(3) as usize],
        };
        assert_eq!(
            native.on_frame(state, frame),
            wasm.on_frame(state, frame),
            "{name} on-frame case {case}: {state:?} {frame:?}"
        );

        let attempt = rng.near(&[0, 1, 5, u32::MAX as u64]) as u32;
        let seed = rng.next_u64();
        assert_eq!(
            native.backoff(attempt, seed),
            wasm.backoff(attempt, seed),
            "{name} backoff case {case}: attempt {attempt} seed {seed}"
        );
        checked += 7;
    }
    println!("{name}: {checked} decisions identical over {CASES} seeded cases (seed {seed})");
}

#[test]
fn default_policy_native_and_wasm_agree_on_10000_random_inputs() {
    compare("default", 0x5EED_0001);
}

#[test]
fn conservative_policy_native_and_wasm_agree_on_10000_random_inputs() {
    compare("conservative", 0x5EED_0002);
}
