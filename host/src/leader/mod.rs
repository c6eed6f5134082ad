//! The leader: region intake, the authoritative store, the history ring and
//! the follower streams (SPEC §2).
//!
//! One intake task owns every write. Heartbeat streams hand it regions over
//! a bounded channel, so a flood slows the senders down (gRPC flow control)
//! instead of dropping changes (PD #9154). The task applies a batch to the
//! store, commits the batch to redb in one transaction together with the new
//! next_index, and only then publishes the records to the ring: a follower
//! never receives an index the leader could lose in a crash.
//!
//! Follower streams ([`sync_stream`]) each run in their own task with their
//! own cursor, and only read the store and the ring; nothing they do can
//! delay the intake or each other.

pub mod frames;
pub mod sync_stream;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::{RegionHeartbeatRequest, RegionStat};
use tokio::sync::{mpsc, watch};
use xxhash_rust::xxh3::xxh3_64;

use crate::history::{HistoryRing, Record, fingerprint};
use crate::policy_runtime::PolicyRuntime;
use crate::region_store::{Loader, Outcome, RegionStore};
use crate::storage::{Storage, WriteBatch};

/// Tunables of a leader; the CLI fills them from SPEC §6 flags.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub data_dir: PathBuf,
    pub cluster_id: Option<u64>,
    pub history_capacity: usize,
    pub name: String,
    /// Bound on one frame's send to one follower (PD: 10 s).
    pub send_timeout: Duration,
    /// Empty frame on an idle live stream (SPEC §2: 10 s).
    pub keepalive: Duration,
    /// Bound on telling every stream that the leader stops.
    pub shutdown_timeout: Duration,
    /// Full-sync snapshot rate limit in bytes per second (none: unlimited).
    pub full_sync_rate: Option<u64>,
    /// Heartbeats queued for the intake task before senders wait.
    pub intake_queue: usize,
    /// Most heartbeats applied in one transaction.
    pub intake_batch: usize,
}

impl LeaderConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LeaderConfig {
            data_dir: data_dir.into(),
            cluster_id: None,
            history_capacity: 10_000,
            name: "leader".into(),
            send_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(3),
            full_sync_rate: None,
            intake_queue: 16_384,
            intake_batch: 4_096,
        }
    }
}

/// One heartbeat's worth of change, as the intake task needs it.
pub struct Heartbeat {
    pub region: Region,
    pub leader: Peer,
    pub stats: RegionStat,
}

impl Heartbeat {
    pub fn from_request(req: RegionHeartbeatRequest) -> Option<Self> {
        let stats = RegionStat {
            bytes_written: req.bytes_written,
            bytes_read: req.bytes_read,
            keys_written: req.keys_written,
            keys_read: req.keys_read,
        };
        Some(Heartbeat {
            region: req.region?,
            leader: req.leader.unwrap_or_default(),
            stats,
        })
    }
}

/// Counters read by status and metrics.
#[derive(Debug, Default)]
pub struct LeaderStats {
    /// Heartbeats processed (applied, persisted and published, or ignored).
    pub heartbeats: AtomicU64,
    pub accepted: AtomicU64,
    pub stale: AtomicU64,
    pub unchanged: AtomicU64,
    pub refused: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// (reason, outcome) -> count.
    pub full_syncs: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl LeaderStats {
    pub fn count_full_sync(&self, reason: &str, outcome: &'static str) {
        *self
            .full_syncs
            .lock()
            .entry((reason.to_string(), outcome))
            .or_default() += 1;
    }

    /// Full syncs started, by reason.
    pub fn full_syncs_by_reason(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((reason, outcome), n) in self.full_syncs.lock().iter() {
            if *outcome == "started" {
                *out.entry(reason.clone()).or_default() += n;
            }
        }
        out
    }
}

/// A follower stream as the leader tracks it (for lag metrics).
#[derive(Debug)]
pub struct StreamEntry {
    pub follower: String,
    pub cursor: AtomicU64,
}

/// Everything the leader's tasks share.
pub struct LeaderShared {
    pub config: LeaderConfig,
    pub cluster_id: u64,
    pub store: RwLock<RegionStore>,
    pub ring: RwLock<HistoryRing>,
    pub storage: Storage,
    pub policy: Arc<PolicyRuntime>,
    pub stats: LeaderStats,
    /// next_index after each published batch; streams wait on it.
    pub published: watch::Sender<u64>,
    /// Set once: the leader is stopping.
    pub stopping: watch::Sender<bool>,
    /// Full syncs streaming now (for admission).
    pub full_syncs_running: AtomicU32,
    pub streams: Mutex<HashMap<u64, Arc<StreamEntry>>>,
    pub next_stream_id: AtomicU64,
    /// The intake failed to persist; the leader no longer accepts changes.
    pub failed: AtomicBool,
    intake: mpsc::Sender<Heartbeat>,
}

/// A running leader (without its gRPC server; see `service`).
pub struct Leader {
    pub shared: Arc<LeaderShared>,
    intake_task: tokio::task::JoinHandle<()>,
}

/// A cluster id for a new cluster: unique enough across clusters, never 0.
fn new_cluster_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}-{}", now.as_nanos(), std::process::id());
    (xxh3_64(seed.as_bytes()) >> 1).max(1)
}

