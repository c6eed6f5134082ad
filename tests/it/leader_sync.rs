//! The leader over real gRPC on loopback with a real redb store: routing,
//! history replay, full sync with catch-up, slow and dead followers,
//! keepalive, shutdown, refusals and restart (docs/protocol.md §2).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regionsync::leader::FullSyncOutcome;
use regionsync::policy_runtime::{RouteCause, RouteReason};
use regionsync_harness::cluster::*;
use regionsync_harness::eventually::{eventually, holds_within};
use regionsync_proto::pdpb::{ErrorType, RegionHeartbeatRequest, SyncRegionResponse};
use tonic::Code;

type Frames = tonic::Streaming<SyncRegionResponse>;

fn ids(frame: &SyncRegionResponse) -> Vec<u64> {
    frame.regions.iter().map(|r| r.id).collect()
}

/// Read a full sync: snapshot frames (positional) until `total` regions,
/// then catch-up frames until the completion frame. Returns (snapshot ids,
/// catch-up frames, completion index).
async fn read_full_sync(s: &mut Frames, total: usize) -> (Vec<u64>, Vec<SyncRegionResponse>, u64) {
    read_rest_of_full_sync(s, 0, total).await
}

/// [`read_full_sync`] after `seen` snapshot regions were read already.
async fn read_rest_of_full_sync(
    s: &mut Frames,
    seen: usize,
    total: usize,
) -> (Vec<u64>, Vec<SyncRegionResponse>, u64) {
    let mut snapshot = Vec::new();
    loop {
        let f = next_frame(s).await.unwrap().unwrap();
        let position = (seen + snapshot.len()) as u64;
        assert_eq!(f.start_index, position, "snapshot frames are positional");
        assert_eq!(
            f.region_leaders.len(),
            f.regions.len(),
            "leaders are index-aligned"
        );
        snapshot.extend(ids(&f));
        if snapshot.len() >= total {
            break;
        }
        assert!(
            !f.regions.is_empty(),
            "an empty frame ended the snapshot early"
        );
    }
    assert_eq!(snapshot.len(), total);
    let mut catch_up = Vec::new();
    loop {
        let f = next_frame(s).await.unwrap().unwrap();
        if f.regions.is_empty() {
            return (snapshot, catch_up, f.start_index);
        }
        catch_up.push(f);
    }
}

