//! The region-set digest in the status JSON: one function, used by leader and
//! follower alike, so that equal digests mean equal region sets.
//!
//! Order-independent by construction: the digest of a set is the wrapping sum
//! of a 128-bit hash of each region, so it can be kept up to date in O(1) per
//! change (add the new region's hash, subtract the old one's) instead of
//! rehashing a million regions for every status call.

use regionsync_proto::metapb::Region;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// A peer as a region's hash and checks see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerFields {
    /// The peer's id.
    pub id: u64,
    /// Its store.
    pub store_id: u64,
    /// `metapb.PeerRole` as a number.
    pub role: i32,
    /// A witness peer.
    pub is_witness: bool,
}

/// The fields of a region that its hash covers and the store's checks
/// read, whether decoded into a struct or read straight from the region's
/// encoding (`region_store::RegionView`): one hash and one check for both,
/// so that the two forms cannot disagree.
pub trait RegionFields {
    /// The region's id.
    fn id(&self) -> u64;
    /// (conf_ver, version) of its epoch; zeros when absent.
    fn conf_ver_and_version(&self) -> (u64, u64);
    /// Its start key.
    fn start_key(&self) -> &[u8];
    /// Its end key (empty: unbounded).
    fn end_key(&self) -> &[u8];
    /// How many peers it has.
    fn peer_count(&self) -> usize;
    /// Its peers, in order.
    fn peers(&self) -> impl Iterator<Item = PeerFields> + '_;
    /// [`region_hash`]: computed here, unless the region kept it when its
    /// fields were read.
    fn hash(&self) -> u128 {
        region_hash_of(self, self.peers())
    }
}

impl RegionFields for Region {
    fn id(&self) -> u64 {
        self.id
    }

    fn conf_ver_and_version(&self) -> (u64, u64) {
        self.region_epoch
            .map_or((0, 0), |e| (e.conf_ver, e.version))
    }

    fn start_key(&self) -> &[u8] {
        &self.start_key
    }

    fn end_key(&self) -> &[u8] {
        &self.end_key
    }

    fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn peers(&self) -> impl Iterator<Item = PeerFields> + '_ {
        self.peers.iter().map(|p| PeerFields {
            id: p.id,
            store_id: p.store_id,
            role: p.role,
            is_witness: p.is_witness,
        })
    }
}

/// The hash of one region over the fields docs/protocol.md §6 names: id, epoch, keys
/// and peers. Lengths are hashed before variable fields so that no two
/// different regions can feed the hasher the same bytes.
pub fn region_hash(r: &impl RegionFields) -> u128 {
    r.hash()
}

/// [`region_hash`] of `r`, whose peers are `peers`: for a reader that has
/// its peers at hand already.
pub fn region_hash_of<R: RegionFields + ?Sized>(
    r: &R,
    peers: impl Iterator<Item = PeerFields>,
) -> u128 {
    let mut h = Gather::default();
    let (conf_ver, version) = r.conf_ver_and_version();
    let (start, end) = (r.start_key(), r.end_key());
    h.update(&r.id().to_le_bytes());
    h.update(&conf_ver.to_le_bytes());
    h.update(&version.to_le_bytes());
    h.update(&(start.len() as u64).to_le_bytes());
    h.update(start);
    h.update(&(end.len() as u64).to_le_bytes());
    h.update(end);
    h.update(&(r.peer_count() as u64).to_le_bytes());
    for p in peers {
        h.update(&p.id.to_le_bytes());
        h.update(&p.store_id.to_le_bytes());
        h.update(&p.role.to_le_bytes());
        h.update(&[u8::from(p.is_witness)]);
    }
    h.digest128()
}

