//! `regionsync policy ...`: what an operator or a policy author does with
//! components: without any node (`new`, `list`, `check`, `diff`), and
//! against a running node's admin interface (`swap`, `shadow`, `promote`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use regionsync::admin::SwapAnswer;
use regionsync::policy_runtime::WasmRuntime;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync_harness::admin_client;

use super::flags::AdminClientArgs;
use super::write_out;

#[derive(Args)]
pub struct PolicyCommand {
    #[command(subcommand)]
    pub command: PolicySubcommand,
}

#[derive(Subcommand)]
pub enum PolicySubcommand {
    /// Swap a running node's policy for the component in FILE; exits 0 only
    /// if the new policy is active.
    Swap(SwapCommand),
    /// Load a candidate policy beside the active one on a running node: every
    /// decision is also asked of it and compared, never acted on; `status`
    /// shows the disagreements (policy.shadow). `--stop` drops it.
    Shadow(ShadowCommand),
    /// Make the running shadow the node's active policy (with a swap's
    /// checks) and stop shadowing.
    Promote(PromoteCommand),
    /// Write a new policy crate NAME (in ./NAME) that builds into a
    /// component with `cargo build --release --target wasm32-wasip2`.
    New(NewCommand),
    /// Write an embedded policy component out (`default`, `conservative`,
    /// `gap-fraction`).
    Export(ExportCommand),
    /// Check a component without any node: contract and imports, the
    /// self-check, every export on the conformance vectors' inputs and over
    /// seeded follower streams against the invariants, size and call cost.
    /// Exits non-zero on any violation. FILE may name an embedded policy.
    Check(CheckCommand),
    /// List the embedded policies with their versions, sizes and SHA-256.
    List,
    /// Say which decisions two components take differently, over the
    /// conformance vectors' inputs: counts by function and first examples.
    /// Each is a file or an embedded policy's name.
    Diff(DiffCommand),
    /// Write the conformance vectors: inputs for every decision with the
    /// native default policy's answers, as JSON (docs/protocol.md §5).
    Vectors(VectorsCommand),
}

impl PolicyCommand {
    /// Run the policy subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            PolicySubcommand::Swap(c) => swap(&c.client, &c.file).await,
            PolicySubcommand::Shadow(c) => shadow(&c.client, c.file.as_deref(), c.stop).await,
            PolicySubcommand::Promote(c) => promote(&c.client).await,
            PolicySubcommand::New(c) => new(&c.name, c.dir, c.sdk),
            PolicySubcommand::Export(c) => export(&c.name, c.output.as_deref()),
            PolicySubcommand::Check(c) => check(&c.file),
            PolicySubcommand::List => list(),
            PolicySubcommand::Diff(c) => diff(&c.a, &c.b, c.examples),
            PolicySubcommand::Vectors(c) => vectors(c.output.as_deref()),
        }
    }
}

#[derive(Args)]
pub struct SwapCommand {
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// A policy component (.wasm).
    pub file: PathBuf,
}

#[derive(Args)]
pub struct ShadowCommand {
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// The candidate component (.wasm).
    #[arg(required_unless_present = "stop", conflicts_with = "stop")]
    pub file: Option<PathBuf>,
    /// Stop shadowing (the candidate is dropped).
    #[arg(long)]
    pub stop: bool,
}

#[derive(Args)]
pub struct PromoteCommand {
    #[command(flatten)]
    pub client: AdminClientArgs,
}

#[derive(Args)]
pub struct NewCommand {
    /// The policy's name (a-z, 0-9, '-').
    pub name: String,
    /// Where to write it (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The regionsync policy SDK, a checkout's guest/ (default: the
    /// checkout this binary was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportCommand {
    /// The embedded policy's name.
    pub name: String,
    /// Where to write it (standard output when absent).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub struct CheckCommand {
    /// A policy component (.wasm), or an embedded policy's name.
    pub file: String,
}

