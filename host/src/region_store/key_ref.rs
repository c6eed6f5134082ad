//! [`KeyRef`]: a start key borrowed from the encoding of the region it
//! belongs to, so that the ordered index of a million regions does not hold a
//! second copy of every start key.
//!
//! One pointer, not a slice: the key's length is read from the encoding,
//! just before the key (prost writes field 2 as its tag, the length as a
//! shortest varint, then the bytes). 8 bytes rather than 16 a key puts the
//! index's B-tree nodes in a smaller size class of the allocator (192 bytes
//! a node rather than 320: 12 bytes a region).
//!
//! This is the store's only `unsafe` besides the entry's own buffer, kept in
//! a file of its own so that its invariant can be read in one place.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ptr::NonNull;

/// A start key borrowed from the encoding of the region it belongs to.
///
/// SAFETY invariant, kept by `RegionStore::insert_entry` and
/// `RegionStore::remove` alone: a `KeyRef` in `by_start` points into the heap
/// buffer of the encoding of the region it maps to in `by_id`. An encoding is
/// never mutated while stored, its heap buffer does not move when its entry
/// moves (a map rebalancing), and a region's key leaves `by_start` before its
/// encoding is dropped.
#[derive(Clone, Copy)]
pub(super) struct KeyRef {
    /// The key's first byte, preceded in the same buffer by its length as a
    /// varint and that by field 2's tag; or [`EMPTY`]'s end.
    ptr: NonNull<u8>,
}

/// What an empty start key (a field prost leaves out) points at: a length
/// of zero, after a tag.
static EMPTY: [u8; 2] = [0x12, 0];

// SAFETY: a KeyRef is a shared borrow of immutable bytes owned by the same
// RegionStore; it is sent and shared only together with its owner.
unsafe impl Send for KeyRef {}
unsafe impl Sync for KeyRef {}

impl KeyRef {
    /// Borrow `key`, the start key field of a stored region's prost
    /// encoding (empty: the field left out); the caller keeps the invariant
    /// above.
    pub(super) fn of(key: &[u8]) -> Self {
        let ptr = if key.is_empty() {
            EMPTY[2..].as_ptr()
        } else {
            key.as_ptr()
        };
        let k = KeyRef {
            ptr: NonNull::new(ptr.cast_mut()).expect("a slice is not null"),
        };
        // What the length before the key says is checked once, here: the
        // encoding is prost's, or this is not a start key field.
        assert_eq!(
            k.bytes().len(),
            key.len(),
            "a start key not preceded by its length"
        );
        k
    }

    /// The key.
    pub(super) fn bytes(&self) -> &[u8] {
        let key = self.ptr.as_ptr();
        // SAFETY: see the type's invariant; the owner outlives the borrow.
        // The bytes before the key are its length, a varint whose last byte
        // (just before the key) has the high bit clear and whose earlier
        // bytes have it set, and before them the tag (high bit clear), so
        // reading back stops at the tag.
        unsafe {
            let mut at = key.sub(1);
            let mut len = usize::from(*at);
            while *at.sub(1) & 0x80 != 0 {
                at = at.sub(1);
                len = len << 7 | usize::from(*at & 0x7f);
            }
            std::slice::from_raw_parts(key, len)
        }
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

#[cfg(test)]
mod tests {
    use prost::Message;
    use regionsync_proto::metapb::Region;

    use super::*;

    /// Keys of every length class the varint has, read back from where
    /// prost put them.
    #[test]
    fn a_key_reads_its_length_from_the_encoding() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let region = Region {
                id: 1 << 40,
                start_key: (0..len).map(|i| i as u8).collect(),
                ..Default::default()
            };
            let blob = region.encode_to_vec();
            let at = blob.len() - len;
            let key = KeyRef::of(&blob[at..]);
            assert_eq!(key.bytes(), region.start_key.as_slice(), "{len}");
        }
    }
}