/// xxh3 of many small pieces, hashed in one call: the pieces are gathered
/// in a buffer on the stack (on the heap past it). xxh3's streaming hasher
/// gives the same value over the same bytes, but setting up its state and
/// feeding it a region's two dozen pieces one by one cost a tenth of a
/// follower's apply (BENCHMARKS.md).
pub struct Gather {
    stack: [u8; 256],
    len: usize,
    heap: Vec<u8>,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            stack: [0; 256],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl Gather {
    /// Append `bytes`. Inlined: most pieces are a fixed 8 bytes, whose copy
    /// then compiles to a move rather than a call.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() {
            if let Some(to) = self.stack.get_mut(self.len..self.len + bytes.len()) {
                to.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.heap.extend_from_slice(&self.stack[..self.len]);
        }
        self.heap.extend_from_slice(bytes);
    }

    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    /// The 64-bit xxh3 of everything appended.
    pub fn digest(&self) -> u64 {
        xxh3_64(self.bytes())
    }

    /// The 128-bit xxh3 of everything appended.
    pub fn digest128(&self) -> u128 {
        xxh3_128(self.bytes())
    }
}

/// A running, order-independent digest of a set of regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest(u128);

impl SetDigest {
    /// Count region `r` in.
    pub fn add(&mut self, r: &impl RegionFields) {
        self.0 = self.0.wrapping_add(r.hash());
    }

    /// Count region `r` out (it must have been added).
    pub fn remove(&mut self, r: &impl RegionFields) {
        self.0 = self.0.wrapping_sub(r.hash());
    }

    /// 32 hex digits, as in the status JSON.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// The digest as a number, as a completion frame carries it.
    pub fn value(&self) -> u128 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regionsync_proto::metapb::{Peer, RegionEpoch};

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![Peer {
                id: id * 10,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_digest_ignores_order_and_undoes_removal() {
        let (a, b) = (region(1, b"a", b"b"), region(2, b"b", b""));
        let mut x = SetDigest::default();
        x.add(&a);
        x.add(&b);
        let mut y = SetDigest::default();
        y.add(&b);
        y.add(&a);
        assert_eq!(x, y);
        y.remove(&a);
        let mut z = SetDigest::default();
        z.add(&b);
        assert_eq!(y, z);
    }

    #[test]
    fn moving_bytes_between_keys_changes_the_hash() {
        assert_ne!(
            region_hash(&region(1, b"ab", b"c")),
            region_hash(&region(1, b"a", b"bc"))
        );
        let mut r = region(1, b"a", b"b");
        let before = region_hash(&r);
        r.peers[0].store_id = 2;
        assert_ne!(before, region_hash(&r));
    }

    /// Gathered, the hash is the streaming hasher's over the same bytes,
    /// on the stack and past it (keys longer than the stack buffer).
    #[test]
    fn gathered_hashes_are_the_streaming_ones() {
        use xxhash_rust::xxh3::Xxh3;
        for (id, key_len) in [(1u64, 0usize), (2, 20), (3, 120), (4, 300), (5, 5_000)] {
            let key = vec![id as u8; key_len];
            let mut r = region(id, &key, b"zz");
            r.peers.push(Peer {
                id: 99,
                store_id: 3,
                role: 1,
                is_witness: true,
            });
            let mut streaming = Xxh3::new();
            let mut gathered = Gather::default();
            let epoch = r.region_epoch.unwrap_or_default();
            let mut feed = |bytes: &[u8]| {
                streaming.update(bytes);
                gathered.update(bytes);
            };
            feed(&r.id.to_le_bytes());
            feed(&epoch.conf_ver.to_le_bytes());
            feed(&epoch.version.to_le_bytes());
            feed(&(r.start_key.len() as u64).to_le_bytes());
            feed(&r.start_key);
            feed(&(r.end_key.len() as u64).to_le_bytes());
            feed(&r.end_key);
            feed(&(r.peers.len() as u64).to_le_bytes());
            for p in &r.peers {
                feed(&p.id.to_le_bytes());
                feed(&p.store_id.to_le_bytes());
                feed(&p.role.to_le_bytes());
                feed(&[u8::from(p.is_witness)]);
            }
            assert_eq!(
                gathered.digest128(),
                streaming.digest128(),
                "key of {key_len}"
            );
            assert_eq!(gathered.digest(), streaming.digest(), "key of {key_len}");
            assert_eq!(region_hash(&r), streaming.digest128(), "key of {key_len}");
        }
    }
}
