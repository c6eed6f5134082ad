//! The contract's invariants: what *any* policy's answer must satisfy,
//! whatever its tuning (docs/protocol.md §2-§3, §5).
//!
//! Two users, one module:
//! - the host checks every answer a component gives against these before it
//!   acts on it (`host/src/policy_runtime`), and refuses a component at load
//!   or swap that breaks them;
//! - the guest's own tests run the shipped policies over seeded inputs and
//!   require every answer to pass them.
//!
//! The checks are meant to be *independent* of the decisions: they say what is
//! feasible (history only from an index the ring holds, frames within the
//! ceilings, an index claimed only for data that is all there), never which
//! feasible answer is right, and they never call a decision function. A bug in
//! a decision therefore cannot hide behind the same bug in its check.
//!
//! What is deliberately not here: the few decisions the protocol leaves a
//! policy no choice about (index 0 is a full sync, an error header changes
//! nothing, ...). Those go beyond feasibility; the host asks them once, at
//! load and at swap (`host/src/policy_runtime/self_check.rs`).

mod facts;
mod rejection;

pub use facts::StreamFacts;
pub use rejection::Rejection;

use crate::{
    AnnouncedSync, ConnectPlan, DigestCheck, FollowerPhase, FollowerState, FrameDecision,
    FrameHeader, FrameLimits, MAX_FRAME_BYTES, MAX_FRAME_REGIONS, RingView, RouteAction, Routing,
    SendStep, StreamPhase, StreamView, SyncRequest,
};

/// The longest reconnect delay any policy may ask for, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 300_000;

/// The smallest byte bound of a frame a policy may set.
pub const MIN_FRAME_BYTES: u64 = 1024;

/// A routing answer for `request` against `ring`.
pub fn routing(request: SyncRequest, ring: RingView, r: &Routing) -> Result<(), Rejection> {
    let start = request.start_index;
    if request.must_delta && !matches!(r.action, RouteAction::FullSync | RouteAction::Delta(_)) {
        return Err(Rejection::ReplayOnPartialDelta { start });
    }
    match r.action {
        RouteAction::FullSync => Ok(()),
        RouteAction::Delta(from) if from == start && ring.takes_delta(request) => Ok(()),
        RouteAction::Delta(from) => Err(Rejection::DeltaInfeasible {
            from,
            start,
            can_delta: request.can_delta,
            floor: ring.delta_floor,
            next: ring.next_index,
        }),
        RouteAction::UpToDate if start == ring.next_index && start != 0 => Ok(()),
        RouteAction::UpToDate => Err(Rejection::UpToDateNotAtNext {
            start,
            next: ring.next_index,
        }),
        RouteAction::History(i)
            if i == start && i != 0 && ring.first_index <= i && i < ring.next_index =>
        {
            Ok(())
        }
        RouteAction::History(from) => Err(Rejection::HistoryOutsideRing {
            from,
            start,
            first: ring.first_index,
            next: ring.next_index,
        }),
    }
}

/// A plan-send answer for `view`, given the policy's own frame `limits`.
pub fn send_step(view: StreamView, limits: FrameLimits, s: &SendStep) -> Result<(), Rejection> {
    let ring = view.ring;
    match *s {
        SendStep::Exhausted => Ok(()),
        SendStep::Records(r) => {
            let end = r.start.checked_add(u64::from(r.count));
            if r.start != view.cursor {
                Err(Rejection::RecordsNotAtCursor {
                    start: r.start,
                    cursor: view.cursor,
                })
            } else if r.count == 0 || r.count > limits.max_regions {
                Err(Rejection::RecordCountOutOfBounds {
                    count: r.count,
                    limit: limits.max_regions,
                })
            } else if r.start < ring.first_index || end.is_none_or(|e| e > ring.next_index) {
                Err(Rejection::RecordsOutsideRing {
                    start: r.start,
                    count: r.count,
                    first: ring.first_index,
                    next: ring.next_index,
                })
            } else {
                Ok(())
            }
        }
        SendStep::CaughtUp(at) => {
            if view.phase == StreamPhase::CatchingUp && at == view.cursor && at == ring.next_index {
                Ok(())
            } else {
                Err(Rejection::CaughtUpMisplaced {
                    at,
                    cursor: view.cursor,
                    next: ring.next_index,
                    phase: view.phase,
                })
            }
        }
        SendStep::Idle => {
            if view.phase == StreamPhase::Live && view.cursor == ring.next_index {
                Ok(())
            } else {
                Err(Rejection::IdleWouldStall {
                    cursor: view.cursor,
                    next: ring.next_index,
                    phase: view.phase,
                })
            }
        }
    }
}

/// Frame bounds within the contract's ceilings.
pub fn limits(l: &FrameLimits) -> Result<(), Rejection> {
    if l.max_regions == 0 || l.max_regions > MAX_FRAME_REGIONS {
        Err(Rejection::MaxRegionsOutOfRange(l.max_regions))
    } else if l.max_bytes < MIN_FRAME_BYTES || l.max_bytes > MAX_FRAME_BYTES {
        Err(Rejection::MaxBytesOutOfRange(l.max_bytes))
    } else {
        Ok(())
    }
}

