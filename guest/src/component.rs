//! The Wasm component face of the policy: wit-bindgen glue that converts the
//! generated WIT types to the plain ones and calls the shared decisions.
//!
//! Built only for `wasm32`, as a `no_std` component that imports nothing (no
//! WASI): the host gives it no capabilities, so a policy can decide but never
//! act. Which shipped policy the component exports is chosen by cargo feature.
//! The `hostile-*` features build the misbehaving fixtures that the host's
//! containment tests load; they misbehave only on one magic input so that they
//! pass the host's load-time self-check and fail under test.

use crate as policy;
use exports::regionsync::policy::decisions as wit;

wit_bindgen::generate!({
    world: "policy",
    path: "../wit",
});

#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Start index on which the hostile fixtures misbehave.
#[cfg(any(
    feature = "hostile-loop",
    feature = "hostile-memory",
    feature = "hostile-trap"
))]
const HOSTILE_TRIGGER: u64 = 0xDEAD_BEEF;

const POLICY: policy::Policy = if cfg!(feature = "conservative") {
    policy::Policy::conservative()
} else {
    policy::Policy::default_policy()
};

struct Component;

impl wit::Guest for Component {
    fn describe() -> wit::PolicyInfo {
        POLICY.describe().into()
    }

    fn route_request(request: wit::SyncRequest, ring: wit::RingView) -> wit::Routing {
        #[cfg(any(
            feature = "hostile-loop",
            feature = "hostile-memory",
            feature = "hostile-trap"
        ))]
        let start_index = request.start_index;
        #[cfg(feature = "hostile-loop")]
        if start_index == HOSTILE_TRIGGER {
            let mut spins = 0u64;
            loop {
                spins = core::hint::black_box(spins.wrapping_add(1));
            }
        }
        #[cfg(feature = "hostile-memory")]
        if start_index == HOSTILE_TRIGGER {
            // Reserve without touching: memory grows, fuel barely moves.
            let mut hoard = alloc::vec::Vec::new();
            loop {
                hoard.push(core::hint::black_box(alloc::vec::Vec::<u8>::with_capacity(
                    1 << 20,
                )));
            }
        }
        #[cfg(feature = "hostile-trap")]
        if start_index == HOSTILE_TRIGGER {
            core::arch::wasm32::unreachable();
        }
        POLICY.route_request(request.into(), ring.into()).into()
    }

    fn plan_catch_up(view: wit::CatchUpView) -> wit::CatchUpStep {
        POLICY.plan_catch_up(view.into()).into()
    }

    fn plan_send(view: wit::StreamView) -> wit::SendStep {
        POLICY.plan_send(view.into()).into()
    }

    fn limits() -> wit::FrameLimits {
        POLICY.limits().into()
    }

    fn admit_full_sync(running: u32) -> bool {
        POLICY.admit_full_sync(running)
    }

    fn on_connect(state: wit::FollowerState) -> wit::ConnectPlan {
        POLICY.on_connect(state.into()).into()
    }

    fn on_frame(state: wit::FollowerState, frame: wit::FrameHeader) -> wit::FrameDecision {
        POLICY.on_frame(state.into(), frame.into()).into()
    }

    fn backoff(attempt: u32, seed: u64) -> u64 {
        POLICY.backoff(attempt, seed)
    }
}

export!(Component);

crate::wit_conversions!(exports::regionsync::policy::decisions);
