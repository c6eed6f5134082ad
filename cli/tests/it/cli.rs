//! The `regionsync` binary as a user meets it: real processes on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;

#[test]
fn help_explains_every_flag_with_its_default() {
    let out = run(&["leader", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--admin",
        "--policy",
        "--cluster-id",
        "--history-capacity",
        "--name",
        "--config",
    ] {
        assert!(help.contains(flag), "leader help lacks {flag}:\n{help}");
    }
    assert!(help.contains("[default: 10000]"), "{help}");
    let out = run(&["follower", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--leader",
        "--listen",
        "--data-dir",
        "--memory-only",
        "--admin",
        "--policy",
        "--cluster-id",
        "--name",
    ] {
        assert!(help.contains(flag), "follower help lacks {flag}:\n{help}");
    }
}

#[test]
fn leader_follower_load_status_metrics_and_policy_swap_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let [grpc, admin, fgrpc, fadmin] = free_ports();
    let leader_url = format!("http://127.0.0.1:{grpc}");
    let (ladmin, fadmin) = (format!("127.0.0.1:{admin}"), format!("127.0.0.1:{fadmin}"));
    let ldata = dir.path().join("leader");
    let _leader = spawn(&[
        "leader",
        "--listen",
        &format!("127.0.0.1:{grpc}"),
        "--data-dir",
        ldata.to_str().unwrap(),
        "--admin",
        &ladmin,
        "--name",
        "l1",
    ]);
    wait_for("the leader's admin port", || admin_up(&ladmin));
    let fdata = dir.path().join("follower");
    // Swaps need the token; only the conservative component is allowed.
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let comp = dir.path().join("conservative.wasm");
    std::fs::write(&comp, regionsync::policy_runtime::builtin::CONSERVATIVE).unwrap();
    let allowed =
        regionsync::policy_runtime::Sha256::of(regionsync::policy_runtime::builtin::CONSERVATIVE)
            .to_string();
    let _follower = spawn(&[
        "follower",
        "--leader",
        &leader_url,
        "--listen",
        &format!("127.0.0.1:{fgrpc}"),
        "--data-dir",
        fdata.to_str().unwrap(),
        "--admin",
        &fadmin,
        "--name",
        "f1",
        "--admin-token-file",
        token.to_str().unwrap(),
        "--policy-allow",
        &allowed,
    ]);
    wait_for("the follower's admin port", || admin_up(&fadmin));

    let out = run(&[
        "load",
        "--leader",
        &leader_url,
        "--regions",
        "5000",
        "--updates",
        "2000",
        "--seed",
        "3",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("(100.00% accepted)"), "{said}");

    wait_for("the follower to converge", || {
        let (l, f) = (status(&ladmin), status(&fadmin));
        f["ready"] == true && f["digest"] == l["digest"] && f["next_index"] == l["next_index"]
    });
    let l = status(&ladmin);
    assert_eq!(l["role"], "leader");
    assert_eq!(l["regions"], status(&fadmin)["regions"]);
    for key in [
        "ready",
        "phase",
        "cluster_id",
        "first_index",
        "next_index",
        "regions",
        "digest",
        "policy",
        "full_syncs",
    ] {
        assert!(l.get(key).is_some(), "status lacks {key}: {l}");
    }
    assert_eq!(status(&fadmin)["cluster_id"], l["cluster_id"]);

    let metrics = http_get(&ladmin, "/metrics");
    for name in [
        "regionsync_history_next_index",
        "regionsync_follower_lag_records{follower=\"f1\"}",
        "regionsync_policy_calls_total",
        "regionsync_full_syncs_total",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    assert!(http_get(&fadmin, "/metrics").contains("regionsync_ready 1"));

    // Without the token, or with a wrong one, a swap is refused.
    let (comp_s, token_s) = (comp.to_str().unwrap(), token.to_str().unwrap());
    let err = one_line_failure(&swap_args(&fadmin, None, comp_s));
    assert!(err.contains("admin token is required"), "{err}");
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "guess").unwrap();
    let err = one_line_failure(&swap_args(&fadmin, wrong.to_str(), comp_s));
    assert!(err.contains("wrong admin token"), "{err}");
    // The leader was started without a token file: its swaps are off.
    let err = one_line_failure(&swap_args(&ladmin, None, comp_s));
    assert!(err.contains("--admin-token-file"), "{err}");
    // A component that is not on the allow-list is refused, naming its hash.
    let other = dir.path().join("default.wasm");
    std::fs::write(&other, regionsync::policy_runtime::builtin::DEFAULT).unwrap();
    let err = one_line_failure(&swap_args(&fadmin, Some(token_s), other.to_str().unwrap()));
    let other_sha =
        regionsync::policy_runtime::Sha256::of(regionsync::policy_runtime::builtin::DEFAULT);
    assert!(
        err.contains("not on this node's allow-list") && err.contains(&other_sha.to_string()),
        "{err}"
    );
    assert_eq!(status(&fadmin)["policy"]["name"], "default");

    // Swap the follower's policy to the allowed component, then a refused file.
    let out = run(&swap_args(&fadmin, Some(token_s), comp_s));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("default 0.2.0 -> conservative 0.2.0"),
        "{said}"
    );
    assert_eq!(status(&fadmin)["policy"]["name"], "conservative");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let err = one_line_failure(&swap_args(&fadmin, Some(token_s), junk.to_str().unwrap()));
    assert!(err.contains("old policy stays active"), "{err}");
    assert_eq!(status(&fadmin)["policy"]["name"], "conservative");
}

/// `regionsync policy swap` of `file` on `admin`, with a token file if any.
fn swap_args<'a>(admin: &'a str, token: Option<&'a str>, file: &'a str) -> Vec<&'a str> {
    let mut args = vec!["policy", "swap", "--admin", admin];
    if let Some(t) = token {
        args.extend(["--token-file", t]);
    }
    args.push(file);
    args
}

