//! Removals the store keeps, so that a delta or a catch-up can say which
//! regions went away (docs/protocol.md §7).
//!
//! A delta sends the regions changed since the follower's index, and the
//! follower's overlap rule takes away the regions each of them covers. A
//! region removed on the leader whose range no region changed since covers
//! (Y absorbs X, then Y splits right-derived before the new left region is
//! heard of) would stay on the follower: the leader names it instead. Each
//! removal is kept with the index of the change that made it, up to a
//! bound; the oldest forgotten raise the store's delta floor past them, so
//! a sync from before the floor is a full sync.

use std::collections::{BTreeSet, HashMap};

/// Removals kept at most (about 50 bytes each).
pub(super) const MAX_TOMBSTONES: usize = 1 << 18;

/// Regions removed, with the index of the change that removed each.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    by_id: HashMap<u64, u64>,
    by_index: BTreeSet<(u64, u64)>,
}

impl Tombstones {
    /// Region `id` was removed by the change at `index`. `Some(i)` when the
    /// oldest removal, at index `i`, was forgotten to keep the bound.
    pub(super) fn bury(&mut self, id: u64, index: u64) -> Option<u64> {
        if let Some(old) = self.by_id.insert(id, index) {
            self.by_index.remove(&(old, id));
        }
        self.by_index.insert((index, id));
        if self.by_index.len() <= MAX_TOMBSTONES {
            return None;
        }
        let (oldest, gone) = self.by_index.pop_first().expect("over the bound");
        self.by_id.remove(&gone);
        Some(oldest)
    }

    /// Region `id` is present again.
    pub(super) fn revive(&mut self, id: u64) {
        if let Some(index) = self.by_id.remove(&id) {
            self.by_index.remove(&(index, id));
        }
    }

    /// Ids removed at or after `from` (and not present again), oldest first.
    pub(super) fn since(&self, from: u64) -> Vec<u64> {
        self.by_index
            .range((from, 0)..)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Removals kept.
    pub(super) fn len(&self) -> usize {
        self.by_index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_are_kept_by_index_revived_and_bounded() {
        let mut t = Tombstones::default();
        assert_eq!(t.bury(7, 10), None);
        assert_eq!(t.bury(8, 12), None);
        assert_eq!(t.since(11), vec![8]);
        assert_eq!(t.since(0), vec![7, 8]);
        t.revive(7);
        assert_eq!(t.since(0), vec![8]);
        // Removed again later: kept at the later index only.
        assert_eq!(t.bury(8, 20), None);
        assert_eq!((t.since(13), t.len()), (vec![8], 1));
        for id in 0..MAX_TOMBSTONES as u64 {
            t.bury(1_000 + id, 100 + id);
        }
        // The bound dropped the oldest: the removal of 8 at index 20.
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert!(!t.since(0).contains(&8));
    }
}
