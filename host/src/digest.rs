//! The region-set digest in the status JSON: one function, used by leader and
//! follower alike, so that equal digests mean equal region sets.
//!
//! Order-independent by construction: the digest of a set is the wrapping sum
//! of a 128-bit hash of each region, so it can be kept up to date in O(1) per
//! change (add the new region's hash, subtract the old one's) instead of
//! rehashing a million regions for every status call.

use regionsync_proto::metapb::Region;
use xxhash_rust::xxh3::Xxh3;

/// The hash of one region over the fields docs/protocol.md §6 names: id, epoch, keys
/// and peers. Lengths are hashed before variable fields so that no two
/// different regions can feed the hasher the same bytes.
pub fn region_hash(r: &Region) -> u128 {
    let mut h = Xxh3::new();
    let epoch = r.region_epoch.unwrap_or_default();
    h.update(&r.id.to_le_bytes());
    h.update(&epoch.conf_ver.to_le_bytes());
    h.update(&epoch.version.to_le_bytes());
    h.update(&(r.start_key.len() as u64).to_le_bytes());
    h.update(&r.start_key);
    h.update(&(r.end_key.len() as u64).to_le_bytes());
    h.update(&r.end_key);
    h.update(&(r.peers.len() as u64).to_le_bytes());
    for p in &r.peers {
        h.update(&p.id.to_le_bytes());
        h.update(&p.store_id.to_le_bytes());
        h.update(&p.role.to_le_bytes());
        h.update(&[u8::from(p.is_witness)]);
    }
    h.digest128()
}

/// A running, order-independent digest of a set of regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest(u128);

impl SetDigest {
    /// Count region `r` in.
    pub fn add(&mut self, r: &Region) {
        self.0 = self.0.wrapping_add(region_hash(r));
    }

    /// Count region `r` out (it must have been added).
    pub fn remove(&mut self, r: &Region) {
        self.0 = self.0.wrapping_sub(region_hash(r));
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
}
