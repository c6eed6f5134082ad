//! The store read as encodings, in key order: what a leader's snapshot
//! frames are made of (`leader::frames`), without decoding a region.

use std::ops::Bound;

use super::RegionStore;

/// A stored region as its encoding, borrowed from the store.
#[derive(Debug, Clone, Copy)]
pub struct EncodedRegion<'a> {
    /// The `metapb.Region` encoding.
    pub region: &'a [u8],
    /// The leader's `metapb.Peer` encoding; empty (an empty peer) when the
    /// leader is unknown.
    pub leader: &'a [u8],
    /// The region's start key.
    pub start_key: &'a [u8],
}

impl RegionStore {
    /// The next run of regions in key order after `after` (none: from the
    /// first), at most `max_regions` and about `max_bytes` of encoding (at
    /// least one region), as their encodings: a snapshot frame is made of
    /// them without decoding a region (`leader::frames`), in a short read
    /// lock.
    pub fn chunk_after(
        &self,
        after: Option<&[u8]>,
        max_regions: usize,
        max_bytes: usize,
    ) -> Vec<EncodedRegion<'_>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut bytes = 0;
        let mut out = Vec::new();
        for (_, entry) in self.in_key_order(lower) {
            let size = entry.blob().len();
            if out.len() == max_regions || (!out.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            out.push(EncodedRegion {
                region: entry.blob(),
                leader: entry.leader_encoding(),
                start_key: entry.start_key(),
            });
        }
        out
    }
}
