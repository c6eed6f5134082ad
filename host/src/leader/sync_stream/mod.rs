//! One follower's `SyncRegions` stream on the leader (docs/protocol.md §2): routing,
//! full sync (pin, snapshot, catch-up, completion), history replay, live
//! forwarding, keepalive and shutdown, all in one task per stream.
//!
//! Why one task per stream: every send is bounded in time (`send_timeout`),
//! so a follower that stops reading loses only its own stream (PD #10715,
//! #10684), and at shutdown every stream tells its follower in parallel
//! (PD #10731). The task only reads the store and the ring; it holds a lock
//! for one chunk at a time.
//!
//! Every step the stream takes comes from the policy runtime: routing,
//! admission, catch-up passes, and `plan-send` for each frame after the
//! snapshot. The full sync's snapshot is `snapshot`; the catch-up read from
//! the store (for full syncs of followers that announced regionsync's
//! extensions, and for deltas) is `catch_up`. A follower that announced
//! nothing gets PD's protocol unchanged: a snapshot, the ring's catch-up
//! under a pin, and the completion.

mod catch_up;
mod machine;
mod open;
mod snapshot;

pub use machine::{Counted, End, Running, Slot, Source, Step, StreamConfig, StreamMachine};
use open::follower_name;
pub use open::{Opened, RoutedStream, open, route_stream};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use regionsync_proto::pdpb::SyncRegionRequest;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tonic::Status;

use super::frames;
use super::{FullSyncOutcome, LeaderShared, StreamEntry};
use crate::history::{HistoryRing, Pin};
use crate::policy_runtime::{PolicyRuntime, RingView, Route, RouteCause};
use crate::region_store::RegionStore;
use crate::wire::Capabilities;
use crate::wire::Frame;

/// Where a stream's task puts its frames; gRPC takes them from the other end.
pub type FrameSender = mpsc::Sender<Result<Frame, Status>>;

/// Frames queued per stream beyond the one being sent: enough to overlap
/// reading the store with sending, small enough that a stalled follower
/// holds little memory.
const QUEUED_FRAMES: usize = 4;

/// Keeps the stream in the leader's registry while it lives.
struct Registered {
    shared: Arc<LeaderShared>,
    id: u64,
    entry: Arc<StreamEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.streams.lock().remove(&self.id);
        self.shared.stream_progress.notify_waiters();
    }
}

/// The task that carries out one stream's machine.
struct Stream {
    shared: Arc<LeaderShared>,
    tx: FrameSender,
    reg: Registered,
    machine: StreamMachine,
}

/// Serve one stream until it ends; logs how it ended.
async fn run(
    shared: Arc<LeaderShared>,
    request: SyncRegionRequest,
    caps: Capabilities,
    routed: Route,
    ring: RingView,
    tx: FrameSender,
) {
    let follower = follower_name(&request);
    let id = shared.next_stream_id.fetch_add(1, Ordering::Relaxed);
    let entry = Arc::new(StreamEntry {
        follower: follower.clone(),
        cursor: std::sync::atomic::AtomicU64::new(request.start_index),
    });
    shared.streams.lock().insert(id, entry.clone());
    let config = StreamConfig {
        keepalive: shared.config.keepalive,
        full_sync_rate: shared.config.full_sync_rate,
    };
    let machine = StreamMachine::new(shared.cluster_id, follower, caps, config, routed, ring);
    let mut stream = Stream {
        reg: Registered {
            shared: shared.clone(),
            id,
            entry,
        },
        shared,
        tx,
        machine,
    };
    let end = stream.serve().await;
    let cursor = stream.reg.entry.cursor.load(Ordering::Relaxed);
    let follower = &stream.reg.entry.follower;
    match &end {
        End::Gone => {
            tracing::info!(follower = %follower, cursor, "follower stream closed by the follower")
        }
        End::Stopped => {
            tracing::info!(follower = %follower, cursor, "follower stream ended: leader stopping")
        }
        End::Failed => tracing::warn!(
            follower = %follower, cursor,
            "follower stream ended: the leader cannot persist changes"
        ),
        End::SendTimeout => tracing::warn!(
            follower = %follower, cursor, bound = ?stream.shared.config.send_timeout,
            "follower did not take a frame within the send bound; its stream is dropped"
        ),
        End::Exhausted(why) => {
            stream
                .shared
                .stats
                .history_misses
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                follower = %follower, cursor, reason = %why,
                "follower stream ended with RESOURCE_EXHAUSTED; it will come back for a delta or a full sync"
            )
        }
        End::Refused => tracing::warn!(
            follower = %follower, "sync refused by admission; the follower will retry"
        ),
    }
}

