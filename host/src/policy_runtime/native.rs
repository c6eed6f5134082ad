//! The guest library linked into the host: the same decisions as the
//! component, without Wasm. Used to compare against the component (the
//! differential test, the call-cost benchmark) and where a Wasm engine is not
//! wanted. It cannot trap or overrun, so every call succeeds.

use super::{
    CatchUpStep, CatchUpView, ConnectPlan, FollowerState, FrameDecision, FrameHeader, FrameLimits,
    PolicyEngine, PolicyError, PolicyInfo, RingView, Routing, SendStep, StreamView, SyncRequest,
};
use regionsync_guest::Policy;

/// A shipped policy, linked natively.
pub struct NativePolicy {
    policy: Policy,
    info: PolicyInfo,
}

impl NativePolicy {
    /// The engine for `policy`.
    pub fn new(policy: Policy) -> Self {
        let info = policy.describe();
        NativePolicy { policy, info }
    }

    /// A shipped policy by name.
    pub fn by_name(name: &str) -> Option<Self> {
        Policy::by_name(name).map(Self::new)
    }
}

impl PolicyEngine for NativePolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }
    fn route_request(&self, request: SyncRequest, ring: RingView) -> Result<Routing, PolicyError> {
        Ok(self.policy.route_request(request, ring))
    }
    fn plan_catch_up(&self, view: CatchUpView) -> Result<CatchUpStep, PolicyError> {
        Ok(self.policy.plan_catch_up(view))
    }
    fn plan_send(&self, view: StreamView) -> Result<SendStep, PolicyError> {
        Ok(self.policy.plan_send(view))
    }
    fn limits(&self) -> Result<FrameLimits, PolicyError> {
        Ok(self.policy.limits())
    }
    fn admit_full_sync(&self, running: u32) -> Result<bool, PolicyError> {
        Ok(self.policy.admit_full_sync(running))
    }
    fn on_connect(&self, state: FollowerState) -> Result<ConnectPlan, PolicyError> {
        Ok(self.policy.on_connect(state))
    }
    fn on_frame(
        &self,
        state: FollowerState,
        frame: FrameHeader,
    ) -> Result<FrameDecision, PolicyError> {
        Ok(self.policy.on_frame(state, frame))
    }
    fn backoff(&self, attempt: u32, seed: u64) -> Result<u64, PolicyError> {
        Ok(self.policy.backoff(attempt, seed))
    }
}
