//! Sync under churn (docs/protocol.md §7), over real gRPC with real stores:
//! a full sync that completes while changes overwrite the ring many times,
//! a delta resume that costs what changed, a completion that catches a copy
//! changed behind the follower's back, and a PD follower that still gets
//! exactly PD's frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use regionsync::role::RunningLeader;
use regionsync::storage::{Storage, WriteBatch};
use regionsync::wire::{CAPABILITIES_HEADER, ROUTE_HEADER};
use regionsync_harness::cluster::*;
use regionsync_harness::eventually::*;
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::{Member, SyncRegionRequest};
use tokio::sync::mpsc;

/// Heartbeats sent as fast as the leader takes them, until stopped: each
/// round bumps the version of a slice of the regions.
struct Churn {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Churn {
    fn start(leader: &RunningLeader, regions: Vec<Region>) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (url, cluster_id) = (leader.url(), leader.shared().cluster_id());
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let (tx, rx) = mpsc::channel(1_024);
                let mut c = client(&url).await;
                let call = tokio::spawn(async move {
                    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                    let responses = c.region_heartbeat(stream).await.unwrap().into_inner();
                    drop(responses);
                });
                let mut version = 2;
                'rounds: loop {
                    for chunk in bumped(&regions, version).chunks(500) {
                        for r in chunk {
                            if stop.load(Ordering::Relaxed)
                                || tx.send(heartbeat(cluster_id, r)).await.is_err()
                            {
                                break 'rounds;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    version += 1;
                }
                drop(tx);
                let _ = call.await;
            }
        });
        Churn { stop, sent, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }
}

fn next_index(leader: &RunningLeader) -> u64 {
    leader.shared().held(None).next_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_sync_completes_while_churn_overwrites_a_tiny_ring_many_times() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = leader_config(ldir.path());
    config.history_capacity = 100;
    let leader = start_leader(config).await;
    let set = regions(1, 50_000, 24);
    feed(&leader, &set).await;

    let churn = Churn::start(&leader, set.clone());
    // Churn first, so that the ring is overwritten before the snapshot begins.
    eventually("churn to start", Duration::from_secs(10), || {
        churn.sent.load(Ordering::Relaxed) > 5_000
    })
    .await;
    let at_start = next_index(&leader);
    let started = Instant::now();
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    let shared = f.shared().clone();
    eventually(
        "the follower to become ready under churn",
        Duration::from_secs(60),
        || shared.is_ready(),
    )
    .await;
    let ready_after = started.elapsed();
    let churned = next_index(&leader) - at_start;
    let still_churning = !churn.task.is_finished();
    let sent = churn.stop().await;
    assert!(
        still_churning,
        "the churn stopped before the follower was ready"
    );
    assert!(
        churned > 10 * 100,
        "only {churned} records while syncing: the ring of 100 was not overwritten many times"
    );
    // One full sync did it. (Once live, a follower this far behind a ring
    // of 100 may fall off it again; it then resumes by delta, never by
    // another snapshot.)
    converged(&leader, &f).await;
    let status = f.shared().status();
    assert_eq!(status.full_syncs.len(), 1, "{status:?}");
    assert_eq!(status.full_syncs.get("requested"), Some(&1), "{status:?}");
    println!(
        "ready after {ready_after:?} with {churned} records written meanwhile (ring 100), \
         {sent} churn heartbeats sent; {status:?}"
    );
    f.shutdown().await;
    leader.shutdown().await;
}

/// A follower's store: its regions by id.
fn stored(dir: &std::path::Path) -> std::collections::BTreeMap<u64, Region> {
    let storage = Storage::open(dir).unwrap();
    let mut out = std::collections::BTreeMap::new();
    storage
        .load_regions(|r, _, _| {
            out.insert(r.id, r);
        })
        .unwrap();
    out
}