#[derive(Args)]
pub struct DiffCommand {
    /// The first component.
    pub a: String,
    /// The second component.
    pub b: String,
    /// Examples shown per function.
    #[arg(long, default_value_t = 2)]
    pub examples: usize,
}

#[derive(Args)]
pub struct VectorsCommand {
    /// Where to write them (standard output when absent).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Write an embedded component out.
fn export(name: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let bytes = regionsync::policy_runtime::builtin::by_name(name).with_context(|| {
        format!(
            "no embedded policy named {name:?} (there are: {})",
            regionsync::policy_runtime::builtin::NAMES.join(", ")
        )
    })?;
    write_out(output, bytes)
}

/// Write the conformance vectors out.
fn vectors(output: Option<&Path>) -> anyhow::Result<()> {
    use regionsync_harness::vectors;
    let vectors = vectors::generate(&regionsync_guest::Policy::default_policy(), vectors::SEED);
    let mut text = serde_json::to_string_pretty(&vectors)?;
    text.push('\n');
    write_out(output, text.as_bytes())
}

/// A component by embedded name or file, loaded on a plain Wasm runtime.
fn component(what: &str) -> anyhow::Result<regionsync::policy_runtime::WasmPolicy> {
    let wasm = WasmRuntime::new(WasmConfig::default())?;
    Ok(match regionsync::policy_runtime::builtin::by_name(what) {
        Some(bytes) => wasm.load(bytes)?,
        None => wasm.load_file(std::path::Path::new(what))?,
    })
}

fn check(what: &str) -> anyhow::Result<()> {
    let bytes = match regionsync::policy_runtime::builtin::by_name(what) {
        Some(b) => b.to_vec(),
        None => std::fs::read(what).with_context(|| format!("cannot read policy file {what}"))?,
    };
    let report = crate::tools::check::check(&bytes);
    for line in &report.lines {
        println!("{line}");
    }
    // One line each, whatever the component's error text holds.
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for v in &report.violations {
        println!("VIOLATION {}", flat(v));
    }
    match report.violations.first() {
        None => {
            println!("{what}: passed");
            Ok(())
        }
        Some(first) => bail!(
            "{what} failed the check ({} violations; first: {})",
            report.violations.len(),
            flat(first).chars().take(300).collect::<String>()
        ),
    }
}

fn list() -> anyhow::Result<()> {
    use regionsync::policy_runtime::PolicyEngine;
    println!("{:<14} {:<8} {:>8}  sha256", "name", "version", "bytes");
    for name in regionsync::policy_runtime::builtin::NAMES {
        let bytes = regionsync::policy_runtime::builtin::by_name(name).expect("embedded");
        let info = component(name)?.info().clone();
        let sha = regionsync::policy_runtime::Sha256::of(bytes);
        println!(
            "{:<14} {:<8} {:>8}  {sha}",
            info.name,
            info.version,
            bytes.len()
        );
    }
    Ok(())
}

/// What each function decides, for the diff's readers.
fn kind(function: &str) -> &'static str {
    match function {
        "route-request" => "routing",
        "plan-send" | "limits" => "frame sizes",
        "plan-catch-up" => "catch-up",
        "admit-full-sync" => "admission",
        "backoff" => "backoff",
        "on-connect" | "on-frame" => "phase machine",
        _ => "",
    }
}

fn diff(a: &str, b: &str, examples: usize) -> anyhow::Result<()> {
    use crate::tools::workload;
    use regionsync::policy_runtime::PolicyEngine;
    use regionsync_harness::vectors;
    let (x, y) = (component(a)?, component(b)?);
    let (ia, ib) = (x.info(), y.info());
    println!(
        "A = {} {} ({a}), B = {} {} ({b})",
        ia.name, ia.version, ib.name, ib.version
    );
    let inputs = [
        (
            "the conformance vectors' inputs",
            vectors::generate(&regionsync_guest::Policy::default_policy(), vectors::SEED),
        ),
        (
            "a simulated workload (a 10,000-record ring under intake, followers at realistic lags)",
            workload::generate(workload::SEED),
        ),
    ];
    for (over, cases) in inputs {
        let d = vectors::diff(&x, &y, &cases, examples);
        println!("\nover {over}:");
        println!(
            "{:<16} {:<14} {:>8} {:>8}",
            "decision", "kind", "cases", "differ"
        );
        for (name, n) in &d.compared {
            println!(
                "{name:<16} {:<14} {n:>8} {:>8}",
                kind(name),
                d.differ.get(name).copied().unwrap_or(0)
            );
        }
        for (name, args, ra, rb) in &d.examples {
            println!("\n{name}({args})\n  A: {ra}\n  B: {rb}");
        }
    }
    Ok(())
}

