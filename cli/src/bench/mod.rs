//! `regionsync bench SCENARIO`: the project's speed figures, measured the
//! way an operator sizes a machine (like `etcdctl check perf` or
//! `redis-benchmark`): real nodes on loopback with real gRPC and real redb
//! stores, realistic regions, every figure from several runs (min, median,
//! max), ratios taken pair by pair within one run, and each against its
//! target. The smoke test runs every scenario small, asserting no timing.
//!
//! One module per scenario; `regionsync_harness::cluster` holds what they
//! share (regions, in-process nodes, feeding, waiting), `procs` what the
//! scenarios that need a node per process share (memory is per process).

/// `call`: what one decision costs (also the floor example's measure).
pub mod call;
mod churn;
mod full_sync;
mod live;
mod memory;
mod procs;
mod resume;
mod scale;

use serde::Serialize;

/// What `bench` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 1,000,000 regions leader to a durable follower, against the raw stream.
    FullSync,
    /// Full sync and live, each with the Wasm component and the native policy.
    PolicyOverhead,
    /// 3 followers, 50,000 changes/s for 20 s: change-to-applied latency.
    Live,
    /// `live`, with swaps on the leader and each follower meanwhile.
    SwapUnderLoad,
    /// A follower 5,000 records behind: connect to caught up.
    Resume,
    /// Peak RSS of a leader and a follower at 1,000,000 regions.
    Memory,
    /// Per-call cost of every export, and of each containment.
    Call,
    /// Full-sync time and RSS at 100k, 1M and 3M regions.
    Scale,
    /// A full sync of 1,000,000 regions while the leader takes changes.
    Churn,
    /// Every scenario.
    All,
}

impl Scenario {
    /// Every scenario `all` runs, in order.
    pub const EACH: [Scenario; 9] = [
        Scenario::Call,
        Scenario::Resume,
        Scenario::FullSync,
        Scenario::PolicyOverhead,
        Scenario::Live,
        Scenario::SwapUnderLoad,
        Scenario::Memory,
        Scenario::Scale,
        Scenario::Churn,
    ];

    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FullSync => "full-sync",
            Scenario::PolicyOverhead => "policy-overhead",
            Scenario::Live => "live",
            Scenario::SwapUnderLoad => "swap-under-load",
            Scenario::Resume => "resume",
            Scenario::Memory => "memory",
            Scenario::Call => "call",
            Scenario::Scale => "scale",
            Scenario::Churn => "churn",
            Scenario::All => "all",
        }
    }
}

/// Sizes of the scenarios.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs of each figure.
    pub runs: usize,
    /// Regions of `full-sync`, `memory` and `policy-overhead`'s full sync.
    pub regions: u64,
    /// Regions of the live scenarios.
    pub live_regions: u64,
    /// Changes per second in the live scenarios.
    pub rate: u64,
    /// Seconds each live run lasts.
    pub seconds: u64,
    /// Followers in the live scenarios.
    pub followers: usize,
    /// Swaps per node in `swap-under-load`.
    pub swaps: usize,
    /// Records a resuming follower is behind.
    pub behind: u64,
    /// Region counts of `scale`.
    pub scale: Vec<u64>,
    /// Changes per second during `churn`'s full sync.
    pub churn_rate: u64,
    /// Pairs (Wasm, native) in each `policy-overhead` run, a run's figure
    /// their mean.
    pub pairs_per_run: usize,
    /// The `regionsync` binary, for the scenarios that run nodes as
    /// processes (by default, this one).
    pub binary: std::path::PathBuf,
}

impl Options {
    /// The sizes the targets are stated at.
    pub fn full() -> Self {
        Options {
            runs: 3,
            regions: 1_000_000,
            live_regions: 100_000,
            rate: 50_000,
            seconds: 20,
            followers: 3,
            swaps: 20,
            behind: 5_000,
            scale: vec![100_000, 1_000_000, 3_000_000],
            churn_rate: 20_000,
            // A full sync of a million takes 0.6-0.9 s here, and one stall
            // of the VM moved a single pair by 10-25% (BENCHMARKS.md), where
            // the policy's share is under 0.5%: three pairs a run damp what
            // one stall does.
            pairs_per_run: 3,
            binary: std::env::current_exe().unwrap_or_else(|_| "regionsync".into()),
        }
    }

    /// Seconds, not minutes: every code path, no meaningful figure.
    pub fn smoke() -> Self {
        Options {
            runs: 1,
            regions: 3_000,
            live_regions: 2_000,
            rate: 2_000,
            seconds: 1,
            followers: 3,
            swaps: 2,
            behind: 200,
            scale: vec![1_000, 3_000],
            churn_rate: 2_000,
            pairs_per_run: 1,
            ..Self::full()
        }
    }
}

