//! The load-time self-check: decisions every valid policy must take, asked of
//! a new engine before it can become active (at start and at every swap).
//!
//! Two kinds of check, kept apart on purpose. The contract's invariants
//! (`regionsync_guest::invariants`) say which answers are *feasible*; they
//! hold for every call and the runtime enforces them call by call. The
//! required decisions here go further on a few inputs where the protocol
//! leaves a policy no choice (index 0 is a full sync, the next index is up to
//! date, an error header changes nothing, an incomplete store asks for 0).
//!
//! Every export is also called on ordinary inputs (a live stream with records
//! to send, a catch-up pass, a snapshot and a history frame, a reconnect of a
//! complete store) and its answer checked as the runtime would check it: a
//! component whose `plan-send` or `on-frame` fails on everyday input is
//! refused here, instead of being accepted and then failing every stream.

use regionsync_guest::invariants::{self, StreamFacts};

use super::{
    AnnouncedSync, CatchUpView, FollowerPhase, FollowerState, FrameHeader, LoadError, PolicyEngine,
    RingView, RouteAction, StreamPhase, StreamView, SyncRequest,
};

/// Refuse an engine that gets a required decision wrong.
pub fn run(engine: &dyn PolicyEngine) -> Result<(), LoadError> {
    let name = engine.info().name.clone();
    let fail = |what: String| LoadError::SelfCheck {
        name: name.clone(),
        what,
    };
    let ring = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 100,
        delta_floor: 1,
    };
    let required = [
        (0, RouteAction::FullSync, "index 0 must be a full sync"),
        (200, RouteAction::UpToDate, "next index must be up to date"),
        (
            50,
            RouteAction::FullSync,
            "behind the ring must be a full sync",
        ),
        (
            201,
            RouteAction::FullSync,
            "ahead of the leader must be a full sync",
        ),
    ];
    for (start, want, what) in required {
        // A follower that announced nothing: a PD follower.
        let request = SyncRequest {
            start_index: start,
            can_delta: false,
            must_delta: false,
        };
        let r = engine
            .route_request(request, ring)
            .map_err(|e| fail(format!("route-request({start}) {e}")))?;
        if r.action != want {
            return Err(fail(format!("{what}, got {:?}", r.action)));
        }
        invariants::routing(request, ring, &r).map_err(|e| fail(e.to_string()))?;
    }
    let limits = engine.limits().map_err(|e| fail(format!("limits {e}")))?;
    invariants::limits(&limits).map_err(|e| fail(e.to_string()))?;
    let error_frame = FrameHeader::plain(true, 200, 0);
    let state = FollowerState::opened(200, true);
    let d = engine
        .on_frame(state, error_frame)
        .map_err(|e| fail(format!("on-frame {e}")))?;
    if d.reconnect.is_none() || d.apply_from.is_some() || d.reset_store {
        return Err(fail(
            "an error header must change nothing and reconnect".into(),
        ));
    }
    let plan = engine
        .on_connect(FollowerState::opened(0, false))
        .map_err(|e| fail(format!("on-connect {e}")))?;
    if plan.start_index != 0 {
        return Err(fail(
            "a follower with an incomplete store must ask for index 0".into(),
        ));
    }
    let ms = engine
        .backoff(0, 1)
        .map_err(|e| fail(format!("backoff {e}")))?;
    invariants::backoff(ms).map_err(|e| fail(e.to_string()))?;
    engine
        .admit_full_sync(0)
        .map_err(|e| fail(format!("admit-full-sync {e}")))?;
    everyday(engine, ring).map_err(fail)
}

/// Ordinary inputs for every export, answers checked as the runtime checks
/// them.
fn everyday(engine: &dyn PolicyEngine, ring: RingView) -> Result<(), String> {
    let limits = engine.limits().map_err(|e| format!("limits {e}"))?;
    for (phase, cursor) in [
        (StreamPhase::CatchingUp, 150),
        (StreamPhase::CatchingUp, 200),
        (StreamPhase::Live, 199),
        (StreamPhase::Live, 200),
    ] {
        let view = StreamView {
            phase,
            cursor,
            ring,
        };
        let step = engine
            .plan_send(view)
            .map_err(|e| format!("plan-send({phase:?} at {cursor}) {e}"))?;
        invariants::send_step(view, limits, &step)
            .map_err(|e| format!("plan-send({phase:?} at {cursor}): {e}"))?;
    }
    for (passes, pending) in [(0, 0), (1, 10_000), (3, 5)] {
        engine
            .plan_catch_up(CatchUpView { passes, pending })
            .map_err(|e| format!("plan-catch-up {e}"))?;
    }
    // A complete store reconnects; its stream brings history, then another
    // stream brings a full sync: start, data, completion.
    let complete = FollowerState::opened(200, true);
    let plan = engine
        .on_connect(complete)
        .map_err(|e| format!("on-connect {e}"))?;
    invariants::connect_plan(complete, &plan).map_err(|e| format!("on-connect: {e}"))?;
    let history = FrameHeader::plain(false, 200, 3);
    let mut snapshot_start = FrameHeader::plain(false, 0, 3);
    snapshot_start.announced = AnnouncedSync::Full;
    let mut snapshot_data = snapshot_start;
    snapshot_data.announced = AnnouncedSync::Full;
    let mut completion = FrameHeader::plain(false, 300, 0);
    completion.announced = AnnouncedSync::Full;
    let streams: [&[FrameHeader]; 2] = [&[history], &[snapshot_start, snapshot_data, completion]];
    for frames in streams {
        let mut facts = StreamFacts::of_store(&complete);
        let mut state = FollowerState {
            phase: FollowerPhase::Awaiting,
            ..complete
        };
        for &frame in frames {
            let before = facts.correct(state);
            let d = engine
                .on_frame(before, frame)
                .map_err(|e| format!("on-frame({frame:?}) {e}"))?;
            facts
                .check_answer(before, frame, &d)
                .map_err(|e| format!("on-frame({frame:?}): {e}"))?;
            if d.apply_from.is_none() && d.reconnect.is_some() {
                return Err(format!("on-frame({frame:?}) drops an ordinary frame"));
            }
            facts = facts.apply(&d);
            state = d.state;
        }
    }
    Ok(())
}
