//! A full sync's snapshot: every region in key order, in bounded frames
//! positioned 0, 1000, 2000, ... (docs/protocol.md §2), each chunk read
//! under a short read lock so that the intake never waits long, paced when
//! the leader limits a full sync's rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::{Next, Slot, Source, State, Step, StreamMachine, ended};
use crate::history::Pin;
use crate::leader::{FullSyncOutcome, frames};

/// Where a snapshot ended: the index from which the store's changes must be
/// caught up, and how many positions its frames used.
pub(super) struct Mark {
    /// Changes at or after this index may be missing from the snapshot.
    pub from: u64,
    /// Regions sent (the next frame's position).
    pub position: u64,
}

/// A snapshot being sent.
pub(super) struct Snapshot {
    /// Every change applied from here on may be missing from, or only
    /// partly in, the snapshot: the catch-up starts here.
    from: u64,
    /// The last key sent.
    after: Option<Vec<u8>>,
    /// Regions sent.
    position: u64,
    /// Bytes sent.
    bytes: u64,
    started: Instant,
    /// PD's protocol: the ring's catch-up, pinned from the start.
    pin: Option<Arc<Pin>>,
    slot: Slot,
    /// Every region is sent.
    done: bool,
    /// A frame was sent.
    sent_any: bool,
}

impl Snapshot {
    pub(super) fn start(
        now: Instant,
        src: &impl Source,
        pin: Option<Arc<Pin>>,
        slot: Slot,
    ) -> Snapshot {
        Snapshot {
            from: src.store(|s| s.applied_next()),
            after: None,
            position: 0,
            bytes: 0,
            started: now,
            pin,
            slot,
            done: false,
            sent_any: false,
        }
    }
}

impl StreamMachine {
    /// The next frame of the snapshot, the pause its rate asks for, or (once
    /// every region is sent) the catch-up.
    pub(super) fn snapshot_step(&self, now: Instant, src: &impl Source, mut s: Snapshot) -> Next {
        if s.position > 0
            && let Some(pin) = s.pin.as_ref().filter(|p| p.is_broken())
        {
            src.count_full_sync(self.cause(), FullSyncOutcome::Exhausted);
            return ended(self.lost(src, pin.from()));
        }
        if s.done {
            tracing::info!(
                follower = %self.follower, regions = s.position, bytes = s.bytes,
                catch_up_from = s.from, took = ?now.saturating_duration_since(s.started),
                "full sync snapshot sent; catching up"
            );
            let mark = Mark {
                from: s.from,
                position: s.position,
            };
            return (self.after_snapshot(now, src, mark, s.pin, s.slot), None);
        }
        let limits = src.policy().limits();
        let rate = self.config.full_sync_rate.filter(|r| *r > 0);
        if let Some(rate) = rate {
            let due = s.started + Duration::from_secs_f64(s.bytes as f64 / rate as f64);
            if now < due {
                let until = due;
                return (
                    State::Snapshot(s),
                    Some(Step::Idle {
                        until,
                        or_published: None,
                    }),
                );
            }
        }
        // A rate limit must not make the stream silent for longer than the
        // follower waits (three keepalives): cap a frame at what the rate
        // sends in half a keepalive interval (at least one region).
        let max_bytes = match rate {
            Some(r) => (limits.max_bytes as f64)
                .min(r as f64 * self.config.keepalive.as_secs_f64() / 2.0)
                as usize,
            None => limits.max_bytes as usize,
        };
        // PD's full sync leaves out what changed since its pin: those
        // regions come in the ring's records, in the order the leader took
        // them. Sent here too, a newer copy would make the follower ignore
        // an older record of the same region as stale, and with it the
        // regions that record's range took away (a range that may be a gap
        // by now, which nothing sent later covers).
        let before = s.pin.as_ref().map_or(u64::MAX, |p| p.from());
        let (frame, n, last) = src.store(|store| {
            let (chunk, walked) = store.chunk_changed_before(
                s.after.as_deref(),
                before,
                limits.max_regions as usize,
                max_bytes,
            );
            s.after = walked.map(<[u8]>::to_vec);
            let n = chunk.len() as u64;
            (
                frames::snapshot_encoded(self.cluster_id, s.position, &chunk),
                n,
                walked.is_none(),
            )
        });
        // Every snapshot sends at least one frame (the follower's reset),
        // the empty one of an empty snapshot included.
        if n == 0 && (s.position > 0 || s.sent_any || !last) {
            s.done = last;
            return (State::Snapshot(s), None);
        }
        s.bytes += frame.encoded_len() as u64;
        s.position += n;
        s.sent_any = true;
        s.done = last;
        (State::Snapshot(s), Some(Step::Send(frame)))
    }
}
