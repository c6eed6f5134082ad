//! The policy SDK: what a policy author implements, and the one macro that
//! makes it a component.
//!
//! A policy is a type implementing [`SyncPolicy`]. Every method has the
//! default policy's behaviour as its provided body, so a custom policy
//! overrides only the decisions it changes, and what it leaves alone stays
//! exactly what the host's built-in policy does (the same code, not a copy).
//! Most policies are tuning: override [`SyncPolicy::knobs`] and nothing
//! else. [`export_policy!`] then exports the type as the `regionsync:policy`
//! component; `policies/` holds the shipped policies, each a small crate
//! written this way, and docs/writing-a-policy.md walks through one.

use crate::{
    CatchUpStep, CatchUpView, ConnectPlan, FollowerState, FrameDecision, FrameHeader, FrameLimits,
    Policy, PolicyInfo, RingView, Routing, SendStep, StreamView, SyncRequest,
};

/// Every decision of the contract (`wit/policy.wit`), with the default
/// policy's behaviour as default methods. Methods take `&self` so a policy
/// may carry settings; the exported component builds it with `Default`.
pub trait SyncPolicy {
    /// The knobs the provided methods decide by: the default policy's.
    fn knobs(&self) -> Policy {
        Policy::default_policy()
    }

    /// Name and version, as `regionsync policy list` and status show them.
    fn describe(&self) -> PolicyInfo {
        self.knobs().describe()
    }

    /// Leader: what a `SyncRegions` request gets (history, delta, full sync,
    /// nothing), and why.
    fn route_request(&self, request: SyncRequest, ring: RingView) -> Routing {
        self.knobs().route_request(request, ring)
    }

    /// Leader: whether a sync takes another catch-up pass or the final one.
    fn plan_catch_up(&self, view: CatchUpView) -> CatchUpStep {
        self.knobs().plan_catch_up(view)
    }

    /// Leader: which records a stream sends next.
    fn plan_send(&self, view: StreamView) -> SendStep {
        self.knobs().plan_send(view)
    }

    /// Bounds of one frame (asked once, at load).
    fn limits(&self) -> FrameLimits {
        self.knobs().limits()
    }

    /// Leader: may another full sync start while `running` are streaming?
    fn admit_full_sync(&self, running: u32) -> bool {
        self.knobs().admit_full_sync(running)
    }

    /// Follower: what to ask for when a stream opens.
    fn on_connect(&self, state: FollowerState) -> ConnectPlan {
        self.knobs().on_connect(state)
    }

    /// Follower: what a received frame means and what to do with it.
    fn on_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        self.knobs().on_frame(state, frame)
    }

    /// Follower: milliseconds to wait before reconnect `attempt`; `seed` is
    /// the host's randomness for jitter.
    fn backoff(&self, attempt: u32, seed: u64) -> u64 {
        self.knobs().backoff(attempt, seed)
    }
}

/// A [`Policy`] value is a policy: its own knobs, the shared logic.
impl SyncPolicy for Policy {
    fn knobs(&self) -> Policy {
        *self
    }
}

/// Export `$policy` (a type implementing [`SyncPolicy`] and `Default`) as
/// the `regionsync:policy` component. Call it once, at the root of a
/// `cdylib` crate built for `wasm32-wasip2`; on any other target it expands
/// to nothing, so the same crate links natively for tests.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RegionsyncPolicyComponent = $crate::component::Exported<$policy>;
            $crate::component::__export_policy_component!(
                RegionsyncPolicyComponent with_types_in $crate::component
            );
        };
    };
}
