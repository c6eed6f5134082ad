//! Seeded fault injection (see `faults/mod.rs` for what a scenario does and
//! checks, and why real nodes with a seeded schedule rather than a simulated
//! network). The default run plays 200 scenarios, four at a time.
//!
//! - `FAULT_SCENARIOS=5000 cargo test --release -p regionsync-tests --test it
//!   -- fault_injection` (or `scripts/soak.sh 5000`) plays any number;
//! - `FAULT_SEED=<seed>` replays one scenario's schedule (`FAULT_REPEAT=<n>`
//!   plays it n times);
//! - `FAULT_BASE=<seed>` starts the seeds elsewhere;
//! - `FAULT_ONLY=<fault>,<fault>` draws only those faults (names as in
//!   `faults::FAULTS`), to press on one kind;
//! - `FAULT_ANNOUNCE=policy|noverify|nothing` gives every follower that
//!   (otherwise drawn: half `policy`, a quarter each PD's protocol and
//!   deltas without `verify`);
//! - `FAULT_LOG=<filter>` (e.g. `regionsync=info`) prints the nodes' logs.

use std::collections::BTreeMap;
use std::time::Instant;

use regionsync_tests::faults::scenario;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_scenarios_never_serve_a_partial_set_and_converge() {
    if let Ok(filter) = std::env::var("FAULT_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .init();
    }
    let seeds: Vec<u64> = match env("FAULT_SEED") {
        // FAULT_REPEAT=<n> plays that one schedule n times: the interleaving
        // is the machine's, so a rare failure may need many tries.
        Some(seed) => vec![seed; env("FAULT_REPEAT").unwrap_or(1) as usize],
        None => {
            let base = env("FAULT_BASE").unwrap_or(0x5eed_0000);
            (base..base + env("FAULT_SCENARIOS").unwrap_or(200)).collect()
        }
    };
    let started = Instant::now();
    let single = env("FAULT_SEED").is_some();
    let total = seeds.len();
    let mut pending = seeds.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let (mut passed, mut claims, mut reads, mut indexes) = (0u64, 0u64, 0u64, 0u64);
    let (mut misrouted, mut misses, mut refused) = (0u64, 0u64, 0u64);
    let mut drawn = BTreeMap::<&str, u32>::new();
    let mut fired = BTreeMap::<&str, u32>::new();
    let mut announced = BTreeMap::<String, u32>::new();
    let mut full_syncs = BTreeMap::<String, u64>::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < 4 {
            let Some(seed) = pending.next() else { break };
            running.spawn(async move { (seed, scenario(seed).await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (seed, result) = done.expect("a scenario panicked");
        match result {
            Ok(r) => {
                passed += 1;
                claims += r.claims_checked;
                reads += r.reads_answered;
                refused += r.reads_refused;
                indexes += r.indexes_recorded;
                misrouted += r.misrouted;
                misses += r.history_misses;
                for f in r.faults {
                    *drawn.entry(f).or_default() += 1;
                }
                for (f, what) in r.fired {
                    *fired.entry(f).or_default() += 1;
                    if single {
                        println!("seed {seed}: {f}: {what}");
                    }
                }
                for a in r.announced {
                    *announced.entry(format!("{a:?}")).or_default() += 1;
                }
                for (t, n) in r.full_syncs {
                    *full_syncs.entry(t).or_default() += n;
                }
            }
            Err(why) => {
                eprintln!(
                    "scenario with seed {seed} failed: {why}\n  \
                     replay it with FAULT_SEED={seed} cargo test --release -p regionsync-tests --test it -- fault_injection"
                );
                failed.push(seed);
            }
        }
    }
    let per_kind: Vec<String> = drawn
        .iter()
        .map(|(k, n)| format!("{k} {}/{n}", fired.get(k).copied().unwrap_or(0)))
        .collect();
    println!(
        "fault injection: {passed}/{total} scenarios passed in {:.1} s; faults fired/drawn: {}; \
         followers by what they announce: {announced:?}; full syncs by trigger: {full_syncs:?}; \
         streams that fell off the leader's ring: {misses}; {claims} ready (index, digest) claims judged \
         against {indexes} indexes the leader published; {reads} reads answered while ready, {refused} refused (none as not ready by a follower ready on both sides of it); \
         completions refused by their digest: 0 (any fails its scenario); \
         sessions that reached another scenario's leader, refused for its cluster id: {misrouted}",
        started.elapsed().as_secs_f64(),
        per_kind.join(", ")
    );
    assert!(failed.is_empty(), "scenarios failed, seeds {failed:?}");
    assert_eq!(passed as usize, total);
    assert!(claims > 0, "no claim was checked");
    // A run of many scenarios must have seen every fault it drew take
    // effect at least once; one seed replayed need not.
    if !single {
        let idle: Vec<&&str> = drawn.keys().filter(|k| !fired.contains_key(*k)).collect();
        assert!(
            idle.is_empty(),
            "faults drawn but never seen to take effect: {idle:?}"
        );
    }
}
