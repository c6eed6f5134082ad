//! `regionsync policy list | check | diff`: what an operator or a policy
//! author asks of components without any node running.

use anyhow::{Context, bail};
use regionsync::policy_runtime::WasmRuntime;
use regionsync::policy_runtime::wasm::WasmConfig;

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
    let report = regionsync::tools::check::check(&bytes);
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
    for name in ["default", "conservative"] {
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

pub fn diff(a: &str, b: &str, examples: usize) -> anyhow::Result<()> {
    use regionsync::policy_runtime::PolicyEngine;
    let (x, y) = (component(a)?, component(b)?);
    let vectors = regionsync::tools::vectors::generate(
        &regionsync_guest::Policy::default_policy(),
        regionsync::tools::vectors::SEED,
    );
    let d = regionsync::tools::vectors::diff(&x, &y, &vectors, examples);
    let (ia, ib) = (x.info(), y.info());
    println!(
        "A = {} {} ({a}), B = {} {} ({b}), over the conformance vectors' inputs",
        ia.name, ia.version, ib.name, ib.version
    );
    println!("{:<16} {:>8} {:>8}", "decision", "cases", "differ");
    for (name, n) in &d.compared {
        println!(
            "{name:<16} {n:>8} {:>8}",
            d.differ.get(name).copied().unwrap_or(0)
        );
    }
    for (name, args, ra, rb) in &d.examples {
        println!("\n{name}({args})\n  A: {ra}\n  B: {rb}");
    }
    Ok(())
}
