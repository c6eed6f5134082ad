//! Seeded fault injection: one leader, one to three followers and random
//! churn, with random faults, checked continuously.
//!
//! Real parts with a seeded schedule, not a simulated network. The leader
//! and followers are the real nodes on loopback (tonic, redb, the policy
//! runtime); faults come from a TCP proxy in front of each follower
//! ([`Proxy`]: dropped streams, a follower that stops reading), from
//! the nodes' own controls (restarts and crashes, storage write failures,
//! policy swaps) and from the churn (floods, ring overflow). turmoil would
//! make the interleaving itself deterministic, but only by replacing tonic's
//! transport and the clock under redb and the nodes, i.e. not testing the
//! parts that run in production. So the seed fixes *what* happens and in
//! which order (faults, churn, sizes, policies); the exact interleaving is
//! the machine's. A failure prints its seed; `FAULT_SEED=<seed>` replays
//! that schedule.
//!
//! Checked all along: no follower answers a read while it is not ready; a
//! ready follower's (index, digest) is one the leader had ([`oracle`]); and
//! at the end every follower is ready with the leader's digest and index.

mod checks;
mod nodes;
pub mod oracle;

pub use nodes::FAULTS;
use nodes::{Node, cluster_of, leader_addr, misrouted, send, start_leader, tuned};

use checks::{Claim, Watch, collect, judge, watch};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use regionsync::follower::Announce;
use regionsync::policy_runtime::PolicySource;
use regionsync_harness::load::Generator;

use crate::Rng;
use regionsync_harness::eventually::holds_within;
use regionsync_harness::proxy::Proxy;

/// What one scenario did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub followers: usize,
    /// What its followers announced (`Announce`), one each.
    pub announced: Vec<Announce>,
    /// Faults drawn, in order.
    pub faults: Vec<&'static str>,
    /// Faults that fired, each with its evidence (see `fired`).
    pub fired: Vec<(&'static str, String)>,
    /// Streams the leader ended because their records left its ring.
    pub history_misses: u64,
    /// Full syncs the followers started, by trigger.
    pub full_syncs: std::collections::BTreeMap<String, u64>,
    pub heartbeats: u64,
    /// Ready (index, digest) pairs checked against the oracle.
    pub claims_checked: u64,
    /// Reads answered by a follower (each while it was ready).
    pub reads_answered: u64,
    /// Reads refused by a follower.
    pub reads_refused: u64,
    /// Indexes the leader published (its digest tap) or loaded.
    pub indexes_recorded: u64,
    /// Sessions that reached another scenario's leader and were refused
    /// for its cluster id (see `cluster_of`).
    pub misrouted: u64,
}

