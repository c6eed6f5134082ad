//! [`Loader`]: builds a store from a complete, consistent set in bulk (a
//! store being loaded at start): both indexes are built from sorted runs,
//! which fills their B-tree nodes, instead of one insertion at a time.

use regionsync_proto::metapb::Region;

use super::entry::Entry;
use super::{RegionStore, bulk};
use crate::digest::SetDigest;

/// Collects regions, then builds the store in one go.
#[derive(Default)]
pub struct Loader {
    entries: Vec<(u64, Entry)>,
    digest: SetDigest,
    encoded_bytes: usize,
}

impl Loader {
    /// Add one region with its leader peer id and the index of its last
    /// change.
    pub fn add(&mut self, region: &Region, leader_id: u64, changed: u64) {
        let entry = Entry::new(region, leader_id, 0, changed);
        self.encoded_bytes += entry.blob().len();
        self.digest.add(region);
        self.entries.push((region.id, entry));
    }

    /// The store, built.
    pub fn finish(self) -> RegionStore {
        let store = self.build();
        // The sorted runs were scratch; hand their memory back now rather
        // than carry it for the life of the node.
        crate::release_free_memory();
        store
    }

    fn build(self) -> RegionStore {
        match bulk::index(self.entries, false) {
            Ok((by_id, by_start)) => RegionStore {
                by_id,
                by_start,
                digest: self.digest,
                encoded_bytes: self.encoded_bytes,
                ..RegionStore::default()
            },
            // Not a consistent set (repeated ids or start keys).
            Err(entries) => bulk::insert_one_by_one(entries),
        }
    }
}
