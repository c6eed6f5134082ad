//! `call`: what one decision costs through the policy runtime (the door
//! every node decision goes through: the call, its checks, and with a
//! shadow loaded, the hand-off to it), for every export, with the Wasm
//! component and natively; and what each containment of a Wasm call costs:
//! fuel metering and the epoch deadline. (wasmtime's concurrency support is
//! not compiled into this build; docs/design.md has what it cost.)

use std::hint::black_box;
use std::time::Instant;

use super::{Figure, Options, Report};
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{
    AnnouncedSync, CatchUpView, DigestCheck, FollowerPhase, FollowerState, FrameHeader,
    PolicyRuntime, PolicySource, RingView, StreamFacts, StreamPhase, StreamView, SyncRequest,
    WasmRuntime, builtin,
};

const RING: RingView = RingView {
    first_index: 100,
    next_index: 200,
    capacity: 1_000,
    delta_floor: 1,
};

/// Nanoseconds per call: the median of 11 batches of `batch` calls (also
/// what `examples/call_floor.rs` measures with).
pub fn per_call(batch: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..11)
        .map(|s| {
            let t = Instant::now();
            for i in 0..batch {
                f(s * batch + i);
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[5]
}

fn runtime(config: WasmConfig, source: PolicySource) -> anyhow::Result<PolicyRuntime> {
    Ok(PolicyRuntime::new(WasmRuntime::new(config)?, source)?)
}

fn request(i: u64) -> SyncRequest {
    SyncRequest {
        start_index: 100 + i % 100,
        can_delta: true,
        must_delta: false,
    }
}

/// Every export through `rt`, ns per call each.
fn exports(rt: &PolicyRuntime, batch: u64) -> Vec<(&'static str, f64)> {
    let streaming = FollowerState {
        phase: FollowerPhase::Streaming,
        ready: true,
        ..FollowerState::opened(500, true)
    };
    let facts = StreamFacts::of_store(&streaming);
    let frame = FrameHeader {
        announced: AnnouncedSync::None,
        digest: DigestCheck::Absent,
        ..FrameHeader::plain(false, 500, 0)
    };
    vec![
        (
            "route-request",
            per_call(batch, |i| {
                black_box(rt.route_request(request(i), RING));
            }),
        ),
        (
            "plan-send",
            per_call(batch, |i| {
                black_box(rt.plan_send(StreamView {
                    phase: StreamPhase::Live,
                    cursor: 100 + i % 100,
                    ring: RING,
                }));
            }),
        ),
        (
            "plan-catch-up",
            per_call(batch, |i| {
                black_box(rt.plan_catch_up(CatchUpView {
                    passes: (i % 4) as u32,
                    pending: i % 5_000,
                }));
            }),
        ),
        (
            "admit-full-sync",
            per_call(batch, |i| {
                black_box(rt.admit_full_sync((i % 8) as u32));
            }),
        ),
        (
            "on-connect",
            per_call(batch, |_| {
                black_box(rt.on_connect(streaming, &facts));
            }),
        ),
        (
            "on-frame",
            per_call(batch, |_| {
                black_box(rt.on_frame(streaming, frame, &facts));
            }),
        ),
        (
            "backoff",
            per_call(batch, |i| {
                black_box(rt.backoff((i % 6) as u32, i));
            }),
        ),
    ]
}

pub(crate) fn run(o: &Options, r: &mut Report) -> anyhow::Result<()> {
    let batch = if o.runs > 1 { 20_000 } else { 500 };
    let wasm = runtime(WasmConfig::default(), PolicySource::Builtin("default"))?;
    let native = runtime(WasmConfig::default(), PolicySource::Native("default"))?;
    let mut by_export: Vec<(String, Vec<f64>)> = Vec::new();
    for _ in 0..o.runs.max(3) {
        for (engine, rt) in [("wasm", &wasm), ("native", &native)] {
            for (name, ns) in exports(rt, batch) {
                let key = format!("{name} ({engine})");
                match by_export.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(ns),
                    None => by_export.push((key, vec![ns])),
                }
            }
        }
    }
    for (name, runs) in by_export {
        r.figure(Figure::of(name, "ns", runs));
    }
    r.at_most("route-request (wasm)", 150.0);

    // Containment, one engine each, route-request alternated by run.
    let variants = [
        ("fuel + epoch deadline", true, true),
        ("epoch deadline only", false, true),
        ("fuel only", true, false),
        ("uncontained (reference)", false, false),
    ];
    let runtimes = variants
        .iter()
        .map(|&(_, fuel, epoch)| {
            let config = WasmConfig {
                fuel_metering: fuel,
                epoch_deadline: epoch,
                ..Default::default()
            };
            runtime(config, PolicySource::Builtin("default"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..o.runs.max(3) {
        for (i, rt) in runtimes.iter().enumerate() {
            runs[i].push(per_call(batch, |i| {
                black_box(rt.route_request(request(i), RING));
            }));
        }
    }
    for ((name, ..), v) in variants.iter().zip(runs) {
        r.figure(Figure::of(format!("route-request (wasm), {name}"), "ns", v));
    }

    // With a shadow loaded: the live path only hands the decision over.
    wasm.start_shadow(builtin::CONSERVATIVE.to_vec())?;
    let mut shadowed = Vec::new();
    for _ in 0..o.runs.max(3) {
        shadowed.push(per_call(batch, |i| {
            black_box(wasm.route_request(request(i), RING));
        }));
        // Let the shadow drain so that the queue does not fill and skip.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shown = wasm.shadow_status();
    wasm.stop_shadow();
    r.figure(Figure::of(
        "route-request (wasm), with a shadow loaded",
        "ns",
        shadowed,
    ));
    if let Some(s) = shown {
        r.check(format!(
            "the shadow answered {} route-requests ({} differ), skipped {}",
            s.by_function["route-request"].same + s.by_function["route-request"].differ,
            s.by_function["route-request"].differ,
            s.skipped
        ));
    }
    Ok(())
}
