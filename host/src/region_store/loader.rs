//! [`Loader`]: builds a store from a complete, consistent set in bulk (a
//! store being loaded at start): both indexes are built from sorted runs,
//! which fills their B-tree nodes, instead of one insertion at a time.

use std::collections::BTreeMap;

use regionsync_proto::metapb::Region;

use super::RegionStore;
use super::entry::Entry;
use super::key_ref::KeyRef;
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
        self.encoded_bytes += entry.blob.len();
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

    fn build(mut self) -> RegionStore {
        self.entries.sort_unstable_by_key(|(id, _)| *id);
        let unique_ids = self.entries.windows(2).all(|w| w[0].0 != w[1].0);
        if unique_ids {
            let by_id: BTreeMap<u64, Entry> = self.entries.into_iter().collect();
            let mut keys: Vec<(KeyRef, u64)> = by_id
                .iter()
                .map(|(id, e)| (KeyRef::of(e.start_key()), *id))
                .collect();
            keys.sort_unstable_by_key(|k| k.0);
            if keys.windows(2).all(|w| w[0].0 != w[1].0) {
                return RegionStore {
                    by_start: keys.into_iter().collect(),
                    by_id,
                    digest: self.digest,
                    encoded_bytes: self.encoded_bytes,
                    ..RegionStore::default()
                };
            }
            self.entries = by_id.into_iter().collect();
        }
        // Not a consistent set (repeated ids or start keys): insert one by
        // one, the later region replacing what it collides with.
        let mut store = RegionStore::default();
        for (_, entry) in self.entries {
            let region = entry.decode();
            store.insert_entry(&region, entry);
        }
        store
    }
}
