//! Carrying out the policy's decision for one received frame, in the manner
//! of raft-rs's `on_ready`: the decision's fields are handled one by one, in
//! a fixed order, each step commented with why it comes where it does.
//!
//! 1. **reset**: a full sync starts (or a completion failed its check);
//!    cache and store are cleared and the store marked incomplete, durably,
//!    before anything of the snapshot lands. **begin-delta** instead keeps
//!    them and marks the store incomplete but resumable, durably, before
//!    anything of the delta lands.
//! 2. **apply**: the frame's regions from the decided offset go into the
//!    cache and into the write batch.
//! 3. **record**: history frames also go into the follower's own ring, with
//!    the leader's numbering.
//! 4. **claim**: the batch carries the claimed index and the complete marker,
//!    and is committed (durably for a completion, at least every
//!    `durable_every` for history). A sync's data frames claim nothing, and
//!    history frames claim in the transaction that holds their data: both are
//!    written behind, on the writer thread (`writer`), in order, and every
//!    other write, the completion's first, waits for them to land. A
//!    completion's digest was compared with the store before the policy
//!    decided, so a claim is only ever made for a set the leader vouched for
//!    (when it sent a digest).
//! 5. **reconnect**: only after the state is stored does a decision to
//!    reconnect end the session.
//!
//! Readiness drops before step 1, under the store's write lock, so that no
//! read ever sees a partial set (see `role::FollowerNode::readable`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use regionsync_proto::metapb::Peer;
use regionsync_proto::pdpb::{ErrorType, PeerStats, SyncRegionResponse};

use super::received::Received;
use super::stream::{EndReason, Ended};
use super::{FollowerShared, FullSyncTrigger};
use crate::digest::RegionFields;
use crate::history::{RingRecord, fingerprint_of};
use crate::policy_runtime::{
    AnnouncedSync, DigestCheck, FollowerPhase, FrameDecision, FrameHeader, FrameKind,
};
use crate::region_store::{Outcome, RegionStore, check_region};
use crate::storage::{StorageError, WriteBatch};

