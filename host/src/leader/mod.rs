//! The leader: the authoritative region store, the history ring, the intake
//! that feeds them and the follower streams that read them
//! (docs/protocol.md §2).
//!
//! - [`intake`]: the one task that writes (apply, commit, then publish);
//! - [`sync_stream`]: one task per follower stream, reading only;
//! - [`frames`]: the frames those streams send;
//! - [`report`]: status and metrics; [`stats`]: the counters behind them;
//! - [`config`]: the tunables.
//!
//! This module knows nothing of gRPC serving or of the admin interface: the
//! `role` module adapts a [`Leader`] to both.

pub mod config;
pub mod fence;
pub mod frames;
pub mod intake;
mod report;
pub mod stats;
pub mod sync_stream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc, watch};
use xxhash_rust::xxh3::xxh3_64;

use crate::handover::Handover;
use crate::history::{HistoryRing, Record};
use crate::lineage::Lineage;
use crate::policy_runtime::PolicyRuntime;
use crate::region_store::{Loader, RegionStore};
use crate::storage::{Meta, Storage, StorageError, WriteBatch};
use crate::tasks::Tasks;

pub use config::{DigestTap, LeaderConfig};
pub use fence::Fence;
pub use intake::IntakeError;
pub use stats::{FullSyncOutcome, LeaderStats, StreamEntry};

/// Why a leader cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store cannot be opened, read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store belongs to another cluster than `--cluster-id` says.
    #[error("data directory {} belongs to cluster {kept}, not {flag}", dir.display())]
    ClusterMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The cluster id the store keeps.
        kept: u64,
        /// The cluster id given.
        flag: u64,
    },
    /// The store is not a complete set (a follower's data directory left
    /// mid-sync): leading it would serve part of a cluster as all of it.
    #[error(
        "data directory {} holds an incomplete copy ({regions} regions, sync toward index {next_index} unfinished); a leader serves only a complete set: start it as a follower, or give the leader an empty directory", dir.display()
    )]
    Incomplete {
        /// The data directory.
        dir: PathBuf,
        /// Regions it holds.
        regions: usize,
        /// The index its unfinished sync was for.
        next_index: u64,
    },
}

/// Everything the leader's tasks share, behind methods: the leader's own
/// modules (intake, streams, reports) reach the fields, everyone else asks.
///
/// The store and the ring are locked one at a time, never one inside the
/// other: the intake applies a batch to the store, then numbers its records
/// in the ring; a stream pins the ring, then reads the store.
pub struct LeaderShared {
    /// The tunables it started with.
    config: LeaderConfig,
    /// The cluster this leader serves (kept in the store).
    cluster_id: u64,
    /// The authoritative regions.
    store: RwLock<RegionStore>,
    /// The last accepted changes, numbered.
    ring: RwLock<HistoryRing>,
    /// The leaderships its index passed through, its own last when elected
    /// through etcd (`crate::lineage`).
    lineage: Lineage,
    /// The durable store.
    storage: Storage,
    /// Every decision comes from here.
    policy: Arc<PolicyRuntime>,
    /// Counters for status and metrics.
    stats: LeaderStats,
    /// next_index after each published batch; streams wait on it.
    published: watch::Sender<u64>,
    /// Set once: the leader is stopping.
    stopping: watch::Sender<bool>,
    /// Full syncs streaming now (for admission).
    full_syncs_running: sync_stream::Running,
    /// Open follower streams, by stream id.
    streams: Mutex<HashMap<u64, Arc<StreamEntry>>>,
    /// The streams' tasks, counted until they let go of this state.
    stream_tasks: Tasks,
    /// Notified when a stream's cursor moves or a stream ends.
    stream_progress: Notify,
    /// Id of the next stream.
    next_stream_id: AtomicU64,
    /// The intake failed to persist; the leader no longer accepts changes.
    failed: AtomicBool,
    /// The leader is handing over (etcd): it takes no new change, but what
    /// it is committing is published.
    closing: AtomicBool,
    /// 10^`flow_round_digits`: flow is compared in multiples of this.
    flow_divisor: u64,
    /// RegionHeartbeat streams open now, counted until their handlers let
    /// go of this state.
    heartbeat_streams: Tasks,
    intake: mpsc::Sender<Record>,
}

