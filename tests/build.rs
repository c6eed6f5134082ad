//! Builds the misbehaving policy components under `fixtures/` for
//! `wasm32-wasip2`, for the containment tests and the `policy check` tests
//! (`regionsync_tests::fixture`). They live here, not beside the shipped
//! policies, so that nothing that ships builds or embeds them.

#[path = "../host/build_components.rs"]
mod build_components;

use build_components::Component;

const HOSTILE: &str = "regionsync-hostile-policies";

macro_rules! hostile {
    ($($stem:literal = $feature:literal),* $(,)?) => {
        &[$(Component { stem: $stem, package: HOSTILE, features: $feature }),*]
    };
}

const FIXTURES: &[Component] = hostile![
    "hostile_loop" = "loop",
    "hostile_memory" = "memory",
    "hostile_trap" = "trap",
    "hostile_plan_send" = "plan-send",
    "hostile_snapshot_flip" = "snapshot-flip",
    "hostile_delta_flip" = "delta-flip",
    "hostile_complete_flip" = "complete-flip",
    "hostile_claim_elsewhere" = "claim-elsewhere",
];

const OTHER_CONTRACT: Component = Component {
    stem: "other_contract",
    package: "regionsync-other-contract",
    features: "",
};

fn main() {
    let mut all = FIXTURES.to_vec();
    all.push(OTHER_CONTRACT);
    let out = build_components::build(
        &all,
        &["guest/src", "guest/Cargo.toml", "wit", "tests/fixtures"],
    );
    println!("cargo:rustc-env=REGIONSYNC_FIXTURE_DIR={}", out.display());
}
