//! Building `SyncRegionResponse` frames (docs/protocol.md §1-§2). The arrays regions /
//! region_stats / region_leaders are index-aligned; a snapshot frame carries
//! no stats (a receiver uses stats only when their length matches).
//!
//! A snapshot frame is written straight from the store's encodings
//! ([`snapshot_encoded`]): decoding a million regions into structs only for
//! tonic to encode them again cost the leader about 0.66 s of CPU per
//! million (BENCHMARKS.md). The bytes are the ones prost writes for the same
//! frame, so a follower, PD's included, cannot tell the difference. A
//! history frame is written the same way, from the ring's encoded records
//! ([`records_encoded`]).

use bytes::{BufMut, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use regionsync_proto::pdpb::{ErrorType, ResponseHeader, SyncRegionResponse};

use crate::history::{Part, RingRecord, frame_len};
use crate::region_store::{EncodedRegion, StoredRegion};
use crate::wire::{Frame, ok_header};

/// No regions: up to date, caught up, completion, or keepalive.
pub fn empty(cluster_id: u64, start_index: u64) -> SyncRegionResponse {
    SyncRegionResponse {
        header: ok_header(cluster_id),
        start_index,
        ..Default::default()
    }
}

/// The frame every stream gets when the leader stops.
pub fn stopped(cluster_id: u64) -> SyncRegionResponse {
    error(cluster_id, "server stopped")
}

/// A frame whose header carries error UNKNOWN with `message`: the follower
/// changes nothing and reconnects.
pub fn error(cluster_id: u64, message: &str) -> SyncRegionResponse {
    SyncRegionResponse {
        header: Some(ResponseHeader {
            cluster_id,
            error: Some(regionsync_proto::pdpb::Error {
                r#type: ErrorType::Unknown as i32,
                message: message.into(),
            }),
        }),
        ..Default::default()
    }
}

/// Snapshot frame: `position` is the index of its first region in the snapshot.
pub fn snapshot(cluster_id: u64, position: u64, regions: Vec<StoredRegion>) -> SyncRegionResponse {
    let mut frame = empty(cluster_id, position);
    frame.region_leaders = regions.iter().map(|r| r.leader).collect();
    frame.regions = regions.into_iter().map(|r| r.region).collect();
    frame
}

/// Snapshot frame, from the store's encodings: the bytes prost writes for
/// [`snapshot`] of the same regions (fields in number order: header,
/// regions, start index, leaders).
pub fn snapshot_encoded(cluster_id: u64, position: u64, regions: &[EncodedRegion<'_>]) -> Frame {
    let nested = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    let size = head_len(cluster_id, position)
        + regions
            .iter()
            .map(|r| nested(r.region.len()) + nested(r.leader.len()))
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    put_header(cluster_id, &mut buf);
    for r in regions {
        put(2, r.region, &mut buf);
    }
    put_start_index(position, &mut buf);
    for r in regions {
        put(5, r.leader, &mut buf);
    }
    Frame::Encoded(buf.freeze())
}

/// History frame, from the ring's encoded records: the bytes prost writes
/// for the same records decoded (fields in number order: header, regions,
/// start index, stats, leaders, down peers, pending peers).
pub fn records_encoded(cluster_id: u64, start_index: u64, records: &[RingRecord]) -> Frame {
    let parts: Vec<[&[u8]; 5]> = records.iter().map(RingRecord::parts).collect();
    let size = head_len(cluster_id, start_index) + parts.iter().map(frame_len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    put_header(cluster_id, &mut buf);
    let put_all = |part: Part, buf: &mut BytesMut| {
        for p in &parts {
            put(part.frame_field(), p[part as usize], buf);
        }
    };
    put_all(Part::Region, &mut buf);
    put_start_index(start_index, &mut buf);
    for part in [Part::Stats, Part::Leader, Part::Down, Part::Pending] {
        put_all(part, &mut buf);
    }
    Frame::Encoded(buf.freeze())
}

/// The header's and the start index's bytes in a frame (at most).
fn head_len(cluster_id: u64, index: u64) -> usize {
    let header = ok_header(cluster_id).map_or(0, |h| {
        let len = h.encoded_len();
        1 + encoded_len_varint(len as u64) + len
    });
    header + 1 + encoded_len_varint(index)
}

fn put(number: u32, bytes: &[u8], buf: &mut BytesMut) {
    encode_key(number, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

fn put_header(cluster_id: u64, buf: &mut BytesMut) {
    if let Some(h) = ok_header(cluster_id) {
        put(1, &h.encode_to_vec(), buf);
    }
}

fn put_start_index(index: u64, buf: &mut BytesMut) {
    if index != 0 {
        encode_key(3, WireType::Varint, buf);
        encode_varint(index, buf);
    }
}

/// History frame of decoded records, as prost writes it: what
/// [`records_encoded`] must equal.
#[cfg(test)]
fn records(
    cluster_id: u64,
    start_index: u64,
    records: &[crate::history::Record],
) -> SyncRegionResponse {
    use regionsync_proto::pdpb::{Peers, PeersStats};
    let mut frame = empty(cluster_id, start_index);
    frame.regions = records.iter().map(|r| r.region.clone()).collect();
    frame.region_leaders = records.iter().map(|r| r.leader).collect();
    frame.region_stats = records.iter().map(|r| r.stats).collect();
    frame.down_peers = records
        .iter()
        .map(|r| PeersStats {
            peers: r.down_peers.clone(),
        })
        .collect();
    frame.pending_peers = records
        .iter()
        .map(|r| Peers {
            peers: r.pending_peers.clone(),
        })
        .collect();
    frame
}

/// The end of a full or delta sync at `index`, with the leader's region-set
/// digest at that index for a follower that verifies (regionsync's field
/// 1001, which PD decoders skip).
pub fn completion(
    cluster_id: u64,
    index: u64,
    digest: Option<u128>,
    removed: Vec<u64>,
) -> SyncRegionResponse {
    let mut frame = empty(cluster_id, index);
    if let Some(d) = digest {
        frame.regionsync_digest = crate::wire::digest_bytes(d);
    }
    frame.regionsync_removed = removed;
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_store::RegionStore;
    use crate::region_store::sample::region;
    use regionsync_proto::metapb::Region;

    /// The frame written from encodings is byte for byte the frame prost
    /// writes for the decoded regions: known and unknown leaders, the first
    /// position and a later one, and the one empty frame of an empty set.
    #[test]
    fn an_encoded_snapshot_frame_is_the_one_prost_writes() {
        let mut store = RegionStore::new();
        let n = 50;
        for i in 0..n {
            let mut r = region(i, n, 1 + i % 4);
            r.is_in_flashback = i % 7 == 0;
            let leader = match i % 3 {
                0 => 0,
                1 => r.peers[0].id,
                _ => r.peers[2].id,
            };
            store.apply(&r, leader, i, 0);
        }
        let mut after: Option<Vec<u8>> = None;
        let mut position = 0;
        loop {
            let chunk = store.chunk_after(after.as_deref(), 16, usize::MAX);
            if chunk.is_empty() {
                break;
            }
            let decoded: Vec<StoredRegion> = chunk
                .iter()
                .map(|r| store.get(Region::decode(r.region).unwrap().id).unwrap())
                .collect();
            let Frame::Encoded(bytes) = snapshot_encoded(7, position, &chunk) else {
                panic!("a snapshot frame is encoded");
            };
            let expected = snapshot(7, position, decoded);
            assert_eq!(bytes, expected.encode_to_vec(), "position {position}");
            position += chunk.len() as u64;
            after = chunk.last().map(|r| r.start_key.to_vec());
        }
        assert_eq!(position, n);
        let empty = snapshot_encoded(7, 0, &[]);
        assert_eq!(empty.encoded_len(), snapshot(7, 0, vec![]).encoded_len());
        assert_eq!(empty.into_message().unwrap(), snapshot(7, 0, vec![]));
    }

    /// A history frame written from encoded records is byte for byte the
    /// frame prost writes for the records decoded: with and without flow,
    /// down and pending peers, a known and an unknown leader, at index 0 and
    /// later.
    #[test]
    fn an_encoded_history_frame_is_the_one_prost_writes() {
        use crate::history::Record;
        use regionsync_proto::pdpb::PeerStats;
        let records: Vec<Record> = (0..20)
            .map(|i| {
                let r = region(i, 20, 1 + i % 3);
                let leader = if i % 4 == 0 {
                    Default::default()
                } else {
                    r.peers[1]
                };
                let mut rec = Record::bare(r, leader);
                if i % 2 == 0 {
                    rec.stats.bytes_written = i * 1_000;
                    rec.stats.keys_read = i;
                }
                if i % 3 == 0 {
                    rec.down_peers = vec![PeerStats {
                        peer: Some(rec.region.peers[2]),
                        down_seconds: i,
                    }];
                    rec.pending_peers = vec![rec.region.peers[0]];
                }
                rec
            })
            .collect();
        let ring: Vec<RingRecord> = records.iter().map(RingRecord::of).collect();
        for (start, take) in [(0, 20), (17, 5), (1 << 40, 1), (3, 0)] {
            let Frame::Encoded(bytes) = records_encoded(7, start, &ring[..take]) else {
                panic!("a history frame is encoded");
            };
            let expected = super::records(7, start, &records[..take]).encode_to_vec();
            assert_eq!(bytes, expected, "from {start}, {take} records");
        }
    }
}