#[test]
fn a_follower_process_killed_mid_full_sync_restarts_not_ready_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let [grpc, admin, fgrpc, fadmin] = free_ports();
    let leader_url = format!("http://127.0.0.1:{grpc}");
    let (ladmin, fadmin) = (format!("127.0.0.1:{admin}"), format!("127.0.0.1:{fadmin}"));
    let _leader = spawn(&[
        "leader",
        "--listen",
        &format!("127.0.0.1:{grpc}"),
        "--data-dir",
        dir.path().join("l").to_str().unwrap(),
        "--admin",
        &ladmin,
        "--full-sync-rate",
        "4000000",
    ]);
    wait_for("the leader", || admin_up(&ladmin));
    let out = run(&["load", "--leader", &leader_url, "--regions", "60000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fdata = dir.path().join("f");
    let fargs = [
        "follower",
        "--leader",
        &leader_url,
        "--listen",
        &format!("127.0.0.1:{fgrpc}"),
        "--data-dir",
        fdata.to_str().unwrap(),
        "--admin",
        &fadmin,
    ];
    let mut follower = spawn(&fargs);
    wait_for("the follower's admin port", || admin_up(&fadmin));
    wait_for("a few snapshot frames", || {
        let s = status(&fadmin);
        s["phase"] == "snapshot" && s["details"]["snapshot_regions"].as_u64().unwrap() >= 3_000
    });
    follower.0.kill().unwrap(); // SIGKILL: no orderly step at all
    follower.0.wait().unwrap();
    drop(follower);

    let mut restarted = Command::new(BIN)
        .args(fargs)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = restarted.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("full sync complete"))
            .filter(|l| l.contains("asking the leader to sync"))
            .collect::<Vec<_>>()
    });
    let restarted = Node(restarted);
    wait_for("the restarted follower's admin port", || admin_up(&fadmin));
    let first = status(&fadmin);
    assert_eq!(
        first["ready"], false,
        "ready right after a cut full sync: {first}"
    );
    wait_for("convergence", || {
        let (l, f) = (status(&ladmin), status(&fadmin));
        f["ready"] == true && f["digest"] == l["digest"]
    });
    let asked = log.join().unwrap();
    assert!(
        asked.iter().any(|l| l.contains("start_index=0")),
        "the restarted follower did not ask for a full sync: {asked:?}"
    );
    drop(restarted);
}

#[test]
fn the_demo_runs_and_all_digests_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("all digests equal: yes"), "{said}");
}

#[test]
fn policy_export_list_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["policy", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let sha = regionsync::policy_runtime::Sha256::of(regionsync::policy_runtime::builtin::DEFAULT);
    assert!(
        listed.contains("default") && listed.contains(&sha.to_string()),
        "{listed}"
    );
    let file = dir.path().join("conservative.wasm");
    let out = run(&[
        "policy",
        "export",
        "conservative",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        regionsync::policy_runtime::builtin::CONSERVATIVE
    );
    let err = one_line_failure(&["policy", "export", "nosuch"]);
    assert!(err.contains("no embedded policy named"), "{err}");
    // A file against an embedded name: routing differs, in-ring -> gap-refused.
    let out = run(&["policy", "diff", "default", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("\"reason\":\"in-ring\"") && said.contains("\"reason\":\"gap-refused\""),
        "{said}"
    );
    let same = run(&["policy", "diff", "default", "default"]);
    let said = String::from_utf8_lossy(&same.stdout);
    assert!(
        said.lines()
            .filter(|l| l.starts_with("route-request"))
            .all(|l| l.trim_end().ends_with(" 0")),
        "{said}"
    );
}

#[test]
fn policy_check_passes_the_shipped_policies() {
    let out = run(&["policy", "check", "default"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    // The count comes from the vectors file, not from this test.
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/conformance/vectors.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let n = vectors["cases"].as_array().unwrap().len();
    assert!(
        said.contains(&format!(
            "conformance vectors: {n} cases, 0 break the contract, {n} answered as the default policy does"
        )),
        "{said}"
    );
    assert!(
        said.contains("0 broke the invariants or the host's facts"),
        "{said}"
    );
    for other in ["conservative", "gap-fraction"] {
        let out = run(&["policy", "check", other]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{other}: {said}");
        assert!(said.contains(&format!("{other}: passed")), "{said}");
    }
}

/// The bench cannot rot: every scenario runs, small, as the shipping binary
/// runs it, and prints the documented JSON. No timing is asserted.
#[test]
fn bench_all_runs_every_scenario_small_and_prints_json() {
    let out = run(&["bench", "all", "--smoke", "--json"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1, "{v}");
    let names: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "call",
            "resume",
            "full-sync",
            "policy-overhead",
            "live",
            "swap-under-load",
            "memory",
            "scale",
            "churn"
        ]
    );
    for s in v["scenarios"].as_array().unwrap() {
        let figures = s["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{s}");
        for f in figures {
            for key in ["name", "unit", "min", "median", "max", "runs"] {
                assert!(f.get(key).is_some(), "figure without {key}: {f}");
            }
        }
    }
}