/// Run the scenario of `seed`; `Err` says what broke.
pub async fn scenario(seed: u64) -> Result<Report, String> {
    let mut rng = Rng::new(seed);
    let cluster = cluster_of(seed);
    let tmp = tempfile::tempdir().unwrap();
    let ldir = tmp.path().join("leader");
    let seen: Arc<Mutex<oracle::Seen>> = Arc::default();
    let mut leader = start_leader(&ldir, cluster, &seen).await;
    {
        // The first state is the leader's too (an empty set at 0).
        let (next, digest) = leader.shared().applied();
        seen.lock().record(next, digest.value());
    }
    let mut report = Report::default();
    let mut generator = Generator::new(cluster, 50 + rng.below(200), seed);
    let first = generator.all();
    report.heartbeats += first.len() as u64;
    send(&leader.url(), first).await;

    let oracle_proxy = Proxy::start(leader_addr(&leader)).await.unwrap();
    let oracle = oracle::Oracle::start_on(oracle_proxy.url(), cluster, seen.clone());

    // Draws added since seeds were first reported come from a stream of
    // their own, so that a seed still names the schedule it named then.
    let mut kinds = Rng::new(seed ^ 0x0a11_0ced_5eed);
    // `FAULT_ANNOUNCE=policy|noverify|nothing` gives every follower that.
    let forced = std::env::var("FAULT_ANNOUNCE")
        .ok()
        .map(|v| match v.as_str() {
            "policy" => Announce::Policy,
            "noverify" => Announce::NoVerify,
            "nothing" => Announce::Nothing,
            other => panic!("FAULT_ANNOUNCE is {other:?}, not one of policy, noverify, nothing"),
        });
    let n = 1 + rng.below(3) as usize;
    report.followers = n;
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut node = Node {
            dir: tmp.path().join(format!("f{i}")),
            proxy: Proxy::start(leader_addr(&leader)).await.unwrap(),
            running: None,
            conservative: rng.below(3) == 0,
            durable_every: Duration::from_millis(rng.below(3) * 25),
            // Half speak all regionsync asks for; the others stand in for
            // PD's own followers (nothing announced) and for followers
            // without `verify`: a wrong set reaches them unchecked, so the
            // oracle is their only judge.
            announce: match (forced, kinds.below(4)) {
                (Some(a), _) => a,
                (None, 0) => Announce::Nothing,
                (None, 1) => Announce::NoVerify,
                (None, _) => Announce::Policy,
            },
            cluster,
            misrouted: 0,
        };
        node.start().await;
        report.announced.push(node.announce);
        nodes.push(node);
    }
    let claims: Arc<Mutex<Vec<Claim>>> = Arc::default();
    let reads = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let mut watches: Vec<Option<Watch>> = nodes
        .iter()
        .map(|n| {
            let r = n.running.as_ref().unwrap();
            Some(watch(
                r.shared().clone(),
                r.url(),
                cluster,
                format!("{} from the start", r.shared().config().name),
            ))
        })
        .collect();

    // `FAULT_ONLY=restart_leader,ring_overflow` draws only those faults.
    // A name that is not a fault would leave nothing to draw: refused.
    let only: Option<Vec<String>> = std::env::var("FAULT_ONLY").ok().map(|v| {
        let names: Vec<String> = v.split(',').map(|k| k.trim().to_string()).collect();
        if let Some(bad) = names.iter().find(|k| !FAULTS.contains(&k.as_str())) {
            panic!("FAULT_ONLY names {bad:?}, which is not one of {FAULTS:?}");
        }
        names
    });
    let steps = 5 + rng.below(5);
    for step in 0..steps {
        let target = rng.below(n as u64) as usize;
        let fault = loop {
            let f = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            if only.as_ref().is_none_or(|o| o.iter().any(|k| k == f)) {
                break f;
            }
        };
        report.faults.push(fault);
        let mut churn = 10 + rng.below(60) as usize;
        // What shows, once the step is over, that the fault took effect.
        let mut evidence: Option<String> = None;
        let mut check_later: Option<Later> = None;
        match fault {
            "drop_stream" => {
                let open = nodes[target].proxy.cut();
                if open > 0 {
                    evidence = Some(format!("{open} open connection(s) cut"));
                }
            }
            "stop_reading" => {
                nodes[target].proxy.stall(true);
                check_later = Some(Later::HeldBack(nodes[target].proxy.held_back()));
            }
            "restart_follower" | "crash_follower" => {
                if let Some(w) = watches[target].take() {
                    w.stop.store(true, Ordering::Relaxed);
                    collect(w, &claims, &reads).await?;
                }
                let f = nodes[target].running.take().unwrap();
                nodes[target].misrouted += misrouted(&f);
                tally_full_syncs(&mut report, &f);
                let at = f.shared().state().next_index;
                if fault == "crash_follower" {
                    f.kill().await;
                } else {
                    f.shutdown().await;
                }
                evidence = Some(format!("stopped at index {at}"));
            }
            "restart_leader" | "leader_storage_failure" => {
                if fault == "leader_storage_failure" {
                    // The disk fails under the next commits, then the
                    // operator restarts the leader.
                    let failures = 1 + rng.below(2) as u32;
                    leader.shared().inject_storage_failures(failures);
                    let hbs = take(&mut generator, 20);
                    report.heartbeats += hbs.len() as u64;
                    send(&leader.url(), hbs).await;
                    let lead = leader.shared().clone();
                    let took = holds_within(Duration::from_secs(2), || {
                        lead.pending_storage_failures() < failures
                    })
                    .await;
                    if took {
                        evidence = Some(format!(
                            "a commit failed; the leader {} changes",
                            if lead.is_failed() {
                                "refuses"
                            } else {
                                "still takes"
                            }
                        ));
                    }
                }
                let before = {
                    let lead = leader.shared();
                    let (applied, digest) = lead.applied();
                    (applied, digest.value(), lead.published_index())
                };
                report.history_misses += leader_misses(&leader);
                leader.shutdown().await;
                // Connections the old leader still serves keep its store
                // open: the network drops them as the process would.
                let _ = oracle_proxy.cut();
                for node in &nodes {
                    let _ = node.proxy.cut();
                }
                leader = start_leader(&ldir, cluster, &seen).await;
                // What it loaded is a claim like a follower's: the set the
                // leader had at its index before the restart.
                let (next, digest) = {
                    let (applied, digest) = leader.shared().applied();
                    (applied, digest.value())
                };
                oracle.seen.lock().note(format!(
                    "step {step}: leader restarted: before shutdown applied {} digest {:032x} published {}; \
                     loaded {next} digest {digest:032x}",
                    before.0, before.1, before.2,
                ));
                if next < before.2 {
                    return Err(format!(
                        "the restarted leader loaded index {next}, below the {} it had published; faults {:?}",
                        before.2, report.faults
                    ));
                }
                claims
                    .lock()
                    .push((next, digest, format!("leader restarted at step {step}")));
                oracle_proxy.retarget(leader_addr(&leader));
                for node in &nodes {
                    node.proxy.retarget(leader_addr(&leader));
                }
                if fault == "restart_leader" {
                    evidence = Some(format!("restarted at index {next}"));
                }
            }
            "ring_overflow" => {
                // Stall the follower, then change more than the ring holds
                // past whatever its stream already has in flight (socket
                // buffers, HTTP/2 windows, read-ahead): until the leader
                // ends a stream whose records left the ring.
                nodes[target].proxy.stall(true);
                churn = 150 + rng.below(100) as usize;
                let misses = leader
                    .shared()
                    .stats()
                    .history_misses
                    .load(Ordering::Relaxed);
                let mut sent = 0;
                while sent < 20_000
                    && leader
                        .shared()
                        .stats()
                        .history_misses
                        .load(Ordering::Relaxed)
                        == misses
                {
                    let hbs = take(&mut generator, 200);
                    sent += hbs.len();
                    report.heartbeats += hbs.len() as u64;
                    send(&leader.url(), hbs).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let lead = leader.shared().clone();
                if holds_within(Duration::from_secs(2), || {
                    lead.stats().history_misses.load(Ordering::Relaxed) > misses
                })
                .await
                {
                    evidence = Some(format!("a stream fell off the ring after {sent} changes"));
                }
            }
            "swap_policy" => {
                if let Some(f) = nodes[target].running.as_ref() {
                    let to = tuned(rng.bool());
                    f.shared().policy().swap(PolicySource::Tuned(to)).unwrap();
                    evidence = Some("swapped".into());
                }
            }
            "intake_flood" => {
                churn = 1_000 + rng.below(1_000) as usize;
                check_later = Some(Later::Heartbeats(
                    leader.shared().stats().heartbeats.load(Ordering::Relaxed),
                    churn as u64,
                ));
            }
            _ => {
                if let Some(f) = nodes[target].running.as_ref() {
                    let failures = 1 + rng.below(2) as u32;
                    f.shared().inject_storage_failures(failures);
                    check_later = Some(Later::FollowerWrites(failures));
                }
            }
        }
        let hbs = take(&mut generator, churn);
        report.heartbeats += hbs.len() as u64;
        send(&leader.url(), hbs).await;
        tokio::time::sleep(Duration::from_millis(20 + rng.below(60))).await;
        match check_later {
            Some(Later::HeldBack(before)) => {
                let held = nodes[target].proxy.held_back() - before;
                if held > 0 {
                    evidence = Some(format!("{held} bytes held back"));
                }
            }
            Some(Later::Heartbeats(before, sent)) => {
                let lead = leader.shared().clone();
                if holds_within(Duration::from_secs(5), || {
                    lead.stats().heartbeats.load(Ordering::Relaxed) >= before + sent
                })
                .await
                {
                    evidence = Some(format!("{sent} heartbeats processed"));
                }
            }
            Some(Later::FollowerWrites(failures)) => {
                if let Some(f) = nodes[target].running.as_ref() {
                    let f = f.shared().clone();
                    if holds_within(Duration::from_secs(2), || {
                        f.pending_storage_failures() < failures
                    })
                    .await
                    {
                        evidence = Some("a write failed".into());
                    }
                }
            }
            None => {}
        }
        if let Some(e) = evidence {
            report.fired.push((fault, e));
        }
        // Faults that last a while end here; stopped followers come back.
        for (i, node) in nodes.iter_mut().enumerate() {
            if rng.below(2) == 0 || i != target {
                node.proxy.stall(false);
            }
            if node.running.is_none() {
                node.start().await;
                let r = node.running.as_ref().unwrap();
                let label = format!("{} restarted after step {step}", r.shared().config().name);
                watches[i] = Some(watch(r.shared().clone(), r.url(), cluster, label));
            }
        }
    }
    for node in &nodes {
        node.proxy.stall(false);
    }
    let hbs = take(&mut generator, 20);
    report.heartbeats += hbs.len() as u64;
    send(&leader.url(), hbs).await;

    // Everyone converges on the leader.
    let lead = leader.shared().clone();
    let want = || {
        let held = lead.held(None);
        (held.digest.hex(), held.next_index)
    };
    let converged = holds_within(Duration::from_secs(30), || {
        let want = want();
        nodes.iter().all(|n| {
            let st = n.running.as_ref().unwrap().shared().status();
            st.ready && st.digest == want.0 && st.next_index == want.1
        })
    })
    .await;
    if !converged {
        let want = want();
        let states: Vec<_> = nodes
            .iter()
            .map(|n| {
                let st = n.running.as_ref().unwrap().shared().status();
                format!(
                    "{}: ready={} next={} digest={}",
                    st.name, st.ready, st.next_index, st.digest
                )
            })
            .collect();
        return Err(format!(
            "followers did not converge on the leader (next {} digest {}): {states:?}; faults {:?}",
            want.1, want.0, report.faults
        ));
    }
    // The oracle must have caught up too: what it assembled over the wire
    // is checked against the leader's tap at every index they share.
    let want_next = lead.held(None).next_index;
    let oracle_seen = oracle.seen.clone();
    if !holds_within(Duration::from_secs(10), || {
        oracle_seen.lock().oracle_at >= want_next
    })
    .await
    {
        return Err(format!(
            "the oracle did not reach the leader's index {want_next} within 10 s (it is at {}); faults {:?}",
            oracle.seen.lock().oracle_at,
            report.faults
        ));
    }
    for w in watches.into_iter().flatten() {
        w.stop.store(true, Ordering::Relaxed);
        collect(w, &claims, &reads).await?;
    }
    report.claims_checked = judge(&oracle.seen.lock(), &claims.lock())
        .map_err(|e| format!("{e}; faults {:?}", report.faults))?;
    if let Some(what) = oracle.seen.lock().unverified.first() {
        return Err(format!(
            "the oracle's {what}: the leader completed a full sync with a set that was not its own; faults {:?}",
            report.faults
        ));
    }
    report.indexes_recorded = oracle.seen.lock().digests.len() as u64;
    // A correct leader never sends a completion whose set is not its own:
    // a follower's digest check refusing one is a leader defect.
    for node in &nodes {
        let f = node.running.as_ref().unwrap();
        let refused = f.shared().stats().verify_failures.load(Ordering::Relaxed);
        if refused > 0 {
            return Err(format!(
                "{} refused {refused} completion(s) by their digest: the leader sent a set that was not its own; faults {:?}",
                f.shared().config().name,
                report.faults
            ));
        }
    }
    report.history_misses += leader_misses(&leader);
    for node in &nodes {
        tally_full_syncs(&mut report, node.running.as_ref().unwrap());
    }
    report.misrouted = oracle.seen.lock().misrouted
        + nodes
            .iter()
            .map(|n| n.misrouted + n.running.as_ref().map_or(0, misrouted))
            .sum::<u64>();
    report.reads_answered = reads.0.load(Ordering::Relaxed);
    report.reads_refused = reads.1.load(Ordering::Relaxed);
    for node in &mut nodes {
        if let Some(f) = node.running.take() {
            f.shutdown().await;
        }
    }
    leader.shutdown().await;
    Ok(report)
}

/// Evidence read once the step's churn has gone out.
enum Later {
    /// The proxy's bytes held back when the stall began.
    HeldBack(u64),
    /// The leader's heartbeats processed before the flood, and its size.
    Heartbeats(u64, u64),
    /// Storage failures injected into the follower.
    FollowerWrites(u32),
}

fn leader_misses(l: &regionsync::role::RunningLeader) -> u64 {
    l.shared().stats().history_misses.load(Ordering::Relaxed)
}

fn tally_full_syncs(report: &mut Report, f: &regionsync::role::RunningFollower) {
    for (trigger, n) in f.shared().stats().full_sync_counts().iter() {
        *report.full_syncs.entry(trigger.to_string()).or_default() += n;
    }
}

fn take(g: &mut Generator, n: usize) -> Vec<regionsync_proto::pdpb::RegionHeartbeatRequest> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend(g.churn());
    }
    out
}
