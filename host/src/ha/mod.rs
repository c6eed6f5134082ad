//! High availability: a node started with `--etcd` leads or follows as etcd
//! decides, and changes role without a restart (docs/protocol.md §8).
//!
//! - [`etcd`]: who leads, and campaigning with a lease (etcd's election, as
//!   PD's; nothing here elects);
//! - [`switch`]: the node as the service and the admin interface see it,
//!   whichever role it plays;
//! - this module: the supervisor that moves the node between roles.
//!
//! The rules, each for a failure seen in PD or in replication generally:
//! - only a node whose copy is complete (it claims an index) and holds the
//!   newest leadership's records campaigns (PD #10843: an empty member won and
//!   served nothing); a never-led cluster's first leader is the exception,
//!   preferring a node with data;
//! - the winner continues its own numbering from its warm store and ring
//!   (`handover`), so the others resume from it by history;
//! - an old leader's intake is fenced by its lease (`leader::fence`) and
//!   closes before etcd can let another win; a follower whose records came
//!   from a leadership the winner did not continue gets a full sync
//!   (`lineage`).

pub mod etcd;
mod supervisor;
pub mod switch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::follower::{Follower, FollowerConfig};
use crate::leader::LeaderConfig;
use crate::policy_runtime::PolicyRuntime;
use crate::role::{FollowerNode, NodeError};
use crate::server::GrpcServer;
use crate::service::PdService;
use crate::status::HaStatus;

pub use etcd::{Coordinator, EtcdError, Observed, Published};
pub use switch::{Role, Switch};

/// How a node under etcd runs.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// etcd's client URLs.
    pub etcd: Vec<String>,
    /// The cluster (its election keys are under `/regionsync/<id>/`).
    pub cluster_id: u64,
    /// The leadership lease's TTL: a leader that dies is replaced after at
    /// most about this long.
    pub lease_ttl: Duration,
    /// In a cluster that never had a leader, a node with an empty store
    /// waits this long before campaigning, so that one with data wins.
    pub bootstrap_grace: Duration,
    /// The leader role's settings (its term and fence are set per win).
    pub leader: LeaderConfig,
    /// The follower role's settings (its leader URL comes from etcd).
    pub follower: FollowerConfig,
}

impl HaConfig {
    /// The follower role's settings: this cluster, and no leader to dial
    /// until etcd names one.
    fn follower_role(&self) -> FollowerConfig {
        let mut config = self.follower.clone();
        config.leader = String::new();
        config.cluster_id = Some(self.cluster_id);
        config
    }
}

/// Why a node under etcd cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// etcd's client could not be made.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The node's store or server refused.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A node under etcd, serving on its listener.
pub struct HaNode {
    /// What the service and the admin interface see.
    pub switch: Arc<Switch>,
    server: GrpcServer,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HaNode {
    /// Open the store as a follower, serve on `listener`, and start taking
    /// part in the election.
    pub async fn start(
        config: HaConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> Result<HaNode, HaError> {
        let addr = listener.local_addr().map_err(NodeError::Listener)?;
        let tls = config.leader.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let advertise = format!("{scheme}://{addr}");
        let etcd = Coordinator::connect(&config.etcd, config.cluster_id).await?;
        let follower = Follower::start(config.follower_role(), policy.clone())
            .map_err(|e| HaError::Node(e.into()))?;
        let switch = Arc::new(Switch::new(
            config.leader.name.clone(),
            advertise.clone(),
            config.cluster_id,
            policy.clone(),
            HaStatus {
                etcd: config.etcd.clone(),
                ..Default::default()
            },
        ));
        switch.set(Role::Follower(Arc::new(FollowerNode {
            shared: follower.shared.clone(),
            advertise: advertise.clone(),
        })));
        let server = GrpcServer::spawn(listener, PdService::leader(switch.clone()), tls.as_ref())
            .map_err(NodeError::from)?;
        let (stop, stopped) = watch::channel(false);
        let supervisor = supervisor::Supervisor {
            config,
            policy,
            etcd,
            switch: switch.clone(),
            advertise,
            started: Instant::now(),
        };
        let task = tokio::spawn(supervisor.run(follower, stopped));
        Ok(HaNode {
            switch,
            server,
            stop,
            task,
        })
    }

    /// The gRPC address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// A clean stop: a leader resigns (so another wins at once, not after
    /// the lease's TTL) and says "server stopped" to its streams; a follower
    /// flushes its store.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the node did not stop its role within 10 s");
        }
        self.server.stop(Duration::from_secs(1)).await;
    }
}
