//! Follower figures for the follower issue, over real gRPC on loopback with
//! real redb stores on both sides:
//!   - full sync of N regions (default 1,000,000) leader -> follower, durable
//!     in redb at completion, end to end; and in the same run the raw figure
//!     (the leader streaming to a reader that only decodes) for the ratio;
//!   - resume of a follower 5,000 records behind: bytes on the wire and time
//!     from connect to caught up, and that no snapshot was sent.
//!
//!     cargo run --release -p regionsync --example bench_follower [-- REGIONS]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::node::{RunningFollower, RunningLeader};
use regionsync_proto::metapb::Region;

use common::{policy, region};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{Member, RegionHeartbeatRequest, RequestHeader, SyncRegionRequest};

fn header() -> Option<RequestHeader> {
    Some(RequestHeader {
        cluster_id: 1,
        ..Default::default()
    })
}

async fn feed(leader: &RunningLeader, regions: impl Iterator<Item = Region>) {
    let reqs: Vec<RegionHeartbeatRequest> = regions
        .map(|r| RegionHeartbeatRequest {
            header: header(),
            leader: r.peers.first().copied(),
            region: Some(r),
            ..Default::default()
        })
        .collect();
    let target = leader.shared().stats.heartbeats.load(Ordering::Relaxed) + reqs.len() as u64;
    let mut client = PdClient::connect(leader.url()).await.unwrap();
    let responses = client
        .region_heartbeat(tokio_stream::iter(reqs))
        .await
        .unwrap();
    while leader.shared().stats.heartbeats.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(responses);
}

async fn caught_up(leader: &RunningLeader, follower: &RunningFollower) {
    let want = leader.shared().ring.read().next_index();
    loop {
        let s = follower.shared().status();
        if s.ready && s.next_index == want {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("regionsync=debug")
            .init();
    }
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = LeaderConfig::new(ldir.path());
    config.cluster_id = Some(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader = RunningLeader::start(config, policy(), listener)
        .await
        .unwrap();
    let t = Instant::now();
    feed(&leader, (0..n).map(|i| region(i, n, 20))).await;
    println!("loaded {n} regions into the leader in {:.2?}", t.elapsed());

    // Raw: the leader streaming to a reader that only decodes.
    let mut client = PdClient::connect(leader.url())
        .await
        .unwrap()
        .max_decoding_message_size(16 << 20);
    let t = Instant::now();
    let req = SyncRegionRequest {
        header: header(),
        member: Some(Member {
            name: "raw-reader".into(),
            ..Default::default()
        }),
        start_index: 0,
    };
    let mut frames = client
        .sync_regions(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0u64;
    loop {
        let f = frames.message().await.unwrap().unwrap();
        if f.regions.is_empty() && got > 0 {
            break;
        }
        got += f.regions.len() as u64;
    }
    let raw = t.elapsed();
    drop((frames, client));
    println!("raw: {got} regions streamed to a decoding reader in {raw:.2?}");

    // Full sync into a durable follower.
    let fconfig = || {
        let mut c = FollowerConfig::new(leader.url(), Some(fdir.path().to_path_buf()));
        c.name = "bench-follower".into();
        c
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = Instant::now();
    let follower = RunningFollower::start(fconfig(), policy(), listener)
        .await
        .unwrap();
    caught_up(&leader, &follower).await;
    let full = t.elapsed();
    let status = follower.shared().status();
    assert_eq!(status.digest, leader.shared().status().digest);
    println!(
        "full sync: {} regions leader -> follower, durable in redb at completion, in {full:.2?} \
         ({:.2}x the raw stream); digests equal",
        status.regions,
        full.as_secs_f64() / raw.as_secs_f64()
    );
    follower.shutdown().await;

    // Resume 5,000 records behind.
    feed(&leader, (0..5_000).map(|i| region(i * (n / 5_000), n, 21))).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = Instant::now();
    let follower = RunningFollower::start(fconfig(), policy(), listener)
        .await
        .unwrap();
    let loaded = t.elapsed();
    let t = Instant::now();
    caught_up(&leader, &follower).await;
    let resume = t.elapsed();
    let status = follower.shared().status();
    assert_eq!(status.digest, leader.shared().status().digest);
    println!(
        "resume 5000 records behind: {} bytes on the wire in {} frames, {resume:.2?} from connect to caught up \
         (store load before it: {loaded:.2?}); full syncs: {:?}",
        follower.shared().stats.bytes.load(Ordering::Relaxed),
        follower.shared().stats.frames.load(Ordering::Relaxed),
        status.full_syncs
    );
    follower.shutdown().await;
    leader.shutdown().await;
}
