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
//! admission, and `plan-send` for each frame after the snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regionsync_proto::pdpb::{SyncRegionRequest, SyncRegionResponse};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tonic::Status;

use tokio_stream::wrappers::ReceiverStream;

use super::frames;
use super::{FullSyncOutcome, LeaderShared, StreamEntry};
use crate::history::Pin;
use crate::policy_runtime::{RouteAction, RouteCause, SendStep, StreamPhase, StreamView};

/// Where a stream's task puts its frames; gRPC takes them from the other end.
pub type FrameSender = mpsc::Sender<Result<SyncRegionResponse, Status>>;

/// Frames queued per stream beyond the one being sent: enough to overlap
/// reading the store with sending, small enough that a stalled follower
/// holds little memory.
const QUEUED_FRAMES: usize = 4;

/// Start serving a follower whose request passed the cluster check; the
/// frames come out of the returned stream.
pub fn open(
    shared: &Arc<LeaderShared>,
    request: SyncRegionRequest,
) -> Result<ReceiverStream<Result<SyncRegionResponse, Status>>, Status> {
    if shared.is_stopping() {
        return Err(Status::unavailable("the leader is stopping"));
    }
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    tokio::spawn(run(shared.clone(), request, tx));
    Ok(ReceiverStream::new(rx))
}

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
    /// Too many full syncs running.
    Refused,
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

/// Counts a running full sync for admission while it lives.
struct FullSyncSlot(Arc<LeaderShared>);

impl Drop for FullSyncSlot {
    fn drop(&mut self) {
        self.0.full_syncs_running.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Stream {
    shared: Arc<LeaderShared>,
    tx: FrameSender,
    follower: String,
    reg: Registered,
}

/// Serve one stream until it ends; logs how it ended.
async fn run(shared: Arc<LeaderShared>, request: SyncRegionRequest, tx: FrameSender) {
    let follower = request
        .member
        .as_ref()
        .map(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "(unnamed)".into());
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
    };
    let end = stream.serve(request.start_index).await;
    let cursor = stream.reg.entry.cursor.load(Ordering::Relaxed);
    match &end {
        End::Gone => {
            tracing::info!(follower = %stream.follower, cursor, "follower stream closed by the follower")
        }
        End::Stopped => {
            tracing::info!(follower = %stream.follower, cursor, "follower stream ended: leader stopping")
        }
        End::SendTimeout => tracing::warn!(
            follower = %stream.follower, cursor, bound = ?stream.shared.config.send_timeout,
            "follower did not take a frame within the send bound; its stream is dropped"
        ),
        End::Exhausted(why) => tracing::warn!(
            follower = %stream.follower, cursor, reason = %why,
            "follower stream ended with RESOURCE_EXHAUSTED; it will come back for a full sync"
        ),
        End::Refused => tracing::warn!(
            follower = %stream.follower, "full sync refused by admission; the follower will retry"
        ),
    }
}

impl Stream {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Send one frame within the bound. Shutdown interrupts a send that is
    /// waiting on a slow follower, so no stream can hold shutdown up.
    async fn send(&self, frame: SyncRegionResponse) -> Result<(), End> {
        let bytes = prost::Message::encoded_len(&frame) as u64;
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

    async fn serve(&mut self, start_index: u64) -> End {
        let end = match self.stream(start_index).await {
            Ok(never) => match never {},
            Err(end) => end,
        };
        match &end {
            End::Stopped => {
                let bound = self.shared.config.shutdown_timeout;
                let _ = self
                    .tx
                    .send_timeout(Ok(frames::stopped(self.cluster_id())), bound)
                    .await;
            }
            End::Exhausted(why) => self.fail(Status::resource_exhausted(why.clone())).await,
            End::Refused => {
                self.fail(Status::resource_exhausted(
                    "too many full syncs running; retry later",
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
    async fn stream(&mut self, start_index: u64) -> Result<std::convert::Infallible, End> {
        let shared = self.shared.clone();
        let ring = shared.ring.read().view();
        let routed = shared.policy.route_request(start_index, ring);
        tracing::info!(
            follower = %self.follower, start_index, first_index = ring.first_index,
            next_index = ring.next_index, action = ?routed.action, reason = routed.cause.as_str(),
            "routing a follower stream"
        );
        let (mut phase, mut cursor, mut pin) = match routed.action {
            RouteAction::UpToDate => {
                self.send(frames::empty(self.cluster_id(), ring.next_index))
                    .await?;
                (StreamPhase::Live, ring.next_index, None)
            }
            RouteAction::History(from) => (StreamPhase::CatchingUp, from, None),
            RouteAction::FullSync => {
                let (pin, slot) = self.full_sync(routed.cause).await?;
                (StreamPhase::CatchingUp, pin.from(), Some((pin, slot)))
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
                    self.send(frames::records(self.cluster_id(), range.start, &records))
                        .await?;
                    cursor = range.start + n;
                    self.set_cursor(cursor);
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
             (capacity {}); reconnect for a full sync",
            ring.first_index, ring.next_index, ring.capacity
        ))
    }

    /// Admission, pin, snapshot frames. Returns the pin (held until the
    /// catch-up is sent) and the admission slot.
    async fn full_sync(&mut self, cause: RouteCause) -> Result<(Arc<Pin>, FullSyncSlot), End> {
        let shared = self.shared.clone();
        let running = shared.full_syncs_running.fetch_add(1, Ordering::AcqRel);
        let slot = FullSyncSlot(shared.clone());
        if !shared.policy.admit_full_sync(running) {
            shared
                .stats
                .count_full_sync(cause, FullSyncOutcome::Refused);
            return Err(End::Refused);
        }
        shared
            .stats
            .count_full_sync(cause, FullSyncOutcome::Started);
        let pin = shared.ring.write().pin();
        let limits = shared.policy.limits();
        let started = Instant::now();
        let mut position = 0u64;
        let mut bytes = 0u64;
        let mut after: Option<Vec<u8>> = None;
        let mut stopping = shared.stopping.subscribe();
        loop {
            let chunk = shared.store.read().chunk_after(
                after.as_deref(),
                limits.max_regions as usize,
                limits.max_bytes as usize,
            );
            if chunk.is_empty() && position > 0 {
                break;
            }
            let n = chunk.len() as u64;
            after = chunk.last().map(|r| r.region.start_key.clone());
            let frame = frames::snapshot(self.cluster_id(), position, chunk);
            bytes += prost::Message::encoded_len(&frame) as u64;
            self.send(frame).await?;
            position += n;
            if n == 0 {
                break; // the one empty frame of an empty snapshot
            }
            if *stopping.borrow_and_update() {
                return Err(End::Stopped);
            }
            if pin.is_broken() {
                shared
                    .stats
                    .count_full_sync(cause, FullSyncOutcome::Exhausted);
                return Err(self.catch_up_lost(pin.from()));
            }
            if let Some(rate) = shared.config.full_sync_rate.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        tracing::info!(
            follower = %self.follower, regions = position, bytes, pinned_from = pin.from(),
            took = ?started.elapsed(), "full sync snapshot sent; catching up"
        );
        Ok((pin, slot))
    }
}
