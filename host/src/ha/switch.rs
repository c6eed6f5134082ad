//! One node, two roles over time: [`Switch`] is what the gRPC service and
//! the admin interface see of a node under etcd, whichever role it plays.
//!
//! The supervisor (`ha::run`) changes the role; the switch delegates every
//! call to the role of the moment. Between roles (a promotion or a step-down
//! under way) reads and intake are refused, never answered from a set that
//! is being handed over.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use regionsync_proto::pdpb::{Member, SyncRegionRequest};
use tonic::Status;

use crate::admin::AdminNode;
use crate::history::Record;
use crate::policy_runtime::PolicyRuntime;
use crate::region_store::RegionStore;
use crate::role::{FollowerNode, LeaderNode};
use crate::service::{Leading, RegionReads, SyncStream};
use crate::status::{HaStatus, Status as NodeStatus};

/// The role a node plays now.
#[derive(Clone)]
pub enum Role {
    /// Following the leader etcd names (or waiting for one).
    Follower(Arc<FollowerNode>),
    /// Leading, under a lease.
    Leader(Arc<LeaderNode>),
    /// Handing over from one role to the other.
    Changing,
}

/// A node under etcd, as the service and the admin interface see it.
pub struct Switch {
    role: RwLock<Role>,
    name: String,
    advertise: String,
    cluster_id: u64,
    policy: Arc<PolicyRuntime>,
    /// The election as the supervisor last saw it.
    pub(super) ha: Mutex<HaStatus>,
}

impl Switch {
    /// A node named `name`, reached at `advertise`, between roles.
    pub fn new(
        name: String,
        advertise: String,
        cluster_id: u64,
        policy: Arc<PolicyRuntime>,
        ha: HaStatus,
    ) -> Self {
        Switch {
            role: RwLock::new(Role::Changing),
            name,
            advertise,
            cluster_id,
            policy,
            ha: Mutex::new(ha),
        }
    }

    /// Play `role` from now on.
    pub fn set(&self, role: Role) {
        *self.role.write() = role;
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.read().clone()
    }

    /// The election as the supervisor last saw it.
    pub fn ha(&self) -> HaStatus {
        self.ha.lock().clone()
    }

    fn not_leader(&self) -> Status {
        let ha = self.ha.lock();
        // Never itself: between a step-down and etcd's next word, what it
        // last saw may still name this node.
        if ha.leader_url.is_empty() || ha.leader == self.name {
            Status::unavailable(format!(
                "node {} is not the leader, and no leader is elected right now; retry",
                self.name
            ))
        } else {
            Status::unavailable(format!(
                "node {} is not the leader; the leader is {} at {}",
                self.name, ha.leader, ha.leader_url
            ))
        }
    }
}

impl RegionReads for Switch {
    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn read(&self, read: &mut dyn FnMut(&RegionStore)) -> Result<(), Status> {
        match &*self.role.read() {
            Role::Follower(f) => f.read(read),
            Role::Leader(l) => l.read(read),
            Role::Changing => Err(Status::unavailable(format!(
                "node {} is changing roles (a leader election); retry",
                self.name
            ))),
        }
    }

    fn member(&self) -> Member {
        crate::wire::member(&self.name, &self.advertise)
    }

    fn leader(&self) -> Option<Member> {
        let ha = self.ha.lock();
        (!ha.leader_url.is_empty()).then(|| crate::wire::member(&ha.leader, &ha.leader_url))
    }
}

impl Leading for Switch {
    fn submit(&self, change: Record) -> BoxFuture<'_, Result<(), Status>> {
        let role = self.role();
        async move {
            match role {
                Role::Leader(l) => l.submit(change).await,
                _ => Err(self.not_leader()),
            }
        }
        .boxed()
    }

    fn count_refused(&self) {
        if let Role::Leader(l) = &*self.role.read() {
            l.count_refused();
        }
    }

    fn heartbeat_slot(&self) -> Result<Box<dyn Send>, Status> {
        match self.role() {
            Role::Leader(l) => l.heartbeat_slot(),
            _ => Err(self.not_leader()),
        }
    }

    fn first_request_timeout(&self) -> std::time::Duration {
        match self.role() {
            Role::Leader(l) => l.first_request_timeout(),
            _ => crate::leader::config::FIRST_REQUEST_TIMEOUT,
        }
    }

    fn count_first_request_timeout(&self) {
        if let Role::Leader(l) = &*self.role.read() {
            l.count_first_request_timeout();
        }
    }

    fn open_sync(
        &self,
        request: SyncRegionRequest,
        caps: crate::wire::Capabilities,
    ) -> Result<SyncStream, Status> {
        match self.role() {
            Role::Leader(l) => l.open_sync(request, caps),
            _ => Err(self.not_leader()),
        }
    }
}

impl AdminNode for Switch {
    fn status(&self) -> NodeStatus {
        let mut status = match self.role() {
            Role::Follower(f) => f.shared.status(),
            Role::Leader(l) => l.shared.status(),
            Role::Changing => NodeStatus {
                role: "follower".into(),
                name: self.name.clone(),
                ready: false,
                phase: "changing-role".into(),
                cluster_id: self.cluster_id,
                first_index: 0,
                next_index: 0,
                regions: 0,
                digest: String::new(),
                policy: crate::status::PolicyStatus::of(&self.policy),
                full_syncs: Default::default(),
                details: Default::default(),
                ha: None,
            },
        };
        let mut ha = self.ha();
        if let Role::Leader(l) = self.role() {
            ha.lease_ms = l
                .shared
                .config()
                .fence
                .remaining()
                .map(|d| d.as_millis() as u64);
        }
        status.ha = Some(ha);
        status
    }

    fn metrics(&self) -> String {
        let role = match self.role() {
            Role::Follower(f) => f.shared.metrics(),
            Role::Leader(l) => l.shared.metrics(),
            Role::Changing => String::new(),
        };
        let ha = self.ha();
        let mut m = crate::metrics::Metrics::default();
        m.gauge(
            "ha_term",
            "The current leadership's term (etcd revision)",
            i64::try_from(ha.term).unwrap_or(i64::MAX),
        );
        m.gauge(
            "ha_eligible",
            "1 when this node may campaign (complete copy of the newest term)",
            i64::from(ha.eligible),
        );
        m.gauge(
            "ha_etcd_reachable",
            "1 when the last etcd call succeeded",
            i64::from(ha.etcd_reachable),
        );
        m.counter(
            "ha_elections_won",
            "Elections this node won",
            ha.elections_won,
        );
        m.counter(
            "ha_step_downs",
            "Times this node stopped leading",
            ha.step_downs,
        );
        // Two expositions in one answer: the role's, without its end mark.
        let role = role.trim_end().trim_end_matches("# EOF").to_string();
        role + &m.render()
    }

    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }
}
