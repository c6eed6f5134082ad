//! Opening a follower's stream: route it with the policy (from what the
//! follower asked for and announced) and start the task that serves it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use regionsync_proto::pdpb::{SyncRegionRequest, SyncRegionResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{QUEUED_FRAMES, run};
use crate::leader::LeaderShared;
use crate::policy_runtime::{RingView, Routed, SyncRequest};
use crate::wire::Capabilities;

/// A stream being served: its frames, and how it was routed (which the
/// service announces to a follower that announced its capabilities).
pub struct Opened {
    /// The frames, as the stream's task sends them.
    pub frames: ReceiverStream<Result<SyncRegionResponse, Status>>,
    /// The routing decision.
    pub routed: Routed,
}

/// Route a follower whose request passed the cluster check, and start
/// serving it; the frames come out of the returned stream.
pub fn open(
    shared: &Arc<LeaderShared>,
    request: SyncRegionRequest,
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
    let ring = shared.routing_view();
    let sync = SyncRequest {
        start_index: request.start_index,
        can_delta: caps.delta,
        must_delta: caps.must_delta,
    };
    let routed = shared.policy.route_request(sync, ring);
    tracing::info!(
        follower = %follower_name(&request), start_index = request.start_index,
        first_index = ring.first_index, next_index = ring.next_index,
        delta_floor = ring.delta_floor, capabilities = %caps.to_header(),
        action = ?routed.action, reason = routed.cause.as_str(),
        "routing a follower stream"
    );
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    tokio::spawn(run(shared.clone(), request, caps, routed, ring, tx));
    Ok(Opened {
        frames: ReceiverStream::new(rx),
        routed,
    })
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
