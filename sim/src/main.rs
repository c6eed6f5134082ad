//! `regionsync-sim`: run seeded scenarios, or replay one with its trace.
//!
//! ```text
//! regionsync-sim --scenarios N --seed S [--threads T]
//! regionsync-sim --replay SEED
//! ```
//!
//! A run ends with `N/N scenarios passed` and the counts, or with
//! `FAILED seed …`, the shrunk schedule's trace, and a non-zero exit.

use std::process::ExitCode;
use std::time::Instant;

use regionsync_sim::{Policies, Scenario, check_seeds, replay, run, shrink};

struct Args {
    scenarios: u64,
    seed: u64,
    threads: usize,
    replay: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        scenarios: 1_000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        replay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|e| format!("{name} {v:?}: not a number ({e})"))
        };
        match flag.as_str() {
            "--scenarios" => args.scenarios = value("--scenarios")?,
            "--seed" => args.seed = value("--seed")?,
            "--threads" => args.threads = value("--threads")?.max(1) as usize,
            "--replay" => args.replay = Some(value("--replay")?),
            "-h" | "--help" => {
                return Err("usage: regionsync-sim [--scenarios N] [--seed S] [--threads T] | --replay SEED".into());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let policies = match Policies::load() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot load the policies: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.replay {
        let report = run(&Scenario::from_seed(seed), &policies, true);
        for line in &report.trace {
            println!("{line}");
        }
        return match report.failure {
            None => {
                println!(
                    "seed {seed} passed ({} ready claims checked)",
                    report.ready_claims
                );
                ExitCode::SUCCESS
            }
            Some(why) => {
                println!("FAILED seed {seed}: {why}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let summary = check_seeds(&policies, args.seed, args.scenarios, args.threads);
    let took = started.elapsed().as_secs_f64();
    if let Some((seed, report)) = &summary.failure {
        let scenario = Scenario::from_seed(*seed);
        let shrunk = shrink(&scenario, &policies, &report.schedule, 300);
        let again = replay(&scenario, &policies, &shrunk, true);
        println!(
            "FAILED seed {seed} (scenario {} of run seed {}, after {} passed): {}",
            summary.failed_at.unwrap_or(0),
            args.seed,
            summary.passed,
            report.failure.as_deref().unwrap_or("")
        );
        println!(
            "shrunk from {} to {} events; its trace (replay the whole run with --replay {seed}):",
            report.schedule.len(),
            shrunk.len()
        );
        for line in &again.trace {
            println!("  {line}");
        }
        if let Some(why) = &again.failure {
            println!("  => {why}");
        }
        return ExitCode::FAILURE;
    }
    println!("{}/{} scenarios passed", summary.passed, summary.scenarios);
    let events = summary.total_events();
    println!(
        "seed {}, {} threads, {took:.1} s: {:.0} scenarios/s, {:.0} events/s",
        args.seed,
        args.threads,
        summary.scenarios as f64 / took,
        events as f64 / took
    );
    println!("events: {events}");
    for (kind, n) in &summary.events {
        println!("  {kind}: {n}");
    }
    println!("ready claims checked: {}", summary.ready_claims);
    println!(
        "reads answered: {} (refused while not ready: {})",
        summary.reads_answered, summary.reads_refused
    );
    ExitCode::SUCCESS
}
