//! regionsync: the host side of the region syncer. It owns every kind of
//! I/O (gRPC streams, the embedded store, time, metrics) and asks the policy
//! runtime for every decision. What goes over the wire and what each role
//! does with it is `docs/protocol.md`; how the code is laid out is
//! `docs/design.md`. This is the map.
//!
//! ```text
//!  LEADER NODE                                   FOLLOWER NODE
//!
//!  RegionHeartbeat ─▶ service ─▶ leader::intake   follower::stream
//!                    (Leading)   apply ▸ commit     (sessions, backoff)
//!                                ▸ publish            │ frames
//!                                   │                 ▼
//!                                   ▼               follower::apply
//!                   region_store, history, storage  reset ▸ apply ▸ record
//!                                   │               ▸ claim ▸ reconnect
//!                                   ▼                 │
//!  SyncRegions ◀──── service ◀─ leader::sync_stream   ▼
//!  (the frames      (Leading)  (a task per stream)  region_store, history, storage
//!  follower::stream                                   │ (read only when ready)
//!  receives)                                          ▼
//!  GetRegion, ScanRegions ◀── service (RegionReads) ◀─┘  (on either node)
//!
//!  every decision, on both sides: policy_runtime ─▶ Wasm component (or native guest)
//!  node: assembles a role with its gRPC server; admin: status, metrics, swap
//! ```
//!
//! The modules, from the bottom up:
//! - shared data: [`region_store`] (the region set and its epoch rules),
//!   [`history`] (the numbered ring of changes), [`digest`] (the region-set
//!   digest), [`storage`] (the redb store, a full sync's snapshot kept in
//!   chunks, and its typed errors), [`wire`] (message limits, headers and
//!   the sync frame, message or encoded, both roles use), [`tls`]
//!   (certificates for every gRPC hop);
//! - decisions: [`policy_runtime`] (loads, checks, swaps and calls the
//!   policy component);
//! - roles: [`leader`] and [`follower`], each knowing only the shared data and
//!   the policy runtime;
//! - faces: [`service`] (the `pdpb.PD` gRPC service, over the narrow traits
//!   `RegionReads` and `Leading`, SyncRegions on a route of its own that
//!   sends encoded frames as they are), [`server`] (running it with a bounded
//!   shutdown), [`admin`] (HTTP status, metrics, swap), [`status`] and
//!   [`metrics`] (what they print);
//! - shared data also: [`lineage`] (which leadership wrote which records)
//!   and [`handover`] (a role's warm state, passed to the next role);
//! - assembly: [`node`] (a role plus its server; the only module that knows
//!   every part) and [`ha`] (a node under etcd that changes role);
//! - [`bench`]: `regionsync bench`, real nodes measured side by side.
//! - [`tools`]: the client-side commands (`load`, `demo`, the admin client).
//!   They are the binary's edge, compiled into the library so that tests
//!   and benchmarks can drive them, and report errors with `anyhow` as the
//!   binary does. Everything else returns typed errors.
//!
//! Dependencies point down this list only; `host/tests/architecture.rs`
//! checks that no two modules import each other in a cycle.
#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod digest;
pub mod follower;
pub mod ha;
pub mod handover;
pub mod history;
pub mod leader;
pub mod lineage;
pub mod metrics;
pub mod node;
pub mod policy_runtime;
pub mod region_store;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;
pub mod tls;
pub mod tools;
pub mod wire;

/// An error and its causes on one line, `outer: inner: innermost`, for logs
/// and for answers to a person (the admin swap answer, the CLI).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Return memory the allocator holds but no longer uses to the system (after
/// a bulk load's scratch buffers are freed). The binary runs on mimalloc,
/// whose cost and size classes suit a million small region encodings; in a
/// program on another allocator this only tidies mimalloc's own (empty)
/// heaps.
pub fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it only returns free pages.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// mimalloc 3's `purge_delay` option (its place in `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps memory freed before returning it to the system.
/// Its own default since version 3 is a second: long enough for a full
/// sync of a million regions to keep nearly every frame and batch it ever
/// freed, 25-40 MiB of a follower's peak (BENCHMARKS.md). 10 ms (version
/// 2's default) returns them for about a tenth of the sync's time, in page
/// faults; 0 cost 40% of it, and 100 ms kept most of the memory.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Set the allocator's defaults for a node (see [`PURGE_DELAY_MS`]), before
/// it allocates much. `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn tune_allocator() {
    // SAFETY: setting an option's default has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    /// The option tuned is mimalloc's purge delay: it has version 3's
    /// default for it (a second), and the node's 10 ms once tuned.
    #[test]
    fn the_allocator_option_tuned_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // set by whoever runs the test: nothing to learn here
        }
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1_000, "mimalloc 3's default purge delay");
        super::tune_allocator();
        assert_eq!(get(), super::PURGE_DELAY_MS);
    }
}
