//! regionsync: the host side of the region syncer. It owns every kind of
//! I/O (gRPC streams, the embedded store, time, metrics) and asks the policy
//! runtime for every decision.

pub mod admin;
pub mod admin_client;
pub mod demo;
pub mod digest;
pub mod follower;
pub mod history;
pub mod leader;
pub mod load;
pub mod metrics;
pub mod policy_runtime;
pub mod region_store;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;

/// mimalloc: a million small region encodings cost less memory (no
/// per-allocation header, finer size classes) and less time than with the
/// system allocator. Set here so every binary linking the host uses it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Return memory the allocator holds but no longer uses to the system (after
/// a bulk load's scratch buffers are freed).
pub fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it only returns free pages.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
