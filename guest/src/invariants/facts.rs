//! What a host knows about a follower's store and stream *by itself*, and the
//! check of every on-frame answer against it.
//!
//! The per-answer invariants in this module's parent compare an answer with
//! the `before` state, but that state is the policy's own previous answer: a
//! policy could flip `phase` or `complete` on one frame (legally, on its
//! face) and exploit the flip on the next, for instance turning a live stream
//! into a "snapshot" so that unrecorded regions merge into a complete store
//! and an empty frame claims an index for the mix. The host therefore keeps
//! its own facts: the durable marker it last wrote, and whether a reset or a
//! delta began on *this* stream. It hands the policy a state corrected to
//! those facts ([`StreamFacts::correct`]), checks the answer against them
//! ([`StreamFacts::check`]), and moves them forward only by what it carried
//! out ([`StreamFacts::apply`]).

use super::Rejection;
use crate::{AnnouncedSync, FollowerPhase, FollowerState, FrameDecision, FrameHeader};

/// The host's own facts about a follower's store and its current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFacts {
    /// The index the store's durable marker holds.
    pub next_index: u64,
    /// The store claims `next_index` (it holds the leader's set there).
    pub complete: bool,
    /// The store is part-way through a delta from `next_index`.
    pub resumable: bool,
    /// This stream reset the store: a full sync is under way on it.
    pub reset_on_stream: bool,
    /// This stream began a delta onto the store.
    pub delta_on_stream: bool,
    /// No frame has arrived on this stream yet.
    pub first_frame: bool,
}

impl StreamFacts {
    /// Facts of a store as opened (or as a new stream finds it).
    pub fn of_store(state: &FollowerState) -> Self {
        StreamFacts {
            next_index: state.next_index,
            complete: state.complete,
            resumable: state.resumable && !state.complete,
            reset_on_stream: false,
            delta_on_stream: false,
            first_frame: true,
        }
    }

    /// A new stream: what the store holds stays; what happened on the last
    /// stream does not carry over.
    pub fn new_stream(&mut self) {
        self.reset_on_stream = false;
        self.delta_on_stream = false;
        self.first_frame = true;
    }

    /// `state` with the fields the host knows better than the policy: the
    /// policy always decides on the store as it really is.
    pub fn correct(&self, state: FollowerState) -> FollowerState {
        let complete = self.complete;
        FollowerState {
            next_index: self.next_index,
            complete,
            resumable: self.resumable,
            ready: state.ready && complete,
            ..state
        }
    }

    /// The facts once `d` is carried out.
    pub fn apply(&self, d: &FrameDecision) -> Self {
        let mut f = StreamFacts {
            first_frame: false,
            ..*self
        };
        if d.reset_store {
            f = StreamFacts {
                next_index: 0,
                complete: false,
                resumable: false,
                reset_on_stream: true,
                delta_on_stream: false,
                ..f
            };
        }
        if d.begin_delta {
            f.complete = false;
            f.resumable = true;
            f.delta_on_stream = true;
        }
        if let Some(claim) = d.claim_index {
            f.next_index = claim;
            f.complete = true;
            f.resumable = false;
            if !d.record_history {
                // A completion ends the sync this stream was running.
                f.reset_on_stream = false;
                f.delta_on_stream = false;
            }
        }
        f
    }

    /// Every check of `d`, the answer to `frame` given `before` (a state
    /// corrected to these facts): the contract's invariants against the
    /// state ([`super::frame_decision`]), then the host's facts.
    pub fn check_answer(
        &self,
        before: FollowerState,
        frame: FrameHeader,
        d: &FrameDecision,
    ) -> Result<(), Rejection> {
        super::frame_decision(before, frame, d)?;
        self.check(frame, d)
    }

    /// Check `d`, the answer to `frame`, against the host's facts (on top of
    /// [`super::frame_decision`], which checks it against the state).
    pub fn check(&self, frame: FrameHeader, d: &FrameDecision) -> Result<(), Rejection> {
        let after = self.apply(d);
        let s = d.state;
        if s.complete != after.complete
            || s.resumable != after.resumable
            || s.next_index != after.next_index
        {
            return Err(Rejection::StateDisagreesWithStore {
                complete: s.complete,
                next: s.next_index,
                held_complete: after.complete,
                held_next: after.next_index,
            });
        }
        let phase_ok = match s.phase {
            FollowerPhase::Snapshot => after.reset_on_stream,
            FollowerPhase::Delta => after.delta_on_stream,
            _ => true,
        };
        if !phase_ok {
            return Err(Rejection::PhaseWithoutCause(s.phase));
        }
        // Regions without history records only go into a store this stream
        // reset or began a delta on.
        let was_syncing =
            self.reset_on_stream || self.delta_on_stream || d.reset_store || d.begin_delta;
        if d.apply_from.is_some() && !d.record_history && !was_syncing {
            return Err(Rejection::UnrecordedApplyOffSync);
        }
        // A completion claims, at the completion frame's own index, the sync
        // this stream ran; never a set merged into a store it did not reset.
        if let Some(claim) = d.claim_index.filter(|_| !d.record_history) {
            let completion_frame = frame.region_count == 0 && !frame.error;
            // A delta with nothing to send completes on its first frame.
            let empty_delta = self.first_frame
                && frame.announced == AnnouncedSync::Delta
                && (self.complete || self.resumable);
            if !(was_syncing || empty_delta) || !completion_frame || claim != frame.start_index {
                return Err(Rejection::CompletionOffSync {
                    claim,
                    frame: frame.start_index,
                });
            }
        }
        Ok(())
    }
}
