//! A full sync's snapshot, received in bulk: the regions arrive in key order
//! into an empty store, so instead of inserting each into both B-trees (a
//! descent with a key comparison per level, into nodes that key-ordered
//! insertion leaves half full) they are kept in arrival order in a run
//! (`run`), and the two indexes are built from it once (`settle`), with
//! full nodes, the way a load builds them (`loader`).
//!
//! The run only exists while the maps are empty: it starts at
//! [`RegionStore::begin_bulk`] (a follower's reset) and is settled by the
//! first change that is not such an append (a catch-up's update, a split
//! streamed twice), by [`RegionStore::settle`] (a completion, a hand-over),
//! or by `clear`. Until then the run *is* the set, and the store's reads
//! below read it, so that no read has to know whether it is settled.
//!
//! One difference from one-at-a-time inserts: an id sent twice within the
//! run (a correct leader never does that without a newer epoch) keeps its
//! later copy when the run settles, as the durable store, keyed by id, does;
//! until then a scan shows both copies and the digest counts both, so such
//! a snapshot fails its completion's digest check.
//!
//! Full nodes are also what `grew` restores to maps grown one region at a
//! time (a leader's intake), and what `tree_builder` gives a store loaded
//! at start (`loader`), from sorted runs merged without a copy of the set.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::entry::Entry;
use super::key_ref::KeyRef;
use super::loader::key_index;
use super::{Loader, RegionStore};
use crate::digest::RegionFields;

impl RegionStore {
    /// Take the next regions in bulk (see the module): the store must be
    /// empty (a full sync's reset); it stays readable throughout.
    pub fn begin_bulk(&mut self) {
        self.bulk = self.is_empty();
    }

    /// A run waits to be indexed (see [`Self::settle`]).
    pub fn unsettled(&self) -> bool {
        !self.run.is_empty()
    }

    /// Build the indexes over a run in progress, and end bulk mode.
    pub fn settle(&mut self) {
        self.bulk = false;
        if self.run.is_empty() {
            return;
        }
        let run = std::mem::take(&mut self.run);
        // The sync's freed frames and batches go back to the system before
        // the indexes are built: the build is the sync's peak (BENCHMARKS.md,
        // "Kept: the store's memory, four steps").
        crate::release_free_memory();
        // The key index first, from the run as it is (in key order: its
        // runs are sorted already); then the id index, taking the run a
        // chunk at a time, so that the run shrinks as the index grows.
        let by_start = key_index(run.iter().map(|(_, e)| e));
        let mut loader = Loader::counted(self.digest, self.encoded_bytes);
        for (id, entry) in run.into_items() {
            loader.push(id, entry);
        }
        *self = RegionStore {
            applied_next: self.applied_next,
            delta_floor: self.delta_floor,
            tombstones: std::mem::take(&mut self.tombstones),
            ..loader.finish_with(Some(by_start))
        };
    }

    /// Append `region` to the run if the store is in bulk mode and the
    /// region starts at or after where the run ends; false otherwise (and
    /// the run is settled, so that the caller's ordinary path sees it all).
    pub(super) fn append_to_run(
        &mut self,
        region: &impl RegionFields,
        entry: Entry,
    ) -> Result<(), Entry> {
        if !self.bulk {
            return Err(entry);
        }
        // The last region's keys are kept apart rather than read from its
        // encoding: this is asked once per region of a snapshot, and the
        // reading cost a sixth of the follower's apply (BENCHMARKS.md).
        let (first, end) = &self.run_tail;
        let (start, end_key) = (region.start_key(), region.end_key());
        let follows = self.run.is_empty() || super::entry::range_lies_before(first, end, start);
        if !follows {
            self.settle();
            return Err(entry);
        }
        self.encoded_bytes += entry.blob().len();
        self.digest.add(region);
        self.run.push(entry);
        let (first, end) = &mut self.run_tail;
        first.clear();
        first.extend_from_slice(start);
        end.clear();
        end.extend_from_slice(end_key);
        Ok(())
    }

