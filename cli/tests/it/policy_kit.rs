//! The policy author's whole path, as processes: `policy new` makes a crate,
//! cargo builds it into a component, `policy check` passes it, `policy diff`
//! shows what it changes, a running follower shadows it under load and
//! counts the disagreements, `policy promote` makes it active, and the
//! follower's copy stays equal to the leader's throughout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The target directory the build scripts build components in: the new
/// crate builds there too, reusing the SDK's built dependencies.
fn guest_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REGIONSYNC_GUEST_TARGET_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .expect("tests run inside a cargo target directory")
        .join("guest-wasm")
}

fn ok(out: &std::process::Output, what: &str) -> String {
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// `policy new NAME` and the one documented build command.
fn new_policy(dir: &Path, name: &str) -> PathBuf {
    let crate_dir = dir.join(name);
    let said = ok(
        &run(&["policy", "new", name, "--dir", crate_dir.to_str().unwrap()]),
        "policy new",
    );
    assert!(
        said.contains("cargo build --release --target wasm32-wasip2"),
        "{said}"
    );
    let target = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&crate_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap();
    ok(&out, "cargo build of the new policy");
    let file = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(file.exists(), "{} was not built", file.display());
    file
}

#[test]
fn new_build_check_diff_shadow_promote_with_digests_equal() {
    let dir = tempfile::tempdir().unwrap();
    let component = new_policy(dir.path(), "kit-policy");
    let file = component.to_str().unwrap();

    // check passes; diff against default shows the change (reconnects).
    let said = ok(&run(&["policy", "check", file]), "policy check");
    assert!(said.contains("loads: kit-policy 0.1.0"), "{said}");
    assert!(said.contains(&format!("{file}: passed")), "{said}");
    let said = ok(&run(&["policy", "diff", "default", file]), "policy diff");
    let differ = |name: &str| -> u64 {
        let line = said
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in {said}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(differ("backoff") > 0, "{said}");
    assert_eq!(differ("route-request"), 0, "{said}");

    // A leader and a follower that takes changes with a token.
    let [grpc, ladmin_port, fgrpc, fadmin_port] = free_ports();
    let leader_url = format!("http://127.0.0.1:{grpc}");
    let ladmin = format!("127.0.0.1:{ladmin_port}");
    let fadmin = format!("127.0.0.1:{fadmin_port}");
    let ldata = dir.path().join("leader");
    let leader_args = [
        "leader",
        "--listen",
        &format!("127.0.0.1:{grpc}"),
        "--data-dir",
        ldata.to_str().unwrap(),
        "--admin",
        &ladmin,
        "--name",
        "l1",
    ];
    let mut leader = spawn(&leader_args);
    wait_for("the leader's admin port", || admin_up(&ladmin));
    let token = dir.path().join("token");
    std::fs::write(&token, "kit-token\n").unwrap();
    let token_s = token.to_str().unwrap();
    let fdata = dir.path().join("follower");
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
        token_s,
    ]);
    wait_for("the follower's admin port", || admin_up(&fadmin));
    let load = |updates: &str, seed: &str| {
        ok(
            &run(&[
                "load",
                "--leader",
                &leader_url,
                "--regions",
                "3000",
                "--updates",
                updates,
                "--seed",
                seed,
            ]),
            "load",
        )
    };
    load("1000", "1");
    let converged = || {
        let (l, f) = (status(&ladmin), status(&fadmin));
        f["ready"] == true && f["digest"] == l["digest"] && f["next_index"] == l["next_index"]
    };
    wait_for("the follower to converge", converged);

    // Shadow: `--stop` drops a candidate; the new policy is then shadowed.
    let conservative = dir.path().join("conservative.wasm");
    ok(
        &run(&[
            "policy",
            "export",
            "conservative",
            "-o",
            conservative.to_str().unwrap(),
        ]),
        "policy export",
    );
    let shadow = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "shadow",
            "--admin",
            &fadmin,
            "--token-file",
            token_s,
        ];
        args.extend(extra);
        run(&args)
    };
    ok(&shadow(&[conservative.to_str().unwrap()]), "policy shadow");
    assert_eq!(status(&fadmin)["policy"]["shadow"]["name"], "conservative");
    let said = ok(&shadow(&["--stop"]), "policy shadow --stop");
    assert!(said.contains("stopped: conservative"), "{said}");
    assert!(status(&fadmin)["policy"].get("shadow").is_none());
    let said = ok(&shadow(&[file]), "policy shadow");
    assert!(said.contains("kit-policy 0.1.0"), "{said}");

    // Under load, with the leader restarted twice so that the follower
    // reconnects (the decisions where the candidate differs).
    for round in 0..2 {
        drop(leader);
        leader = spawn(&leader_args);
        wait_for("the restarted leader", || admin_up(&ladmin));
        load("4000", &format!("{}", 10 + round));
    }
    wait_for("the follower to converge under the shadow", converged);
    let shown = status(&fadmin)["policy"]["shadow"].clone();
    let count = |f: &str, outcome: &str| shown["by_function"][f][outcome].as_u64().unwrap();
    assert!(count("backoff", "differ") > 0, "{shown}");
    assert!(count("on-frame", "same") > 0, "{shown}");
    assert_eq!(count("on-frame", "differ"), 0, "{shown}");
    assert!(
        shown["examples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["function"] == "backoff"),
        "{shown}"
    );
    let metrics = http_get(&fadmin, "/metrics");
    assert!(
        metrics.contains("regionsync_policy_shadow_decisions_total{candidate=\"kit-policy\",function=\"backoff\",outcome=\"differ\"}"),
        "{metrics}"
    );
    assert_eq!(
        status(&fadmin)["policy"]["name"],
        "default",
        "a shadow is never active"
    );

    // Promote: active, shadow gone, and the copy stays equal.
    let promote = [
        "policy",
        "promote",
        "--admin",
        &fadmin,
        "--token-file",
        token_s,
    ];
    let said = ok(&run(&promote), "policy promote");
    assert!(said.contains("default 0.2.0 -> kit-policy 0.1.0"), "{said}");
    let f = status(&fadmin);
    assert_eq!(f["policy"]["name"], "kit-policy");
    assert!(f["policy"].get("shadow").is_none(), "{f}");
    let err = one_line_failure(&promote);
    assert!(err.contains("no shadow policy is running"), "{err}");
    load("2000", "20");
    wait_for("the follower to converge on the promoted policy", converged);
    let (l, f) = (status(&ladmin), status(&fadmin));
    assert_eq!(l["digest"], f["digest"]);
    assert_eq!(l["regions"], f["regions"]);
}
