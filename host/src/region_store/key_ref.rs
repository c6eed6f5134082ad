//! [`KeyRef`]: a start key borrowed from the encoding of the region it
//! belongs to, so that the ordered index of a million regions does not hold a
//! second copy of every start key.
//!
//! This is the store's only `unsafe`, kept in a file of its own so that its
//! invariant can be read in one place.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ptr::NonNull;

/// A start key borrowed from the encoding of the region it belongs to.
///
/// SAFETY invariant, kept by `RegionStore::insert_entry` and
/// `RegionStore::remove` alone: a `KeyRef` in `by_start` points into the heap
/// buffer of the `blob` of the region it maps to in `by_id`. A blob is never
/// mutated while stored, its heap buffer does not move when the `Box` moves
/// (a map rebalancing), and a region's key leaves `by_start` before its blob
/// is dropped.
#[derive(Clone, Copy)]
pub(super) struct KeyRef {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a KeyRef is a shared borrow of immutable bytes owned by the same
// RegionStore; it is sent and shared only together with its owner.
unsafe impl Send for KeyRef {}
unsafe impl Sync for KeyRef {}

impl KeyRef {
    /// Borrow `bytes`; the caller keeps the invariant above.
    pub(super) fn of(bytes: &[u8]) -> Self {
        KeyRef {
            ptr: NonNull::from(bytes).cast(),
            len: bytes.len(),
        }
    }

    /// The key.
    pub(super) fn bytes(&self) -> &[u8] {
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
