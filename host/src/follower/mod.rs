//! The follower: a warm copy of the leader's regions that is either exactly
//! a set the leader had at some index, or says it is not ready
//! (docs/protocol.md §3).
//!
//! The policy's phase machine decides what every frame means; this module
//! carries its decisions out against the cache, the follower's own history
//! ring (the leader's numbering, so a promoted follower needs no
//! renumbering) and the durable store ([`crate::storage`]):
//! - [`stream`]: sessions with the leader, and why each one ended;
//! - `apply`: one frame's decision, step by step;
//! - `report`: status and metrics; `writer`: a sync's data written behind;
//! - `lineage` and `handover`: terms and role changes under etcd (§8);
//! - [`config`]: the tunables.
//!
//! Why a full sync writes straight into a cleared store, and a crash leaves
//! it incomplete: docs/design.md, "Durability and readiness".

mod apply;
pub mod config;
mod handover;
mod lineage;
pub mod received;
mod report;
pub mod session;
pub mod stream;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::history::HistoryRing;
use crate::lineage::Lineage;
use crate::policy_runtime::{ConnectPlan, FollowerState, PolicyRuntime, StreamFacts};
use crate::region_store::{Loader, RegionStore};
use crate::storage::{Meta, Storage, StorageError, WriteBatch};
use lineage::Lineages;

pub use config::{Announce, FollowerConfig};
pub use received::Received;
pub use report::{FollowerStats, FullSyncTrigger};
pub use stream::{EndReason, Ended};

/// Why a follower cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store cannot be opened or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store belongs to another cluster than `--cluster-id` says.
    #[error(
        "data directory belongs to cluster {kept}, but --cluster-id says {flag}; refusing to start"
    )]
    ClusterMismatch {
        /// The cluster id the store keeps.
        kept: u64,
        /// The cluster id given.
        flag: u64,
    },
}

/// Everything the follower's tasks share, behind methods.
///
/// Locks, in the one order they nest: the store (an apply holds its write
/// lock for the whole frame), then the ring. `sync` is a leaf: nothing else
/// is taken while it is held, and it is held for a few field reads or
/// writes only. `storage` and `behind` are taken alone. Readiness (`ready`)
/// is an atomic that changes under the store's write lock, so a reader that
/// holds the read lock sees it settled (`read_if_ready`).
pub struct FollowerShared {
    /// The tunables it started with.
    config: FollowerConfig,
    /// Every decision comes from here.
    policy: Arc<PolicyRuntime>,
    /// The copy of the leader's regions.
    store: RwLock<RegionStore>,
    /// The follower's own ring, with the leader's numbering.
    ring: RwLock<HistoryRing>,
    /// `None` for a cache-only follower, and after `close_storage`.
    storage: Mutex<Option<Arc<Storage>>>,
    /// A full sync's data batches being written behind the apply (`writer`).
    behind: Mutex<Option<writer::Behind>>,
    /// What the sync path alone writes, under one lock (`SyncState`).
    sync: Mutex<SyncState>,
    /// Mirror of `state.ready` for the read path.
    ready: AtomicBool,
    /// A sync stream with the leader is open now.
    in_session: watch::Sender<bool>,
    /// 0 until known.
    cluster_id: AtomicU64,
    /// The store keeps the cluster id (or there is no store to keep it).
    cluster_kept: AtomicBool,
    /// Counters for status and metrics.
    stats: FollowerStats,
    stopping: watch::Sender<bool>,
    /// The leader's URL now; a change ends the session and the next one
    /// dials the new leader (etcd discovery re-points it). Empty: no leader
    /// is known, so nothing is dialled.
    leader: watch::Sender<String>,
    /// Held by the frame being applied, from before it starts until it has
    /// ended, even when the session that received it is dropped (a leader
    /// change, a stop): the next session, a hand-over and a shutdown take
    /// it first, so an apply never runs beside them.
    apply_gate: Arc<tokio::sync::Mutex<()>>,
    /// Every apply waits this long, in milliseconds, with the store's write
    /// lock held (fault injection: a slow disk or a huge frame).
    apply_pause_ms: AtomicU64,
}

