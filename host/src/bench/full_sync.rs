//! `full-sync`: N regions from a leader to a durable follower, end to end
//! (ready, durable in redb at completion), against the raw figure: the same
//! leader streaming the same snapshot to a reader that only decodes. Each
//! run measures both, back to back, and the ratio is taken within the run.
//!
//! `policy-overhead`: the same full sync, and a live run, with the Wasm
//! component and with the same policy linked natively, alternated.

use std::time::{Duration, Instant};

use super::cluster::{self, ms};
use super::{Figure, Options, Report, live};

/// One run: (raw ms, end-to-end ms), checking the digests.
async fn once(
    leader: &crate::node::RunningLeader,
    native: bool,
    limit: Duration,
) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let got = cluster::raw_full_sync(leader).await?;
    let raw = ms(t.elapsed());
    anyhow::ensure!(
        got == leader.shared().status().regions,
        "the raw reader got {got} regions"
    );
    let dir = tempfile::tempdir()?;
    // The policy is loaded before the clock starts, as a node loads it once
    // at start: what is timed is the sync (compiling the component would add
    // 12-15 ms to the Wasm runs alone; `scale` times a process from start).
    let policy = cluster::policy(native)?;
    let t = Instant::now();
    let follower =
        cluster::follower_with(leader, Some(dir.path()), "bench-full-sync", policy).await?;
    cluster::caught_up(leader, &follower, limit).await?;
    let end_to_end = ms(t.elapsed());
    anyhow::ensure!(
        cluster::same_digest(leader, &follower),
        "the follower's digest differs from the leader's"
    );
    follower.shutdown().await;
    Ok((raw, end_to_end))
}

fn limit(regions: u64) -> Duration {
    Duration::from_secs(60 + regions / 10_000)
}

pub async fn run(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let leader = cluster::leader(dir.path(), false).await?;
    cluster::populate(&leader, o.regions, 1).await?;
    let (mut raw, mut e2e, mut ratio) = (vec![], vec![], vec![]);
    for run in 0..o.runs {
        let (a, b) = once(&leader, false, limit(o.regions)).await?;
        progress(&format!("  run {run}: raw {a:.0} ms, end to end {b:.0} ms"));
        raw.push(a);
        e2e.push(b);
        ratio.push(b / a);
    }
    let n = o.regions;
    r.figure(Figure::of(format!("raw stream of {n} regions"), "ms", raw));
    let end = format!("full sync of {n} regions, durable");
    r.figure(Figure::of(end.clone(), "ms", e2e));
    r.figure(Figure::of("full sync / raw", "x", ratio));
    r.at_most("full sync / raw", 2.0);
    if n >= 1_000_000 {
        r.at_most(&end, 3_000.0);
    }
    r.check(format!(
        "every run: the follower ready at the leader's index with the leader's digest ({n} regions)"
    ));
    leader.shutdown().await;
    Ok(())
}

pub async fn overhead(
    o: &Options,
    r: &mut Report,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    // Full sync: one leader per engine (the leader's decisions too), runs
    // alternated, and which goes first alternated too (W N, N W, ...), so
    // that neither drift on a noisy machine nor what the run before left
    // behind (a store being deleted, memory being handed back) favours one.
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let wasm = cluster::leader(dirs.0.path(), false).await?;
    let native_leader = cluster::leader(dirs.1.path(), true).await?;
    cluster::populate(&wasm, o.regions, 1).await?;
    cluster::populate(&native_leader, o.regions, 1).await?;
    let (mut w, mut nat) = (vec![], vec![]);
    for run in 0..o.runs {
        let (a, b) = pair(run, async |native: bool| {
            let leader = if native { &native_leader } else { &wasm };
            Ok(once(leader, native, limit(o.regions)).await?.1)
        })
        .await?;
        progress(&format!(
            "  run {run}: full sync wasm {a:.0} ms, native {b:.0} ms"
        ));
        w.push(a);
        nat.push(b);
    }
    wasm.shutdown().await;
    native_leader.shutdown().await;
    paired(r, "full sync", "ms", "full sync throughput", w, nat);
    // Live: CPU per change at the same offered rate.
    let (mut w, mut nat) = (vec![], vec![]);
    for run in 0..o.runs {
        let (a, b) = pair(run, async |native: bool| {
            live::cpu_per_change(o, native).await
        })
        .await?;
        progress(&format!(
            "  run {run}: live CPU per change wasm {a:.2} us, native {b:.2} us"
        ));
        w.push(a);
        nat.push(b);
    }
    paired(
        r,
        "live CPU per change",
        "us",
        "live throughput per CPU",
        w,
        nat,
    );
    r.check("every full sync ended with equal digests; every live run too");
    Ok(())
}

/// One pair of a run: `measure(false)` (Wasm) and `measure(true)`
/// (native), the Wasm one first on even runs and second on odd ones.
async fn pair(
    run: usize,
    measure: impl AsyncFn(bool) -> anyhow::Result<f64>,
) -> anyhow::Result<(f64, f64)> {
    if run.is_multiple_of(2) {
        let wasm = measure(false).await?;
        Ok((wasm, measure(true).await?))
    } else {
        let native = measure(true).await?;
        Ok((measure(false).await?, native))
    }
}

/// A cost measured run by run with the Wasm policy and the native one: both
/// figures, and the Wasm throughput as a share of native's, run by run
/// (native cost over Wasm cost), held to the 98% target.
fn paired(r: &mut Report, cost: &str, unit: &'static str, share: &str, w: Vec<f64>, nat: Vec<f64>) {
    let ratio = w.iter().zip(&nat).map(|(a, b)| b / a * 100.0).collect();
    r.figure(Figure::of(format!("{cost}, Wasm policy"), unit, w));
    r.figure(Figure::of(format!("{cost}, native policy"), unit, nat));
    let share = format!("{share}, Wasm / native");
    r.figure(Figure::of(share.clone(), "%", ratio));
    r.at_least(&share, 98.0);
}
