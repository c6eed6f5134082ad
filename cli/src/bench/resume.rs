//! `resume`: a durable follower that was away while the leader took N
//! changes comes back: from its start (store opened, stream connected) to
//! caught up, with no snapshot sent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Figure, Options, Report};
use regionsync_harness::cluster::{self, ms};

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let (ldir, fdir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let leader = cluster::leader(ldir.path(), false).await?;
    let n = o.live_regions;
    cluster::populate(&leader, n, 1).await?;
    let first = cluster::follower(&leader, Some(fdir.path()), "bench-resume", false).await?;
    cluster::caught_up(&leader, &first, Duration::from_secs(120)).await?;
    first.shutdown().await;
    let (mut took, mut bytes, mut opened) = (vec![], vec![], vec![]);
    for run in 0..o.runs {
        // Changes spread over the key space while the follower is away.
        let hbs = (0..o.behind)
            .map(|i| {
                let k = (i * (n / o.behind.max(1)) + run as u64) % n;
                cluster::busy_heartbeat(cluster::sample_region(k, n, 2 + run as u64), i)
            })
            .collect();
        cluster::feed_heartbeats(&leader, hbs).await?;
        let t = Instant::now();
        let f = cluster::follower(&leader, Some(fdir.path()), "bench-resume", false).await?;
        // The stream is open once the follower counts a connect.
        while f.shared().stats().connects.load(Ordering::Relaxed) == 0 {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "the follower never connected"
            );
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let connected = Instant::now();
        cluster::caught_up(&leader, &f, Duration::from_secs(60)).await?;
        let d = ms(connected.elapsed());
        opened.push(ms(connected - t));
        let status = f.shared().status();
        anyhow::ensure!(
            status.full_syncs.values().sum::<u64>() == 0,
            "the resume took a full sync: {:?}",
            status.full_syncs
        );
        anyhow::ensure!(
            cluster::same_digest(&leader, &f),
            "digests differ after resume"
        );
        let b = f.shared().stats().bytes.load(Ordering::Relaxed) as f64;
        progress(&format!("  run {run}: {d:.1} ms, {b:.0} bytes"));
        took.push(d);
        bytes.push(b);
        f.shutdown().await;
    }
    let name = format!("resume {} behind: connect to caught up", o.behind);
    r.figure(Figure::of(
        format!("store of {n} regions opened, to connect"),
        "ms",
        opened,
    ));
    r.figure(Figure::of(name.clone(), "ms", took));
    r.figure(Figure::of("bytes received", "B", bytes));
    r.at_most(&name, 50.0);
    r.check("no run took a snapshot; every run ended with equal digests");
    leader.shutdown().await;
    Ok(())
}
