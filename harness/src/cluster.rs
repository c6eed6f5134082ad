//! Real nodes in this process on loopback, with real gRPC and real redb:
//! regions and heartbeats to feed them, starting a leader and followers,
//! opening a raw sync stream, and waiting for a follower to catch up. The
//! integration tests and `regionsync bench`'s in-process scenarios both
//! start their clusters here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};
use regionsync::role::{RunningFollower, RunningLeader};
use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{
    Member, RegionHeartbeatRequest, RequestHeader, SyncRegionRequest, SyncRegionResponse,
};
use tonic::transport::Channel;

use crate::eventually::{eventually, poll_until};

/// The cluster id of every cluster started here.
pub const CLUSTER: u64 = 7;

/// Region `i` of `n` as TiKV would report it (realistic keys, peers and
/// size): the regions the benchmarks feed.
pub use regionsync::region_store::sample::region as sample_region;

/// The embedded default policy component.
pub fn policy() -> Arc<PolicyRuntime> {
    Arc::new(PolicyRuntime::with_default().expect("the built-in policy loads"))
}

/// The embedded default component, or the same policy linked natively.
pub fn policy_source(native: bool) -> PolicySource {
    if native {
        PolicySource::Native("default")
    } else {
        PolicySource::Builtin("default")
    }
}

/// A policy runtime on [`policy_source`].
pub fn policy_for(native: bool) -> anyhow::Result<Arc<PolicyRuntime>> {
    Ok(Arc::new(PolicyRuntime::new(
        WasmRuntime::new(Default::default())?,
        policy_source(native),
    )?))
}

/// A leader's configuration with its store in `dir`, in [`CLUSTER`].
pub fn leader_config(dir: &Path) -> LeaderConfig {
    let mut c = LeaderConfig::new(dir);
    c.cluster_id = Some(CLUSTER);
    c
}

/// Start a leader on a fresh loopback port with the default policy.
pub async fn start_leader(config: LeaderConfig) -> RunningLeader {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningLeader::start(config, policy(), listener)
        .await
        .unwrap()
}

/// A leader with its store in `dir`, on the Wasm or the native policy.
pub async fn leader(dir: &Path, native: bool) -> anyhow::Result<RunningLeader> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(RunningLeader::start(leader_config(dir), policy_for(native)?, listener).await?)
}

/// A follower's configuration for `leader`, durable in `dir` (in memory
/// without one), named `f1`.
pub fn follower_config(leader: &RunningLeader, dir: Option<&Path>) -> FollowerConfig {
    let mut c = FollowerConfig::new(leader.url(), dir.map(Path::to_path_buf));
    c.name = "f1".into();
    c.keepalive = Duration::from_secs(2);
    c
}

/// Start a follower on a fresh loopback port with the default policy.
pub async fn start_follower(config: FollowerConfig) -> RunningFollower {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningFollower::start(config, policy(), listener)
        .await
        .unwrap()
}

/// A follower of `leader` named `name`, durable in `dir` (in memory without
/// one), on the Wasm or the native policy.
pub async fn follower(
    leader: &RunningLeader,
    dir: Option<&Path>,
    name: &str,
    native: bool,
) -> anyhow::Result<RunningFollower> {
    follower_with(leader, dir, name, policy_for(native)?).await
}

/// [`follower`] with a policy loaded already.
pub async fn follower_with(
    leader: &RunningLeader,
    dir: Option<&Path>,
    name: &str,
    policy: Arc<PolicyRuntime>,
) -> anyhow::Result<RunningFollower> {
    let mut config = FollowerConfig::new(leader.url(), dir.map(Path::to_path_buf));
    config.name = name.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(RunningFollower::start(config, policy, listener).await?)
}

/// A PD client of `url` that takes messages as large as a node sends.
pub async fn client(url: &str) -> PdClient<Channel> {
    PdClient::connect(url.to_string())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
}

/// A request header for `cluster_id`.
pub fn header(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader {
        cluster_id,
        ..Default::default()
    })
}

/// Region `id` over [start, end) with three peers; the leader is the first.
pub fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
    Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: (1..=3)
            .map(|s| Peer {
                id: id * 10 + s,
                store_id: s,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `n` adjacent regions, ids from `first_id`, keys padded to `key_len`.
pub fn regions(first_id: u64, n: u64, key_len: usize) -> Vec<Region> {
    let key = |i: u64| {
        let mut k = format!("k{i:010}").into_bytes();
        k.resize(key_len.max(k.len()), b'.');
        k
    };
    (0..n)
        .map(|i| {
            let end = if i + 1 == n { Vec::new() } else { key(i + 1) };
            region(first_id + i, &key(i), &end, 1)
        })
        .collect()
}

/// The same regions with another epoch version (an update of each).
pub fn bumped(regions: &[Region], version: u64) -> Vec<Region> {
    regions
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.region_epoch.as_mut().unwrap().version = version;
            r
        })
        .collect()
}

/// A bare heartbeat for `r` in `cluster_id`.
pub fn heartbeat(cluster_id: u64, r: &Region) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        header: header(cluster_id),
        region: Some(r.clone()),
        leader: r.peers.first().copied(),
        ..Default::default()
    }
}

/// A heartbeat for `region` in [`CLUSTER`], with the stats a TiKV store
/// reports (the size a real heartbeat has on the wire).
pub fn busy_heartbeat(region: Region, tick: u64) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        header: header(CLUSTER),
        leader: region.peers.first().cloned(),
        bytes_written: 4_096 + tick % 65_536,
        keys_written: 16 + tick % 512,
        approximate_size: 96 << 20,
        approximate_keys: 960_000,
        region: Some(region),
        ..Default::default()
    }
}

