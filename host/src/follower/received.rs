//! A sync frame as the follower receives it: its regions kept as their
//! encodings, the rest decoded, with its size on the wire.
//!
//! Why the regions stay encoded: a full sync's regions are stored in the
//! encoding they arrive in (`region_store::RegionView`), and decoding a
//! million of them into structs only to encode them again was most of the
//! follower's CPU in a full sync (BENCHMARKS.md). Each is still checked to
//! decode when the frame is, so a frame with a broken region is refused
//! whole, before anything of it is applied, as prost's decoder refused it.
//!
//! Why the size: the follower counts the bytes it receives, and the decoder
//! knows them for free. So SyncRegions is called with a codec of its own:
//! the generated client's, but for the decoding.

use std::ops::Range;

use bytes::{Buf, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, decode_key, encoded_len_varint};
use regionsync_proto::metapb::Region;
use regionsync_proto::pdpb::{SyncRegionRequest, SyncRegionResponse};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, Streaming};
use tonic::transport::Channel;
use tonic_prost::ProstEncoder;

use crate::region_store::{Incoming, Layout, RegionView};
use crate::wire::MAX_MESSAGE_BYTES;

/// One received frame.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The frame but for its regions: `regions` is always empty here.
    pub rest: SyncRegionResponse,
    /// The frame's regions, as their encodings.
    pub regions: ReceivedRegions,
    /// The frame's size on the wire; `None` for a frame built in memory
    /// rather than received.
    pub wire_len: Option<usize>,
}

/// A frame's regions, as their encodings, each read once, when received.
#[derive(Debug, Clone, Default)]
pub struct ReceivedRegions {
    bytes: Bytes,
    spans: Vec<(Range<usize>, Read)>,
}

/// How a region was read when received.
#[derive(Debug, Clone)]
enum Read {
    /// Its encoding is prost's own: where its fields lie.
    Layout(Layout),
    /// Another encoder's bytes: decoded (and to be encoded again).
    Decoded(Region),
}

impl Read {
    /// Read `bytes`, a region's encoding.
    fn of(bytes: &[u8]) -> Result<Read, prost::DecodeError> {
        match RegionView::parse(bytes) {
            Some(view) => Ok(Read::Layout(view.layout)),
            None => Region::decode(bytes).map(Read::Decoded),
        }
    }
}

impl ReceivedRegions {
    /// How many.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Region `i`: read from its encoding when that is prost's own,
    /// decoded otherwise.
    pub fn get(&self, i: usize) -> Incoming<'_> {
        let (span, read) = &self.spans[i];
        match read {
            Read::Layout(layout) => Incoming::Encoded(RegionView {
                bytes: &self.bytes[span.clone()],
                layout: layout.clone(),
            }),
            Read::Decoded(region) => Incoming::Decoded(region.clone()),
        }
    }

    /// Bytes these regions take in their frame.
    fn wire_bytes(&self) -> usize {
        self.spans
            .iter()
            .map(|(s, _)| 1 + encoded_len_varint(s.len() as u64) + s.len())
            .sum()
    }
}

impl Received {
    /// The frame's size on the wire (computed when it was not received).
    pub fn wire_bytes(&self) -> usize {
        self.wire_len
            .unwrap_or_else(|| self.rest.encoded_len() + self.regions.wire_bytes())
    }

    /// Decode a frame's encoding: every field but the regions as prost
    /// does; each region is read (decoded, if its encoding is not prost's
    /// own), and kept as its bytes.
    pub fn decode(mut buf: impl Buf) -> Result<Received, prost::DecodeError> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        let wire_len = Some(bytes.len());
        let mut rest = SyncRegionResponse::default();
        let mut spans = Vec::new();
        let mut cursor = bytes.clone();
        while cursor.has_remaining() {
            let (tag, wire_type) = decode_key(&mut cursor)?;
            if tag != 2 {
                rest.merge_field(tag, wire_type, &mut cursor, DecodeContext::default())?;
                continue;
            }
            // A slice of the frame, not a copy (`Bytes` from `Bytes`).
            let mut region = Bytes::new();
            prost::encoding::bytes::merge(
                wire_type,
                &mut region,
                &mut cursor,
                DecodeContext::default(),
            )?;
            let read = Read::of(&region)?;
            let end = bytes.len() - cursor.remaining();
            spans.push((end - region.len()..end, read));
        }
        Ok(Received {
            rest,
            regions: ReceivedRegions { bytes, spans },
            wire_len,
        })
    }
}

