//! `regionsync demo`: the whole mission on one command, on loopback.
//!
//! A leader and two durable followers; 100,000 regions through
//! RegionHeartbeat with churn (splits, merges, leader transfers, conf
//! changes, flow updates); follower 1 down long enough to fall behind the
//! ring (it comes back by a delta: only what changed, stale regions gone); follower 2 down
//! briefly (it resumes from history); the policy swapped to `conservative`
//! and back on every node through the admin interface while load runs; then
//! a table per node and one verdict line: do all digests agree?

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use regionsync::admin::AdminAccess;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime, builtin};
use regionsync::role::{RunningFollower, RunningLeader};
use regionsync::status::Status;
use regionsync_harness::admin_client;
use regionsync_harness::eventually::holds_within;
use regionsync_harness::load::{self, Generator};

const REGIONS: u64 = 100_000;
const RING: usize = 5_000;

fn policy(dir: &std::path::Path) -> anyhow::Result<Arc<PolicyRuntime>> {
    let wasm = WasmRuntime::new(WasmConfig {
        cache_dir: Some(dir.join("policy-cache")),
        ..Default::default()
    })?;
    Ok(Arc::new(PolicyRuntime::new(
        wasm,
        PolicySource::Builtin("default"),
    )?))
}

/// The demo's nodes live in this process and listen on loopback ports only
/// it uses; their admin token guards nothing beyond the demo's own run.
const DEMO_TOKEN: &str = "demo";

struct Node {
    follower: Option<RunningFollower>,
    admin: SocketAddr,
}

async fn start_follower(dir: &std::path::Path, n: u32, leader_url: &str) -> anyhow::Result<Node> {
    let mut config = FollowerConfig::new(leader_url, Some(dir.join(format!("follower-{n}"))));
    config.name = format!("follower-{n}");
    let listener = regionsync::server::bind("127.0.0.1:0").await?;
    let follower = RunningFollower::start(config, policy(dir)?, listener).await?;
    let (admin, _) = regionsync::admin::spawn(
        "127.0.0.1:0",
        follower.shared().clone(),
        AdminAccess::with_token(DEMO_TOKEN),
    )
    .await?;
    Ok(Node {
        follower: Some(follower),
        admin,
    })
}

fn step(started: Instant, what: &str) {
    println!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
}

/// Wait until every running follower is ready at the leader's index with
/// the leader's digest.
async fn converge(leader: &RunningLeader, nodes: &[&Node], within: Duration) -> anyhow::Result<()> {
    let converged = holds_within(within, || {
        let lead = leader.shared().status();
        nodes.iter().filter_map(|n| n.follower.as_ref()).all(|f| {
            let s = f.shared().status();
            s.ready && s.next_index == lead.next_index && s.digest == lead.digest
        })
    })
    .await;
    if !converged {
        bail!("followers did not converge within {within:?}");
    }
    Ok(())
}

async fn swap_all(admins: &[SocketAddr], bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for admin in admins {
        let (code, body) = admin_client::request(
            &admin.to_string(),
            "POST",
            "/policy",
            bytes,
            Some(DEMO_TOKEN),
        )
        .await?;
        let answer: regionsync::admin::SwapAnswer = serde_json::from_slice(&body)?;
        match (code, answer.new) {
            (200, Some(new)) => out.push(format!("{} {}", new.name, new.version)),
            _ => bail!("swap on {admin} refused: {:?}", answer.error),
        }
    }
    Ok(out)
}

