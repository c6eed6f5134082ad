//! The status document (docs/protocol.md §6): what `GET /status` and `regionsync status`
//! print. Field names are a contract that outside scripts rely on; add
//! fields, never rename or remove them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::sync::atomic::Ordering;

use crate::policy_runtime::shadow::ShadowStatus;
use crate::policy_runtime::{PolicyInfo, PolicyRuntime};

/// The active policy, as the status JSON shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStatus {
    /// The policy's name.
    pub name: String,
    /// The policy's own version.
    pub version: String,
    /// Decisions the built-in policy answered because this one failed.
    #[serde(default)]
    pub builtin_answers: u64,
    /// Automatic rollbacks to the previous policy since start.
    #[serde(default)]
    pub rollbacks: u64,
    /// The last automatic rollback, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollback: Option<String>,
    /// A candidate policy running in shadow, with its disagreements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

impl From<PolicyInfo> for PolicyStatus {
    fn from(p: PolicyInfo) -> Self {
        PolicyStatus {
            name: p.name,
            version: p.version,
            builtin_answers: 0,
            rollbacks: 0,
            last_rollback: None,
            shadow: None,
        }
    }
}

impl PolicyStatus {
    /// The active policy of `runtime` with its failure counters.
    pub fn of(runtime: &PolicyRuntime) -> Self {
        let stats = runtime.stats();
        PolicyStatus {
            builtin_answers: stats.builtin_answers.load(Ordering::Relaxed),
            rollbacks: stats.rollbacks.load(Ordering::Relaxed),
            last_rollback: runtime.last_rollback(),
            shadow: runtime.shadow_status(),
            ..runtime.info().into()
        }
    }
}

/// The status document of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// "leader" or "follower".
    pub role: String,
    /// The node's name.
    pub name: String,
    /// Region reads are served (a follower: its copy is complete).
    pub ready: bool,
    /// Where the node stands: a leader "serving" or "failed"; a follower
    /// "awaiting", "snapshot", "streaming" or "refused".
    pub phase: String,
    /// The cluster id (0 while a new follower has not learnt it).
    pub cluster_id: u64,
    /// Oldest index in the node's history ring.
    pub first_index: u64,
    /// The node's next index.
    pub next_index: u64,
    /// Number of regions.
    pub regions: u64,
    /// Order-independent digest of the region set (see `digest`).
    pub digest: String,
    /// The active policy.
    pub policy: PolicyStatus,
    /// Full syncs by reason (leader: served; follower: received).
    pub full_syncs: BTreeMap<String, u64>,
    /// Extra, role-specific figures (lags, counters).
    #[serde(default)]
    pub details: BTreeMap<String, u64>,
    /// High availability: the election through etcd, for a node started
    /// with `--etcd` (absent for static roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
}

/// A node's view of the election (`crate::ha`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HaStatus {
    /// The etcd endpoints it uses.
    pub etcd: Vec<String>,
    /// The last etcd call succeeded.
    pub etcd_reachable: bool,
    /// The current leader's name (empty when none is known).
    pub leader: String,
    /// The current leader's gRPC URL.
    pub leader_url: String,
    /// The current leadership's term (etcd revision; 0: none known).
    pub term: u64,
    /// The newest term whose records this node holds.
    pub held_term: u64,
    /// The node may campaign now (its copy is complete and holds the newest
    /// term).
    pub eligible: bool,
    /// Milliseconds its lease fence still holds (leader only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Elections this node won.
    pub elections_won: u64,
    /// Times it stopped leading.
    pub step_downs: u64,
    /// How long the last promotion took, from seeing no leader to serving
    /// as leader, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promotion_ms: Option<u64>,
    /// When it last began serving as leader, in milliseconds since the Unix
    /// epoch (this machine's wall clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at_unix_ms: Option<u64>,
    /// Why it is not leading or campaigning, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// What a node holds at one moment, read together under its store's lock:
/// the observer for tests, benchmarks and tools that judge a node, so that
/// none of them takes a node's locks itself. The status document says the
/// same things as text.
#[derive(Debug, Clone)]
pub struct Held {
    /// Reads may be served (a leader: it has not failed).
    pub ready: bool,
    /// The set is complete (a leader's always is).
    pub complete: bool,
    /// The index the node's set is at: the next record it expects (a
    /// follower) or will number (a leader).
    pub next_index: u64,
    /// The oldest record the node's history ring still holds.
    pub first_index: u64,
    /// Records in the history ring.
    pub ring_len: usize,
    /// The region-set digest.
    pub digest: crate::digest::SetDigest,
    /// Regions held.
    pub regions: usize,
    /// The region whose range holds the key asked about, if one was.
    pub covering: Option<crate::region_store::StoredRegion>,
}
