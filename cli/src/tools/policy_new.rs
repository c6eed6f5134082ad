//! `regionsync policy new NAME`: a ready policy crate, from the templates in
//! `cli/templates/policy/`, that builds into a component with one command.
//!
//! The crate depends on the SDK (the `guest/` crate) by path: by default the
//! checkout this binary was built from, or `--sdk`. It gets the workspace's
//! `Cargo.lock`, so that it builds with the dependency versions regionsync
//! was built and tested with, and it is a workspace of its own, so that it
//! may be made anywhere, inside a checkout or not.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../../templates/policy/Cargo.toml.in");
const LIB_RS: &str = include_str!("../../templates/policy/lib.rs.in");
const README: &str = include_str!("../../templates/policy/README.md.in");
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// The SDK of the checkout this binary was built from.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest")
}

/// The component's file name for a crate `name`, as cargo writes it.
pub fn component_file(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

/// Write the crate `name` into `dir` (which must not exist yet), using the
/// SDK at `sdk`; returns the files written.
pub fn create(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid || name.len() > 64 {
        bail!("{name:?} is not a policy name: use a-z, 0-9 and '-', starting with a letter");
    }
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            dir.display()
        );
    }
    let sdk = sdk.canonicalize().ok().filter(|s| s.join("Cargo.toml").exists()).with_context(|| {
        format!(
            "the regionsync policy SDK was not found at {}; pass --sdk with the path of a regionsync checkout's guest/",
            sdk.display()
        )
    })?;
    let lib = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("README.md", fill(README)),
        ("Cargo.lock", CARGO_LOCK.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