fn row(s: &Status) -> String {
    let syncs = if s.full_syncs.is_empty() {
        "-".to_string()
    } else {
        s.full_syncs
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let deltas = s.details.get("deltas").copied().unwrap_or(0);
    format!(
        "{:<12} {:<9} {:>8} {:>10}  {:<28} {:>6}  {}",
        s.name, s.role, s.regions, s.next_index, syncs, deltas, s.digest
    )
}

/// Run the demo; `Ok(true)` when every digest agrees.
pub async fn run(data_dir: Option<PathBuf>) -> anyhow::Result<bool> {
    let tmp;
    let dir = match data_dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot use data directory {}", dir.display()))?;
    let started = Instant::now();

    let mut lc = LeaderConfig::new(dir.join("leader"));
    lc.name = "leader".into();
    lc.history_capacity = RING;
    let leader = RunningLeader::start(
        lc,
        policy(&dir)?,
        regionsync::server::bind("127.0.0.1:0").await?,
    )
    .await?;
    let (leader_admin, _) = regionsync::admin::spawn(
        "127.0.0.1:0",
        leader.shared().clone(),
        AdminAccess::with_token(DEMO_TOKEN),
    )
    .await?;
    let url = leader.url();
    let cluster_id = leader.shared().cluster_id();
    let mut f1 = start_follower(&dir, 1, &url).await?;
    let mut f2 = start_follower(&dir, 2, &url).await?;
    step(
        started,
        &format!(
            "leader at {url} (cluster {cluster_id}, ring {RING}), two followers; data in {}",
            dir.display()
        ),
    );

    // The load: a fresh model, or the leader's regions from a previous run.
    let mut client = load::connect(&url).await?;
    let existing = load::scan_all(&mut client, cluster_id).await?;
    let mut generator = if existing.is_empty() {
        Generator::new(cluster_id, REGIONS, 0xDE30)
    } else {
        let n = existing.len();
        let g = Generator::resume(cluster_id, existing, 0xDE31)
            .context("the leader holds regions this demo did not write; use an empty --data-dir")?;
        step(
            started,
            &format!(
                "the leader already holds {n} regions from an earlier run; continuing from them"
            ),
        );
        g
    };
    let t = Instant::now();
    let all = generator.all();
    let n = all.len();
    load::send(&mut client, all, 0).await?;
    step(
        started,
        &format!(
            "fed {n} regions through RegionHeartbeat in {:.1?}",
            t.elapsed()
        ),
    );
    converge(&leader, &[&f1, &f2], Duration::from_secs(30)).await?;
    step(started, "both followers ready with the leader's digest");

    // Follower 1 down long enough to fall behind the ring.
    f1.follower.take().unwrap().shutdown().await;
    let churn: Vec<_> = (0..(RING as u64 * 3 / 2))
        .flat_map(|_| generator.churn())
        .collect();
    let behind = churn.len();
    load::send(&mut client, churn, 0).await?;
    step(
        started,
        &format!("follower-1 down; {behind} churn heartbeats (more than the ring of {RING})"),
    );

    // Follower 2 down briefly, from an index inside the ring: it will
    // resume from history.
    converge(&leader, &[&f2], Duration::from_secs(30)).await?;
    f2.follower.take().unwrap().shutdown().await;
    let churn: Vec<_> = (0..500).flat_map(|_| generator.churn()).collect();
    let brief = churn.len();
    load::send(&mut client, churn, 0).await?;
    f2 = start_follower(&dir, 2, &url).await?;
    step(
        started,
        &format!("follower-2 down for {brief} heartbeats, back: history resume"),
    );
    f1 = start_follower(&dir, 1, &url).await?;
    step(
        started,
        "follower-1 back: behind the ring, so a delta brings what changed (merged-away regions go)",
    );
    converge(&leader, &[&f1, &f2], Duration::from_secs(30)).await?;
    step(started, "both followers converged");

    // Policy swaps on every node while load runs.
    let running = Arc::new(AtomicBool::new(true));
    let load_task = {
        let running = running.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let mut client = load::connect(&url).await?;
            let mut sent = 0usize;
            while running.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..200).flat_map(|_| generator.churn()).collect();
                sent += batch.len();
                load::send(&mut client, batch, 20_000).await?;
            }
            anyhow::Ok((generator, sent))
        })
    };
    let admins = [leader_admin, f1.admin, f2.admin];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to = swap_all(&admins, builtin::CONSERVATIVE).await?;
    step(
        started,
        &format!("policy swapped under load on all nodes: {}", to.join(", ")),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = swap_all(&admins, builtin::DEFAULT).await?;
    step(started, &format!("and back: {}", back.join(", ")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);
    let (generator, sent) = load_task.await.context("load task")??;
    step(
        started,
        &format!("load stopped after {sent} more heartbeats"),
    );
    converge(&leader, &[&f1, &f2], Duration::from_secs(30)).await?;

    let statuses = [
        leader.shared().status(),
        f1.follower.as_ref().unwrap().shared().status(),
        f2.follower.as_ref().unwrap().shared().status(),
    ];
    let model = generator.regions().len();
    println!();
    println!(
        "{:<12} {:<9} {:>8} {:>10}  {:<28} {:>6}  digest",
        "node", "role", "regions", "next index", "full syncs", "deltas"
    );
    for s in &statuses {
        println!("{}", row(s));
    }
    let equal = statuses.iter().all(|s| s.digest == statuses[0].digest);
    let counts = generator.counts;
    println!();
    println!(
        "churn: {} splits, {} merges, {} leader transfers, {} conf changes, {} flow updates; model {} regions",
        counts.splits,
        counts.merges,
        counts.leader_transfers,
        counts.conf_changes,
        counts.flow_updates,
        model
    );
    println!(
        "all digests equal: {} ({:.1}s)",
        if equal && statuses[0].regions as usize == model {
            "yes"
        } else {
            "NO"
        },
        started.elapsed().as_secs_f64()
    );
    for node in [f1, f2] {
        if let Some(f) = node.follower {
            f.shutdown().await;
        }
    }
    leader.shutdown().await;
    Ok(equal && statuses[0].regions as usize == model)
}