/// A running leader (without its gRPC server; see `node`).
pub struct Leader {
    /// State shared with the intake and the streams.
    pub shared: Arc<LeaderShared>,
    intake_task: tokio::task::JoinHandle<()>,
}

/// The term of a static leader's start: the wall-clock time in
/// microseconds, so that later starts get larger terms as etcd's revisions
/// do, and never below `newest_held`, the newest term its store holds.
pub fn static_term(newest_held: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    now.max(newest_held.saturating_add(1))
}

/// A cluster id for a new cluster: unique enough across clusters, never 0.
fn new_cluster_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}-{}", now.as_nanos(), std::process::id());
    (xxh3_64(seed.as_bytes()) >> 1).max(1)
}

/// The leader's regions as `storage` holds them, with its numbering: what a
/// leader starts from, and what it goes back to after a failed commit.
pub(crate) fn load(storage: &Storage, meta: &Meta) -> Result<RegionStore, StorageError> {
    let mut loader = Loader::default();
    storage.load_regions(|region, leader, changed| loader.add(&region, leader, changed))?;
    let mut store = loader.finish();
    // A fresh leader numbers from 1, so that index 0 always means "I have
    // nothing" on the wire.
    let next_index = meta.next_index.max(1);
    store.set_applied_next(next_index);
    // Changed regions are tracked on disk (each row keeps its change index),
    // removals only in memory (`region_store::tombstones`): a store loaded
    // from disk can say what was removed only from here on, so a delta or a
    // catch-up from before here is a full sync.
    store.set_delta_floor(next_index);
    Ok(store)
}

/// The store holds something that is not a complete set: regions or an
/// index of a sync that never completed. An empty, never-synced store is
/// not incomplete (a new leader's).
fn incomplete(meta: &Meta, store: &RegionStore) -> bool {
    !meta.complete && (meta.next_index > 0 || meta.resumable || !store.is_empty())
}

impl Leader {
    /// Open the store, load regions and numbering, and start the intake.
    pub fn start(config: LeaderConfig, policy: Arc<PolicyRuntime>) -> Result<Leader, StartError> {
        let storage = Storage::open(&config.data_dir)?;
        let mut meta = storage.meta()?;
        let mut store = load(&storage, &meta)?;
        if config.clear_incomplete && incomplete(&meta, &store) {
            tracing::warn!(
                regions = store.len(), next_index = meta.next_index, data_dir = %config.data_dir.display(),
                "the store holds an incomplete copy; cleared to lead as an empty node"
            );
            storage.write(&WriteBatch {
                reset: true,
                next_index: Some(0),
                resumable: Some(false),
                lineage: Some(Lineage::default()),
                durable: true,
                ..Default::default()
            })?;
            meta = storage.meta()?;
            store = load(&storage, &meta)?;
        }
        let ring = HistoryRing::new(
            config.history_capacity,
            config.history_bytes,
            store.applied_next(),
        );
        Leader::start_from(
            config,
            policy,
            Handover {
                storage,
                store,
                ring,
            },
        )
    }