impl From<SyncRegionResponse> for Received {
    /// A frame made in memory: its regions encoded as they would travel.
    fn from(mut rest: SyncRegionResponse) -> Self {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for region in std::mem::take(&mut rest.regions) {
            let start = buf.len();
            region.encode(&mut buf).expect("a Vec grows");
            let read = Read::of(&buf[start..]).expect("prost's encoding decodes");
            spans.push((start..buf.len(), read));
        }
        Received {
            rest,
            regions: ReceivedRegions {
                bytes: buf.into(),
                spans,
            },
            wire_len: None,
        }
    }
}

/// Requests encoded by prost; frames decoded into [`Received`].
#[derive(Debug, Clone, Copy, Default)]
struct ReceivedCodec;

impl Codec for ReceivedCodec {
    type Encode = SyncRegionRequest;
    type Decode = Received;
    type Encoder = ProstEncoder<SyncRegionRequest>;
    type Decoder = ReceivedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> ReceivedDecoder {
        ReceivedDecoder
    }
}

/// Decodes a [`Received`] frame.
struct ReceivedDecoder;

impl Decoder for ReceivedDecoder {
    type Item = Received;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Received>, Status> {
        Received::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("a sync frame does not decode: {e}")))
    }
}

/// `PD/SyncRegions` on `channel`, as the generated client calls it (same
/// path, same limits), with frames decoded into [`Received`].
pub(super) async fn sync_regions(
    channel: Channel,
    request: tonic::Request<impl tokio_stream::Stream<Item = SyncRegionRequest> + Send + 'static>,
) -> Result<tonic::Response<Streaming<Received>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/pdpb.PD/SyncRegions");
    grpc.streaming(request, path, ReceivedCodec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use regionsync_proto::metapb::{Peer, Region};

    fn region(id: u64) -> Region {
        let key = |i: u64| format!("k{i:04}");
        crate::region_store::tests::region(id, &key(id), &key(id + 1), id, 2)
    }

    #[test]
    fn a_received_frame_knows_its_size_on_the_wire() {
        let frame = SyncRegionResponse {
            regions: (1..=3).map(region).collect(),
            region_leaders: vec![Peer::default(); 3],
            start_index: 7,
            regionsync_digest: vec![1; 16],
            ..Default::default()
        };
        let bytes = frame.encode_to_vec();
        let got = Received::decode(&bytes[..]).unwrap();
        let regions: Vec<Region> = (0..got.regions.len())
            .map(|i| got.regions.get(i).into_region())
            .collect();
        assert_eq!(regions, frame.regions);
        assert!(matches!(got.regions.get(0), Incoming::Encoded(_)));
        let rest = SyncRegionResponse {
            regions: Vec::new(),
            ..frame.clone()
        };
        assert_eq!(got.rest, rest);
        assert_eq!(
            (got.wire_len, got.wire_bytes()),
            (Some(bytes.len()), bytes.len())
        );
        // A frame made in memory measures itself.
        let made = Received::from(frame);
        assert_eq!((made.wire_len, made.wire_bytes()), (None, bytes.len()));
    }

    #[test]
    fn a_frame_that_does_not_decode_is_an_error_not_a_guess() {
        let mut bytes = SyncRegionResponse {
            regions: vec![region(1)],
            ..Default::default()
        }
        .encode_to_vec();
        bytes.truncate(bytes.len() - 3);
        assert!(Received::decode(&bytes[..]).is_err());
    }

    /// A region that does not decode, in a frame whose framing is whole:
    /// the frame is refused, as prost refuses it, not passed on with a
    /// region to skip or to trip over later.
    #[test]
    fn a_frame_with_a_broken_region_is_refused_whole() {
        let mut bytes = SyncRegionResponse {
            regions: vec![region(1), region(2)],
            start_index: 3,
            ..Default::default()
        }
        .encode_to_vec();
        // The second region's first field key becomes wire type 7 (none).
        let second = 2 + region(1).encoded_len() + 2;
        assert_eq!(bytes[second], 0x08, "the second region starts with its id");
        bytes[second] = 0x0f;
        assert!(SyncRegionResponse::decode(&bytes[..]).is_err());
        assert!(Received::decode(&bytes[..]).is_err());
        // Prost's encoding in another field order still decodes, and is
        // then read decoded rather than as it came.
        let r = region(4);
        let mut reordered = Vec::new();
        prost::encoding::bytes::encode(3, &r.end_key, &mut reordered);
        prost::encoding::uint64::encode(1, &r.id, &mut reordered);
        prost::encoding::bytes::encode(2, &r.start_key, &mut reordered);
        let mut frame = Vec::new();
        prost::encoding::bytes::encode(2, &reordered, &mut frame);
        let got = Received::decode(&frame[..]).unwrap();
        let Incoming::Decoded(decoded) = got.regions.get(0) else {
            panic!("another encoder's field order is not read as it came");
        };
        assert_eq!((decoded.id, decoded.end_key), (4, r.end_key));
    }
}
