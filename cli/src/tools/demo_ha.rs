//! `regionsync demo --ha`: three nodes under a real etcd, a leader killed
//! again and again under load, and a table of what each failover cost.
//!
//! The nodes are real `regionsync node` processes (this binary, started
//! again), so the kills are real signals: SIGKILL, after which the dead
//! leader's lease must expire, and SIGTERM, after which it resigns at once.
//! After each failover the killed node is started again and rejoins as a
//! follower. The load (`regionsync load`, also a process) follows every new
//! leader and re-sends its regions; at the end it checks that the final
//! leader holds every change, and the demo that every node has the same
//! digest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use regionsync::status::Status;
use regionsync_harness::etcd::Etcd;
use regionsync_harness::ha_cluster::HaCluster;

/// The lease the demo's nodes run with (the `node` default).
const LEASE_TTL_SECS: u64 = 3;

/// One failover as the demo measured it.
#[derive(Debug, Clone)]
pub struct Failover {
    /// "SIGKILL" or "SIGTERM".
    pub signal: &'static str,
    /// The node killed.
    pub old: String,
    /// The node that took over.
    pub new: String,
    /// From the signal to the new leader serving (status: leader, ready).
    pub took: Duration,
    /// Full syncs the surviving followers took because of it.
    pub follower_full_syncs: u64,
    /// How the killed node came back: "history" or "full sync".
    pub rejoined_by: String,
}

fn full_syncs(s: &Status) -> u64 {
    if s.role == "follower" {
        s.full_syncs.values().sum()
    } else {
        0
    }
}

/// Each node's full syncs as a follower so far.
async fn synced_full(cluster: &HaCluster) -> Vec<u64> {
    let statuses = cluster.statuses().await;
    statuses
        .iter()
        .map(|s| s.as_ref().map_or(0, full_syncs))
        .collect()
}

