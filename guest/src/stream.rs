//! What a follower stream on the leader sends next (docs/protocol.md §2): history replay
//! and a full sync's catch-up in bounded frames, the "caught up" frame that
//! takes a stream live, and the end of a stream whose records the ring lost.
//!
//! Each stream has its own cursor (PD #10715 shared one), and the decision only
//! looks at that cursor and the ring, so a slow stream can never make another
//! skip or wait.

use crate::{CatchUpStep, CatchUpView, Policy, RecordRange, SendStep, StreamPhase, StreamView};

impl Policy {
    /// The next step for one stream.
    pub fn plan_send(&self, view: StreamView) -> SendStep {
        let ring = view.ring;
        // A cursor outside the ring means the records it needs are gone (or
        // never existed): the follower must come back for a full sync.
        if view.cursor < ring.first_index || view.cursor > ring.next_index {
            return SendStep::Exhausted;
        }
        if view.cursor == ring.next_index {
            return match view.phase {
                StreamPhase::CatchingUp => SendStep::CaughtUp(view.cursor),
                StreamPhase::Live => SendStep::Idle,
            };
        }
        let pending = ring.next_index - view.cursor;
        let count = pending.min(u64::from(self.limits.max_regions.max(1))) as u32;
        SendStep::Records(RecordRange {
            start: view.cursor,
            count,
        })
    }
}

/// Passes after which a catch-up takes what is left at one index whatever
/// its size, so that a sync under any churn ends.
pub const MAX_CATCH_UP_PASSES: u32 = 16;

impl Policy {
    /// The next catch-up pass of a full or delta sync: take the rest at one
    /// index once it fits in a frame, or after [`MAX_CATCH_UP_PASSES`]. Each
    /// pass sends what changed during the previous one, so under a churn the
    /// leader can stream faster than it happens, the passes shrink until one
    /// is small enough to take while the intake waits.
    pub fn plan_catch_up(&self, view: CatchUpView) -> CatchUpStep {
        if view.pending <= u64::from(self.limits.max_regions) || view.passes >= MAX_CATCH_UP_PASSES
        {
            CatchUpStep::FinalPass
        } else {
            CatchUpStep::AnotherPass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RingView;

    fn view(phase: StreamPhase, cursor: u64) -> StreamView {
        StreamView {
            phase,
            cursor,
            ring: RingView {
                first_index: 10,
                next_index: 2_511,
                capacity: 10_000,
                delta_floor: 1,
            },
        }
    }

    #[test]
    fn replay_goes_out_in_frames_of_at_most_the_limit() {
        let p = Policy::default_policy();
        let step = p.plan_send(view(StreamPhase::CatchingUp, 10));
        assert_eq!(
            step,
            SendStep::Records(RecordRange {
                start: 10,
                count: 1_000
            })
        );
        let step = p.plan_send(view(StreamPhase::CatchingUp, 2_010));
        assert_eq!(
            step,
            SendStep::Records(RecordRange {
                start: 2_010,
                count: 501
            })
        );
    }

    #[test]
    fn a_caught_up_stream_sends_one_empty_frame_then_idles() {
        let p = Policy::default_policy();
        assert_eq!(
            p.plan_send(view(StreamPhase::CatchingUp, 2_511)),
            SendStep::CaughtUp(2_511)
        );
        assert_eq!(p.plan_send(view(StreamPhase::Live, 2_511)), SendStep::Idle);
    }

    #[test]
    fn a_cursor_off_the_ring_is_exhausted() {
        let p = Policy::default_policy();
        assert_eq!(p.plan_send(view(StreamPhase::Live, 9)), SendStep::Exhausted);
        assert_eq!(
            p.plan_send(view(StreamPhase::CatchingUp, 2_512)),
            SendStep::Exhausted
        );
    }

    #[test]
    fn conservative_uses_smaller_frames() {
        let p = Policy::conservative();
        assert_eq!(
            p.plan_send(view(StreamPhase::Live, 10)),
            SendStep::Records(RecordRange {
                start: 10,
                count: 500
            })
        );
    }

    #[test]
    fn catch_up_passes_end_once_the_rest_fits_a_frame_or_after_the_cap() {
        let p = Policy::default_policy();
        let view = |passes, pending| CatchUpView { passes, pending };
        assert_eq!(p.plan_catch_up(view(0, 50_000)), CatchUpStep::AnotherPass);
        assert_eq!(p.plan_catch_up(view(3, 1_001)), CatchUpStep::AnotherPass);
        assert_eq!(p.plan_catch_up(view(3, 1_000)), CatchUpStep::FinalPass);
        assert_eq!(p.plan_catch_up(view(0, 0)), CatchUpStep::FinalPass);
        assert_eq!(
            p.plan_catch_up(view(MAX_CATCH_UP_PASSES, u64::MAX)),
            CatchUpStep::FinalPass
        );
        assert_eq!(
            Policy::conservative().plan_catch_up(view(1, 600)),
            CatchUpStep::AnotherPass
        );
    }
}
