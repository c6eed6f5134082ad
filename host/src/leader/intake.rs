//! The leader's intake: the one task that writes regions (docs/protocol.md
//! §2).
//!
//! Heartbeat streams hand it changes over a bounded channel, so a flood slows
//! the senders down (gRPC flow control) instead of dropping changes (PD
//! #9154). The task applies a batch to the store, commits the batch to redb in
//! one transaction together with the new next_index, and only then publishes
//! the records to the ring: a follower never receives an index the leader
//! could lose in a crash.
//!
//! The store's lock is *not* held across the commit: at a million regions
//! under churn the intake commits nearly all the time, and readers (reads,
//! snapshots, catch-up passes) would starve. A reader may therefore see a
//! change whose commit is still under way. No follower can claim it before it
//! is durable, though: a completion is sent only for an index already
//! published (PD's protocol) or once the index is durable (the store's
//! catch-up), and a full sync in PD's protocol completes only at an index
//! that covers everything its snapshot may have read (`sync_stream`). If the
//! commit fails, the leader stops claiming indexes at once, puts the store
//! back as it is on disk, and refuses changes and streams from then on
//! rather than serve what it could not persist.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::LeaderShared;
use crate::history::{Record, RingRecord, fingerprint};
use crate::region_store::{Outcome, RegionStore};
use crate::storage::{StorageError, WriteBatch};

/// Why the intake refuses a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// An earlier commit failed; the leader no longer accepts changes.
    #[error("the leader cannot persist changes and refuses new ones")]
    Failed,
    /// The leader is stopping.
    #[error("the leader is stopping")]
    Stopping,
    /// Its etcd lease is not known to hold (another node may lead by now),
    /// or it is handing over.
    #[error(
        "this node no longer leads (its lease lapsed, or it hands over); send changes to the current leader"
    )]
    Fenced,
}

impl LeaderShared {
    /// Queue a change for the intake, waiting while the queue is full.
    pub async fn submit(&self, change: Record) -> Result<(), IntakeError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(IntakeError::Failed);
        }
        if !self.config.fence.holds() || self.closing.load(Ordering::Acquire) {
            return Err(IntakeError::Fenced);
        }
        self.intake
            .send(change)
            .await
            .map_err(|_| IntakeError::Stopping)
    }
}