/// Decide what `frame` means and carry the decision out. Returns how the
/// session ends when the decision is to reconnect.
pub(super) fn on_frame(
    shared: &FollowerShared,
    received: Received,
    asked: u64,
    announced: AnnouncedSync,
) -> Result<Option<Ended>, StorageError> {
    let stats = &shared.stats;
    stats.frames.fetch_add(1, Ordering::Relaxed);
    let wire_bytes = received.wire_bytes() as u64;
    stats.bytes.fetch_add(wire_bytes, Ordering::Relaxed);
    let frame = &received.rest;
    let header_error = header_error(shared, frame);
    // The regions a delta or a catch-up from the store says the leader
    // removed (only on its completion frame) go first: the leader's digest
    // is of the set without them. Only while a sync is under way (or a
    // delta opens with its completion): elsewhere the field means nothing.
    let removed = {
        let phase = shared.state().phase;
        let syncing = matches!(phase, FollowerPhase::Snapshot | FollowerPhase::Delta)
            || (phase == FollowerPhase::Awaiting && announced == AnnouncedSync::Delta);
        if syncing && !frame.regionsync_removed.is_empty() {
            let mut store = shared.store.write();
            // No read sees the set between the removals and the claim.
            shared.ready.store(false, Ordering::Release);
            store.remove_listed(&frame.regionsync_removed)
        } else {
            Vec::new()
        }
    };
    // Only this task writes the store, so its digest now is the digest the
    // policy's decision will act on.
    let digest = match crate::wire::digest_of(&frame.regionsync_digest) {
        None => DigestCheck::Absent,
        Some(d) if d == shared.store.read().digest().value() => DigestCheck::Matched,
        Some(_) => DigestCheck::Mismatched,
    };
    let header = FrameHeader {
        error: header_error.is_some(),
        start_index: frame.start_index,
        region_count: u32::try_from(received.regions.len()).unwrap_or(u32::MAX),
        announced,
        digest,
    };
    let (facts, before) = {
        let sync = shared.sync.lock();
        (sync.facts, sync.policy)
    };
    let d = shared.policy.on_frame(before, header, &facts);
    // The host's own reading of the answer, not the policy's `kind`: a claim
    // without history records ends a sync (the runtime checked that this
    // stream ran one and that this is its completion frame).
    let completion = d.claim_index.is_some() && !d.record_history;

    let mut store = shared.store.write();
    let pause = shared.apply_pause_ms.load(Ordering::Acquire);
    if pause > 0 {
        std::thread::sleep(std::time::Duration::from_millis(pause));
    }
    if !d.state.ready {
        shared.ready.store(false, Ordering::Release);
    }
    match d.kind {
        FrameKind::SnapshotStart => note_full_sync(shared, asked),
        FrameKind::DeltaStart => {
            stats.deltas.fetch_add(1, Ordering::Relaxed);
            stats.snapshot_progress.store(0, Ordering::Relaxed);
            tracing::info!(
                follower = %shared.config.name, from = facts.next_index,
                "delta sync started: the leader sends what changed since our index"
            );
        }
        FrameKind::VerifyFailed => {
            stats.verify_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                follower = %shared.config.name, completion_index = frame.start_index,
                ours = %store.digest().hex(),
                theirs = %crate::wire::digest_of(&frame.regionsync_digest).map_or(String::new(), |d| format!("{d:032x}")),
                "the leader's digest differs from this follower's regions; \
                 they are dropped and a full sync replaces them"
            );
        }
        _ => {}
    }
    // Steps 1-4 change the cache before the commit; if any write fails, the
    // cache is put back as the store holds it *before* the lock is let go,
    // so that no reader ever sees the half-applied frame.
    let steps = (|| -> Result<(), StorageError> {
        let mut ready = Applier {
            shared,
            store: &mut store,
            batch: WriteBatch::default(),
        };
        // 1. reset: before any region of the snapshot, so that a crash after it
        //    leaves an incomplete store, never a mix of old and new. Or
        //    begin-delta: the store stops claiming its index before the delta's
        //    regions land, but a delta from that index still completes it.
        if d.reset_store {
            ready.reset()?;
        }
        if d.begin_delta {
            ready.begin_delta(facts.next_index)?;
        }
        for id in &removed {
            ready.batch.delete(*id);
        }
        // 2. apply, and 3. record what was applied, numbered from where the
        //    policy says the new records start.
        if let Some(from) = d.apply_from {
            let records = ready.apply(&received, from, &d);
            if d.record_history {
                ready.record(frame.start_index + u64::from(from), records);
            }
        }
        // 4. claim and commit: the index and the data in one transaction.
        ready.claim_and_commit(&d, completion)
    })();
    if let Err(e) = steps {
        shared.recover_locked(&mut store);
        return Err(e);
    }
    shared.sync.lock().facts = facts.apply(&d);
    if completion {
        let claim = d.claim_index.unwrap_or(frame.start_index);
        // The ring starts afresh at the completed index: what came before it
        // was a snapshot or a delta, not numbered records.
        *shared.ring.write() = shared.new_ring(claim);
        tracing::info!(
            follower = %shared.config.name, regions = store.len(), next_index = claim,
            digest = %store.digest().hex(), "full sync complete; follower is ready"
        );
    }
    // The state changes under the store's lock, so that a reader holding
    // it sees an index and the set it names together.
    shared.set_state(d.state);
    drop(store);
    // 5. reconnect, now that the state is stored.
    Ok(d.reconnect.map(|reason| Ended {
        reason: EndReason::Policy(reason),
        detail: header_error.unwrap_or_else(|| {
            format!(
                "frame at {} with {} regions while at {} ({})",
                frame.start_index,
                header.region_count,
                facts.next_index,
                before.phase.as_str()
            )
        }),
        progressed: true,
    }))
}

