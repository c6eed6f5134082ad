//! `full-sync`: N regions from a leader to a durable follower, end to end
//! (ready, durable in redb at completion), against the raw figure: the same
//! leader streaming the same snapshot to a reader that only decodes. Each
//! run measures both, back to back, and the ratio is taken within the run.
//!
//! `policy-overhead`: the same full sync, and a live run, with the Wasm
//! component and with the same policy linked natively, alternated, several
//! pairs a run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Figure, Options, Report, live};
use regionsync_harness::cluster::{self, ms};

/// One sync: its raw and end-to-end times, and the policy calls both
/// nodes made for it.
struct Once {
    raw: f64,
    end_to_end: f64,
    calls: u64,
}

/// One run: the raw stream, then the full sync, checking the digests.
async fn once(
    leader: &regionsync::role::RunningLeader,
    native: bool,
    limit: Duration,
) -> anyhow::Result<Once> {
    let t = Instant::now();
    let got = cluster::raw_full_sync(leader).await?;
    let raw = ms(t.elapsed());
    anyhow::ensure!(
        got == leader.shared().status().regions,
        "the raw reader got {got} regions"
    );
    let dir = tempfile::tempdir()?;
    // The policy is loaded before the clock starts, as a node loads it once
    // at start: what is timed is the sync, not the compile that only the
    // Wasm runs would pay (`scale` times a process from start).
    let policy = cluster::policy_for(native)?;
    let calls = || {
        leader
            .shared()
            .policy()
            .stats()
            .calls
            .load(Ordering::Relaxed)
    };
    let leader_calls = calls();
    let t = Instant::now();
    let follower =
        cluster::follower_with(leader, Some(dir.path()), "bench-full-sync", policy.clone()).await?;
    cluster::caught_up(leader, &follower, limit).await?;
    let end_to_end = ms(t.elapsed());
    let calls = calls() - leader_calls + policy.stats().calls.load(Ordering::Relaxed);
    anyhow::ensure!(
        cluster::same_digest(leader, &follower),
        "the follower's digest differs from the leader's"
    );
    follower.shutdown().await;
    Ok(Once {
        raw,
        end_to_end,
        calls,
    })
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
        let Once {
            raw: a,
            end_to_end: b,
            ..
        } = once(&leader, false, limit(o.regions)).await?;
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
    // Full sync: one leader, its policy swapped to the engine measured (the
    // leader's decisions too; two leaders, one per engine, had their
    // million regions in different memory, which alone moved pairs by
    // several percent), runs alternated, and which goes first alternated too
    // (W N, N W, ...), so that neither drift on a noisy machine nor what the
    // run before left behind (a store being deleted, memory being handed
    // back) favours one.
    let dir = tempfile::tempdir()?;
    let leader = cluster::leader(dir.path(), false).await?;
    cluster::populate(&leader, o.regions, 1).await?;
    let (w, nat, syncs) = runs_of_pairs(
        o,
        "full sync",
        "ms",
        async |native: bool| {
            leader
                .shared()
                .policy()
                .swap(cluster::policy_source(native))?;
            once(&leader, native, limit(o.regions)).await
        },
        |sync| sync.end_to_end,
        progress,
    )
    .await?;
    leader.shutdown().await;
    paired(r, "full sync", "ms", "full sync throughput", w, nat);
    r.figure(Figure::of(
        "policy calls in a full sync (leader and follower)",
        "calls",
        syncs.iter().map(|s| s.calls as f64).collect(),
    ));
    // Live: CPU per change at the same offered rate.
    let (w, nat, live) = runs_of_pairs(
        o,
        "live CPU per change",
        "us",
        async |native: bool| live::cpu_per_change(o, native).await,
        |&(cpu, _)| cpu,
        progress,
    )
    .await?;
    paired(
        r,
        "live CPU per change",
        "us",
        "live throughput per CPU",
        w,
        nat,
    );
    r.figure(Figure::of(
        "policy calls per live change (every node)",
        "calls",
        live.iter().map(|&(_, calls)| calls).collect(),
    ));
    r.check("every full sync ended with equal digests; every live run too");
    Ok(())
}

/// `o.runs` runs of `o.pairs_per_run` pairs: each run's mean cost with the
/// Wasm policy and with the native one, and every Wasm measurement.
async fn runs_of_pairs<T>(
    o: &Options,
    what: &str,
    unit: &str,
    measure: impl AsyncFn(bool) -> anyhow::Result<T>,
    cost: impl Fn(&T) -> f64,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<T>)> {
    let (mut w, mut nat, mut all) = (vec![], vec![], vec![]);
    let pairs = o.pairs_per_run.max(1);
    for run in 0..o.runs {
        let (mut a, mut b) = (0.0, 0.0);
        for i in 0..pairs {
            let (x, y) = pair(run * pairs + i, &measure).await?;
            let (x_cost, y_cost) = (cost(&x), cost(&y));
            progress(&format!(
                "  run {run}, pair {i}: {what} wasm {x_cost:.2} {unit}, native {y_cost:.2} {unit}"
            ));
            a += x_cost / pairs as f64;
            b += y_cost / pairs as f64;
            all.push(x);
        }
        w.push(a);
        nat.push(b);
    }
    Ok((w, nat, all))
}

/// One pair of a run: `measure(false)` (Wasm) and `measure(true)`
/// (native), the Wasm one first on even runs and second on odd ones.
async fn pair<T>(
    run: usize,
    measure: &impl AsyncFn(bool) -> anyhow::Result<T>,
) -> anyhow::Result<(T, T)> {
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
