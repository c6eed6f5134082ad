//! Helpers shared by the integration tests.

use regionsync_guest::splitmix::SplitMix64;

/// A seeded source of test inputs (the guest's SplitMix64), so that a
/// failing case can be replayed from its seed.
pub struct Rng(SplitMix64);

impl Rng {
    /// The inputs for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// The next word.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A value that often sits on or next to one of `anchors` (where the
    /// decisions change), sometimes anywhere.
    pub fn near(&mut self, anchors: &[u64]) -> u64 {
        match self.below(4) {
            0 => self.next_u64() >> self.below(64),
            _ => {
                let a = anchors[self.below(anchors.len() as u64) as usize];
                let delta = self.below(5) as i64 - 2;
                a.saturating_add_signed(delta)
            }
        }
    }
}

/// A test fixture component built by `build.rs` from `fixtures/`
/// (`hostile_*`, `other_contract`).
pub fn fixture(stem: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("REGIONSYNC_FIXTURE_DIR")).join(format!("policy_{stem}.wasm"))
}

/// The release `regionsync` binary beside this test (`cargo test
/// --workspace --release` builds it before any test runs).
pub fn regionsync_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("regionsync");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --release -p regionsync` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

pub mod cluster {
    //! Real nodes on loopback for the integration tests.

    use std::sync::Arc;
    use std::time::Duration;

    use regionsync::leader::LeaderConfig;
    use regionsync::node::RunningLeader;
    use regionsync::policy_runtime::PolicyRuntime;
    use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
    use regionsync_proto::pdpb::pd_client::PdClient;
    use regionsync_proto::pdpb::{
        Member, RegionHeartbeatRequest, RequestHeader, SyncRegionRequest, SyncRegionResponse,
    };
    use tonic::transport::Channel;

    pub fn policy() -> Arc<PolicyRuntime> {
        Arc::new(PolicyRuntime::with_default().expect("the built-in policy loads"))
    }

    pub fn leader_config(dir: &std::path::Path) -> LeaderConfig {
        let mut c = LeaderConfig::new(dir);
        c.cluster_id = Some(7);
        c
    }

    pub async fn start_leader(config: LeaderConfig) -> RunningLeader {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        RunningLeader::start(config, policy(), listener)
            .await
            .unwrap()
    }

    pub async fn client(url: &str) -> PdClient<Channel> {
        PdClient::connect(url.to_string())
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
    }

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

    pub fn heartbeat(cluster_id: u64, r: &Region) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            header: header(cluster_id),
            region: Some(r.clone()),
            leader: r.peers.first().copied(),
            ..Default::default()
        }
    }

    /// Send heartbeats on one stream and wait until the leader has
    /// published `expect_next` (all accepted and durable).
    pub async fn feed(leader: &RunningLeader, regions: &[Region]) {
        let cluster_id = leader.shared().cluster_id;
        let reqs: Vec<_> = regions.iter().map(|r| heartbeat(cluster_id, r)).collect();
        let before = leader
            .shared()
            .stats
            .heartbeats
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut c = client(&leader.url()).await;
        let responses = c
            .region_heartbeat(tokio_stream::iter(reqs))
            .await
            .unwrap()
            .into_inner();
        let target = before + regions.len() as u64;
        tokio::time::timeout(Duration::from_secs(30), async {
            while leader
                .shared()
                .stats
                .heartbeats
                .load(std::sync::atomic::Ordering::Relaxed)
                < target
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the leader took every heartbeat");
        drop(responses);
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
}

pub mod followers {
    //! Followers on loopback, and waiting for them.

    use std::time::{Duration, Instant};

    use regionsync::follower::FollowerConfig;
    use regionsync::node::{RunningFollower, RunningLeader};

    use super::cluster::policy;

    pub fn follower_config(
        leader: &RunningLeader,
        dir: Option<&std::path::Path>,
    ) -> FollowerConfig {
        let mut c = FollowerConfig::new(leader.url(), dir.map(|d| d.to_path_buf()));
        c.name = "f1".into();
        c.keepalive = Duration::from_secs(2);
        c
    }

    pub async fn start_follower(config: FollowerConfig) -> RunningFollower {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        RunningFollower::start(config, policy(), listener)
            .await
            .unwrap()
    }

    /// A leader with `n` regions and a durable follower that has synced
    /// them (the set-up most follower tests start from).
    pub async fn leader_and_synced_follower(
        ldir: &std::path::Path,
        fdir: &std::path::Path,
        n: u64,
    ) -> (
        RunningLeader,
        Vec<regionsync_proto::metapb::Region>,
        RunningFollower,
    ) {
        let leader = super::cluster::start_leader(super::cluster::leader_config(ldir)).await;
        let rs = super::cluster::regions(1, n, 8);
        super::cluster::feed(&leader, &rs).await;
        let f = start_follower(follower_config(&leader, Some(fdir))).await;
        converged(&leader, &f).await;
        (leader, rs, f)
    }

    /// Wait until `cond` holds, or fail naming `what`.
    pub async fn eventually(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        assert!(
            holds_within(timeout, cond).await,
            "timed out waiting for {what}"
        );
    }

    /// Poll `cond` until it holds (true) or `within` passes (false).
    pub async fn holds_within(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait until the follower is ready with the leader's region set.
    pub async fn converged(leader: &RunningLeader, follower: &RunningFollower) {
        let l = leader.shared().clone();
        let f = follower.shared().clone();
        eventually(
            "the follower to converge on the leader's digest",
            Duration::from_secs(30),
            || {
                let lead = (l.store.read().digest(), l.ring.read().next_index());
                let st = f.status();
                st.ready && st.digest == lead.0.hex() && st.next_index == lead.1
            },
        )
        .await;
    }
}

pub mod faults;
