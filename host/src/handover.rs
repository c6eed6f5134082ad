//! What a node hands from one role to the next when leadership moves
//! (docs/protocol.md §8): the open store, the region set loaded from it, and
//! the history ring with the leader's numbering.
//!
//! Promotion reuses the follower's warm state instead of reloading a
//! million regions from disk, which is what keeps a failover short; the
//! ring it brings lets the other followers resume by history. The handing
//! role has stopped writing and made its last commit durable first, so the
//! set, the store and the ring all name the same index.

use crate::history::HistoryRing;
use crate::region_store::RegionStore;
use crate::storage::Storage;

/// A stopped role's state, ready for the next role.
pub struct Handover {
    /// The durable store, open, its last commit durable.
    pub storage: Storage,
    /// The regions it holds (equal to the store's), at `store.applied_next()`.
    pub store: RegionStore,
    /// The records before that index that are still kept.
    pub ring: HistoryRing,
}
