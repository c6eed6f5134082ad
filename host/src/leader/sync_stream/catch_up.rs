//! Catching up from the store (docs/protocol.md §7): every region changed
//! since a mark, sent as it is now, in passes, until the policy says the rest
//! is small enough to take at one index while the intake waits; then the
//! completion frame at that index, with the leader's digest for a follower
//! that verifies.
//!
//! The ring plays no part, so a sync completes under any churn the intake
//! sustains, whatever the ring's size: each pass sends what changed during
//! the one before, and the passes shrink while the leader streams faster
//! than changes happen. The same passes, from a follower's own index instead
//! of a snapshot's mark, are a delta sync.
//!
//! The completion never covers a change that is not durable: the stream
//! waits until the intake has committed up to the completion index first.

use std::collections::VecDeque;
use std::time::Instant;

use super::machine::{End, Next, Slot, Source, State, Step, StreamMachine, ended};
use super::snapshot::Mark;
use crate::leader::frames;
use crate::policy_runtime::{CatchUpStep, CatchUpView};
use crate::region_store::StoredRegion;
use crate::wire::Frame;

/// Regions a pass scans under one read lock: a few milliseconds.
const SCAN_SLICE: usize = 65_536;

/// A catch-up being sent.
pub(super) struct CatchUp {
    /// Changes at or after this index are still to be sent.
    since: u64,
    /// Removals are sent from the sync's base, all on the completion.
    base: u64,
    /// The next frame's position (after a snapshot).
    position: u64,
    /// For a delta, the follower's index, which every data frame carries.
    delta_base: Option<u64>,
    passes: u32,
    sent: u64,
    started: Instant,
    slot: Option<Slot>,
    /// The pass under way.
    pass: Option<Pass>,
    /// Frames read, not yet sent.
    frames: VecDeque<Frame>,
    /// The final pass is read: its completion, once its frames are sent.
    completion: Option<Completion>,
}

/// A pass under way: the regions still to read, and where the next pass
/// starts.
struct Pass {
    ids: VecDeque<u64>,
    next: u64,
}

/// The end of a catch-up.
struct Completion {
    index: u64,
    digest: u128,
    removals: Vec<u64>,
}

impl CatchUp {
    /// Catch up from `mark` (where a snapshot ended, or a delta's base).
    pub(super) fn start(
        now: Instant,
        mark: Mark,
        delta_base: Option<u64>,
        slot: Option<Slot>,
    ) -> CatchUp {
        CatchUp {
            since: mark.from,
            base: mark.from,
            position: mark.position,
            delta_base,
            passes: 0,
            sent: 0,
            started: now,
            slot,
            pass: None,
            frames: VecDeque::new(),
            completion: None,
        }
    }
}

impl StreamMachine {
    /// The next frame of the catch-up, the wait for its completion to be
    /// durable, or the completion.
    pub(super) fn catch_up_step(&self, now: Instant, src: &impl Source, mut c: CatchUp) -> Next {
        if let Some(frame) = c.frames.pop_front() {
            return (State::CatchUp(c), Some(Step::Send(frame)));
        }
        if let Some(done) = c.completion.take() {
            return self.complete(now, src, c, done);
        }
        if let Some(mut pass) = c.pass.take() {
            if pass.ids.is_empty() {
                c.since = pass.next;
                c.passes += 1;
            } else {
                let take = pass
                    .ids
                    .len()
                    .min(src.policy().limits().max_regions as usize);
                let regions: Vec<StoredRegion> = src.store(|store| {
                    pass.ids
                        .drain(..take)
                        .filter_map(|id| store.get(id))
                        .collect()
                });
                self.queue_regions(src, &mut c, regions);
                c.pass = Some(pass);
            }
            return (State::CatchUp(c), None);
        }
        let pending = src.store(|s| s.applied_next()).saturating_sub(c.since);
        let view = CatchUpView {
            passes: c.passes,
            pending,
        };
        match src.policy().plan_catch_up(view) {
            CatchUpStep::AnotherPass => {
                // Whatever changes from here on, the next pass sends.
                let next = src.store(|s| s.applied_next());
                let ids = changed_since(src, c.since);
                c.pass = Some(Pass {
                    ids: ids.into(),
                    next,
                });
                (State::CatchUp(c), None)
            }
            CatchUpStep::FinalPass => {
                // One read lock: the regions, the index and the digest are
                // one state of the store.
                let (regions, index, digest, removals, floor) = src.store(|store| {
                    let (ids, _) = store.changed_since(c.since, None, usize::MAX);
                    let regions: Vec<StoredRegion> =
                        ids.iter().filter_map(|id| store.get(*id)).collect();
                    (
                        regions,
                        store.applied_next(),
                        store.digest().value(),
                        store.removed_since(c.base),
                        store.delta_floor(),
                    )
                });
                if floor > c.base {
                    // Removals since the base were forgotten (the bound on
                    // those kept): this sync could not say them all.
                    return ended(End::Exhausted(format!(
                        "the leader no longer knows every region removed since index {} \
                         (it keeps them from {floor}); reconnect for a full sync",
                        c.base
                    )));
                }
                self.queue_regions(src, &mut c, regions);
                c.passes += 1;
                c.completion = Some(Completion {
                    index,
                    digest,
                    removals,
                });
                (State::CatchUp(c), None)
            }
        }
    }

