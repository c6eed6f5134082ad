//! The status document (SPEC §6): what `GET /status` and `regionsync status`
//! print. Field names are a contract that outside scripts rely on; add
//! fields, never rename or remove them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy_runtime::PolicyInfo;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStatus {
    pub name: String,
    pub version: String,
}

impl From<PolicyInfo> for PolicyStatus {
    fn from(p: PolicyInfo) -> Self {
        PolicyStatus {
            name: p.name,
            version: p.version,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// "leader" or "follower".
    pub role: String,
    pub name: String,
    pub ready: bool,
    pub phase: String,
    pub cluster_id: u64,
    pub first_index: u64,
    pub next_index: u64,
    /// Number of regions.
    pub regions: u64,
    /// Order-independent digest of the region set (see `digest`).
    pub digest: String,
    pub policy: PolicyStatus,
    /// Full syncs by reason (leader: served; follower: received).
    pub full_syncs: BTreeMap<String, u64>,
    /// Extra, role-specific figures (lags, counters).
    #[serde(default)]
    pub details: BTreeMap<String, u64>,
}
