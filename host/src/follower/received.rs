//! A sync frame as the follower receives it: decoded, with its size on the
//! wire.
//!
//! Why: the follower counts the bytes it receives, and measuring a decoded
//! frame again walks every region in it, which was a sixteenth of the
//! follower's apply in a full sync (callgrind, BENCHMARKS.md). The decoder
//! knows the size for free, so SyncRegions is called with a codec of its
//! own: the generated client's, but for the size it keeps.

use bytes::Buf;
use prost::Message;
use regionsync_proto::pdpb::{SyncRegionRequest, SyncRegionResponse};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, Streaming};
use tonic::transport::Channel;
use tonic_prost::ProstEncoder;

use crate::wire::MAX_MESSAGE_BYTES;

/// One received frame.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The frame, decoded.
    pub frame: SyncRegionResponse,
    /// The frame's size on the wire; `None` for a frame built in memory
    /// rather than received.
    pub wire_len: Option<usize>,
}

impl Received {
    /// The frame's size on the wire (computed when it was not received).
    pub fn wire_bytes(&self) -> usize {
        self.wire_len.unwrap_or_else(|| self.frame.encoded_len())
    }

    /// Decode a frame's encoding.
    pub fn decode(mut bytes: impl Buf) -> Result<Received, prost::DecodeError> {
        let wire_len = Some(bytes.remaining());
        let frame = SyncRegionResponse::decode(&mut bytes)?;
        Ok(Received { frame, wire_len })
    }
}

impl From<SyncRegionResponse> for Received {
    fn from(frame: SyncRegionResponse) -> Self {
        Received {
            frame,
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
        assert_eq!(got.frame, frame);
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
}