/// The error a frame's header carries, or a header for another cluster.
fn header_error(shared: &FollowerShared, frame: &SyncRegionResponse) -> Option<String> {
    let h = frame.header.as_ref()?;
    let error = h
        .error
        .as_ref()
        .filter(|e| e.r#type != ErrorType::Ok as i32);
    match error {
        Some(e) => Some(e.message.clone()),
        None if h.cluster_id != shared.cluster_id() => Some(format!(
            "frame for cluster {}, not {}",
            h.cluster_id,
            shared.cluster_id()
        )),
        None => None,
    }
}

/// A full sync starts: count it by what triggered it, and say so.
fn note_full_sync(shared: &FollowerShared, asked: u64) {
    let trigger = if asked == 0 {
        FullSyncTrigger::Requested
    } else {
        FullSyncTrigger::LeaderRouted
    };
    *shared
        .stats
        .full_syncs
        .lock()
        .entry(trigger.as_str())
        .or_default() += 1;
    shared.stats.snapshot_progress.store(0, Ordering::Relaxed);
    tracing::info!(
        follower = %shared.config.name, asked_index = asked, trigger = trigger.as_str(),
        "full sync started: the leader sent a snapshot; the local store is replaced"
    );
}

/// The work one decision does on the cache and the store.
struct Applier<'a> {
    shared: &'a FollowerShared,
    store: &'a mut RegionStore,
    batch: WriteBatch,
}

