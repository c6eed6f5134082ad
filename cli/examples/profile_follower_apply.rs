//! The follower's full-sync apply path alone, for profiling (BENCHMARKS.md):
//! a million snapshot frames, decoded beforehand as the follower's reader
//! decodes them (`Received`: the regions read, their hashes taken, their
//! bytes kept), fed to a detached follower exactly as its sync task would,
//! then the completion. No network, no leader, no decoding: what is left
//! is the cache, the digest's sums and the store. Under callgrind, the
//! decoding shows apart, in `main`.
//!
//!     cargo run --release -p regionsync-cli --example profile_follower_apply [REGIONS]
//!     MEMORY=1 cargo run ...     # a cache-only follower: without redb
//!     perf record ./target/release/examples/profile_follower_apply

use std::time::Instant;

use prost::Message;
use regionsync::follower::{FollowerConfig, FollowerShared, Received};
use regionsync::policy_runtime::AnnouncedSync;
use regionsync_harness::cluster;
use regionsync_proto::pdpb::{RegionStat, ResponseHeader, SyncRegionResponse};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn frame(start_index: u64, regions: Vec<regionsync_proto::metapb::Region>) -> SyncRegionResponse {
    SyncRegionResponse {
        header: Some(ResponseHeader {
            cluster_id: cluster::CLUSTER,
            error: None,
        }),
        region_leaders: regions.iter().map(|r| r.peers[0]).collect(),
        region_stats: vec![RegionStat::default(); regions.len()],
        regions,
        start_index,
        ..Default::default()
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let frames: Vec<Received> = (0..n)
        .step_by(1_000)
        .map(|from| {
            let regions = (from..(from + 1_000).min(n))
                .map(|i| cluster::sample_region(i, n, 1))
                .collect();
            let bytes = frame(from, regions).encode_to_vec();
            Received::decode(&bytes[..]).expect("a frame decodes")
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let durable = std::env::var("MEMORY").is_err();
    let mut config = FollowerConfig::new("http://unused", durable.then(|| dir.path().into()));
    config.cluster_id = Some(cluster::CLUSTER);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let _entered = runtime.enter();
    // NATIVE=1: the default policy linked natively; otherwise its component.
    let policy = cluster::policy_for(std::env::var("NATIVE").is_ok()).expect("the default policy");
    let follower = FollowerShared::open_detached(config, policy).expect("a follower");
    let plan = follower.begin_stream();
    let t = Instant::now();
    for f in frames {
        let ended = follower
            .receive(f, plan.start_index, AnnouncedSync::Full)
            .expect("applied");
        assert!(ended.is_none());
    }
    let applied = t.elapsed();
    let completion = frame(n + 1, Vec::new());
    follower
        .receive(completion, plan.start_index, AnnouncedSync::Full)
        .expect("completed");
    assert!(follower.is_ready());
    println!(
        "{n} regions: applied in {applied:.2?} ({:.2} us/region), ready after {:.2?} ({})",
        applied.as_secs_f64() * 1e6 / n as f64,
        t.elapsed(),
        if durable { "durable" } else { "cache only" }
    );
}
