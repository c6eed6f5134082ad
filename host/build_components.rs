//! Builds policy components (crates of the workspace) for `wasm32-wasip2`
//! from a build script: `host/build.rs` builds the shipped policies under
//! `policies/`, `tests/build.rs` the test fixtures. Shared by `#[path]` so
//! that both build the same way, into one target directory.
//!
//! The components are built by a nested cargo into their own target
//! directory (the outer cargo holds the lock on ours), with a profile tuned
//! for a small component, and with the outer build's wrappers and flags
//! removed: they are meant for the host (clippy, coverage) and would break
//! or bloat the guest.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// One component to build: written to `OUT_DIR/policy_{stem}.wasm`.
#[derive(Clone, Copy)]
pub struct Component {
    pub stem: &'static str,
    pub package: &'static str,
    /// Features of `package` (empty: none).
    pub features: &'static str,
}

/// Build `components` and copy each to `out_dir`; tell cargo to rerun when
/// anything under `watched` (workspace-relative) changes.
pub fn build(components: &[Component], watched: &[&str]) -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for w in watched {
        println!("cargo:rerun-if-changed={}", workspace.join(w).display());
    }
    println!("cargo:rerun-if-env-changed=REGIONSYNC_GUEST_TARGET_DIR");
    ensure_target_installed();
    // Shared across host profiles (debug, release, clippy) and both build
    // scripts, so that the dependencies (the wit-bindgen macros above all)
    // are built once; beside, not inside, the outer target directory.
    let dir = std::env::var_os("REGIONSYNC_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir(&out_dir).join("guest-wasm"));
    // Crates without features build together in one cargo run; a crate with
    // features once per feature set (each set is one fixture).
    let plain: Vec<&Component> = components
        .iter()
        .filter(|c| c.features.is_empty())
        .collect();
    if !plain.is_empty() {
        cargo(&workspace, &dir, plain.iter().map(|c| c.package), "");
        for c in &plain {
            copy_out(&dir, c, &out_dir);
        }
    }
    for c in components.iter().filter(|c| !c.features.is_empty()) {
        cargo(&workspace, &dir, [c.package], c.features);
        copy_out(&dir, c, &out_dir);
    }
    out_dir
}

fn cargo<'a>(
    workspace: &Path,
    dir: &Path,
    packages: impl IntoIterator<Item = &'a str>,
    features: &str,
) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--quiet", "--lib"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(dir);
    let packages: Vec<&str> = packages.into_iter().collect();
    for p in &packages {
        cmd.args(["-p", p]);
    }
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
        .unwrap_or_else(|e| panic!("could not run {cargo} to build policy components: {e}"));
    if !status.success() {
        panic!(
            "building the policy component(s) {packages:?} {features} failed ({status}); see the cargo output above"
        );
    }
}

fn copy_out(dir: &Path, c: &Component, out_dir: &Path) {
    let built = dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", c.package.replace('-', "_")));
    let dest = out_dir.join(format!("policy_{}.wasm", c.stem));
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
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
