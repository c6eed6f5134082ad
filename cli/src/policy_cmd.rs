//! `regionsync policy ...`: what an operator or a policy author does with
//! components: without any node (`new`, `list`, `check`, `diff`), and
//! against a running node's admin interface (`swap`, `shadow`, `promote`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use regionsync::admin::SwapAnswer;
use regionsync::policy_runtime::WasmRuntime;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync_harness::admin_client;

/// A component by embedded name or file, loaded on a plain Wasm runtime.
fn component(what: &str) -> anyhow::Result<regionsync::policy_runtime::WasmPolicy> {
    let wasm = WasmRuntime::new(WasmConfig::default())?;
    Ok(match regionsync::policy_runtime::builtin::by_name(what) {
        Some(bytes) => wasm.load(bytes)?,
        None => wasm.load_file(std::path::Path::new(what))?,
    })
}

pub fn check(what: &str) -> anyhow::Result<()> {
    let bytes = match regionsync::policy_runtime::builtin::by_name(what) {
        Some(b) => b.to_vec(),
        None => std::fs::read(what).with_context(|| format!("cannot read policy file {what}"))?,
    };
    let report = regionsync_cli::tools::check::check(&bytes);
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

pub fn list() -> anyhow::Result<()> {
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

pub fn diff(a: &str, b: &str, examples: usize) -> anyhow::Result<()> {
    use regionsync::policy_runtime::PolicyEngine;
    use regionsync_cli::tools::workload;
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

pub async fn swap(admin: &str, token_file: Option<&Path>, file: &Path) -> anyhow::Result<()> {
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

pub async fn shadow(
    admin: &str,
    token_file: Option<&Path>,
    file: Option<&Path>,
    stop: bool,
) -> anyhow::Result<()> {
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

pub async fn promote(admin: &str, token_file: Option<&Path>) -> anyhow::Result<()> {
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

pub fn new(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    use regionsync_cli::tools::policy_new;
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
