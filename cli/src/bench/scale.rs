//! `scale`: full-sync time and peak RSS at growing region counts, nodes as
//! processes; the cost per region says whether it grows linearly.

use std::time::{Duration, Instant};

use super::procs;
use super::{Figure, Options, Report};

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let mut per_region = Vec::new();
    for &n in &o.scale {
        let base = tempfile::tempdir()?;
        let leader = procs::leader(&o.binary, &procs::dir(base.path(), "leader")).await?;
        procs::populate(&leader, n).await?;
        let limit = Duration::from_secs(120 + n / 10_000);
        let (mut took, mut rss) = (vec![], vec![]);
        for run in 0..o.runs {
            let fd = procs::dir(base.path(), &format!("follower-{run}"));
            let t = Instant::now();
            let follower = procs::follower(&o.binary, &fd, &leader.url).await?;
            procs::synced(&leader, &follower, limit).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let peak = follower.rss().0 as f64 / (1024.0 * 1024.0);
            progress(&format!(
                "  {n} regions, run {run}: {ms:.0} ms, follower peak {peak:.0} MiB"
            ));
            took.push(ms);
            rss.push(peak);
        }
        let leader_peak = leader.rss().0 as f64 / (1024.0 * 1024.0);
        let median = r.figure(Figure::of(
            format!("full sync of {n} (process start to ready)"),
            "ms",
            took,
        ));
        r.figure(Figure::of(format!("follower peak RSS at {n}"), "MiB", rss));
        r.figure(Figure::of(
            format!("leader peak RSS at {n}"),
            "MiB",
            vec![leader_peak],
        ));
        per_region.push((n, median * 1e3 / n as f64));
    }
    if let (Some(first), Some(last)) = (per_region.first(), per_region.last()) {
        let growth = last.1 / first.1;
        r.figure(Figure::of(
            format!("cost per region at {} / at {}", last.0, first.0),
            "x",
            vec![growth],
        ));
        r.check(format!(
            "per-region full-sync cost: {}",
            per_region
                .iter()
                .map(|(n, us)| format!("{us:.2} us at {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}