/// Start a leader with a ring of 100 records and `n` regions, and a
/// follower that syncs from it and stops cleanly.
async fn leader_and_a_follower_that_left(
    ldir: &std::path::Path,
    fdir: &std::path::Path,
    n: u64,
) -> (RunningLeader, Vec<Region>, u64) {
    let mut config = leader_config(ldir);
    config.history_capacity = 100;
    let leader = start_leader(config).await;
    let set = regions(1, n, 24);
    feed(&leader, &set).await;
    let f = start_follower(follower_config(&leader, Some(fdir))).await;
    converged(&leader, &f).await;
    let snapshot_bytes = f.shared().stats().bytes.load(Ordering::Relaxed);
    f.shutdown().await;
    (leader, set, snapshot_bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_away_resumes_by_delta_at_the_cost_of_what_changed() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, set, snapshot_bytes) =
        leader_and_a_follower_that_left(ldir.path(), fdir.path(), 10_000).await;
    let left_at = next_index(&leader);

    // While it is away: 2% of the regions change, and region 2 is merged
    // into region 1; far more records than the ring of 100 holds.
    let changed: Vec<Region> = bumped(&set[100..300], 5);
    feed(&leader, &changed).await;
    let mut merged = set[0].clone();
    merged.end_key = set[1].end_key.clone();
    merged.region_epoch.as_mut().unwrap().version = 9;
    feed(&leader, &[merged.clone()]).await;
    assert!(leader.shared().region(2).is_none());
    assert!(
        leader.shared().held(None).first_index > left_at,
        "the follower's index must be behind the ring"
    );

    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let status = f.shared().status();
    let resume_bytes = f.shared().stats().bytes.load(Ordering::Relaxed);
    assert!(status.full_syncs.is_empty(), "no snapshot: {status:?}");
    assert_eq!(status.details.get("deltas"), Some(&1), "{status:?}");
    assert_eq!(leader.shared().stats().deltas.load(Ordering::Relaxed), 1);
    assert!(
        resume_bytes * 10 < snapshot_bytes,
        "the delta took {resume_bytes} bytes, the snapshot {snapshot_bytes}"
    );
    println!("delta: {resume_bytes} bytes against a snapshot of {snapshot_bytes}");
    f.shutdown().await;
    let kept = stored(fdir.path());
    assert!(!kept.contains_key(&2), "the merged-away region is gone");
    assert_eq!(kept[&1], merged);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_changed_behind_the_followers_back_is_caught_and_repaired() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, set, _) = leader_and_a_follower_that_left(ldir.path(), fdir.path(), 2_000).await;

    // Someone edits the follower's store: region 7 gets another peer.
    let mut tampered = set[6].clone();
    tampered.peers.push(Peer {
        id: 999_999,
        store_id: 9,
        ..Default::default()
    });
    {
        let storage = Storage::open(fdir.path()).unwrap();
        let mut batch = WriteBatch {
            durable: true,
            ..Default::default()
        };
        batch.put_encoded(7, 71, 0, &prost::Message::encode_to_vec(&tampered));
        storage.write(&batch).unwrap();
    }
    // The leader moves on past its ring, so the follower resumes by delta.
    feed(&leader, &bumped(&set[1_000..1_200], 3)).await;

    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let status = f.shared().status();
    assert_eq!(
        status.details.get("verify_failures"),
        Some(&1),
        "{status:?}"
    );
    assert_eq!(status.full_syncs.get("requested"), Some(&1), "{status:?}");
    let metrics = regionsync::admin::AdminNode::metrics(f.shared().as_ref());
    assert!(
        metrics.contains("regionsync_sync_verify_failures_total 1"),
        "{metrics}"
    );
    f.shutdown().await;
    assert_eq!(stored(fdir.path())[&7], set[6], "the full sync repaired it");
    leader.shutdown().await;
}

/// Open a stream as a client that announces `capabilities` (none: a PD
/// follower): the route the leader announced, and the frames.
async fn open_as(
    leader: &RunningLeader,
    start_index: u64,
    capabilities: Option<&str>,
) -> Result<
    (
        Option<String>,
        tonic::Streaming<regionsync_proto::pdpb::SyncRegionResponse>,
    ),
    tonic::Status,
> {
    let mut c = client(&leader.url()).await;
    let request = SyncRegionRequest {
        header: header(leader.shared().cluster_id()),
        member: Some(Member {
            name: "probe".into(),
            ..Default::default()
        }),
        start_index,
    };
    let mut call = tonic::Request::new(tokio_stream::iter(vec![request]));
    if let Some(caps) = capabilities {
        call.metadata_mut()
            .insert(CAPABILITIES_HEADER, caps.parse().unwrap());
    }
    let response = c.sync_regions(call).await?;
    let route = response
        .metadata()
        .get(ROUTE_HEADER)
        .map(|v| v.to_str().unwrap().to_string());
    Ok((route, response.into_inner()))
}

