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
        #[cfg(feature = "hostile-plan-send")]
        if core::hint::black_box(view.cursor) != u64::MAX {
            core::arch::wasm32::unreachable();
        }
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
        let (state, frame) = (state.into(), frame.into());
        #[cfg(any(
            feature = "hostile-snapshot-flip",
            feature = "hostile-delta-flip",
            feature = "hostile-complete-flip",
            feature = "hostile-claim-elsewhere"
        ))]
        if let Some(d) = hostile::on_frame(state, frame) {
            return d.into();
        }
        POLICY.on_frame(state, frame).into()
    }

    fn backoff(attempt: u32, seed: u64) -> u64 {
        POLICY.backoff(attempt, seed)
    }
}

export!(Component);

/// Answers that are well-formed and each legal on its face, but try to get a
/// follower to claim an index for a set the leader never had. Each fixture
/// breaks one rule the host holds it to; they start only at index
/// [`hostile::FROM`], past the host's self-check, so that they are loaded
/// and then caught at run time.
#[cfg(any(
    feature = "hostile-snapshot-flip",
    feature = "hostile-delta-flip",
    feature = "hostile-complete-flip",
    feature = "hostile-claim-elsewhere"
))]
mod hostile {
    use crate::{FollowerPhase, FollowerState, FrameDecision, FrameHeader, FrameKind};

    /// The first index at which the fixtures misbehave.
    pub const FROM: u64 = 1_000;
    /// Or, for snapshot frames (numbered by position), the least regions.
    pub const REGIONS_FROM: u32 = 50;

    pub fn on_frame(state: FollowerState, frame: FrameHeader) -> Option<FrameDecision> {
        if (frame.start_index < FROM && frame.region_count < REGIONS_FROM) || frame.error {
            return None;
        }
        let honest = super::POLICY.on_frame(state, frame);
        if cfg!(feature = "hostile-complete-flip") {
            // Mid-snapshot: declare the store complete and ready, no claim.
            return (state.phase == FollowerPhase::Snapshot && frame.region_count > 0).then(|| {
                let mut d = honest;
                d.state.complete = true;
                d.state.ready = true;
                d
            });
        }
        if cfg!(feature = "hostile-claim-elsewhere") {
            // The completion, claimed at an index the leader did not send.
            return honest
                .claim_index
                .filter(|_| !honest.record_history)
                .map(|claim| {
                    let mut d = honest;
                    d.claim_index = Some(claim + 1);
                    d.state.next_index = claim + 1;
                    d
                });
        }
        // Flip a complete, streaming store into a sync that never reset it
        // (or never began a delta): drop this frame, merge the next ones
        // unrecorded, and complete on the next empty frame.
        let flipped = if cfg!(feature = "hostile-delta-flip") {
            FollowerPhase::Delta
        } else {
            FollowerPhase::Snapshot
        };
        if state.complete && state.phase == FollowerPhase::Streaming {
            return Some(FrameDecision::keep(
                FollowerState {
                    phase: flipped,
                    complete: false,
                    ready: false,
                    resumable: flipped == FollowerPhase::Delta,
                    ..state
                },
                FrameKind::SnapshotStart,
            ));
        }
        if state.phase != flipped || state.complete {
            return None;
        }
        let mut d = FrameDecision::keep(state, FrameKind::SnapshotData);
        if frame.region_count > 0 {
            d.apply_from = Some(0);
        } else {
            d.kind = FrameKind::Completion;
            d.claim_index = Some(frame.start_index);
            d.state = FollowerState {
                phase: FollowerPhase::Streaming,
                next_index: frame.start_index,
                complete: true,
                ready: true,
                resumable: false,
                ..state
            };
        }
        Some(d)
    }
}

crate::wit_conversions!(exports::regionsync::policy::decisions);
