//! Leader routing (docs/protocol.md §2): what a SyncRegions request with a given
//! start_index gets, and why. The reason travels into logs and the
//! `full_syncs` counters, so that a full sync is never silent (PD #10666).

use crate::{Policy, RingView, RouteAction, RouteReason, Routing};

impl Policy {
    /// Route a request for `start_index` against the ring `[first, next)`.
    pub fn route_request(&self, start_index: u64, ring: RingView) -> Routing {
        let full = |reason| Routing {
            action: RouteAction::FullSync,
            reason,
        };
        // Index 0 is checked first: a follower with nothing must get a
        // snapshot even from an empty leader (PD #4375 replayed history).
        if start_index == 0 {
            full(RouteReason::ZeroIndex)
        } else if start_index == ring.next_index {
            Routing {
                action: RouteAction::UpToDate,
                reason: RouteReason::UpToDate,
            }
        } else if start_index > ring.next_index {
            full(RouteReason::AheadOfLeader)
        } else if start_index < ring.first_index {
            full(RouteReason::BehindRing)
        } else if self.gaps_mean_full_sync {
            full(RouteReason::GapRefused)
        } else {
            Routing {
                action: RouteAction::History(start_index),
                reason: RouteReason::InRing,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: RingView = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 100,
    };

    fn route(p: &Policy, s: u64) -> Routing {
        p.route_request(s, RING)
    }

    #[test]
    fn zero_index_is_a_full_sync_even_on_an_empty_leader() {
        let p = Policy::default_policy();
        let empty = RingView {
            first_index: 0,
            next_index: 0,
            capacity: 10,
        };
        assert_eq!(
            p.route_request(0, empty),
            Routing {
                action: RouteAction::FullSync,
                reason: RouteReason::ZeroIndex
            }
        );
        assert_eq!(route(&p, 0).reason, RouteReason::ZeroIndex);
    }

    #[test]
    fn next_index_is_up_to_date() {
        let p = Policy::default_policy();
        assert_eq!(route(&p, 200).action, RouteAction::UpToDate);
        assert_eq!(route(&p, 200).reason, RouteReason::UpToDate);
    }

    #[test]
    fn inside_the_ring_replays_history_from_the_index() {
        let p = Policy::default_policy();
        assert_eq!(route(&p, 100).action, RouteAction::History(100));
        assert_eq!(route(&p, 199).action, RouteAction::History(199));
        assert_eq!(route(&p, 150).reason, RouteReason::InRing);
    }

    #[test]
    fn behind_the_ring_is_a_full_sync() {
        let p = Policy::default_policy();
        assert_eq!(route(&p, 99).action, RouteAction::FullSync);
        assert_eq!(route(&p, 1).reason, RouteReason::BehindRing);
    }

    #[test]
    fn ahead_of_the_leader_is_a_full_sync() {
        let p = Policy::default_policy();
        assert_eq!(route(&p, 201).action, RouteAction::FullSync);
        assert_eq!(route(&p, u64::MAX).reason, RouteReason::AheadOfLeader);
    }

    #[test]
    fn conservative_refuses_partial_replays_but_not_up_to_date() {
        let p = Policy::conservative();
        assert_eq!(route(&p, 150).action, RouteAction::FullSync);
        assert_eq!(route(&p, 150).reason, RouteReason::GapRefused);
        assert_eq!(route(&p, 200).action, RouteAction::UpToDate);
        assert_eq!(route(&p, 99).reason, RouteReason::BehindRing);
    }
}
