//! The in-memory region set: every region by id and ordered by start key,
//! with PD's epoch rules (SPEC §2). Leader and follower both apply changes
//! through [`RegionStore::apply`], so a follower replaying the leader's
//! records ends with the leader's set.
//!
//! Lean by design, because a million regions must fit in about twice their
//! encoded size: each region is kept once, as its protobuf encoding, and is
//! decoded only when read or when an update needs its epoch or range. The
//! start key is the only field kept twice (it orders the map).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use prost::Message;
use regionsync_proto::metapb::{Peer, Region};

use crate::digest::SetDigest;

/// What applying one region did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same region, same leader, same flow: nothing to record.
    Unchanged,
    /// Older than what the store holds (by id or by an overlapping region).
    Stale,
    /// Stored; `removed` lists regions it replaced by overlap (a split or merge).
    Applied { removed: Vec<u64> },
}

/// A region as stored, with its leader.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRegion {
    pub region: Region,
    /// The leader peer, or an empty peer (id 0) when unknown.
    pub leader: Peer,
}

struct Entry {
    /// `Region::encode_to_vec`.
    blob: Box<[u8]>,
    leader_id: u64,
    /// Fingerprint of what a heartbeat carries besides the region (leader,
    /// flow statistics), so that a change there counts as a change.
    extra: u64,
}

impl Entry {
    fn decode(&self) -> Region {
        Region::decode(&*self.blob).expect("the store only holds regions it encoded")
    }
}

/// Why a region is refused at intake (SPEC §2, issue: malformed regions).
pub fn check_region(r: &Region) -> Result<(), String> {
    if r.id == 0 {
        return Err("region id 0".into());
    }
    if r.peers.is_empty() {
        return Err(format!("region {} has no peers", r.id));
    }
    if !r.end_key.is_empty() && r.start_key >= r.end_key {
        return Err(format!(
            "region {} has start_key {} >= end_key {}",
            r.id,
            show_key(&r.start_key),
            show_key(&r.end_key)
        ));
    }
    Ok(())
}

/// A key for log lines: printable ASCII as is, the rest escaped.
pub fn show_key(k: &[u8]) -> String {
    k.escape_ascii().to_string()
}

fn epoch(r: &Region) -> (u64, u64) {
    r.region_epoch.map_or((0, 0), |e| (e.version, e.conf_ver))
}

fn leader_of(r: &Region, leader_id: u64) -> Peer {
    r.peers
        .iter()
        .find(|p| p.id == leader_id && leader_id != 0)
        .copied()
        .unwrap_or_default()
}

#[derive(Default)]
pub struct RegionStore {
    by_id: HashMap<u64, Entry>,
    by_start: BTreeMap<Box<[u8]>, u64>,
    digest: SetDigest,
    encoded_bytes: usize,
}