/// [`open_as`], then every frame up to the first empty one after data.
async fn sync_as(
    leader: &RunningLeader,
    start_index: u64,
    capabilities: Option<&str>,
) -> (
    Option<String>,
    Vec<regionsync_proto::pdpb::SyncRegionResponse>,
) {
    let (route, mut frames) = open_as(leader, start_index, capabilities).await.unwrap();
    let mut got = Vec::new();
    loop {
        let frame = next_frame(&mut frames).await.unwrap().unwrap();
        let done = frame.regions.is_empty()
            && got
                .iter()
                .any(|f: &regionsync_proto::pdpb::SyncRegionResponse| !f.regions.is_empty());
        got.push(frame);
        if done {
            return (route, got);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_announces_nothing_gets_exactly_pds_frames() {
    let ldir = tempfile::tempdir().unwrap();
    let mut config = leader_config(ldir.path());
    config.history_capacity = 100;
    let leader = start_leader(config).await;
    let set = regions(1, 2_500, 24);
    feed(&leader, &set).await;
    feed(&leader, &bumped(&set[..300], 2)).await;
    let next = next_index(&leader);

    // A full sync: positional snapshot frames, then the completion at the
    // leader's index; no announcement, no digest.
    let (route, frames) = sync_as(&leader, 0, None).await;
    assert_eq!(route, None);
    let starts: Vec<u64> = frames.iter().map(|f| f.start_index).collect();
    assert_eq!(starts, vec![0, 1_000, 2_000, next]);
    assert_eq!(
        frames.iter().map(|f| f.regions.len()).collect::<Vec<_>>(),
        vec![1_000, 1_000, 500, 0]
    );
    assert!(frames.iter().all(|f| f.regionsync_digest.is_empty()));

    // Behind the ring: a full sync for it, where a follower that takes
    // deltas gets a delta, announced, with a digest on its completion.
    let (route, frames) = sync_as(&leader, 5, None).await;
    assert_eq!((route, frames[0].start_index), (None, 0));
    assert_eq!(frames.len(), 4);
    let (route, frames) = sync_as(&leader, 2_501, Some("delta,verify")).await;
    assert_eq!(route.as_deref(), Some("delta"));
    let data: usize = frames.iter().map(|f| f.regions.len()).sum();
    assert_eq!(data, 300, "only the regions changed since 2501");
    let last = frames.last().unwrap();
    assert_eq!(last.start_index, next);
    assert_eq!(
        regionsync::wire::digest_of(&last.regionsync_digest),
        Some(leader.shared().held(None).digest.value())
    );
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_that_move_only_rounded_flow_or_sizes_make_no_record() {
    let ldir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(ldir.path())).await;
    let r = regions(1, 1, 24).remove(0);
    let beat = |bytes_written: u64, approximate_size: u64| {
        let mut hb = heartbeat(7, &r);
        hb.bytes_written = bytes_written;
        hb.approximate_size = approximate_size;
        hb
    };
    send_and_wait(&leader, vec![beat(10_000, 1)]).await;
    let first = next_index(&leader);
    // Within the rounding (3 digits) and size changes: no record.
    send_and_wait(&leader, vec![beat(10_400, 2), beat(9_600, 3_000)]).await;
    assert_eq!(next_index(&leader), first);
    assert_eq!(leader.shared().stats().unchanged.load(Ordering::Relaxed), 2);
    // Across the rounding: a record.
    send_and_wait(&leader, vec![beat(10_600, 3_000)]).await;
    assert_eq!(next_index(&leader), first + 1);
    leader.shutdown().await;
}

/// Send heartbeats on one stream, and keep it open until the leader has
/// processed them (a dropped call cancels what it has not read).
async fn send_and_wait(
    leader: &RunningLeader,
    heartbeats: Vec<regionsync_proto::pdpb::RegionHeartbeatRequest>,
) {
    let stats = &leader.shared().stats();
    let target = stats.heartbeats.load(Ordering::Relaxed) + heartbeats.len() as u64;
    let mut c = client(&leader.url()).await;
    let responses = c
        .region_heartbeat(tokio_stream::iter(heartbeats))
        .await
        .unwrap();
    eventually(
        "the leader to take the heartbeats",
        Duration::from_secs(10),
        || stats.heartbeats.load(Ordering::Relaxed) >= target,
    )
    .await;
    drop(responses);
}

/// Issue #30 item 7: a delta from the delta floor scans and sends the whole
/// store, as a full sync does; it is admitted as one. Four such deltas that
/// their clients stopped reading hold the default policy's four slots; the
/// fifth is refused with RESOURCE_EXHAUSTED instead of a fifth scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_as_large_as_a_full_sync_are_admitted_like_one() {
    let ldir = tempfile::tempdir().unwrap();
    let mut config = leader_config(ldir.path());
    config.history_capacity = 100;
    let leader = start_leader(config).await;
    feed(&leader, &regions(1, 60_000, 64)).await;
    let l = &leader;
    let open = move |start_index| async move {
        let (route, mut frames) = open_as(l, start_index, Some("delta,verify")).await?;
        let first = next_frame(&mut frames).await?;
        Ok::<_, tonic::Status>((route, first.is_some(), frames))
    };
    // Each holds its stream open and reads nothing more.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (route, got, frames) = open(1).await.expect("admitted");
        assert_eq!(route.as_deref(), Some("delta"));
        assert!(got);
        held.push(frames);
    }
    match open(1).await {
        Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}"),
        Ok((route, _, _)) => panic!("a fifth whole-store delta was served (route {route:?})"),
    }
    assert_eq!(
        leader
            .shared()
            .stats()
            .deltas_refused
            .load(Ordering::Relaxed),
        1
    );
    // A small delta still goes through while the slots are taken.
    let near = next_index(&leader) - 150;
    let (route, got, _small) = open(near).await.expect("a small delta is not held back");
    assert_eq!((route.as_deref(), got), (Some("delta"), true));
    drop(held);
    leader.shutdown().await;
}

