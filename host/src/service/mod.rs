//! The `pdpb.PD` gRPC service (docs/protocol.md §1), over two narrow traits
//! rather than over either role's internals.
//!
//! [`RegionReads`] is what every node offers: its cluster id, its member
//! record, and its region store when reads may be served. [`Leading`] is what
//! only a leader adds: an intake for heartbeats and sync streams for
//! followers. The `role` module adapts the leader and the follower to these;
//! the service itself knows neither, so a role can change without touching
//! the wire handling, and the wire handling (cluster checks, malformed
//! heartbeats, answer sizes) is written once for both.

mod sync_route;

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
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

use crate::history::Record;
use crate::region_store::{MalformedRegion, RegionStore, StoredRegion, check_region};
use crate::wire::{
    CAPABILITIES_HEADER, Capabilities, Frame, LINEAGE_HEADER, LastTerm, MAX_MESSAGE_BYTES,
    ROUTE_HEADER, TERM_HEADER, ok_header,
};
pub use sync_route::SyncRoute;

/// Budget of one ScanRegions answer.
const SCAN_BYTES: usize = 4 << 20;

/// What every node offers the service.
pub trait RegionReads: Send + Sync + 'static {
    /// The cluster this node belongs to (0 while a new follower has not
    /// learnt it yet).
    fn cluster_id(&self) -> u64;
    /// Run `read` on the store, or say why reads are refused now. `read`
    /// runs under the store's read lock, so readiness cannot change between
    /// the check and the read.
    fn read(&self, read: &mut dyn FnMut(&RegionStore)) -> Result<(), Status>;
    /// This node as a PD member.
    fn member(&self) -> Member;
    /// The cluster's leader as a PD member, when this node knows it (itself,
    /// on a leader).
    fn leader(&self) -> Option<Member>;
}

/// A stream of sync frames for one follower.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

/// A sync stream as the leader opened it.
pub struct SyncStream {
    /// The frames.
    pub frames: FrameStream,
    /// The kind of sync, announced in the response metadata to a follower
    /// that announced its capabilities (`full-sync`, `delta`, ...).
    pub route: Option<&'static str>,
    /// The leader's lineage (`crate::lineage`), given to a follower that
    /// said which term wrote its last record; `None` for a static leader.
    pub lineage: Option<String>,
}

/// What only a leader offers the service.
pub trait Leading: Send + Sync + 'static {
    /// Queue a well-formed change for the intake, waiting while the intake is
    /// full (so a flood slows its sender instead of losing changes). An error
    /// ends the sender's heartbeat stream.
    fn submit(&self, change: Record) -> BoxFuture<'_, Result<(), Status>>;
    /// Count a heartbeat refused as malformed.
    fn count_refused(&self);
    /// A place for one more heartbeat stream, held while it lives; refused
    /// when the leader's limit of open heartbeat streams is reached.
    fn heartbeat_slot(&self) -> Result<Box<dyn Send>, Status>;
    /// How long a SyncRegions stream may take to send its request.
    fn first_request_timeout(&self) -> std::time::Duration;
    /// Count a SyncRegions stream closed for sending no request in time.
    fn count_first_request_timeout(&self);
    /// Serve a follower's sync stream, whose first request passed the
    /// cluster check, with what the follower announced in its metadata.
    fn open_sync(
        &self,
        request: SyncRegionRequest,
        caps: Capabilities,
    ) -> Result<SyncStream, Status>;
}

/// The gRPC service of one node.
#[derive(Clone)]
pub struct PdService {
    reads: Arc<dyn RegionReads>,
    leading: Option<Arc<dyn Leading>>,
}

impl PdService {
    /// A follower's service: reads only.
    pub fn follower(node: Arc<dyn RegionReads>) -> Self {
        PdService {
            reads: node,
            leading: None,
        }
    }

