//! The `pdpb.PD/SyncRegions` method on a route of its own, so that a frame
//! already encoded (a snapshot frame, `leader::frames::snapshot_encoded`)
//! goes to the wire as it is.
//!
//! Why not the generated route: its codec takes `SyncRegionResponse`
//! structs, and a snapshot of a million regions would have to be decoded
//! from the store's encodings only for tonic to encode it again, about
//! 0.66 s of the leader's CPU per million regions (BENCHMARKS.md). This
//! route is the generated one with a codec that also takes bytes: the same
//! path, message limits and (no) compression; every other method goes to
//! the generated server untouched.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::BufMut;
use futures::future::BoxFuture;
use regionsync_proto::pdpb::SyncRegionRequest;
use regionsync_proto::pdpb::pd_server::PdServer;
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body as HttpBody, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::{FrameStream, PdService};
use crate::wire::{Frame, MAX_MESSAGE_BYTES};

/// The method this route serves.
const PATH: &str = "/pdpb.PD/SyncRegions";

/// The PD service with SyncRegions served from [`Frame`]s.
#[derive(Clone)]
pub struct SyncRoute {
    service: PdService,
    generated: PdServer<PdService>,
}

impl SyncRoute {
    /// Route SyncRegions to `service`, everything else to `generated`.
    pub fn new(service: PdService, generated: PdServer<PdService>) -> Self {
        SyncRoute { service, generated }
    }
}

impl NamedService for SyncRoute {
    const NAME: &'static str = <PdServer<PdService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for SyncRoute
where
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != PATH {
            return self.generated.call(request);
        }
        let method = SyncMethod(self.service.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(FrameCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), Some(MAX_MESSAGE_BYTES));
            Ok(grpc.streaming(method, request).await)
        })
    }
}

/// The method, as tonic's streaming server calls it.
struct SyncMethod(PdService);

impl StreamingService<SyncRegionRequest> for SyncMethod {
    type Response = Frame;
    type ResponseStream = FrameStream;
    type Future = BoxFuture<'static, Result<Response<FrameStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<SyncRegionRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.sync_stream(request).await })
    }
}

/// Requests decoded by prost; frames encoded by prost, or copied when they
/// come encoded.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = SyncRegionRequest;
    type Encoder = FrameEncoder;
    type Decoder = ProstDecoder<SyncRegionRequest>;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder(ProstEncoder::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a [`Frame`].
struct FrameEncoder(ProstEncoder<regionsync_proto::pdpb::SyncRegionResponse>);

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, frame: Frame, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match frame {
            Frame::Message(m) => self.0.encode(*m, dst),
            Frame::Encoded(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
        }
    }
}
