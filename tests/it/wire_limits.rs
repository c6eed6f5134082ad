//! The wire's limits over real gRPC: a message over the size limit is
//! refused by the limit (and the sender told), and protobuf fields this
//! version does not know are skipped, as a newer peer may send them.

use std::time::Duration;

use regionsync_harness::cluster::{leader_config, start_leader};
use regionsync_harness::load;
use regionsync_proto::metapb::Region;
use regionsync_proto::pdpb::{self, RegionHeartbeatRequest, RequestHeader, SyncRegionResponse};

const CLUSTER: u64 = 7;

#[test]
fn oversized_messages_are_refused_by_their_limit_and_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ldir = tempfile::tempdir().unwrap();
        let leader = start_leader(leader_config(ldir.path())).await;
        let before = leader.shared().held(None).digest.hex();
        let mut client = load::connect(&leader.url()).await.unwrap();
        let huge = RegionHeartbeatRequest {
            header: Some(RequestHeader {
                cluster_id: CLUSTER,
                ..Default::default()
            }),
            region: Some(Region {
                id: 1,
                start_key: vec![b'k'; regionsync::wire::MAX_MESSAGE_BYTES + 1],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = load::send(&mut client, vec![huge], 0).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("message length too large") || text.contains("exceeds"),
            "{text}"
        );
        assert_eq!(leader.shared().held(None).digest.hex(), before);
        // The leader still serves.
        let mut c = load::connect(&leader.url()).await.unwrap();
        c.get_members(pdpb::GetMembersRequest::default())
            .await
            .unwrap();
        leader.shutdown().await;
    });
}

/// `RegionHeartbeatRequest` and `SyncRegionRequest` as a newer peer might
/// send them: the known fields plus one this version does not know.
mod newer {
    use regionsync_proto::pdpb::{Member, RequestHeader};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Heartbeat {
        #[prost(message, optional, tag = "1")]
        pub header: Option<RequestHeader>,
        #[prost(message, optional, tag = "2")]
        pub region: Option<regionsync_proto::metapb::Region>,
        #[prost(message, optional, tag = "3")]
        pub leader: Option<regionsync_proto::metapb::Peer>,
        #[prost(bytes = "vec", tag = "4242")]
        pub future: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SyncRequest {
        #[prost(message, optional, tag = "1")]
        pub header: Option<RequestHeader>,
        #[prost(message, optional, tag = "2")]
        pub member: Option<Member>,
        #[prost(uint64, tag = "3")]
        pub start_index: u64,
        #[prost(string, tag = "999")]
        pub future: String,
    }
}

#[test]
fn unknown_fields_are_tolerated_over_the_wire() {
    use tonic::codegen::http::uri::PathAndQuery;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ldir = tempfile::tempdir().unwrap();
        let leader = start_leader(leader_config(ldir.path())).await;
        let channel = tonic::transport::Endpoint::from_shared(leader.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        let header = Some(RequestHeader {
            cluster_id: CLUSTER,
            ..Default::default()
        });
        let region = regionsync_harness::cluster::region(1, b"", b"", 1);
        let hb = newer::Heartbeat {
            header: header.clone(),
            leader: region.peers.first().copied(),
            region: Some(region),
            future: vec![0xAB; 64],
        };
        grpc.ready().await.unwrap();
        let codec =
            tonic_prost::ProstCodec::<newer::Heartbeat, pdpb::RegionHeartbeatResponse>::default();
        let responses = grpc
            .streaming(
                tonic::Request::new(tokio_stream::iter(vec![hb])),
                PathAndQuery::from_static("/pdpb.PD/RegionHeartbeat"),
                codec,
            )
            .await
            .unwrap();
        let mut responses = responses.into_inner();
        while let Some(r) = responses.message().await.unwrap() {
            assert!(r.header.and_then(|h| h.error).is_none(), "refused");
        }
        let shared = leader.shared().clone();
        // Published, not only applied: a PD snapshot sends what changed
        // before its pin, and the ring's records the rest.
        regionsync_harness::eventually::eventually(
            "the heartbeat to be published",
            Duration::from_secs(10),
            || shared.heartbeats_taken() == 1,
        )
        .await;

        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<newer::SyncRequest, SyncRegionResponse>::default();
        let request = newer::SyncRequest {
            header,
            member: Some(pdpb::Member {
                name: "newer".into(),
                ..Default::default()
            }),
            start_index: 0,
            future: "a field from the future".into(),
        };
        let mut frames = grpc
            .streaming(
                tonic::Request::new(tokio_stream::iter(vec![request])),
                PathAndQuery::from_static("/pdpb.PD/SyncRegions"),
                codec,
            )
            .await
            .unwrap()
            .into_inner();
        let first = frames.message().await.unwrap().unwrap();
        assert_eq!(first.regions.len(), 1, "the snapshot came");
        drop(frames);
        leader.shutdown().await;
    });
}
