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
mod open;
mod snapshot;

use open::follower_name;
pub use open::{Opened, open};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use regionsync_proto::pdpb::SyncRegionRequest;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tonic::Status;

use super::frames;
use super::{FullSyncOutcome, LeaderShared, StreamEntry};
use crate::policy_runtime::{RingView, Route, RouteAction, SendStep, StreamPhase, StreamView};
use crate::wire::Capabilities;
use crate::wire::Frame;

/// Where a stream's task puts its frames; gRPC takes them from the other end.
pub type FrameSender = mpsc::Sender<Result<Frame, Status>>;

/// Frames queued per stream beyond the one being sent: enough to overlap
/// reading the store with sending, small enough that a stalled follower
/// holds little memory.
const QUEUED_FRAMES: usize = 4;

/// Why a stream ended, for the log line that says so.
#[derive(Debug)]
enum End {
    /// The follower went away (its side of the stream closed).
    Gone,
    /// A send did not complete within the bound.
    SendTimeout,
    /// The leader is stopping.
    Stopped,
    /// Records the stream needed are gone from the ring.
    Exhausted(String),
    /// Too many full syncs (or deltas as large) running.
    Refused,
    /// The leader's storage failed: it claims no index any more.
    Failed,
}

/// Keeps the stream in the leader's registry while it lives.
struct Registered {
    shared: Arc<LeaderShared>,
    id: u64,
    entry: Arc<StreamEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.streams.lock().remove(&self.id);
    }
}

struct Stream {
    shared: Arc<LeaderShared>,
    tx: FrameSender,
    follower: String,
    reg: Registered,
    caps: Capabilities,
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
    let mut stream = Stream {
        reg: Registered {
            shared: shared.clone(),
            id,
            entry,
        },
        shared,
        tx,
        follower,
        caps,
    };
    let end = stream.serve(routed, ring).await;
    let cursor = stream.reg.entry.cursor.load(Ordering::Relaxed);
    match &end {
        End::Gone => {
            tracing::info!(follower = %stream.follower, cursor, "follower stream closed by the follower")
        }
        End::Stopped => {
            tracing::info!(follower = %stream.follower, cursor, "follower stream ended: leader stopping")
        }
        End::Failed => tracing::warn!(
            follower = %stream.follower, cursor,
            "follower stream ended: the leader cannot persist changes"
        ),
        End::SendTimeout => tracing::warn!(
            follower = %stream.follower, cursor, bound = ?stream.shared.config.send_timeout,
            "follower did not take a frame within the send bound; its stream is dropped"
        ),
        End::Exhausted(why) => {
            stream
                .shared
                .stats
                .history_misses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                follower = %stream.follower, cursor, reason = %why,
                "follower stream ended with RESOURCE_EXHAUSTED; it will come back for a delta or a full sync"
            )
        }
        End::Refused => tracing::warn!(
            follower = %stream.follower, "sync refused by admission; the follower will retry"
        ),
    }
}

