//! [`Loader`]: builds a store from a complete, consistent set in bulk (a
//! store being loaded at start): both indexes are built from sorted runs
//! (`tree_builder`), which fills their B-tree nodes, instead of one
//! insertion at a time, and without a copy of the whole set beside them.

use std::collections::BTreeMap;

use regionsync_proto::metapb::Region;

use super::RegionStore;
use super::bulk;
use super::entry::Entry;
use super::key_ref::KeyRef;
use super::tree_builder::TreeBuilder;
use crate::digest::SetDigest;

/// Collects regions, then builds the store in one go.
pub struct Loader {
    by_id: TreeBuilder<u64, Entry>,
    digest: SetDigest,
    encoded_bytes: usize,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            by_id: TreeBuilder::new(),
            digest: SetDigest::default(),
            encoded_bytes: 0,
        }
    }
}

impl Loader {
    /// Add one region with its leader peer id and the index of its last
    /// change.
    pub fn add(&mut self, region: &Region, leader_id: u64, changed: u64) {
        let entry = Entry::new(region, leader_id, 0, changed);
        self.encoded_bytes += entry.blob().len();
        self.digest.add(region);
        self.push(region.id, entry);
    }

    /// A loader for entries whose digest and size are counted already (a
    /// snapshot's run, `bulk`); they come through [`Self::push`]. It sorts
    /// a run's chunk at a time: its scratch is then what the run frees as
    /// it is taken, where a settling snapshot is at its peak memory, for two
    /// more passes over the ids (BENCHMARKS.md, "Kept: a settling
    /// snapshot's run without ids, its id index sorted a chunk at a time").
    pub(super) fn counted(digest: SetDigest, encoded_bytes: usize) -> Self {
        Loader {
            by_id: TreeBuilder::with_run_len(super::run::CHUNK),
            digest,
            encoded_bytes,
        }
    }

    /// Add one counted entry (see [`Self::counted`]).
    pub(super) fn push(&mut self, id: u64, entry: Entry) {
        self.by_id.push(id, entry);
    }

    /// The store, built.
    pub fn finish(self) -> RegionStore {
        self.finish_with(None)
    }

    /// The store, with its key index built already by the caller over the
    /// same entries (`key_index`), or built here. Where an id repeats the
    /// caller's index is dropped unread: its keys may borrow the encodings
    /// of copies no longer kept.
    pub(super) fn finish_with(self, by_start: Option<(BTreeMap<KeyRef, ()>, bool)>) -> RegionStore {
        let store = self.build(by_start);
        // The sorted runs were scratch; hand their memory back now rather
        // than carry it for the life of the node.
        crate::release_free_memory();
        store
    }

    fn build(self, by_start: Option<(BTreeMap<KeyRef, ()>, bool)>) -> RegionStore {
        let (by_id, ids_distinct) = self.by_id.finish();
        let (by_start, keys_distinct) = by_start
            .filter(|_| ids_distinct)
            .unwrap_or_else(|| key_index(by_id.values()));
        if !keys_distinct {
            // Not a consistent set: a start key claimed twice (by the
            // greater id, inserted later, it stays). Digest and size are
            // counted again.
            drop(by_start);
            return bulk::insert_one_by_one(by_id.into_iter().collect());
        }
        let (mut digest, mut encoded_bytes) = (self.digest, self.encoded_bytes);
        if !ids_distinct {
            // An id read twice, its later copy kept: a follower's region
            // stored in its snapshot and again as a row written since.
            // Digest and size are counted again, over what is kept.
            (digest, encoded_bytes) = (SetDigest::default(), 0);
            for entry in by_id.values() {
                digest.add(&entry.read());
                encoded_bytes += entry.blob().len();
            }
        }
        RegionStore {
            by_id,
            by_start,
            digest,
            encoded_bytes,
            ..RegionStore::default()
        }
    }
}

/// The key index over `entries` (in any order), and whether their start
/// keys were distinct. Each key borrows its entry's encoding, so the
/// entries must be the ones the store goes on to hold (`key_ref`).
pub(super) fn key_index<'a>(
    entries: impl Iterator<Item = &'a Entry>,
) -> (BTreeMap<KeyRef, ()>, bool) {
    let mut keys = TreeBuilder::new();
    for entry in entries {
        keys.push(KeyRef::of(entry.blob()), ());
    }
    keys.finish()
}
