//! What a follower stream on the leader sends next (docs/protocol.md §2): history replay
//! and a full sync's catch-up in bounded frames, the "caught up" frame that
//! takes a stream live, and the end of a stream whose records the ring lost.
//!
//! Each stream has its own cursor (PD #10715 shared one), and the decision only
//! looks at that cursor and the ring, so a slow stream can never make another
//! skip or wait.

use crate::{Policy, RecordRange, SendStep, StreamPhase, StreamView};

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
}
