//! The follower: a warm copy of the leader's regions that is either exactly
//! a set the leader had at some index, or says it is not ready (SPEC §3).
//!
//! The policy's phase machine decides what every frame means; this module
//! carries its decisions out against the cache, the follower's own history
//! ring (the leader's numbering, so a promoted follower needs no
//! renumbering) and the durable store ([`crate::storage`]).
//!
//! Full sync strategy, chosen for bounded memory: the first snapshot frame
//! clears the cache and the store and marks the store incomplete in one
//! durable transaction; snapshot and catch-up frames then write straight
//! into both; the completion frame claims the index and marks the store
//! complete, durably, in one transaction. Reads are refused throughout, and
//! a crash anywhere in between leaves an incomplete store, which asks for a
//! full sync (index 0) on restart. Staging a second copy would double the
//! memory of a million-region sync for no gain in safety.

mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::history::HistoryRing;
use crate::policy_runtime::{FollowerState, PolicyRuntime};
use crate::region_store::{Loader, RegionStore};
use crate::status::Status;
use crate::storage::{Storage, WriteBatch};

#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The leader's gRPC URL.
    pub leader: String,
    /// Store directory; `None` for a cache-only follower (`--memory-only`).
    pub data_dir: Option<PathBuf>,
    /// Expected cluster id (`--cluster-id`); otherwise learnt and kept.
    pub cluster_id: Option<u64>,
    pub name: String,
    /// Records kept in the follower's own history ring.
    pub history_capacity: usize,
    /// The leader's keepalive interval; three without a frame end the stream.
    pub keepalive: Duration,
    /// Bound on connecting to the leader.
    pub connect_timeout: Duration,
    /// Longest time between durable commits of history frames. Commits in
    /// between may be lost in a crash, never torn: the store then resumes
    /// from an older index and replays.
    pub durable_every: Duration,
}

impl FollowerConfig {
    pub fn new(leader: impl Into<String>, data_dir: Option<PathBuf>) -> Self {
        FollowerConfig {
            leader: leader.into(),
            data_dir,
            cluster_id: None,
            name: "follower".into(),
            history_capacity: 10_000,
            keepalive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            durable_every: Duration::from_millis(500),
        }
    }
}

/// Counters read by status and metrics.
#[derive(Debug, Default)]
pub struct FollowerStats {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub connects: AtomicU64,
    /// Full syncs received, by what triggered them.
    pub full_syncs: Mutex<BTreeMap<String, u64>>,
    /// Reconnects, by reason.
    pub reconnects: Mutex<BTreeMap<String, u64>>,
    /// Regions received so far in the running full sync.
    pub snapshot_progress: AtomicU64,
}

pub struct FollowerShared {
    pub config: FollowerConfig,
    pub policy: Arc<PolicyRuntime>,
    pub store: RwLock<RegionStore>,
    pub ring: RwLock<HistoryRing>,
    /// `None` for a cache-only follower, and after `close_storage`.
    storage: Mutex<Option<Storage>>,
    /// The policy's state of this follower, owned here and passed in whole.
    pub state: Mutex<FollowerState>,
    /// Mirror of `state.ready` for the read path.
    ready: AtomicBool,
    /// 0 until known.
    cluster_id: AtomicU64,
    /// Why the follower is not syncing, when it refuses to (e.g. a cluster
    /// id mismatch); shown in status.
    pub refusal: Mutex<Option<String>>,
    pub stats: FollowerStats,
    /// When history was last committed durably (see `durable_every`).
    last_durable: Mutex<std::time::Instant>,
    stopping: watch::Sender<bool>,
}

/// A running follower: the sync task plus its shared state.
pub struct Follower {
    pub shared: Arc<FollowerShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Open (or create) the store, load what it holds, start syncing.
    pub fn start(config: FollowerConfig, policy: Arc<PolicyRuntime>) -> anyhow::Result<Follower> {
        let shared = Arc::new(FollowerShared::open(config, policy)?);
        let task = tokio::spawn(stream::run(shared.clone()));
        Ok(Follower { shared, task })
    }

    pub async fn shutdown(self) {
        self.shared.stopping.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            tracing::warn!("follower sync task did not stop within 3 s");
        }
        self.shared.flush_and_close_storage();
    }

    /// Stop at once, as a crash would: whatever was not committed is lost
    /// (tests use this to cut a full sync short).
    pub fn abort(self) {
        self.task.abort();
        self.shared.close_storage();
    }
}