    /// A leader's service: reads, heartbeats and sync streams.
    pub fn leader<N: RegionReads + Leading>(node: Arc<N>) -> Self {
        PdService {
            reads: node.clone(),
            leading: Some(node),
        }
    }

    /// The tonic server with the node's message limits, SyncRegions served
    /// by its own route (`sync_route`).
    pub fn into_server(self) -> SyncRoute {
        let generated = pdpb::pd_server::PdServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        SyncRoute::new(self, generated)
    }

    fn header(&self) -> Option<ResponseHeader> {
        ok_header(self.reads.cluster_id())
    }

    /// A request for another cluster is refused. A lenient check (reads)
    /// accepts a request without a cluster id, as PD tools send none, and
    /// leaves a node that has not learnt its own yet to refuse by readiness.
    fn check_cluster(&self, header: Option<&RequestHeader>, strict: bool) -> Result<(), Status> {
        let ours = self.reads.cluster_id();
        let theirs = header.map_or(0, |h| h.cluster_id);
        if theirs == ours || (!strict && (theirs == 0 || ours == 0)) {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "mismatched cluster id: this node belongs to cluster {ours}, the request to {theirs}"
            )))
        }
    }

    fn leading(&self, refusal: &'static str) -> Result<Arc<dyn Leading>, Status> {
        self.leading
            .clone()
            .ok_or_else(|| Status::unavailable(refusal))
    }

    /// A GetRegion answer: the cluster checked leniently, then `find`'s pick.
    fn region_answer(
        &self,
        header: Option<&RequestHeader>,
        find: impl Fn(&RegionStore) -> Option<StoredRegion>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        self.check_cluster(header, false)?;
        let mut found = None;
        self.reads.read(&mut |store| found = find(store))?;
        let (region, leader) = match found {
            Some(r) => (Some(r.region), Some(r.leader)),
            None => (None, None),
        };
        Ok(Response::new(GetRegionResponse {
            header: self.header(),
            region,
            leader,
            ..Default::default()
        }))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        self.check_cluster(request.get_ref().header.as_ref(), false)?;
        let me = self.reads.member();
        let leader = self.reads.leader();
        let mut members = vec![me];
        if let Some(l) = leader.as_ref().filter(|l| l.name != members[0].name) {
            members.push(l.clone());
        }
        Ok(Response::new(GetMembersResponse {
            header: self.header(),
            members,
            etcd_leader: leader.clone(),
            leader,
        }))
    }

    type RegionHeartbeatStream = BoxStream<RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let leading = self.leading("this node is a follower; send heartbeats to the leader")?;
        let cluster_id = self.reads.cluster_id();
        let slot = leading.heartbeat_slot()?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // The slot counts this handler until its handle on the leader
            // is dropped: declared first, dropped last.
            let _slot = slot;
            let leading = leading;
            loop {
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(status) => {
                        // An oversized or undecodable message: say so to
                        // the sender (if it still listens) rather than end
                        // as if all went well.
                        tracing::warn!(%status, "heartbeat stream refused a message");
                        let _ = tx.send(Err(status)).await;
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
                let checked = match Record::from_heartbeat(req) {
                    None => Err((None, MalformedRegion::Absent)),
                    Some(change) => match check_region(&change.region) {
                        Ok(()) => Ok(change),
                        Err(why) => Err((Some(change.region), why)),
                    },
                };
                let change = match checked {
                    Ok(change) => change,
                    Err((region, why)) => {
                        leading.count_refused();
                        let region_id = region.as_ref().map_or(0, |r| r.id);
                        tracing::warn!(region_id, reason = %why, "malformed heartbeat refused");
                        let resp = refused(cluster_id, &why, region.as_ref());
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                if let Err(status) = leading.submit(change).await {
                    let _ = tx.send(Err(status)).await;
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
        self.region_answer(req.header.as_ref(), |store| {
            store.get_by_key(&req.region_key)
        })
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.region_answer(req.header.as_ref(), |store| store.get(req.region_id))
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check_cluster(req.header.as_ref(), false)?;
        let limit = usize::try_from(req.limit).unwrap_or(0).min(100_000);
        let limit = if limit == 0 { 100_000 } else { limit };
        let mut found = Vec::new();
        // Each region goes out twice (region_metas and regions): keep the
        // answer well under the message limit, and stop reading the store
        // there (not after decoding `limit` regions under its read lock);
        // clients page on from the last region's end key.
        self.reads.read(&mut |store| {
            found = store.scan_within(&req.start_key, &req.end_key, limit, SCAN_BYTES / 2)
        })?;
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

    type SyncRegionsStream = Pin<Box<dyn Stream<Item = Result<SyncRegionResponse, Status>> + Send>>;

    /// Frames as messages, for the generated route (`sync_route` serves it).
    async fn sync_regions(
        &self,
        request: Request<Streaming<SyncRegionRequest>>,
    ) -> Result<Response<Self::SyncRegionsStream>, Status> {
        let frames = self.sync_stream(request).await?;
        Ok(frames.map(|frames| -> Self::SyncRegionsStream {
            Box::pin(frames.map(|frame| {
                frame?
                    .into_message()
                    .map_err(|e| Status::internal(format!("a sync frame does not decode: {e}")))
            }))
        }))
    }
}

impl PdService {
    /// A follower's SyncRegions stream: its first request checked, then the
    /// leader's frames, with route and lineage in the response metadata.
    pub async fn sync_stream(
        &self,
        request: Request<Streaming<SyncRegionRequest>>,
    ) -> Result<Response<FrameStream>, Status> {
        let leading = self.leading("this node is a follower; sync from the leader")?;
        let metadata = request.metadata();
        let mut caps = metadata
            .get(CAPABILITIES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(Capabilities::parse)
            .unwrap_or_default();
        caps.last_term = LastTerm::parse(
            metadata
                .get(TERM_HEADER)
                .map(|v| v.to_str().unwrap_or("not text")),
        );
        let mut inbound = request.into_inner();
        let bound = leading.first_request_timeout();
        let first = match tokio::time::timeout(bound, inbound.message()).await {
            Ok(first) => first?.ok_or_else(|| {
                Status::invalid_argument("SyncRegions stream closed before its request")
            })?,
            Err(_) => {
                leading.count_first_request_timeout();
                tracing::warn!(bound = ?bound, "SyncRegions stream sent no request in time; closed");
                return Err(Status::deadline_exceeded(format!(
                    "no SyncRegions request within {bound:?} of opening the stream"
                )));
            }
        };
        if let Err(status) = self.check_cluster(first.header.as_ref(), true) {
            tracing::warn!(
                follower = first.member.as_ref().map_or("", |m| m.name.as_str()),
                %status, "sync request refused"
            );
            return Err(status);
        }
        let opened = leading.open_sync(first, caps)?;
        // Later requests on the stream carry nothing we use; PD sends one.
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        let lineage = opened
            .lineage
            .filter(|_| caps.last_term != LastTerm::NotSent)
            .and_then(|l| l.parse().ok());
        let mut response = Response::new(opened.frames);
        if let Some(lineage) = lineage {
            response.metadata_mut().insert(LINEAGE_HEADER, lineage);
        }
        if let Some(route) = opened.route.filter(|_| caps.any()) {
            response.metadata_mut().insert(
                ROUTE_HEADER,
                tonic::metadata::MetadataValue::from_static(route),
            );
        }
        Ok(response)
    }
}

/// The answer to a malformed heartbeat: `INVALID_VALUE` naming the region
/// and the reason; the stream stays open.
fn refused(
    cluster_id: u64,
    why: &MalformedRegion,
    region: Option<&Region>,
) -> RegionHeartbeatResponse {
    let region_id = region.map_or(0, |r| r.id);
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
