//! Builds the shipped policy components (`policies/`) for `wasm32-wasip2`,
//! so that a plain `cargo build` or `cargo test` of the host needs nothing
//! else: they are embedded in the binary (`policy_runtime::builtin`). The
//! test fixtures are built by `tests/build.rs`, not here: they never ship.

#[path = "build_components.rs"]
mod build_components;

use build_components::Component;

/// (file stem, crate): the embedded policies.
const SHIPPED: &[Component] = &[
    Component {
        stem: "default",
        package: "regionsync-policy-default",
        features: "",
    },
    Component {
        stem: "conservative",
        package: "regionsync-policy-conservative",
        features: "",
    },
    Component {
        stem: "gap_fraction",
        package: "regionsync-policy-gap-fraction",
        features: "",
    },
];

fn main() {
    let out = build_components::build(
        SHIPPED,
        &["guest/src", "guest/Cargo.toml", "wit", "policies"],
    );
    println!("cargo:rustc-env=REGIONSYNC_COMPONENT_DIR={}", out.display());
}
