//! The floor under `regionsync bench call`: what one component call and one
//! compile cost with wasmtime 48 on this machine when nothing of ours is
//! around them (bindgen's typed calls straight into the embedded default
//! policy, no slots, no checks, no shadow), with and without fuel and the
//! epoch deadline; and a compile with and without parallel compilation
//! (what a first swap to a policy pays). BENCHMARKS.md quotes it:
//! `cargo run --release -p regionsync-cli --example call_floor`.
use std::hint::black_box;
use std::time::Instant;

use regionsync_cli::bench::call::per_call;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

mod b {
    wasmtime::component::bindgen!({ world: "policy", path: "../wit" });
}

fn main() {
    for (parallel, opt) in [
        (true, wasmtime::OptLevel::Speed),
        (false, wasmtime::OptLevel::Speed),
        (true, wasmtime::OptLevel::None),
    ] {
        let mut cfg = Config::new();
        cfg.concurrency_support(false);
        cfg.consume_fuel(true);
        cfg.epoch_interruption(true);
        cfg.parallel_compilation(parallel);
        cfg.cranelift_opt_level(opt);
        let engine = Engine::new(&cfg).unwrap();
        let mut took = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            black_box(
                Component::new(&engine, regionsync::policy_runtime::builtin::CONSERVATIVE).unwrap(),
            );
            took.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("compile (parallel {parallel}, {opt:?}): {took:.1?} ms");
    }
    for (label, fuel, epoch, opt) in [
        ("plain", false, false, wasmtime::OptLevel::Speed),
        ("fuel+epoch", true, true, wasmtime::OptLevel::Speed),
        (
            "fuel+epoch, opt-level none",
            true,
            true,
            wasmtime::OptLevel::None,
        ),
    ] {
        let mut cfg = Config::new();
        cfg.cranelift_opt_level(opt);
        cfg.concurrency_support(false);
        cfg.consume_fuel(fuel);
        cfg.epoch_interruption(epoch);
        let engine = Engine::new(&cfg).unwrap();
        let component =
            Component::new(&engine, regionsync::policy_runtime::builtin::DEFAULT).unwrap();
        let linker: Linker<()> = Linker::new(&engine);
        let mut store = Store::new(&engine, ());
        if fuel {
            store.set_fuel(u64::MAX / 2).unwrap();
        }
        if epoch {
            store.set_epoch_deadline(1 << 40);
        }
        let p = b::Policy::instantiate(&mut store, &component, &linker).unwrap();
        let g = p.regionsync_policy_decisions();
        let admit = per_call(200_000, |i| {
            black_box(g.call_admit_full_sync(&mut store, (i % 8) as u32).unwrap());
        });
        let ring = b::exports::regionsync::policy::decisions::RingView {
            first_index: 100,
            next_index: 200,
            capacity: 1000,
            delta_floor: 1,
        };
        let route = per_call(200_000, |i| {
            let req = b::exports::regionsync::policy::decisions::SyncRequest {
                start_index: 100 + i % 100,
                can_delta: true,
                must_delta: false,
            };
            black_box(g.call_route_request(&mut store, req, ring).unwrap());
        });
        println!("{label}: admit-full-sync {admit:.0} ns, route-request {route:.0} ns");
    }
}