/// Ask a node's admin interface for a policy change; the answer on
/// success, or an error that says why the node refused.
async fn admin_change(
    admin: &str,
    token_file: Option<&Path>,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<SwapAnswer> {
    let token = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let (code, body) = admin_client::request(admin, method, path, body, token.as_deref()).await?;
    let answer: SwapAnswer = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{admin} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        )
    })?;
    match &answer.error {
        Some(error) => bail!("{error}"),
        None if code != 200 => bail!("{admin} answered {code} without a result"),
        None => Ok(answer),
    }
}

fn read_component(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read policy file {}", file.display()))
}

async fn swap(client: &AdminClientArgs, file: &Path) -> anyhow::Result<()> {
    let (admin, token_file) = (client.admin.as_str(), client.token_file.as_deref());
    let bytes = read_component(file)?;
    let answer = admin_change(admin, token_file, "POST", "/policy", &bytes)
        .await
        .context("policy refused; the old policy stays active")?;
    let (Some(old), Some(new)) = (answer.old, answer.new) else {
        bail!("{admin} answered without the policies swapped");
    };
    println!(
        "policy swapped: {} {} -> {} {}",
        old.name, old.version, new.name, new.version
    );
    Ok(())
}

async fn shadow(client: &AdminClientArgs, file: Option<&Path>, stop: bool) -> anyhow::Result<()> {
    let (admin, token_file) = (client.admin.as_str(), client.token_file.as_deref());
    if stop {
        let answer = admin_change(admin, token_file, "DELETE", "/policy/shadow", &[])
            .await
            .context("policy shadow not stopped")?;
        if let Some(old) = answer.old {
            println!("policy shadow stopped: {} {}", old.name, old.version);
        }
        return Ok(());
    }
    let file = file.context("name the candidate component, or give --stop")?;
    let bytes = read_component(file)?;
    let answer = admin_change(admin, token_file, "POST", "/policy/shadow", &bytes)
        .await
        .context("policy shadow refused; nothing changed")?;
    if let Some(new) = answer.new {
        println!(
            "policy shadow started: {} {} is asked every decision and never acted on; \
             `regionsync status --admin {admin}` shows policy.shadow",
            new.name, new.version
        );
    }
    Ok(())
}

async fn promote(client: &AdminClientArgs) -> anyhow::Result<()> {
    let (admin, token_file) = (client.admin.as_str(), client.token_file.as_deref());
    let answer = admin_change(admin, token_file, "POST", "/policy/promote", &[])
        .await
        .context("policy not promoted; the active policy stays")?;
    let (Some(old), Some(new)) = (answer.old, answer.new) else {
        bail!("{admin} answered without the policies swapped");
    };
    println!(
        "policy promoted: {} {} -> {} {}; shadow stopped",
        old.name, old.version, new.name, new.version
    );
    Ok(())
}

fn new(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::tools::policy_new;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = sdk.unwrap_or_else(policy_new::default_sdk);
    for file in policy_new::create(name, &dir, &sdk)? {
        println!("wrote {}", file.display());
    }
    println!(
        "build it:  cd {} && cargo build --release --target wasm32-wasip2",
        dir.display()
    );
    println!(
        "check it:  regionsync policy check {}/target/wasm32-wasip2/release/{}",
        dir.display(),
        policy_new::component_file(name)
    );
    Ok(())
}
