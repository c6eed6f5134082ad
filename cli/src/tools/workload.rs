//! A simulated workload for `regionsync policy diff`: the decisions a
//! cluster asks in ordinary running, as opposed to the conformance vectors,
//! which cluster on edge cases. A leader with a 10,000-record ring under
//! steady intake routes followers at the lags seen in practice (most up to
//! date, some a little behind, a few far behind, beyond the ring, new or
//! ahead after a failover), streams what it routed in frames, runs catch-up
//! passes, admits full syncs; followers go through full syncs, history,
//! gaps, errors and reconnects.
//!
//! The inputs are generated from a seed and, where a follower's next state
//! depends on the last answer, by the native default policy, so that two
//! components are always asked exactly the same things. Cases have the
//! vectors' shape (`{"fn", "args"}`), so `vectors::diff` compares them.

use regionsync_guest::splitmix::SplitMix64;
use regionsync_guest::{
    AnnouncedSync, CatchUpView, DigestCheck, FollowerState, FrameHeader, Policy, RingView,
    RouteAction, StreamPhase, StreamView, SyncRequest,
};
use serde_json::{Value, json};

/// The seed `policy diff` uses.
pub const SEED: u64 = 0x5eed_d1ff;
/// The simulated leader's ring, as `--history-capacity` defaults it.
const CAPACITY: u64 = 10_000;

fn j<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("contract types serialize")
}

/// The workload's cases.
pub fn generate(seed: u64) -> Value {
    let mut rng = SplitMix64::new(seed);
    let default = Policy::default_policy();
    let mut cases = Vec::new();
    let mut case = |name: &str, args: Value| cases.push(json!({ "fn": name, "args": args }));
    for tick in 0..200u64 {
        let next = CAPACITY + tick * 500;
        let ring = RingView {
            first_index: next - CAPACITY,
            next_index: next,
            capacity: CAPACITY,
            delta_floor: 1,
        };
        for _ in 0..10 {
            let roll = rng.below(100);
            let start = match roll {
                0..40 => next,
                40..65 => next - 1 - rng.below(200),
                65..80 => next - 200 - rng.below(4_800),
                80..90 => next - 5_000 - rng.below(5_000),
                90..95 => ring
                    .first_index
                    .saturating_sub(1 + rng.below(50_000))
                    .max(1),
                95..98 => 0,
                _ => next + 1 + rng.below(1_000),
            };
            let request = SyncRequest {
                start_index: start,
                can_delta: rng.below(5) != 0,
                must_delta: rng.below(50) == 0,
            };
            case("route-request", json!([j(&request), j(&ring)]));
            // What a stream routed to replay sends, frame by frame.
            if let RouteAction::History(from) | RouteAction::Delta(from) =
                default.route_request(request, ring).action
            {
                let mut cursor = from;
                for frame in 0..5 {
                    let view = StreamView {
                        phase: if frame == 0 {
                            StreamPhase::CatchingUp
                        } else {
                            StreamPhase::Live
                        },
                        cursor,
                        ring,
                    };
                    case("plan-send", json!([j(&view)]));
                    cursor = (cursor + 1 + rng.below(1_500)).min(next);
                }
            }
        }
        let view = CatchUpView {
            passes: rng.below(5) as u32,
            pending: rng.below(50_000),
        };
        case("plan-catch-up", json!([j(&view)]));
        case("admit-full-sync", json!([rng.below(7)]));
        case("backoff", json!([rng.below(9), rng.next_u64() >> 11]));
    }
    // Followers: a stream each, from a store that is new, complete, or left
    // incomplete by a crash, through the frames a leader sends.
    for _ in 0..60 {
        let at = [0, 0, 4_000, 12_000][rng.below(4) as usize];
        let mut state = FollowerState::opened(at, at != 0 && rng.below(4) != 0);
        let mut leader_next = at.max(12_000) + rng.below(3_000);
        let mut frames = 0;
        case("on-connect", json!([j(&state)]));
        state = default.on_connect(state).state;
        let mut snapshot = state.next_index == 0 || !state.complete;
        while frames < 30 {
            frames += 1;
            let frame = if rng.below(40) == 0 {
                FrameHeader::plain(true, 0, 0)
            } else if snapshot {
                // Snapshot frames, then a catch-up frame, then completion.
                let left = rng.below(4);
                let header = match left {
                    0 => FrameHeader {
                        announced: AnnouncedSync::Full,
                        digest: DigestCheck::Matched,
                        ..FrameHeader::plain(false, leader_next, 0)
                    },
                    _ => FrameHeader {
                        announced: AnnouncedSync::Full,
                        ..FrameHeader::plain(false, 0, 1_000)
                    },
                };
                snapshot = left != 0;
                header
            } else {
                // History: mostly in order, sometimes a gap or a repeat.
                let start = match rng.below(20) {
                    0 => state.next_index + 1 + rng.below(100),
                    1 => state.next_index.saturating_sub(5),
                    _ => state.next_index,
                };
                let count = [0, 1, 7, 300][rng.below(4) as usize];
                leader_next = leader_next.max(start + u64::from(count));
                FrameHeader::plain(false, start, count)
            };
            case("on-frame", json!([j(&state), j(&frame)]));
            let decision = default.on_frame(state, frame);
            state = decision.state;
            if decision.reconnect.is_some() {
                case("on-connect", json!([j(&state)]));
                state = default.on_connect(state).state;
                snapshot = state.next_index == 0 || !state.complete;
            }
        }
    }
    json!({ "seed": seed, "cases": cases })
}
