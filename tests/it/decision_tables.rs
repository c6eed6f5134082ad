//! Decision tables as data, in the spirit of raft-rs's datadriven tests: the
//! files under `tests/testdata/` list (policy, state, input => decision), one
//! case per line, and every line runs through both engines of every policy it
//! names: the guest library linked natively and the Wasm component built from
//! the same code. A new case is one line; a failure names its file and line.
//!
//! Decisions are compared as their canonical text (`render_*` below), so a
//! table line is also the readable statement of the rule it tests.

use std::fmt::Write as _;

use regionsync::policy_runtime::{
    AnnouncedSync, CatchUpStep, CatchUpView, ConnectPlan, DigestCheck, FollowerPhase,
    FollowerState, FrameDecision, FrameHeader, FrameKind, NativePolicy, PolicyEngine,
    ReconnectReason, RingView, RouteAction, RouteReason, Routing, SendStep, StreamPhase,
    StreamView, SyncRequest, WasmRuntime, builtin,
};

/// The shipped policies, which `*` in a table stands for.
const POLICIES: &[&str] = &["default", "conservative"];

/// The engines of one policy, each named for failure messages.
type Engines = Vec<(String, Box<dyn PolicyEngine>)>;

/// Every engine of one policy: native and Wasm.
fn engines(policy: &str, wasm: &WasmRuntime) -> Engines {
    let bytes = builtin::by_name(policy).expect("a shipped policy");
    vec![
        (
            format!("{policy}/native"),
            Box::new(NativePolicy::by_name(policy).expect("a shipped policy")),
        ),
        (
            format!("{policy}/wasm"),
            Box::new(wasm.load(bytes).expect("the component loads")),
        ),
    ]
}

/// One case of a table: where it is, which policies, input, expected.
struct Case {
    at: String,
    policies: Vec<&'static str>,
    input: String,
    expected: String,
}

/// The cases of `testdata/<name>.txt`: non-blank, non-comment lines of the
/// form `POLICY INPUT... => EXPECTED...`.
fn cases(name: &str) -> Vec<Case> {
    let path = format!("{}/testdata/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("tests/testdata/{name}.txt:{}", i + 1);
        let (input, expected) = line
            .split_once("=>")
            .unwrap_or_else(|| panic!("{at}: no `=>` in {line:?}"));
        let (policy, input) = input
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("{at}: no input in {line:?}"));
        let policies = match policy {
            "*" => POLICIES.to_vec(),
            name => vec![
                *POLICIES
                    .iter()
                    .find(|p| **p == name)
                    .unwrap_or_else(|| panic!("{at}: unknown policy {name:?}")),
            ],
        };
        out.push(Case {
            at,
            policies,
            input: words(input),
            expected: words(expected),
        });
    }
    out
}

