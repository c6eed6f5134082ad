//! What the in-process scenarios share: realistic regions and heartbeats,
//! nodes on loopback, feeding a leader and waiting for a follower.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use regionsync_proto::metapb::Region;
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{Member, RegionHeartbeatRequest, RequestHeader, SyncRegionRequest};

use crate::follower::FollowerConfig;
use crate::leader::LeaderConfig;
use crate::node::{RunningFollower, RunningLeader};
use crate::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};

/// The cluster id of every bench cluster.
pub const CLUSTER: u64 = 1;

pub use crate::region_store::sample::region;

/// A heartbeat for `region`, with the stats a TiKV store reports.
pub fn heartbeat(region: Region, tick: u64) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        header: Some(RequestHeader {
            cluster_id: CLUSTER,
            ..Default::default()
        }),
        leader: region.peers.first().cloned(),
        bytes_written: 4_096 + tick % 65_536,
        keys_written: 16 + tick % 512,
        approximate_size: 96 << 20,
        approximate_keys: 960_000,
        region: Some(region),
        ..Default::default()
    }
}

/// The policy runtime the nodes run on: the embedded default component, or
/// the same policy linked natively.
pub fn policy(native: bool) -> anyhow::Result<Arc<PolicyRuntime>> {
    Ok(Arc::new(PolicyRuntime::new(
        WasmRuntime::new(Default::default())?,
        policy_source(native),
    )?))
}

/// The embedded default component, or the same policy linked natively.
pub fn policy_source(native: bool) -> PolicySource {
    if native {
        PolicySource::Native("default")
    } else {
        PolicySource::Builtin("default")
    }
}

async fn listener() -> anyhow::Result<tokio::net::TcpListener> {
    Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
}

/// A leader with its store in `dir`.
pub async fn leader(dir: &Path, native: bool) -> anyhow::Result<RunningLeader> {
    let mut config = LeaderConfig::new(dir);
    config.cluster_id = Some(CLUSTER);
    Ok(RunningLeader::start(config, policy(native)?, listener().await?).await?)
}

/// A follower of `leader`, durable in `dir` (in memory without one).
pub async fn follower(
    leader: &RunningLeader,
    dir: Option<&Path>,
    name: &str,
    native: bool,
) -> anyhow::Result<RunningFollower> {
    follower_with(leader, dir, name, policy(native)?).await
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
    Ok(RunningFollower::start(config, policy, listener().await?).await?)
}

/// Send `heartbeats` on one stream and wait until the leader has published
/// them all.
pub async fn feed(
    leader: &RunningLeader,
    heartbeats: Vec<RegionHeartbeatRequest>,
) -> anyhow::Result<()> {
    let stats = &leader.shared().stats;
    let target = stats.heartbeats.load(Ordering::Relaxed) + heartbeats.len() as u64;
    let mut client = PdClient::connect(leader.url()).await?;
    let responses = client
        .region_heartbeat(tokio_stream::iter(heartbeats))
        .await?;
    while stats.heartbeats.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(responses);
    Ok(())
}

/// Heartbeats for `n` regions at `version`, in chunks of a size one
/// `RegionHeartbeat` stream carries well.
pub fn heartbeat_chunks(n: u64, version: u64) -> impl Iterator<Item = Vec<RegionHeartbeatRequest>> {
    const CHUNK: u64 = 200_000;
    (0..n).step_by(CHUNK as usize).map(move |from| {
        (from..(from + CHUNK).min(n))
            .map(|i| heartbeat(region(i, n, version), i))
            .collect()
    })
}

/// `n` regions, fed to `leader` at version `version`.
pub async fn populate(leader: &RunningLeader, n: u64, version: u64) -> anyhow::Result<()> {
    for hbs in heartbeat_chunks(n, version) {
        feed(leader, hbs).await?;
    }
    Ok(())
}

/// Until `follower` is ready at the leader's index (at most `limit`).
pub async fn caught_up(
    leader: &RunningLeader,
    follower: &RunningFollower,
    limit: Duration,
) -> anyhow::Result<()> {
    let want = leader.shared().ring.read().next_index();
    let deadline = Instant::now() + limit;
    loop {
        let (ready, next) = {
            let s = follower.shared().state.lock();
            (s.ready, s.next_index)
        };
        if ready && next >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the follower did not catch up within {limit:?} (at {next}, leader at {want})"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The raw full sync: the leader streams a snapshot to a reader that only
/// decodes. Returns the regions read.
pub async fn raw_full_sync(leader: &RunningLeader) -> anyhow::Result<u64> {
    let mut client = PdClient::connect(leader.url())
        .await?
        .max_decoding_message_size(16 << 20);
    let req = SyncRegionRequest {
        header: Some(RequestHeader {
            cluster_id: CLUSTER,
            ..Default::default()
        }),
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

/// Digests of leader and follower are equal.
pub fn same_digest(leader: &RunningLeader, follower: &RunningFollower) -> bool {
    leader.shared().status().digest == follower.shared().status().digest
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
