//! A full sync's admission and snapshot: every region in key order, in
//! bounded frames positioned 0, 1000, 2000, ... (docs/protocol.md §2), each
//! chunk read under a short read lock so that the intake never waits long.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{End, LeaderShared, Stream, frames};
use crate::history::Pin;
use crate::leader::FullSyncOutcome;
use crate::policy_runtime::RouteCause;

/// Counts a running full sync for admission while it lives.
pub(super) struct FullSyncSlot(Arc<LeaderShared>);

impl Drop for FullSyncSlot {
    fn drop(&mut self) {
        self.0.full_syncs_running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Changes since a delta's base from which it is admitted as a full sync
/// is: a few frames' worth is cheap enough to serve whatever runs.
pub(super) const LARGE_DELTA: u64 = 10_000;

/// Where a snapshot ended: the index from which the store's changes must be
/// caught up, and how many positions its frames used.
pub(super) struct Mark {
    /// Changes at or after this index may be missing from the snapshot.
    pub from: u64,
    /// Regions sent (the next frame's position).
    pub position: u64,
}

impl Stream {
    /// Take a full-sync slot if the policy admits one more; `Err` with how
    /// many ran already when it does not.
    fn full_sync_slot(&self) -> Result<FullSyncSlot, u32> {
        let shared = &self.shared;
        let running = shared.full_syncs_running.fetch_add(1, Ordering::AcqRel);
        let slot = FullSyncSlot(shared.clone());
        if shared.policy.admit_full_sync(running) {
            Ok(slot)
        } else {
            Err(running)
        }
    }

    /// Ask the policy whether another full sync may start.
    pub(super) fn admit(&self, cause: RouteCause) -> Result<FullSyncSlot, End> {
        let outcome = self.full_sync_slot();
        let counted = match outcome {
            Ok(_) => FullSyncOutcome::Started,
            Err(_) => FullSyncOutcome::Refused,
        };
        self.shared.stats.count_full_sync(cause, counted);
        outcome.map_err(|_| End::Refused)
    }

    /// Admit a delta from `from` as a full sync when it may cost like one.
    /// Its cost is at most the changes since its base and at most the
    /// store: a delta from near the delta floor scans and sends most of the
    /// store, and as many of those at once as clients like would do what
    /// full-sync admission exists to prevent. A small delta takes no slot.
    pub(super) fn admit_delta(&self, from: u64) -> Result<Option<FullSyncSlot>, End> {
        let shared = &self.shared;
        let cost = {
            let store = shared.store.read();
            store
                .applied_next()
                .saturating_sub(from)
                .min(store.len() as u64)
        };
        if cost < LARGE_DELTA {
            return Ok(None);
        }
        match self.full_sync_slot() {
            Ok(slot) => Ok(Some(slot)),
            Err(running) => {
                shared.stats.deltas_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    follower = %self.follower, from, cost, running,
                    "a delta as large as a full sync refused by admission"
                );
                Err(End::Refused)
            }
        }
    }

    /// Stream the snapshot. With a `pin` (PD's protocol), a broken pin ends
    /// the stream at once: the ring lost the catch-up. Returns the mark a
    /// catch-up from the store starts at.
    pub(super) async fn snapshot(
        &mut self,
        cause: RouteCause,
        pin: Option<&Arc<Pin>>,
    ) -> Result<Mark, End> {
        let shared = self.shared.clone();
        // Every change applied after this point may be missing from, or only
        // partly in, the snapshot: the catch-up starts here.
        let from = shared.store.read().applied_next();
        let limits = shared.policy.limits();
        let rate = shared.config.full_sync_rate.filter(|r| *r > 0);
        // A rate limit must not make the stream silent for longer than the
        // follower waits (three keepalives): cap a frame at what the rate
        // sends in half a keepalive interval (at least one region).
        let max_bytes = match rate {
            Some(r) => (limits.max_bytes as f64)
                .min(r as f64 * shared.config.keepalive.as_secs_f64() / 2.0)
                as usize,
            None => limits.max_bytes as usize,
        };
        let started = Instant::now();
        let mut position = 0u64;
        let mut bytes = 0u64;
        let mut after: Option<Vec<u8>> = None;
        let mut stopping = shared.stopping.subscribe();
        loop {
            let (frame, n) = {
                let store = shared.store.read();
                let chunk =
                    store.chunk_after(after.as_deref(), limits.max_regions as usize, max_bytes);
                after = chunk.last().map(|r| r.start_key.to_vec());
                let n = chunk.len() as u64;
                (
                    frames::snapshot_encoded(self.cluster_id(), position, &chunk),
                    n,
                )
            };
            if n == 0 && position > 0 {
                break;
            }
            bytes += frame.encoded_len() as u64;
            self.send(frame).await?;
            position += n;
            if n == 0 {
                break; // the one empty frame of an empty snapshot
            }
            if *stopping.borrow_and_update() {
                return Err(End::Stopped);
            }
            if let Some(pin) = pin.filter(|p| p.is_broken()) {
                shared
                    .stats
                    .count_full_sync(cause, FullSyncOutcome::Exhausted);
                return Err(self.catch_up_lost(pin.from()));
            }
            if let Some(rate) = rate {
                // Pace in short steps, so that a stop is noticed at once.
                let due = started + Duration::from_secs_f64(bytes as f64 / rate as f64);
                while Instant::now() < due {
                    let step = due
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100));
                    tokio::select! {
                        _ = tokio::time::sleep(step) => {}
                        _ = stopping.wait_for(|s| *s) => return Err(End::Stopped),
                    }
                }
            }
        }
        tracing::info!(
            follower = %self.follower, regions = position, bytes, catch_up_from = from,
            took = ?started.elapsed(), "full sync snapshot sent; catching up"
        );
        Ok(Mark { from, position })
    }
}
