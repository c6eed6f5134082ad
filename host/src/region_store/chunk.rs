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
        self.chunk_changed_before(after, u64::MAX, max_regions, max_bytes)
            .0
    }

    /// As [`RegionStore::chunk_after`], with only the regions last changed
    /// before index `before` (a PD follower's snapshot: what changed since
    /// its pin comes in the ring's records instead, `leader::sync_stream`).
    /// Also returns the start key of the last region walked, sent or left
    /// out, where the next chunk goes on; `None` once the walk reached the
    /// last region. A walk leaving many out stops after a few thousand
    /// regions, so the read lock stays short.
    pub fn chunk_changed_before(
        &self,
        after: Option<&[u8]>,
        before: u64,
        max_regions: usize,
        max_bytes: usize,
    ) -> (Vec<EncodedRegion<'_>>, Option<&[u8]>) {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let walk_at_most = max_regions.max(1).saturating_mul(4).max(4_096);
        let mut bytes = 0;
        let mut out = Vec::new();
        let mut walked = None;
        for (n, (_, entry)) in self.in_key_order(lower).enumerate() {
            if n == walk_at_most {
                return (out, walked);
            }
            if entry.changed < before {
                let size = entry.blob().len();
                if out.len() == max_regions || (!out.is_empty() && bytes + size > max_bytes) {
                    return (out, walked);
                }
                bytes += size;
                out.push(EncodedRegion {
                    region: entry.blob(),
                    leader: entry.leader_encoding(),
                    start_key: entry.start_key(),
                });
            }
            walked = Some(entry.start_key());
        }
        (out, None)
    }
}
