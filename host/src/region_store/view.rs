//! A region read straight from its encoding, when that encoding is exactly
//! the one prost writes. A full sync's snapshot regions are then stored in
//! the encoding they arrived in, instead of being decoded into structs and
//! encoded again: decoding and re-encoding were most of a follower's CPU in a
//! full sync (BENCHMARKS.md).
//!
//! Why "exactly prost's": the store keeps each region as its encoding and
//! reads fields from it assuming prost's layout (each field once, in number
//! order: `entry`), the ordered index borrows start keys from it
//! (`key_ref`), and a leader sends it on byte for byte. Another encoder may
//! order fields otherwise, repeat them, write default values, use longer
//! varints than needed, or carry fields this build does not know: for any of
//! that [`RegionView::parse`] answers `None`, and the caller decodes and
//! encodes the region as before. What `parse` accepts, prost decodes and
//! encodes back to the same bytes (the tests hold it to that, on mutated
//! encodings too).

use std::ops::Range;

use prost::Message;
use regionsync_proto::metapb::Region;

use crate::digest::{PeerFields, RegionFields, region_hash_of};

/// A region's fields, read from an encoding that is prost's own.
#[derive(Debug, Clone)]
pub struct RegionView<'a> {
    /// The whole encoding.
    pub bytes: &'a [u8],
    /// Where its fields lie in it.
    pub layout: Layout,
}

/// Where a region's fields lie in its encoding, with the values read on the
/// way and its hash: plain data, so that a received frame can keep the
/// layouts of its regions beside its buffer, and the region is read once.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    id: u64,
    conf_ver: u64,
    version: u64,
    start_key: Range<usize>,
    end_key: Range<usize>,
    /// The peers' fields, back to back (keys included).
    peers: Range<usize>,
    peer_count: usize,
    /// `digest::region_hash`, computed while the fields were read.
    hash: u128,
}

impl<'a> RegionView<'a> {
    /// The region in `bytes`, if `bytes` is exactly prost's encoding of a
    /// `metapb.Region` this build knows every field of.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut l = Layout::default();
        let mut r = Reader(bytes);
        let mut last = 0;
        // The peers as read, for the hash (a region has a handful).
        let mut peers = [PeerFields::default(); 8];
        while !r.0.is_empty() {
            let at = bytes.len() - r.0.len();
            let (number, wire) = r.key()?;
            // In number order, each once; only the peers repeat, back to
            // back (prost writes a repeated field's elements together).
            if number < last || (number == last && number != 5) {
                return None;
            }
            last = number;
            // Where a payload just read lies in `bytes`.
            let span = |r: &Reader<'_>, len: usize| {
                let end = bytes.len() - r.0.len();
                end - len..end
            };
            match (number, wire) {
                (1, VARINT) => l.id = r.nonzero()?,
                (2, BYTES) => {
                    let len = r.nonempty()?.len();
                    l.start_key = span(&r, len);
                }
                (3, BYTES) => {
                    let len = r.nonempty()?.len();
                    l.end_key = span(&r, len);
                }
                (4, BYTES) => (l.conf_ver, l.version) = epoch(r.bytes()?)?,
                (5, BYTES) => {
                    let p = peer(r.bytes()?)?;
                    if let Some(slot) = peers.get_mut(l.peer_count) {
                        *slot = p;
                    }
                    if l.peer_count == 0 {
                        l.peers.start = at;
                    }
                    l.peers.end = bytes.len() - r.0.len();
                    l.peer_count += 1;
                }
                // is_in_flashback (true, as prost writes it) and
                // flashback_start_ts: not read here, but kept.
                (7, VARINT) => (r.varint()? == 1).then_some(())?,
                (8, VARINT) => _ = r.nonzero()?,
                _ => return None,
            }
        }
        let mut view = RegionView { bytes, layout: l };
        view.layout.hash = match peers.get(..view.layout.peer_count) {
            Some(read) => region_hash_of(&view, read.iter().copied()),
            None => region_hash_of(&view, view.peers()),
        };
        Some(view)
    }

    /// The region, decoded.
    pub fn decode(&self) -> Region {
        Region::decode(self.bytes).expect("a parsed view is a region's encoding")
    }
}

impl RegionFields for RegionView<'_> {
    fn id(&self) -> u64 {
        self.layout.id
    }

    fn conf_ver_and_version(&self) -> (u64, u64) {
        (self.layout.conf_ver, self.layout.version)
    }

    fn start_key(&self) -> &[u8] {
        &self.bytes[self.layout.start_key.clone()]
    }

    fn end_key(&self) -> &[u8] {
        &self.bytes[self.layout.end_key.clone()]
    }

    fn peer_count(&self) -> usize {
        self.layout.peer_count
    }

    fn peers(&self) -> impl Iterator<Item = PeerFields> + '_ {
        let mut r = Reader(&self.bytes[self.layout.peers.clone()]);
        std::iter::from_fn(move || {
            r.key()?;
            peer(r.bytes()?)
        })
    }

    fn hash(&self) -> u128 {
        self.layout.hash
    }
}

/// A region to apply: read from its encoding, or decoded.
pub enum Incoming<'a> {
    /// Its encoding is prost's own ([`RegionView`]).
    Encoded(RegionView<'a>),
    /// Decoded into a struct.
    Decoded(Region),
}

