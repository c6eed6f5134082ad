//! Protocol cases as scenario files, in the manner of raft-rs's datadriven
//! tests: each case is a command, `----`, and what the simulator says it
//! did. A file is read top to bottom against one cluster; `REWRITE=1`
//! writes what happened back as the expectation (to be read in review).
//!
//! ```text
//! # a comment
//! cluster regions=30 ring=8 policy=small-frames followers=f0:durable:policy
//! ----
//! leader: at 31, 30 regions, ring [1, 31), lineage 1@1
//! f0: awaiting at 0, not ready, 0 regions: an index the leader never had
//! ```
//!
//! Commands (a follower by its name, `f0` …):
//! - `cluster regions=N ring=N policy=wasm|native|small-frames
//!   followers=NAME:durable|cache:policy|no-verify|nothing[:durable-history],…`
//! - `connect F`, `step F [n]`, `deliver F [n]`, `pump F`: a session opens;
//!   its stream takes steps; the follower applies what arrived; both until
//!   nothing is left to do without time passing;
//! - `churn N`, `burst`: the leader takes N churn operations, or a burst
//!   that overflows its ring;
//! - `crash F [ms]`, `up F`, `cut F`, `fail-write F`, `stall F ms`,
//!   `send-timeout F`, `restart-leader`, `tick ms`: faults and time;
//! - `converge`: no churn, no fault, until every follower holds the
//!   leader's set at its index;
//! - `state`: the leader and every follower, one line each.
//!
//! Every event is checked as in a seeded scenario: a ready follower holds
//! the leader's set at its index, or the case prints `FAILED: …`.

use std::fmt::Write as _;
use std::path::Path;

use regionsync::follower::Announce;

use crate::follower::Kind;
use crate::world::{Event, Faults, Policies, PolicyKind, Scenario, World};

/// Run the file at `path`; `Err` with a diff when an expectation differs
/// (unless `rewrite`, which writes what happened instead).
pub fn run_file(path: &Path, policies: &Policies, rewrite: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cases = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut world: Option<World> = None;
    let mut out = String::new();
    let mut diffs = Vec::new();
    for case in &cases {
        for c in &case.comments {
            writeln!(out, "{c}").unwrap();
        }
        let got = match execute(&case.command, &mut world, policies) {
            Ok(lines) => lines,
            Err(e) => vec![format!("error: {e}")],
        };
        if got != case.expected {
            diffs.push(format!(
                "line {}: {}\n  expected:\n{}\n  got:\n{}",
                case.line,
                case.command,
                indent(&case.expected),
                indent(&got)
            ));
        }
        writeln!(out, "{}\n----", case.command).unwrap();
        for l in &got {
            writeln!(out, "{l}").unwrap();
        }
        out.push('\n');
    }
    if rewrite {
        std::fs::write(path, out.trim_end().to_string() + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} case(s) differ (REWRITE=1 writes what happened):\n{}",
            path.display(),
            diffs.len(),
            diffs.join("\n")
        ))
    }
}

fn indent(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Case {
    comments: Vec<String>,
    command: String,
    expected: Vec<String>,
    line: usize,
}

fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    let mut comments = Vec::new();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_end();
        if line.starts_with('#') {
            comments.push(line.to_string());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        match lines.next() {
            Some((_, "----")) => {}
            _ => {
                return Err(format!(
                    "line {}: a command must be followed by ----",
                    n + 1
                ));
            }
        }
        let mut expected = Vec::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim_end().is_empty() {
                break;
            }
            expected.push(l.trim_end().to_string());
            lines.next();
        }
        cases.push(Case {
            comments: std::mem::take(&mut comments),
            command: line.to_string(),
            expected,
            line: n + 1,
        });
    }
    Ok(cases)
}