/// The follower's sync state: written by the one task that receives and
/// applies frames (a session, or a hand-over while none runs), read by
/// status, readiness refusals and the HA supervisor. One lock, never held
/// across I/O or another lock's wait: the store's lock and the readiness
/// flag stay apart for readers, and the writer behind (`behind`) keeps its
/// own, since queueing a batch may wait for the disk.
struct SyncState {
    /// The policy's state of this follower, owned here and passed in whole.
    policy: FollowerState,
    /// What the host itself knows of the store and the stream; the policy's
    /// answers are checked against it (`StreamFacts`), never trusted alone.
    facts: StreamFacts,
    /// Which leaderships wrote the store's records (`crate::lineage`).
    lineage: Lineages,
    /// When history was last committed durably (see `durable_every`).
    last_durable: std::time::Instant,
    /// Why the follower is not syncing, when it refuses to (e.g. a cluster
    /// id mismatch); shown in status.
    refusal: Option<String>,
}

/// The cache and the phase machine's state for what `storage` holds: its
/// regions when it is complete (or part-way through a delta, which a delta
/// from its index completes), nothing otherwise.
fn load(storage: &Storage, meta: &Meta) -> (RegionStore, FollowerState) {
    let mut complete = meta.complete;
    let mut resumable = meta.resumable && !complete;
    let mut store = RegionStore::new();
    if complete || resumable {
        let mut loader = Loader::default();
        let loaded = storage.load_regions(|r, leader, changed| loader.add(&r, leader, changed));
        store = loader.finish();
        if let Err(e) = loaded {
            // A damaged store is not an outage: forget it and take a full
            // sync (its marker is cleared first).
            tracing::warn!(error = %crate::error_chain(&e), "stored regions are unreadable; a full sync will replace them");
            store.clear();
            complete = false;
            resumable = false;
        }
    }
    store.set_applied_next(meta.next_index);
    // Removals are kept in memory only (`region_store::tombstones`): once
    // promoted, this store can send deltas from its index on, not before.
    store.set_delta_floor(meta.next_index);
    let mut state = FollowerState::opened(meta.next_index, complete);
    state.resumable = resumable;
    (store, state)
}

fn new_ring(config: &FollowerConfig, next_index: u64) -> HistoryRing {
    HistoryRing::new(config.history_capacity, config.history_bytes, next_index)
}

/// A running follower: the sync task plus its shared state.
pub struct Follower {
    /// State shared with the sync task.
    pub shared: Arc<FollowerShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Open (or create) the store, load what it holds, start syncing.
    pub fn start(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
    ) -> Result<Follower, StartError> {
        let shared = Arc::new(FollowerShared::open(config, policy)?);
        let task = tokio::spawn(stream::run(shared.clone()));
        Ok(Follower { shared, task })
    }

    /// Stop syncing, then make the newest commit durable and close the store.
    pub async fn shutdown(self) {
        self.shared.stopping.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            tracing::warn!("follower sync task did not stop within 3 s");
        }
        let _applied = self.shared.applies_done().await;
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
    /// Open the store and state without a sync task: frames are then fed by
    /// [`FollowerShared::receive`] after [`FollowerShared::begin_stream`],
    /// exactly as the task would (fuzzing and tests drive a follower so).
    pub fn open_detached(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
    ) -> Result<Arc<Self>, StartError> {
        Self::open(config, policy).map(Arc::new)
    }

    /// Open `storage` (a simulated disk's, say) without a sync task, as
    /// [`FollowerShared::open_detached`] opens the data directory's.
    pub fn open_on(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        storage: Storage,
    ) -> Result<Arc<Self>, StartError> {
        let meta = storage.meta()?;
        let (store, state) = load(&storage, &meta);
        Self::assemble(config, policy, Some(storage), store, state, None).map(Arc::new)
    }

    /// A new stream: the policy says what to ask for, and what happened on
    /// the last stream stops counting.
    pub fn begin_stream(&self) -> ConnectPlan {
        let (mut before, facts) = {
            let mut sync = self.sync.lock();
            sync.facts.new_stream();
            (sync.policy, sync.facts)
        };
        let announce = self.config.announce;
        if announce == Announce::Nothing {
            // Without deltas a store part-way through one cannot be
            // finished: it is rebuilt by a full sync.
            before.resumable = false;
        }
        let mut plan = self.policy.on_connect(before, &facts);
        plan.ask_delta &= announce != Announce::Nothing;
        plan.ask_verify &= announce == Announce::Policy;
        self.set_state(plan.state);
        plan
    }

    /// Carry out one frame of a stream that asked for `asked` and was
    /// announced as `announced`; `Some` when the stream ends. A storage
    /// error leaves cache and store equal again (the cache is reloaded).
    pub fn receive(
        &self,
        frame: impl Into<Received>,
        asked: u64,
        announced: crate::policy_runtime::AnnouncedSync,
    ) -> Result<Option<stream::Ended>, StorageError> {
        apply::on_frame(self, frame.into(), asked, announced).inspect_err(|e| {
            tracing::error!(error = %crate::error_chain(e), "cannot apply a frame; the store is left as its last commit");
        })
    }

