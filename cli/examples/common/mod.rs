//! What the benchmarks share: the binary's allocator, a TiKV-like region and
//! the default policy.

use std::sync::Arc;

use regionsync::policy_runtime::PolicyRuntime;

/// The allocator the `regionsync` binary runs on, so that memory and speed
/// figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Region `i` of `n`: the same regions `regionsync bench` uses.
pub use regionsync_harness::cluster::sample_region as region;

pub fn policy() -> Arc<PolicyRuntime> {
    Arc::new(PolicyRuntime::with_default().unwrap())
}