impl FollowerShared {
    fn open(config: FollowerConfig, policy: Arc<PolicyRuntime>) -> anyhow::Result<Self> {
        let mut store = RegionStore::new();
        let (storage, state, kept_cluster) = match &config.data_dir {
            None => (None, FollowerState::opened(0, false), None),
            Some(dir) => {
                let storage = Storage::open(dir)?;
                let meta = storage.meta()?;
                let mut complete = meta.complete;
                if complete {
                    let mut loader = Loader::default();
                    let loaded = storage.load_regions(|r, leader| loader.add(&r, leader));
                    store = loader.finish();
                    if let Err(e) = loaded {
                        // A damaged store is not an outage: forget it and
                        // take a full sync (its marker is cleared first).
                        tracing::warn!(error = %format!("{e:#}"), "stored regions are unreadable; a full sync will replace them");
                        store.clear();
                        complete = false;
                    }
                }
                if !complete {
                    store.clear();
                }
                tracing::info!(
                    data_dir = %dir.display(), regions = store.len(), next_index = meta.next_index,
                    complete, "follower store opened"
                );
                (
                    Some(storage),
                    FollowerState::opened(meta.next_index, complete),
                    meta.cluster_id,
                )
            }
        };
        let cluster_id = match (kept_cluster, config.cluster_id) {
            (Some(kept), Some(flag)) if kept != flag => bail!(
                "data directory belongs to cluster {kept}, but --cluster-id says {flag}; refusing to start"
            ),
            (kept, flag) => kept.or(flag).unwrap_or(0),
        };
        let ring = HistoryRing::new(config.history_capacity, state.next_index);
        Ok(FollowerShared {
            ready: AtomicBool::new(state.ready),
            state: Mutex::new(state),
            store: RwLock::new(store),
            ring: RwLock::new(ring),
            storage: Mutex::new(storage),
            policy,
            cluster_id: AtomicU64::new(cluster_id),
            refusal: Mutex::new(None),
            stats: FollowerStats::default(),
            last_durable: Mutex::new(std::time::Instant::now()),
            stopping: watch::channel(false).0,
            config,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }

    fn set_state(&self, state: FollowerState) {
        *self.state.lock() = state;
        self.ready.store(state.ready, Ordering::Release);
    }

    /// Write a batch to the durable store, if this follower has one.
    fn persist(&self, batch: &WriteBatch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match &*self.storage.lock() {
            Some(storage) => storage.write(batch).with_context(|| {
                format!("writing the follower store {}", storage.path().display())
            }),
            None if self.config.data_dir.is_some() => bail!("the follower store is closed"),
            None => Ok(()),
        }
    }

    /// Close the durable store now (waiting for a write in progress); later
    /// writes fail. Lets a stopped follower's directory be reopened at once
    /// even while stray references to this state remain.
    pub fn close_storage(&self) {
        self.storage.lock().take();
    }

    /// A clean stop: make the newest commit durable, then close.
    fn flush_and_close_storage(&self) {
        let storage = self.storage.lock().take();
        if let Some(Err(e)) = storage.map(|s| s.flush()) {
            tracing::warn!(error = %format!("{e:#}"), "could not flush the follower store at stop; it resumes from its last durable index");
        }
    }

    pub fn status(&self) -> Status {
        let state = *self.state.lock();
        let ring = self.ring.read().view();
        let (regions, digest) = {
            let store = self.store.read();
            (store.len() as u64, store.digest().hex())
        };
        let phase = if self.refusal.lock().is_some() {
            "refused".to_string()
        } else {
            state.phase.as_str().to_string()
        };
        let stats = &self.stats;
        let mut details = BTreeMap::new();
        details.insert("frames".into(), stats.frames.load(Ordering::Relaxed));
        details.insert("bytes".into(), stats.bytes.load(Ordering::Relaxed));
        details.insert("connects".into(), stats.connects.load(Ordering::Relaxed));
        details.insert(
            "snapshot_regions".into(),
            stats.snapshot_progress.load(Ordering::Relaxed),
        );
        for (reason, n) in stats.reconnects.lock().iter() {
            details.insert(format!("reconnects_{reason}"), *n);
        }
        Status {
            role: "follower".into(),
            name: self.config.name.clone(),
            ready: state.ready,
            phase,
            cluster_id: self.cluster_id(),
            first_index: ring.first_index,
            next_index: state.next_index,
            regions,
            digest,
            policy: self.policy.info().into(),
            full_syncs: stats.full_syncs.lock().clone(),
            details,
        }
    }
}

/// The follower as the gRPC service sees it: reads only, and only when ready.
pub struct FollowerNode {
    pub shared: Arc<FollowerShared>,
    pub advertise: String,
}

impl crate::service::RegionSource for FollowerNode {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id()
    }

    fn readable(&self) -> Result<parking_lot::RwLockReadGuard<'_, RegionStore>, tonic::Status> {
        // Readiness is checked under the store's lock, and a full sync drops
        // readiness under the write lock before it touches the store.
        let store = self.shared.store.read();
        if self.shared.is_ready() {
            Ok(store)
        } else {
            let state = *self.shared.state.lock();
            Err(tonic::Status::unavailable(format!(
                "follower {} is not ready ({}): it serves reads only once its copy of the \
                 leader's regions is complete",
                self.shared.config.name,
                state.phase.as_str()
            )))
        }
    }