/// Send `heartbeats` on one stream and wait until the leader has taken
/// them all (accepted, durable and published).
pub async fn feed_heartbeats(
    leader: &RunningLeader,
    heartbeats: Vec<RegionHeartbeatRequest>,
) -> anyhow::Result<()> {
    let shared = leader.shared().clone();
    let target = shared.heartbeats_taken() + heartbeats.len() as u64;
    let mut client = PdClient::connect(leader.url()).await?;
    let responses = client
        .region_heartbeat(tokio_stream::iter(heartbeats))
        .await?;
    poll_until(Duration::from_secs(300), Duration::from_millis(1), || {
        std::future::ready((shared.heartbeats_taken() >= target).then_some(()))
    })
    .await
    .with_context(|| {
        format!(
            "the leader took {} of the heartbeats in 300 s",
            target - shared.heartbeats_taken()
        )
    })?;
    drop(responses);
    Ok(())
}

/// [`feed_heartbeats`] of bare heartbeats for `regions`.
pub async fn feed(leader: &RunningLeader, regions: &[Region]) {
    let cluster_id = leader.shared().cluster_id();
    let reqs = regions.iter().map(|r| heartbeat(cluster_id, r)).collect();
    feed_heartbeats(leader, reqs)
        .await
        .expect("the leader takes every heartbeat");
}

/// Heartbeats for `n` sample regions at `version`, in chunks of a size one
/// `RegionHeartbeat` stream carries well.
pub fn heartbeat_chunks(n: u64, version: u64) -> impl Iterator<Item = Vec<RegionHeartbeatRequest>> {
    const CHUNK: u64 = 200_000;
    (0..n).step_by(CHUNK as usize).map(move |from| {
        (from..(from + CHUNK).min(n))
            .map(|i| busy_heartbeat(sample_region(i, n, version), i))
            .collect()
    })
}

/// `n` sample regions, fed to `leader` at version `version`.
pub async fn populate(leader: &RunningLeader, n: u64, version: u64) -> anyhow::Result<()> {
    for hbs in heartbeat_chunks(n, version) {
        feed_heartbeats(leader, hbs).await?;
    }
    Ok(())
}

/// Open a SyncRegions stream asking for `start_index`.
pub async fn sync(
    url: &str,
    cluster_id: u64,
    start_index: u64,
    name: &str,
) -> Result<tonic::Streaming<SyncRegionResponse>, tonic::Status> {
    let mut c = client(url).await;
    let req = SyncRegionRequest {
        header: header(cluster_id),
        member: Some(Member {
            name: name.into(),
            ..Default::default()
        }),
        start_index,
    };
    c.sync_regions(tokio_stream::iter(vec![req]))
        .await
        .map(|r| r.into_inner())
}

/// The next frame, within a bound.
pub async fn next_frame(
    s: &mut tonic::Streaming<SyncRegionResponse>,
) -> Result<Option<SyncRegionResponse>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a frame within 20 s")
}

/// The raw full sync: the leader streams a snapshot to a reader that only
/// decodes. Returns the regions read.
pub async fn raw_full_sync(leader: &RunningLeader) -> anyhow::Result<u64> {
    let mut client = PdClient::connect(leader.url())
        .await?
        .max_decoding_message_size(16 << 20);
    let req = SyncRegionRequest {
        header: header(leader.shared().cluster_id()),
        member: Some(Member {
            name: "raw-reader".into(),
            ..Default::default()
        }),
        start_index: 0,
    };
    let mut frames = client
        .sync_regions(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let mut got = 0u64;
    loop {
        let f = frames.message().await?.context("the stream ended early")?;
        if f.regions.is_empty() && got > 0 {
            return Ok(got);
        }
        got += f.regions.len() as u64;
    }
}

/// Until `follower` is ready at the leader's index (at most `limit`),
/// looked at every 200 µs (the resume benchmark times it).
pub async fn caught_up(
    leader: &RunningLeader,
    follower: &RunningFollower,
    limit: Duration,
) -> anyhow::Result<()> {
    let want = leader.shared().held(None).next_index;
    let f = follower.shared().clone();
    let at = poll_until(limit, Duration::from_micros(200), || {
        let state = f.state();
        std::future::ready((state.ready && state.next_index >= want).then_some(()))
    })
    .await;
    at.with_context(|| {
        format!(
            "the follower did not catch up within {limit:?} (at {}, leader at {want})",
            f.state().next_index
        )
    })
}

/// Wait until the follower is ready with the leader's region set.
pub async fn converged(leader: &RunningLeader, follower: &RunningFollower) {
    let f = follower.shared().clone();
    eventually(
        "the follower to converge on the leader's digest",
        Duration::from_secs(30),
        || {
            let lead = leader.shared().held(None);
            let held = f.held(None);
            held.ready && held.digest == lead.digest && held.next_index == lead.next_index
        },
    )
    .await;
}

/// A leader with `n` regions and a durable follower that has synced them
/// (the set-up most follower tests start from).
pub async fn leader_and_synced_follower(
    ldir: &Path,
    fdir: &Path,
    n: u64,
) -> (RunningLeader, Vec<Region>, RunningFollower) {
    let leader = start_leader(leader_config(ldir)).await;
    let rs = regions(1, n, 8);
    feed(&leader, &rs).await;
    let f = start_follower(follower_config(&leader, Some(fdir))).await;
    converged(&leader, &f).await;
    (leader, rs, f)
}

/// Digests of leader and follower are equal.
pub fn same_digest(leader: &RunningLeader, follower: &RunningFollower) -> bool {
    leader.shared().status().digest == follower.shared().status().digest
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
