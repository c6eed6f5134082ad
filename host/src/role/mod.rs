//! One role (leader or follower) running with its gRPC server, ready for an
//! admin interface: what `regionsync leader` and `regionsync follower` run,
//! and what a node under etcd (`crate::ha`, `regionsync node`) starts and
//! stops as it changes role. This is the one module that knows every part;
//! the parts know only what they use.
//!
//! ```text
//!            role::RunningLeader              role::RunningFollower
//!           /        |          \             /        |         \
//!   leader::Leader  server   LeaderNode   follower::  server   FollowerNode
//!                     |      (RegionReads   Follower    |      (RegionReads,
//!                  service    + Leading,              service    AdminNode)
//!                             AdminNode)
//! ```
//!
//! The adapters ([`LeaderNode`], [`FollowerNode`]) implement the narrow
//! traits the gRPC service and the admin interface ask for, by delegating
//! to the role; neither the service nor the admin interface imports a role.

mod follower;
mod leader;

pub use follower::{FollowerNode, RunningFollower};
pub use leader::{LeaderNode, RunningLeader};

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The leader's store or cluster id refused.
    #[error(transparent)]
    Leader(#[from] crate::leader::StartError),
    /// The follower's store or cluster id refused.
    #[error(transparent)]
    Follower(#[from] crate::follower::StartError),
    /// The listener given has no local address.
    #[error("the gRPC listener has no local address")]
    Listener(#[source] std::io::Error),
    /// The gRPC server could not start.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
}
