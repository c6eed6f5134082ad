//! The shipped policies against the invariants, over seeded inputs that
//! cluster around the values where decisions change.

use super::*;
use crate::splitmix::SplitMix64;
use crate::{FrameKind, Policy};

fn near(rng: &mut SplitMix64, anchors: &[u64]) -> u64 {
    if rng.below(4) == 0 {
        rng.next_u64() >> rng.below(64)
    } else {
        let a = anchors[rng.below(anchors.len() as u64) as usize];
        a.saturating_add_signed(rng.below(5) as i64 - 2)
    }
}

fn ring(rng: &mut SplitMix64) -> RingView {
    let first = near(rng, &[0, 1, 100, 10_000]);
    RingView {
        first_index: first,
        next_index: first.saturating_add(near(rng, &[0, 1, 999, 1_000, 1_001])),
        capacity: near(rng, &[1, 10_000]),
    }
}

fn state(rng: &mut SplitMix64) -> FollowerState {
    let phase = [
        FollowerPhase::Awaiting,
        FollowerPhase::Snapshot,
        FollowerPhase::Streaming,
    ][rng.below(3) as usize];
    // Only states the phase machine can reach: a full sync in progress
    // never claims an index.
    let complete = phase != FollowerPhase::Snapshot && rng.below(2) == 0;
    FollowerState {
        phase,
        next_index: near(rng, &[0, 1, 500, u64::MAX]),
        snapshot_regions: near(rng, &[0, 1_000]),
        complete,
        ready: complete && rng.below(2) == 0,
        force_full_sync: rng.below(4) == 0,
    }
}

#[test]
fn every_answer_of_the_shipped_policies_keeps_the_invariants() {
    for policy in [Policy::default_policy(), Policy::conservative()] {
        let mut rng = SplitMix64::new(7);
        limits(&policy.limits()).unwrap();
        let mut kinds = [0u32; 8];
        for case in 0..20_000 {
            let r = ring(&mut rng);
            let start = near(&mut rng, &[0, r.first_index, r.next_index]);
            let routed = policy.route_request(start, r);
            routing(start, r, &routed)
                .unwrap_or_else(|e| panic!("{} case {case}: {e}", policy.name));

            let view = StreamView {
                phase: if rng.below(2) == 0 {
                    StreamPhase::CatchingUp
                } else {
                    StreamPhase::Live
                },
                cursor: near(&mut rng, &[r.first_index, r.next_index]),
                ring: r,
            };
            send_step(view, policy.limits(), &policy.plan_send(view))
                .unwrap_or_else(|e| panic!("{} case {case}: {e}", policy.name));

            let s = state(&mut rng);
            connect_plan(s, &policy.on_connect(s))
                .unwrap_or_else(|e| panic!("{} case {case}: {e}", policy.name));
            let frame = FrameHeader {
                error: rng.below(8) == 0,
                start_index: near(&mut rng, &[0, s.next_index]),
                region_count: near(&mut rng, &[0, 1, 1_000]) as u32,
            };
            let d = policy.on_frame(s, frame);
            frame_decision(s, frame, &d)
                .unwrap_or_else(|e| panic!("{} case {case} {s:?} {frame:?}: {e}", policy.name));
            kinds[d.kind as usize] += 1;
            backoff(policy.backoff(rng.below(20) as u32, rng.next_u64())).unwrap();
        }
        // The inputs must reach every kind of frame, or the test proves little.
        for kind in FrameKind::ALL {
            assert!(
                kinds[kind as usize] > 0,
                "{}: no {kind:?} frame",
                policy.name
            );
        }
    }
}

#[test]
fn infeasible_answers_are_named() {
    let ring = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 100,
    };
    let history = |from| Routing {
        action: RouteAction::History(from),
        reason: crate::RouteReason::InRing,
    };
    assert_eq!(
        routing(50, ring, &history(50)),
        Err(Rejection::HistoryOutsideRing {
            from: 50,
            start: 50,
            first: 100,
            next: 200
        })
    );
    assert_eq!(
        limits(&FrameLimits {
            max_regions: 5_000,
            max_bytes: 1 << 20
        }),
        Err(Rejection::MaxRegionsOutOfRange(5_000))
    );
    assert_eq!(
        backoff(MAX_BACKOFF_MS + 1),
        Err(Rejection::BackoffTooLong(300_001))
    );
    let mut s = FollowerState::opened(10, true);
    s.phase = FollowerPhase::Streaming;
    let frame = FrameHeader {
        error: false,
        start_index: 10,
        region_count: 3,
    };
    let mut d = Policy::default_policy().on_frame(s, frame);
    assert_eq!(frame_decision(s, frame, &d), Ok(()));
    d.record_history = false;
    assert_eq!(
        frame_decision(s, frame, &d),
        Err(Rejection::UnrecordedApply)
    );
}
