//! `regionsync policy check FILE`: what can be learnt about a component
//! without any node. Its contract version and imports (by loading it), the
//! self-check a swap runs, every exported function on the conformance
//! vectors' inputs with each answer held to the contract's invariants, the
//! follower's answers over seeded whole streams (gaps, reconnects, crashes,
//! swaps) held to the host's own facts (`StreamFacts`), a simulated leader's
//! routing and sending on a ring that wraps, and its size and per-call cost. Any violation makes the
//! report say which case shows it and the command exit non-zero.

use std::time::Instant;

use regionsync_guest::invariants::{self, StreamFacts};
use regionsync_guest::splitmix::SplitMix64;
use regionsync_guest::{
    AnnouncedSync, DigestCheck, FollowerState, FrameHeader, Policy, RingView, RouteAction,
    SendStep, StreamPhase, StreamView, SyncRequest,
};
use serde_json::Value;

use regionsync::policy_runtime::{PolicyEngine, Sha256, WasmRuntime};
use regionsync_harness::vectors;

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// What was checked, a line each.
    pub lines: Vec<String>,
    /// What broke, a line each (empty: the component passed).
    pub violations: Vec<String>,
}

fn arg<T: serde::de::DeserializeOwned>(args: &Value, i: usize) -> T {
    vectors::arg(args, i).expect("the vectors' own inputs")
}

/// Check the component in `bytes`.
pub fn check(bytes: &[u8]) -> Report {
    let mut r = Report::default();
    r.lines.push(format!(
        "component: {} bytes, sha256 {}",
        bytes.len(),
        Sha256::of(bytes)
    ));
    let engine = match WasmRuntime::new(Default::default()).and_then(|w| w.load(bytes)) {
        Ok(e) => e,
        Err(e) => {
            r.violations
                .push(format!("load: {}", regionsync::error_chain(&e)));
            return r;
        }
    };
    let info = engine.info().clone();
    r.lines.push(format!(
        "loads: {} {}, contract regionsync:policy@{}, imports nothing",
        info.name,
        info.version,
        regionsync_guest::CONTRACT_VERSION
    ));
    match regionsync::policy_runtime::self_check(&engine) {
        Ok(()) => r.lines.push("self-check (as at swap): passed".into()),
        Err(e) => r.violations.push(format!("self-check: {e}")),
    }
    vector_cases(&engine, &mut r);
    walks(&engine, &mut r);
    leader(&engine, &mut r);
    cost(&engine, &mut r);
    r
}

/// Every vector input, each answer held to the invariants.
fn vector_cases(engine: &dyn PolicyEngine, r: &mut Report) {
    let all = vectors::generate(&Policy::default_policy(), vectors::SEED);
    let limits = engine.limits().ok();
    let (mut n, mut same, mut broken) = (0u32, 0u32, 0u32);
    for case in all["cases"].as_array().into_iter().flatten() {
        let name = case["fn"].as_str().unwrap_or_default();
        let args = &case["args"];
        n += 1;
        let bad = match vectors::answer(engine, name, args) {
            Err(e) => Some(format!("failed: {e}")),
            Ok(got) => {
                same += u32::from(got == case["result"]);
                let rejected = match name {
                    "route-request" => {
                        let routing = serde_json::from_value(got).expect("answered");
                        invariants::routing(arg(args, 0), arg(args, 1), &routing).err()
                    }
                    "plan-send" => limits.and_then(|l| {
                        let step = serde_json::from_value(got).expect("answered");
                        invariants::send_step(arg(args, 0), l, &step).err()
                    }),
                    "on-connect" => {
                        let plan = serde_json::from_value(got).expect("answered");
                        invariants::connect_plan(arg(args, 0), &plan).err()
                    }
                    "on-frame" => {
                        let d = serde_json::from_value(got).expect("answered");
                        invariants::frame_decision(arg(args, 0), arg(args, 1), &d).err()
                    }
                    "backoff" => invariants::backoff(got.as_u64().unwrap_or(u64::MAX)).err(),
                    "limits" => limits.and_then(|l| invariants::limits(&l).err()),
                    _ => None,
                };
                rejected.map(|e| format!("breaks the contract: {e}"))
            }
        };
        if let Some(why) = bad {
            broken += 1;
            if broken <= 3 {
                r.violations
                    .push(format!("{why}, at vector {name}({args})"));
            }
        }
    }
    r.lines.push(format!(
        "conformance vectors: {n} cases, {broken} break the contract, {same} answered as the default policy does"
    ));
}

