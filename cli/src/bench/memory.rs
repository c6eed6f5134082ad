//! `memory`: peak resident memory of a leader and of a follower holding N
//! regions, each as its own process: after the leader took them by intake
//! and the follower by full sync (never restarted), and after both restart
//! from their stores; each against the regions' encoded size.

use std::time::Duration;

use super::procs;
use super::{Figure, Options, Report};

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let n = o.regions;
    let encoded = procs::encoded_size(n) as f64;
    let (mut li, mut fi, mut lr, mut fr) = (vec![], vec![], vec![], vec![]);
    for run in 0..o.runs {
        let base = tempfile::tempdir()?;
        let (ld, fd) = (
            procs::dir(base.path(), "leader"),
            procs::dir(base.path(), "follower"),
        );
        let limit = Duration::from_secs(120 + n / 10_000);
        let leader = procs::leader(&o.binary, &ld).await?;
        procs::populate(&leader, n).await?;
        let follower = procs::follower(&o.binary, &fd, &leader.url).await?;
        procs::synced(&leader, &follower, limit).await?;
        let (l_peak, f_peak) = (leader.rss().0, follower.rss().0);
        drop(follower);
        drop(leader);
        let leader = procs::leader(&o.binary, &ld).await?;
        procs::wait(&leader, limit, |s| s["regions"] == n).await?;
        let follower = procs::follower(&o.binary, &fd, &leader.url).await?;
        procs::synced(&leader, &follower, limit).await?;
        let (l2, f2) = (leader.rss().0, follower.rss().0);
        let (ls, fs) = (leader.status_json().await?, follower.status_json().await?);
        anyhow::ensure!(ls["digest"] == fs["digest"], "digests differ after restart");
        progress(&format!(
            "  run {run}: leader {:.0}/{:.0} MiB, follower {:.0}/{:.0} MiB (grown/restarted), encoded {:.0} MiB",
            l_peak as f64 / MIB,
            l2 as f64 / MIB,
            f_peak as f64 / MIB,
            f2 as f64 / MIB,
            encoded / MIB
        ));
        li.push(l_peak as f64 / encoded);
        fi.push(f_peak as f64 / encoded);
        lr.push(l2 as f64 / encoded);
        fr.push(f2 as f64 / encoded);
    }
    r.figure(Figure::of(
        format!("encoded size of {n} regions"),
        "MiB",
        vec![encoded / MIB],
    ));
    for (name, v) in [
        ("leader peak RSS after intake / encoded", li),
        ("follower peak RSS after full sync / encoded", fi),
        ("leader peak RSS after restart / encoded", lr),
        ("follower peak RSS after restart / encoded", fr),
    ] {
        r.figure(Figure::of(name, "x", v));
        r.at_most(name, 2.0);
    }
    r.check("each node its own process (VmHWM from /proc); digests equal after the restart");
    Ok(())
}
