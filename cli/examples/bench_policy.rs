//! Policy runtime figures for the foundation issue: the cost of one decision
//! call through Wasm and natively, swap times cached and uncached, cold start
//! with the embedded default, and component sizes.
//!
//!     cargo run --release -p regionsync-cli --example bench_policy

use std::hint::black_box;
use std::time::{Duration, Instant};

use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{
    NativePolicy, PolicyEngine, PolicyRuntime, PolicySource, RingView, SyncRequest, WasmRuntime,
    builtin,
};

const RING: RingView = RingView {
    first_index: 100,
    next_index: 200,
    capacity: 100,
    delta_floor: 1,
};

/// A request for `start_index` from a follower that takes deltas.
fn at(start_index: u64) -> SyncRequest {
    SyncRequest {
        start_index,
        can_delta: true,
        must_delta: false,
    }
}

/// Median per-call time over `samples` batches of `batch` calls.
fn median_call(samples: usize, batch: usize, mut f: impl FnMut(u64)) -> Duration {
    let mut per_call: Vec<Duration> = (0..samples)
        .map(|s| {
            let t = Instant::now();
            for i in 0..batch {
                f((s * batch + i) as u64 % 250);
            }
            t.elapsed() / batch as u32
        })
        .collect();
    per_call.sort();
    per_call[samples / 2]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Five swaps to `file`, each on a new engine (nothing compiled in memory).
fn swaps_on_fresh_engines(config: &WasmConfig, file: &std::path::Path) -> Vec<Duration> {
    (0..5)
        .map(|_| {
            let rt = PolicyRuntime::new(
                WasmRuntime::new(config.clone()).unwrap(),
                PolicySource::Native("default"),
            )
            .unwrap();
            let t = Instant::now();
            rt.swap_file(file).unwrap();
            t.elapsed()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    // Cold start: engine, epoch thread, compile of the embedded default,
    // instantiate, describe and self-check; a new process each time would
    // add only process start-up.
    let cold: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let rt = PolicyRuntime::new(
                WasmRuntime::new(WasmConfig::default()).unwrap(),
                PolicySource::Builtin("default"),
            )
            .unwrap();
            black_box(rt.route_request(at(150), RING));
            t.elapsed()
        })
        .collect();
    println!(
        "cold start with the embedded default: median {:?} (runs: {cold:?})",
        median(cold.clone())
    );

    let wasm_rt = WasmRuntime::new(WasmConfig::default())?;
    let wasm = wasm_rt.load(builtin::DEFAULT)?;
    let native = NativePolicy::by_name("default").unwrap();
    let runtime = PolicyRuntime::new(wasm_rt.clone(), PolicySource::Builtin("default"))?;

    for _ in 0..3 {
        let w = median_call(201, 1_000, |i| {
            black_box(wasm.route_request(at(black_box(100 + i)), RING).unwrap());
        });
        let n = median_call(201, 1_000, |i| {
            black_box(native.route_request(at(black_box(100 + i)), RING).unwrap());
        });
        let r = median_call(201, 1_000, |i| {
            black_box(runtime.route_request(at(black_box(100 + i)), RING));
        });
        let f = median_call(201, 1_000, |i| {
            black_box(
                wasm.on_frame(
                    regionsync::policy_runtime::FollowerState::opened(150, true),
                    regionsync::policy_runtime::FrameHeader::plain(false, 100 + i, 10),
                )
                .unwrap(),
            );
        });
        println!(
            "route-request median per call: wasm {w:?}, native {n:?}, runtime (wasm + validation) {r:?}; on-frame wasm {f:?}"
        );
    }

    // Swaps: uncached = a component this engine has not compiled before
    // (a fresh runtime each time); cached = compiled before, in memory.
    let dir = tempfile::tempdir()?;
    let conservative = dir.path().join("conservative.wasm");
    std::fs::write(&conservative, builtin::CONSERVATIVE)?;
    let default = dir.path().join("default.wasm");
    std::fs::write(&default, builtin::DEFAULT)?;
    let uncached = swaps_on_fresh_engines(&WasmConfig::default(), &conservative);
    println!(
        "swap, uncached (compile): median {:?} (runs: {uncached:?})",
        median(uncached.clone())
    );
    let rt = PolicyRuntime::new(
        WasmRuntime::new(WasmConfig::default())?,
        PolicySource::Builtin("default"),
    )?;
    rt.swap_file(&conservative)?;
    let cached: Vec<Duration> = (0..20)
        .map(|i| {
            let file = if i % 2 == 0 { &default } else { &conservative };
            let t = Instant::now();
            rt.swap_file(file).unwrap();
            t.elapsed()
        })
        .collect();
    println!(
        "swap, cached in memory: median {:?} max {:?}",
        median(cached.clone()),
        cached.iter().max().unwrap()
    );
    let cache_dir = tempfile::tempdir()?;
    let disk_cfg = WasmConfig {
        cache_dir: Some(cache_dir.path().to_path_buf()),
        ..Default::default()
    };
    WasmRuntime::new(disk_cfg.clone())?.load(builtin::CONSERVATIVE)?;
    let disk = swaps_on_fresh_engines(&disk_cfg, &conservative);
    println!(
        "swap, cached on disk (fresh process state): median {:?}",
        median(disk)
    );
    println!(
        "component sizes: default {} bytes, conservative {} bytes",
        builtin::DEFAULT.len(),
        builtin::CONSERVATIVE.len()
    );
    Ok(())
}
