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
pub mod oracle;

use checks::{Watch, collect, judge, watch};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::node::{RunningFollower, RunningLeader};
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};
use regionsync::tools::load::{self, Generator};
use regionsync_guest::Policy;

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
}

/// A tuned policy: the shipped decisions with short backoffs, so that a
/// scenario's reconnects take milliseconds, not PD's seconds.
fn tuned(conservative: bool) -> Policy {
    let mut p = if conservative {
        Policy::conservative()
    } else {
        Policy::default_policy()
    };
    p.backoff_base_ms = 20;
    p.backoff_max_ms = 200;
    p
}

fn runtime(policy: Policy) -> Arc<PolicyRuntime> {
    let wasm = WasmRuntime::new(Default::default()).unwrap();
    Arc::new(PolicyRuntime::new(wasm, PolicySource::Tuned(policy)).unwrap())
}

const CLUSTER: u64 = 7;

struct Node {
    dir: PathBuf,
    proxy: net::Proxy,
    running: Option<RunningFollower>,
    conservative: bool,
    durable_every: Duration,
}

impl Node {
    async fn start(&mut self) {
        let mut c = FollowerConfig::new(self.proxy.url(), Some(self.dir.clone()));
        c.name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        c.keepalive = Duration::from_millis(150);
        c.connect_timeout = Duration::from_millis(500);
        c.durable_every = self.durable_every;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.running = Some(
            RunningFollower::start(c, runtime(tuned(self.conservative)), listener)
                .await
                .unwrap(),
        );
    }
}

fn leader_config(dir: &Path) -> LeaderConfig {
    let mut c = LeaderConfig::new(dir);
    c.cluster_id = Some(CLUSTER);
    c.history_capacity = 96;
    c.keepalive = Duration::from_millis(100);
    c.send_timeout = Duration::from_millis(400);
    c.shutdown_timeout = Duration::from_millis(300);
    c
}

/// Start (or restart) the leader on `dir`. A stopped leader's store closes
/// when the last task of its streams lets go of it, which may take a moment
/// after `shutdown`: retry until then.
async fn start_leader(dir: &Path) -> RunningLeader {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        match RunningLeader::start(leader_config(dir), runtime(tuned(false)), listener).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!(
                "the leader does not restart: {}",
                regionsync::error_chain(&e)
            ),
        }
    }
}

fn leader_addr(l: &RunningLeader) -> std::net::SocketAddr {
    l.server.local_addr()
}

/// Send `hbs`, tolerating a leader that refuses (a failed disk) or is
/// restarting: a heartbeat the leader did not take is simply not in its set.
async fn send(url: &str, hbs: Vec<regionsync_proto::pdpb::RegionHeartbeatRequest>) {
    if let Ok(mut c) = load::connect(url).await {
        let _ = load::send(&mut c, hbs, 0).await;
    }
}

/// Run the scenario of `seed`; `Err` says what broke.
pub async fn scenario(seed: u64) -> Result<Report, String> {
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let ldir = tmp.path().join("leader");
    let mut leader = start_leader(&ldir).await;
    let mut report = Report::default();
    let mut generator = Generator::new(CLUSTER, 50 + rng.below(200), seed);
    let first = generator.all();
    report.heartbeats += first.len() as u64;
    send(&leader.url(), first).await;

    let oracle_proxy = net::Proxy::start(leader_addr(&leader)).await;
    let oracle = oracle::Oracle::start(oracle_proxy.url(), CLUSTER);

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
        };
        node.start().await;
        nodes.push(node);
    }
    let claims: Arc<Mutex<Vec<(u64, u128)>>> = Arc::default();
    let reads = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let mut watches: Vec<Option<Watch>> = nodes
        .iter()
        .map(|n| {
            let r = n.running.as_ref().unwrap();
            Some(watch(r.shared().clone(), r.url()))
        })
        .collect();

    let steps = 5 + rng.below(5);
    for _ in 0..steps {
        let target = rng.below(n as u64) as usize;
        let fault = match rng.below(10) {
            0 => "drop_stream",
            1 => "stop_reading",
            2 => "restart_follower",
            3 => "crash_follower",
            4 => "restart_leader",
            5 => "ring_overflow",
            6 => "swap_policy",
            7 => "intake_flood",
            8 => "follower_storage_failure",
            _ => "leader_storage_failure",
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
                leader.shutdown().await;
                // Connections the old leader still serves keep its store
                // open: the network drops them as the process would.
                oracle_proxy.cut();
                for node in &nodes {
                    node.proxy.cut();
                }
                leader = start_leader(&ldir).await;
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
                watches[i] = Some(watch(r.shared().clone(), r.url()));
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