impl Incoming<'_> {
    /// The region as a struct (decoded now if it was not).
    pub fn into_region(self) -> Region {
        match self {
            Incoming::Encoded(v) => v.decode(),
            Incoming::Decoded(r) => r,
        }
    }

    /// The region's encoding (prost's: encoded now if it was decoded).
    pub fn encoding(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Incoming::Encoded(v) => v.bytes.into(),
            Incoming::Decoded(r) => r.encode_to_vec().into(),
        }
    }
}

impl RegionFields for Incoming<'_> {
    fn id(&self) -> u64 {
        match self {
            Incoming::Encoded(v) => v.id(),
            Incoming::Decoded(r) => r.id,
        }
    }

    fn conf_ver_and_version(&self) -> (u64, u64) {
        match self {
            Incoming::Encoded(v) => v.conf_ver_and_version(),
            Incoming::Decoded(r) => r.conf_ver_and_version(),
        }
    }

    fn start_key(&self) -> &[u8] {
        match self {
            Incoming::Encoded(v) => v.start_key(),
            Incoming::Decoded(r) => &r.start_key,
        }
    }

    fn end_key(&self) -> &[u8] {
        match self {
            Incoming::Encoded(v) => v.end_key(),
            Incoming::Decoded(r) => &r.end_key,
        }
    }

    fn peer_count(&self) -> usize {
        match self {
            Incoming::Encoded(v) => v.layout.peer_count,
            Incoming::Decoded(r) => r.peers.len(),
        }
    }

    fn hash(&self) -> u128 {
        match self {
            Incoming::Encoded(v) => v.hash(),
            Incoming::Decoded(r) => r.hash(),
        }
    }

    fn peers(&self) -> impl Iterator<Item = PeerFields> + '_ {
        let (encoded, decoded) = match self {
            Incoming::Encoded(v) => (Some(v.peers()), None),
            Incoming::Decoded(r) => (None, Some(RegionFields::peers(r))),
        };
        encoded
            .into_iter()
            .flatten()
            .chain(decoded.into_iter().flatten())
    }
}

const VARINT: u8 = 0;
const BYTES: u8 = 2;

/// `metapb.RegionEpoch` as prost writes it: (conf_ver, version).
fn epoch(bytes: &[u8]) -> Option<(u64, u64)> {
    let (mut conf_ver, mut version) = (0, 0);
    each_field(bytes, |number, wire, r| {
        match (number, wire) {
            (1, VARINT) => conf_ver = r.nonzero()?,
            (2, VARINT) => version = r.nonzero()?,
            _ => return None,
        }
        Some(())
    })?;
    Some((conf_ver, version))
}

/// `metapb.Peer` as prost writes it.
fn peer(bytes: &[u8]) -> Option<PeerFields> {
    let mut p = PeerFields::default();
    each_field(bytes, |number, wire, r| {
        match (number, wire) {
            (1, VARINT) => p.id = r.nonzero()?,
            (2, VARINT) => p.store_id = r.nonzero()?,
            // An enum: prost writes a negative value in ten bytes; only
            // the roles there are (small, positive) are taken here.
            (3, VARINT) => p.role = i32::try_from(r.nonzero()?).ok()?,
            // true, as prost writes it
            (4, VARINT) => p.is_witness = (r.varint()? == 1).then_some(true)?,
            _ => return None,
        }
        Some(())
    })?;
    Some(p)
}

/// Hand `f` each field of a message whose fields appear at most once each,
/// in number order (as prost writes one without repeated fields).
#[inline(always)]
fn each_field<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(u32, u8, &mut Reader<'a>) -> Option<()>,
) -> Option<()> {
    let (mut r, mut last) = (Reader(bytes), 0);
    while !r.0.is_empty() {
        let (number, wire) = r.key()?;
        if number <= last {
            return None;
        }
        last = number;
        f(number, wire, &mut r)?;
    }
    Some(())
}

/// Reads what prost writes and nothing else: shortest varints only. Also
/// the reader of stored blobs (`entry`), which prost wrote. Read here rather
/// than with prost's reader, which is generic over `Buf`: indexing a
/// snapshot, which reads every start key, took 15% fewer instructions so
/// (callgrind, BENCHMARKS.md).
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    /// A field's (number, wire type).
    #[inline]
    pub(super) fn key(&mut self) -> Option<(u32, u8)> {
        let key = self.varint()?;
        Some((u32::try_from(key >> 3).ok()?, (key & 7) as u8))
    }

    /// A varint in its shortest form.
    #[inline]
    pub(super) fn varint(&mut self) -> Option<u64> {
        let buf = self.0;
        let &first = buf.first()?;
        if first < 0x80 {
            self.0 = &buf[1..];
            return Some(u64::from(first));
        }
        let mut value = 0u64;
        for (i, &byte) in buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // A last byte of zero, or a tenth past bit 63, is not
                // what prost writes.
                if byte == 0 || (i == 9 && byte > 1) {
                    return None;
                }
                self.0 = &buf[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// A varint that is not zero (prost leaves zero scalars out).
    #[inline]
    fn nonzero(&mut self) -> Option<u64> {
        self.varint().filter(|v| *v != 0)
    }

    /// A length-delimited field's payload.
    #[inline]
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        Some(bytes)
    }

    /// Pass over `n` bytes (a fixed-width field).
    #[inline]
    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }

    /// A payload that is not empty (prost leaves empty bytes out).
    #[inline]
    fn nonempty(&mut self) -> Option<&'a [u8]> {
        self.bytes().filter(|b| !b.is_empty())
    }
}

#[cfg(test)]
mod tests;
