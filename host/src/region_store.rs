//! The in-memory region set: every region by id and ordered by start key,
//! with PD's epoch rules (SPEC §2). Leader and follower both apply changes
//! through [`RegionStore::apply`], so a follower replaying the leader's
//! records ends with the leader's set.
//!
//! Lean by design, because a million regions must fit in about twice their
//! encoded size: each region is kept once, as its protobuf encoding, and is
//! decoded only when read; an update reads the epoch and end key it needs
//! straight from the encoding. Even the start key that orders the map is
//! not copied: the ordered index borrows it from the encoding ([`KeyRef`]).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::ptr::NonNull;

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
    /// `Region::encode_to_vec`; never mutated while stored (see [`KeyRef`]).
    blob: Box<[u8]>,
    /// 1 + the leader's position in the region's peers; 0 when unknown.
    leader: u8,
    /// Fingerprint of what a heartbeat carries besides the region (leader,
    /// flow statistics), so that a change there counts as a change.
    extra: u32,
}

/// A start key borrowed from the encoding of the region it belongs to.
///
/// SAFETY invariant, kept by `insert_entry` and `remove` alone: a `KeyRef`
/// in `by_start` points into the heap buffer of the `blob` of the region it
/// maps to in `by_id`. A blob is never mutated while stored, its heap buffer
/// does not move when the `Box` moves (a `HashMap` resize), and a region's
/// key leaves `by_start` before its blob is dropped.
#[derive(Clone, Copy)]
struct KeyRef {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a KeyRef is a shared borrow of immutable bytes owned by the same
// RegionStore; it is sent and shared only together with its owner.
unsafe impl Send for KeyRef {}
unsafe impl Sync for KeyRef {}

impl KeyRef {
    fn of(bytes: &[u8]) -> Self {
        KeyRef {
            ptr: NonNull::from(bytes).cast(),
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: see the type's invariant; the owner outlives the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl PartialEq for KeyRef {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}
impl Eq for KeyRef {}
impl PartialOrd for KeyRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KeyRef {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes().cmp(other.bytes())
    }
}
impl Borrow<[u8]> for KeyRef {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

impl Entry {
    /// The stored form of a region with its leader and heartbeat fingerprint.
    fn new(region: &Region, leader_id: u64, extra: u64) -> Self {
        Entry {
            blob: region.encode_to_vec().into_boxed_slice(),
            leader: leader_slot(region, leader_id),
            extra: extra as u32,
        }
    }

    fn decode(&self) -> Region {
        Region::decode(&*self.blob).expect("the store only holds regions it encoded")
    }

    /// (version, conf_ver), read from the encoding without decoding it.
    fn epoch(&self) -> (u64, u64) {
        let mut epoch = (0, 0);
        if let Some(Field::Bytes(e)) = field(&self.blob, 4) {
            if let Some(Field::Varint(v)) = field(e, 2) {
                epoch.0 = v;
            }
            if let Some(Field::Varint(c)) = field(e, 1) {
                epoch.1 = c;
            }
        }
        epoch
    }

    /// The end key, read from the encoding without decoding it.
    fn end_key(&self) -> &[u8] {
        match field(&self.blob, 3) {
            Some(Field::Bytes(b)) => b,
            _ => &[],
        }
    }

    /// The start key, as a slice of the encoding.
    fn start_key(&self) -> &[u8] {
        match field(&self.blob, 2) {
            Some(Field::Bytes(b)) => b,
            _ => &[],
        }
    }
}

/// One field of a protobuf encoding, as the hot path needs it.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The last occurrence of field `number` in an encoding (protobuf's rule
/// for singular fields), without decoding the message. The update path
/// needs only a region's epoch and end key; decoding whole regions there
/// cost more than everything else an update does.
fn field(mut buf: &[u8], number: u32) -> Option<Field<'_>> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut found = None;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        let value = match wire {
            WireType::Varint => Field::Varint(decode_varint(&mut buf).ok()?),
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Field::Bytes(bytes)
            }
            WireType::SixtyFourBit => {
                buf = buf.get(8..)?;
                continue;
            }
            WireType::ThirtyTwoBit => {
                buf = buf.get(4..)?;
                continue;
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        if tag == number {
            found = Some(value);
        }
    }
    found
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

/// 1 + the position of peer `leader_id` in the region's peers; 0 if absent.
fn leader_slot(r: &Region, leader_id: u64) -> u8 {
    r.peers
        .iter()
        .position(|p| p.id == leader_id && leader_id != 0)
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0)
}

fn leader_of(r: &Region, slot: u8) -> Peer {
    (slot as usize)
        .checked_sub(1)
        .and_then(|i| r.peers.get(i))
        .copied()
        .unwrap_or_default()
}

/// Builds a store from a complete, consistent set (a store being loaded)
/// in bulk: both indexes are built from sorted runs, which fills their
/// B-tree nodes, instead of one insertion at a time.
#[derive(Default)]
pub struct Loader {
    entries: Vec<(u64, Entry)>,
    digest: SetDigest,
    encoded_bytes: usize,
}

impl Loader {
    pub fn add(&mut self, region: &Region, leader_id: u64) {
        let entry = Entry::new(region, leader_id, 0);
        self.encoded_bytes += entry.blob.len();
        self.digest.add(region);
        self.entries.push((region.id, entry));
    }

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

#[derive(Default)]
pub struct RegionStore {
    /// A B-tree rather than a hash map: no power-of-two table to double
    /// into, and full nodes when loaded in bulk (`Loader`).
    by_id: BTreeMap<u64, Entry>,
    by_start: BTreeMap<KeyRef, u64>,
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
        let entry = Entry::new(region, leader_id, extra);
        if let Some(old) = self.by_id.get(&region.id) {
            let (old_version, old_conf_ver) = old.epoch();
            if version < old_version || conf_ver < old_conf_ver {
                return Outcome::Stale;
            }
            if old.blob == entry.blob && old.leader == entry.leader && old.extra == entry.extra {
                return Outcome::Unchanged;
            }
        }
        let overlapped = self.overlapping(&region.start_key, &region.end_key, region.id);
        if overlapped
            .iter()
            .any(|id| self.by_id[id].epoch().0 > version)
        {
            return Outcome::Stale;
        }
        self.remove(region.id);
        for id in &overlapped {
            self.remove(*id);
        }
        self.insert_entry(region, entry);
        Outcome::Applied {
            removed: overlapped,
        }
    }