impl Applier<'_> {
    fn reset(&mut self) -> Result<(), StorageError> {
        self.store.clear();
        // The snapshot arrives in key order: indexed once, when it settles.
        self.store.begin_bulk();
        self.shared.persist(&WriteBatch {
            reset: true,
            complete: Some(false),
            resumable: Some(false),
            next_index: Some(0),
            durable: true,
            ..Default::default()
        })
    }

    fn begin_delta(&mut self, base: u64) -> Result<(), StorageError> {
        self.shared.persist(&WriteBatch {
            complete: Some(false),
            resumable: Some(true),
            next_index: Some(base),
            durable: true,
            ..Default::default()
        })
    }

    /// Apply regions `from..` under the epoch rules; returns them as records
    /// when the decision records history.
    fn apply(&mut self, received: &Received, from: u32, d: &FrameDecision) -> Vec<RingRecord> {
        let (frame, regions) = (&received.rest, &received.regions);
        let count = regions.len();
        // The parallel arrays count only when as long as the regions.
        let aligned = |n: usize| n == count;
        let leaders = aligned(frame.region_leaders.len()).then_some(&frame.region_leaders);
        let flows = aligned(frame.region_stats.len()).then_some(&frame.region_stats);
        let downs = aligned(frame.down_peers.len()).then_some(&frame.down_peers);
        let pendings = aligned(frame.pending_peers.len()).then_some(&frame.pending_peers);
        let mut records = Vec::new();
        for i in from as usize..count {
            let region = regions.get(i);
            let leader = leaders.map(|l| l[i]).unwrap_or_default();
            let stats = flows.map(|s| s[i]).unwrap_or_default();
            let down: &[PeerStats] = downs.map_or(&[], |d| &d[i].peers);
            let pending: &[Peer] = pendings.map_or(&[], |p| &p[i].peers);
            // History records carry their index; a snapshot's or a delta's
            // regions are only known to be older than the completion, which
            // becomes the store's delta floor.
            let changed = if d.record_history {
                frame.start_index + i as u64
            } else {
                0
            };
            let id = region.id();
            match check_region(&region) {
                Ok(()) => {
                    let extra = fingerprint_of(&leader, &stats, down, pending, 1);
                    if let Outcome::Applied { removed } = self
                        .store
                        .apply_incoming(&region, leader.id, extra, changed)
                    {
                        for id in removed {
                            self.batch.delete(id);
                        }
                        let blob = self.store.encoded(id).expect("just applied");
                        self.batch.put_encoded(id, leader.id, changed, blob);
                    }
                }
                Err(why) => {
                    tracing::warn!(region = id, reason = %why, "leader sent a malformed region; skipped")
                }
            }
            // Only history keeps the frame's regions as records: a snapshot
            // does not copy its million.
            if d.record_history {
                let bytes = region.encoding();
                records.push(RingRecord::new(&bytes, &leader, &stats, down, pending));
            }
        }
        if matches!(
            d.kind,
            FrameKind::SnapshotStart
                | FrameKind::SnapshotData
                | FrameKind::DeltaStart
                | FrameKind::DeltaData
        ) {
            self.shared
                .stats
                .snapshot_progress
                .fetch_add((count - from as usize) as u64, Ordering::Relaxed);
        }
        records
    }

    /// Push records numbered from `first` into the follower's ring.
    fn record(&mut self, first: u64, records: Vec<RingRecord>) {
        let mut ring = self.shared.ring.write();
        if ring.next_index() != first {
            // The ring starts where the store's index is; anything else means
            // the numbering would diverge from the leader's.
            *ring = self.shared.new_ring(first);
        }
        for r in records {
            ring.push(r);
        }
    }

    /// Put the claim (if any) into the batch and commit it.
    fn claim_and_commit(
        &mut self,
        d: &FrameDecision,
        completion: bool,
    ) -> Result<(), StorageError> {
        // A set that claims an index is indexed (`region_store::bulk`): a
        // completion's snapshot while its durable write lands (below).
        let settle_alongside = completion && self.store.unsettled();
        if let Some(claim) = d.claim_index {
            if !settle_alongside {
                self.store.settle();
            }
            self.batch.next_index = Some(claim);
            self.batch.complete = Some(true);
            self.store.set_applied_next(claim);
            // The first claim of this leader's data: its lineage now
            // describes our records (`crate::lineage`).
            let mut sync = self.shared.sync.lock();
            self.batch.lineage = sync.lineage.adopt(claim);
            if completion {
                // What a snapshot or a delta brought has no change index of
                // its own: changes are tracked from the completion on.
                self.batch.resumable = Some(false);
                self.batch.delta_floor = Some(claim);
                self.store.set_delta_floor(claim);
            }
            // A completion is the moment the store becomes usable: always
            // durable. History may lag by `durable_every` and replay.
            self.batch.durable =
                completion || sync.last_durable.elapsed() >= self.shared.config.durable_every;
            if self.batch.durable {
                sync.last_durable = Instant::now();
            }
            // Released before the batch is queued: that may wait for the disk.
            drop(sync);
            if !completion && !self.shared.config.durable_every.is_zero() {
                // History: its data and its claim are one transaction, so
                // the store holds some index this follower held, whichever
                // lands last. Written behind, the commit (and, every
                // `durable_every`, its fsync) stays off the path from the
                // leader's change to this follower applying it. A zero
                // `durable_every` asks for every record to be durable before
                // the next frame: that is written here, in line.
                return self.shared.persist_behind(std::mem::take(&mut self.batch));
            }
        } else if matches!(
            d.kind,
            FrameKind::SnapshotStart
                | FrameKind::SnapshotData
                | FrameKind::DeltaStart
                | FrameKind::DeltaData
        ) {
            // A sync's data, into a store that claims nothing until the
            // completion: written behind, while the next frame is applied
            // (`writer`). The completion's write waits for it. Regions still
            // in the snapshot's key-ordered run are stored as one chunk.
            self.batch.snapshot = self.store.unsettled();
            return self.shared.persist_behind(std::mem::take(&mut self.batch));
        }
        if settle_alongside {
            // Indexed on a second thread while this one waits for the
            // durable write; both end before the state says ready.
            let (store, shared, batch) = (&mut *self.store, self.shared, &self.batch);
            return std::thread::scope(|s| {
                let settling = s.spawn(|| store.settle());
                let written = shared.persist(batch);
                if let Err(panic) = settling.join() {
                    std::panic::resume_unwind(panic);
                }
                written
            });
        }
        self.shared.persist(&self.batch)
    }
}
