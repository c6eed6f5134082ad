//! `regionsync load`: feed a leader, then check that it holds exactly what
//! the generator's model says, so that "accepted" is a measured fact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use regionsync_harness::load;

use clap::Args;

use super::flags::TlsArgs;

#[derive(Args)]
pub struct LoadCommand {
    /// The leader's gRPC URL; with nodes under etcd, several comma-separated
    /// node URLs: the load follows the leader (GetMembers) when it changes,
    /// and re-sends every region to the new one.
    #[arg(long)]
    pub leader: String,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Regions to create (when the leader holds none) and heartbeat once.
    #[arg(long)]
    pub regions: u64,
    /// Churn operations after the regions.
    #[arg(long, default_value_t = 0)]
    pub updates: u64,
    /// Churn for this many seconds instead of --updates operations.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Heartbeats per second (0: as fast as the leader takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seed of the churn, to replay a run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl LoadCommand {
    /// Run the load, then the acceptance check.
    pub async fn run(self) -> anyhow::Result<()> {
        let args = self;
        let tls = args.tls.load()?;
        let nodes: Vec<String> = args
            .leader
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        let (mut leader, mut client, cluster_id) = if nodes.len() == 1 {
            let mut client = load::connect_with(&nodes[0], tls.as_ref()).await?;
            let members = client
                .get_members(regionsync_proto::pdpb::GetMembersRequest::default())
                .await
                .with_context(|| format!("{} is not a regionsync leader", nodes[0]))?
                .into_inner();
            (
                nodes[0].clone(),
                client,
                members.header.map_or(0, |h| h.cluster_id),
            )
        } else {
            load::find_leader(&nodes, tls.as_ref(), Duration::from_secs(30)).await?
        };
        // A leader that holds regions already gets churn as soon as the first
        // page of them is read (the rest join the model as they arrive); a new
        // one gets every region first.
        let started = Instant::now();
        let mut pages = load::scan_pages(client.clone(), cluster_id);
        let first = pages.recv().await.transpose()?.unwrap_or_default();
        let seed_all = first.is_empty();
        let not_ours = "the leader holds regions this generator did not write";
        let generator = if seed_all {
            load::Generator::new(cluster_id, args.regions, args.seed)
        } else {
            load::Generator::resume(cluster_id, first, args.seed).context(not_ours)?
        };
        let generator = Arc::new(parking_lot::Mutex::new(generator));
        let scanning = {
            let generator = generator.clone();
            tokio::spawn(async move {
                while let Some(page) = pages.recv().await {
                    generator.lock().extend(page?).context(not_ours)?;
                }
                anyhow::Ok(())
            })
        };
        let limit = match args.duration {
            Some(secs) if secs > 0.0 => load::Limit::Duration(Duration::from_secs_f64(secs)),
            Some(secs) => bail!("--duration must be positive, not {secs}"),
            None => load::Limit::Operations(args.updates),
        };
        let sent = Arc::new(AtomicU64::new(0));
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(|| tokio::spawn(show_progress(sent.clone())));
        let first_after = {
            // Say when the first churn heartbeat leaves (after the regions, for
            // a new leader), as soon as it does: a long run is often stopped
            // rather than left to finish.
            let sent = sent.clone();
            let at = if seed_all { args.regions + 1 } else { 1 };
            let churns = !matches!(limit, load::Limit::Operations(0));
            tokio::spawn(async move {
                while churns && sent.load(Ordering::Relaxed) < at {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if churns {
                    println!("first churn heartbeat left after {:.2?}", started.elapsed());
                }
            })
        };
        let heartbeats = load::stream(generator.clone(), seed_all, limit, args.rate, sent.clone());
        let mut result = load::send_stream(&mut client, heartbeats).await;
        // Under etcd, a leader that goes away is followed: find the new one and
        // re-send every region to it (as TiKV's stores keep heartbeating), then
        // go on with the churn that is left.
        let mut failovers = 0;
        while let Err(e) = &result {
            if nodes.len() < 2 {
                break;
            }
            let lost = Instant::now();
            tracing::warn!(leader = %leader, error = %format!("{e:#}"), "lost the leader; looking for the new one");
            let found = load::find_leader(&nodes, tls.as_ref(), Duration::from_secs(60)).await?;
            (leader, client) = (found.0, found.1);
            failovers += 1;
            let left = match limit {
                load::Limit::Duration(d) => {
                    load::Limit::Duration(d.saturating_sub(started.elapsed()))
                }
                load::Limit::Operations(n) => {
                    load::Limit::Operations(n.saturating_sub(generator.lock().counts.operations()))
                }
            };
            let regions = generator.lock().len();
            println!(
                "leader changed to {leader} ({:.0?} after losing the old one); re-sending all {regions} regions",
                lost.elapsed()
            );
            // A stream paces itself by what it sent since it began: a counter
            // of its own, added to the run's total when it ends.
            let resent = Arc::new(AtomicU64::new(0));
            let heartbeats = load::stream(generator.clone(), true, left, args.rate, resent.clone());
            result = load::send_stream(&mut client, heartbeats).await;
            sent.fetch_add(resent.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if let Some(p) = progress {
            p.abort();
        }
        result?;
        if failovers > 0 {
            println!("followed {failovers} leader change(s)");
        }
        let sent_for = started.elapsed();
        scanning.await??;
        first_after.abort();
        let sent = sent.load(Ordering::Relaxed);
        let generator = std::mem::replace(
            &mut *generator.lock(),
            load::Generator::new(cluster_id, 1, 0),
        );
        let counts = generator.counts;
        println!(
            "sent {sent} heartbeats ({} regions; {} splits, {} merges, {} leader transfers, \
         {} conf changes, {} flow updates) in {sent_for:.2?}: {:.0}/s",
            generator.len(),
            counts.splits,
            counts.merges,
            counts.leader_transfers,
            counts.conf_changes,
            counts.flow_updates,
            sent as f64 / sent_for.as_secs_f64()
        );
        // Acceptance: the leader must hold exactly the model's regions, and
        // nothing else (a merged-away region that came back is a wrong set).
        let model: std::collections::HashMap<u64, regionsync_proto::metapb::Region> =
            generator.regions().into_iter().map(|r| (r.id, r)).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let held = load::scan_all(&mut client, cluster_id).await?;
            let exact = held
                .iter()
                .filter(|(r, _)| model.get(&r.id) == Some(r))
                .count();
            let right = exact == model.len() && held.len() == model.len();
            if right || std::time::Instant::now() > deadline {
                println!(
                    "leader holds {exact} of {} model regions exactly ({:.2}% accepted), {} regions in all",
                    model.len(),
                    100.0 * exact as f64 / model.len().max(1) as f64,
                    held.len()
                );
                if exact != model.len() {
                    bail!("the leader did not accept every change");
                }
                if held.len() != model.len() {
                    bail!(
                        "the leader holds {} region(s) the model does not have (removed by a merge or a split, or never sent)",
                        held.len() - model.len()
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A progress line on a terminal: heartbeats sent and the rate. The leader
/// answers only refusals, which end the run, so every heartbeat sent so far
/// was accepted into its intake; whether each change landed is checked
/// exactly against the model at the end.
async fn show_progress(sent: Arc<AtomicU64>) {
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} load: {pos} heartbeats sent and accepted ({per_sec}, {elapsed})",
        )
        .expect("a valid template"),
    );
    loop {
        bar.set_position(sent.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
