//! The in-memory region set: every region by id and ordered by start key,
//! with PD's epoch rules (docs/protocol.md §2). Leader and follower both
//! apply changes through [`RegionStore::apply`], so a follower replaying the
//! leader's records ends with the leader's set.
//!
//! Lean by design, because a million regions must fit in about twice their
//! encoded size: each region is kept once, as its protobuf encoding
//! (`entry`), and is decoded only when read; an update reads the epoch and
//! end key it needs straight from the encoding. Even the start key that
//! orders the map is not copied: the ordered index borrows it from the
//! encoding (`key_ref`; it and the entry's buffer are the module's
//! `unsafe`). Bulk loading at start is `loader`, indexes built in bulk (a
//! snapshot, a load, a grown store rebuilt) `bulk` and `tree_builder`, a
//! snapshot's regions until then `run`, regions kept as they arrived
//! `view`, the store read for snapshot frames `chunk`, regions refused
//! before they get here `check`, realistic sets for benches `sample`,
//! removals kept for deltas and catch-ups `tombstones`.

mod bulk;
mod check;
mod chunk;
mod entry;
mod key_ref;
mod loader;
mod run;
pub mod sample;
mod tombstones;
mod tree_builder;
mod view;

use std::collections::BTreeMap;
use std::ops::Bound;

use regionsync_proto::metapb::{Peer, Region};

use crate::digest::{RegionFields, SetDigest};
use entry::{Entry, leader_of};
use key_ref::KeyRef;

pub use check::{MalformedRegion, check_region, show_key};
pub use chunk::EncodedRegion;
pub use loader::Loader;
pub use view::{Incoming, Layout, RegionView};

/// What applying one region did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same region, same leader, same flow: nothing to record.
    Unchanged,
    /// Older than what the store holds (by id or by an overlapping region).
    Stale,
    /// Stored; `removed` lists regions it replaced by overlap (a split or merge).
    Applied {
        /// Regions it replaced by overlap (a split or merge).
        removed: Vec<u64>,
    },
}

/// A region as stored, with its leader.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRegion {
    /// The region.
    pub region: Region,
    /// The leader peer, or an empty peer (id 0) when unknown.
    pub leader: Peer,
}

/// The region set of one node.
#[derive(Default)]
pub struct RegionStore {
    /// A B-tree rather than a hash map: no power-of-two table to double
    /// into, and full nodes when loaded in bulk (`Loader`).
    by_id: BTreeMap<u64, Entry>,
    /// Start keys alone: each names its region's id (`key_ref`).
    by_start: BTreeMap<KeyRef, ()>,
    digest: SetDigest,
    encoded_bytes: usize,
    /// The index after the last change applied: the store is the leader's
    /// set at this index (it may run ahead of what is durable; see
    /// `leader::intake`).
    applied_next: u64,
    /// Oldest index from which `changed_since` names every changed region
    /// and `removed_since` every removed one (0: none; the changes before
    /// it are not tracked).
    delta_floor: u64,
    /// Regions removed by changes, with their indexes (`tombstones`).
    tombstones: tombstones::Tombstones,
    /// The epochs of the regions the last apply removed, for its
    /// tombstones (`note_removals`).
    removed_epochs: Vec<(u64, u64)>,
    /// Taking a snapshot in bulk (`bulk`): regions that follow the run go
    /// into it rather than into the maps.
    bulk: bool,
    /// The snapshot's regions so far, in key order, while the maps are
    /// empty (`bulk`).
    run: run::Run,
    /// The start and end keys of the run's last region (`bulk`).
    run_tail: (Vec<u8>, Vec<u8>),
    /// Regions linked one at a time since the maps were last built with
    /// full nodes (`bulk::repack`).
    grown: usize,
}