    /// Count one region linked into the maps, and rebuild both with full
    /// nodes once such links are a sixteenth of the store. A B-tree grown
    /// in key order, as a leader's intake of a new cluster grows it, is
    /// left with nodes a little over half full. Rebuilding whenever the
    /// store has grown by a fifteenth keeps at least fifteen sixteenths of
    /// its regions in full nodes, at an amortised cost of sixteen moves per
    /// region linked; a store that only changes the regions it holds never
    /// pays it. Why a sixteenth rather than a quarter: BENCHMARKS.md, "Kept:
    /// redb's page cache 6 MiB and a grown store rebuilt at a sixteenth".
    pub(super) fn grew(&mut self) {
        self.grown += 1;
        if self.grown >= REPACK_MIN && self.grown * REPACK_DIVISOR >= self.by_id.len() {
            self.grown = 0;
            repack(&mut self.by_id);
            repack(&mut self.by_start);
        }
    }

    /// Region `id`'s entry, wherever it is (the run's later copy first).
    pub(super) fn entry(&self, id: u64) -> Option<&Entry> {
        self.by_id.get(&id).or_else(|| {
            self.run
                .iter()
                .rev()
                .find(|(i, _)| *i == id)
                .map(|(_, e)| e)
        })
    }

    /// The region a key of the ordered index belongs to, with its id.
    pub(super) fn keyed(&self, key: &KeyRef) -> (u64, &Entry) {
        let id = key.id();
        (id, &self.by_id[&id])
    }

    /// The region with the greatest start key at or before `key`.
    pub(super) fn at_or_before(&self, key: &[u8]) -> Option<(u64, &Entry)> {
        let in_run = self.run.partition_point(|e| e.start_key() <= key);
        if in_run > 0 {
            return Some(self.run.get(in_run - 1));
        }
        let (key, _) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        Some(self.keyed(key))
    }

    /// Every region from `lower` on, in key order.
    pub(super) fn in_key_order<'a>(
        &'a self,
        lower: Bound<&[u8]>,
    ) -> impl Iterator<Item = (u64, &'a Entry)> + 'a {
        let from = match lower {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.run.partition_point(|e| e.start_key() < k),
            Bound::Excluded(k) => self.run.partition_point(|e| e.start_key() <= k),
        };
        self.by_start
            .range::<[u8], _>((lower, Bound::Unbounded))
            .map(|(key, _)| self.keyed(key))
            .chain(self.run.iter_from(from))
    }

    /// Every region with an id after `after`, in id order.
    pub(super) fn in_id_order(&self, after: Option<u64>) -> impl Iterator<Item = (u64, &Entry)> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        // Rare: only a caller that reads a run before it settles gets here.
        let mut run: Vec<(u64, &Entry)> = self
            .run
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| *id > a))
            .collect();
        run.sort_by_key(|(id, _)| *id);
        self.by_id
            .range((lower, Bound::Unbounded))
            .map(|(&id, e)| (id, e))
            .chain(run)
    }
}

/// Below this many links since the last build a store is too small for its
/// nodes' fill to matter.
pub(super) const REPACK_MIN: usize = 1 << 14;

/// The maps are rebuilt once the regions linked since their last build are
/// this fraction (1/n) of the store (see `grew`).
const REPACK_DIVISOR: usize = 16;

/// `map` rebuilt with full nodes. `append` into a map that holds only the
/// smallest element pushes the rest, in order, into new nodes filled to
/// capacity, freeing the old nodes as it passes them: no sorted copy of the
/// map in between, which `collect` would make, so the peak is the old map's
/// size and not twice it.
fn repack<K: Ord, V>(map: &mut BTreeMap<K, V>) {
    let mut rest = std::mem::take(map);
    let Some((key, value)) = rest.pop_first() else {
        return;
    };
    map.insert(key, value);
    map.append(&mut rest);
}