impl Stream {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Send one frame within the bound. Shutdown interrupts a send that is
    /// waiting on a slow follower, so no stream can hold shutdown up.
    async fn send(&self, frame: Frame) -> Result<(), End> {
        let bytes = frame.encoded_len() as u64;
        let mut stopping = self.shared.stopping.subscribe();
        let sent = tokio::select! {
            sent = self.tx.send_timeout(Ok(frame), self.shared.config.send_timeout) => sent,
            _ = stopping.wait_for(|s| *s) => return Err(End::Stopped),
        };
        match sent {
            Ok(()) => {
                let stats = &self.shared.stats;
                stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                stats.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                Ok(())
            }
            Err(SendTimeoutError::Timeout(_)) => Err(End::SendTimeout),
            Err(SendTimeoutError::Closed(_)) => Err(End::Gone),
        }
    }

    /// End the stream with a gRPC status (best effort, bounded).
    async fn fail(&self, status: Status) {
        let _ = self
            .tx
            .send_timeout(Err(status), self.shared.config.send_timeout)
            .await;
    }

    async fn serve(&mut self) -> End {
        let end = self.drive().await;
        match &end {
            End::Failed => {
                let frame = frames::error(
                    self.cluster_id(),
                    "the leader cannot persist changes; it claims no index until restarted",
                );
                let _ = self
                    .tx
                    .send_timeout(Ok(frame.into()), self.shared.config.send_timeout)
                    .await;
            }
            End::Stopped => {
                let bound = self.shared.config.shutdown_timeout;
                let _ = self
                    .tx
                    .send_timeout(Ok(frames::stopped(self.cluster_id()).into()), bound)
                    .await;
            }
            End::Exhausted(why) => self.fail(Status::resource_exhausted(why.clone())).await,
            End::Refused => {
                self.fail(Status::resource_exhausted(
                    "too many full syncs (or deltas as large as one) running; retry later",
                ))
                .await
            }
            End::Gone | End::SendTimeout => {}
        }
        end
    }

    /// Carry out the machine's steps until it ends, or the follower goes.
    async fn drive(&mut self) -> End {
        let mut published = self.shared.published.subscribe();
        let mut stopping = self.shared.stopping.subscribe();
        loop {
            let step = self.machine.next(Instant::now(), &self.shared);
            if let Some(cursor) = self.machine.cursor()
                && self.reg.entry.cursor.load(Ordering::Relaxed) != cursor
            {
                self.reg.entry.cursor.store(cursor, Ordering::Release);
                self.shared.stream_progress.notify_waiters();
            }
            let wait_published = match step {
                Step::Send(frame) => {
                    if let Err(end) = self.send(frame).await {
                        return end;
                    }
                    continue;
                }
                Step::End(end) => return end,
                Step::WaitPublished(index) | Step::WaitDurable(index) => {
                    if *published.borrow_and_update() >= index {
                        continue;
                    }
                    None
                }
                Step::Idle {
                    until,
                    or_published,
                } => Some((until, or_published.is_some())),
            };
            // Every wait ends on a publish (or a failure, which the intake
            // announces as one), a stop, or the follower going; an idle
            // one also at its time.
            let (until, on_publish) = wait_published.map_or((None, true), |(t, p)| (Some(t), p));
            let sleep = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let publish = async {
                if on_publish {
                    let _ = published.changed().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = publish => {}
                _ = stopping.wait_for(|s| *s) => {}
                _ = self.tx.closed() => return End::Gone,
            }
        }
    }
}

impl Source for Arc<LeaderShared> {
    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }

    fn stopping(&self) -> bool {
        self.is_stopping()
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn published(&self) -> u64 {
        *self.published.borrow()
    }

    fn store<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R {
        read(&self.store.read())
    }

    fn ring<R>(&self, read: impl FnOnce(&HistoryRing) -> R) -> R {
        read(&self.ring.read())
    }

    fn pin(&self) -> Arc<Pin> {
        self.ring.write().pin()
    }

    fn full_sync_slot(&self) -> Result<Slot, u32> {
        let (slot, running) = self.full_syncs_running.take();
        if self.policy.admit_full_sync(running) {
            Ok(slot)
        } else {
            Err(running)
        }
    }

    fn count_full_sync(&self, cause: RouteCause, outcome: FullSyncOutcome) {
        self.stats.count_full_sync(cause, outcome);
    }

    fn count(&self, event: Counted) {
        let counter = match event {
            Counted::Delta => &self.stats.deltas,
            Counted::DeltaRefused => &self.stats.deltas_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