    fn open(config: FollowerConfig, policy: Arc<PolicyRuntime>) -> Result<Self, StartError> {
        match &config.data_dir {
            None => Self::assemble(
                config,
                policy,
                None,
                RegionStore::new(),
                FollowerState::opened(0, false),
                None,
            ),
            Some(dir) => {
                let storage = Storage::open(dir)?;
                let meta = storage.meta()?;
                let (store, state) = load(&storage, &meta);
                tracing::info!(
                    data_dir = %dir.display(), regions = store.len(), next_index = meta.next_index,
                    complete = state.complete, resumable = state.resumable, "follower store opened"
                );
                Self::assemble(config, policy, Some(storage), store, state, None)
            }
        }
    }

    fn assemble(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        storage: Option<Storage>,
        store: RegionStore,
        state: FollowerState,
        ring: Option<HistoryRing>,
    ) -> Result<Self, StartError> {
        let (kept_cluster, held) = match &storage {
            Some(s) => (s.meta()?.cluster_id, s.lineage()?),
            None => (None, Lineage::default()),
        };
        let cluster_id = match (kept_cluster, config.cluster_id) {
            (Some(kept), Some(flag)) if kept != flag => {
                return Err(StartError::ClusterMismatch { kept, flag });
            }
            (kept, flag) => kept.or(flag).unwrap_or(0),
        };
        let ring = ring.unwrap_or_else(|| new_ring(&config, state.next_index));
        Ok(FollowerShared {
            leader: watch::channel(config.leader.clone()).0,
            sync: Mutex::new(SyncState {
                policy: state,
                facts: StreamFacts::of_store(&state),
                lineage: Lineages {
                    held,
                    offered: None,
                },
                last_durable: std::time::Instant::now(),
                refusal: None,
            }),
            ready: AtomicBool::new(state.ready),
            in_session: watch::Sender::new(false),
            store: RwLock::new(store),
            ring: RwLock::new(ring),
            storage: Mutex::new(storage.map(Arc::new)),
            behind: Mutex::new(None),
            policy,
            cluster_id: AtomicU64::new(cluster_id),
            cluster_kept: AtomicBool::new(kept_cluster.is_some() || config.data_dir.is_none()),
            stats: FollowerStats::default(),
            stopping: watch::channel(false).0,
            apply_gate: Arc::new(tokio::sync::Mutex::new(())),
            apply_pause_ms: AtomicU64::new(0),
            config,
        })
    }

    /// An empty ring whose next record gets `next_index`.
    fn new_ring(&self, next_index: u64) -> HistoryRing {
        new_ring(&self.config, next_index)
    }

    /// Dial `url` from now on; the session with another leader ends.
    pub fn point_at(&self, url: &str) {
        self.leader.send_if_modified(|now| {
            let changed = now != url;
            if changed {
                url.clone_into(now);
            }
            changed
        });
    }

    /// The leader's URL now (empty when none is known).
    pub fn leader_url(&self) -> String {
        self.leader.borrow().clone()
    }

    /// A sync stream with the leader is open: what it sends is still being
    /// applied (a node about to lead waits for it to end, `crate::ha`).
    pub fn in_session(&self) -> bool {
        *self.in_session.borrow()
    }

    /// Wait until no sync stream is open, at most `bound`; whether none is.
    pub async fn session_ended_within(&self, bound: std::time::Duration) -> bool {
        let mut open = self.in_session.subscribe();
        tokio::time::timeout(bound, open.wait_for(|open| !*open))
            .await
            .is_ok()
    }

    /// Reads may be served.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The tunables it started with.
    pub fn config(&self) -> &FollowerConfig {
        &self.config
    }

    /// The policy runtime every decision comes from.
    pub fn policy(&self) -> &Arc<PolicyRuntime> {
        &self.policy
    }

    /// Its counters, for status and metrics.
    pub fn stats(&self) -> &FollowerStats {
        &self.stats
    }

    /// Run `read` on the regions as they are now (under the store's read
    /// lock: keep it short).
    pub fn read_regions<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R {
        read(&self.store.read())
    }

    /// Run `read` on the regions if reads may be served, with readiness
    /// checked under the store's lock (a full sync drops readiness under the
    /// write lock before it touches the store); the state when they may not.
    pub fn read_if_ready<R>(
        &self,
        read: impl FnOnce(&RegionStore) -> R,
    ) -> Result<R, FollowerState> {
        let store = self.store.read();
        if self.is_ready() {
            Ok(read(&store))
        } else {
            Err(self.state())
        }
    }