/// Nothing arrives on the stream for a while.
async fn quiet(s: &mut Frames) {
    let r = tokio::time::timeout(Duration::from_millis(300), s.message()).await;
    assert!(r.is_err(), "unexpected frame: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_1001_records_goes_out_as_1000_plus_1() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(dir.path())).await;
    let rs = regions(1, 1001, 16);
    feed(&leader, &rs).await;
    assert_eq!(leader.shared().held(None).next_index, 1002);

    let mut s = sync(&leader.url(), 7, 1, "f").await.unwrap();
    let a = next_frame(&mut s).await.unwrap().unwrap();
    let b = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!((a.start_index, a.regions.len()), (1, 1000));
    assert_eq!((b.start_index, b.regions.len()), (1001, 1));
    assert_eq!(
        a.region_stats.len(),
        1000,
        "history frames carry aligned stats"
    );
    let got: Vec<u64> = ids(&a).into_iter().chain(ids(&b)).collect();
    assert_eq!(got, (1..=1001).collect::<Vec<_>>());
    let caught_up = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!((caught_up.start_index, caught_up.regions.len()), (1002, 0));
    leader.shutdown().await;
}

/// A leader with capacity 10 holding 30 regions: ring [21, 31).
async fn small_ring_leader(dir: &std::path::Path) -> regionsync::role::RunningLeader {
    let mut c = leader_config(dir);
    c.history_capacity = 10;
    let leader = start_leader(c).await;
    feed(&leader, &regions(1, 30, 8)).await;
    let ring = leader.shared().ring_view();
    assert_eq!((ring.first_index, ring.next_index), (21, 31));
    leader
}

async fn expect_full_sync(start: u64, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let leader = small_ring_leader(dir.path()).await;
    let mut s = sync(&leader.url(), 7, start, "f").await.unwrap();
    let (snapshot, catch_up, completion) = read_full_sync(&mut s, 30).await;
    assert_eq!(snapshot, (1..=30).collect::<Vec<_>>());
    assert!(catch_up.is_empty());
    assert_eq!(completion, 31);
    quiet(&mut s).await;
    let by_reason = leader.shared().stats().full_syncs_by_reason();
    assert_eq!(by_reason.get(reason), Some(&1), "{by_reason:?}");
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_zero_gets_a_full_sync() {
    expect_full_sync(0, "zero_index").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_behind_the_ring_gets_a_full_sync() {
    expect_full_sync(5, "behind_ring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_ahead_of_the_leader_gets_a_full_sync() {
    expect_full_sync(1_000, "ahead_of_leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_at_next_gets_one_empty_frame() {
    let dir = tempfile::tempdir().unwrap();
    let leader = small_ring_leader(dir.path()).await;
    let mut s = sync(&leader.url(), 7, 31, "f").await.unwrap();
    let f = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!((f.start_index, f.regions.len()), (31, 0));
    quiet(&mut s).await;
    assert!(leader.shared().stats().full_syncs_by_reason().is_empty());
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_inside_the_ring_gets_only_the_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let leader = small_ring_leader(dir.path()).await;
    let mut s = sync(&leader.url(), 7, 25, "f").await.unwrap();
    let f = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(f.start_index, 25);
    assert_eq!(ids(&f), (25..=30).collect::<Vec<_>>());
    let f = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!((f.start_index, f.regions.len()), (31, 0));
    quiet(&mut s).await;
    assert!(leader.shared().stats().full_syncs_by_reason().is_empty());
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_during_a_snapshot_arrive_once_in_the_catch_up_then_live_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(dir.path())).await;
    // ~20 MiB of snapshot: far more than the stream's buffers, so the
    // leader is certainly mid-snapshot when the updates come.
    let rs = regions(1, 20_000, 512);
    feed(&leader, &rs).await;
    let pin = leader.shared().held(None).next_index;
    assert_eq!(pin, 20_001);

    let mut s = sync(&leader.url(), 7, 0, "f").await.unwrap();
    let first = next_frame(&mut s).await.unwrap().unwrap();
    assert_eq!((first.start_index, first.regions.len()), (0, 1000));
    // The leader is now blocked mid-snapshot on this unread stream.
    feed(&leader, &bumped(&rs[..50], 2)).await;

    let (snapshot, catch_up, completion) = read_rest_of_full_sync(&mut s, 1_000, 19_000).await;
    assert_eq!(snapshot.len() + first.regions.len(), 20_000);
    let mut expect = pin;
    let mut caught = Vec::new();
    for f in &catch_up {
        assert_eq!(f.start_index, expect, "catch-up frames are contiguous");
        expect += f.regions.len() as u64;
        caught.extend(
            f.regions
                .iter()
                .map(|r| (r.id, r.region_epoch.unwrap().version)),
        );
    }
    let want: Vec<(u64, u64)> = (1..=50).map(|id| (id, 2)).collect();
    assert_eq!(caught, want, "every record since the pin, once, in order");
    assert_eq!(completion, pin + 50);

    // Written after completion: live frames, in order.
    feed(&leader, &bumped(&rs[..10], 3)).await;
    let mut live = Vec::new();
    let mut next = completion;
    while live.len() < 10 {
        let f = next_frame(&mut s).await.unwrap().unwrap();
        assert_eq!(f.start_index, next);
        next += f.regions.len() as u64;
        live.extend(
            f.regions
                .iter()
                .map(|r| (r.id, r.region_epoch.unwrap().version)),
        );
    }
    assert_eq!(live, (1..=10).map(|id| (id, 3)).collect::<Vec<_>>());
    let counts = leader.shared().stats().full_sync_counts();
    let zero = RouteCause::Policy(RouteReason::ZeroIndex);
    assert_eq!(counts.get(&(zero, FullSyncOutcome::Completed)), Some(&1));
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_larger_than_the_ring_ends_with_resource_exhausted_and_unbinds_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leader_config(dir.path());
    c.history_capacity = 10;
    let leader = start_leader(c).await;
    let rs = regions(1, 20_000, 512);
    feed(&leader, &rs).await;

    let mut s = sync(&leader.url(), 7, 0, "f").await.unwrap();
    next_frame(&mut s).await.unwrap().unwrap();
    feed(&leader, &bumped(&rs[..20], 2)).await; // 20 records > capacity 10

    let status = loop {
        match next_frame(&mut s).await {
            Ok(Some(f)) => assert!(f.header.unwrap().error.is_none()),
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("full sync"),
        "{}",
        status.message()
    );
    let shared = leader.shared();
    eventually("the stream to be unbound", Duration::from_secs(5), || {
        shared.stream_names().is_empty()
    })
    .await;
    assert_eq!(shared.full_syncs_running(), 0);
    let counts = shared.stats().full_sync_counts();
    let zero = RouteCause::Policy(RouteReason::ZeroIndex);
    assert_eq!(counts.get(&(zero, FullSyncOutcome::Exhausted)), Some(&1));
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_followers_at_different_cursors_each_receive_exactly_their_own_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(dir.path())).await;
    let rs = regions(1, 100, 8);
    feed(&leader, &rs).await;
    let mut a = sync(&leader.url(), 7, 21, "a").await.unwrap();
    let mut b = sync(&leader.url(), 7, 61, "b").await.unwrap();
    let fa = next_frame(&mut a).await.unwrap().unwrap();
    let fb = next_frame(&mut b).await.unwrap().unwrap();
    assert_eq!((fa.start_index, ids(&fa)), (21, (21..=100).collect()));
    assert_eq!((fb.start_index, ids(&fb)), (61, (61..=100).collect()));
    for s in [&mut a, &mut b] {
        let f = next_frame(s).await.unwrap().unwrap();
        assert_eq!((f.start_index, f.regions.len()), (101, 0));
    }
    feed(&leader, &bumped(&rs[..5], 2)).await;
    for s in [&mut a, &mut b] {
        let f = next_frame(s).await.unwrap().unwrap();
        assert_eq!((f.start_index, ids(&f)), (101, vec![1, 2, 3, 4, 5]));
    }
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_stops_reading_is_dropped_after_the_send_bound_and_others_keep_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leader_config(dir.path());
    c.send_timeout = Duration::from_secs(5);
    let leader = start_leader(c).await;
    let url = leader.url();

    // A: takes the up-to-date frame, then never reads again.
    let mut a = sync(&url, 7, 1, "a").await.unwrap();
    assert_eq!(next_frame(&mut a).await.unwrap().unwrap().start_index, 1);
    // B: reads everything.
    let mut b = sync(&url, 7, 1, "b").await.unwrap();
    let total = 4_000u64;
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while got < total {
            let f = next_frame(&mut b).await.unwrap().unwrap();
            got += f.regions.len() as u64;
        }
        (got, Instant::now(), b)
    });
    let started = Instant::now();
    // ~8 MiB in ten separate batches, so at least ten frames: more than A's
    // channel and transport buffers can hold.
    let rs = regions(1, total, 1024);
    for chunk in rs.chunks(400) {
        feed(&leader, chunk).await;
    }
    let (got, done, _b) = reader.await.unwrap();
    assert_eq!(got, total);
    let b_took = done - started;
    let names = |l: &regionsync::role::RunningLeader| l.shared().stream_names();
    println!("B received {total} records in {b_took:?} while A was stalled");
    // B had everything while A's stream was still there: A held nobody up
    // (had it, B would have received only once A was dropped at its
    // bound). Judged by the leader's streams, not by B's time.
    assert_eq!(
        names(&leader),
        vec!["a", "b"],
        "A was dropped before B had everything (B took {b_took:?})"
    );

    holds_within(Duration::from_secs(15), || names(&leader).len() <= 1).await;
    assert_eq!(
        names(&leader),
        vec!["b"],
        "only the stalled stream is removed"
    );
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_never_overtakes_pending_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leader_config(dir.path());
    c.keepalive = Duration::from_millis(2);
    let leader = start_leader(c).await;
    let mut s = sync(&leader.url(), 7, 1, "f").await.unwrap();
    let rs = regions(1, 3_000, 8);
    let feeder = {
        let leader_url = leader.url();
        let shared = leader.shared().clone();
        let rs = rs.clone();
        tokio::spawn(async move {
            let mut c = client(&leader_url).await;
            for chunk in rs.chunks(100) {
                let before = shared
                    .stats()
                    .heartbeats
                    .load(std::sync::atomic::Ordering::Relaxed);
                let reqs: Vec<RegionHeartbeatRequest> =
                    chunk.iter().map(|r| heartbeat(7, r)).collect();
                // Keep the call open until the leader took the batch:
                // dropping it would cancel the stream mid-way.
                let _responses = c.region_heartbeat(tokio_stream::iter(reqs)).await.unwrap();
                while shared
                    .stats()
                    .heartbeats
                    .load(std::sync::atomic::Ordering::Relaxed)
                    < before + 100
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut cursor = 1u64;
    let mut keepalives = 0;
    while cursor < 3_001 {
        assert!(Instant::now() < deadline, "records stopped at {cursor}");
        let f = next_frame(&mut s).await.unwrap().unwrap();
        assert_eq!(
            f.start_index, cursor,
            "a frame claims an index other than the cursor"
        );
        if f.regions.is_empty() {
            keepalives += 1;
        }
        cursor += f.regions.len() as u64;
    }
    feeder.await.unwrap();
    println!("{keepalives} keepalive frames interleaved with 3000 records");
    assert!(keepalives > 0, "the test never saw a keepalive");
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_follower_that_stopped_reading_completes_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leader_config(dir.path());
    c.shutdown_timeout = Duration::from_millis(500);
    let leader = start_leader(c).await;
    let url = leader.url();
    let mut stalled = sync(&url, 7, 1, "stalled").await.unwrap();
    next_frame(&mut stalled).await.unwrap().unwrap();
    let mut reader = sync(&url, 7, 1, "reader").await.unwrap();
    next_frame(&mut reader).await.unwrap().unwrap();
    // Separate batches make separate frames: more than the stalled
    // stream's buffers hold, so its sender is blocked when we stop.
    for chunk in regions(1, 3_000, 1024).chunks(300) {
        feed(&leader, chunk).await;
    }
    // The reader drains what there is.
    let mut got = 0;
    while got < 3_000 {
        got += next_frame(&mut reader)
            .await
            .unwrap()
            .unwrap()
            .regions
            .len();
    }
    let reading = tokio::spawn(async move {
        loop {
            match next_frame(&mut reader).await {
                Ok(Some(f)) if f.header.as_ref().and_then(|h| h.error.as_ref()).is_some() => {
                    return Some(f);
                }
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    });
    let t = Instant::now();
    leader.shutdown().await;
    let took = t.elapsed();
    println!("shutdown with a stalled follower took {took:?} (bound 500 ms)");
    assert!(
        took < Duration::from_millis(1_500),
        "shutdown took {took:?}"
    );
    let stopped = reading
        .await
        .unwrap()
        .expect("the reading follower got the stop frame");
    let err = stopped.header.unwrap().error.unwrap();
    assert_eq!(err.r#type, ErrorType::Unknown as i32);
    assert_eq!(err.message, "server stopped");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_id_and_malformed_heartbeats_are_refused_and_the_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(dir.path())).await;
    feed(&leader, &regions(1, 10, 8)).await;
    let held = leader.shared().held(None);
    let before = (held.digest, held.next_index);

    let status = sync(&leader.url(), 8, 0, "other").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("7") && status.message().contains("8"),
        "{}",
        status.message()
    );

    let mut c = client(&leader.url()).await;
    let wrong = heartbeat(8, &region(99, b"zz", b"", 1));
    let mut resp = c
        .region_heartbeat(tokio_stream::iter(vec![wrong]))
        .await
        .unwrap()
        .into_inner();
    let status = resp.message().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let mut no_peers = region(5, b"a", b"b", 9);
    no_peers.peers.clear();
    let backwards = region(6, b"q", b"p", 9);
    let reqs = vec![heartbeat(7, &no_peers), heartbeat(7, &backwards)];
    let mut resp = c
        .region_heartbeat(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    for (id, why) in [(5, "no peers"), (6, ">=")] {
        let r = resp.message().await.unwrap().unwrap();
        let err = r.header.unwrap().error.unwrap();
        assert_eq!(err.r#type, ErrorType::InvalidValue as i32);
        assert!(
            err.message.contains(&format!("region {id}")) && err.message.contains(why),
            "{}",
            err.message
        );
        assert_eq!(r.region_id, id);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = leader.shared().held(None);
    let after = (held.digest, held.next_index);
    assert_eq!(before, after);
    assert_eq!(leader.shared().stats().refused.load(Ordering::Relaxed), 2);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_keeps_regions_and_numbering_and_routes_by_its_new_ring() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leader_config(dir.path());
    c.history_capacity = 10;
    let leader = start_leader(c.clone()).await;
    feed(&leader, &regions(1, 50, 8)).await;
    let digest = leader.shared().held(None).digest;
    leader.shutdown().await;

    let leader = start_leader(c).await;
    {
        let shared = leader.shared();
        assert_eq!(shared.held(None).regions, 50);
        assert_eq!(shared.held(None).digest, digest);
        let ring = shared.ring_view();
        assert_eq!((ring.first_index, ring.next_index), (51, 51));
        assert_eq!(shared.cluster_id(), 7);
    }
    let mut behind = sync(&leader.url(), 7, 45, "behind").await.unwrap();
    let (snapshot, catch_up, completion) = read_full_sync(&mut behind, 50).await;
    assert_eq!(snapshot.len(), 50);
    assert!(catch_up.is_empty());
    assert_eq!(completion, 51);

    let mut current = sync(&leader.url(), 7, 51, "current").await.unwrap();
    let f = next_frame(&mut current).await.unwrap().unwrap();
    assert_eq!((f.start_index, f.regions.len()), (51, 0));
    quiet(&mut current).await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_commit_fails_serves_what_is_on_disk_and_claims_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(dir.path())).await;
    let rs = regions(1, 10, 8);
    feed(&leader, &rs).await;
    let mut watching = sync(&leader.url(), 7, 11, "watcher").await.unwrap();
    assert!(
        next_frame(&mut watching)
            .await
            .unwrap()
            .unwrap()
            .regions
            .is_empty()
    );

    // The disk is full for the next commit: the change must not be served.
    leader.shared().inject_storage_failures(1);
    let mut c = client(&leader.url()).await;
    let changed = bumped(&rs[..1], 2);
    let responses = c
        .region_heartbeat(tokio_stream::iter(vec![heartbeat(7, &changed[0])]))
        .await
        .unwrap();
    let shared = leader.shared().clone();
    eventually(
        "the failed commit to be noticed",
        Duration::from_secs(10),
        || shared.is_failed(),
    )
    .await;
    drop(responses);
    // Claims stop first; then the store goes back to what is on disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = shared.region(1).unwrap().region;
        if held == rs[0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader serves a change it could not persist: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let status = shared.status();
    assert!(!status.ready && status.phase == "failed", "{status:?}");
    // Streams end with an error frame; new ones are refused: no index is
    // claimed any more.
    let frame = next_frame(&mut watching).await.unwrap().unwrap();
    let error = frame.header.unwrap().error.expect("an error frame");
    assert!(error.message.contains("cannot persist"), "{error:?}");
    let refused = sync(&leader.url(), 7, 0, "late").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_full_sync_is_never_silent_for_long_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = leader_config(dir.path());
    config.full_sync_rate = Some(20_000);
    config.keepalive = Duration::from_millis(500);
    let leader = start_leader(config).await;
    feed(&leader, &regions(1, 200, 64)).await;
    let mut s = sync(&leader.url(), 7, 0, "slow").await.unwrap();
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut frames = 0;
    loop {
        let frame = next_frame(&mut s).await.unwrap().unwrap();
        longest = longest.max(last.elapsed());
        last = Instant::now();
        frames += 1;
        if frame.regions.is_empty() && frames > 1 {
            break;
        }
    }
    // The follower gives up after three keepalives of silence.
    assert!(
        longest < Duration::from_millis(1_500),
        "silent for {longest:?} between frames (keepalive 500 ms)"
    );
    assert!(
        frames > 3,
        "the rate limit should cut the snapshot into small frames"
    );
    // Stopping while paced ends at once, not after the pace.
    let mut s = sync(&leader.url(), 7, 0, "slow-again").await.unwrap();
    next_frame(&mut s).await.unwrap().unwrap();
    let started = Instant::now();
    leader.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Issue #30 item 4: a data directory left mid-sync (a follower's partial
/// snapshot: regions on disk, no completion) must not be led as if it were
/// the cluster's set. `regionsync leader` refuses it with the reason; a node
/// elected as an empty node of a new cluster clears it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_store_is_refused_as_a_leader_or_cleared_when_asked() {
    use prost::Message;
    use regionsync::leader::{Leader, StartError};
    use regionsync::storage::{Storage, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = Storage::open(dir.path()).unwrap();
        let mut batch = WriteBatch {
            reset: true,
            next_index: Some(40),
            complete: Some(false),
            cluster_id: Some(7),
            durable: true,
            ..Default::default()
        };
        for r in regions(1, 30, 8) {
            batch.put_encoded(r.id, r.peers[0].id, 0, &r.encode_to_vec());
        }
        storage.write(&batch).unwrap();
    }
    match Leader::start(leader_config(dir.path()), policy()) {
        Err(e @ StartError::Incomplete { regions: 30, .. }) => {
            let said = e.to_string();
            assert!(said.contains("incomplete copy"), "{said}");
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(l) => panic!(
            "a partial store was led with {} regions",
            l.shared.held(None).regions
        ),
    }
    // Refused without a write: the copy is still there for a follower.
    assert!(!Storage::open(dir.path()).unwrap().meta().unwrap().complete);

    let mut config = leader_config(dir.path());
    config.clear_incomplete = true;
    let leader = Leader::start(config, policy()).expect("cleared, it leads as an empty node");
    assert_eq!(leader.shared.held(None).regions, 0);
    assert_eq!(leader.shared.published_index(), 1);
    leader.shutdown().await;
}

/// Issue #30 item 10: a SyncRegions stream that never sends its request is
/// closed after the bound (not held forever); SyncRegions and heartbeat
/// streams beyond the leader's limits are refused with RESOURCE_EXHAUSTED;
/// each refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_bounded_in_number_and_a_silent_sync_stream_is_closed() {
    use regionsync_proto::pdpb::SyncRegionRequest;
    let dir = tempfile::tempdir().unwrap();
    let mut config = leader_config(dir.path());
    config.first_request_timeout = Duration::from_millis(300);
    config.max_sync_streams = 2;
    config.max_heartbeat_streams = 1;
    let leader = start_leader(config).await;
    let cluster_id = leader.shared().cluster_id();
    feed(&leader, &regions(1, 10, 8)).await;
    let stats = &leader.shared().stats();

    let mut c = client(&leader.url()).await;
    let silent = tokio::time::timeout(
        Duration::from_secs(5),
        c.sync_regions(tokio_stream::pending::<SyncRegionRequest>()),
    )
    .await
    .expect("a stream that sends no request is held open");
    assert_eq!(silent.unwrap_err().code(), Code::DeadlineExceeded);
    assert_eq!(stats.sync_first_request_timeouts.load(Ordering::Relaxed), 1);

    let next = leader.shared().held(None).next_index;
    let mut a = sync(&leader.url(), cluster_id, next, "a").await.unwrap();
    let mut b = sync(&leader.url(), cluster_id, next, "b").await.unwrap();
    next_frame(&mut a).await.unwrap();
    next_frame(&mut b).await.unwrap();
    let third = sync(&leader.url(), cluster_id, next, "c").await;
    assert_eq!(third.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(stats.sync_streams_refused.load(Ordering::Relaxed), 1);
    drop((a, b));

    // The feed's stream may still be closing: one held stream at a time.
    let held = loop {
        let mut c = client(&leader.url()).await;
        match c
            .region_heartbeat(tokio_stream::pending::<RegionHeartbeatRequest>())
            .await
        {
            Ok(held) => break held,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let refused_before = stats.heartbeat_streams_refused.load(Ordering::Relaxed);
    let mut c = client(&leader.url()).await;
    let second = c
        .region_heartbeat(tokio_stream::pending::<RegionHeartbeatRequest>())
        .await;
    assert_eq!(second.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(
        stats.heartbeat_streams_refused.load(Ordering::Relaxed),
        refused_before + 1
    );
    drop(held);
    leader.shutdown().await;
}

/// Issue #30 item 1, in one process: a leader whose fence lapsed gets a
/// keepalive answer late (the lease was granted again, but another node
/// may have won in between). The lapse is final: no change is taken or
/// published after it, and the store and the ring keep one numbering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_fence_stays_closed_when_a_late_answer_extends_it() {
    use regionsync::leader::fence::{Fence, Moment};
    let dir = tempfile::tempdir().unwrap();
    let mut config = leader_config(dir.path());
    let fence = std::sync::Arc::new(Fence::until(Moment::now() + Duration::from_millis(400)));
    config.fence = fence.clone();
    let leader = start_leader(config).await;
    feed(&leader, &regions(1, 10, 8)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let published = leader.shared().published_index();
    // The answer to a keepalive sent before the deadline, after it.
    let _ = fence.extend(Moment::now() + Duration::from_secs(60));
    let mut c = client(&leader.url()).await;
    let mut resp = c
        .region_heartbeat(tokio_stream::iter(vec![heartbeat(
            7,
            &region(50, b"zz", b"", 1),
        )]))
        .await
        .unwrap()
        .into_inner();
    let status = resp.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(leader.shared().published_index(), published);
    assert_eq!(
        leader.shared().held(None).next_index,
        leader.shared().applied().0
    );
    leader.shutdown().await;
}
