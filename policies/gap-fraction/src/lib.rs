//! The gap-fraction policy: a follower whose gap is a large part of the ring
//! is sent a delta (each changed region once) instead of the history (every
//! change in order), and a full sync when it cannot take a delta.
//!
//! Why: replaying history costs one record per change, so a follower that is
//! 90% of a ring behind a hot leader re-receives the same busy regions many
//! times over; a delta sends each changed region once. Small gaps stay on
//! history, the cheapest catch-up there is. Everything else is the default
//! policy's.
#![cfg_attr(target_arch = "wasm32", no_std)]

use regionsync_guest::{RingView, RouteAction, RouteReason, Routing, SyncPolicy, SyncRequest};

/// History only while the gap is at most `percent` % of the ring's capacity.
#[derive(Debug, Clone, Copy)]
pub struct GapFraction {
    /// The largest gap replayed as history, in percent of the ring.
    pub percent: u64,
}

impl Default for GapFraction {
    fn default() -> Self {
        GapFraction { percent: 50 }
    }
}

impl SyncPolicy for GapFraction {
    fn describe(&self) -> regionsync_guest::PolicyInfo {
        regionsync_guest::PolicyInfo {
            name: "gap-fraction".into(),
            version: "0.1.0".into(),
        }
    }

    fn route_request(&self, request: SyncRequest, ring: RingView) -> Routing {
        let routed = self.knobs().route_request(request, ring);
        let RouteAction::History(start) = routed.action else {
            return routed;
        };
        let gap = ring.next_index - start;
        if gap.saturating_mul(100) <= ring.capacity.saturating_mul(self.percent) {
            return routed;
        }
        let action = if ring.takes_delta(request) {
            RouteAction::Delta(start)
        } else {
            RouteAction::FullSync
        };
        Routing {
            action,
            reason: RouteReason::GapRefused,
        }
    }
}

regionsync_guest::export_policy!(GapFraction);

#[cfg(test)]
mod tests {
    use super::*;

    const RING: RingView = RingView {
        first_index: 1_000,
        next_index: 2_000,
        capacity: 1_000,
        delta_floor: 1,
    };

    fn at(start_index: u64, can_delta: bool) -> SyncRequest {
        SyncRequest {
            start_index,
            can_delta,
            must_delta: false,
        }
    }

    #[test]
    fn small_gaps_replay_history_large_ones_get_a_delta_or_a_full_sync() {
        let p = GapFraction::default();
        assert_eq!(
            p.route_request(at(1_500, true), RING).action,
            RouteAction::History(1_500)
        );
        let far = p.route_request(at(1_499, true), RING);
        assert_eq!(far.action, RouteAction::Delta(1_499));
        assert_eq!(far.reason, RouteReason::GapRefused);
        assert_eq!(
            p.route_request(at(1_499, false), RING).action,
            RouteAction::FullSync
        );
        // What is not history is the default policy's answer.
        assert_eq!(
            p.route_request(at(2_000, true), RING),
            p.knobs().route_request(at(2_000, true), RING)
        );
    }

    #[test]
    fn every_answer_keeps_the_contract() {
        let p = GapFraction::default();
        for start in [0, 1, 999, 1_000, 1_499, 1_500, 1_999, 2_000, 2_001] {
            for can_delta in [false, true] {
                let r = at(start, can_delta);
                let routed = p.route_request(r, RING);
                regionsync_guest::invariants::routing(r, RING, &routed)
                    .unwrap_or_else(|e| panic!("{r:?}: {e}"));
            }
        }
    }
}
