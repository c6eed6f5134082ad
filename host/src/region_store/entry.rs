//! How one region is kept: [`Entry`] holds its protobuf encoding, and reads
//! the few fields the update path needs (epoch, keys) straight from it with a
//! minimal field reader, instead of decoding the whole region. Decoding whole
//! regions on every update cost more than everything else an update does.

use std::ptr::NonNull;

use prost::Message;
use regionsync_proto::metapb::{Peer, Region};

use super::view::{Incoming, Reader, RegionView};
use crate::digest::RegionFields;

/// A stored region, in 24 bytes: the id index holds one per region, and
/// 24 rather than 32 puts its B-tree nodes in a smaller size class of the
/// allocator (384 bytes a node rather than 512: 12 bytes a region).
pub(super) struct Entry {
    /// The heap buffer of a `Box<[u8]>` holding the region's encoding (its
    /// prost encoding; never mutated while stored, see [`KeyRef`]), taken
    /// apart so that its length can share a word with the leader slot.
    ptr: NonNull<u8>,
    /// The buffer's length (low 24 bits; every region arrives in a message
    /// of at most 8 MiB) and the leader slot (high 8 bits): 1 + the leader's
    /// position in the region's peers, 0 when unknown.
    len_leader: u32,
    /// Fingerprint of what a heartbeat carries besides the region (leader,
    /// flow statistics), so that a change there counts as a change.
    pub(super) extra: u32,
    /// Index of the record that last changed the region (0: unknown, older
    /// than the store's delta floor). What a catch-up or a delta reads.
    pub(super) changed: u64,
}

/// The longest encoding an entry holds: 24 bits of length. Messages are
/// bounded at 8 MiB (`wire::MAX_MESSAGE_BYTES`), and a region is stored as
/// received or as prost encodes it again, never longer.
const MAX_BLOB: usize = (1 << 24) - 1;

const _: () = assert!(std::mem::size_of::<Entry>() == 24);

// SAFETY: an Entry owns its buffer alone, as the Box it was made from did,
// and hands out only shared borrows of it.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

impl Drop for Entry {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len());
        // SAFETY: ptr and len are the parts of the Box made in `Entry::of`,
        // dropped once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl Entry {
    /// The stored form of a region with its leader and heartbeat fingerprint.
    pub(super) fn new(region: &Region, leader_id: u64, extra: u64, changed: u64) -> Self {
        let blob = region.encode_to_vec().into_boxed_slice();
        Self::of(blob, leader_slot(region, leader_id), extra, changed)
    }

    /// The stored form of a region received in prost's own encoding, kept
    /// as it is (`view`).
    pub(super) fn from_view(
        view: &RegionView<'_>,
        leader_id: u64,
        extra: u64,
        changed: u64,
    ) -> Self {
        Self::of(
            view.bytes.into(),
            leader_slot(view, leader_id),
            extra,
            changed,
        )
    }

    fn of(blob: Box<[u8]>, leader: u8, extra: u64, changed: u64) -> Self {
        let len = blob.len();
        assert!(
            len <= MAX_BLOB,
            "a region encoding of {len} bytes; messages are bounded at 8 MiB"
        );
        let ptr = NonNull::new(Box::into_raw(blob).cast::<u8>()).expect("a Box is not null");
        Entry {
            ptr,
            len_leader: len as u32 | u32::from(leader) << 24,
            extra: extra as u32,
            changed,
        }
    }

    /// The region's encoding.
    pub(super) fn blob(&self) -> &[u8] {
        // SAFETY: the parts of the Box made in `Entry::of`, alive as long as
        // `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    fn len(&self) -> usize {
        (self.len_leader & MAX_BLOB as u32) as usize
    }

    /// 1 + the leader's position in the region's peers; 0 when unknown.
    pub(super) fn leader(&self) -> u8 {
        (self.len_leader >> 24) as u8
    }

    /// The stored region, read from its encoding (which is prost's own:
    /// decoded only should it not be, which nothing stored here makes).
    pub(super) fn read(&self) -> Incoming<'_> {
        match RegionView::parse(self.blob()) {
            Some(view) => Incoming::Encoded(view),
            None => Incoming::Decoded(self.decode()),
        }
    }

    pub(super) fn decode(&self) -> Region {
        Region::decode(self.blob()).expect("the store only holds regions it encoded")
    }

    /// (version, conf_ver), read from the encoding without decoding it.
    pub(super) fn epoch(&self) -> (u64, u64) {
        let mut epoch = (0, 0);
        if let Some(Field::Bytes(e)) = field(self.blob(), 4) {
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
    pub(super) fn end_key(&self) -> &[u8] {
        match field(self.blob(), 3) {
            Some(Field::Bytes(b)) => b,
            _ => &[],
        }
    }

    /// A region starting at `start` lies wholly after this one: this one
    /// starts before `start` and ends at or before it, so they cannot
    /// overlap (a region appended past the end of a key-ordered set).
    pub(super) fn lies_before(&self, start: &[u8]) -> bool {
        range_lies_before(self.start_key(), self.end_key(), start)
    }

    /// The leader peer's encoding, sliced out of the region's (empty, as an
    /// unknown leader's empty peer encodes, when unknown): what a frame's
    /// `region_leaders` entry holds, without decoding the region. The
    /// encoding is prost's, so the slice is exactly `leader_of`'s peer
    /// encoded.
    pub(super) fn leader_encoding(&self) -> &[u8] {
        let Some(nth) = (self.leader() as usize).checked_sub(1) else {
            return &[];
        };
        Fields::new(self.blob())
            .take_while(|(tag, _)| *tag <= 5)
            .filter_map(|(tag, value)| match (tag, value) {
                (5, Field::Bytes(peer)) => Some(peer),
                _ => None,
            })
            .nth(nth)
            .unwrap_or_default()
    }

    /// The region's id, the encoding's first field (0 where prost left it
    /// out, as it does an id of 0).
    pub(super) fn id(&self) -> u64 {
        match field(self.blob(), 1) {
            Some(Field::Varint(id)) => id,
            _ => 0,
        }
    }

    /// The start key, as a slice of the encoding.
    pub(super) fn start_key(&self) -> &[u8] {
        match field(self.blob(), 2) {
            Some(Field::Bytes(b)) => b,
            _ => &[],
        }
    }
}

/// The range `[first, end)` lies wholly before a region starting at
/// `start` (see [`Entry::lies_before`]).
pub(super) fn range_lies_before(first: &[u8], end: &[u8], start: &[u8]) -> bool {
    first < start && !end.is_empty() && end <= start
}

/// One field of a protobuf encoding, as the hot path needs it.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Field `number` of a stored region's encoding, without decoding the
/// message. The update path needs only a region's epoch and keys; decoding
/// whole regions there cost more than everything else an update does.
///
/// A blob is prost's encoding ([`Entry::new`]), so each field appears at
/// most once and in number order: the lookup stops at the field, or at the
/// first field past it, rather than reading to the end for a later copy
/// (reading every field cost a tenth of a full sync's CPU).
fn field(buf: &[u8], number: u32) -> Option<Field<'_>> {
    for (tag, value) in Fields::new(buf) {
        if tag >= number {
            return (tag == number).then_some(value);
        }
    }
    None
}

