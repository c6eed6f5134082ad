//! The follower's phase machine (docs/protocol.md §3): what to ask for on connect, and
//! what each received frame means for the cache, the durable store, the index
//! and readiness.
//!
//! The invariant it keeps: the follower either holds exactly a region set the
//! leader had at `next_index` (`complete`) or it claims no index at all. A full
//! sync therefore starts with a reset that marks the store incomplete, and only
//! the completion frame claims an index again; a crash anywhere in between
//! makes the next connect ask for index 0.

use crate::{
    ConnectPlan, FollowerPhase, FollowerState, FrameDecision, FrameHeader, FrameKind, Policy,
    ReconnectReason,
};

/// A decision that changes nothing but the state (and maybe the kind).
fn keep(state: FollowerState, kind: FrameKind) -> FrameDecision {
    FrameDecision {
        state,
        kind,
        reset_store: false,
        apply_from: None,
        record_history: false,
        claim_index: None,
        reconnect: None,
    }
}

/// Apply every region of a non-empty frame.
fn apply_all(count: u32) -> Option<u32> {
    (count > 0).then_some(0)
}

impl Policy {
    /// What to send on (re)connect. An incomplete store, or one the policy
    /// wants rebuilt, asks for index 0 and so always gets a full sync.
    pub fn on_connect(&self, state: FollowerState) -> ConnectPlan {
        let full = !state.complete || state.force_full_sync;
        ConnectPlan {
            start_index: if full { 0 } else { state.next_index },
            state: FollowerState {
                phase: FollowerPhase::Awaiting,
                snapshot_regions: 0,
                // A complete store stays readable while we reconnect: it is a
                // set the leader had at next_index, just possibly older.
                ready: state.ready && state.complete,
                ..state
            },
        }
    }

    /// What a frame means and what to do with it.
    pub fn on_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        if frame.error {
            let mut d = keep(state, FrameKind::Error);
            d.reconnect = Some(ReconnectReason::ErrorHeader);
            return d;
        }
        match state.phase {
            FollowerPhase::Awaiting if frame.start_index == 0 => FrameDecision {
                state: FollowerState {
                    phase: FollowerPhase::Snapshot,
                    next_index: 0,
                    snapshot_regions: u64::from(frame.region_count),
                    complete: false,
                    ready: false,
                    force_full_sync: false,
                },
                kind: FrameKind::SnapshotStart,
                reset_store: true,
                apply_from: apply_all(frame.region_count),
                record_history: false,
                claim_index: None,
                reconnect: None,
            },
            FollowerPhase::Snapshot if frame.region_count == 0 => FrameDecision {
                state: FollowerState {
                    phase: FollowerPhase::Streaming,
                    next_index: frame.start_index,
                    complete: true,
                    ready: true,
                    ..state
                },
                kind: FrameKind::Completion,
                reset_store: false,
                apply_from: None,
                record_history: false,
                claim_index: Some(frame.start_index),
                reconnect: None,
            },
            FollowerPhase::Snapshot => {
                // Snapshot frames are positional and catch-up frames carry
                // record indexes; both only add to the staged set and neither
                // moves the index, so they need not be told apart.
                let mut d = keep(
                    FollowerState {
                        snapshot_regions: state
                            .snapshot_regions
                            .saturating_add(u64::from(frame.region_count)),
                        ..state
                    },
                    FrameKind::SnapshotData,
                );
                d.apply_from = apply_all(frame.region_count);
                d
            }
            FollowerPhase::Awaiting | FollowerPhase::Streaming => self.on_record_frame(
                FollowerState {
                    phase: FollowerPhase::Streaming,
                    ..state
                },
                frame,
            ),
        }
    }

    /// A history, live or keepalive frame for a follower outside a full sync.
    fn on_record_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        let next = state.next_index;
        let start = frame.start_index;
        let abandon = |reason, kind| {
            let mut d = keep(
                FollowerState {
                    force_full_sync: state.force_full_sync || self.gaps_mean_full_sync,
                    ..state
                },
                kind,
            );
            d.reconnect = Some(reason);
            d
        };
        // Records on top of a store that claims no index would make a half
        // store look current: only a full sync can fix it.
        if !state.complete {
            let mut d = abandon(ReconnectReason::UnexpectedFrame, FrameKind::Unexpected);
            d.state.force_full_sync = true;
            return d;
        }
        if frame.region_count == 0 {
            return if start == next {
                keep(
                    FollowerState {
                        ready: true,
                        ..state
                    },
                    FrameKind::Keepalive,
                )
            } else if start > next {
                abandon(ReconnectReason::Gap, FrameKind::Unexpected)
            } else {
                abandon(ReconnectReason::UnexpectedFrame, FrameKind::Unexpected)
            };
        }
        let Some(end) = start.checked_add(u64::from(frame.region_count)) else {
            return abandon(ReconnectReason::UnexpectedFrame, FrameKind::Unexpected);
        };
        if start > next {
            return abandon(ReconnectReason::Gap, FrameKind::Unexpected);
        }
        if end <= next {
            return keep(state, FrameKind::Duplicate);
        }
        if start < next && self.gaps_mean_full_sync {
            return abandon(ReconnectReason::UnexpectedFrame, FrameKind::Unexpected);
        }
        // start <= next < end: apply what is new, skip what we have.
        FrameDecision {
            state: FollowerState {
                next_index: end,
                ..state
            },
            kind: FrameKind::History,
            reset_store: false,
            apply_from: Some((next - start) as u32),
            record_history: true,
            claim_index: Some(end),
            reconnect: None,
        }
    }
}

#[cfg(test)]
mod tests;
