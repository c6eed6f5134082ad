//! What the benchmarks share: the binary's allocator, a TiKV-like region and
//! the default policy.

use std::sync::Arc;

use regionsync::policy_runtime::PolicyRuntime;
use regionsync_proto::metapb::{Peer, Region, RegionEpoch};

/// The allocator the `regionsync` binary runs on, so that memory and speed
/// figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Region `i` of `n` covering the key space: record keys of a table, three
/// replicas on five stores.
pub fn region(i: u64, n: u64, version: u64) -> Region {
    let key = |i: u64| format!("t{:08}_r{:016}", 42 + i / 100_000, i * 1_000).into_bytes();
    Region {
        id: 1_000 + i,
        start_key: if i == 0 { Vec::new() } else { key(i) },
        end_key: if i + 1 == n { Vec::new() } else { key(i + 1) },
        region_epoch: Some(RegionEpoch {
            conf_ver: 5,
            version,
        }),
        peers: (0..3)
            .map(|s| Peer {
                id: 10_000_000 + i * 3 + s,
                store_id: 1 + (i + s) % 5,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn policy() -> Arc<PolicyRuntime> {
    Arc::new(PolicyRuntime::with_default().unwrap())
}
