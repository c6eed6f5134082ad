//! `regionsync bench SCENARIO`: the speed figures of this machine
//! (`crate::bench`), as a table or one JSON object.

use clap::Args;

use crate::bench;

#[derive(Args)]
pub struct BenchCommand {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: bench::Scenario,
    /// Print one JSON object instead of the table (fields: README).
    #[arg(long)]
    pub json: bool,
    /// Runs of each figure (at least 3 for a figure worth quoting).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Regions of full-sync, policy-overhead and memory.
    #[arg(long, default_value_t = 1_000_000)]
    pub regions: u64,
    /// Every scenario at a tiny size, in seconds: checks that the bench
    /// runs, measures nothing worth quoting.
    #[arg(long)]
    pub smoke: bool,
}

impl BenchCommand {
    /// Measure, then print.
    pub async fn run(self) -> anyhow::Result<()> {
        let options = if self.smoke {
            bench::Options::smoke()
        } else {
            bench::Options {
                runs: self.runs,
                regions: self.regions,
                ..bench::Options::full()
            }
        };
        let machine = bench::Machine::this();
        let progress = |line: &str| eprintln!("{line}");
        let reports = bench::run(self.scenario, &options, &progress).await?;
        if self.json {
            let all = serde_json::json!({ "machine": machine, "scenarios": reports });
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            print!("{}", bench::table(&machine, &reports));
        }
        Ok(())
    }
}