fn execute(
    command: &str,
    world: &mut Option<World>,
    policies: &Policies,
) -> Result<Vec<String>, String> {
    let mut words = command.split_whitespace();
    let verb = words.next().ok_or("an empty command")?;
    let args: Vec<&str> = words.collect();
    if verb == "cluster" {
        let scenario = cluster(&args)?;
        let w = World::new(&scenario, policies, false);
        let mut lines = vec![w.leader_state()];
        lines.extend(w.states());
        *world = Some(w);
        return Ok(lines);
    }
    let w = world
        .as_mut()
        .ok_or("no cluster yet (start with `cluster`)")?;
    let follower = |i: usize| -> Result<usize, String> {
        let name = args.get(i).ok_or("which follower?")?;
        w.follower_index(name)
            .ok_or_else(|| format!("no follower {name}"))
    };
    let number = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("{v:?}: {e}"))
        })
    };
    let events: Vec<Event> = match verb {
        "connect" => vec![Event::Connect(follower(0)?)],
        "step" => vec![Event::Step(follower(0)?); number(1, 1)? as usize],
        "deliver" => vec![Event::Deliver(follower(0)?); number(1, 1)? as usize],
        "pump" => return pump(w, follower(0)?),
        "churn" => vec![Event::Intake(number(0, 1)?)],
        "burst" => vec![Event::Burst],
        "crash" => vec![Event::Crash(follower(0)?, number(1, 1_000)?)],
        "up" => vec![Event::Up(follower(0)?)],
        "cut" => vec![Event::DropStream(follower(0)?)],
        "fail-write" => vec![Event::FailWrite(follower(0)?)],
        "stall" => vec![Event::Stall(follower(0)?, number(1, 1_000)?)],
        "send-timeout" => vec![Event::SendTimeout(follower(0)?)],
        "restart-leader" => vec![Event::RestartLeader],
        "tick" => vec![Event::Tick(number(0, 1_000)?)],
        "converge" => {
            return match w.converge() {
                Ok(_) => {
                    let mut lines = vec![w.leader_state()];
                    lines.extend(w.states());
                    Ok(lines)
                }
                Err(why) => Ok(vec![format!("FAILED: {why}")]),
            };
        }
        "state" => {
            let mut lines = vec![w.leader_state()];
            lines.extend(w.states());
            return Ok(lines);
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    let mut lines = Vec::new();
    for event in events {
        if !w.can_happen().iter().any(|e| e.same_kind(&event)) {
            lines.push(format!("({event:?} cannot happen now)"));
            break;
        }
        match w.step(event) {
            Ok(what) => lines.push(what),
            Err((what, why)) => {
                lines.push(what);
                lines.push(format!("FAILED: {why}"));
                break;
            }
        }
    }
    Ok(lines)
}

/// Steps and deliveries on one follower's link until neither can happen
/// without time passing.
fn pump(w: &mut World, i: usize) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for _ in 0..10_000 {
        let can = w.can_happen();
        let next = [Event::Deliver(i), Event::Step(i)]
            .into_iter()
            .find(|e| can.iter().any(|c| c.same_kind(e)));
        let Some(event) = next else {
            return Ok(lines);
        };
        match w.step(event) {
            Ok(what) => lines.push(what),
            Err((what, why)) => {
                lines.push(what);
                lines.push(format!("FAILED: {why}"));
                return Ok(lines);
            }
        }
    }
    Err("the link never went quiet".into())
}

fn cluster(args: &[&str]) -> Result<Scenario, String> {
    let mut scenario = Scenario {
        seed: 1,
        regions: 20,
        ring_capacity: 100,
        followers: Vec::new(),
        events: 0,
        // A script says which faults happen, and when.
        faults: Faults {
            crash_follower: true,
            drop_stream: true,
            storage_failure: true,
            restart_leader: true,
            intake_burst: true,
            stall_reader: true,
        },
        policy: PolicyKind::Native,
        max_faults: u32::MAX,
    };
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: key=value"))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match key {
            "regions" => scenario.regions = num()?,
            "ring" => scenario.ring_capacity = num()? as usize,
            "seed" => scenario.seed = num()?,
            "policy" => {
                scenario.policy = match value {
                    "wasm" => PolicyKind::Wasm,
                    "native" => PolicyKind::Native,
                    "small-frames" => PolicyKind::SmallFrames,
                    other => return Err(format!("policy {other:?}")),
                }
            }
            "followers" => {
                for (i, spec) in value.split(',').enumerate() {
                    let parts: Vec<&str> = spec.split(':').collect();
                    if parts.first() != Some(&format!("f{i}").as_str()) {
                        return Err(format!("follower {i} must be named f{i} ({spec:?})"));
                    }
                    let durable = match parts.get(1) {
                        Some(&"durable") => true,
                        Some(&"cache") => false,
                        _ => return Err(format!("{spec:?}: durable or cache")),
                    };
                    let announce = match parts.get(2) {
                        Some(&"policy") | None => Announce::Policy,
                        Some(&"no-verify") => Announce::NoVerify,
                        Some(&"nothing") => Announce::Nothing,
                        Some(other) => return Err(format!("announce {other:?}")),
                    };
                    scenario.followers.push(Kind {
                        durable,
                        announce,
                        durable_history: parts.get(3) == Some(&"durable-history"),
                    });
                }
            }
            other => return Err(format!("unknown setting {other:?}")),
        }
    }
    Ok(scenario)
}