impl Stream {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Send one frame within the bound. Shutdown interrupts a send that is
    /// waiting on a slow follower, so no stream can hold shutdown up.
    async fn send(&self, frame: impl Into<Frame>) -> Result<(), End> {
        let frame = frame.into();
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

    async fn serve(&mut self, routed: Route, ring: RingView) -> End {
        let end = match self.stream(routed, ring).await {
            Ok(never) => match never {},
            Err(end) => end,
        };
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

    fn set_cursor(&self, cursor: u64) {
        self.reg.entry.cursor.store(cursor, Ordering::Relaxed);
    }

    /// The stream's life; only ever returns how it ended.
    async fn stream(
        &mut self,
        routed: Route,
        ring: RingView,
    ) -> Result<std::convert::Infallible, End> {
        let shared = self.shared.clone();
        // The least index a completion may claim (PD's protocol only).
        let mut covers = 0;
        let (mut phase, mut cursor, mut pin) = match routed.action {
            RouteAction::UpToDate => {
                self.send(frames::empty(self.cluster_id(), ring.next_index))
                    .await?;
                (StreamPhase::Live, ring.next_index, None)
            }
            RouteAction::History(from) => (StreamPhase::CatchingUp, from, None),
            // A follower that speaks regionsync's extensions is caught up
            // from the store, so that its sync ends under any churn.
            RouteAction::FullSync if self.caps.any() => {
                let slot = self.admit(routed.cause)?;
                let mark = self.snapshot(routed.cause, None).await?;
                let completed = self.catch_up(mark, None).await?;
                drop(slot);
                shared
                    .stats
                    .count_full_sync(routed.cause, FullSyncOutcome::Completed);
                (StreamPhase::Live, completed, None)
            }
            RouteAction::FullSync => {
                let slot = self.admit(routed.cause)?;
                let pin = shared.ring.write().pin();
                self.snapshot(routed.cause, Some(&pin)).await?;
                // The snapshot may hold changes applied but not yet durable;
                // the completion must come at an index that covers them.
                covers = shared.store.read().applied_next();
                (StreamPhase::CatchingUp, pin.from(), Some((pin, slot)))
            }
            RouteAction::Delta(from) => {
                let slot = self.admit_delta(from)?;
                shared.stats.deltas.fetch_add(1, Ordering::Relaxed);
                let completed = self.catch_up(from, Some(from)).await?;
                drop(slot);
                (StreamPhase::Live, completed, None)
            }
        };
        self.set_cursor(cursor);
        let mut published = shared.published.subscribe();
        let mut stopping = shared.stopping.subscribe();
        let limits = shared.policy.limits();
        loop {
            if *stopping.borrow() {
                return Err(End::Stopped);
            }
            if shared.failed.load(Ordering::Relaxed) {
                return Err(End::Failed);
            }
            if pin.as_ref().is_some_and(|(p, _)| p.is_broken()) {
                return Err(self.catch_up_lost(cursor));
            }
            let view = StreamView {
                phase,
                cursor,
                ring: shared.ring.read().view(),
            };
            match shared.policy.plan_send(view) {
                SendStep::Records(range) => {
                    let records = shared.ring.read().read(
                        range.start,
                        range.count as usize,
                        limits.max_bytes as usize,
                    );
                    if records.is_empty() {
                        return Err(self.catch_up_lost(cursor));
                    }
                    let n = records.len() as u64;
                    self.send(frames::records_encoded(
                        self.cluster_id(),
                        range.start,
                        &records,
                    ))
                    .await?;
                    cursor = range.start + n;
                    self.set_cursor(cursor);
                }
                SendStep::CaughtUp(index) if index < covers => {
                    // Not yet published: wait, as an idle stream does.
                    tokio::select! {
                        _ = published.changed() => {}
                        _ = stopping.changed() => {}
                        _ = self.tx.closed() => return Err(End::Gone),
                    }
                }
                SendStep::CaughtUp(index) => {
                    self.send(frames::empty(self.cluster_id(), index)).await?;
                    phase = StreamPhase::Live;
                    if let Some((pin, _slot)) = pin.take() {
                        shared
                            .stats
                            .count_full_sync(routed.cause, FullSyncOutcome::Completed);
                        tracing::info!(
                            follower = %self.follower, pinned_from = pin.from(), completion_index = index,
                            "full sync complete; stream is live"
                        );
                    }
                }
                SendStep::Idle => {
                    tokio::select! {
                        _ = published.changed() => {}
                        _ = stopping.changed() => {}
                        _ = self.tx.closed() => return Err(End::Gone),
                        _ = tokio::time::sleep(shared.config.keepalive) => {
                            // Only idle streams get keepalives, so one can
                            // never overtake records still to be sent.
                            self.send(frames::empty(self.cluster_id(), cursor)).await?;
                        }
                    }
                }
                SendStep::Exhausted => return Err(self.catch_up_lost(cursor)),
            }
        }
    }

    fn catch_up_lost(&self, cursor: u64) -> End {
        let ring = self.shared.ring.read().view();
        End::Exhausted(format!(
            "records from index {cursor} are no longer in the leader's history ring [{}, {}) \
             (capacity {}); reconnect for a delta or a full sync",
            ring.first_index, ring.next_index, ring.capacity
        ))
    }
}
