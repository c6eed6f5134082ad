//! The follower's phase machine (docs/protocol.md §3): what to ask for on connect, and
//! what each received frame means for the cache, the durable store, the index
//! and readiness.
//!
//! The invariant it keeps: the follower either holds exactly a region set the
//! leader had at `next_index` (`complete`) or it claims no index at all. A full
//! sync therefore starts with a reset that marks the store incomplete, and only
//! the completion frame claims an index again; a crash anywhere in between
//! makes the next connect ask for index 0. A delta sync keeps the store but
//! marks it incomplete and *resumable* first: a crash part-way leaves a store
//! that claims no index, and that a delta from the same index completes.

use crate::{
    AnnouncedSync, ConnectPlan, DigestCheck, FollowerPhase, FollowerState, FrameDecision,
    FrameHeader, FrameKind, Policy, ReconnectReason,
};

/// Apply every region of a non-empty frame.
fn apply_all(count: u32) -> Option<u32> {
    (count > 0).then_some(0)
}

impl Policy {
    /// What to send on (re)connect. An incomplete store, or one the policy
    /// wants rebuilt, asks for index 0 and so always gets a full sync; a
    /// store part-way through a delta asks to finish it, when the policy
    /// takes deltas.
    pub fn on_connect(&self, state: FollowerState) -> ConnectPlan {
        let takes_delta = !self.gaps_mean_full_sync;
        let resume = state.resumable && takes_delta;
        let full = state.force_full_sync || (!state.complete && !resume);
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
            ask_delta: takes_delta,
            // Checking a completion costs nothing and catches a copy that
            // went wrong behind the follower's back.
            ask_verify: true,
        }
    }

    /// What a frame means and what to do with it.
    pub fn on_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        if frame.error {
            let mut d = FrameDecision::keep(state, FrameKind::Error);
            d.reconnect = Some(ReconnectReason::ErrorHeader);
            return d;
        }
        let delta = frame.announced == AnnouncedSync::Delta;
        match state.phase {
            FollowerPhase::Awaiting if delta => self.on_delta_start(state, frame),
            FollowerPhase::Awaiting
                if frame.start_index == 0 && frame.announced != AnnouncedSync::History =>
            {
                FrameDecision {
                    state: FollowerState {
                        phase: FollowerPhase::Snapshot,
                        next_index: 0,
                        snapshot_regions: u64::from(frame.region_count),
                        complete: false,
                        ready: false,
                        force_full_sync: false,
                        resumable: false,
                    },
                    kind: FrameKind::SnapshotStart,
                    reset_store: true,
                    apply_from: apply_all(frame.region_count),
                    ..FrameDecision::keep(state, FrameKind::SnapshotStart)
                }
            }
            FollowerPhase::Snapshot | FollowerPhase::Delta if frame.region_count == 0 => {
                self.on_completion(state, frame)
            }
            FollowerPhase::Snapshot | FollowerPhase::Delta => {
                // Snapshot frames are positional, catch-up frames carry
                // record indexes and delta frames their base; all only add
                // to the set being built and none moves the index.
                let kind = if state.phase == FollowerPhase::Delta {
                    FrameKind::DeltaData
                } else {
                    FrameKind::SnapshotData
                };
                let mut d = FrameDecision::keep(
                    FollowerState {
                        snapshot_regions: state
                            .snapshot_regions
                            .saturating_add(u64::from(frame.region_count)),
                        ..state
                    },
                    kind,
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

    /// The first frame of a stream the leader announced as a delta.
    fn on_delta_start(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        // A delta adds to a set the leader had at next_index: only a complete
        // store, or one part-way through the same delta, has one.
        if !(state.complete || state.resumable) || self.gaps_mean_full_sync {
            let mut d = FrameDecision::keep(
                FollowerState {
                    force_full_sync: true,
                    ..state
                },
                FrameKind::Unexpected,
            );
            d.reconnect = Some(ReconnectReason::UnexpectedFrame);
            return d;
        }
        if frame.region_count == 0 {
            // Nothing changed since our index: the completion comes at once,
            // with the leader's digest. So too for a store part-way through
            // the same delta: opening a delta phase here would leave its
            // completion to the next frame, a keepalive with no digest.
            return self.on_completion(state, frame);
        }
        FrameDecision {
            state: FollowerState {
                phase: FollowerPhase::Delta,
                snapshot_regions: u64::from(frame.region_count),
                complete: false,
                ready: false,
                force_full_sync: false,
                resumable: true,
                ..state
            },
            begin_delta: true,
            apply_from: apply_all(frame.region_count),
            ..FrameDecision::keep(state, FrameKind::DeltaStart)
        }
    }

    /// The end of a full or delta sync: claim its index, unless the leader's
    /// digest says the set differs, in which case nothing of it can be
    /// trusted: clear it and ask for a full sync.
    fn on_completion(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        if frame.digest == DigestCheck::Mismatched {
            let mut d = FrameDecision::keep(
                FollowerState {
                    phase: FollowerPhase::Awaiting,
                    next_index: 0,
                    snapshot_regions: 0,
                    complete: false,
                    ready: false,
                    force_full_sync: true,
                    resumable: false,
                },
                FrameKind::VerifyFailed,
            );
            d.reset_store = true;
            d.reconnect = Some(ReconnectReason::VerifyFailed);
            return d;
        }
        FrameDecision {
            state: FollowerState {
                phase: FollowerPhase::Streaming,
                next_index: frame.start_index,
                complete: true,
                ready: true,
                resumable: false,
                ..state
            },
            claim_index: Some(frame.start_index),
            ..FrameDecision::keep(state, FrameKind::Completion)
        }
    }

    /// A history, live or keepalive frame for a follower outside a full sync.
    fn on_record_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        let next = state.next_index;
        let start = frame.start_index;
        let abandon = |reason, kind| {
            let mut d = FrameDecision::keep(
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
                FrameDecision::keep(
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
            return FrameDecision::keep(state, FrameKind::Duplicate);
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
            apply_from: Some((next - start) as u32),
            record_history: true,
            claim_index: Some(end),
            ..FrameDecision::keep(state, FrameKind::History)
        }
    }
}

#[cfg(test)]
mod tests;
