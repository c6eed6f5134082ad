//! The leader as a running node: [`LeaderNode`] adapts a leader to the gRPC
//! service and the admin interface; [`RunningLeader`] is a leader serving on
//! a listener, what `regionsync leader` runs and tests start on loopback.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use regionsync_proto::pdpb::{Member, SyncRegionRequest};
use tonic::Status;

use super::NodeError;
use crate::admin::AdminNode;
use crate::history::Record;
use crate::leader::{Leader, LeaderConfig, LeaderShared};
use crate::policy_runtime::PolicyRuntime;
use crate::region_store::RegionStore;
use crate::server::GrpcServer;
use crate::service::{Leading, PdService, RegionReads, SyncStream};
use crate::status::Status as NodeStatus;
use crate::wire::Capabilities;

/// The leader as the gRPC service and the admin interface see it.
pub struct LeaderNode {
    /// The leader.
    pub shared: Arc<LeaderShared>,
    /// URL clients reach this node at (GetMembers).
    pub advertise: String,
}

impl RegionReads for LeaderNode {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id()
    }

    fn read(&self, read: &mut dyn FnMut(&RegionStore)) -> Result<(), Status> {
        self.shared.read_regions(|store| read(store));
        Ok(())
    }

    fn member(&self) -> Member {
        crate::wire::member(&self.shared.config().name, &self.advertise)
    }

    fn leader(&self) -> Option<Member> {
        Some(self.member())
    }
}

impl Leading for LeaderNode {
    fn submit(&self, change: Record) -> BoxFuture<'_, Result<(), Status>> {
        async move {
            self.shared
                .submit(change)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))
        }
        .boxed()
    }

    fn count_refused(&self) {
        self.shared
            .stats()
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn heartbeat_slot(&self) -> Result<Box<dyn Send>, Status> {
        match self.shared.heartbeat_slot() {
            Some(slot) => Ok(Box::new(slot)),
            None => Err(Status::resource_exhausted(format!(
                "this leader has {} heartbeat streams open, its limit; retry later",
                self.shared.config().max_heartbeat_streams
            ))),
        }
    }

    fn first_request_timeout(&self) -> std::time::Duration {
        self.shared.config().first_request_timeout
    }

    fn count_first_request_timeout(&self) {
        self.shared
            .stats()
            .sync_first_request_timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn open_sync(
        &self,
        request: SyncRegionRequest,
        caps: Capabilities,
    ) -> Result<SyncStream, Status> {
        let opened = crate::leader::sync_stream::open(&self.shared, request, caps)?;
        let route = crate::wire::route_label(opened.routed.action);
        let lineage = self.shared.lineage();
        Ok(SyncStream {
            frames: Box::pin(opened.frames),
            route: Some(route),
            lineage: (!lineage.is_empty()).then(|| lineage.to_string()),
        })
    }
}

impl AdminNode for LeaderShared {
    fn status(&self) -> NodeStatus {
        LeaderShared::status(self)
    }

    fn metrics(&self) -> String {
        LeaderShared::metrics(self)
    }

    fn policy(&self) -> &PolicyRuntime {
        LeaderShared::policy(self)
    }
}

/// A leader serving gRPC on a listener.
pub struct RunningLeader {
    /// The leader.
    pub leader: Leader,
    /// Its gRPC server.
    pub server: GrpcServer,
}

impl RunningLeader {
    /// Start a leader and serve it on `listener`.
    pub async fn start(
        config: LeaderConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> Result<RunningLeader, NodeError> {
        let addr = listener.local_addr().map_err(NodeError::Listener)?;
        let tls = config.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let leader = Leader::start(config, policy)?;
        let node = Arc::new(LeaderNode {
            shared: leader.shared.clone(),
            advertise: format!("{scheme}://{addr}"),
        });
        let server = GrpcServer::spawn(listener, PdService::leader(node), tls.as_ref())?;
        Ok(RunningLeader { leader, server })
    }

    /// The leader's shared state (also its admin face).
    pub fn shared(&self) -> &Arc<LeaderShared> {
        &self.leader.shared
    }

    /// The gRPC URL.
    pub fn url(&self) -> String {
        let scheme = if self.leader.shared.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.server.local_addr())
    }

    /// Streams first (each gets "server stopped"), then the server.
    pub async fn shutdown(self) {
        let bound = self.leader.shared.config().shutdown_timeout;
        self.leader.shutdown().await;
        self.server.stop(bound).await;
    }
}
