//! Which leaderships wrote the follower's records (`crate::lineage`,
//! docs/protocol.md §8): what it tells a leader of its history, and when it
//! takes the leader's lineage as its own.

use crate::lineage::Lineage;
use crate::storage::{StorageError, WriteBatch};

use super::FollowerShared;

/// The store's lineage, and the one the current leader offered.
#[derive(Debug, Default)]
pub(super) struct Lineages {
    /// What the store's records come from (persisted with them).
    pub(super) held: Lineage,
    /// The current leader's, adopted with the first claim of its data (or
    /// at once, when it vouched that our records are its own).
    pub(super) offered: Option<Lineage>,
}

impl Lineages {
    /// Take the offered lineage as held by a store at `next`: only the
    /// leaderships that began at or before it (`Lineage::through`), so a
    /// store counts as holding a term only once it holds that term's
    /// records. `Some` (to persist) when it differs.
    pub(super) fn adopt(&mut self, next: u64) -> Option<Lineage> {
        let through = self.offered.as_ref()?.through(next);
        if through == self.held {
            return None;
        }
        self.held = through;
        Some(self.held.clone())
    }
}

impl FollowerShared {
    /// The newest leadership whose records the store holds (0: none, a
    /// static cluster's), and whether the store is complete and ready: what
    /// makes a follower fit to lead (`crate::ha`).
    pub fn held_term(&self) -> u64 {
        self.sync.lock().lineage.held.latest()
    }

    /// The term that wrote the record before `next` (what the leader checks
    /// our history against), `None` when our lineage forgot it.
    pub(super) fn last_term(&self, next: u64) -> Option<u64> {
        self.sync.lock().lineage.held.term_before(next)
    }

    /// The leader of this session offered its lineage: adopt it now when it
    /// vouched that our records are its own (`vouched`), else with the
    /// first claim of its data.
    pub(super) fn offer_lineage(
        &self,
        offered: Option<Lineage>,
        vouched: bool,
    ) -> Result<(), StorageError> {
        let adopted = {
            let mut sync = self.sync.lock();
            let next = sync.policy.next_index;
            sync.lineage.offered = offered;
            if vouched {
                sync.lineage.adopt(next)
            } else {
                None
            }
        };
        if let Some(batch) = adopted {
            self.persist(&WriteBatch {
                lineage: Some(batch),
                durable: true,
                ..Default::default()
            })?;
        }
        Ok(())
    }
}
