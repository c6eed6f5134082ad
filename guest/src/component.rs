//! The Wasm component face of the SDK: the wit-bindgen bindings of
//! `wit/policy.wit`, and [`Exported`], which answers every export by calling
//! a [`SyncPolicy`] with the plain types. A policy crate reaches this only
//! through `export_policy!`, which names `Exported<ItsType>` as the
//! component's implementation.
//!
//! Built only for `wasm32`, `no_std`, importing nothing (no WASI): the host
//! gives a policy no capabilities, so it can decide but never act.

use core::marker::PhantomData;

use crate::SyncPolicy;
use exports::regionsync::policy::decisions as wit;

wit_bindgen::generate!({
    world: "policy",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "__export_policy_component",
});

/// The component's allocator: a free list, coalesced, O(its length) a call.
/// A decision allocates nothing (only `describe`'s two strings, and what a
/// policy's own code may), so speed is beside the point, and size is not:
/// every swap to a new component waits for its compile, which scales with
/// its code, and dlmalloc was over half of a policy's code (BENCHMARKS.md,
/// "Kept: the guest on lol_alloc instead of dlmalloc").
#[global_allocator]
// SAFETY: a component instance runs one call at a time on one thread (the
// policy world has no threads), the condition `AssumeSingleThreaded` asks.
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The component's implementation for policy `P`: each export converts the
/// WIT types to the plain ones, asks `P::default()`, and converts back.
pub struct Exported<P>(PhantomData<P>);

impl<P: SyncPolicy + Default> wit::Guest for Exported<P> {
    fn describe() -> wit::PolicyInfo {
        P::default().describe().into()
    }

    fn route_request(request: wit::SyncRequest, ring: wit::RingView) -> wit::Routing {
        P::default()
            .route_request(request.into(), ring.into())
            .into()
    }

    fn plan_catch_up(view: wit::CatchUpView) -> wit::CatchUpStep {
        P::default().plan_catch_up(view.into()).into()
    }

    fn plan_send(view: wit::StreamView) -> wit::SendStep {
        P::default().plan_send(view.into()).into()
    }

    fn limits() -> wit::FrameLimits {
        P::default().limits().into()
    }

    fn admit_full_sync(running: u32) -> bool {
        P::default().admit_full_sync(running)
    }

    fn on_connect(state: wit::FollowerState) -> wit::ConnectPlan {
        P::default().on_connect(state.into()).into()
    }

    fn on_frame(state: wit::FollowerState, frame: wit::FrameHeader) -> wit::FrameDecision {
        P::default().on_frame(state.into(), frame.into()).into()
    }

    fn backoff(attempt: u32, seed: u64) -> u64 {
        P::default().backoff(attempt, seed)
    }
}

crate::wit_conversions!(exports::regionsync::policy::decisions);
