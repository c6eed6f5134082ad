//! [`RingRecord`]: a record as the ring keeps it, each of its parts in its
//! protobuf encoding, all in one allocation.
//!
//! Why encoded: a decoded [`Record`] of a three-peer region with its keys,
//! peers and vectors takes several allocations and about three times its
//! encoding's heap; a full ring costs a leader less memory kept encoded
//! (BENCHMARKS.md, "Kept: the history ring keeps records encoded"), and a
//! history frame needed nothing decoded anyway: records were cloned into a
//! message for tonic to encode again. Frames are now
//! written from these bytes ([`crate::leader::frames::records_encoded`]),
//! the way snapshot frames are written from the store's encodings.

use std::sync::Arc;

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::{PeerStats, Peers, PeersStats, RegionStat};

use super::Record;

/// A record's parts, encoded: the region (`metapb.Region`), its leader
/// (`metapb.Peer`), its flow (`pdpb.RegionStat`), its down peers
/// (`pdpb.PeersStats`) and its pending peers (`pdpb.Peers`), each as a
/// varint length and the bytes, in that order. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct RingRecord(Arc<[u8]>);

/// The parts in the order they are kept.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// The region.
    Region = 0,
    /// Its leader.
    Leader,
    /// Its flow statistics.
    Stats,
    /// Its down peers.
    Down,
    /// Its pending peers.
    Pending,
}

impl Part {
    /// Every part, in the order a record keeps them.
    pub const ALL: [Part; 5] = [
        Part::Region,
        Part::Leader,
        Part::Stats,
        Part::Down,
        Part::Pending,
    ];

    /// The part's field number in a `SyncRegionResponse`.
    pub fn frame_field(self) -> u32 {
        match self {
            Part::Region => 2,
            Part::Stats => 4,
            Part::Leader => 5,
            Part::Down => 16,
            Part::Pending => 17,
        }
    }
}

impl RingRecord {
    /// A record of `region`'s encoding (prost's, as the store keeps it or
    /// as it was received) and the rest of a change.
    pub fn new(
        region: &[u8],
        leader: &Peer,
        stats: &RegionStat,
        down: &[PeerStats],
        pending: &[Peer],
    ) -> Self {
        let down_len = repeated_len(down);
        let pending_len = repeated_len(pending);
        let lens = [
            region.len(),
            leader.encoded_len(),
            stats.encoded_len(),
            down_len,
            pending_len,
        ];
        let mut buf =
            Vec::with_capacity(lens.iter().map(|&n| encoded_len_varint(n as u64) + n).sum());
        encode_varint(region.len() as u64, &mut buf);
        buf.extend_from_slice(region);
        leader.encode_length_delimited(&mut buf).expect("sized");
        stats.encode_length_delimited(&mut buf).expect("sized");
        encode_varint(down_len as u64, &mut buf);
        encode_repeated(down, &mut buf);
        encode_varint(pending_len as u64, &mut buf);
        encode_repeated(pending, &mut buf);
        debug_assert_eq!(buf.len(), buf.capacity());
        RingRecord(buf.into())
    }

    /// The ring's form of a decoded record.
    pub fn of(record: &Record) -> Self {
        Self::new(
            &record.region.encode_to_vec(),
            &record.leader,
            &record.stats,
            &record.down_peers,
            &record.pending_peers,
        )
    }

    /// Every part's encoding, in [`Part`] order.
    pub fn parts(&self) -> [&[u8]; 5] {
        let mut rest = &self.0[..];
        std::array::from_fn(|_| {
            let len = prost::encoding::decode_varint(&mut rest).expect("written by new") as usize;
            let (part, after) = rest.split_at(len);
            rest = after;
            part
        })
    }

    /// Bytes this record adds to a history frame (see [`frame_len`]).
    pub fn frame_len(&self) -> usize {
        frame_len(&self.parts())
    }

    /// The record, decoded.
    pub fn decode(&self) -> Record {
        let [region, leader, stats, down, pending] = self.parts();
        Record {
            region: Region::decode(region).expect("written by new"),
            leader: Peer::decode(leader).expect("written by new"),
            stats: RegionStat::decode(stats).expect("written by new"),
            down_peers: PeersStats::decode(down).expect("written by new").peers,
            pending_peers: Peers::decode(pending).expect("written by new").peers,
        }
    }
}

impl std::fmt::Debug for RingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decode().fmt(f)
    }
}

/// Bytes a record's `parts` add to a history frame: each part as a field of
/// the frame (its key, its length, its bytes).
pub fn frame_len(parts: &[&[u8]; 5]) -> usize {
    parts
        .iter()
        .zip(Part::ALL)
        .map(|(p, part)| key_len(part.frame_field()) + encoded_len_varint(p.len() as u64) + p.len())
        .sum()
}

/// The length of a message whose only field, 1, repeats `items`.
fn repeated_len<M: Message>(items: &[M]) -> usize {
    items
        .iter()
        .map(|m| key_len(1) + encoded_len_varint(m.encoded_len() as u64) + m.encoded_len())
        .sum()
}

/// A message whose only field, 1, repeats `items`, as prost writes it.
fn encode_repeated<M: Message>(items: &[M], buf: &mut Vec<u8>) {
    for m in items {
        encode_key(1, WireType::LengthDelimited, buf);
        m.encode_length_delimited(buf).expect("a Vec grows");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part reads back as the record's own, and the frame length is
    /// what prost writes for the parts as frame fields.
    #[test]
    fn a_ring_record_reads_back_as_the_record_it_was_made_of() {
        let mut r = Record::bare(
            crate::region_store::sample::region(7, 100, 3),
            Peer {
                id: 9,
                store_id: 4,
                ..Default::default()
            },
        );
        r.stats.bytes_written = 1 << 40;
        r.stats.keys_read = 3;
        r.down_peers = vec![PeerStats {
            peer: Some(r.region.peers[1]),
            down_seconds: 77,
        }];
        r.pending_peers = vec![r.region.peers[2], r.region.peers[0]];
        for record in [r.clone(), Record::bare(Region::default(), Peer::default())] {
            let ring = RingRecord::of(&record);
            assert_eq!(ring.decode(), record);
            assert_eq!(
                ring.parts()[Part::Region as usize],
                record.region.encode_to_vec()
            );
            let frame = regionsync_proto::pdpb::SyncRegionResponse {
                regions: vec![record.region.clone()],
                region_leaders: vec![record.leader],
                region_stats: vec![record.stats],
                down_peers: vec![PeersStats {
                    peers: record.down_peers.clone(),
                }],
                pending_peers: vec![Peers {
                    peers: record.pending_peers.clone(),
                }],
                ..Default::default()
            };
            assert_eq!(ring.frame_len(), frame.encoded_len());
        }
    }
}
