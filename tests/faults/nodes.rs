//! A scenario's nodes: the leader and followers as tuned for fault
//! injection, each scenario a cluster of its own, and the heartbeats sent to
//! them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use regionsync::follower::{Announce, FollowerConfig};
use regionsync::leader::{DigestTap, LeaderConfig};
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};
use regionsync::role::{RunningFollower, RunningLeader};
use regionsync_guest::Policy;
use regionsync_harness::load;

use regionsync_harness::proxy::Proxy;

use super::oracle;

/// Sessions of `f` refused for another cluster's leader.
pub(super) fn misrouted(f: &RunningFollower) -> u64 {
    let reconnects = f.shared().stats().reconnect_counts();
    reconnects.get("cluster_mismatch").copied().unwrap_or(0)
}

/// A tuned policy: the shipped decisions with short backoffs, so that a
/// scenario's reconnects take milliseconds, not PD's seconds.
pub(super) fn tuned(conservative: bool) -> Policy {
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

/// Each scenario is a cluster of its own (`cluster_of`): scenarios run side
/// by side on loopback, and a port one of them frees (a leader stopping)
/// may be bound by another's node at once. A proxy that still points there
/// then reaches another scenario's node, which, with one cluster id for
/// all, served this scenario's followers and oracle another leader's sets
/// under the same indexes (the rare "digest at index" failure seen since
/// the suite began). Its own cluster id makes that node refuse them, as a
/// real cluster's would.
pub(super) fn cluster_of(seed: u64) -> u64 {
    1_000 + seed
}

/// The faults a step draws from (`FAULT_ONLY` narrows them).
pub const FAULTS: [&str; 10] = [
    "drop_stream",
    "stop_reading",
    "restart_follower",
    "crash_follower",
    "restart_leader",
    "ring_overflow",
    "swap_policy",
    "intake_flood",
    "follower_storage_failure",
    "leader_storage_failure",
];

/// One follower of a scenario, running or stopped, behind its proxy.
pub(super) struct Node {
    pub dir: PathBuf,
    pub proxy: Proxy,
    pub running: Option<RunningFollower>,
    pub conservative: bool,
    pub durable_every: Duration,
    /// What it announces: PD's followers and those without `verify` are
    /// judged by the oracle like the others.
    pub announce: Announce,
    pub cluster: u64,
    /// Sessions its stopped runs refused for another cluster's leader.
    pub misrouted: u64,
}

impl Node {
    pub async fn start(&mut self) {
        let mut c = FollowerConfig::new(self.proxy.url(), Some(self.dir.clone()));
        c.name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        c.keepalive = Duration::from_millis(150);
        c.connect_timeout = Duration::from_millis(500);
        c.durable_every = self.durable_every;
        c.cluster_id = Some(self.cluster);
        c.announce = self.announce;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.running = Some(
            RunningFollower::start(c, runtime(tuned(self.conservative)), listener)
                .await
                .unwrap(),
        );
    }
}

fn leader_config(dir: &Path, cluster: u64, seen: &Arc<Mutex<oracle::Seen>>) -> LeaderConfig {
    let mut c = LeaderConfig::new(dir);
    // Every index the leader publishes, with its set's digest: what the
    // claims are judged against, whichever indexes the oracle jumped over.
    let seen = seen.clone();
    c.digest_tap = Some(DigestTap(Arc::new(move |digests| {
        let mut seen = seen.lock();
        for &(index, digest) in digests {
            seen.record(index, digest);
        }
    })));
    c.cluster_id = Some(cluster);
    c.history_capacity = 96;
    c.keepalive = Duration::from_millis(100);
    c.send_timeout = Duration::from_millis(400);
    c.shutdown_timeout = Duration::from_millis(300);
    c
}

/// Start (or restart) the leader on `dir`, telling `seen` its digest at
/// every index it publishes. A stopped leader's store closes when the last
/// task of its streams lets go of it, which may take a moment after
/// `shutdown`: retry until then.
pub(super) async fn start_leader(
    dir: &Path,
    cluster: u64,
    seen: &Arc<Mutex<oracle::Seen>>,
) -> RunningLeader {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        match RunningLeader::start(
            leader_config(dir, cluster, seen),
            runtime(tuned(false)),
            listener,
        )
        .await
        {
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

pub(super) fn leader_addr(l: &RunningLeader) -> std::net::SocketAddr {
    l.server.local_addr()
}

/// Send `hbs`, tolerating a leader that refuses (a failed disk) or is
/// restarting: a heartbeat the leader did not take is simply not in its set.
pub(super) async fn send(url: &str, hbs: Vec<regionsync_proto::pdpb::RegionHeartbeatRequest>) {
    if let Ok(mut c) = load::connect(url).await {
        let _ = load::send(&mut c, hbs, 0).await;
    }
}
