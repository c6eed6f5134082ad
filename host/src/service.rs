//! The `pdpb.PD` gRPC service (SPEC §1) over whatever node serves it.
//!
//! Leader and follower serve the same read methods from their region store;
//! only the leader takes heartbeats and serves `SyncRegions`. A node says
//! through [`RegionSource`] whether it may serve reads now: a follower that
//! is not ready refuses them with an error instead of answering from a
//! partial store.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use parking_lot::RwLockReadGuard;
use regionsync_proto::metapb::Region;
use regionsync_proto::pdpb::{
    self, ErrorType, GetMembersRequest, GetMembersResponse, GetRegionByIdRequest, GetRegionRequest,
    GetRegionResponse, Member, RegionHeartbeatRequest, RegionHeartbeatResponse, RequestHeader,
    ResponseHeader, ScanRegionsRequest, ScanRegionsResponse, SyncRegionRequest, SyncRegionResponse,
    pd_server::Pd,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::leader::{Heartbeat, LeaderShared, sync_stream};
use crate::region_store::{RegionStore, StoredRegion, check_region};

/// Largest gRPC message a node accepts: a 4 MiB frame plus headroom, and
/// below the 8 MiB a PD follower accepts.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Budget of one ScanRegions answer.
const SCAN_BYTES: usize = 4 << 20;

/// What the service needs from the node behind it.
pub trait RegionSource: Send + Sync + 'static {
    /// The cluster this node belongs to (0 while a new follower has not
    /// learnt it yet).
    fn cluster_id(&self) -> u64;
    /// The store to answer reads from, or why reads are refused now. The
    /// answer holds the store's read lock, so readiness cannot change
    /// between the check and the read.
    fn readable(&self) -> Result<RwLockReadGuard<'_, RegionStore>, Status>;
    /// This node as a PD member.
    fn member(&self) -> Member;
    /// The leader's state, when this node is the leader.
    fn leader(&self) -> Option<&Arc<LeaderShared>> {
        None
    }
}

pub struct PdService<S> {
    node: Arc<S>,
}

impl<S: RegionSource> PdService<S> {
    pub fn new(node: Arc<S>) -> Self {
        PdService { node }
    }

