//! The shipped policies against the invariants, over seeded inputs that
//! cluster around the values where decisions change.

use super::*;
use crate::splitmix::SplitMix64;
use crate::{AnnouncedSync, DigestCheck, FrameKind, Policy};

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
        delta_floor: near(rng, &[0, 1, first]),
    }
}

fn request(rng: &mut SplitMix64, r: RingView) -> SyncRequest {
    SyncRequest {
        start_index: near(rng, &[0, r.delta_floor, r.first_index, r.next_index]),
        can_delta: rng.below(2) == 0,
        must_delta: rng.below(4) == 0,
    }
}

fn state(rng: &mut SplitMix64) -> FollowerState {
    let phase = [
        FollowerPhase::Awaiting,
        FollowerPhase::Snapshot,
        FollowerPhase::Streaming,
        FollowerPhase::Delta,
    ][rng.below(4) as usize];
    // Only states the phase machine can reach: a full sync or a delta in
    // progress never claims an index, and only a delta leaves a store
    // resumable.
    let syncing = matches!(phase, FollowerPhase::Snapshot | FollowerPhase::Delta);
    let complete = !syncing && rng.below(2) == 0;
    let resumable = phase == FollowerPhase::Delta
        || (!complete && phase != FollowerPhase::Snapshot && rng.below(2) == 0);
    FollowerState {
        phase,
        next_index: near(rng, &[0, 1, 500, u64::MAX]),
        snapshot_regions: near(rng, &[0, 1_000]),
        complete,
        ready: complete && rng.below(2) == 0,
        force_full_sync: rng.below(4) == 0,
        resumable,
    }
}

#[test]
fn every_answer_of_the_shipped_policies_keeps_the_invariants() {
    for policy in [Policy::default_policy(), Policy::conservative()] {
        let mut rng = SplitMix64::new(7);
        limits(&policy.limits()).unwrap();
        let mut kinds = [0u32; FrameKind::ALL.len()];
        for case in 0..20_000 {
            let r = ring(&mut rng);
            let req = request(&mut rng, r);
            let routed = policy.route_request(req, r);
            routing(req, r, &routed)
                .unwrap_or_else(|e| panic!("{} case {case} {req:?} {r:?}: {e}", policy.name));

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
                announced: AnnouncedSync::ALL[rng.below(4) as usize],
                digest: DigestCheck::ALL[rng.below(3) as usize],
            };
            let d = policy.on_frame(s, frame);
            frame_decision(s, frame, &d)
                .unwrap_or_else(|e| panic!("{} case {case} {s:?} {frame:?}: {e}", policy.name));
            kinds[d.kind as usize] += 1;
            backoff(policy.backoff(rng.below(20) as u32, rng.next_u64())).unwrap();
        }
        // The inputs must reach every kind of frame, or the test proves little.
        for kind in FrameKind::ALL {
            if kind == FrameKind::DeltaStart && policy.gaps_mean_full_sync {
                continue; // such a policy never begins a delta
            }
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
        delta_floor: 1,
    };
    let at = |start_index| SyncRequest {
        start_index,
        can_delta: false,
        must_delta: false,
    };
    let history = |from| Routing {
        action: RouteAction::History(from),
        reason: crate::RouteReason::InRing,
    };
    assert_eq!(
        routing(at(50), ring, &history(50)),
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
    let frame = FrameHeader::plain(false, 10, 3);
    let mut d = Policy::default_policy().on_frame(s, frame);
    assert_eq!(frame_decision(s, frame, &d), Ok(()));
    d.record_history = false;
    assert_eq!(
        frame_decision(s, frame, &d),
        Err(Rejection::UnrecordedApply)
    );
}

#[test]
fn deltas_and_claims_are_held_to_what_the_follower_and_the_store_can_take() {
    let ring = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 100,
        delta_floor: 10,
    };
    let delta = |from| Routing {
        action: RouteAction::Delta(from),
        reason: crate::RouteReason::BehindRing,
    };
    let req = |start_index, can_delta, must_delta| SyncRequest {
        start_index,
        can_delta,
        must_delta,
    };
    assert_eq!(routing(req(50, true, false), ring, &delta(50)), Ok(()));
    for (r, why) in [
        (req(50, false, false), "a follower that did not ask"),
        (req(5, true, false), "below the floor"),
        (req(200, true, false), "at the next index"),
    ] {
        assert!(
            matches!(
                routing(r, ring, &delta(r.start_index)),
                Err(Rejection::DeltaInfeasible { .. })
            ),
            "{why}"
        );
    }
    let history = Routing {
        action: RouteAction::History(150),
        reason: crate::RouteReason::InRing,
    };
    assert_eq!(
        routing(req(150, true, true), ring, &history),
        Err(Rejection::ReplayOnPartialDelta { start: 150 })
    );

    // A completion claims the frame's index, never another, and never when
    // the digest differs.
    let mut s = FollowerState::opened(0, false);
    s.phase = FollowerPhase::Snapshot;
    let frame = FrameHeader::plain(false, 500, 0);
    let mut d = Policy::default_policy().on_frame(s, frame);
    assert_eq!(frame_decision(s, frame, &d), Ok(()));
    d.claim_index = Some(499);
    d.state.next_index = 499;
    assert_eq!(
        frame_decision(s, frame, &d),
        Err(Rejection::ClaimNotAtCompletion {
            claim: 499,
            frame: 500
        })
    );
    let mismatched = FrameHeader {
        digest: DigestCheck::Mismatched,
        ..frame
    };
    let mut d = Policy::default_policy().on_frame(s, frame);
    assert_eq!(
        frame_decision(s, mismatched, &d),
        Err(Rejection::ClaimDespiteMismatch)
    );
    // Complete without a claim.
    d.claim_index = None;
    d.state.next_index = 0;
    assert_eq!(
        frame_decision(s, FrameHeader::plain(false, 0, 0), &d),
        Err(Rejection::CompleteWithoutClaim)
    );
}