/// One measured quantity over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What it is.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// Smallest of the runs.
    pub min: f64,
    /// Median of the runs.
    pub median: f64,
    /// Largest of the runs.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Figure {
    /// `runs` summarised.
    pub fn of(name: impl Into<String>, unit: &'static str, runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
        Figure {
            name: name.into(),
            unit,
            min: pick(0),
            median: pick(sorted.len() / 2),
            max: pick(sorted.len().saturating_sub(1)),
            runs,
        }
    }
}

/// A target and whether the median met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The figure it is about.
    pub figure: String,
    /// The bound, in words (`<= 2.0 x`).
    pub bound: String,
    /// Whether the median is within it.
    pub met: bool,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Its figures.
    pub figures: Vec<Figure>,
    /// Its targets.
    pub targets: Vec<Target>,
    /// Facts checked along the way (digests equal, no snapshot, ...).
    pub checks: Vec<String>,
}

impl Report {
    fn new(s: Scenario) -> Self {
        Report {
            scenario: s.name().into(),
            ..Default::default()
        }
    }

    fn figure(&mut self, f: Figure) -> f64 {
        let median = f.median;
        self.figures.push(f);
        median
    }

    /// The target `figure <= bound` (in the figure's unit).
    fn at_most(&mut self, figure: &str, bound: f64) {
        self.target(figure, "<=", bound, |median| median <= bound);
    }

    /// The target `figure >= bound`.
    fn at_least(&mut self, figure: &str, bound: f64) {
        self.target(figure, ">=", bound, |median| median >= bound);
    }

    fn target(&mut self, figure: &str, op: &str, bound: f64, met: impl Fn(f64) -> bool) {
        let f = self.figures.iter().find(|f| f.name == figure);
        let (median, unit) = f.map_or((f64::NAN, ""), |f| (f.median, f.unit));
        self.targets.push(Target {
            figure: figure.into(),
            bound: format!("{op} {bound} {unit}"),
            met: met(median),
        });
    }

    fn check(&mut self, what: impl Into<String>) {
        self.checks.push(what.into());
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// From /proc/cpuinfo.
    pub cpu: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            cpu,
        }
    }
}

/// Run `scenario` (`All`: each in turn) with `options`; `progress` hears a
/// line per step.
pub async fn run(
    scenario: Scenario,
    options: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<Report>> {
    let each: Vec<Scenario> = if scenario == Scenario::All {
        Scenario::EACH.to_vec()
    } else {
        vec![scenario]
    };
    let mut reports = Vec::new();
    for s in each {
        // What the last scenario wrote (gigabytes, for the large ones) is
        // flushed now, not in the middle of this one's fsyncs.
        let _ = std::process::Command::new("sync").status();
        progress(&format!("bench {}", s.name()));
        let mut r = Report::new(s);
        match s {
            Scenario::Call => call::run(options, &mut r)?,
            Scenario::Resume => resume::run(options, &mut r, progress).await?,
            Scenario::FullSync => full_sync::run(options, &mut r, progress).await?,
            Scenario::PolicyOverhead => full_sync::overhead(options, &mut r, progress).await?,
            Scenario::Live => live::run(options, &mut r, progress, false).await?,
            Scenario::SwapUnderLoad => live::run(options, &mut r, progress, true).await?,
            Scenario::Memory => memory::run(options, &mut r, progress).await?,
            Scenario::Scale => scale::run(options, &mut r, progress).await?,
            Scenario::Churn => churn::run(options, &mut r, progress).await?,
            Scenario::All => unreachable!("expanded above"),
        }
        reports.push(r);
    }
    Ok(reports)
}

/// The human table of `reports`.
pub fn table(machine: &Machine, reports: &[Report]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "machine: {} cores, {} GiB, {}\n",
        machine.cores, machine.memory_gib, machine.cpu
    );
    for r in reports {
        let _ = writeln!(out, "\n{}", r.scenario);
        let _ = writeln!(
            out,
            "  {:<46} {:>10} {:>10} {:>10}  unit",
            "figure", "min", "median", "max"
        );
        for f in &r.figures {
            let _ = writeln!(
                out,
                "  {:<46} {:>10} {:>10} {:>10}  {}",
                f.name,
                show(f.min),
                show(f.median),
                show(f.max),
                f.unit
            );
        }
        for t in &r.targets {
            let _ = writeln!(
                out,
                "  target {} {}: {}",
                t.figure,
                t.bound,
                if t.met { "met" } else { "NOT met" }
            );
        }
        for c in &r.checks {
            let _ = writeln!(out, "  checked: {c}");
        }
    }
    out
}

fn show(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