    /// Start from what another role handed over (a promoted follower's warm
    /// store and ring), continuing its numbering; with `config.term`, as the
    /// leadership of that term.
    pub fn start_from(
        config: LeaderConfig,
        policy: Arc<PolicyRuntime>,
        handover: Handover,
    ) -> Result<Leader, StartError> {
        let Handover {
            storage,
            mut store,
            ring,
        } = handover;
        let meta = storage.meta()?;
        if incomplete(&meta, &store) {
            return Err(StartError::Incomplete {
                dir: config.data_dir.clone(),
                regions: store.len(),
                next_index: meta.next_index,
            });
        }
        let cluster_id = match (meta.cluster_id, config.cluster_id) {
            (Some(kept), Some(flag)) if kept != flag => {
                return Err(StartError::ClusterMismatch {
                    dir: config.data_dir.clone(),
                    kept,
                    flag,
                });
            }
            (Some(kept), _) => kept,
            (None, flag) => flag.unwrap_or_else(new_cluster_id),
        };
        // A fresh leader numbers from 1, so that index 0 always means "I
        // have nothing" on the wire (a promoted empty store included).
        if store.applied_next() == 0 {
            store.set_applied_next(1);
        }
        if store.delta_floor() == 0 {
            store.set_delta_floor(store.applied_next());
        }
        let (loaded, next_index, delta_floor) =
            (store.len(), store.applied_next(), store.delta_floor());
        let ring = if ring.next_index() == next_index {
            ring.rebounded(config.history_capacity, config.history_bytes)
        } else {
            HistoryRing::new(config.history_capacity, config.history_bytes, next_index)
        };
        let held = storage.lineage()?;
        // Every leadership has a term: etcd's, or, for a static leader, one
        // of this start's own, so that a fork of this store (a restored
        // backup, a copied directory) is told apart from it (`crate::lineage`).
        let term = config.term.unwrap_or_else(|| static_term(held.latest()));
        let lineage = held.continued(term, next_index);
        storage.write(&WriteBatch {
            next_index: Some(next_index),
            cluster_id: Some(cluster_id),
            complete: Some(true),
            resumable: Some(false),
            delta_floor: Some(delta_floor),
            lineage: Some(lineage.clone()),
            durable: true,
            ..Default::default()
        })?;
        tracing::info!(
            cluster_id, regions = loaded, next_index, delta_floor, history = ring.len(),
            term = ?config.term, lineage = %lineage, data_dir = %config.data_dir.display(),
            "leader store opened"
        );
        let (intake, rx) = mpsc::channel(config.intake_queue.max(1));
        let shared = Arc::new(LeaderShared {
            cluster_id,
            store: RwLock::new(store),
            ring: RwLock::new(ring),
            lineage,
            flow_divisor: 10u64.saturating_pow(config.flow_round_digits),
            storage,
            policy,
            stats: LeaderStats::default(),
            published: watch::channel(next_index).0,
            stopping: watch::channel(false).0,
            full_syncs_running: sync_stream::Running::default(),
            streams: Mutex::new(HashMap::new()),
            stream_tasks: Tasks::default(),
            stream_progress: Notify::new(),
            next_stream_id: AtomicU64::new(1),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            heartbeat_streams: Tasks::default(),
            intake,
            config,
        });
        let intake_task = tokio::spawn(intake::run(shared.clone(), rx));
        Ok(Leader {
            shared,
            intake_task,
        })
    }

    /// Stop as [`Leader::shutdown`] does, then hand the store, the regions
    /// and the ring to the next role (a leader stepping down to follow).
    /// `None` when another owner still holds the leader's state.
    pub async fn hand_over(self) -> Option<Handover> {
        let shared = self.shared.clone();
        self.shutdown().await;
        // The streams and the intake have let go (`shutdown` waited for
        // them); heartbeat streams end at their next message, which the
        // closed intake refuses.
        let bound = Duration::from_secs(2);
        if !shared.heartbeat_streams.idle_within(bound).await {
            tracing::warn!(
                open = shared.heartbeat_streams.live(),
                "heartbeat streams still open at the hand-over bound"
            );
        }
        let inner = match Arc::try_unwrap(shared) {
            Ok(inner) => inner,
            Err(held) => {
                tracing::warn!(
                    "the leader's state is still held; the next role reloads the store from disk"
                );
                // Flushed or not, every commit it made is in the file;
                // a non-durable one the next open may miss only if the
                // machine, not the process, fails.
                let _ = held.storage.flush();
                held.storage.retire();
                return None;
            }
        };
        let failed = inner.failed.load(std::sync::atomic::Ordering::Acquire);
        let LeaderShared {
            storage,
            store,
            ring,
            ..
        } = inner;
        if failed {
            // What is in memory may not be what is on disk: the next role
            // loads from disk instead.
            storage.retire();
            return None;
        }
        if let Err(e) = storage.flush() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot flush the leader store at hand-over");
            storage.retire();
            return None;
        }
        Some(Handover {
            storage,
            store: store.into_inner(),
            ring: ring.into_inner(),
        })
    }

    /// Stop: every follower stream gets the "server stopped" frame, in
    /// parallel and within the configured bound; the intake drains.
    pub async fn shutdown(self) {
        let shared = self.shared;
        shared.stopping.send_replace(true);
        let bound = shared.config.shutdown_timeout + Duration::from_millis(200);
        if !shared.stream_tasks.idle_within(bound).await {
            tracing::warn!(
                streams = shared.stream_tasks.live(),
                "streams still open after the shutdown bound; abandoning them"
            );
        }
        self.intake_task.abort();
        // Returns once the intake's future, and its handle on the shared
        // state, is dropped.
        let _ = self.intake_task.await;
    }
}

