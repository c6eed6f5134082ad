//! Opening a follower's stream: route it with the policy (from what the
//! follower asked for and announced) and start the task that serves it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use regionsync_proto::pdpb::SyncRegionRequest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{QUEUED_FRAMES, run};
use crate::leader::LeaderShared;
use crate::lineage::Lineage;
use crate::policy_runtime::{PolicyRuntime, RingView, Route, SyncRequest};
use crate::wire::Frame;
use crate::wire::{Capabilities, LastTerm};

/// A stream being served: its frames, and how it was routed (which the
/// service announces to a follower that announced its capabilities).
pub struct Opened {
    /// The frames, as the stream's task sends them.
    pub frames: ReceiverStream<Result<Frame, Status>>,
    /// The routing decision.
    pub routed: Route,
}

/// Route a follower whose request passed the cluster check, and start
/// serving it; the frames come out of the returned stream.
pub fn open(
    shared: &Arc<LeaderShared>,
    mut request: SyncRegionRequest,
    caps: Capabilities,
) -> Result<Opened, Status> {
    if shared.is_stopping() {
        return Err(Status::unavailable("the leader is stopping"));
    }
    if shared.failed.load(Ordering::Relaxed) {
        return Err(Status::unavailable(
            "the leader cannot persist changes; it claims no index until it is restarted",
        ));
    }
    let open = shared.streams.lock().len();
    if open >= shared.config.max_sync_streams {
        shared
            .stats
            .sync_streams_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            follower = %follower_name(&request), open, limit = shared.config.max_sync_streams,
            "SyncRegions stream refused: the stream limit is reached"
        );
        return Err(Status::resource_exhausted(format!(
            "this leader serves {open} SyncRegions streams, its limit; retry later"
        )));
    }
    let ring = shared.routing_view();
    let routing = route_stream(
        &shared.policy,
        &shared.lineage,
        ring,
        request.start_index,
        caps,
    );
    if let Some(theirs) = &routing.diverged {
        // Its records from somewhere before its index are not ours: only a
        // full sync replaces them (`crate::lineage`).
        tracing::warn!(
            follower = %follower_name(&request), start_index = request.start_index,
            their_term = %theirs, our_term = ?shared.lineage.term_before(request.start_index),
            lineage = %shared.lineage,
            "the follower's history diverged from this leader's (it holds another \
             leadership's records at its index); it gets a full sync"
        );
        shared.stats.diverged.fetch_add(1, Ordering::Relaxed);
    }
    let (routed, caps) = (routing.route, routing.caps);
    request.start_index = routing.start_index;
    tracing::info!(
        follower = %follower_name(&request), start_index = request.start_index,
        first_index = ring.first_index, next_index = ring.next_index,
        delta_floor = ring.delta_floor, capabilities = %caps.to_header(),
        action = ?routed.action, reason = routed.cause.as_str(),
        "routing a follower stream"
    );
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    shared
        .stream_tasks
        .spawn(run(shared.clone(), request, caps, routed, ring, tx));
    Ok(Opened {
        frames: ReceiverStream::new(rx),
        routed,
    })
}

/// How a follower's stream is routed.
#[derive(Debug, Clone)]
pub struct RoutedStream {
    /// The policy's decision.
    pub route: Route,
    /// What the follower announced, less what a diverged history cannot use.
    pub caps: Capabilities,
    /// The index the stream serves from (0 for a diverged history).
    pub start_index: u64,
    /// The term the follower's last record came from, when it is not ours
    /// there (`crate::lineage`): its history diverged.
    pub diverged: Option<String>,
}

/// Route a follower that asked from `start_index` with `caps`, against a
/// leader with `lineage` whose ring (with its store's delta floor) is
/// `ring`: no I/O, the same for the simulator's leader.
pub fn route_stream(
    policy: &PolicyRuntime,
    lineage: &Lineage,
    ring: RingView,
    start_index: u64,
    mut caps: Capabilities,
) -> RoutedStream {
    let diverged = diverged(lineage, start_index, caps.last_term);
    let start_index = if diverged.is_some() {
        caps.must_delta = false;
        0
    } else {
        start_index
    };
    let sync = SyncRequest {
        start_index,
        can_delta: caps.delta,
        must_delta: caps.must_delta,
    };
    RoutedStream {
        route: policy.route_request(sync, ring),
        caps,
        start_index,
        diverged,
    }
}

/// `Some(their term)` when a follower's last record at `start_index - 1`
/// was written by another term than ours there.
fn diverged(lineage: &Lineage, start_index: u64, last: LastTerm) -> Option<String> {
    if start_index == 0 {
        return None;
    }
    let ours = lineage.term_before(start_index);
    match last {
        LastTerm::NotSent => None,
        LastTerm::Known(t) if ours == Some(t) => None,
        LastTerm::Known(t) => Some(t.to_string()),
        LastTerm::Unknown => Some("unknown".into()),
    }
}

impl LeaderShared {
    /// The ring as routing sees it: with the store's delta floor.
    pub fn routing_view(&self) -> RingView {
        let ring = self.ring.read().view();
        RingView {
            delta_floor: self.store.read().delta_floor(),
            ..ring
        }
    }
}

pub(super) fn follower_name(request: &SyncRegionRequest) -> String {
    request
        .member
        .as_ref()
        .map(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "(unnamed)".into())
}
