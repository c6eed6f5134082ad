//! Leader figures for the leader issue, measured over real gRPC on loopback
//! with the real redb store:
//!   - intake: region heartbeats per second over one stream, with the
//!     store, the ring and redb updated (every batch fsynced);
//!   - snapshot: 1,000,000 regions streamed to one reader that only decodes;
//!   - memory: the leader's resident memory for its regions, against the
//!     regions' encoded size (measured in a fresh child process that loads
//!     the store, so the benchmark's own buffers do not count).
//!
//!     cargo run --release -p regionsync-cli --example bench_leader [-- REGIONS]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regionsync::leader::{Leader, LeaderConfig};
use regionsync::role::RunningLeader;
use regionsync_proto::metapb::Region;

use common::{policy, region};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{Member, RegionHeartbeatRequest, RequestHeader, SyncRegionRequest};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Child mode: load the store in `dir` and report memory.
async fn measure_memory(dir: &str) {
    // The policy engine is the same for any number of regions: outside the
    // measured window.
    let policy = policy();
    let before = rss_bytes();
    let leader = Leader::start(LeaderConfig::new(dir), policy).unwrap();
    let after = rss_bytes();
    let (n, encoded) = {
        let shared = &leader.shared;
        shared.read_regions(|store| (store.len() as u64, store.encoded_bytes() as u64))
    };
    let used = after.saturating_sub(before);
    println!(
        "memory: {n} regions, encoded {:.1} MiB ({} B/region); leader RSS growth on load {:.1} MiB \
         ({} B/region) = {:.2}x the encoded size",
        encoded as f64 / 1048576.0,
        encoded / n.max(1),
        used as f64 / 1048576.0,
        used / n.max(1),
        used as f64 / encoded.max(1) as f64
    );
    leader.shutdown().await;
}

#[tokio::main]
async fn main() {
    regionsync_cli::allocator::tune();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure-store") {
        let n: u64 = args[2].parse().unwrap();
        let regions: Vec<Region> = (0..n).map(|i| region(i, n, 20)).collect();
        let before = rss_bytes();
        let mut store = regionsync::region_store::RegionStore::new();
        for r in &regions {
            store.apply(r, r.peers[0].id, 0, 0);
        }
        let after = rss_bytes();
        println!(
            "store alone: {} regions, encoded {} B/region, RSS growth {} B/region",
            store.len(),
            store.encoded_bytes() / store.len(),
            (after - before) / n
        );
        return;
    }
    if args.get(1).map(String::as_str) == Some("--measure-memory") {
        measure_memory(&args[2]).await;
        return;
    }
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = LeaderConfig::new(dir.path());
    config.cluster_id = Some(1);
    let leader = RunningLeader::start(config, policy(), listener)
        .await
        .unwrap();
    let url = leader.url();

    // Intake over one stream.
    let reqs: Vec<RegionHeartbeatRequest> = (0..n)
        .map(|i| {
            let r = region(i, n, 20);
            RegionHeartbeatRequest {
                header: Some(RequestHeader {
                    cluster_id: 1,
                    ..Default::default()
                }),
                leader: r.peers.first().copied(),
                region: Some(r),
                bytes_written: i,
                ..Default::default()
            }
        })
        .collect();
    let mut client = PdClient::connect(url.clone()).await.unwrap();
    let started = Instant::now();
    let responses = client
        .region_heartbeat(tokio_stream::iter(reqs))
        .await
        .unwrap();
    let shared = leader.shared().clone();
    while shared.stats().heartbeats.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    println!(
        "intake: {n} heartbeats over one stream in {took:.2?} = {:.0}/s (accepted {}, next_index {})",
        n as f64 / took.as_secs_f64(),
        shared.stats().accepted.load(Ordering::Relaxed),
        shared.held(None).next_index
    );
    drop((shared, responses, client));

    // Snapshot to a reader that only decodes.
    for run in 0..2 {
        let mut client = PdClient::connect(url.clone())
            .await
            .unwrap()
            .max_decoding_message_size(16 << 20);
        let req = SyncRegionRequest {
            header: Some(RequestHeader {
                cluster_id: 1,
                ..Default::default()
            }),
            member: Some(Member {
                name: format!("bench-reader-{run}"),
                ..Default::default()
            }),
            start_index: 0,
        };
        let started = Instant::now();
        let mut stream = client
            .sync_regions(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let (mut regions, mut frames, mut bytes) = (0u64, 0u64, 0u64);
        loop {
            let f = stream.message().await.unwrap().unwrap();
            frames += 1;
            bytes += prost::Message::encoded_len(&f) as u64;
            if f.regions.is_empty() && regions > 0 {
                break;
            }
            regions += f.regions.len() as u64;
        }
        let took = started.elapsed();
        println!(
            "snapshot run {run}: {regions} regions in {frames} frames ({:.1} MiB) to a decoding reader in {took:.2?} \
             = {:.0} regions/s",
            bytes as f64 / 1048576.0,
            regions as f64 / took.as_secs_f64()
        );
    }
    leader.shutdown().await;

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--measure-memory")
        .arg(dir.path())
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprintln!(
            "memory measurement failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
