//! The host's checks on a policy's answers.
//!
//! A policy chooses; it does not get to break the host's invariants. These
//! checks say what is *feasible* (history only from an index the ring holds,
//! frames within the SPEC's ceilings, an index claimed only for data that is
//! all there), never which feasible choice is right: that stays the policy's
//! business, so the checks do not duplicate its logic.

use super::{
    ConnectPlan, FollowerPhase, FollowerState, FrameDecision, FrameHeader, FrameLimits,
    MAX_BACKOFF, RingView, RouteAction, Routing, SendStep, StreamPhase, StreamView,
};
use regionsync_guest::{MAX_FRAME_BYTES, MAX_FRAME_REGIONS};

pub fn routing(start: u64, ring: RingView, r: &Routing) -> Result<(), String> {
    match r.action {
        RouteAction::FullSync => Ok(()),
        RouteAction::UpToDate if start == ring.next_index && start != 0 => Ok(()),
        RouteAction::UpToDate => Err(format!(
            "up-to-date for index {start}, but the leader is at {}",
            ring.next_index
        )),
        RouteAction::History(i)
            if i == start && i != 0 && ring.first_index <= i && i < ring.next_index =>
        {
            Ok(())
        }
        RouteAction::History(i) => Err(format!(
            "history from {i} for a request at {start}, ring holds [{}, {})",
            ring.first_index, ring.next_index
        )),
    }
}

pub fn send_step(view: StreamView, limits: FrameLimits, s: &SendStep) -> Result<(), String> {
    let ring = view.ring;
    match *s {
        SendStep::Exhausted => Ok(()),
        SendStep::Records(r) => {
            let end = r.start.checked_add(u64::from(r.count));
            if r.start != view.cursor {
                Err(format!(
                    "records from {} but the cursor is {}",
                    r.start, view.cursor
                ))
            } else if r.count == 0 || r.count > limits.max_regions {
                Err(format!(
                    "{} records in one frame (limit {})",
                    r.count, limits.max_regions
                ))
            } else if r.start < ring.first_index || end.is_none_or(|e| e > ring.next_index) {
                Err(format!(
                    "records [{}, +{}) outside the ring [{}, {})",
                    r.start, r.count, ring.first_index, ring.next_index
                ))
            } else {
                Ok(())
            }
        }
        SendStep::CaughtUp(i) => {
            if view.phase == StreamPhase::CatchingUp && i == view.cursor && i == ring.next_index {
                Ok(())
            } else {
                Err(format!(
                    "caught-up at {i} with cursor {} and next index {} ({:?})",
                    view.cursor, ring.next_index, view.phase
                ))
            }
        }
        SendStep::Idle => {
            if view.phase == StreamPhase::Live && view.cursor == ring.next_index {
                Ok(())
            } else {
                Err(format!(
                    "idle with cursor {} and next index {} ({:?}) would stall the stream",
                    view.cursor, ring.next_index, view.phase
                ))
            }
        }
    }
}

pub fn limits(l: &FrameLimits) -> Result<(), String> {
    if l.max_regions == 0 || l.max_regions > MAX_FRAME_REGIONS {
        Err(format!(
            "max-regions {} outside 1..={MAX_FRAME_REGIONS}",
            l.max_regions
        ))
    } else if l.max_bytes < 1024 || l.max_bytes > MAX_FRAME_BYTES {
        Err(format!(
            "max-bytes {} outside 1024..={MAX_FRAME_BYTES}",
            l.max_bytes
        ))
    } else {
        Ok(())
    }
}

pub fn connect_plan(before: FollowerState, plan: &ConnectPlan) -> Result<(), String> {
    let s = plan.state;
    if s.phase != FollowerPhase::Awaiting {
        return Err(format!(
            "a new stream must start awaiting, not {:?}",
            s.phase
        ));
    }
    if s.next_index != before.next_index || s.complete != before.complete {
        return Err("on-connect may not change the index or completeness".into());
    }
    if s.ready && !s.complete {
        return Err("ready with an incomplete store".into());
    }
    if plan.start_index != 0 && !(before.complete && plan.start_index == before.next_index) {
        return Err(format!(
            "asks for index {} but holds a {} store at {}",
            plan.start_index,
            if before.complete {
                "complete"
            } else {
                "incomplete"
            },
            before.next_index
        ));
    }
    Ok(())
}

pub fn frame_decision(
    before: FollowerState,
    frame: FrameHeader,
    d: &FrameDecision,
) -> Result<(), String> {
    let after = d.state;
    if frame.error && (d.apply_from.is_some() || d.reset_store || d.claim_index.is_some()) {
        return Err("an error frame must change nothing".into());
    }
    if d.apply_from.is_some_and(|from| from >= frame.region_count) {
        return Err(format!(
            "apply from {:?} in a frame of {} regions",
            d.apply_from, frame.region_count
        ));
    }
    if d.reset_store && after.complete {
        return Err("a reset store cannot be complete before completion".into());
    }
    if after.ready && !after.complete {
        return Err("ready with an incomplete store".into());
    }
    if d.reconnect.is_some() && (d.apply_from.is_some() || d.claim_index.is_some()) {
        return Err("a frame that ends the stream must not change the store".into());
    }
    // Regions applied without history records are only allowed into a store
    // that claims no index (a full sync in progress); otherwise the
    // follower's numbering would silently diverge from the leader's.
    let full_sync = d.reset_store || (before.phase == FollowerPhase::Snapshot && !before.complete);
    if d.apply_from.is_some() && !d.record_history && !full_sync {
        return Err("regions applied outside a full sync must be recorded as history".into());
    }
    if d.record_history {
        let from = d
            .apply_from
            .ok_or("record-history without applying anything")?;
        let end = frame.start_index.checked_add(u64::from(frame.region_count));
        if !before.complete || d.reset_store {
            return Err("history recorded on a store without an index".into());
        }
        if frame.start_index + u64::from(from) != before.next_index {
            return Err(format!(
                "history numbered from {} but the follower is at {}",
                frame.start_index + u64::from(from),
                before.next_index
            ));
        }
        if end != Some(after.next_index) || d.claim_index != Some(after.next_index) {
            return Err("history must advance and claim the index to the frame's end".into());
        }
    }
    if let Some(claim) = d.claim_index {
        if !after.complete || after.next_index != claim {
            return Err(format!(
                "claims index {claim} but the state says {} (complete: {})",
                after.next_index, after.complete
            ));
        }
        let completion = before.phase == FollowerPhase::Snapshot && frame.region_count == 0;
        if !(d.record_history || completion) {
            return Err("an index may be claimed only by history or a completion frame".into());
        }
    } else if after.next_index != before.next_index && !d.reset_store {
        return Err("the index moved without being claimed".into());
    }
    Ok(())
}

pub fn backoff(ms: u64) -> Result<(), String> {
    if ms > MAX_BACKOFF.as_millis() as u64 {
        Err(format!("backoff of {ms} ms exceeds {MAX_BACKOFF:?}"))
    } else {
        Ok(())
    }
}
