//! The follower as a running node: [`FollowerNode`] adapts a follower to the
//! gRPC service (reads only, and only when ready) and the admin interface;
//! [`RunningFollower`] is a follower serving reads on a listener, what
//! `regionsync follower` runs.

use std::sync::Arc;
use std::time::Duration;

use regionsync_proto::pdpb::Member;
use tonic::Status;

use super::NodeError;
use crate::admin::AdminNode;
use crate::follower::{Follower, FollowerConfig, FollowerShared};
use crate::policy_runtime::PolicyRuntime;
use crate::region_store::RegionStore;
use crate::server::GrpcServer;
use crate::service::{PdService, RegionReads};
use crate::status::Status as NodeStatus;

/// The follower as the gRPC service sees it: reads only, and only when ready.
pub struct FollowerNode {
    /// The follower.
    pub shared: Arc<FollowerShared>,
    /// URL clients reach this node at (GetMembers).
    pub advertise: String,
}

impl RegionReads for FollowerNode {
    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id()
    }

    fn read(&self, read: &mut dyn FnMut(&RegionStore)) -> Result<(), Status> {
        self.shared
            .read_if_ready(|store| read(store))
            .map_err(|state| {
                Status::unavailable(format!(
                    "follower {} is not ready ({}): it serves reads only once its copy of the \
                 leader's regions is complete",
                    self.shared.config().name,
                    state.phase.as_str()
                ))
            })
    }

    fn member(&self) -> Member {
        crate::wire::member(&self.shared.config().name, &self.advertise)
    }

    fn leader(&self) -> Option<Member> {
        None
    }
}

impl AdminNode for FollowerShared {
    fn status(&self) -> NodeStatus {
        FollowerShared::status(self)
    }

    fn metrics(&self) -> String {
        FollowerShared::metrics(self)
    }

    fn policy(&self) -> &PolicyRuntime {
        FollowerShared::policy(self)
    }
}

/// A follower serving reads over gRPC.
pub struct RunningFollower {
    /// The follower.
    pub follower: Follower,
    /// Its gRPC server.
    pub server: GrpcServer,
}

impl RunningFollower {
    /// Start a follower and serve its reads on `listener`.
    pub async fn start(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> Result<RunningFollower, NodeError> {
        let addr = listener.local_addr().map_err(NodeError::Listener)?;
        let tls = config.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let follower = Follower::start(config, policy)?;
        let node = Arc::new(FollowerNode {
            shared: follower.shared.clone(),
            advertise: format!("{scheme}://{addr}"),
        });
        let server = GrpcServer::spawn(listener, PdService::follower(node), tls.as_ref())?;
        Ok(RunningFollower { follower, server })
    }

    /// The follower's shared state (also its admin face).
    pub fn shared(&self) -> &Arc<FollowerShared> {
        &self.follower.shared
    }

    /// The gRPC URL.
    pub fn url(&self) -> String {
        let scheme = if self.follower.shared.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.server.local_addr())
    }

    /// A clean stop: the sync task, the store (flushed), then the server.
    pub async fn shutdown(self) {
        self.follower.shutdown().await;
        self.server.stop(Duration::from_secs(1)).await;
    }

    /// Stop without any orderly step, as a crash would.
    pub async fn kill(self) {
        self.follower.abort();
        self.server.stop(Duration::from_millis(100)).await;
    }
}