impl RegionStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Sum of the regions' protobuf encodings, for memory accounting.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    pub fn digest(&self) -> SetDigest {
        self.digest
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Apply a region update under the epoch rules: stale by id or by an
    /// overlapping region with a newer version is ignored; otherwise the
    /// region replaces its old copy and every region it overlaps.
    pub fn apply(&mut self, region: &Region, leader_id: u64, extra: u64) -> Outcome {
        let (version, conf_ver) = epoch(region);
        let old = self.by_id.get(&region.id).map(|e| (e.decode(), e));
        if let Some((old_region, entry)) = &old {
            let (old_version, old_conf_ver) = epoch(old_region);
            if version < old_version || conf_ver < old_conf_ver {
                return Outcome::Stale;
            }
            if old_region == region && entry.leader_id == leader_id && entry.extra == extra {
                return Outcome::Unchanged;
            }
        }
        let overlapped = self.overlapping(&region.start_key, &region.end_key, region.id);
        for (_, other) in &overlapped {
            if epoch(other).0 > version {
                return Outcome::Stale;
            }
        }
        if let Some((old_region, _)) = old {
            self.remove_decoded(&old_region);
        }
        let removed = overlapped
            .into_iter()
            .map(|(id, r)| {
                self.remove_decoded(&r);
                id
            })
            .collect();
        self.insert_unchecked(region, leader_id, extra);
        Outcome::Applied { removed }
    }

    /// Insert without rules: loading a store that was consistent when saved.
    pub fn insert_unchecked(&mut self, region: &Region, leader_id: u64, extra: u64) {
        let blob = region.encode_to_vec().into_boxed_slice();
        self.encoded_bytes += blob.len();
        self.digest.add(region);
        if let Some(previous) = self.by_id.insert(
            region.id,
            Entry {
                blob,
                leader_id,
                extra,
            },
        ) {
            // Only reachable from a corrupt load; keep the books straight.
            let r = Entry::decode(&previous);
            self.encoded_bytes -= previous.blob.len();
            self.digest.remove(&r);
            self.by_start.remove(r.start_key.as_slice());
        }
        self.by_start
            .insert(region.start_key.clone().into_boxed_slice(), region.id);
    }

    fn remove_decoded(&mut self, r: &Region) {
        if let Some(e) = self.by_id.remove(&r.id) {
            self.encoded_bytes -= e.blob.len();
            self.digest.remove(r);
            if self.by_start.get(r.start_key.as_slice()) == Some(&r.id) {
                self.by_start.remove(r.start_key.as_slice());
            }
        }
    }

    /// Regions other than `except` whose range intersects [start, end).
    fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Vec<(u64, Region)> {
        let mut out = Vec::new();
        let before = (Bound::Unbounded, Bound::Included(start));
        if let Some((_, &id)) = self.by_start.range::<[u8], _>(before).next_back() {
            let r = self.by_id[&id].decode();
            if id != except && (r.end_key.is_empty() || r.end_key.as_slice() > start) {
                out.push((id, r));
            }
        }
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        for (_, &id) in self
            .by_start
            .range::<[u8], _>((Bound::Excluded(start), upper))
        {
            if id != except {
                out.push((id, self.by_id[&id].decode()));
            }
        }
        out
    }

    fn stored(&self, id: u64) -> Option<StoredRegion> {
        self.by_id.get(&id).map(|e| {
            let region = e.decode();
            let leader = leader_of(&region, e.leader_id);
            StoredRegion { region, leader }
        })
    }

    pub fn get(&self, id: u64) -> Option<StoredRegion> {
        self.stored(id)
    }

    /// The region whose range contains `key`.
    pub fn get_by_key(&self, key: &[u8]) -> Option<StoredRegion> {
        let (_, &id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        let found = self.stored(id)?;
        let end = &found.region.end_key;
        (end.is_empty() || key < end.as_slice()).then_some(found)
    }

    /// Up to `limit` regions (0: no limit) in key order, from the one
    /// containing `start` up to (not including) `end` (empty: no end).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<StoredRegion> {
        let first = self
            .get_by_key(start)
            .map(|r| r.region.start_key)
            .unwrap_or_else(|| start.to_vec());
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.by_start
            .range::<[u8], _>((Bound::Included(first.as_slice()), Bound::Unbounded))
            .take_while(|(k, _)| end.is_empty() || k.as_ref() < end)
            .take(limit)
            .filter_map(|(_, &id)| self.stored(id))
            .collect()
    }

    /// The next run of regions in key order after `after` (none: from the
    /// first), at most `max_regions` and about `max_bytes` of encoding (at
    /// least one region). Used to stream a snapshot in short read locks.
    pub fn chunk_after(
        &self,
        after: Option<&[u8]>,
        max_regions: usize,
        max_bytes: usize,
    ) -> Vec<StoredRegion> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut bytes = 0;
        let mut out = Vec::new();
        for (_, &id) in self.by_start.range::<[u8], _>((lower, Bound::Unbounded)) {
            let size = self.by_id[&id].blob.len();
            if out.len() == max_regions || (!out.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            out.extend(self.stored(id));
        }
        out
    }

    /// Every region as (id, leader id, encoding), for persisting a whole set.
    pub fn for_each_encoded(&self, mut f: impl FnMut(u64, u64, &[u8])) {
        for (id, e) in &self.by_id {
            f(*id, e.leader_id, &e.blob);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regionsync_proto::metapb::RegionEpoch;

    fn region(id: u64, start: &str, end: &str, version: u64, conf_ver: u64) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver, version }),
            peers: vec![Peer {
                id: id * 100,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn ids(s: &RegionStore) -> Vec<u64> {
        s.scan(b"", b"", 0).iter().map(|r| r.region.id).collect()
    }

    #[test]
    fn split_replaces_the_parent_and_merge_removes_the_children() {
        let mut s = RegionStore::new();
        assert_eq!(
            s.apply(&region(1, "", "", 1, 1), 0, 0),
            Outcome::Applied { removed: vec![] }
        );
        // Split: 1 keeps [a.., m), 2 takes [m, ..).
        assert!(matches!(
            s.apply(&region(2, "m", "", 2, 1), 0, 0),
            Outcome::Applied { .. }
        ));
        assert_eq!(ids(&s), vec![2], "the parent overlapped the new right half");
        assert!(matches!(
            s.apply(&region(1, "", "m", 2, 1), 0, 0),
            Outcome::Applied { .. }
        ));
        assert_eq!(ids(&s), vec![1, 2]);
        // Merge: 1 absorbs 2.
        assert_eq!(
            s.apply(&region(1, "", "", 3, 1), 0, 0),
            Outcome::Applied { removed: vec![2] }
        );
        assert_eq!(ids(&s), vec![1]);
        assert!(s.get(2).is_none());
    }

    #[test]
    fn stale_updates_are_ignored() {
        let mut s = RegionStore::new();
        s.apply(&region(1, "a", "m", 5, 5), 0, 0);
        assert_eq!(s.apply(&region(1, "a", "m", 4, 5), 0, 0), Outcome::Stale);
        assert_eq!(s.apply(&region(1, "a", "m", 5, 4), 0, 0), Outcome::Stale);
        // An overlapping region with an older version than what it overlaps.
        assert_eq!(s.apply(&region(9, "b", "c", 3, 9), 0, 0), Outcome::Stale);
        assert_eq!(ids(&s), vec![1]);
    }

    #[test]
    fn unchanged_unless_region_leader_or_flow_changes() {
        let mut s = RegionStore::new();
        let r = region(1, "a", "m", 1, 1);
        s.apply(&r, 100, 7);
        assert_eq!(s.apply(&r, 100, 7), Outcome::Unchanged);
        assert!(matches!(s.apply(&r, 0, 7), Outcome::Applied { .. }));
        assert!(matches!(s.apply(&r, 0, 8), Outcome::Applied { .. }));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn lookups_by_key_and_scans_respect_ranges() {
        let mut s = RegionStore::new();
        s.apply(&region(1, "", "g", 1, 1), 100, 0);
        s.apply(&region(2, "g", "p", 1, 1), 0, 0);
        s.apply(&region(3, "p", "", 1, 1), 0, 0);
        assert_eq!(s.get_by_key(b"a").unwrap().region.id, 1);
        assert_eq!(s.get_by_key(b"g").unwrap().region.id, 2);
        assert_eq!(s.get_by_key(b"zzz").unwrap().region.id, 3);
        assert_eq!(s.get(1).unwrap().leader.id, 100);
        assert_eq!(s.get(2).unwrap().leader.id, 0);
        let scanned: Vec<u64> = s.scan(b"h", b"q", 0).iter().map(|r| r.region.id).collect();
        assert_eq!(scanned, vec![2, 3]);
        assert_eq!(s.scan(b"", b"", 2).len(), 2);
        let mut gap = RegionStore::new();
        gap.apply(&region(1, "a", "c", 1, 1), 0, 0);
        assert!(gap.get_by_key(b"d").is_none());
    }

    #[test]
    fn chunks_cover_the_set_once_in_key_order() {
        let mut s = RegionStore::new();
        for i in 0..25u64 {
            let (a, b) = (format!("k{i:03}"), format!("k{:03}", i + 1));
            s.apply(&region(i + 1, &a, &b, 1, 1), 0, 0);
        }
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = s.chunk_after(after.as_deref(), 10, usize::MAX);
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= 10);
            after = Some(chunk.last().unwrap().region.start_key.clone());
            seen.extend(chunk.into_iter().map(|r| r.region.id));
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>());
        assert_eq!(s.chunk_after(None, 1000, 1).len(), 1, "at least one region");
    }

    #[test]
    fn digest_and_size_follow_the_set() {
        let mut a = RegionStore::new();
        a.apply(&region(1, "", "m", 1, 1), 0, 0);
        a.apply(&region(2, "m", "", 1, 1), 0, 0);
        let mut b = RegionStore::new();
        b.apply(&region(1, "", "", 1, 1), 0, 0);
        b.apply(&region(2, "m", "", 2, 1), 0, 0);
        b.apply(&region(1, "", "m", 2, 1), 0, 0);
        b.apply(&region(2, "m", "", 1, 1), 0, 0); // stale: ignored
        assert_ne!(a.digest(), b.digest(), "versions differ");
        let mut c = RegionStore::new();
        c.apply(&region(2, "m", "", 2, 1), 0, 0);
        c.apply(&region(1, "", "m", 2, 1), 0, 0);
        assert_eq!(b.digest(), c.digest());
        assert_eq!(b.encoded_bytes(), c.encoded_bytes());
        c.clear();
        assert_eq!(c.digest(), SetDigest::default());
    }

    #[test]
    fn malformed_regions_are_named_with_the_reason() {
        assert!(
            check_region(&region(0, "a", "b", 1, 1))
                .unwrap_err()
                .contains("id 0")
        );
        let mut r = region(5, "a", "b", 1, 1);
        r.peers.clear();
        assert!(
            check_region(&r)
                .unwrap_err()
                .contains("region 5 has no peers")
        );
        let err = check_region(&region(6, "b", "a", 1, 1)).unwrap_err();
        assert!(err.contains("region 6") && err.contains(">="), "{err}");
        assert!(check_region(&region(7, "b", "", 1, 1)).is_ok());
    }
}