    /// The tonic server wrapper with the node's message limits.
    pub fn into_server(self) -> pdpb::pd_server::PdServer<Self> {
        pdpb::pd_server::PdServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.node.cluster_id(),
            error: None,
        })
    }

    /// A request for another cluster is refused (a header without a
    /// cluster id is accepted for reads, as PD tools send one).
    fn check_cluster(&self, header: Option<&RequestHeader>, strict: bool) -> Result<(), Status> {
        let ours = self.node.cluster_id();
        let theirs = header.map_or(0, |h| h.cluster_id);
        // Lenient checks accept a request without a cluster id (PD tools
        // send none), and leave a node that has not learnt its own yet to
        // refuse by readiness instead.
        if theirs == ours || (!strict && (theirs == 0 || ours == 0)) {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "mismatched cluster id: this node belongs to cluster {ours}, the request to {theirs}"
            )))
        }
    }

    fn region_response(&self, found: Option<StoredRegion>) -> GetRegionResponse {
        let (region, leader) = match found {
            Some(r) => (Some(r.region), Some(r.leader)),
            None => (None, None),
        };
        GetRegionResponse {
            header: self.header(),
            region,
            leader,
            ..Default::default()
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: RegionSource> Pd for PdService<S> {
    async fn get_members(
        &self,
        request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        self.check_cluster(request.get_ref().header.as_ref(), false)?;
        let me = self.node.member();
        let leader = self.node.leader().map(|_| me.clone());
        Ok(Response::new(GetMembersResponse {
            header: self.header(),
            members: vec![me],
            etcd_leader: leader.clone(),
            leader,
        }))
    }

    type RegionHeartbeatStream = BoxStream<RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let leader = self.node.leader().cloned().ok_or_else(|| {
            Status::unavailable("this node is a follower; send heartbeats to the leader")
        })?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let cluster_id = leader.cluster_id;
        tokio::spawn(async move {
            loop {
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "heartbeat stream ended");
                        break;
                    }
                };
                let theirs = req.header.as_ref().map_or(0, |h| h.cluster_id);
                if theirs != cluster_id {
                    let _ = tx
                        .send(Err(Status::failed_precondition(format!(
                            "mismatched cluster id: this leader belongs to cluster {cluster_id}, \
                             the heartbeat to {theirs}"
                        ))))
                        .await;
                    break;
                }
                let refusal = match &req.region {
                    None => Some((0, "heartbeat without a region".to_string())),
                    Some(r) => check_region(r).err().map(|why| (r.id, why)),
                };
                if let Some((region_id, why)) = refusal {
                    leader.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(region_id, reason = %why, "malformed heartbeat refused");
                    let resp = refused(cluster_id, region_id, &why, req.region.as_ref());
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    continue;
                }
                let hb = Heartbeat::from_request(req).expect("checked above");
                if let Err(why) = leader.submit(hb).await {
                    let _ = tx.send(Err(Status::unavailable(why))).await;
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check_cluster(req.header.as_ref(), false)?;
        let found = self.node.readable()?.get_by_key(&req.region_key);
        Ok(Response::new(self.region_response(found)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check_cluster(req.header.as_ref(), false)?;
        let found = self.node.readable()?.get(req.region_id);
        Ok(Response::new(self.region_response(found)))
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check_cluster(req.header.as_ref(), false)?;
        let limit = usize::try_from(req.limit).unwrap_or(0).min(100_000);
        let limit = if limit == 0 { 100_000 } else { limit };
        let mut found = self
            .node
            .readable()?
            .scan(&req.start_key, &req.end_key, limit);
        // Each region goes out twice (region_metas and regions): keep the
        // answer well under the message limit; clients page on from the last
        // region's end key.
        let mut bytes = 0;
        if let Some(cut) = found.iter().position(|r| {
            bytes += 2 * (prost::Message::encoded_len(&r.region) + 16);
            bytes > SCAN_BYTES
        }) {
            found.truncate(cut.max(1));
        }
        let region_metas: Vec<Region> = found.iter().map(|r| r.region.clone()).collect();
        let leaders = found.iter().map(|r| r.leader).collect();
        let regions = found
            .into_iter()
            .map(|r| pdpb::Region {
                region: Some(r.region),
                leader: Some(r.leader),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ScanRegionsResponse {
            header: self.header(),
            region_metas,
            leaders,
            regions,
        }))
    }

    type SyncRegionsStream = BoxStream<SyncRegionResponse>;

    async fn sync_regions(
        &self,
        request: Request<Streaming<SyncRegionRequest>>,
    ) -> Result<Response<Self::SyncRegionsStream>, Status> {
        let leader =
            self.node.leader().cloned().ok_or_else(|| {
                Status::unavailable("this node is a follower; sync from the leader")
            })?;
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("SyncRegions stream closed before its request")
        })?;
        if let Err(status) = self.check_cluster(first.header.as_ref(), true) {
            tracing::warn!(
                follower = first.member.as_ref().map_or("", |m| m.name.as_str()),
                %status, "sync request refused"
            );
            return Err(status);
        }
        if leader.is_stopping() {
            return Err(Status::unavailable("the leader is stopping"));
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(sync_stream::run(leader, first, tx));
        // Later requests on the stream carry nothing we use; PD sends one.
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn refused(
    cluster_id: u64,
    region_id: u64,
    why: &str,
    region: Option<&Region>,
) -> RegionHeartbeatResponse {
    RegionHeartbeatResponse {
        header: Some(ResponseHeader {
            cluster_id,
            error: Some(pdpb::Error {
                r#type: ErrorType::InvalidValue as i32,
                message: format!("region {region_id} refused: {why}"),
            }),
        }),
        region_id,
        region_epoch: region.and_then(|r| r.region_epoch),
    }
}

/// A node as a PD member: its name, a stable id from the name, its URL.
pub fn member(name: &str, url: &str) -> Member {
    Member {
        name: name.to_string(),
        member_id: xxhash_rust::xxh3::xxh3_64(name.as_bytes()),
        client_urls: vec![url.to_string()],
        peer_urls: vec![url.to_string()],
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}
