//! The policy components built from `policies/` by `host/build.rs` and embedded
//! in the binary, so that a node runs without any file beside it.

/// The protocol's behaviour (docs/protocol.md §2-§3); active unless
/// `--policy` says otherwise.
pub static DEFAULT: &[u8] = include_bytes!(concat!(
    env!("REGIONSYNC_COMPONENT_DIR"),
    "/policy_default.wasm"
));
/// Any gap means a full sync; one full sync at a time; slower reconnects.
pub static CONSERVATIVE: &[u8] = include_bytes!(concat!(
    env!("REGIONSYNC_COMPONENT_DIR"),
    "/policy_conservative.wasm"
));

/// History only while the gap is at most half the ring; a delta or a full
/// sync beyond (`policies/gap-fraction`).
pub static GAP_FRACTION: &[u8] = include_bytes!(concat!(
    env!("REGIONSYNC_COMPONENT_DIR"),
    "/policy_gap_fraction.wasm"
));

/// The names of the embedded policies.
pub const NAMES: &[&str] = &["default", "conservative", "gap-fraction"];

/// A built-in component by policy name.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    match name {
        "default" => Some(DEFAULT),
        "conservative" => Some(CONSERVATIVE),
        "gap-fraction" => Some(GAP_FRACTION),
        _ => None,
    }
}

/// Directory holding the built components (`policy_{name}.wasm`).
pub const COMPONENT_DIR: &str = env!("REGIONSYNC_COMPONENT_DIR");