impl Leader {
    /// Open the store, load regions and numbering, and start the intake.
    pub fn start(config: LeaderConfig, policy: Arc<PolicyRuntime>) -> anyhow::Result<Leader> {
        let storage = Storage::open(&config.data_dir)?;
        let meta = storage.meta()?;
        let cluster_id = match (meta.cluster_id, config.cluster_id) {
            (Some(kept), Some(flag)) if kept != flag => anyhow::bail!(
                "data directory {} belongs to cluster {kept}, not {flag}",
                config.data_dir.display()
            ),
            (Some(kept), _) => kept,
            (None, flag) => flag.unwrap_or_else(new_cluster_id),
        };
        let mut loader = Loader::default();
        let loaded = storage
            .load_regions(|region, leader| loader.add(&region, leader))
            .context("loading the leader's regions")?;
        let store = loader.finish();
        // A fresh leader numbers from 1, so that index 0 always means "I have
        // nothing" on the wire.
        let next_index = meta.next_index.max(1);
        storage.write(&WriteBatch {
            next_index: Some(next_index),
            cluster_id: Some(cluster_id),
            complete: Some(true),
            durable: true,
            ..Default::default()
        })?;
        tracing::info!(
            cluster_id, regions = loaded, next_index, data_dir = %config.data_dir.display(),
            "leader store opened"
        );
        let (intake, rx) = mpsc::channel(config.intake_queue.max(1));
        let shared = Arc::new(LeaderShared {
            cluster_id,
            store: RwLock::new(store),
            ring: RwLock::new(HistoryRing::new(config.history_capacity, next_index)),
            storage,
            policy,
            stats: LeaderStats::default(),
            published: watch::channel(next_index).0,
            stopping: watch::channel(false).0,
            full_syncs_running: AtomicU32::new(0),
            streams: Mutex::new(HashMap::new()),
            next_stream_id: AtomicU64::new(1),
            failed: AtomicBool::new(false),
            intake,
            config,
        });
        let intake_task = tokio::spawn(intake_loop(shared.clone(), rx));
        Ok(Leader {
            shared,
            intake_task,
        })
    }

    /// Stop: every follower stream gets the "server stopped" frame, in
    /// parallel and within the configured bound; the intake drains.
    pub async fn shutdown(self) {
        let shared = self.shared;
        shared.stopping.send_replace(true);
        let bound = shared.config.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + bound + Duration::from_millis(200);
        while !shared.streams.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = shared.streams.lock().len();
        if left > 0 {
            tracing::warn!(
                streams = left,
                "streams still open after the shutdown bound; abandoning them"
            );
        }
        self.intake_task.abort();
    }
}

impl LeaderShared {
    /// Queue a heartbeat for the intake, waiting while the queue is full.
    pub async fn submit(&self, hb: Heartbeat) -> Result<(), &'static str> {
        if self.failed.load(Ordering::Relaxed) {
            return Err("the leader cannot persist changes and refuses new ones");
        }
        self.intake
            .send(hb)
            .await
            .map_err(|_| "the leader is stopping")
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}