#[test]
fn the_shipped_policies_agree_with_the_hosts_facts_over_whole_streams() {
    for policy in [Policy::default_policy(), Policy::conservative()] {
        let mut rng = SplitMix64::new(11);
        let mut claims = 0u32;
        for walk in 0..2_000 {
            let mut facts = StreamFacts::of_store(&state(&mut rng));
            let mut s = facts.correct(state(&mut rng));
            let mut connected = false;
            for step in 0..40 {
                if !connected {
                    let plan = policy.on_connect(facts.correct(s));
                    facts.new_stream();
                    s = plan.state;
                }
                let before = facts.correct(s);
                // Frames a leader sends, and some it should not.
                let frame = FrameHeader {
                    error: rng.below(16) == 0,
                    start_index: near(&mut rng, &[0, before.next_index, before.next_index + 7]),
                    region_count: near(&mut rng, &[0, 0, 3]) as u32,
                    announced: AnnouncedSync::ALL[rng.below(4) as usize],
                    digest: DigestCheck::ALL[rng.below(3) as usize],
                };
                let d = policy.on_frame(before, frame);
                let at = || {
                    format!(
                        "{} walk {walk} step {step} {before:?} {frame:?} {d:?}",
                        policy.name
                    )
                };
                facts
                    .check_answer(before, frame, &d)
                    .unwrap_or_else(|e| panic!("{}: {e}", at()));
                claims += u32::from(d.claim_index.is_some());
                facts = facts.apply(&d);
                s = d.state;
                connected = d.reconnect.is_none();
            }
        }
        assert!(claims > 100, "{}: only {claims} claims", policy.name);
    }
}

#[test]
fn a_phase_flipped_without_a_reset_is_caught_by_the_hosts_facts() {
    // A complete store on a live stream; the answer turns it into a
    // "snapshot" without resetting it: on the state alone that is legal.
    let mut facts = StreamFacts::of_store(&FollowerState::opened(500, true));
    facts.new_stream();
    let before = facts.correct(FollowerState {
        phase: FollowerPhase::Streaming,
        ..FollowerState::opened(500, true)
    });
    let frame = FrameHeader::plain(false, 500, 0);
    let mut d = Policy::default_policy().on_frame(before, frame);
    d.state.phase = FollowerPhase::Snapshot;
    d.state.complete = false;
    d.state.ready = false;
    d.claim_index = None;
    d.apply_from = None;
    d.record_history = false;
    d.reconnect = None;
    assert_eq!(frame_decision(before, frame, &d), Ok(()));
    assert!(matches!(
        facts.check(frame, &d),
        Err(Rejection::StateDisagreesWithStore { .. })
    ));
    d.state.complete = true;
    d.state.ready = true;
    assert_eq!(
        facts.check(frame, &d),
        Err(Rejection::PhaseWithoutCause(FollowerPhase::Snapshot))
    );
}
