//! Leader routing (docs/protocol.md §2): what a SyncRegions request with a given
//! start_index gets, and why. The reason travels into logs and the
//! `full_syncs` counters, so that a full sync is never silent (PD #10666).

use crate::{Policy, RingView, RouteAction, RouteReason, Routing, SyncRequest};

impl Policy {
    /// Route a request against the ring `[first, next)`.
    pub fn route_request(&self, request: SyncRequest, ring: RingView) -> Routing {
        let start = request.start_index;
        let full = |reason| Routing {
            action: RouteAction::FullSync,
            reason,
        };
        let delta = |reason| Routing {
            action: RouteAction::Delta(start),
            reason,
        };
        // A delta needs a follower that takes one, a store that can name what
        // changed since `start`, and a policy that takes partial syncs.
        let deltable = !self.gaps_mean_full_sync && ring.takes_delta(request);
        // Index 0 is checked first: a follower with nothing must get a
        // snapshot even from an empty leader (PD #4375 replayed history).
        if start == 0 {
            full(RouteReason::ZeroIndex)
        } else if start > ring.next_index {
            full(RouteReason::AheadOfLeader)
        } else if request.must_delta {
            // Part-way through a delta: history on top of it would claim
            // indexes for a set that is no leader's; finish it or start over.
            if deltable {
                delta(RouteReason::DeltaResumed)
            } else {
                full(RouteReason::DeltaResumed)
            }
        } else if start == ring.next_index {
            Routing {
                action: RouteAction::UpToDate,
                reason: RouteReason::UpToDate,
            }
        } else if start < ring.first_index {
            if deltable {
                delta(RouteReason::BehindRing)
            } else {
                full(RouteReason::BehindRing)
            }
        } else if self.gaps_mean_full_sync {
            full(RouteReason::GapRefused)
        } else {
            Routing {
                action: RouteAction::History(start),
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
        delta_floor: 1,
    };

    /// A follower that announced nothing (a PD follower).
    fn plain(start_index: u64) -> SyncRequest {
        SyncRequest {
            start_index,
            can_delta: false,
            must_delta: false,
        }
    }

    fn route(p: &Policy, s: u64) -> Routing {
        p.route_request(plain(s), RING)
    }

    fn route_delta(p: &Policy, s: u64, must_delta: bool) -> Routing {
        let request = SyncRequest {
            start_index: s,
            can_delta: true,
            must_delta,
        };
        p.route_request(request, RING)
    }

    #[test]
    fn zero_index_is_a_full_sync_even_on_an_empty_leader() {
        let p = Policy::default_policy();
        let empty = RingView {
            first_index: 0,
            next_index: 0,
            capacity: 10,
            delta_floor: 0,
        };
        assert_eq!(
            p.route_request(plain(0), empty),
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

    #[test]
    fn behind_the_ring_a_follower_that_takes_deltas_gets_one() {
        let p = Policy::default_policy();
        assert_eq!(
            route_delta(&p, 50, false),
            Routing {
                action: RouteAction::Delta(50),
                reason: RouteReason::BehindRing
            }
        );
        // In the ring, history is cheaper; at the next index, nothing.
        assert_eq!(
            route_delta(&p, 150, false).action,
            RouteAction::History(150)
        );
        assert_eq!(route_delta(&p, 200, false).action, RouteAction::UpToDate);
        // Below the floor the store cannot name what changed.
        let floor = RingView {
            delta_floor: 60,
            ..RING
        };
        let below = SyncRequest {
            start_index: 50,
            can_delta: true,
            must_delta: false,
        };
        assert_eq!(p.route_request(below, floor).action, RouteAction::FullSync);
        let none = RingView {
            delta_floor: 0,
            ..RING
        };
        assert_eq!(p.route_request(below, none).action, RouteAction::FullSync);
    }

    #[test]
    fn a_delta_under_way_is_finished_or_replaced_never_replayed() {
        let p = Policy::default_policy();
        assert_eq!(
            route_delta(&p, 150, true),
            Routing {
                action: RouteAction::Delta(150),
                reason: RouteReason::DeltaResumed
            }
        );
        assert_eq!(route_delta(&p, 200, true).action, RouteAction::FullSync);
        assert_eq!(
            route_delta(&p, 201, true).reason,
            RouteReason::AheadOfLeader
        );
    }

    #[test]
    fn conservative_never_sends_a_delta() {
        let p = Policy::conservative();
        assert_eq!(route_delta(&p, 50, false).action, RouteAction::FullSync);
        assert_eq!(route_delta(&p, 150, true).action, RouteAction::FullSync);
    }
}
