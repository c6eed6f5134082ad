//! Followers against a real leader over loopback gRPC, with real redb
//! stores: resume, full sync that replaces, crashes mid-sync, readiness,
//! leader restarts, foreign clusters, damaged stores (docs/protocol.md §3).

use std::sync::Arc;
use std::time::Duration;

use regionsync::follower::{FollowerConfig, StartError};
use regionsync::role::NodeError;
use regionsync::storage::{Storage, StorageError};
use regionsync_harness::cluster::*;
use regionsync_harness::eventually::*;
use regionsync_proto::pdpb::GetRegionByIdRequest;
use tonic::Code;

fn stored_ids(dir: &std::path::Path) -> Vec<u64> {
    let storage = Storage::open(dir).unwrap();
    let mut ids = Vec::new();
    storage.load_regions(|r, _, _| ids.push(r.id)).unwrap();
    ids.sort();
    ids
}

/// Start a follower that must refuse to start; why it refused.
async fn start_refused(config: FollowerConfig) -> StartError {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = regionsync::role::RunningFollower::start(config, policy(), listener)
        .await
        .err()
        .expect("the follower refused to start");
    match err {
        NodeError::Follower(e) => e,
        other => panic!("not the follower's own refusal: {other}"),
    }
}

/// How many regions a follower serves (paging like a PD client), or the
/// error it answers with.
async fn scan_all(url: &str) -> Result<usize, tonic::Status> {
    let mut c = client(url).await;
    regionsync_harness::load::scan_all(&mut c, 7)
        .await
        .map(|regions| regions.len())
        .map_err(|e| e.downcast::<tonic::Status>().expect("a gRPC status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_10666_a_follower_behind_the_ring_catches_up_and_drops_the_merged_away_region() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut lc = leader_config(ldir.path());
    lc.history_capacity = 10;
    let leader = start_leader(lc).await;
    let rs = regions(1, 20, 8);
    feed(&leader, &rs).await;
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    assert!(stored_ids(fdir.path()).contains(&5));

    // 100 changes while the follower is down, the first a merge: region 4
    // absorbs region 5, which the follower still holds.
    let mut merged = rs[3].clone();
    merged.end_key = rs[4].end_key.clone();
    merged.region_epoch.as_mut().unwrap().version = 2;
    let mut changes = vec![merged];
    for round in 0..99u64 {
        let mut r = rs[(5 + round as usize % 15).min(19)].clone();
        r.region_epoch.as_mut().unwrap().conf_ver = 2 + round;
        changes.push(r);
    }
    feed(&leader, &changes).await;
    let ring = leader.shared().ring_view();
    assert!(
        ring.first_index > 21,
        "the follower's index fell off the ring: {ring:?}"
    );
    assert!(leader.shared().region(5).is_none());

    // It says so, and takes only what changed (a delta), not a snapshot.
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let status = f.shared().status();
    assert_eq!(status.details.get("deltas"), Some(&1), "{status:?}");
    assert!(status.full_syncs.is_empty(), "{status:?}");
    let mut c = client(&f.url()).await;
    let gone = c
        .get_region_by_id(GetRegionByIdRequest {
            header: header(7),
            region_id: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        gone.region.is_none(),
        "the merged-away region is still served"
    );
    f.shutdown().await;
    let ids = stored_ids(fdir.path());
    assert!(
        !ids.contains(&5),
        "the merged-away region is still stored: {ids:?}"
    );
    assert_eq!(ids.len(), 19);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_within_the_ring_replays_history_only() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, rs, f) = leader_and_synced_follower(ldir.path(), fdir.path(), 200).await;
    feed(&leader, &bumped(&rs[150..], 2)).await; // live records, committed lazily
    converged(&leader, &f).await;
    f.shutdown().await;
    let stored = Storage::open(fdir.path()).unwrap().meta().unwrap();
    assert_eq!(
        stored.next_index,
        leader.shared().held(None).next_index,
        "a clean stop makes the newest index durable"
    );
    feed(&leader, &bumped(&rs[..50], 2)).await;
    let served_before = leader.shared().stats().full_syncs_by_reason();

    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let status = f.shared().status();
    assert!(status.full_syncs.is_empty(), "{:?}", status.full_syncs);
    assert_eq!(
        leader.shared().stats().full_syncs_by_reason(),
        served_before
    );
    assert_eq!(
        f.shared().held(None).ring_len,
        50,
        "the replayed records are in the follower's ring"
    );
    f.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_after_k_snapshot_frames_is_not_ready_until_a_new_full_sync_completes() {
    let ldir = tempfile::tempdir().unwrap();
    let mut lc = leader_config(ldir.path());
    lc.full_sync_rate = Some(4 << 20);
    let leader = start_leader(lc).await;
    let total = 5_000usize;
    feed(&leader, &regions(1, total as u64, 512)).await;

    for k in [1u64, 2, 4] {
        let fdir = tempfile::tempdir().unwrap();
        let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
        let progress = f.shared().clone();
        eventually("k snapshot frames", Duration::from_secs(20), || {
            progress
                .stats()
                .snapshot_progress
                .load(std::sync::atomic::Ordering::Relaxed)
                >= k * 1_000
        })
        .await;
        assert!(!f.shared().status().ready);
        f.kill().await;
        let meta = Storage::open(fdir.path()).unwrap().meta().unwrap();
        assert!(
            !meta.complete,
            "a cut full sync left a store that claims index {}",
            meta.next_index
        );

        let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
        assert!(
            !f.shared().status().ready,
            "ready before any sync after a cut full sync"
        );
        let url = f.url();
        let mut refused = 0;
        loop {
            match scan_all(&url).await {
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    refused += 1;
                }
                Ok(n) => {
                    assert_eq!(n, total, "served a partial set of {n} regions (k = {k})");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused > 0, "the test never saw the follower not ready");
        converged(&leader, &f).await;
        f.shutdown().await;
    }
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_header_frame_makes_the_follower_reconnect_with_its_index_unchanged() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lc = leader_config(ldir.path());
    let leader = start_leader(lc.clone()).await;
    let addr = leader.server.local_addr();
    feed(&leader, &regions(1, 100, 8)).await;
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    let index = f.shared().status().next_index;

    leader.shutdown().await; // every stream gets the "server stopped" error frame
    let shared = f.shared().clone();
    eventually(
        "a reconnect for the error header",
        Duration::from_secs(5),
        || {
            shared
                .stats()
                .reconnect_counts()
                .contains_key("error_header")
        },
    )
    .await;
    assert_eq!(f.shared().status().next_index, index);
    assert!(
        f.shared().status().ready,
        "a complete store stays readable while reconnecting"
    );

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let leader = regionsync::role::RunningLeader::start(lc, policy(), listener)
        .await
        .unwrap();
    converged(&leader, &f).await;
    assert_eq!(f.shared().status().next_index, index);
    f.shutdown().await;
    assert_eq!(
        Storage::open(fdir.path())
            .unwrap()
            .meta()
            .unwrap()
            .next_index,
        index
    );
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restart_under_a_running_follower_resumes_by_history_and_converges() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lc = leader_config(ldir.path());
    let leader = start_leader(lc.clone()).await;
    let addr = leader.server.local_addr();
    let rs = regions(1, 300, 8);
    feed(&leader, &rs).await;
    let mut fc = follower_config(&leader, Some(fdir.path()));
    fc.keepalive = Duration::from_millis(300);
    let f = start_follower(fc).await;
    converged(&leader, &f).await;

    leader.shutdown().await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let leader = regionsync::role::RunningLeader::start(lc, policy(), listener)
        .await
        .unwrap();
    // Changes before the follower is back: it must resume by history.
    feed(&leader, &bumped(&rs[..20], 2)).await;
    converged(&leader, &f).await;
    assert!(!f.shared().status().full_syncs.contains_key("leader_routed"));
    assert_eq!(leader.shared().stats().full_syncs_by_reason().len(), 0);
    // Its restart began a term of its own, and the follower's records are
    // the earlier term's, which the restarted leader continued.
    let diverged = leader
        .shared()
        .stats()
        .diverged
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(diverged, 0, "a plain restart is not a fork");
    assert_eq!(
        leader.shared().lineage().starts().len(),
        2,
        "{}",
        leader.shared().lineage()
    );
    feed(&leader, &bumped(&rs[20..40], 2)).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_pointed_at_another_cluster_refuses_and_keeps_its_store_byte_for_byte() {
    let (adir, bdir, fdir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = start_leader(leader_config(adir.path())).await;
    feed(&a, &regions(1, 100, 8)).await;
    let f = start_follower(follower_config(&a, Some(fdir.path()))).await;
    converged(&a, &f).await;
    f.shutdown().await;
    let file = fdir.path().join(regionsync::storage::FILE_NAME);
    let before = std::fs::read(&file).unwrap();

    let mut bc = leader_config(bdir.path());
    bc.cluster_id = Some(8);
    let b = start_leader(bc).await;
    feed(&b, &regions(1000, 10, 8)).await;
    let f = start_follower(follower_config(&b, Some(fdir.path()))).await;
    let shared = f.shared().clone();
    eventually("the refusal", Duration::from_secs(10), || {
        shared.status().phase == "refused"
    })
    .await;
    let why = shared.refusal().unwrap();
    assert!(
        why.contains("cluster 8") && why.contains("cluster 7"),
        "{why}"
    );
    assert_eq!(shared.status().cluster_id, 7);
    f.shutdown().await;
    assert!(
        std::fs::read(&file).unwrap() == before,
        "the store file changed"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_layout_or_damaged_gives_a_clear_error_or_a_full_sync() {
    let ldir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(ldir.path())).await;
    feed(&leader, &regions(1, 50, 8)).await;

    // Another layout: refused with a message naming it.
    let old = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(old.path().join(regionsync::storage::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("layout_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = start_refused(follower_config(&leader, Some(old.path()))).await;
    assert!(
        matches!(
            err,
            StartError::Storage(StorageError::Layout {
                found: Some(99),
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("layout version 99"), "{err}");

    // Not a database at all: a clear error.
    let junk = tempfile::tempdir().unwrap();
    std::fs::write(
        junk.path().join(regionsync::storage::FILE_NAME),
        vec![0x5a; 8192],
    )
    .unwrap();
    let err = start_refused(follower_config(&leader, Some(junk.path()))).await;
    assert!(
        matches!(
            err,
            StartError::Storage(StorageError::Damaged { .. } | StorageError::Io { .. })
        ),
        "{err}"
    );

    // A complete store with an undecodable region: a full sync replaces it.
    let damaged = tempfile::tempdir().unwrap();
    let f = start_follower(follower_config(&leader, Some(damaged.path()))).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    {
        let db =
            redb::Database::create(damaged.path().join(regionsync::storage::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("regions");
        txn.open_table(table)
            .unwrap()
            .insert(3, &[0u8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff][..])
            .unwrap();
        txn.commit().unwrap();
    }
    let f = start_follower(follower_config(&leader, Some(damaged.path()))).await;
    converged(&leader, &f).await;
    assert_eq!(f.shared().status().full_syncs.get("requested"), Some(&1));
    f.shutdown().await;
    assert_eq!(stored_ids(damaged.path()).len(), 50);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_only_follower_full_syncs_at_every_start_and_answers_no_read_before_ready() {
    let ldir = tempfile::tempdir().unwrap();
    let leader = start_leader(leader_config(ldir.path())).await;
    let rs = regions(1, 2_000, 64);
    feed(&leader, &rs).await;
    let churn = {
        let url = leader.url();
        let rs = rs.clone();
        tokio::spawn(async move {
            let mut c = client(&url).await;
            for version in 2..40u64 {
                let reqs: Vec<_> = bumped(&rs[..100], version)
                    .iter()
                    .map(|r| heartbeat(7, r))
                    .collect();
                // Read the answers to the end: the leader has then taken
                // every heartbeat (dropping the call would cancel it).
                let mut answers = c
                    .region_heartbeat(tokio_stream::iter(reqs))
                    .await
                    .expect("the leader takes heartbeats")
                    .into_inner();
                while let Some(a) = answers.message().await.expect("the heartbeat stream") {
                    assert!(
                        a.header.and_then(|h| h.error).is_none(),
                        "a heartbeat refused"
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Through a proxy held back at each start, so that reads are sure to
    // reach the follower before its full sync can end.
    let proxy = regionsync_harness::proxy::Proxy::start(leader.server.local_addr())
        .await
        .unwrap();
    for start in 0..2 {
        proxy.stall(true);
        let mut config = follower_config(&leader, None);
        config.leader = proxy.url();
        let f = start_follower(config).await;
        let url = f.url();
        let mut refused = 0;
        loop {
            if refused == 3 {
                proxy.stall(false);
            }
            match scan_all(&url).await {
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable);
                    refused += 1;
                }
                Ok(n) => {
                    assert_eq!(n, 2_000, "start {start}: served {n} regions");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // An empty cache at start: the reads before the full sync ended
        // were refused, not answered from it.
        assert!(
            refused > 0,
            "start {start}: no read was refused before ready"
        );
        assert_eq!(f.shared().status().full_syncs.get("requested"), Some(&1));
        f.shutdown().await;
    }
    churn.await.unwrap();
    // Every version of the churn landed: 38 versions of 100 regions.
    let accepted = leader
        .shared()
        .stats()
        .accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(accepted, 2_000 + 38 * 100);
    let f = start_follower(follower_config(&leader, None)).await;
    converged(&leader, &f).await;
    assert_eq!(f.shared().status().full_syncs.get("requested"), Some(&1));
    f.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_follower_learns_the_cluster_id_and_a_wrong_flag_is_refused_at_start() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start_leader(leader_config(ldir.path())).await;
    let f = start_follower(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    assert_eq!(
        Storage::open(fdir.path())
            .unwrap()
            .meta()
            .unwrap()
            .cluster_id,
        Some(7)
    );
    let mut c: FollowerConfig = follower_config(&leader, Some(fdir.path()));
    c.cluster_id = Some(9);
    let err = start_refused(c).await;
    assert!(
        matches!(err, StartError::ClusterMismatch { kept: 7, flag: 9 }),
        "{err}"
    );
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_keepalive_intervals_without_a_frame_end_the_stream_and_the_follower_reconnects() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start_leader(leader_config(ldir.path())).await; // keepalive every 10 s
    feed(&leader, &regions(1, 10, 8)).await;
    let mut fc = follower_config(&leader, Some(fdir.path()));
    fc.keepalive = Duration::from_millis(100); // expects one every 100 ms
    let f = start_follower(fc).await;
    converged(&leader, &f).await;
    let shared = f.shared().clone();
    eventually(
        "a reconnect for keepalive silence",
        Duration::from_secs(10),
        || {
            shared
                .stats()
                .reconnect_counts()
                .contains_key("keepalive_silence")
        },
    )
    .await;
    assert!(
        shared.status().ready,
        "a complete store stays readable while reconnecting"
    );
    feed(&leader, &bumped(&regions(1, 10, 8), 2)).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_id_given_by_flag_is_kept_so_a_start_without_it_refuses_another_cluster() {
    let (l7, l8, fdir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let leader7 = start_leader(leader_config(l7.path())).await;
    feed(&leader7, &regions(1, 100, 8)).await;
    let mut c8 = leader_config(l8.path());
    c8.cluster_id = Some(8);
    let leader8 = start_leader(c8).await;
    feed(&leader8, &regions(1_000, 200, 8)).await;

    let mut fc = follower_config(&leader7, Some(fdir.path()));
    fc.cluster_id = Some(7);
    let f = start_follower(fc).await;
    converged(&leader7, &f).await;
    f.shutdown().await;
    let meta = Storage::open(fdir.path()).unwrap().meta().unwrap();
    assert_eq!(
        meta.cluster_id,
        Some(7),
        "the flag's cluster id was not kept"
    );

    // The same store against cluster 8, without the flag: refused.
    let f = start_follower(follower_config(&leader8, Some(fdir.path()))).await;
    let shared = f.shared().clone();
    eventually("the follower to refuse", Duration::from_secs(10), || {
        shared.status().phase == "refused"
    })
    .await;
    assert!(!shared.is_ready());
    f.shutdown().await;
    assert_eq!(stored_ids(fdir.path()), (1..=100).collect::<Vec<_>>());
    leader7.shutdown().await;
    leader8.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_cache_and_store_equal_and_the_follower_catches_up() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, rs, f) = leader_and_synced_follower(ldir.path(), fdir.path(), 200).await;

    // The next two writes fail (a full disk), while history arrives.
    f.shared().inject_storage_failures(2);
    feed(&leader, &bumped(&rs[..50], 2)).await;
    let shared = f.shared().clone();
    eventually("a failed write", Duration::from_secs(10), || {
        shared
            .stats()
            .reconnect_counts()
            .contains_key("store_error")
    })
    .await;
    converged(&leader, &f).await;
    f.shutdown().await;

    // What redb holds is what the leader has: no index claimed without its
    // data (the replay once found the records "unchanged" in the cache and
    // wrote only the index).
    assert_eq!(
        digest_on_disk(&Storage::open(fdir.path()).unwrap()),
        leader.shared().held(None).digest
    );
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reset_never_leaves_a_ready_follower_on_an_emptied_cache() {
    use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut lc = leader_config(ldir.path());
    lc.history_capacity = 10;
    let leader = start_leader(lc).await;
    let rs = regions(1, 300, 8);
    feed(&leader, &rs).await;
    // Conservative takes no deltas: behind the ring, its store is reset.
    let conservative = || {
        let wasm = WasmRuntime::new(Default::default()).unwrap();
        Arc::new(PolicyRuntime::new(wasm, PolicySource::Builtin("conservative")).unwrap())
    };
    let start = |config| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        regionsync::role::RunningFollower::start(config, conservative(), listener)
            .await
            .unwrap()
    };
    let f = start(follower_config(&leader, Some(fdir.path()))).await;
    converged(&leader, &f).await;
    f.shutdown().await;
    feed(&leader, &bumped(&rs[..50], 2)).await;

    // Back behind the ring: the full sync's reset is the first write, and it
    // fails (a full disk). The leader's bytes are held back until the
    // failure is armed, so that it is the reset that fails.
    let proxy = regionsync_harness::proxy::Proxy::start(leader.server.local_addr())
        .await
        .unwrap();
    proxy.stall(true);
    let mut config = follower_config(&leader, Some(fdir.path()));
    config.leader = proxy.url();
    let f = start(config).await;
    f.shared().inject_storage_failures(1);
    proxy.stall(false);
    let shared = f.shared().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut failed = false;
    loop {
        let status = shared.status();
        failed |= shared
            .stats()
            .reconnect_counts()
            .contains_key("store_error");
        assert!(
            !status.ready || status.regions == 300,
            "ready on {} regions: {status:?}",
            status.regions
        );
        if failed && status.ready && status.digest == leader.shared().held(None).digest.hex() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f.shutdown().await;
    leader.shutdown().await;
}

/// Issue #30 item 2: a hand-over (promotion) while a frame is being applied.
/// The session is dropped at once, but its apply goes on in a blocking
/// task; the hand-over must wait for it, so that the set it hands to the
/// next role is the set the store holds. Before, the apply's write failed
/// against the store already taken, and the cache it changed was handed
/// over anyway: a leader serving changes it never persisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_waits_for_the_apply_in_flight() {
    use regionsync::follower::Follower;
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start_leader(leader_config(ldir.path())).await;
    let rs = regions(1, 200, 8);
    feed(&leader, &rs).await;
    let f = Follower::start(follower_config(&leader, Some(fdir.path())), policy()).unwrap();
    let l = leader.shared().clone();
    let shared = f.shared.clone();
    eventually("the follower to sync", Duration::from_secs(30), || {
        shared.is_ready() && shared.state().next_index == l.held(None).next_index
    })
    .await;

    shared.pause_applies(Duration::from_millis(1_500));
    let version = rs[0].region_epoch.unwrap().version;
    let bumped = bumped(&rs[..5], version + 1);
    feed(&leader, &bumped).await;
    eventually("a frame's apply in flight", Duration::from_secs(10), || {
        shared.store_is_busy()
    })
    .await;
    let handover = f.hand_over().await.expect("a complete follower hands over");
    assert_eq!(
        handover.store.digest(),
        digest_on_disk(&handover.storage),
        "the handed-over set differs from the store it came with"
    );
    assert_eq!(
        handover
            .store
            .get(1)
            .unwrap()
            .region
            .region_epoch
            .unwrap()
            .version,
        bumped[0].region_epoch.unwrap().version,
        "the apply in flight ended before the hand-over"
    );
    leader.shutdown().await;
}

/// The digest of the regions `storage` holds.
fn digest_on_disk(storage: &Storage) -> regionsync::digest::SetDigest {
    let mut digest = regionsync::digest::SetDigest::default();
    storage.load_regions(|r, _, _| digest.add(&r)).unwrap();
    digest
}

/// Copy the files of a stopped node's data directory (its store), as a
/// backup would.
fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A leader restored from an older copy of its store, that has since taken
/// other changes past the follower's index, holds other records under the
/// follower's indexes: a history forked from the follower's. The follower
/// must not resume by index from it (a ready follower would hold a set the
/// leader never had), but take a full sync and hold the leader's set. The
/// fault scenarios met the same fork when a follower's proxy reached
/// another scenario's leader of the same cluster id (issue #31).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_does_not_resume_over_a_forked_history() {
    let (ldir, backup, fdir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let rs = regions(1, 100, 8);
    let leader = start_leader(leader_config(ldir.path())).await;
    feed(&leader, &rs).await;
    leader.shutdown().await;
    copy_store(ldir.path(), backup.path());

    // The leader goes on from its own store, with the follower.
    let leader = start_leader(leader_config(ldir.path())).await;
    let proxy = regionsync_harness::proxy::Proxy::start(leader.server.local_addr())
        .await
        .unwrap();
    let mut config = follower_config(&leader, Some(fdir.path()));
    config.leader = proxy.url();
    let f = start_follower(config.clone()).await;
    converged(&leader, &f).await;
    feed(&leader, &bumped(&rs[..50], 2)).await;
    converged(&leader, &f).await;
    let follower_at = f.shared().held(None).next_index;
    f.shutdown().await;
    leader.shutdown().await;

    // The backup is restored where the leader was, and takes other changes
    // past the follower's index.
    let restored = start_leader(leader_config(backup.path())).await;
    feed(&restored, &bumped(&rs[50..], 3)).await;
    feed(&restored, &bumped(&rs[..10], 4)).await;
    let restored_at = restored.shared().held(None);
    assert!(
        restored_at.next_index > follower_at,
        "the restored leader ({}) is past the follower ({follower_at})",
        restored_at.next_index
    );
    proxy.retarget(restored.server.local_addr());
    let f = start_follower(config).await;
    let shared = f.shared().clone();
    eventually(
        "the follower ready at the restored leader's index",
        Duration::from_secs(30),
        || {
            let held = shared.held(None);
            held.ready && held.next_index == restored_at.next_index
        },
    )
    .await;
    let held = f.shared().held(None);
    assert_eq!(
        held.digest,
        restored_at.digest,
        "a ready follower held digest {} at index {}, the leader had {} there",
        held.digest.hex(),
        held.next_index,
        restored_at.digest.hex()
    );
    converged(&restored, &f).await;
    assert!(
        restored
            .shared()
            .stats()
            .diverged
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the restored leader saw the fork"
    );
    f.shutdown().await;
    restored.shutdown().await;
}
