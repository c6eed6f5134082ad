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

use std::time::Instant;

use super::snapshot::Mark;
use super::{End, Stream, frames};
use crate::policy_runtime::{CatchUpStep, CatchUpView};
use crate::region_store::StoredRegion;

/// Regions a pass scans under one read lock: a few milliseconds.
const SCAN_SLICE: usize = 65_536;

impl Stream {
    /// Catch up from the store and complete. `mark` is where a snapshot
    /// ended; `delta_base`, for a delta, is the follower's index, which every
    /// data frame carries. Returns the completion index.
    pub(super) async fn catch_up(
        &mut self,
        mark: impl Into<Mark>,
        delta_base: Option<u64>,
    ) -> Result<u64, End> {
        let shared = self.shared.clone();
        let Mark {
            from: mut since,
            mut position,
        } = mark.into();
        // Removals are sent from the sync's base, all on the completion.
        let base = since;
        let started = Instant::now();
        let mut passes = 0u32;
        let mut sent = 0u64;
        let (completed, digest, removals) = loop {
            if shared.is_stopping() {
                return Err(End::Stopped);
            }
            let pending = shared.store.read().applied_next().saturating_sub(since);
            let step = shared.policy.plan_catch_up(CatchUpView { passes, pending });
            match step {
                CatchUpStep::AnotherPass => {
                    // Whatever changes from here on, the next pass sends.
                    let next = shared.store.read().applied_next();
                    let ids = self.changed_since(since);
                    for slice in ids.chunks(self.shared.policy.limits().max_regions as usize) {
                        let regions: Vec<StoredRegion> = {
                            let store = shared.store.read();
                            slice.iter().filter_map(|id| store.get(*id)).collect()
                        };
                        sent += regions.len() as u64;
                        position = self.send_regions(regions, position, delta_base).await?;
                    }
                    since = next;
                    passes += 1;
                }
                CatchUpStep::FinalPass => {
                    // One read lock: the regions, the index and the digest
                    // are one state of the store.
                    let (regions, completed, digest, removed, floor) = {
                        let store = shared.store.read();
                        let (ids, _) = store.changed_since(since, None, usize::MAX);
                        let regions: Vec<StoredRegion> =
                            ids.iter().filter_map(|id| store.get(*id)).collect();
                        (
                            regions,
                            store.applied_next(),
                            store.digest(),
                            store.removed_since(base),
                            store.delta_floor(),
                        )
                    };
                    if floor > base {
                        // Removals since the base were forgotten (the bound
                        // on those kept): this sync could not say them all.
                        return Err(End::Exhausted(format!(
                            "the leader no longer knows every region removed since index {base} \
                             (it keeps them from {floor}); reconnect for a full sync"
                        )));
                    }

                    sent += regions.len() as u64;
                    self.send_regions(regions, position, delta_base).await?;
                    passes += 1;
                    break (completed, digest, removed);
                }
            }
        };
        self.wait_durable(completed).await?;
        let digest = self.caps.verify.then_some(digest.value());
        let removed = removals.len();
        self.send(frames::completion(
            self.cluster_id(),
            completed,
            digest,
            removals,
        ))
        .await?;
        tracing::info!(
            follower = %self.follower, kind = if delta_base.is_some() { "delta" } else { "full sync" },
            passes, regions = sent, removed, completion_index = completed, verified = digest.is_some(),
            took = ?started.elapsed(), "sync complete; stream is live"
        );
        Ok(completed)
    }

    /// Ids of regions changed at or after `since`, read in slices so that
    /// the intake never waits for more than one slice.
    fn changed_since(&self, since: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let (found, next) = self
                .shared
                .store
                .read()
                .changed_since(since, after, SCAN_SLICE);
            ids.extend(found);
            match next {
                Some(n) => after = Some(n),
                None => return ids,
            }
        }
    }

    /// Send regions in bounded frames: positional after a snapshot, at the
    /// base index in a delta. Returns the next position.
    async fn send_regions(
        &mut self,
        mut regions: Vec<StoredRegion>,
        mut position: u64,
        delta_base: Option<u64>,
    ) -> Result<u64, End> {
        let limits = self.shared.policy.limits();
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
            let start = delta_base.unwrap_or(position);
            self.send(frames::snapshot(self.cluster_id(), start, regions))
                .await?;
            position += n;
            regions = rest;
        }
        Ok(position)
    }

    /// Wait until the intake has committed every change up to `index`.
    ///
    /// A failed leader claims nothing, even an index that is published: the
    /// passes before may have sent a change whose commit then failed, and
    /// the store it was put back to no longer holds it (its index is reused
    /// once the leader restarts). The intake sets `failed` before it puts
    /// the store back, so a final pass that read the store put back sees it.
    async fn wait_durable(&self, index: u64) -> Result<(), End> {
        let mut published = self.shared.published.subscribe();
        let mut stopping = self.shared.stopping.subscribe();
        loop {
            if self
                .shared
                .failed
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Err(End::Failed);
            }
            if *published.borrow_and_update() >= index {
                return Ok(());
            }
            tokio::select! {
                _ = published.changed() => {}
                _ = stopping.wait_for(|s| *s) => return Err(End::Stopped),
            }
        }
    }
}

impl From<u64> for Mark {
    /// A delta's mark: its base, with no snapshot positions used.
    fn from(from: u64) -> Self {
        Mark { from, position: 0 }
    }
}