/// Whitespace-normalised text.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Run every case of table `name` through every engine of its policies;
/// fail with every mismatch at once.
fn run_table(name: &str, decide: impl Fn(&dyn PolicyEngine, &str, &str) -> String) -> usize {
    let wasm = WasmRuntime::new(Default::default()).expect("a Wasm engine");
    let engines: Vec<(&str, Engines)> = POLICIES.iter().map(|p| (*p, engines(p, &wasm))).collect();
    let cases = cases(name);
    let mut failures = String::new();
    let mut runs = 0;
    for case in &cases {
        for policy in &case.policies {
            let (_, list) = engines.iter().find(|(p, _)| p == policy).unwrap();
            for (engine_name, engine) in list {
                let got = words(&decide(engine.as_ref(), &case.input, &case.at));
                runs += 1;
                if got != case.expected {
                    let _ = writeln!(
                        failures,
                        "{} [{engine_name}] {}\n    expected: {}\n    got:      {got}",
                        case.at, case.input, case.expected
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "decision table {name}:\n{failures}");
    assert!(!cases.is_empty(), "decision table {name} has no cases");
    runs
}

// ----- parsing the inputs -----

fn num(s: &str, at: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("{at}: {s:?} is not a number"))
}

/// `FIRST..NEXT` (capacity does not change a decision; it is the span);
/// the store tracks changes from index 1 unless a `floor=N` says otherwise.
fn ring(s: &str, at: &str) -> RingView {
    let (first, next) = s
        .split_once("..")
        .unwrap_or_else(|| panic!("{at}: {s:?} is not FIRST..NEXT"));
    let (first, next) = (num(first, at), num(next, at));
    RingView {
        first_index: first,
        next_index: next,
        capacity: next.saturating_sub(first).max(1),
        delta_floor: 1,
    }
}

/// `PHASE@NEXT [complete] [ready] [force] [snap=N]`.
fn state(s: &str, at: &str) -> FollowerState {
    let mut parts = s.split_whitespace();
    let head = parts.next().unwrap_or_else(|| panic!("{at}: no state"));
    let (phase, next) = head
        .split_once('@')
        .unwrap_or_else(|| panic!("{at}: {head:?} is not PHASE@NEXT"));
    let phase = match phase {
        "awaiting" => FollowerPhase::Awaiting,
        "snapshot" => FollowerPhase::Snapshot,
        "streaming" => FollowerPhase::Streaming,
        "delta" => FollowerPhase::Delta,
        other => panic!("{at}: unknown phase {other:?}"),
    };
    let mut st = FollowerState::opened(num(next, at), false);
    st.phase = phase;
    for flag in parts {
        match flag {
            "complete" => st.complete = true,
            "ready" => st.ready = true,
            "force" => st.force_full_sync = true,
            "resumable" => st.resumable = true,
            f if f.starts_with("snap=") => st.snapshot_regions = num(&f[5..], at),
            other => panic!("{at}: unknown state flag {other:?}"),
        }
    }
    st
}

// ----- rendering the decisions -----

fn render_state(s: &FollowerState) -> String {
    let mut out = format!("{}@{}", s.phase.as_str(), s.next_index);
    for (on, flag) in [
        (s.complete, "complete"),
        (s.ready, "ready"),
        (s.force_full_sync, "force"),
        (s.resumable, "resumable"),
    ] {
        if on {
            out.push(' ');
            out.push_str(flag);
        }
    }
    if s.snapshot_regions > 0 {
        let _ = write!(out, " snap={}", s.snapshot_regions);
    }
    out
}

fn kebab(label: &str) -> String {
    label.replace('_', "-")
}

fn render_routing(r: &Routing) -> String {
    let action = match r.action {
        RouteAction::FullSync => "full-sync".to_string(),
        RouteAction::UpToDate => "up-to-date".to_string(),
        RouteAction::History(i) => format!("history({i})"),
        RouteAction::Delta(i) => format!("delta({i})"),
    };
    format!("{action} {}", kebab(r.reason.as_str()))
}

fn render_step(s: &SendStep) -> String {
    match s {
        SendStep::Records(r) => format!("records({}+{})", r.start, r.count),
        SendStep::CaughtUp(i) => format!("caught-up({i})"),
        SendStep::Idle => "idle".into(),
        SendStep::Exhausted => "exhausted".into(),
    }
}

fn render_kind(k: FrameKind) -> &'static str {
    match k {
        FrameKind::Error => "error",
        FrameKind::SnapshotStart => "snapshot-start",
        FrameKind::SnapshotData => "snapshot-data",
        FrameKind::Completion => "completion",
        FrameKind::DeltaStart => "delta-start",
        FrameKind::DeltaData => "delta-data",
        FrameKind::VerifyFailed => "verify-failed",
        FrameKind::History => "history",
        FrameKind::Duplicate => "duplicate",
        FrameKind::Keepalive => "keepalive",
        FrameKind::Unexpected => "unexpected",
    }
}

fn render_decision(d: &FrameDecision) -> String {
    let mut out = render_kind(d.kind).to_string();
    if d.reset_store {
        out.push_str(" reset");
    }
    if d.begin_delta {
        out.push_str(" begin-delta");
    }
    if let Some(from) = d.apply_from {
        let _ = write!(out, " apply={from}");
    }
    if d.record_history {
        out.push_str(" record");
    }
    if let Some(claim) = d.claim_index {
        let _ = write!(out, " claim={claim}");
    }
    if let Some(reason) = d.reconnect {
        let _ = write!(out, " reconnect={}", kebab(reason.as_str()));
    }
    format!("{out} -> {}", render_state(&d.state))
}

fn render_plan(p: &ConnectPlan) -> String {
    let mut out = format!("ask {}", p.start_index);
    if p.ask_delta {
        out.push_str(" delta");
    }
    if p.ask_verify {
        out.push_str(" verify");
    }
    format!("{out} -> {}", render_state(&p.state))
}

// ----- the tables -----

#[test]
fn routing_table() {
    let runs = run_table("routing", |engine, input, at| {
        let words: Vec<&str> = input.split_whitespace().collect();
        let [start, ring_span, flags @ ..] = &words[..] else {
            panic!("{at}: expected START FIRST..NEXT [FLAGS], got {input:?}");
        };
        let mut ring = ring(ring_span, at);
        let mut request = SyncRequest {
            start_index: num(start, at),
            can_delta: false,
            must_delta: false,
        };
        for flag in flags {
            match *flag {
                "can-delta" => request.can_delta = true,
                "must-delta" => request.must_delta = true,
                f if f.starts_with("floor=") => ring.delta_floor = num(&f[6..], at),
                other => panic!("{at}: unknown routing flag {other:?}"),
            }
        }
        let routing = engine
            .route_request(request, ring)
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        render_routing(&routing)
    });
    assert!(runs >= 40, "{runs} routing runs");
    // The table must reach every route reason.
    let routing: Vec<String> = cases("routing").into_iter().map(|c| c.expected).collect();
    for reason in RouteReason::ALL {
        let label = kebab(reason.as_str());
        assert!(
            routing.iter().any(|e| e.ends_with(&label)),
            "no routing case of {reason:?}"
        );
    }
}

#[test]
fn plan_send_table() {
    let runs = run_table("plan_send", |engine, input, at| {
        let [phase, cursor, ring_span] = input.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("{at}: expected PHASE CURSOR FIRST..NEXT, got {input:?}");
        };
        let phase = match phase {
            "catching-up" => StreamPhase::CatchingUp,
            "live" => StreamPhase::Live,
            other => panic!("{at}: unknown stream phase {other:?}"),
        };
        let view = StreamView {
            phase,
            cursor: num(cursor, at),
            ring: ring(ring_span, at),
        };
        render_step(
            &engine
                .plan_send(view)
                .unwrap_or_else(|e| panic!("{at}: {e}")),
        )
    });
    assert!(runs >= 40, "{runs} plan-send runs");
}

#[test]
fn phase_machine_table() {
    let mut kinds = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    for case in cases("phase_machine") {
        if let Some((kind, _)) = case.expected.split_once(" -> ") {
            kinds.insert(kind.split_whitespace().next().unwrap_or("").to_string());
            if let Some(r) = kind
                .split_whitespace()
                .find_map(|w| w.strip_prefix("reconnect="))
            {
                reasons.insert(r.to_string());
            }
        }
    }
    let runs = run_table("phase_machine", |engine, input, at| {
        let (st, event) = input
            .split_once('|')
            .unwrap_or_else(|| panic!("{at}: expected STATE | EVENT, got {input:?}"));
        let st = state(st, at);
        let event = event.trim();
        if event == "connect" {
            return render_plan(
                &engine
                    .on_connect(st)
                    .unwrap_or_else(|e| panic!("{at}: {e}")),
            );
        }
        let words: Vec<&str> = event.split_whitespace().collect();
        let (error, span, flags) = match &words[..] {
            ["frame", span, flags @ ..] => (false, *span, flags),
            ["error-frame", span, flags @ ..] => (true, *span, flags),
            _ => panic!("{at}: unknown event {event:?}"),
        };
        let (start, count) = span
            .split_once('+')
            .unwrap_or_else(|| panic!("{at}: {span:?} is not START+COUNT"));
        let mut frame = FrameHeader::plain(
            error,
            num(start, at),
            u32::try_from(num(count, at)).expect("a u32 count"),
        );
        for flag in flags.iter() {
            match *flag {
                "full" => frame.announced = AnnouncedSync::Full,
                "delta" => frame.announced = AnnouncedSync::Delta,
                "history" => frame.announced = AnnouncedSync::History,
                "digest=ok" => frame.digest = DigestCheck::Matched,
                "digest=bad" => frame.digest = DigestCheck::Mismatched,
                other => panic!("{at}: unknown frame flag {other:?}"),
            }
        }
        render_decision(
            &engine
                .on_frame(st, frame)
                .unwrap_or_else(|e| panic!("{at}: {e}")),
        )
    });
    assert!(runs >= 100, "{runs} phase-machine runs");
    // The table must reach every kind of frame and every reconnect reason.
    for kind in FrameKind::ALL {
        assert!(kinds.contains(render_kind(kind)), "no case of {kind:?}");
    }
    for reason in ReconnectReason::ALL {
        assert!(
            reasons.contains(&kebab(reason.as_str())),
            "no case of {reason:?}"
        );
    }
}

#[test]
fn catch_up_table() {
    let runs = run_table("catch_up", |engine, input, at| {
        let [passes, pending] = input.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("{at}: expected PASSES PENDING, got {input:?}");
        };
        let view = CatchUpView {
            passes: u32::try_from(num(passes, at)).expect("a u32 pass count"),
            pending: num(pending, at),
        };
        match engine
            .plan_catch_up(view)
            .unwrap_or_else(|e| panic!("{at}: {e}"))
        {
            CatchUpStep::AnotherPass => "another-pass".to_string(),
            CatchUpStep::FinalPass => "final-pass".to_string(),
        }
    });
    assert!(runs >= 20, "{runs} catch-up runs");
}