    /// The only way into the maps; keeps the `KeyRef` invariant.
    fn insert_entry(&mut self, region: &Region, entry: Entry) {
        // Whatever holds this id or this start key goes first: an equal key
        // left in `by_start` would keep borrowing a blob about to be dropped.
        self.remove(region.id);
        if let Some(&other) = self.by_start.get(region.start_key.as_slice()) {
            self.remove(other);
        }
        self.encoded_bytes += entry.blob.len();
        self.digest.add(region);
        let id = region.id;
        self.by_id.insert(id, entry);
        let key = KeyRef::of(self.by_id[&id].start_key());
        self.by_start.insert(key, id);
    }

    /// The only way out of the maps; keeps the `KeyRef` invariant.
    fn remove(&mut self, id: u64) {
        let Some(entry) = self.by_id.get(&id) else {
            return;
        };
        // Unlink the borrowed key while the blob it points into is alive.
        let start = entry.start_key();
        if self.by_start.get(start) == Some(&id) {
            self.by_start.remove(start);
        }
        let entry = self.by_id.remove(&id).expect("present above");
        self.encoded_bytes -= entry.blob.len();
        self.digest.remove(&entry.decode());
    }

    /// The stored encoding of region `id`, for persisting it as is.
    pub fn encoded(&self, id: u64) -> Option<&[u8]> {
        self.by_id.get(&id).map(|e| &*e.blob)
    }

    /// Regions other than `except` whose range intersects [start, end).
    fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let before = (Bound::Unbounded, Bound::Included(start));
        if let Some((_, &id)) = self.by_start.range::<[u8], _>(before).next_back() {
            let end_key = self.by_id[&id].end_key();
            if id != except && (end_key.is_empty() || end_key > start) {
                out.push(id);
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
                out.push(id);
            }
        }
        out
    }

    fn stored(&self, id: u64) -> Option<StoredRegion> {
        self.by_id.get(&id).map(|e| {
            let region = e.decode();
            let leader = leader_of(&region, e.leader);
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
            .take_while(|(k, _)| end.is_empty() || k.bytes() < end)
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
    fn fields_read_from_the_encoding_match_the_decoded_region() {
        let mut r = region(3, "abc", "xyz", 17, 4);
        r.flashback_start_ts = 99;
        let e = Entry {
            blob: r.encode_to_vec().into_boxed_slice(),
            leader: 0,
            extra: 0,
        };
        assert_eq!(e.epoch(), (17, 4));
        assert_eq!(e.end_key(), b"xyz");
        let open = Entry {
            blob: region(4, "a", "", 0, 0).encode_to_vec().into_boxed_slice(),
            leader: 0,
            extra: 0,
        };
        assert_eq!((open.epoch(), open.end_key()), ((0, 0), &b""[..]));
    }

    #[test]
    fn a_bulk_load_equals_one_by_one_inserts_and_tolerates_collisions() {
        let regions: Vec<Region> = (0..100u64)
            .map(|i| {
                region(
                    100 - i,
                    &format!("k{i:03}"),
                    &format!("k{:03}", i + 1),
                    1,
                    1,
                )
            })
            .collect();
        let mut loader = Loader::default();
        let mut one_by_one = RegionStore::new();
        for r in &regions {
            loader.add(r, r.peers[0].id);
            one_by_one.apply(r, r.peers[0].id, 0);
        }
        let bulk = loader.finish();
        assert_eq!(bulk.digest(), one_by_one.digest());
        assert_eq!(bulk.scan(b"", b"", 0), one_by_one.scan(b"", b"", 0));
        assert_eq!(bulk.get(7).unwrap().leader.id, 700);
        assert_eq!(bulk.get_by_key(b"k050").unwrap().region.id, 50);

        // Two regions claiming one start key: the later one stays.
        let mut loader = Loader::default();
        loader.add(&region(1, "a", "b", 1, 1), 0);
        loader.add(&region(2, "a", "c", 1, 1), 0);
        let store = loader.finish();
        assert_eq!(store.len(), 1);
        assert_eq!(store.get_by_key(b"a").unwrap().region.id, 2);
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