impl RegionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.by_id.len() + self.run.len()
    }

    /// No regions.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.run.is_empty()
    }

    /// Sum of the regions' protobuf encodings, for memory accounting.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    /// The order-independent digest of the set (see `digest`).
    pub fn digest(&self) -> SetDigest {
        self.digest
    }

    /// Forget every region.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The index after the last change applied.
    pub fn applied_next(&self) -> u64 {
        self.applied_next
    }

    /// Say that the store is now the leader's set at `next`.
    pub fn set_applied_next(&mut self, next: u64) {
        self.applied_next = next;
    }

    /// Oldest index from which [`Self::changed_since`] is complete.
    pub fn delta_floor(&self) -> u64 {
        self.delta_floor
    }

    /// Set the delta floor (see [`Self::delta_floor`]).
    pub fn set_delta_floor(&mut self, floor: u64) {
        self.delta_floor = floor;
    }

    /// Ids of regions changed at or after `from`, in id order, scanning at
    /// most `max_scan` regions after id `after` (none: from the first).
    /// Returns them and where to go on (none: the scan reached the end).
    /// Callers scan in slices so that no read lock is held for long.
    pub fn changed_since(
        &self,
        from: u64,
        after: Option<u64>,
        max_scan: usize,
    ) -> (Vec<u64>, Option<u64>) {
        let mut found = Vec::new();
        let mut last = None;
        for (scanned, (id, entry)) in self.in_id_order(after).enumerate() {
            if scanned == max_scan {
                return (found, last);
            }
            last = Some(id);
            if entry.changed >= from {
                found.push(id);
            }
        }
        (found, None)
    }

    /// Apply a region update under the epoch rules: stale by id or by an
    /// overlapping region with a newer version is ignored; otherwise the
    /// region replaces its old copy and every region it overlaps.
    ///
    /// `changed` is the index of the record this change becomes (an upper
    /// bound where the exact index is unknown); `changed_since` reads it.
    pub fn apply(&mut self, region: &Region, leader_id: u64, extra: u64, changed: u64) -> Outcome {
        let outcome = self.apply_entry(region, Entry::new(region, leader_id, extra, changed));
        self.note_removals(region.id, changed, &outcome);
        outcome
    }

    /// Keep what a change at `changed` removed, and forget an earlier
    /// removal of the region it stored. A snapshot's regions (index 0)
    /// remove nothing the leader did not remove before the snapshot.
    fn note_removals(&mut self, id: u64, changed: u64, outcome: &Outcome) {
        let Outcome::Applied { removed } = outcome else {
            return;
        };
        self.tombstones.revive(id);
        if changed == 0 {
            return;
        }
        let epochs = std::mem::take(&mut self.removed_epochs);
        for (gone, epoch) in removed.iter().zip(epochs) {
            if let Some(forgotten) = self.tombstones.bury(*gone, changed, epoch) {
                // Syncs from at or before it could no longer say so.
                self.delta_floor = self.delta_floor.max(forgotten + 1);
            }
        }
    }

    /// Ids of regions removed at or after `from` and not present again
    /// (complete from the delta floor on).
    pub fn removed_since(&self, from: u64) -> Vec<u64> {
        self.tombstones.since(from)
    }

    /// Removals kept (`tombstones`).
    pub fn removals_kept(&self) -> usize {
        self.tombstones.len()
    }

    /// Take away the regions `ids` names (a delta's or a catch-up's
    /// removals); returns those that were present.
    pub fn remove_listed(&mut self, ids: &[u64]) -> Vec<u64> {
        if ids.is_empty() {
            return Vec::new();
        }
        if self.unsettled() {
            self.settle();
        }
        let mut gone = Vec::new();
        for &id in ids {
            if self.by_id.contains_key(&id) {
                self.remove(id);
                gone.push(id);
            }
        }
        gone
    }

    /// [`Self::apply`] for a region as received: one whose encoding is
    /// prost's own is stored as it came, not encoded again (`view`).
    pub fn apply_incoming(
        &mut self,
        region: &Incoming,
        leader: u64,
        extra: u64,
        changed: u64,
    ) -> Outcome {
        match region {
            Incoming::Encoded(v) => {
                let outcome = self.apply_entry(v, Entry::from_view(v, leader, extra, changed));
                self.note_removals(v.id(), changed, &outcome);
                outcome
            }
            Incoming::Decoded(r) => self.apply(r, leader, extra, changed),
        }
    }

    /// [`Self::apply`], for a region read or decoded, and the entry that
    /// stores it.
    fn apply_entry(&mut self, region: &impl RegionFields, entry: Entry) -> Outcome {
        let (conf_ver, version) = region.conf_ver_and_version();
        let Err(entry) = self.append_to_run(region, entry) else {
            return Outcome::Applied {
                removed: Vec::new(),
            };
        };
        let Some(old) = self.by_id.get(&region.id()) else {
            // A region removed at this epoch or a newer one: a late report
            // (an epoch never goes back).
            if let Some((v, c)) = self.tombstones.epoch_of(region.id())
                && (version < v || conf_ver < c || (version, conf_ver) == (v, c))
            {
                return Outcome::Stale;
            }
            // A new region past the end of the set: a full sync's snapshot
            // arrives so (in key order, into a cleared store), and nothing
            // can overlap it, so the range searches are skipped.
            if self.after_last(region) {
                self.link(region, entry);
                return Outcome::Applied {
                    removed: Vec::new(),
                };
            }
            return self.apply_over_others(region, entry, version);
        };
        {
            let (old_version, old_conf_ver) = old.epoch();
            if version < old_version || conf_ver < old_conf_ver {
                return Outcome::Stale;
            }
            if old.blob() == entry.blob()
                && old.leader() == entry.leader()
                && old.extra == entry.extra
            {
                return Outcome::Unchanged;
            }
            // Most heartbeats keep the region's range (a new version, leader
            // or statistics): in a set without overlaps nothing else can
            // overlap it, so it is replaced in place, without the range
            // searches a split or merge needs.
            if old.start_key() == region.start_key() && old.end_key() == region.end_key() {
                self.replace_in_place(region, entry);
                return Outcome::Applied {
                    removed: Vec::new(),
                };
            }
        }
        self.apply_over_others(region, entry, version)
    }

    /// Apply a region whose range may overlap others: newer overlapped
    /// regions make it stale, older ones are removed.
    fn apply_over_others(
        &mut self,
        region: &impl RegionFields,
        entry: Entry,
        version: u64,
    ) -> Outcome {
        let overlapped = self.overlapping(region.start_key(), region.end_key(), region.id());
        if overlapped
            .iter()
            .any(|id| self.by_id[id].epoch().0 > version)
        {
            return Outcome::Stale;
        }
        self.removed_epochs = overlapped.iter().map(|id| self.by_id[id].epoch()).collect();
        self.remove(region.id());
        for id in &overlapped {
            self.remove(*id);
        }
        self.insert_entry(region, entry);
        Outcome::Applied {
            removed: overlapped,
        }
    }

    /// `region` starts after the last region of the set ends (or the set is
    /// empty): it overlaps nothing.
    fn after_last(&self, region: &impl RegionFields) -> bool {
        self.by_start
            .last_key_value()
            .is_none_or(|(last, _)| self.keyed(last).1.lies_before(region.start_key()))
    }

    /// The only way into the maps; keeps the `KeyRef` invariant.
    fn insert_entry(&mut self, region: &impl RegionFields, entry: Entry) {
        // Whatever holds this id or this start key goes first: an equal key
        // left in `by_start` would keep borrowing a blob about to be dropped.
        self.remove(region.id());
        if let Some((other, _)) = self.by_start.get_key_value(region.start_key()) {
            self.remove(other.id());
        }
        self.link(region, entry);
    }

    /// Link an entry whose id and start key the maps do not hold.
    fn link(&mut self, region: &impl RegionFields, entry: Entry) {
        self.encoded_bytes += entry.blob().len();
        self.digest.add(region);
        let id = region.id();
        self.by_id.insert(id, entry);
        let key = KeyRef::of(self.by_id[&id].blob());
        self.by_start.insert(key, ());
        self.grew();
    }

    /// Replace the stored copy of `region`, which has the same range; keeps
    /// the `KeyRef` invariant like `insert_entry` and `remove`.
    fn replace_in_place(&mut self, region: &impl RegionFields, entry: Entry) {
        // Unlink the borrowed key while the old blob is alive.
        self.by_start.remove(region.start_key());
        let new_len = entry.blob().len();
        let old = self
            .by_id
            .insert(region.id(), entry)
            .expect("replace_in_place is only called for a stored region");
        self.encoded_bytes = self.encoded_bytes - old.blob().len() + new_len;
        self.digest.remove(&old.read());
        self.digest.add(region);
        let key = KeyRef::of(self.by_id[&region.id()].blob());
        self.by_start.insert(key, ());
    }

    /// The only way out of the maps; keeps the `KeyRef` invariant.
    fn remove(&mut self, id: u64) {
        let Some(entry) = self.by_id.get(&id) else {
            return;
        };
        // Unlink the borrowed key while the blob it points into is alive.
        let start = entry.start_key();
        if self.by_start.get_key_value(start).map(|(k, _)| k.id()) == Some(id) {
            self.by_start.remove(start);
        }
        let entry = self.by_id.remove(&id).expect("present above");
        self.encoded_bytes -= entry.blob().len();
        self.digest.remove(&entry.read());
    }

    /// The stored encoding of region `id`, for persisting it as is.
    pub fn encoded(&self, id: u64) -> Option<&[u8]> {
        self.entry(id).map(|e| e.blob())
    }

    /// Regions other than `except` whose range intersects [start, end).
    fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let before = (Bound::Unbounded, Bound::Included(start));
        if let Some((key, _)) = self.by_start.range::<[u8], _>(before).next_back() {
            let (id, entry) = self.keyed(key);
            let end_key = entry.end_key();
            if id != except && (end_key.is_empty() || end_key > start) {
                out.push(id);
            }
        }
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let after = self
            .by_start
            .range::<[u8], _>((Bound::Excluded(start), upper));
        out.extend(after.map(|(key, _)| key.id()).filter(|&id| id != except));
        out
    }

    /// Region `id`.
    pub fn get(&self, id: u64) -> Option<StoredRegion> {
        self.entry(id).map(stored)
    }

    /// The region whose range contains `key`.
    pub fn get_by_key(&self, key: &[u8]) -> Option<StoredRegion> {
        let (_, entry) = self.at_or_before(key)?;
        let found = stored(entry);
        let end = &found.region.end_key;
        (end.is_empty() || key < end.as_slice()).then_some(found)
    }

    /// Up to `limit` regions (0: no limit) in key order, from the one
    /// containing `start` up to (not including) `end` (empty: no end).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<StoredRegion> {
        self.scan_within(start, end, limit, usize::MAX)
    }

    /// As [`RegionStore::scan`], stopping before the regions' encodings
    /// pass `max_bytes` (at least one region): nothing beyond the budget is
    /// decoded or copied, so a large scan holds the lock and memory only
    /// for what it returns.
    pub fn scan_within(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> Vec<StoredRegion> {
        let first = self
            .get_by_key(start)
            .map(|r| r.region.start_key)
            .unwrap_or_else(|| start.to_vec());
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut bytes = 0usize;
        self.in_key_order(Bound::Included(first.as_slice()))
            .take_while(|(_, e)| end.is_empty() || e.start_key() < end)
            .take(limit)
            .enumerate()
            .take_while(|(i, (_, e))| {
                bytes = bytes.saturating_add(e.blob().len());
                *i == 0 || bytes <= max_bytes
            })
            .map(|(_, (_, e))| stored(e))
            .collect()
    }
}

/// A stored entry as the region and leader it holds.
fn stored(e: &Entry) -> StoredRegion {
    let region = e.decode();
    let leader = leader_of(&region, e.leader());
    StoredRegion { region, leader }
}

#[cfg(test)]
pub(crate) mod tests;
