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
//!
//! Each removal also keeps the epoch the region had, so that a late
//! heartbeat of that region at that epoch or an older one is stale, as it
//! would be were the region still there: a region's epoch never goes back,
//! and a follower holding the newer copy (from a snapshot read in chunks)
//! would ignore the older one that the leader took.

use std::collections::{BTreeSet, HashMap};

/// Removals kept at most (about 50 bytes each).
pub(super) const MAX_TOMBSTONES: usize = 1 << 18;

/// Regions removed, with the index of the change that removed each.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    /// id -> (index, (version, conf_ver)).
    by_id: HashMap<u64, (u64, (u64, u64))>,
    by_index: BTreeSet<(u64, u64)>,
}

impl Tombstones {
    /// Region `id`, at `epoch` (version, conf_ver), was removed by the
    /// change at `index`. `Some(i)` when the oldest removal, at index `i`,
    /// was forgotten to keep the bound.
    pub(super) fn bury(&mut self, id: u64, index: u64, epoch: (u64, u64)) -> Option<u64> {
        if let Some((old, _)) = self.by_id.insert(id, (index, epoch)) {
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
        if let Some((index, _)) = self.by_id.remove(&id) {
            self.by_index.remove(&(index, id));
        }
    }

    /// The epoch (version, conf_ver) region `id` had when it was removed,
    /// if its removal is kept.
    pub(super) fn epoch_of(&self, id: u64) -> Option<(u64, u64)> {
        self.by_id.get(&id).map(|(_, epoch)| *epoch)
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
        assert_eq!(t.bury(7, 10, (1, 1)), None);
        assert_eq!(t.bury(8, 12, (1, 1)), None);
        assert_eq!(t.since(11), vec![8]);
        assert_eq!(t.since(0), vec![7, 8]);
        t.revive(7);
        assert_eq!(t.since(0), vec![8]);
        // Removed again later: kept at the later index only.
        assert_eq!(t.bury(8, 20, (2, 1)), None);
        assert_eq!((t.since(13), t.len()), (vec![8], 1));
        assert_eq!((t.epoch_of(8), t.epoch_of(7)), (Some((2, 1)), None));
        for id in 0..MAX_TOMBSTONES as u64 {
            t.bury(1_000 + id, 100 + id, (1, 1));
        }
        // The bound dropped the oldest: the removal of 8 at index 20.
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert!(!t.since(0).contains(&8));
    }
}