/// An on-connect answer for a follower in state `before`.
pub fn connect_plan(before: FollowerState, plan: &ConnectPlan) -> Result<(), Rejection> {
    let s = plan.state;
    if s.phase != FollowerPhase::Awaiting {
        return Err(Rejection::NewStreamNotAwaiting(s.phase));
    }
    if s.next_index != before.next_index
        || s.complete != before.complete
        || s.resumable != before.resumable
    {
        return Err(Rejection::ConnectChangedStore);
    }
    if s.ready && !s.complete {
        return Err(Rejection::ReadyWhileIncomplete);
    }
    // A complete store resumes from its index; one part-way through a delta
    // may ask to finish it, announcing that it takes deltas.
    let holds = before.complete || (before.resumable && plan.ask_delta);
    if plan.start_index != 0 && !(holds && plan.start_index == before.next_index) {
        return Err(Rejection::AsksForUnheldIndex {
            asked: plan.start_index,
            held: before.next_index,
            complete: before.complete,
        });
    }
    Ok(())
}

/// An on-frame answer for a follower in state `before` that received `frame`.
pub fn frame_decision(
    before: FollowerState,
    frame: FrameHeader,
    d: &FrameDecision,
) -> Result<(), Rejection> {
    let after = d.state;
    if frame.error && (d.apply_from.is_some() || d.reset_store || d.claim_index.is_some()) {
        return Err(Rejection::ErrorFrameChangesStore);
    }
    if let Some(from) = d.apply_from.filter(|from| *from >= frame.region_count) {
        return Err(Rejection::ApplyBeyondFrame {
            from,
            count: frame.region_count,
        });
    }
    if d.reset_store && after.complete {
        return Err(Rejection::ResetButComplete);
    }
    if after.complete && after.resumable {
        return Err(Rejection::ResumableButComplete);
    }
    if d.begin_delta {
        // A delta keeps the store and adds to it: only onto a set the leader
        // had at the index it keeps.
        let base = before.complete || before.resumable;
        if d.reset_store
            || frame.error
            || !base
            || after.complete
            || after.ready
            || !after.resumable
            || after.next_index != before.next_index
        {
            return Err(Rejection::DeltaBeginInvalid);
        }
    }
    if after.ready && !after.complete {
        return Err(Rejection::ReadyWhileIncomplete);
    }
    if d.reconnect.is_some() && (d.apply_from.is_some() || d.claim_index.is_some()) {
        return Err(Rejection::ReconnectChangesStore);
    }
    // Regions applied without history records are only allowed into a store
    // that claims no index (a full sync in progress); otherwise the
    // follower's numbering would silently diverge from the leader's.
    let full_sync = d.reset_store || (before.phase == FollowerPhase::Snapshot && !before.complete);
    let delta = d.begin_delta || (before.phase == FollowerPhase::Delta && !before.complete);
    if d.apply_from.is_some() && !d.record_history && !full_sync && !delta {
        return Err(Rejection::UnrecordedApply);
    }
    if d.record_history {
        let from = d.apply_from.ok_or(Rejection::RecordWithoutApply)?;
        if !before.complete || d.reset_store || d.begin_delta {
            return Err(Rejection::HistoryWithoutIndex);
        }
        let numbered_from = frame.start_index.saturating_add(u64::from(from));
        if numbered_from != before.next_index {
            return Err(Rejection::HistoryMisnumbered {
                from: numbered_from,
                next: before.next_index,
            });
        }
        let end = frame.start_index.checked_add(u64::from(frame.region_count));
        if end != Some(after.next_index) || d.claim_index != Some(after.next_index) {
            return Err(Rejection::HistoryNotClaimedToEnd);
        }
    }
    if let Some(claim) = d.claim_index {
        if !after.complete || after.next_index != claim {
            return Err(Rejection::ClaimMismatch {
                claim,
                next: after.next_index,
                complete: after.complete,
            });
        }
        // A completion ends a full sync or a delta (one that had nothing to
        // send completes at once, for a complete store or one part-way
        // through the same delta), at the frame's index, and only when the
        // leader's digest, if any, matched.
        let syncing = matches!(before.phase, FollowerPhase::Snapshot | FollowerPhase::Delta)
            || (before.phase == FollowerPhase::Awaiting
                && frame.announced == AnnouncedSync::Delta
                && (before.complete || before.resumable));
        let completion = syncing && frame.region_count == 0 && !frame.error;
        if !(d.record_history || completion) {
            return Err(Rejection::ClaimWithoutCause);
        }
        if completion && !d.record_history {
            if claim != frame.start_index {
                return Err(Rejection::ClaimNotAtCompletion {
                    claim,
                    frame: frame.start_index,
                });
            }
            if frame.digest == DigestCheck::Mismatched {
                return Err(Rejection::ClaimDespiteMismatch);
            }
        }
    } else {
        if after.next_index != before.next_index && !d.reset_store {
            return Err(Rejection::IndexMovedUnclaimed);
        }
        if after.complete && !before.complete {
            return Err(Rejection::CompleteWithoutClaim);
        }
    }
    Ok(())
}

/// A reconnect delay within [`MAX_BACKOFF_MS`].
pub fn backoff(ms: u64) -> Result<(), Rejection> {
    if ms > MAX_BACKOFF_MS {
        Err(Rejection::BackoffTooLong(ms))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
