//! The conformance vectors (`tests/conformance/vectors.json`, written by
//! `regionsync policy vectors`): the checked-in file is exactly what the
//! generator writes, and every host reproduces every case: the Rust host
//! with the Wasm component and with the native library, and the Node.js
//! (`hosts/node`, through jco) and Python (`hosts/python`, through wasmtime-py)
//! hosts with the same component file. The other hosts' toolchains come from
//! `./setup`; without them these tests fail saying so, never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use regionsync::policy_runtime::{NativePolicy, PolicyEngine, WasmRuntime, builtin};
use regionsync_harness::vectors;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn checked_in() -> Value {
    let path = root().join("tests/conformance/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_checked_in_vectors_are_what_the_generator_writes() {
    let fresh = vectors::generate(&regionsync_guest::Policy::default_policy(), vectors::SEED);
    assert!(
        fresh == checked_in(),
        "tests/conformance/vectors.json is stale: run \
         `cargo run --release -p regionsync-cli -- policy vectors -o tests/conformance/vectors.json`"
    );
}

/// One case through `engine`, as WIT-shaped JSON.
fn run(engine: &dyn PolicyEngine, name: &str, args: &Value) -> Value {
    vectors::answer(engine, name, args).unwrap()
}

#[test]
fn the_rust_host_reproduces_every_vector_with_the_component_and_natively() {
    let vectors = checked_in();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 1000, "only {} vectors", cases.len());
    let wasm = WasmRuntime::new(Default::default())
        .unwrap()
        .load(builtin::DEFAULT)
        .unwrap();
    let native = NativePolicy::by_name("default").unwrap();
    for (label, engine) in [
        ("wasm", &wasm as &dyn PolicyEngine),
        ("native", &native as &dyn PolicyEngine),
    ] {
        let started = Instant::now();
        let mut failed = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let got = run(engine, case["fn"].as_str().unwrap(), &case["args"]);
            if got != case["result"] {
                failed.push((i, case.clone(), got));
            }
        }
        println!(
            "rust host ({label}): {}/{} vectors reproduced, {:.0} ns per case (with JSON)",
            cases.len() - failed.len(),
            cases.len(),
            started.elapsed().as_nanos() as f64 / cases.len() as f64
        );
        assert!(
            failed.is_empty(),
            "{label}: {} differ; first {:?}",
            failed.len(),
            failed[0]
        );
    }
}

/// The embedded default component, written where the other hosts load it.
fn component(dir: &Path) -> PathBuf {
    let path = dir.join("policy.wasm");
    std::fs::write(&path, builtin::DEFAULT).unwrap();
    path
}

fn must_run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}; run ./setup"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_nodejs_host_reproduces_every_vector() {
    let node_dir = root().join("hosts/node");
    let jco = node_dir.join("node_modules/.bin/jco");
    assert!(
        jco.exists(),
        "the Node.js host is not set up ({} missing): run ./setup",
        jco.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    must_run(
        "jco transpile",
        Command::new(&jco)
            .args(["transpile", "--quiet", "--name", "policy", "-o"])
            .arg(&gen_dir)
            .arg(component(tmp.path())),
    );
    let said = must_run(
        "node --test",
        Command::new("node")
            .args(["--test", "test/"])
            .current_dir(&node_dir)
            .env("REGIONSYNC_NODE_GEN", &gen_dir),
    );
    for line in said.lines().filter(|l| l.contains("node host:")) {
        println!("{}", line.trim_start_matches("# "));
    }
    assert!(
        said.contains("# pass 2") && said.contains("# fail 0"),
        "{said}"
    );
}

#[test]
fn the_python_host_reproduces_every_vector() {
    let py_dir = root().join("hosts/python");
    let python = py_dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python host is not set up ({} missing): run ./setup",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let said = must_run(
        "pytest",
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                "tests",
            ])
            .current_dir(&py_dir)
            .env("REGIONSYNC_COMPONENT", component(tmp.path())),
    );
    for line in said.lines().filter(|l| l.contains("python host:")) {
        println!("{}", line.trim_start_matches('.'));
    }
    assert!(said.contains("2 passed"), "{said}");
}