    /// The policy's state of this follower now (its phase, index, and
    /// whether it is complete and ready).
    pub fn state(&self) -> FollowerState {
        self.sync.lock().policy
    }

    /// Why the follower refuses to sync, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.sync.lock().refusal.clone()
    }

    /// Say why the follower refuses to sync (`None`: it no longer does).
    fn set_refusal(&self, why: Option<String>) {
        self.sync.lock().refusal = why;
    }

    /// The cluster this follower belongs to (0 until known).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }

    fn set_state(&self, state: FollowerState) {
        self.sync.lock().policy = state;
        self.ready.store(state.ready, Ordering::Release);
    }

    /// Write a batch to the durable store, if this follower has one, after
    /// every batch written behind has landed (writes stay in order).
    fn persist(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.drain_behind()?;
        if batch.is_empty() {
            return Ok(());
        }
        match (&*self.storage.lock(), &self.config.data_dir) {
            (Some(storage), _) => storage.write(batch),
            (None, Some(dir)) => Err(StorageError::Closed(dir.clone())),
            (None, None) => Ok(()),
        }
    }

    /// Make every apply from now on wait `pause` with the store's write lock
    /// held (fault injection: a slow disk, a huge frame).
    pub fn pause_applies(&self, pause: Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.apply_pause_ms.store(ms, Ordering::Release);
    }

    /// Wait until no frame is being applied, and keep it so while the
    /// guard lives.
    pub(crate) async fn applies_done(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.apply_gate.lock().await
    }

    /// The gate a frame's apply holds until it ends (`apply_gate`).
    pub(crate) async fn enter_apply(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.apply_gate.clone().lock_owned().await
    }

    /// After a failed write: make the cache what the store holds again, so
    /// that the two never differ (the cache was changed before the commit
    /// that failed). Readiness drops first, under the store's write lock;
    /// the state is the store's, so the next connect asks for what the store
    /// can back. If the store cannot even be read, the follower holds
    /// nothing and asks for a full sync.
    ///
    /// The caller holds the store's write lock (it changed the cache under
    /// it), so no reader sees the cache between the failure and this.
    pub(crate) fn recover_locked(&self, store: &mut RegionStore) {
        self.ready.store(false, Ordering::Release);
        // What was queued behind lands (or fails) before the store is read.
        let _ = self.drain_behind();
        let storage = self.storage.lock();
        let (cache, state) = match storage.as_ref().map(|s| (s, s.meta())) {
            Some((s, Ok(meta))) => load(s, &meta),
            Some((_, Err(e))) => {
                tracing::error!(error = %crate::error_chain(&e), "the follower store cannot be read after a failed write; starting over with a full sync");
                let mut state = FollowerState::opened(0, false);
                state.force_full_sync = true;
                (RegionStore::new(), state)
            }
            // A cache-only follower writes nothing, so nothing can fail.
            None if self.config.data_dir.is_none() => return,
            // The store was closed (a stop, a hand-over) under this apply:
            // the cache may hold what was never written, and nothing can be
            // read back. Hold nothing and claim nothing.
            None => {
                tracing::error!(
                    follower = %self.config.name,
                    "a write failed after the store was closed; the cache is cleared and claims no index"
                );
                let mut state = FollowerState::opened(0, false);
                state.force_full_sync = true;
                (RegionStore::new(), state)
            }
        };
        let held = storage
            .as_ref()
            .and_then(|s| s.lineage().ok())
            .unwrap_or_default();
        drop(storage);
        *store = cache;
        *self.ring.write() = self.new_ring(state.next_index);
        tracing::warn!(
            follower = %self.config.name, regions = store.len(), next_index = state.next_index,
            complete = state.complete, "cache reloaded from the store after a failed write"
        );
        {
            let mut sync = self.sync.lock();
            sync.lineage.held = held;
            sync.facts = StreamFacts::of_store(&state);
        }
        self.set_state(state);
    }

    /// A clean stop: make the newest commit durable, then close.
    fn flush_and_close_storage(&self) {
        if let Err(e) = self.drain_behind() {
            tracing::warn!(error = %crate::error_chain(&e), "a full sync's data could not be written; the store stays incomplete");
        }
        let storage = self.storage.lock().take();
        if let Some(Err(e)) = storage.map(|s| s.flush()) {
            tracing::warn!(error = %crate::error_chain(&e), "could not flush the follower store at stop; it resumes from its last durable index");
        }
    }
}