async fn intake_loop(shared: Arc<LeaderShared>, mut rx: mpsc::Receiver<Heartbeat>) {
    let max = shared.config.intake_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, max).await == 0 {
            return;
        }
        // Applying and committing block for a while on big batches; keep
        // them off the async workers that serve the streams.
        let shared2 = shared.clone();
        let taken = std::mem::take(&mut batch);
        let result = tokio::task::spawn_blocking(move || apply_batch(&shared2, taken)).await;
        match result {
            Ok(Ok(returned)) => batch = returned,
            Ok(Err(e)) => {
                shared.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %format!("{e:#}"), "cannot persist region changes; the leader stops accepting them");
                return;
            }
            Err(e) => {
                shared.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "intake task failed");
                return;
            }
        }
    }
}

/// Apply, persist, publish. Returns the emptied batch buffer for reuse.
fn apply_batch(shared: &LeaderShared, mut batch: Vec<Heartbeat>) -> anyhow::Result<Vec<Heartbeat>> {
    let stats = &shared.stats;
    let taken = batch.len() as u64;
    let mut records = Vec::new();
    let mut write = WriteBatch {
        durable: true,
        ..Default::default()
    };
    {
        let mut store = shared.store.write();
        for hb in batch.drain(..) {
            match store.apply(&hb.region, hb.leader.id, fingerprint(&hb.leader, &hb.stats)) {
                Outcome::Applied { removed } => {
                    for id in removed {
                        write.delete(id);
                    }
                    let blob = store.encoded(hb.region.id).expect("just applied");
                    write.put_encoded(hb.region.id, hb.leader.id, blob);
                    records.push(Arc::new(Record {
                        region: hb.region,
                        leader: hb.leader,
                        stats: hb.stats,
                    }));
                }
                Outcome::Stale => {
                    stats.stale.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Unchanged => {
                    stats.unchanged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if records.is_empty() {
        stats.heartbeats.fetch_add(taken, Ordering::Relaxed);
        return Ok(batch);
    }
    let next = shared.ring.read().next_index() + records.len() as u64;
    write.next_index = Some(next);
    shared.storage.write(&write)?;
    stats
        .accepted
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    {
        let mut ring = shared.ring.write();
        for r in records {
            ring.push(r);
        }
    }
    shared.published.send_replace(next);
    // Counted once published, so "processed" means visible to followers.
    stats.heartbeats.fetch_add(taken, Ordering::Relaxed);
    Ok(batch)
}

/// The leader as the gRPC service sees it.
pub struct LeaderNode {
    pub shared: Arc<LeaderShared>,
    /// URL clients reach this node at (GetMembers).
    pub advertise: String,
}

impl crate::service::RegionSource for LeaderNode {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    fn readable(&self) -> Result<parking_lot::RwLockReadGuard<'_, RegionStore>, tonic::Status> {
        Ok(self.shared.store.read())
    }

    fn member(&self) -> regionsync_proto::pdpb::Member {
        crate::service::member(&self.shared.config.name, &self.advertise)
    }

    fn leader(&self) -> Option<&Arc<LeaderShared>> {
        Some(&self.shared)
    }
}

/// A leader serving gRPC on a listener: what `regionsync leader` runs, and
/// what the tests start on loopback.
pub struct RunningLeader {
    pub leader: Leader,
    pub server: crate::server::GrpcServer,
}

impl RunningLeader {
    pub async fn start(
        config: LeaderConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<RunningLeader> {
        let leader = Leader::start(config, policy)?;
        let addr = listener.local_addr()?;
        let node = Arc::new(LeaderNode {
            shared: leader.shared.clone(),
            advertise: format!("http://{addr}"),
        });
        let server = crate::server::GrpcServer::spawn(listener, node)?;
        Ok(RunningLeader { leader, server })
    }

    pub fn shared(&self) -> &Arc<LeaderShared> {
        &self.leader.shared
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// Streams first (each gets "server stopped"), then the server.
    pub async fn shutdown(self) {
        let bound = self.leader.shared.config.shutdown_timeout;
        self.leader.shutdown().await;
        self.server.stop(bound).await;
    }
}

impl LeaderShared {
    /// The status document of this leader.
    pub fn status(&self) -> crate::status::Status {
        let ring = self.ring.read().view();
        let (regions, digest) = {
            let store = self.store.read();
            (store.len() as u64, store.digest().hex())
        };
        let stats = &self.stats;
        let mut details = BTreeMap::new();
        details.insert(
            "heartbeats".into(),
            stats.heartbeats.load(Ordering::Relaxed),
        );
        details.insert("accepted".into(), stats.accepted.load(Ordering::Relaxed));
        details.insert("stale".into(), stats.stale.load(Ordering::Relaxed));
        details.insert("refused".into(), stats.refused.load(Ordering::Relaxed));
        details.insert("streams".into(), self.streams.lock().len() as u64);
        details.insert("history_capacity".into(), ring.capacity);
        crate::status::Status {
            role: "leader".into(),
            name: self.config.name.clone(),
            ready: !self.failed.load(Ordering::Relaxed),
            phase: if self.failed.load(Ordering::Relaxed) {
                "failed".into()
            } else {
                "serving".into()
            },
            cluster_id: self.cluster_id,
            first_index: ring.first_index,
            next_index: ring.next_index,
            regions,
            digest,
            policy: self.policy.info().into(),
            full_syncs: stats.full_syncs_by_reason(),
            details,
        }
    }
}

impl crate::admin::AdminNode for LeaderShared {
    fn status(&self) -> crate::status::Status {
        LeaderShared::status(self)
    }

    fn metrics(&self) -> String {
        let mut m = crate::metrics::Metrics::default();
        let ring = self.ring.read().view();
        let ring_len = self.ring.read().len();
        let stats = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.gauge("leader", "1 on a leader", 1);
        m.gauge(
            "regions",
            "Regions in the store",
            self.store.read().len() as i64,
        );
        m.gauge(
            "history_first_index",
            "Oldest index in the history ring",
            ring.first_index as i64,
        );
        m.gauge(
            "history_next_index",
            "Index of the next record",
            ring.next_index as i64,
        );
        m.gauge(
            "history_capacity",
            "Records the ring can hold",
            ring.capacity as i64,
        );
        m.gauge("history_length", "Records in the ring", ring_len as i64);
        m.counter(
            "heartbeats",
            "Region heartbeats processed (rate() is the intake rate)",
            load(&stats.heartbeats),
        );
        m.counter(
            "heartbeats_accepted",
            "Heartbeats that changed a region (one record each)",
            load(&stats.accepted),
        );
        m.counter(
            "heartbeats_stale",
            "Heartbeats ignored as stale",
            load(&stats.stale),
        );
        m.counter(
            "heartbeats_refused",
            "Malformed heartbeats refused",
            load(&stats.refused),
        );
        m.counter(
            "frames_sent",
            "SyncRegions frames sent",
            load(&stats.frames_sent),
        );
        m.counter(
            "bytes_sent",
            "SyncRegions bytes sent",
            load(&stats.bytes_sent),
        );
        m.counters(
            "full_syncs",
            "Full syncs by reason and outcome",
            stats
                .full_syncs
                .lock()
                .iter()
                .map(|((reason, outcome), n)| {
                    (
                        vec![("reason", reason.clone()), ("outcome", outcome.to_string())],
                        *n,
                    )
                }),
        );
        let streams: Vec<(String, u64)> = self
            .streams
            .lock()
            .values()
            .map(|e| (e.follower.clone(), e.cursor.load(Ordering::Relaxed)))
            .collect();
        m.gauges(
            "follower_lag_records",
            "Records a follower stream has yet to be sent",
            streams.into_iter().map(|(name, cursor)| {
                (
                    vec![("follower", name)],
                    ring.next_index.saturating_sub(cursor) as i64,
                )
            }),
        );
        m.policy(&self.policy);
        m.render()
    }

    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }
}
