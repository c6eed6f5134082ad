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
//!  role: a role running with its gRPC server; ha: a node under etcd that
//!  changes role; admin: status, metrics, swap
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
//! - assembly: [`role`] (one role running with its gRPC server, as
//!   `regionsync leader` and `regionsync follower` run it; the only module
//!   that knows every part) and [`ha`] (a node under etcd that changes
//!   role, as `regionsync node` runs it);
//!
//! Every module returns typed errors. The command line (`regionsync-cli`)
//! and what drives nodes from outside (`regionsync-harness`: the test
//! cluster, the proxy, the load generator) are crates of their own.
//!
//! Dependencies point down this list only; `host/tests/architecture.rs`
//! checks that no two modules import each other in a cycle.
#![warn(missing_docs)]

pub mod admin;
pub mod digest;
pub mod follower;
pub mod ha;
pub mod handover;
pub mod history;
pub mod leader;
pub mod lineage;
pub mod metrics;
pub mod policy_runtime;
pub mod region_store;
pub mod role;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;
pub(crate) mod tasks;
pub mod tls;
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

/// How the program returns memory its allocator holds but no longer uses to
/// the system; set once by the program (the `regionsync` binary sets
/// mimalloc's), nothing by default.
static RELEASE_FREE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Tell the library how to return freed memory to the system: called after
/// a bulk load's scratch buffers are freed. The first call wins.
pub fn set_release_free_memory(release: fn()) {
    let _ = RELEASE_FREE_MEMORY.set(release);
}

/// Return memory the allocator holds but no longer uses to the system, the
/// way the program said (see [`set_release_free_memory`]); nothing if it
/// said nothing.
pub fn release_free_memory() {
    if let Some(release) = RELEASE_FREE_MEMORY.get() {
        release();
    }
}