impl LeaderShared {
    /// A clean hand-over's first step: take no new change, let the commit
    /// under way publish, then let every open follower stream send all that
    /// was published, each wait at most `bound`. So nothing this leader
    /// accepted is missing from the next one.
    pub async fn close_and_drain(&self, bound: Duration) {
        self.close_intake(bound).await;
        self.drain_streams(bound).await;
    }

    /// Take no new change, and wait (at most `bound`) until the commit under
    /// way, if any, is published.
    async fn close_intake(&self, bound: Duration) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        let deadline = tokio::time::Instant::now() + bound;
        let mut published = self.published.subscribe();
        loop {
            // Read apart: the intake publishes while it holds the store.
            let at = *published.borrow_and_update();
            if self.store.read().applied_next() == at {
                return;
            }
            // What is applied is published, or the intake has failed and
            // the bound ends the wait.
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Wait, at most `bound`, until every open follower stream has sent
    /// everything published; say so when some are still behind.
    async fn drain_streams(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        let published = *self.published.borrow();
        let behind = || {
            self.streams
                .lock()
                .values()
                .filter(|s| s.cursor.load(std::sync::atomic::Ordering::Acquire) < published)
                .count()
        };
        if !crate::tasks::wait_until(&self.stream_progress, deadline, || behind() == 0).await {
            tracing::warn!(
                streams = behind(),
                published,
                "follower streams still behind at the hand-over bound"
            );
        }
    }

    /// The tunables it started with.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// The policy runtime every decision comes from.
    pub fn policy(&self) -> &Arc<PolicyRuntime> {
        &self.policy
    }

    /// Its counters, for status and metrics.
    pub fn stats(&self) -> &LeaderStats {
        &self.stats
    }

    /// The leaderships its index passed through (`crate::lineage`).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// Run `read` on the regions as they are now (under the store's read
    /// lock: keep it short).
    pub fn read_regions<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R {
        read(&self.store.read())
    }

    /// Make the store's next `n` writes fail, as a full disk would (fault
    /// injection for tests; a real failure takes the same path).
    pub fn inject_storage_failures(&self, n: u32) {
        self.storage.fail_next_writes(n);
    }

    /// Injected storage failures not yet taken by a write.
    pub fn pending_storage_failures(&self) -> u32 {
        self.storage.pending_write_failures()
    }

    /// The cluster this leader serves.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Heartbeats taken so far: accepted, durable and published (or found
    /// to change nothing).
    pub fn heartbeats_taken(&self) -> u64 {
        self.stats
            .heartbeats
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The leader is stopping (or stopped).
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// A place for one more heartbeat stream, held while it lives; `None`
    /// (and counted) when `max_heartbeat_streams` are open.
    pub fn heartbeat_slot(&self) -> Option<StreamSlot> {
        let slot = StreamSlot(self.heartbeat_streams.token());
        if self.heartbeat_streams.live() > self.config.max_heartbeat_streams {
            self.stats
                .heartbeat_streams_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        Some(slot)
    }
}

/// Counts an open heartbeat stream while it lives; its handler drops it
/// last, after its handle on the leader.
pub struct StreamSlot(#[allow(dead_code)] crate::tasks::TaskToken);