/// The fields of an encoding in order, as (number, value); groups end it
/// (regions have none), fixed-width fields are skipped. Read with the
/// view's reader (`view::Reader`): a stored blob is prost's encoding, which
/// that reader takes.
struct Fields<'a>(Reader<'a>);

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields(Reader(buf))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Field<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let r = &mut self.0;
        while !r.0.is_empty() {
            let (tag, wire) = r.key()?;
            match wire {
                0 => return Some((tag, Field::Varint(r.varint()?))),
                2 => return Some((tag, Field::Bytes(r.bytes()?))),
                1 => r.skip(8)?,
                5 => r.skip(4)?,
                _ => return None, // groups, or no wire type at all
            }
        }
        None
    }
}

/// 1 + the position of peer `leader_id` in the region's peers; 0 if absent.
fn leader_slot(r: &impl RegionFields, leader_id: u64) -> u8 {
    r.peers()
        .position(|p| p.id == leader_id && leader_id != 0)
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// The leader peer in `slot` (see [`leader_slot`]), or an empty peer.
pub(super) fn leader_of(r: &Region, slot: u8) -> Peer {
    (slot as usize)
        .checked_sub(1)
        .and_then(|i| r.peers.get(i))
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_store::tests::region;

    #[test]
    fn fields_read_from_the_encoding_match_the_decoded_region() {
        let mut r = region(3, "abc", "xyz", 17, 4);
        r.flashback_start_ts = 99;
        let e = Entry::new(&r, 0, 0, 0);
        assert_eq!(e.epoch(), (17, 4));
        assert_eq!(e.end_key(), b"xyz");
        assert_eq!((e.start_key(), e.id()), (&b"abc"[..], 3));
        assert_eq!(e.decode(), r);
        let open = Entry::new(&region(4, "a", "", 0, 0), 0, 0, 0);
        assert_eq!((open.epoch(), open.end_key()), ((0, 0), &b""[..]));
        let empty = Entry::new(&Region::default(), 0, 0, 0);
        assert_eq!((empty.blob(), empty.start_key()), (&b""[..], &b""[..]));
        assert_eq!(empty.id(), 0);
        assert_eq!(empty.decode(), Region::default());
    }

    /// The length and the leader slot share a word without touching each
    /// other, up to the longest encoding and the last slot.
    #[test]
    fn length_and_leader_slot_are_kept_apart() {
        let mut r = region(5, "k", "", 1, 1);
        r.peers = (1..=255)
            .map(|id| Peer {
                id,
                ..Default::default()
            })
            .collect();
        // The end key's tag and 4-byte length, then the key.
        r.end_key = vec![7; MAX_BLOB - r.encoded_len() - 5];
        assert_eq!(r.encoded_len(), MAX_BLOB);
        let e = Entry::new(&r, 255, 9, 3);
        assert_eq!((e.blob().len(), e.leader()), (MAX_BLOB, 255));
        assert_eq!(e.decode(), r);
        let e = Entry::new(&r.clone(), 0, 9, 3);
        assert_eq!(e.leader(), 0);
    }
}
