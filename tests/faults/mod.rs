//! Seeded fault injection: one leader, one to three followers and random
//! churn, with random faults, checked continuously.
//!
//! Real parts with a seeded schedule, not a simulated network. The leader
//! and followers are the real nodes on loopback (tonic, redb, the policy
//! runtime); faults come from a TCP proxy in front of each follower
//! ([`net::Proxy`]: dropped streams, a follower that stops reading), from
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
pub mod net;
mod nodes;
pub mod oracle;

pub use nodes::FAULTS;
use nodes::{Node, cluster_of, leader_addr, misrouted, send, start_leader, tuned};

use checks::{Claim, Watch, collect, judge, watch};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use regionsync::policy_runtime::PolicySource;
use regionsync::tools::load::Generator;

use crate::Rng;

/// What one scenario did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub followers: usize,
    pub faults: Vec<&'static str>,
    pub heartbeats: u64,
    /// Ready (index, digest) pairs checked against the oracle.
    pub claims_checked: u64,
    /// Reads answered by a follower (each while it was ready).
    pub reads_answered: u64,
    /// Reads refused by a follower.
    pub reads_refused: u64,
    /// Full syncs of the oracle whose set the leader's digest refused
    /// (`oracle::Seen::unverified`), with what happened.
    pub oracle_unverified: Vec<String>,
    /// Completions the real followers refused (their `verify_failures`).
    pub verify_failures: u64,
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
    let mut leader = start_leader(&ldir, cluster).await;
    let mut report = Report::default();
    let mut generator = Generator::new(cluster, 50 + rng.below(200), seed);
    let first = generator.all();
    report.heartbeats += first.len() as u64;
    send(&leader.url(), first).await;

    let oracle_proxy = net::Proxy::start(leader_addr(&leader)).await;
    let oracle = oracle::Oracle::start(oracle_proxy.url(), cluster);

    let n = 1 + rng.below(3) as usize;
    report.followers = n;
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut node = Node {
            dir: tmp.path().join(format!("f{i}")),
            proxy: net::Proxy::start(leader_addr(&leader)).await,
            running: None,
            conservative: rng.below(3) == 0,
            durable_every: Duration::from_millis(rng.below(3) * 25),
            cluster,
            misrouted: 0,
        };
        node.start().await;
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
                format!("{} from the start", r.shared().config.name),
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
        match fault {
            "drop_stream" => nodes[target].proxy.cut(),
            "stop_reading" => nodes[target].proxy.stall(true),
            "restart_follower" | "crash_follower" => {
                if let Some(w) = watches[target].take() {
                    w.stop.store(true, Ordering::Relaxed);
                    collect(w, &claims, &reads).await?;
                }
                let f = nodes[target].running.take().unwrap();
                nodes[target].misrouted += misrouted(&f);
                if fault == "crash_follower" {
                    f.kill().await;
                } else {
                    f.shutdown().await;
                }
            }
            "restart_leader" | "leader_storage_failure" => {
                if fault == "leader_storage_failure" {
                    // The disk fails under the next commits, then the
                    // operator restarts the leader.
                    leader
                        .shared()
                        .storage
                        .fail_next_writes(1 + rng.below(2) as u32);
                    let hbs = take(&mut generator, 20);
                    report.heartbeats += hbs.len() as u64;
                    send(&leader.url(), hbs).await;
                }
                let before = {
                    let lead = leader.shared();
                    let store = lead.store.read();
                    (
                        store.applied_next(),
                        store.digest().value(),
                        *lead.published.borrow(),
                    )
                };
                leader.shutdown().await;
                // Connections the old leader still serves keep its store
                // open: the network drops them as the process would.
                oracle_proxy.cut();
                for node in &nodes {
                    node.proxy.cut();
                }
                leader = start_leader(&ldir, cluster).await;
                // What it loaded is a claim like a follower's: the set the
                // leader had at its index before the restart.
                let (next, digest) = {
                    let store = leader.shared().store.read();
                    (store.applied_next(), store.digest().value())
                };
                oracle.seen.lock().note(format!(
                    "step {step}: leader restarted: before shutdown applied {} digest {:032x} published {}; \
                     loaded {next} digest {digest:032x}",
                    before.0, before.1, before.2,
                ));
                claims
                    .lock()
                    .push((next, digest, format!("leader restarted at step {step}")));
                oracle_proxy.retarget(leader_addr(&leader));
                for node in &nodes {
                    node.proxy.retarget(leader_addr(&leader));
                }
            }
            "ring_overflow" => {
                nodes[target].proxy.stall(true);
                churn = 150 + rng.below(100) as usize;
            }
            "swap_policy" => {
                if let Some(f) = nodes[target].running.as_ref() {
                    let to = tuned(rng.bool());
                    f.shared().policy.swap(PolicySource::Tuned(to)).unwrap();
                }
            }
            "intake_flood" => churn = 1_000 + rng.below(1_000) as usize,
            _ => {
                if let Some(f) = nodes[target].running.as_ref() {
                    f.shared().inject_storage_failures(1 + rng.below(2) as u32);
                }
            }
        }
        let hbs = take(&mut generator, churn);
        report.heartbeats += hbs.len() as u64;
        send(&leader.url(), hbs).await;
        tokio::time::sleep(Duration::from_millis(20 + rng.below(60))).await;
        // Faults that last a while end here; stopped followers come back.
        for (i, node) in nodes.iter_mut().enumerate() {
            if rng.below(2) == 0 || i != target {
                node.proxy.stall(false);
            }
            if node.running.is_none() {
                node.start().await;
                let r = node.running.as_ref().unwrap();
                let label = format!("{} restarted after step {step}", r.shared().config.name);
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let lead = leader.shared().clone();
    loop {
        let want = (
            lead.store.read().digest().hex(),
            lead.ring.read().next_index(),
        );
        let all = nodes.iter().all(|n| {
            let st = n.running.as_ref().unwrap().shared().status();
            st.ready && st.digest == want.0 && st.next_index == want.1
        });
        if all {
            break;
        }
        if Instant::now() > deadline {
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The oracle must have caught up too, to judge every claim.
    let want_next = lead.ring.read().next_index();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !oracle.seen.lock().digests.contains_key(&want_next) {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in watches.into_iter().flatten() {
        w.stop.store(true, Ordering::Relaxed);
        collect(w, &claims, &reads).await?;
    }
    report.claims_checked = judge(&oracle.seen.lock(), &claims.lock())
        .map_err(|e| format!("{e}; faults {:?}", report.faults))?;
    report.oracle_unverified = oracle.seen.lock().unverified.clone();
    report.verify_failures = nodes
        .iter()
        .filter_map(|n| n.running.as_ref())
        .map(|f| f.shared().stats.verify_failures.load(Ordering::Relaxed))
        .sum();
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

fn take(g: &mut Generator, n: usize) -> Vec<regionsync_proto::pdpb::RegionHeartbeatRequest> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend(g.churn());
    }
    out
}