/// Run the demo with `kills` failovers (alternately SIGKILL and SIGTERM);
/// true when every node ends with the same digest and the load's every
/// change is held.
pub async fn run(data_dir: Option<PathBuf>, kills: usize) -> anyhow::Result<bool> {
    let version = Etcd::version()?;
    let temp;
    let dir: &Path = match &data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir()?;
            temp.path()
        }
    };
    let bin = std::env::current_exe().context("cannot find this binary")?;
    println!(
        "etcd: {version}; three nodes, lease {LEASE_TTL_SECS} s; data in {}",
        dir.display()
    );
    let mut cluster = HaCluster::start(&bin, dir, 3, LEASE_TTL_SECS).await?;
    let Some(first) = cluster.wait_for_leader(None, Duration::from_secs(30)).await else {
        bail!(
            "no leader was elected within 30 s (logs in {})",
            dir.display()
        );
    };
    println!("{} leads; starting the load", cluster.nodes[first].name);

    let regions = 20_000u64;
    let seconds = 15 + 6 * kills as u64;
    let load_out = dir.join("load.out");
    let mut load = Command::new(&bin)
        .args(["load", "--leader", &cluster.urls()])
        .args(["--regions", &regions.to_string()])
        .args(["--duration", &seconds.to_string(), "--rate", "3000"])
        .stdout(std::fs::File::create(&load_out)?)
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the load")?;
    // Let the regions arrive before the first kill.
    let seeded = Instant::now();
    while !cluster
        .statuses()
        .await
        .into_iter()
        .flatten()
        .any(|s| s.role == "leader" && s.regions >= regions)
    {
        if seeded.elapsed() > Duration::from_secs(60) {
            bail!("the load did not seed {regions} regions within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut failovers = Vec::new();
    for round in 0..kills {
        let Some(old) = cluster.wait_for_leader(None, Duration::from_secs(30)).await else {
            bail!("no leader before kill {}", round + 1);
        };
        let before = synced_full(&cluster).await;
        let sigkill = round % 2 == 0;
        let killed = Instant::now();
        if sigkill {
            cluster.nodes[old].kill();
        } else {
            cluster.nodes[old].terminate()?;
        }
        let Some(new) = cluster
            .wait_for_leader(Some(old), Duration::from_secs(30))
            .await
        else {
            bail!("no new leader within 30 s of kill {}", round + 1);
        };
        let took = killed.elapsed();
        cluster.nodes[old]
            .wait_stopped(Duration::from_secs(15))
            .await?;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // On the nodes that kept following: the new leader's follower
        // counters went with its follower role.
        let after = synced_full(&cluster).await;
        let follower_full_syncs = (0..after.len())
            .filter(|&i| i != old && i != new)
            .map(|i| after[i].saturating_sub(before[i]))
            .sum();
        cluster.nodes[old].start()?;
        // Back as a follower: ready again, and how it got there.
        let back = Instant::now();
        let rejoined_by = loop {
            if let Some(s) = cluster.nodes[old].status().await
                && s.ready
            {
                break if full_syncs(&s) > 0 {
                    "full sync"
                } else {
                    "history"
                };
            }
            if back.elapsed() > Duration::from_secs(30) {
                break "not ready after 30 s";
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let f = Failover {
            signal: if sigkill { "SIGKILL" } else { "SIGTERM" },
            old: cluster.nodes[old].name.clone(),
            new: cluster.nodes[new].name.clone(),
            took,
            follower_full_syncs,
            rejoined_by: rejoined_by.to_string(),
        };
        println!(
            "kill {:>2}: {} {} -> {} leads after {:.2} s; follower full syncs {}; {} rejoined by {}",
            round + 1,
            f.signal,
            f.old,
            f.new,
            f.took.as_secs_f64(),
            f.follower_full_syncs,
            f.old,
            f.rejoined_by
        );
        failovers.push(f);
    }

    let status = load.wait()?;
    let out = std::fs::read_to_string(&load_out).unwrap_or_default();
    print!("{out}");
    if !status.success() {
        bail!("the load failed (output above)");
    }
    let converged = cluster.wait_converged(Duration::from_secs(60)).await;
    print!("{}", table(&failovers, &cluster.statuses().await));
    let accepted = out.contains("(100.00% accepted)");
    match converged {
        Some((index, digest)) if accepted => {
            println!(
                "all three nodes hold the same regions at index {index} (digest {digest}); every change of the load is held"
            );
            Ok(true)
        }
        _ => {
            println!("the nodes did NOT converge (logs in {})", dir.display());
            Ok(false)
        }
    }
}

fn summary(failovers: &[Failover], signal: &str) -> String {
    let mut ms: Vec<f64> = failovers
        .iter()
        .filter(|f| f.signal == signal)
        .map(|f| f.took.as_secs_f64() * 1e3)
        .collect();
    if ms.is_empty() {
        return format!("{signal}: none");
    }
    ms.sort_by(f64::total_cmp);
    let median = if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    format!(
        "{signal}: {} kills, failover min {:.0} ms, median {median:.0} ms, max {:.0} ms",
        ms.len(),
        ms[0],
        ms[ms.len() - 1]
    )
}

/// The final table: each failover, the summary by signal, and each node.
pub fn table(failovers: &[Failover], nodes: &[Option<Status>]) -> String {
    let mut out = String::from(
        "\nkill  signal   old     new     failover  follower full syncs  old leader rejoined by\n",
    );
    for (i, f) in failovers.iter().enumerate() {
        out += &format!(
            "{:<5} {:<8} {:<7} {:<7} {:>7.0} ms  {:>19}  {}\n",
            i + 1,
            f.signal,
            f.old,
            f.new,
            f.took.as_secs_f64() * 1e3,
            f.follower_full_syncs,
            f.rejoined_by
        );
    }
    out += &format!(
        "{}\n{}\nfull syncs caused in followers that were within the ring: {}\n\n",
        summary(failovers, "SIGKILL"),
        summary(failovers, "SIGTERM"),
        failovers.iter().map(|f| f.follower_full_syncs).sum::<u64>()
    );
    out += "node    role      ready  term  next_index  regions  digest\n";
    for s in nodes.iter().flatten() {
        out += &format!(
            "{:<7} {:<9} {:<6} {:>4}  {:>10}  {:>7}  {}\n",
            s.name,
            s.role,
            s.ready,
            s.ha.as_ref().map_or(0, |h| h.term),
            s.next_index,
            s.regions,
            s.digest
        );
    }
    out
}
