//! `churn`: a full sync of N regions while the leader keeps taking changes
//! at a steady rate (the catch-up from the store of docs/protocol.md §7),
//! against the same full sync with the leader quiet, in the same run. It
//! must complete under the churn, and once the churn stops the follower's
//! digest must equal the leader's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use regionsync_proto::pdpb::RegionHeartbeatRequest;
use regionsync_proto::pdpb::pd_client::PdClient;

use super::{Figure, Options, Report};
use regionsync::role::RunningLeader;
use regionsync_harness::cluster::{self, ms};
use regionsync_harness::eventually::poll_until;

/// Changes sent at `rate` per second, each bumping one region's version,
/// until stopped; `sent` counts them. Versions keep rising across runs.
fn churn(
    leader: &RunningLeader,
    n: u64,
    rate: u64,
    counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let url = leader.url();
    tokio::spawn(async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<RegionHeartbeatRequest>(10_000);
        let mut client = PdClient::connect(url).await?;
        let stream = tokio::spawn(async move {
            client
                .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
        });
        let per_tick = (rate / 1_000).max(1);
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            for _ in 0..per_tick {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                let hb = cluster::busy_heartbeat(cluster::sample_region(k % n, n, 2 + k / n), k);
                tx.send(hb).await?;
            }
        }
        drop(tx);
        stream.await??;
        Ok(())
    })
}

/// Start a durable follower and wait until it is ready (its full sync
/// complete); the time that took.
async fn full_sync(
    leader: &RunningLeader,
    limit: Duration,
) -> anyhow::Result<(f64, regionsync::role::RunningFollower, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let follower = cluster::follower(leader, Some(dir.path()), "bench-churn", false).await?;
    let shared = follower.shared().clone();
    let ready = poll_until(limit, Duration::from_micros(200), || {
        std::future::ready(shared.is_ready().then_some(()))
    })
    .await;
    anyhow::ensure!(
        ready.is_some(),
        "the full sync did not complete within {limit:?}"
    );
    Ok((ms(t.elapsed()), follower, dir))
}

/// Until the leader's intake has drained what the churn sent (its index
/// stops moving) and the follower has caught up with it.
async fn settled(
    leader: &RunningLeader,
    follower: &regionsync::role::RunningFollower,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let want = leader.shared().held(None).next_index;
        cluster::caught_up(leader, follower, limit).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if leader.shared().held(None).next_index == want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the leader's index kept moving after the churn stopped"
        );
    }
}

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let n = o.regions;
    let limit = Duration::from_secs(60 + n / 10_000);
    let dir = tempfile::tempdir()?;
    let leader = cluster::leader(dir.path(), false).await?;
    cluster::populate(&leader, n, 1).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let (mut quiet, mut busy, mut ratio, mut during) = (vec![], vec![], vec![], vec![]);
    for run in 0..o.runs {
        let (q, follower, _d) = full_sync(&leader, limit).await?;
        follower.shutdown().await;

        let stop = Arc::new(AtomicBool::new(false));
        let feeder = churn(&leader, n, o.churn_rate, counter.clone(), stop.clone());
        // Let the churn reach its rate before the follower asks.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let from = leader.shared().held(None).next_index;
        let (b, follower, _d2) = full_sync(&leader, limit).await?;
        let changes = leader.shared().held(None).next_index - from;
        stop.store(true, Ordering::Relaxed);
        feeder.await??;
        settled(&leader, &follower, limit).await?;
        anyhow::ensure!(
            cluster::same_digest(&leader, &follower),
            "after the churn the follower's digest differs from the leader's"
        );
        follower.shutdown().await;
        progress(&format!(
            "  run {run}: quiet {q:.0} ms, under churn {b:.0} ms ({changes} changes meanwhile)"
        ));
        quiet.push(q);
        busy.push(b);
        ratio.push(b / q);
        during.push(changes as f64);
    }
    let rate = o.churn_rate;
    r.figure(Figure::of(
        format!("full sync of {n} regions, leader quiet"),
        "ms",
        quiet,
    ));
    r.figure(Figure::of(
        format!("full sync of {n} regions under {rate} changes/s"),
        "ms",
        busy,
    ));
    r.figure(Figure::of("under churn / quiet", "x", ratio));
    r.figure(Figure::of(
        "changes the leader took during the sync",
        "changes",
        during,
    ));
    r.check(format!(
        "every run: the full sync completed under {rate} changes/s; once the churn stopped the follower caught up with the leader's digest"
    ));
    leader.shutdown().await;
    Ok(())
}
