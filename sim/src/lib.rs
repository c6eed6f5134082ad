//! regionsync's deterministic simulator: a leader, one to five followers
//! (durable on a simulated disk, or cache-only) and the checks, made of the
//! real parts (the leader's stream machines, routing and intake step, the
//! follower's handshake, policy phases and apply, the redb store, the
//! policy as a Wasm component or native) joined by in-memory links, on one
//! thread and simulated time. A seeded scheduler picks each next event:
//! churn, a stream step, a delivery, a connect, time passing, a follower
//! losing power, a cut stream, a failed write, a ring overflow, a leader
//! restart. A failure names its seed, replays bit for bit, and is shrunk to
//! a short schedule before it is printed.
//!
//! `world` is one scenario; `leader` and `follower` are the simulated
//! nodes; [`check_seeds`] runs many and shrinks what fails.

pub mod follower;
pub mod leader;
pub mod rng;
pub mod script;
pub mod world;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use world::{Event, Policies, Report, Scenario, World, replay, run};

/// The seed of scenario `i` of a run from `seed`.
pub fn scenario_seed(seed: u64, i: u64) -> u64 {
    let mut rng = rng::Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.next_u64()
}

/// What a run of many scenarios found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Scenarios run.
    pub scenarios: u64,
    /// Scenarios that passed.
    pub passed: u64,
    /// Events, by kind, over every scenario.
    pub events: BTreeMap<&'static str, u64>,
    /// Ready claims checked.
    pub ready_claims: u64,
    /// Reads answered by ready followers.
    pub reads_answered: u64,
    /// Reads refused by followers not ready.
    pub reads_refused: u64,
    /// The first failure: its seed and report.
    pub failure: Option<(u64, Report)>,
    /// Which scenario of the run (counting from 0) it was.
    pub failed_at: Option<u64>,
}

impl Summary {
    /// Every event, of every kind.
    pub fn total_events(&self) -> u64 {
        self.events.values().sum()
    }
}

/// Run `n` scenarios from `seed` on `threads` threads (each scenario on one
/// thread, alone); stop at the first failure.
pub fn check_seeds(policies: &Policies, seed: u64, n: u64, threads: usize) -> Summary {
    let next = AtomicU64::new(0);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || summary.lock().unwrap().failure.is_some() {
                        return;
                    }
                    let seed = scenario_seed(seed, i);
                    let report = run(&Scenario::from_seed(seed), policies, false);
                    let mut sum = summary.lock().unwrap();
                    sum.scenarios += 1;
                    for (k, v) in &report.events {
                        *sum.events.entry(k).or_default() += v;
                    }
                    sum.ready_claims += report.ready_claims;
                    sum.reads_answered += report.reads_answered;
                    sum.reads_refused += report.reads_refused;
                    if report.failure.is_some() {
                        if sum.failed_at.is_none_or(|at| i < at) {
                            sum.failure = Some((seed, report));
                            sum.failed_at = Some(i);
                        }
                    } else {
                        sum.passed += 1;
                    }
                }
            });
        }
    });
    summary.into_inner().unwrap()
}

/// Cut `schedule` (which fails `scenario`) down to a shorter one that still
/// fails: chunks are dropped, halves first, while the failure stays, for at
/// most `budget` runs. Returns the shortest failing schedule found.
pub fn shrink(
    scenario: &Scenario,
    policies: &Policies,
    schedule: &[Event],
    budget: usize,
) -> Vec<Event> {
    let fails = |s: &[Event]| replay(scenario, policies, s, false).failure.is_some();
    let mut best = schedule.to_vec();
    let mut runs = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    while chunk >= 1 && runs < budget {
        let mut cut_any = false;
        let mut at = 0;
        while at < best.len() && runs < budget {
            let mut candidate = best.clone();
            let end = (at + chunk).min(candidate.len());
            candidate.drain(at..end);
            runs += 1;
            if !candidate.is_empty() && fails(&candidate) {
                best = candidate;
                cut_any = true;
            } else {
                at += chunk;
            }
        }
        if !cut_any {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2).max(1);
            if chunk == 1 && best.len() > 400 {
                break;
            }
        }
    }
    best
}