    fn member(&self) -> regionsync_proto::pdpb::Member {
        crate::service::member(&self.shared.config.name, &self.advertise)
    }
}

impl crate::admin::AdminNode for FollowerShared {
    fn status(&self) -> Status {
        FollowerShared::status(self)
    }

    fn metrics(&self) -> String {
        let mut m = crate::metrics::Metrics::default();
        let status = self.status();
        let stats = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.gauge("leader", "1 on a leader", 0);
        m.gauge(
            "ready",
            "1 when the follower serves reads",
            i64::from(status.ready),
        );
        m.gauge("regions", "Regions in the cache", status.regions as i64);
        m.gauge(
            "history_first_index",
            "Oldest index in the follower's ring",
            status.first_index as i64,
        );
        m.gauge(
            "history_next_index",
            "The follower's next index",
            status.next_index as i64,
        );
        m.gauge(
            "history_capacity",
            "Records the ring can hold",
            self.config.history_capacity as i64,
        );
        m.gauge(
            "history_length",
            "Records in the ring",
            self.ring.read().len() as i64,
        );
        m.counter(
            "frames_received",
            "SyncRegions frames received",
            load(&stats.frames),
        );
        m.counter(
            "bytes_received",
            "SyncRegions bytes received",
            load(&stats.bytes),
        );
        m.gauge(
            "snapshot_regions_received",
            "Regions received in the current or last full sync",
            load(&stats.snapshot_progress) as i64,
        );
        m.counters(
            "full_syncs",
            "Full syncs received, by trigger",
            status
                .full_syncs
                .into_iter()
                .map(|(k, v)| (vec![("reason", k)], v)),
        );
        m.counters(
            "reconnects",
            "Sync stream ends, by reason",
            stats
                .reconnects
                .lock()
                .clone()
                .into_iter()
                .map(|(k, v)| (vec![("reason", k)], v)),
        );
        m.policy(&self.policy);
        m.render()
    }

    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }
}

/// A follower serving reads over gRPC: what `regionsync follower` runs.
pub struct RunningFollower {
    pub follower: Follower,
    pub server: crate::server::GrpcServer,
}

impl RunningFollower {
    pub async fn start(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<RunningFollower> {
        let follower = Follower::start(config, policy)?;
        let addr = listener.local_addr()?;
        let node = Arc::new(FollowerNode {
            shared: follower.shared.clone(),
            advertise: format!("http://{addr}"),
        });
        let server = crate::server::GrpcServer::spawn(listener, node)?;
        Ok(RunningFollower { follower, server })
    }

    pub fn shared(&self) -> &Arc<FollowerShared> {
        &self.follower.shared
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    pub async fn shutdown(self) {
        self.follower.shutdown().await;
        self.server.stop(Duration::from_secs(1)).await;
    }

    /// Stop without any orderly step, as a crash would.
    pub async fn kill(self) {
        self.follower.abort();
        self.server.stop(Duration::from_millis(100)).await;
    }
}
