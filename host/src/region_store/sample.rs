//! Realistic region sets of any size, made rather than collected: what the
//! benchmarks (`bench`) stream and what tests that need many regions with
//! several peers build their stores from. Kept here, beside the region set,
//! so that every layer can use it.

use regionsync_proto::metapb::{Peer, Region, RegionEpoch};

/// Region `i` of `n` covering the key space: record keys of a table (27
/// bytes), three replicas on five stores.
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