/// Seeded whole streams of frames, as a follower meets them (reconnects,
/// gaps, completions, indexes past 1,000), each answer held to the
/// invariants and to the host's facts.
fn walks(engine: &dyn PolicyEngine, r: &mut Report) {
    let mut rng = SplitMix64::new(vectors::SEED);
    let (walks, steps) = (500u32, 40u32);
    let (mut broken, mut crashes, mut swaps) = (0u32, 0u32, 0u32);
    let mut swapped = false;
    'walks: for walk in 0..walks {
        let start = [0u64, 500, 1_500, 20_000][rng.below(4) as usize];
        let complete = start != 0 && rng.below(2) == 0;
        let opened = FollowerState {
            ready: complete,
            ..FollowerState::opened(start, complete)
        };
        let mut facts = StreamFacts::of_store(&opened);
        let mut state = opened;
        let mut connected = false;
        for step in 0..steps {
            match rng.below(25) {
                // A crash: the follower restarts from what its store holds.
                0 => {
                    state = FollowerState::opened(facts.next_index, facts.complete);
                    state.resumable = facts.resumable;
                    facts = StreamFacts::of_store(&state);
                    connected = false;
                    crashes += 1;
                }
                // A swap and back: this frame is the default policy's, the
                // next ones meet the state it left.
                1 => swapped = true,
                _ => {}
            }
            if !connected {
                facts.new_stream();
                match engine.on_connect(facts.correct(state)) {
                    Ok(plan) => state = plan.state,
                    Err(e) => {
                        broken += 1;
                        r.violations
                            .push(format!("on-connect {e}, at walk {walk} step {step}"));
                        continue 'walks;
                    }
                }
            }
            let before = facts.correct(state);
            let next = before.next_index;
            let frame = FrameHeader {
                error: rng.below(16) == 0,
                start_index: [0, next, next, next + 7][rng.below(4) as usize],
                region_count: [0, 0, 3, 700][rng.below(4) as usize],
                announced: AnnouncedSync::ALL[rng.below(4) as usize],
                digest: DigestCheck::ALL[rng.below(3) as usize],
            };
            let answer = if std::mem::take(&mut swapped) {
                swaps += 1;
                Ok(Policy::default_policy().on_frame(before, frame))
            } else {
                engine.on_frame(before, frame)
            };
            let verdict = answer.map_err(|e| e.to_string()).and_then(|d| {
                facts
                    .check_answer(before, frame, &d)
                    .map(|()| d)
                    .map_err(|e| e.to_string())
            });
            match verdict {
                Ok(d) => {
                    facts = facts.apply(&d);
                    state = d.state;
                    connected = d.reconnect.is_none();
                }
                Err(why) => {
                    broken += 1;
                    if broken <= 3 {
                        r.violations.push(format!(
                            "{why}, at walk {walk} step {step}: on-frame({before:?}, {frame:?})"
                        ));
                    }
                    continue 'walks;
                }
            }
        }
    }
    r.lines.push(format!(
        "follower streams: {walks} seeded walks of up to {steps} frames ({crashes} crashes, {swaps} frames answered across a swap), {broken} broke the invariants or the host's facts"
    ));
}

/// A simulated leader: a ring under intake that wraps, and followers at
/// random lags routed against it, each routed stream played out through
/// `plan-send` while the ring moves on, every answer held to the invariants.
fn leader(engine: &dyn PolicyEngine, r: &mut Report) {
    let mut rng = SplitMix64::new(vectors::SEED ^ 0x1ead);
    let limits = match engine.limits() {
        Ok(l) => l,
        Err(e) => {
            r.violations.push(format!("limits failed: {e}"));
            return;
        }
    };
    let capacity = 1_000u64;
    let mut next = 1u64;
    let (mut streams, mut sends, mut broken) = (0u32, 0u32, 0u32);
    let ring = |next: u64| RingView {
        first_index: next.saturating_sub(capacity).max(1),
        next_index: next,
        capacity,
        delta_floor: 1,
    };
    let mut fail = |r: &mut Report, what: String| {
        broken += 1;
        if broken <= 3 {
            r.violations.push(what);
        }
    };
    for _ in 0..300 {
        next += rng.below(400);
        let lag = [0, 1, 10, 500, 999, 1_500][rng.below(6) as usize];
        let request = SyncRequest {
            start_index: next.saturating_sub(lag).max(1),
            can_delta: rng.below(2) == 0,
            must_delta: rng.below(20) == 0,
        };
        let now = ring(next);
        let routing = match engine.route_request(request, now) {
            Ok(routing) => routing,
            Err(e) => {
                fail(
                    r,
                    format!("route-request failed: {e}, at {request:?} on {now:?}"),
                );
                continue;
            }
        };
        if let Err(e) = invariants::routing(request, now, &routing) {
            fail(
                r,
                format!("breaks the contract: {e}, at route-request({request:?}, {now:?})"),
            );
            continue;
        }
        let (RouteAction::History(from) | RouteAction::Delta(from)) = routing.action else {
            continue;
        };
        streams += 1;
        let (mut cursor, mut phase) = (from, StreamPhase::CatchingUp);
        for _ in 0..50 {
            // Intake goes on while the stream sends; the ring may wrap past it.
            next += rng.below(300);
            let view = StreamView {
                phase,
                cursor,
                ring: ring(next),
            };
            sends += 1;
            let step = match engine.plan_send(view) {
                Ok(step) => step,
                Err(e) => {
                    fail(r, format!("plan-send failed: {e}, at {view:?}"));
                    break;
                }
            };
            if let Err(e) = invariants::send_step(view, limits, &step) {
                fail(
                    r,
                    format!("breaks the contract: {e}, at plan-send({view:?})"),
                );
                break;
            }
            match step {
                SendStep::Records(range) => cursor = range.start + u64::from(range.count),
                SendStep::CaughtUp(at) => {
                    cursor = at;
                    phase = StreamPhase::Live;
                }
                SendStep::Idle => {}
                SendStep::Exhausted => break,
            }
        }
    }
    r.lines.push(format!(
        "leader: 300 requests on a wrapping ring, {streams} streams played out in {sends} plan-send calls, {broken} broke the invariants"
    ));
}

/// Median cost of `route-request`.
fn cost(engine: &dyn PolicyEngine, r: &mut Report) {
    let ring = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 1_000,
        delta_floor: 1,
    };
    let request = SyncRequest {
        start_index: 150,
        can_delta: false,
        must_delta: false,
    };
    let mut samples: Vec<u128> = (0..11)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..1_000 {
                let _ = engine.route_request(request, ring);
            }
            t.elapsed().as_nanos() / 1_000
        })
        .collect();
    samples.sort_unstable();
    r.lines.push(format!(
        "cost: route-request {} ns per call (median of 11 x 1,000)",
        samples[5]
    ));
}
