//! A session's handshake on the follower's side, with no I/O: what to ask
//! the leader for (the index, the capabilities, the term of its last
//! record), and what the leader's answer (the route it announced, its
//! lineage) means for the frames to come. `stream` carries these out over
//! gRPC; the simulator over its links.

use std::time::Duration;

use regionsync_proto::pdpb::{Member, RequestHeader, SyncRegionRequest};

use super::{Announce, FollowerShared};
use crate::lineage::Lineage;
use crate::policy_runtime::{AnnouncedSync, ConnectPlan, PolicyRuntime};
use crate::storage::StorageError;
use crate::wire::{Capabilities, LastTerm};

/// What a follower sends to open a sync stream.
#[derive(Debug, Clone)]
pub struct Hello {
    /// The request, byte for byte PD's.
    pub request: SyncRegionRequest,
    /// What it takes beyond PD's protocol, and the term of its last record
    /// (metadata; none at all for a follower that announces nothing).
    pub caps: Capabilities,
}

impl Hello {
    /// The index asked for.
    pub fn start_index(&self) -> u64 {
        self.request.start_index
    }
}

impl FollowerShared {
    /// What to ask a leader of `cluster_id` for, as `plan` (the policy's
    /// answer to [`FollowerShared::begin_stream`]) says.
    pub fn hello(&self, plan: &ConnectPlan, cluster_id: u64) -> Hello {
        let start_index = plan.start_index;
        let request = SyncRegionRequest {
            header: Some(RequestHeader {
                cluster_id,
                ..Default::default()
            }),
            member: Some(Member {
                name: self.config.name.clone(),
                ..Default::default()
            }),
            start_index,
        };
        // The term of our last record, for the leader to check our history
        // against its own (`crate::lineage`); PD's follower sends nothing.
        let last_term = if self.config.announce == Announce::Nothing {
            LastTerm::NotSent
        } else {
            self.last_term(start_index)
                .map_or(LastTerm::Unknown, LastTerm::Known)
        };
        let caps = Capabilities {
            delta: plan.ask_delta,
            verify: plan.ask_verify,
            must_delta: plan.ask_delta
                && start_index != 0
                && plan.state.resumable
                && !plan.state.complete,
            last_term,
        };
        Hello { request, caps }
    }

    /// The leader accepted the stream, announcing `route` and `lineage`
    /// (response metadata): the sync the frames will be, for the policy.
    /// History or up to date: the leader checked that our records are its
    /// own, so its lineage is ours now.
    pub fn accepted(
        &self,
        route: Option<&str>,
        lineage: Option<&str>,
    ) -> Result<AnnouncedSync, StorageError> {
        let announced = crate::wire::announced_sync(route);
        let lineage = lineage.and_then(Lineage::parse);
        let vouched = announced == AnnouncedSync::History;
        self.offer_lineage(lineage, vouched)?;
        Ok(announced)
    }
}

/// When to dial again after a session ends: the policy's backoff over the
/// attempts since the last session that took a frame, with jitter from a
/// seed of the follower's own.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Backoff {
    /// Attempts start at 0; `seed` makes this follower's jitter its own.
    pub fn new(seed: u64) -> Backoff {
        Backoff { attempt: 0, seed }
    }

    /// A session ended, having taken a frame (`progressed`) or not: how
    /// long to wait before the next.
    pub fn after(&mut self, policy: &PolicyRuntime, progressed: bool) -> Duration {
        self.attempt = if progressed {
            0
        } else {
            self.attempt.saturating_add(1)
        };
        policy.backoff(
            self.attempt,
            self.seed.wrapping_add(u64::from(self.attempt)),
        )
    }
}