/// X [a, b) and Y [b, c), then 30 regions after them (to push the ring on
/// with later); the 30.
async fn x_y_and_fillers(leader: &regionsync::role::RunningLeader) -> Vec<Region> {
    let fillers: Vec<Region> = (0..30u64)
        .map(|i| {
            region(
                100 + i,
                format!("d{i:03}").as_bytes(),
                format!("d{:03}", i + 1).as_bytes(),
                1,
            )
        })
        .collect();
    feed(
        leader,
        &[region(1, b"a", b"b", 1), region(2, b"b", b"c", 1)],
    )
    .await;
    feed(leader, &fillers).await;
    fillers
}

/// Issue #30 item 5: a removal that no region still present explains. The
/// follower holds X [a, b) and Y [b, c); Y absorbs X, then splits
/// right-derived into [bm, c) before the new left region is heartbeated.
/// A delta that sends only Y must still take X away: the leader keeps the
/// removal and sends it, so the delta alone brings the follower to the
/// leader's set (no refused completion, no full sync after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_takes_away_a_region_whose_range_nothing_covers_now() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = leader_config(ldir.path());
    config.history_capacity = 10;
    let leader = start_leader(config).await;
    let fillers = x_y_and_fillers(&leader).await;
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    f.shutdown().await;

    feed(&leader, &[region(2, b"a", b"c", 2)]).await; // Y absorbs X
    feed(&leader, &[region(2, b"bm", b"c", 3)]).await; // Y splits; [a, bm) not yet heard of
    feed(&leader, &bumped(&fillers, 2)).await; // past the ring: a delta
    assert!(leader.shared().region(1).is_none());

    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let stats = &f.shared().stats();
    assert_eq!(
        stats.deltas.load(Ordering::Relaxed),
        1,
        "it resumed by a delta"
    );
    assert_eq!(
        stats.verify_failures.load(Ordering::Relaxed),
        0,
        "the delta's completion was refused: the follower still held the removed region"
    );
    assert!(f.shared().region(1).is_none());
    f.shutdown().await;
    leader.shutdown().await;
}

/// Issue #37: a leader restarted from its disk knows removals only from its
/// restart on (they are kept in memory), and a change applied in memory
/// whose commit failed is put back with no change index of its own. A
/// follower complete from before the restart, behind the ring, must get a
/// full sync, not a delta that cannot say what changed before the restart:
/// here the delta would leave it holding a region merged away before the
/// restart. A follower without `verify` has no check that would catch it:
/// it would claim the leader's index with another set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_from_before_a_leader_restart_is_a_full_sync() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = || {
        let mut c = leader_config(ldir.path());
        c.history_capacity = 10;
        c
    };
    let leader = start_leader(config()).await;
    let fillers = x_y_and_fillers(&leader).await;
    let unchecked = |leader: &regionsync::role::RunningLeader| {
        let mut c = follower_config(leader, Some(fdir.path()));
        c.announce = regionsync::follower::Announce::NoVerify;
        c
    };
    let f = start_follower(unchecked(&leader)).await;
    converged(&leader, &f).await;
    f.shutdown().await;

    feed(&leader, &[region(2, b"a", b"c", 2)]).await; // Y absorbs X
    feed(&leader, &[region(2, b"bm", b"c", 3)]).await; // Y splits; [a, bm) not yet heard of
    feed(&leader, &bumped(&fillers, 2)).await; // past the ring
    leader.shutdown().await;
    let leader = start_leader(config()).await;
    assert!(leader.shared().region(1).is_none());

    let f = start_follower(unchecked(&leader)).await;
    converged(&leader, &f).await;
    let stats = &f.shared().stats();
    assert_eq!(stats.deltas.load(Ordering::Relaxed), 0, "it took a delta");
    assert_eq!(
        f.shared().status().full_syncs.get("leader_routed"),
        Some(&1),
        "the leader routed it to a full sync"
    );
    assert!(f.shared().region(1).is_none());
    f.shutdown().await;
    leader.shutdown().await;
}
