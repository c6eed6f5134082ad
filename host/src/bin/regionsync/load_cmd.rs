//! `regionsync load`: feed a leader, then check that it holds exactly what
//! the generator's model says, so that "accepted" is a measured fact.

use anyhow::{Context, bail};
use regionsync::tools::load;

use crate::args::LoadArgs;

/// Run the load, then the acceptance check.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let mut client = load::connect(&args.leader).await?;
    let members = client
        .get_members(regionsync_proto::pdpb::GetMembersRequest::default())
        .await
        .with_context(|| format!("{} is not a regionsync leader", args.leader))?
        .into_inner();
    let cluster_id = members.header.map_or(0, |h| h.cluster_id);
    let existing = load::scan_all(&mut client, cluster_id).await?;
    let mut generator = if existing.is_empty() {
        load::Generator::new(cluster_id, args.regions, args.seed)
    } else {
        load::Generator::resume(cluster_id, existing, args.seed)
            .context("the leader holds regions this generator did not write")?
    };
    let started = std::time::Instant::now();
    let mut heartbeats = generator.all();
    for _ in 0..args.updates {
        heartbeats.extend(generator.churn());
    }
    let sent = heartbeats.len();
    load::send(&mut client, heartbeats, args.rate).await?;
    let took = started.elapsed();
    println!(
        "sent {sent} heartbeats ({} regions, {} churn operations) in {took:.2?}: {:.0}/s",
        generator.len(),
        args.updates,
        sent as f64 / took.as_secs_f64()
    );
    // Acceptance: the leader must hold exactly the model's regions.
    let model: std::collections::HashMap<u64, regionsync_proto::metapb::Region> =
        generator.regions().into_iter().map(|r| (r.id, r)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = load::scan_all(&mut client, cluster_id).await?;
        let exact = held
            .iter()
            .filter(|(r, _)| model.get(&r.id) == Some(r))
            .count();
        if exact == model.len() || std::time::Instant::now() > deadline {
            println!(
                "leader holds {exact} of {} model regions exactly ({:.2}% accepted), {} regions in all",
                model.len(),
                100.0 * exact as f64 / model.len().max(1) as f64,
                held.len()
            );
            if exact != model.len() {
                bail!("the leader did not accept every change");
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
