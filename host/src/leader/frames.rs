//! Building `SyncRegionResponse` frames (docs/protocol.md §1-§2). The arrays regions /
//! region_stats / region_leaders are index-aligned; a snapshot frame carries
//! no stats (a receiver uses stats only when their length matches).

use std::sync::Arc;

use regionsync_proto::pdpb::{ErrorType, Peers, PeersStats, ResponseHeader, SyncRegionResponse};

use crate::history::Record;
use crate::region_store::StoredRegion;
use crate::wire::ok_header;

/// No regions: up to date, caught up, completion, or keepalive.
pub fn empty(cluster_id: u64, start_index: u64) -> SyncRegionResponse {
    SyncRegionResponse {
        header: ok_header(cluster_id),
        start_index,
        ..Default::default()
    }
}

/// The frame every stream gets when the leader stops.
pub fn stopped(cluster_id: u64) -> SyncRegionResponse {
    error(cluster_id, "server stopped")
}

/// A frame whose header carries error UNKNOWN with `message`: the follower
/// changes nothing and reconnects.
pub fn error(cluster_id: u64, message: &str) -> SyncRegionResponse {
    SyncRegionResponse {
        header: Some(ResponseHeader {
            cluster_id,
            error: Some(regionsync_proto::pdpb::Error {
                r#type: ErrorType::Unknown as i32,
                message: message.into(),
            }),
        }),
        ..Default::default()
    }
}

/// Snapshot frame: `position` is the index of its first region in the snapshot.
pub fn snapshot(cluster_id: u64, position: u64, regions: Vec<StoredRegion>) -> SyncRegionResponse {
    let mut frame = empty(cluster_id, position);
    frame.region_leaders = regions.iter().map(|r| r.leader).collect();
    frame.regions = regions.into_iter().map(|r| r.region).collect();
    frame
}

/// History frame: `start_index` is the index of its first record.
pub fn records(cluster_id: u64, start_index: u64, records: &[Arc<Record>]) -> SyncRegionResponse {
    let mut frame = empty(cluster_id, start_index);
    frame.regions = records.iter().map(|r| r.region.clone()).collect();
    frame.region_leaders = records.iter().map(|r| r.leader).collect();
    frame.region_stats = records.iter().map(|r| r.stats).collect();
    frame.down_peers = records
        .iter()
        .map(|r| PeersStats {
            peers: r.down_peers.clone(),
        })
        .collect();
    frame.pending_peers = records
        .iter()
        .map(|r| Peers {
            peers: r.pending_peers.clone(),
        })
        .collect();
    frame
}

/// The end of a full or delta sync at `index`, with the leader's region-set
/// digest at that index for a follower that verifies (regionsync's field
/// 1001, which PD decoders skip).
pub fn completion(cluster_id: u64, index: u64, digest: Option<u128>) -> SyncRegionResponse {
    let mut frame = empty(cluster_id, index);
    if let Some(d) = digest {
        frame.regionsync_digest = crate::wire::digest_bytes(d);
    }
    frame
}