/// The intake task: batches from the queue, applied off the async workers.
pub(super) async fn run(shared: Arc<LeaderShared>, mut rx: mpsc::Receiver<Record>) {
    let max = shared.config.intake_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, max).await == 0 {
            return;
        }
        // Applying and committing block for a while on big batches; keep
        // them off the async workers that serve the streams.
        let worker = shared.clone();
        let taken = std::mem::take(&mut batch);
        let result = tokio::task::spawn_blocking(move || apply_batch(&worker, taken)).await;
        match result {
            Ok(Ok(returned)) => batch = returned,
            Ok(Err(e)) => {
                shared.failed.store(true, Ordering::Relaxed);
                // Wake every stream, so that each ends with an error frame.
                shared.published.send_modify(|_| {});
                tracing::error!(error = %crate::error_chain(&e), "cannot persist region changes; the leader stops accepting them");
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
fn apply_batch(shared: &LeaderShared, mut batch: Vec<Record>) -> Result<Vec<Record>, StorageError> {
    let stats = &shared.stats;
    let taken = batch.len() as u64;
    // The lease fence (`fence`): nothing is applied once it may have lapsed,
    // or once the leader hands over.
    if !shared.config.fence.holds() || shared.closing.load(Ordering::Acquire) {
        stats.fenced.fetch_add(taken, Ordering::Relaxed);
        tracing::warn!(
            changes = taken,
            "lease lapsed: queued changes are not applied"
        );
        batch.clear();
        return Ok(batch);
    }
    let mut store = shared.store.write();
    let Applied {
        records,
        mut write,
        stale,
        unchanged,
        digests,
    } = apply_changes(
        &mut store,
        batch.drain(..),
        shared.flow_divisor,
        shared.config.digest_tap.is_some(),
    );
    let tap = shared.config.digest_tap.as_ref();
    stats.stale.fetch_add(stale, Ordering::Relaxed);
    stats.unchanged.fetch_add(unchanged, Ordering::Relaxed);
    // The intake is the only writer, and publishes every batch before it
    // takes the next: the store's applied index is the ring's next index.
    let next = store.applied_next();
    let base = next - records.len() as u64;
    drop(store);
    if records.is_empty() {
        stats.heartbeats.fetch_add(taken, Ordering::Relaxed);
        return Ok(batch);
    }
    write.next_index = Some(next);
    if let Err(e) = shared.storage.write(&write) {
        // No stream may claim an index from here on; then what is in memory
        // goes back to what is on disk.
        shared.failed.store(true, Ordering::Release);
        let disk = shared
            .storage
            .meta()
            .and_then(|meta| super::load(&shared.storage, &meta));
        let mut store = shared.store.write();
        match disk {
            Ok(disk) => *store = disk,
            Err(again) => {
                tracing::error!(error = %crate::error_chain(&again), "the leader store cannot be read back either; it serves nothing");
                store.clear();
            }
        }
        return Err(e);
    }
    if !shared.config.fence.holds() {
        // Durable here, but the lease lapsed during the commit: no follower
        // gets it, and the store is now ahead of the ring, so this leader
        // must never publish again. The lapse is final (`fence`): it steps
        // down (`ha::supervisor`). Should this node lead again, its lineage
        // tells followers that copied another leader's records apart
        // (`crate::lineage`).
        stats
            .fenced
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            changes = records.len(),
            next_index = next,
            "lease lapsed during a commit: the changes are kept but not published"
        );
        return Ok(batch);
    }
    stats
        .accepted
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    {
        let mut ring = shared.ring.write();
        let ring_next = ring.next_index();
        if ring_next != base {
            // The ring would number these records apart from the store.
            // Only a commit left unpublished can cause it, and the fence
            // rules that out; should it happen, serve nothing rather than
            // a history that is not the store's.
            drop(ring);
            shared.failed.store(true, Ordering::Release);
            shared.published.send_modify(|_| {});
            tracing::error!(
                ring_next,
                store_base = base,
                "the history ring and the store disagree on numbering; the leader stops"
            );
            return Ok(batch);
        }
        for r in records {
            ring.push(r);
        }
    }
    shared.published.send_replace(next);
    if let Some(tap) = tap {
        (tap.0)(&digests);
    }
    // Counted once published, so "processed" means visible to followers.
    stats.heartbeats.fetch_add(taken, Ordering::Relaxed);
    Ok(batch)
}

/// A batch of changes applied to a store.
pub struct Applied {
    /// The changes that changed something, as the ring numbers them (from
    /// the store's applied index before the batch).
    pub records: Vec<RingRecord>,
    /// The same, for the durable store; its `next_index` is left to set.
    pub write: WriteBatch,
    /// Changes older than what the store holds.
    pub stale: u64,
    /// Changes that changed nothing.
    pub unchanged: u64,
    /// When asked: the store's digest after each record, by the index after it.
    pub digests: Vec<(u64, u128)>,
}

/// Apply `changes` to `store` under the epoch rules, numbering what changed
/// from its applied index on, and move that index past them: the intake's
/// work on a batch, with no I/O (the simulator's leader does the same).
pub fn apply_changes(
    store: &mut RegionStore,
    changes: impl IntoIterator<Item = Record>,
    flow_divisor: u64,
    digests: bool,
) -> Applied {
    let mut applied = Applied {
        records: Vec::new(),
        write: WriteBatch {
            durable: true,
            ..Default::default()
        },
        stale: 0,
        unchanged: 0,
        digests: Vec::new(),
    };
    let base = store.applied_next();
    for change in changes {
        let extra = fingerprint(&change, flow_divisor);
        let index = base + applied.records.len() as u64;
        match store.apply(&change.region, change.leader.id, extra, index) {
            Outcome::Applied { removed } => {
                for id in removed {
                    applied.write.delete(id);
                }
                let blob = store.encoded(change.region.id).expect("just applied");
                applied
                    .write
                    .put_encoded(change.region.id, change.leader.id, index, blob);
                applied.records.push(RingRecord::new(
                    blob,
                    &change.leader,
                    &change.stats,
                    &change.down_peers,
                    &change.pending_peers,
                ));
                if digests {
                    applied.digests.push((index + 1, store.digest().value()));
                }
            }
            Outcome::Stale => applied.stale += 1,
            Outcome::Unchanged => applied.unchanged += 1,
        }
    }
    store.set_applied_next(base + applied.records.len() as u64);
    applied
}
