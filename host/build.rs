//! Builds the policy components from `guest/` for `wasm32-wasip2`, so that a
//! plain `cargo build` or `cargo test` of the host needs nothing else: the
//! shipped policies are embedded in the binary, and the hostile fixtures are
//! left beside them for the containment tests.
//!
//! The guest is built by a nested cargo into its own target directory (the
//! outer cargo holds the lock on ours), with a profile tuned for a small
//! component, and with the outer build's wrappers and flags removed: they are
//! meant for the host (clippy, coverage) and would break or bloat the guest.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (file stem, guest features). The first two ship; the rest are fixtures.
const VARIANTS: &[(&str, &str)] = &[
    ("default", ""),
    ("conservative", "conservative"),
    ("hostile_loop", "hostile-loop"),
    ("hostile_memory", "hostile-memory"),
    ("hostile_trap", "hostile-trap"),
    ("hostile_plan_send", "hostile-plan-send"),
    ("hostile_snapshot_flip", "hostile-snapshot-flip"),
    ("hostile_delta_flip", "hostile-delta-flip"),
    ("hostile_complete_flip", "hostile-complete-flip"),
    ("hostile_claim_elsewhere", "hostile-claim-elsewhere"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for watched in ["guest/src", "guest/Cargo.toml", "wit"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=REGIONSYNC_GUEST_TARGET_DIR");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target_installed();

    // Shared across host profiles (debug, release, clippy) so each variant is
    // built once; beside, not inside, the outer target directory.
    let guest_target = std::env::var_os("REGIONSYNC_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir(&out_dir).join("guest-wasm"));

    // One target directory for every variant: the dependencies (the
    // wit-bindgen macros above all) are built once; only the guest crate is
    // rebuilt per feature set, and cargo keeps each set's build apart.
    let dir = guest_target;
    for (stem, features) in VARIANTS {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&workspace)
            .args(["build", "--release", "--quiet", "-p", "regionsync-guest"])
            .args(["--target", TARGET])
            .arg("--target-dir")
            .arg(&dir);
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("could not run {cargo} to build the policy component: {e}"));
        if !status.success() {
            panic!(
                "building the `{stem}` policy component failed ({status}); see the cargo output above"
            );
        }
        let built = dir
            .join(TARGET)
            .join("release")
            .join("regionsync_guest.wasm");
        let dest = out_dir.join(format!("policy_{stem}.wasm"));
        std::fs::copy(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
    }
    println!(
        "cargo:rustc-env=REGIONSYNC_COMPONENT_DIR={}",
        out_dir.display()
    );
}

/// Stop with one line that says how to fix it, instead of a page of errors
/// about a missing `core` for wasm32.
fn ensure_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = libdir.as_deref().is_some_and(has_core);
    if !installed {
        panic!(
            "the {TARGET} Rust target is not installed: run `rustup target add {TARGET}` (or ./setup)"
        );
    }
}

fn has_core(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}

/// OUT_DIR is `<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`.
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("guest"))
}
