//! [`KeyRef`]: a start key borrowed from the encoding of the region it
//! belongs to, so that the ordered index of a million regions does not hold a
//! second copy of every start key, nor the region's id beside it.
//!
//! One pointer, not a slice, and no id: the key's length is read from the
//! encoding, just before the key (prost writes field 2 as its tag, the
//! length as a shortest varint, then the bytes), and the region's id just
//! before that (field 1, the encoding's first). The index is then a set of
//! 8-byte keys: 112 bytes a B-tree node rather than 192 for a map of
//! (key, id), about 8 bytes a region (BENCHMARKS.md, "Kept: the key index
//! holds start keys alone").
//!
//! This is the store's only `unsafe` besides the entry's own buffer, kept in
//! a file of its own so that its invariant can be read in one place.

use std::borrow::Borrow;
use std::cmp::Ordering;

use super::view::Reader;

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
    /// varint, that by field 2's tag and that by the id field. Where the
    /// encoding has no start key (prost leaves an empty one out) it points
    /// just past the id field and carries [`EMPTY_KEY`]; where it has no id
    /// (an id of 0, which `check` refuses but a test may store) it carries
    /// [`NO_ID`]. User-space addresses leave both bits clear.
    ptr: *const u8,
}

/// The encoding has no start key field: the key is empty.
const EMPTY_KEY: usize = 1 << (usize::BITS - 1);
/// The encoding has no id field: the id is 0.
const NO_ID: usize = 1 << (usize::BITS - 2);
const FLAGS: usize = EMPTY_KEY | NO_ID;

// SAFETY: a KeyRef is a shared borrow of immutable bytes owned by the same
// RegionStore; it is sent and shared only together with its owner.
unsafe impl Send for KeyRef {}
unsafe impl Sync for KeyRef {}

impl KeyRef {
    /// Borrow the start key of `blob`, a stored region's prost encoding;
    /// the caller keeps the invariant above.
    pub(super) fn of(blob: &[u8]) -> Self {
        let mut reader = Reader(blob);
        let mut flags = 0;
        let id = if blob.first() == Some(&ID_TAG) {
            reader.skip(1);
            reader.varint().expect("a stored region's id is a varint")
        } else {
            flags |= NO_ID;
            0
        };
        let key = if reader.0.first() == Some(&KEY_TAG) {
            reader.skip(1);
            Some(
                reader
                    .bytes()
                    .expect("a stored region's start key is whole"),
            )
        } else {
            flags |= EMPTY_KEY;
            None
        };
        let at = key.map_or(reader.0.as_ptr(), <[u8]>::as_ptr);
        assert_eq!(at.addr() & FLAGS, 0, "an address with its top bits set");
        let k = KeyRef {
            ptr: at.map_addr(|a| a | flags),
        };
        // What reading back finds is checked once, here: the encoding is
        // prost's, or this is not a region's encoding.
        assert!(
            k.bytes() == key.unwrap_or_default() && k.id() == id,
            "a start key or id not where prost puts them"
        );
        k
    }

    /// The key.
    pub(super) fn bytes(&self) -> &[u8] {
        if self.ptr.addr() & EMPTY_KEY != 0 {
            return &[];
        }
        let key = self.ptr.map_addr(|a| a & !FLAGS);
        // SAFETY: see the type's invariant; the owner outlives the borrow.
        // The bytes before the key are its length and, before them, the
        // tag (see `varint_before`).
        unsafe {
            let (len, _) = varint_before(key);
            std::slice::from_raw_parts(key, len as usize)
        }
    }

    /// The id of the region whose key this is.
    pub(super) fn id(&self) -> u64 {
        let addr = self.ptr.addr();
        if addr & NO_ID != 0 {
            return 0;
        }
        let at = self.ptr.map_addr(|a| a & !FLAGS);
        // SAFETY: see the type's invariant. Before the key lie its length
        // and field 2's tag, and before those (or right before `at`, when
        // there is no key field) the id's varint, after field 1's tag.
        unsafe {
            let id_end = if addr & EMPTY_KEY != 0 {
                at
            } else {
                varint_before(at).1.sub(1)
            };
            varint_before(id_end).0
        }
    }
}

/// Field 1 (the id, a varint) and field 2 (the start key, bytes), tagged.
const ID_TAG: u8 = 1 << 3;
const KEY_TAG: u8 = 2 << 3 | 2;

/// The varint that ends just before `end`, and where it starts.
///
/// # Safety
/// `end` points into (or just past) a buffer where a shortest varint ends
/// just before it, and that varint is preceded in the buffer by a byte with
/// its high bit clear (a tag). The varint's last byte has the high bit
/// clear and its earlier bytes have it set, so reading back stops at the
/// tag without reading past it.
unsafe fn varint_before(end: *const u8) -> (u64, *const u8) {
    // SAFETY: as the function's contract says.
    unsafe {
        let mut at = end.sub(1);
        let mut value = u64::from(*at);
        while *at.sub(1) & 0x80 != 0 {
            at = at.sub(1);
            value = value << 7 | u64::from(*at & 0x7f);
        }
        (value, at)
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

    /// Keys of every length class the varint has, with ids of several
    /// lengths (none: an id of 0), read back from where prost put them.
    #[test]
    fn a_key_reads_its_length_and_its_regions_id_from_the_encoding() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            for id in [0, 1, 127, 128, 1 << 40, u64::MAX] {
                let region = Region {
                    id,
                    start_key: (0..len).map(|i| i as u8).collect(),
                    end_key: b"z".to_vec(),
                    ..Default::default()
                };
                let blob = region.encode_to_vec();
                let key = KeyRef::of(&blob);
                assert_eq!(key.bytes(), region.start_key.as_slice(), "{len} {id}");
                assert_eq!(key.id(), id, "{len} {id}");
            }
        }
        let nothing = KeyRef::of(&[]);
        assert_eq!((nothing.bytes(), nothing.id()), (&[][..], 0));
    }
}