/// A store built by inserting `entries` in order, each replacing whatever
/// holds its id or its start key: the answer for a set that is not
/// consistent.
pub(super) fn insert_one_by_one(entries: Vec<(u64, Entry)>) -> RegionStore {
    let mut store = RegionStore::default();
    for (_, entry) in entries {
        let region = entry.decode();
        store.insert_entry(&region, entry);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_store::{Loader, Outcome};

    /// A store grown one region at a time past the size at which its maps are
    /// rebuilt (`bulk::repack`, several times over here), with splits in the
    /// middle between rebuilds, reads like one loaded in bulk from its set.
    #[test]
    fn a_store_grown_by_links_and_rebuilt_on_the_way_reads_like_a_bulk_load() {
        let n = 3 * super::REPACK_MIN as u64;
        let mut s = RegionStore::new();
        let mut splits = 0;
        for i in 0..n {
            let r = crate::region_store::sample::region(i, n, 1);
            assert_eq!(
                s.apply(&r, r.peers[1].id, 0, i + 1),
                Outcome::Applied { removed: vec![] }
            );
            // Now and then split an earlier region: a link in the middle.
            if i % 1_000 == 999 {
                let mut left = crate::region_store::sample::region(i / 2, n, 2);
                let mut right = left.clone();
                let mid = [left.start_key.clone(), b"\x00".to_vec()].concat();
                right.id = 10_000_000 + i;
                right.start_key = mid.clone();
                left.end_key = mid;
                s.apply(&right, 0, 0, i + 1);
                s.apply(&left, 0, 0, i + 1);
                splits += 1;
            }
        }
        assert!(s.grown < s.len(), "the maps were rebuilt on the way");
        let mut loader = Loader::default();
        for sr in s.scan(b"", b"", 0) {
            loader.add(
                &sr.region,
                sr.leader.id,
                s.entry(sr.region.id).unwrap().changed,
            );
        }
        let bulk = loader.finish();
        assert_eq!(s.len() as u64, n + splits);
        assert_same_set(&s, &bulk, n / 2);
        for sr in bulk.scan(b"", b"", 0) {
            let mid = [sr.region.start_key.clone(), b"\x01".to_vec()].concat();
            assert_eq!(s.get_by_key(&mid), bulk.get_by_key(&mid));
            assert_eq!(s.get(sr.region.id), Some(sr));
        }
    }

    /// A snapshot of several of the run's chunks, settled, is the store a
    /// load of the same regions builds.
    #[test]
    fn a_snapshot_of_several_chunks_settles_like_a_load() {
        let n = 2 * crate::region_store::run::CHUNK as u64 + 3;
        let mut s = RegionStore::new();
        let mut loader = Loader::default();
        s.begin_bulk();
        for i in 0..n {
            let r = crate::region_store::sample::region(i, n, 1);
            s.apply(&r, r.peers[i as usize % 3].id, 0, i + 1);
            loader.add(&r, r.peers[i as usize % 3].id, i + 1);
        }
        assert!(s.unsettled());
        let mid = crate::region_store::sample::region(n / 2, n, 1).start_key;
        let before = (s.get_by_key(&mid), s.scan(&mid, b"", 5));
        s.settle();
        let want = loader.finish();
        assert!(!s.unsettled());
        assert_eq!(before, (want.get_by_key(&mid), want.scan(&mid, b"", 5)));
        assert_same_set(&s, &want, n / 3);
    }

    /// `s` and `want` hold the same regions, with the same digest and size,
    /// and name the same regions changed since index `from`.
    fn assert_same_set(s: &RegionStore, want: &RegionStore, from: u64) {
        assert_eq!(s.digest(), want.digest());
        assert_eq!(s.encoded_bytes(), want.encoded_bytes());
        assert_eq!(s.scan(b"", b"", 0), want.scan(b"", b"", 0));
        assert_eq!(
            s.changed_since(from, None, usize::MAX),
            want.changed_since(from, None, usize::MAX)
        );
    }
}
