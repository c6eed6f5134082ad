//! Seeded fault injection (see `faults/mod.rs` for what a scenario does and
//! checks, and why real nodes with a seeded schedule rather than a simulated
//! network). The default run plays 200 scenarios, four at a time.
//!
//! - `FAULT_SCENARIOS=5000 cargo test --release -p regionsync-tests --test
//!   fault_injection` (or `scripts/soak.sh 5000`) plays any number;
//! - `FAULT_SEED=<seed>` replays one scenario's schedule (`FAULT_REPEAT=<n>`
//!   plays it n times);
//! - `FAULT_BASE=<seed>` starts the seeds elsewhere;
//! - `FAULT_ONLY=<fault>,<fault>` draws only those faults (names as in
//!   `faults::FAULTS`), to press on one kind;
//! - `FAULT_LOG=<filter>` (e.g. `regionsync=info`) prints the nodes' logs.

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
    let total = seeds.len();
    let mut pending = seeds.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let (mut passed, mut claims, mut reads, mut faults) = (0u64, 0u64, 0u64, 0usize);
    let (mut unverified, mut verify_failures, mut misrouted) = (0usize, 0u64, 0u64);
    let mut kinds = std::collections::BTreeMap::<&str, u32>::new();
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
                faults += r.faults.len();
                verify_failures += r.verify_failures;
                misrouted += r.misrouted;
                if r.verify_failures > 0 {
                    println!(
                        "seed {seed}: {} completion(s) refused by a follower's digest check; faults {:?}",
                        r.verify_failures, r.faults
                    );
                }
                unverified += r.oracle_unverified.len();
                for what in &r.oracle_unverified {
                    println!("seed {seed}: the oracle's {what}");
                }
                for f in r.faults {
                    *kinds.entry(f).or_default() += 1;
                }
            }
            Err(why) => {
                eprintln!(
                    "scenario with seed {seed} failed: {why}\n  \
                     replay it with FAULT_SEED={seed} cargo test --release -p regionsync-tests --test fault_injection"
                );
                failed.push(seed);
            }
        }
    }
    println!(
        "fault injection: {passed}/{total} scenarios passed in {:.1} s; {faults} faults {kinds:?}; \
         {claims} ready (index, digest) claims checked against the leader; {reads} reads answered while ready; \
         completions refused by their digest: {verify_failures} by followers, {unverified} by the oracle; \
         sessions that reached another scenario's leader, refused for its cluster id: {misrouted}",
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "scenarios failed, seeds {failed:?}");
    assert_eq!(passed as usize, total);
    assert!(claims > 0, "no claim was checked");
}
