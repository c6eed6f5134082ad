//! Each decision the host asks, with the check its answer must pass and
//! the safe decision taken if neither the active policy nor the built-in one
//! gives an acceptable answer (see `PolicyRuntime::decide`), and what a
//! shadow is told of it.

use std::time::Duration;

use regionsync_guest::invariants;

use super::shadow::Asked;

use super::{
    CatchUpStep, CatchUpView, ConnectPlan, FALLBACK_BACKOFF, FollowerPhase, FollowerState,
    FrameDecision, FrameHeader, FrameKind, PolicyRuntime, ReconnectReason, RingView, Route,
    RouteAction, RouteCause, SendStep, StreamFacts, StreamView, SyncRequest,
};

impl PolicyRuntime {
    /// Leader: route a request. Fallback: full sync.
    pub fn route_request(&self, request: SyncRequest, ring: RingView) -> Route {
        self.decide(
            "route-request",
            |e| e.route_request(request, ring),
            |r, _| invariants::routing(request, ring, r),
            |r| Asked::RouteRequest(request, ring, *r),
            |r, own| Route {
                action: r.action,
                cause: if own {
                    RouteCause::Policy(r.reason)
                } else {
                    RouteCause::Fallback
                },
            },
            || Route {
                action: RouteAction::FullSync,
                cause: RouteCause::Fallback,
            },
        )
    }

    /// Leader: what a stream sends next, within the answering policy's frame
    /// limits. Fallback: end the stream, so the follower comes back and is
    /// routed afresh.
    pub fn plan_send(&self, view: StreamView) -> SendStep {
        self.decide(
            "plan-send",
            |e| e.plan_send(view),
            |s, limits| invariants::send_step(view, limits, s),
            |s| Asked::PlanSend(view, *s),
            |s, _| s,
            || SendStep::Exhausted,
        )
    }

    /// Leader: the next catch-up pass. Fallback: the final pass (it always
    /// ends the sync, holding the intake off for one read of the store).
    pub fn plan_catch_up(&self, view: CatchUpView) -> CatchUpStep {
        self.decide(
            "plan-catch-up",
            |e| e.plan_catch_up(view),
            |_, _| Ok(()),
            |step| Asked::PlanCatchUp(view, *step),
            |step, _| step,
            || CatchUpStep::FinalPass,
        )
    }

    /// Leader: may another full sync start? Fallback: yes (a full sync is
    /// the safe decision; refusing would strand the follower).
    pub fn admit_full_sync(&self, running: u32) -> bool {
        self.decide(
            "admit-full-sync",
            |e| e.admit_full_sync(running),
            |_, _| Ok(()),
            |admit| Asked::AdmitFullSync(running, *admit),
            |admit, _| admit,
            || true,
        )
    }

    /// Follower: what to ask for on connect, for a store the host knows as
    /// `facts`. Fallback: a full sync.
    pub fn on_connect(&self, state: FollowerState, facts: &StreamFacts) -> ConnectPlan {
        let state = facts.correct(state);
        self.decide(
            "on-connect",
            |e| e.on_connect(state),
            |plan, _| invariants::connect_plan(state, plan),
            |plan| Asked::OnConnect(state, *plan),
            |plan, _| plan,
            || ConnectPlan {
                start_index: 0,
                state: FollowerState {
                    phase: FollowerPhase::Awaiting,
                    snapshot_regions: 0,
                    force_full_sync: true,
                    ..state
                },
                ask_delta: false,
                ask_verify: true,
            },
        )
    }

    /// Follower: what a frame means, checked against the state and against
    /// the host's own `facts`. Fallback: apply nothing, reconnect and ask for
    /// a full sync.
    pub fn on_frame(
        &self,
        state: FollowerState,
        frame: FrameHeader,
        facts: &StreamFacts,
    ) -> FrameDecision {
        let state = facts.correct(state);
        self.decide(
            "on-frame",
            |e| e.on_frame(state, frame),
            |d, _| facts.check_answer(state, frame, d),
            |d| Asked::OnFrame(state, frame, *d),
            |d, _| d,
            || FrameDecision {
                reconnect: Some(ReconnectReason::UnexpectedFrame),
                ..FrameDecision::keep(
                    FollowerState {
                        force_full_sync: true,
                        ..state
                    },
                    FrameKind::Unexpected,
                )
            },
        )
    }

    /// Follower: delay before reconnect attempt `attempt`.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        self.decide(
            "backoff",
            |e| e.backoff(attempt, seed),
            |ms, _| invariants::backoff(*ms),
            |ms| Asked::Backoff(attempt, seed, *ms),
            |ms, _| Duration::from_millis(ms),
            || FALLBACK_BACKOFF,
        )
    }
}
