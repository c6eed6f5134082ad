//! `live`: a leader under steady heartbeat churn with several durable
//! followers. Every change is a heartbeat that bumps a region's version,
//! sent at a fixed rate on one stream; the latency of a change is from the
//! moment it leaves the sender to the moment a follower's state has its
//! index applied (sampled every 0.5 ms by a thread of its own; the figure is
//! thus an upper bound on the leader-accepted-to-applied time, by up to
//! the sampling interval).
//!
//! `swap-under-load`: the same, while each node's policy is swapped over its
//! admin interface (default and conservative in turn), timing each
//! request's round trip; no stream may drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regionsync_proto::pdpb::RegionHeartbeatRequest;
use regionsync_proto::pdpb::pd_client::PdClient;

use super::{Figure, Options, Report};
use regionsync::admin::{self, AdminAccess};
use regionsync::policy_runtime::builtin;
use regionsync::role::RunningFollower;
use regionsync_harness::admin_client;
use regionsync_harness::cluster::{self, ms};
use regionsync_harness::eventually::poll_until;

/// What one live run saw.
struct LiveRun {
    /// Latency samples (ms), every follower's together.
    latencies: Vec<f64>,
    /// Changes sent, and over how long.
    sent: u64,
    secs: f64,
    /// Process CPU seconds over the load.
    cpu: f64,
    /// Policy calls every node made over the load.
    calls: u64,
    /// Swap round trips (ms).
    swaps: Vec<f64>,
    /// Follower streams re-opened during the run.
    reconnects: u64,
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// How often the sampler looks: fine enough for a 10 ms target, coarse
/// enough that the sampler itself takes little of a small machine.
const SAMPLE_EVERY: Duration = Duration::from_micros(500);

/// Index transitions of one follower: (applied next index, when).
type Samples = Vec<(u64, Instant)>;

fn sample(
    followers: Vec<Arc<regionsync::follower::FollowerShared>>,
    stop: Arc<AtomicBool>,
) -> Vec<Samples> {
    let mut seen: Vec<Samples> = vec![Vec::with_capacity(1 << 20); followers.len()];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (f, s) in followers.iter().zip(&mut seen) {
            let next = f.state().next_index;
            if s.last().is_none_or(|(n, _)| *n != next) {
                s.push((next, now));
            }
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    seen
}

async fn live_once(o: &Options, native: bool, swaps: bool) -> anyhow::Result<LiveRun> {
    let n = o.live_regions;
    let ldir = tempfile::tempdir()?;
    let leader = cluster::leader(ldir.path(), native).await?;
    cluster::populate(&leader, n, 1).await?;
    let mut dirs = Vec::new();
    let mut followers: Vec<RunningFollower> = Vec::new();
    for i in 0..o.followers {
        let dir = tempfile::tempdir()?;
        let f = cluster::follower(
            &leader,
            Some(dir.path()),
            &format!("bench-live-{i}"),
            native,
        )
        .await?;
        dirs.push(dir);
        followers.push(f);
    }
    for f in &followers {
        cluster::caught_up(&leader, f, Duration::from_secs(120)).await?;
    }
    let connects: u64 = followers
        .iter()
        .map(|f| f.shared().stats().connects.load(Ordering::Relaxed))
        .sum();
    let base = leader.shared().held(None).next_index;
    // Admin interfaces to swap through.
    let token = "bench";
    let mut admins = Vec::new();
    if swaps {
        let access = AdminAccess::with_token(token);
        admins.push(admin::spawn("127.0.0.1:0", leader.shared().clone(), access.clone()).await?);
        for f in &followers {
            admins.push(admin::spawn("127.0.0.1:0", f.shared().clone(), access.clone()).await?);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let shared = followers.iter().map(|f| f.shared().clone()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || sample(shared, stop))
    };
    // The sender: every millisecond, rate/1000 changes; the send time of
    // each millisecond's last change.
    let per_tick = (o.rate / 1_000).max(1);
    let ticks = o.seconds * 1_000;
    let (tx, rx) = tokio::sync::mpsc::channel::<RegionHeartbeatRequest>(100_000);
    let mut client = PdClient::connect(leader.url()).await?;
    let stream = tokio::spawn(async move {
        client
            .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner())
    });
    let swapper = swaps.then(|| {
        let addrs: Vec<String> = admins.iter().map(|(a, _)| a.to_string()).collect();
        let (count, spread) = (o.swaps, Duration::from_secs(o.seconds));
        tokio::spawn(async move {
            let mut took = Vec::new();
            let every = spread / (count as u32 + 1);
            for i in 0..count {
                tokio::time::sleep(every).await;
                let bytes = if i % 2 == 0 {
                    builtin::CONSERVATIVE
                } else {
                    builtin::DEFAULT
                };
                for addr in &addrs {
                    let t = Instant::now();
                    let (code, body) =
                        admin_client::request(addr, "POST", "/policy", bytes, Some(token)).await?;
                    anyhow::ensure!(
                        code == 200,
                        "swap on {addr} refused: {}",
                        String::from_utf8_lossy(&body)
                    );
                    took.push(ms(t.elapsed()));
                }
            }
            Ok(took)
        })
    });
    let calls = || {
        followers
            .iter()
            .map(|f| f.shared().policy().stats().calls.load(Ordering::Relaxed))
            .sum::<u64>()
            + leader
                .shared()
                .policy()
                .stats()
                .calls
                .load(Ordering::Relaxed)
    };
    let calls0 = calls();
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut sent_at: Vec<(u64, Instant)> = Vec::with_capacity(ticks as usize);
    let mut k = 0u64;
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..ticks {
        interval.tick().await;
        for _ in 0..per_tick {
            let hb = cluster::busy_heartbeat(cluster::sample_region(k % n, n, 2 + k / n), k);
            tx.send(hb).await?;
            k += 1;
        }
        sent_at.push((k - 1, Instant::now()));
    }
    let secs = started.elapsed().as_secs_f64();
    drop(tx);
    let want = base + k;
    for f in &followers {
        let at = poll_until(Duration::from_secs(120), Duration::from_millis(1), || {
            std::future::ready((f.shared().state().next_index >= want).then_some(()))
        })
        .await;
        anyhow::ensure!(at.is_some(), "a follower never caught up");
    }
    let cpu = cpu_seconds() - cpu0;
    let calls = calls() - calls0;
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.join().expect("the sampler does not panic");
    let swaps_took = match swapper {
        Some(t) => t.await??,
        None => Vec::new(),
    };
    stream.await??;
    for f in &followers {
        anyhow::ensure!(
            cluster::same_digest(&leader, f),
            "a follower's digest differs after the live run"
        );
    }
    let reconnects = followers
        .iter()
        .map(|f| f.shared().stats().connects.load(Ordering::Relaxed))
        .sum::<u64>()
        - connects;
    let mut latencies = Vec::new();
    for s in &seen {
        for &(last, at) in &sent_at {
            // First sample at which this tick's last change was applied.
            let i = s.partition_point(|(next, _)| *next <= base + last);
            if let Some((_, applied)) = s.get(i) {
                latencies.push(ms(applied.saturating_duration_since(at)));
            }
        }
    }
    // The admin servers hold the nodes; they end with the run.
    for (_, server) in admins {
        server.abort();
    }
    for f in followers {
        f.shutdown().await;
    }
    leader.shutdown().await;
    Ok(LiveRun {
        latencies,
        sent: k,
        secs,
        cpu,
        calls,
        swaps: swaps_took,
        reconnects,
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Microseconds of CPU (the whole process: leader, followers, sender) per
/// change over one shorter live run, and the policy calls per change.
pub async fn cpu_per_change(o: &Options, native: bool) -> anyhow::Result<(f64, f64)> {
    let short = Options {
        seconds: o.seconds.min(5),
        ..o.clone()
    };
    let run = live_once(&short, native, false).await?;
    let per_change = |x: f64| x / run.sent as f64;
    Ok((per_change(run.cpu * 1e6), per_change(run.calls as f64)))
}

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
    swaps: bool,
) -> anyhow::Result<()> {
    let (mut p50, mut p99, mut max, mut rate) = (vec![], vec![], vec![], vec![]);
    let (mut s50, mut s99, mut smax) = (vec![], vec![], vec![]);
    let mut dropped = 0;
    for run in 0..o.runs {
        let mut l = live_once(o, false, swaps).await?;
        l.latencies.sort_by(f64::total_cmp);
        let achieved = l.sent as f64 / l.secs;
        progress(&format!(
            "  run {run}: {:.0} changes/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            achieved,
            quantile(&l.latencies, 0.5),
            quantile(&l.latencies, 0.99),
            quantile(&l.latencies, 1.0)
        ));
        p50.push(quantile(&l.latencies, 0.5));
        p99.push(quantile(&l.latencies, 0.99));
        max.push(quantile(&l.latencies, 1.0));
        rate.push(achieved);
        dropped += l.reconnects;
        if swaps {
            l.swaps.sort_by(f64::total_cmp);
            s50.push(quantile(&l.swaps, 0.5));
            s99.push(quantile(&l.swaps, 0.99));
            smax.push(quantile(&l.swaps, 1.0));
        }
    }
    let f = o.followers;
    r.figure(Figure::of("changes/s sent", "/s", rate));
    let during = if swaps { ", during swaps" } else { "" };
    r.figure(Figure::of(
        format!("change to applied p50 ({f} followers){during}"),
        "ms",
        p50,
    ));
    let p99_name = format!("change to applied p99 ({f} followers){during}");
    r.figure(Figure::of(p99_name.clone(), "ms", p99));
    r.figure(Figure::of(
        format!("change to applied max ({f} followers){during}"),
        "ms",
        max,
    ));
    r.at_most(&p99_name, 10.0);
    if swaps {
        r.figure(Figure::of("swap round trip p50", "ms", s50));
        r.figure(Figure::of("swap round trip p99", "ms", s99));
        r.figure(Figure::of("swap round trip max", "ms", smax));
        r.at_most("swap round trip p99", 50.0);
        r.check(format!(
            "{} swaps per run on the leader and on each follower, none refused",
            o.swaps
        ));
    }
    r.check(format!(
        "{} streams dropped over all runs; every follower's digest equal to the leader's after each run",
        dropped
    ));
    anyhow::ensure!(
        dropped == 0,
        "{dropped} follower streams dropped during the live runs"
    );
    Ok(())
}