    /// Every frame of the final pass is sent: the completion, once every
    /// change up to its index is durable; then the stream is live.
    fn complete(&self, now: Instant, src: &impl Source, mut c: CatchUp, done: Completion) -> Next {
        // A failed leader claims nothing, even an index that is published:
        // the passes before may have sent a change whose commit then
        // failed, and the store it was put back to no longer holds it (its
        // index is reused once the leader restarts). The intake sets
        // `failed` before it puts the store back, so a final pass that read
        // the store put back sees it.
        if src.failed() {
            return ended(End::Failed);
        }
        if src.published() < done.index {
            let index = done.index;
            c.completion = Some(done);
            return (State::CatchUp(c), Some(Step::WaitDurable(index)));
        }
        let digest = self.caps.verify.then_some(done.digest);
        let removed = done.removals.len();
        tracing::info!(
            follower = %self.follower, kind = if c.delta_base.is_some() { "delta" } else { "full sync" },
            passes = c.passes, regions = c.sent, removed, completion_index = done.index,
            verified = digest.is_some(), took = ?now.saturating_duration_since(c.started),
            "sync complete; stream is live"
        );
        let frame = frames::completion(self.cluster_id, done.index, digest, done.removals);
        drop(c.slot.take());
        let live = self.after_catch_up(src, done.index, c.delta_base.is_none());
        (live, Some(Step::Send(frame.into())))
    }

    /// Queue regions in bounded frames: positional after a snapshot, at the
    /// base index in a delta.
    fn queue_regions(&self, src: &impl Source, c: &mut CatchUp, mut regions: Vec<StoredRegion>) {
        let limits = src.policy().limits();
        c.sent += regions.len() as u64;
        while !regions.is_empty() {
            let mut bytes = 0usize;
            let take = regions
                .iter()
                .take(limits.max_regions as usize)
                .take_while(|r| {
                    bytes += prost::Message::encoded_len(&r.region);
                    bytes <= limits.max_bytes as usize
                })
                .count()
                .max(1);
            let rest = regions.split_off(take);
            let n = regions.len() as u64;
            let start = c.delta_base.unwrap_or(c.position);
            c.frames
                .push_back(frames::snapshot(self.cluster_id, start, regions).into());
            c.position += n;
            regions = rest;
        }
    }
}

/// Ids of regions changed at or after `since`, read in slices so that the
/// intake never waits for more than one slice.
fn changed_since(src: &impl Source, since: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let (found, next) = src.store(|s| s.changed_since(since, after, SCAN_SLICE));
        ids.extend(found);
        match next {
            Some(n) => after = Some(n),
            None => return ids,
        }
    }
}

impl From<u64> for Mark {
    /// A delta's mark: its base, with no snapshot positions used.
    fn from(from: u64) -> Self {
        Mark { from, position: 0 }
    }
}
