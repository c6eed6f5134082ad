//! Promotion and step-down on the follower's side (docs/protocol.md §8):
//! starting from a stepped-down leader's state, and handing a complete copy
//! to the leader role without reloading it from disk.

use std::sync::Arc;
use std::time::Duration;

use super::{Follower, FollowerConfig, FollowerShared, StartError, stream};
use crate::handover::Handover;
use crate::policy_runtime::{FollowerState, PolicyRuntime};

impl Follower {
    /// Follow from what another role handed over (a leader stepping down):
    /// its complete store at its index, and its ring.
    pub fn start_from(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        handover: Handover,
    ) -> Result<Follower, StartError> {
        let shared = Arc::new(FollowerShared::from_handover(config, policy, handover)?);
        let task = tokio::spawn(stream::run(shared.clone()));
        Ok(Follower { shared, task })
    }

    /// Stop syncing and hand the store, the regions and the ring to the next
    /// role (promotion). `None` when the store is not complete at the moment
    /// syncing stopped: only a complete copy may lead.
    pub async fn hand_over(self) -> Option<Handover> {
        self.shared.stopping.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            tracing::warn!("follower sync task did not stop within 3 s");
        }
        let shared = self.shared;
        // A frame still being applied ends first: its state, store and
        // ring are what is handed over, or it fails before anything is.
        let _applied = shared.applies_done().await;
        let state = shared.state();
        if let Err(e) = shared.drain_behind() {
            tracing::warn!(error = %crate::error_chain(&e), "a full sync's data could not be written; not handing over");
            return None;
        }
        let storage = shared.storage.lock().take()?;
        // The writer has stopped: this is the only handle left.
        let storage = Arc::into_inner(storage)?;
        if !state.complete || state.force_full_sync {
            tracing::warn!(
                phase = state.phase.as_str(),
                "not complete when syncing stopped; not handing over"
            );
            if let Err(e) = storage.flush() {
                tracing::warn!(error = %crate::error_chain(&e), "cannot flush the follower store");
            }
            return None;
        }
        if let Err(e) = storage.flush() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot flush the follower store at hand-over");
            return None;
        }
        let mut store = std::mem::take(&mut *shared.store.write());
        store.settle();
        let ring = std::mem::replace(&mut *shared.ring.write(), shared.new_ring(0));
        Some(Handover {
            storage,
            store,
            ring,
        })
    }
}

impl FollowerShared {
    fn from_handover(
        config: FollowerConfig,
        policy: Arc<PolicyRuntime>,
        handover: Handover,
    ) -> Result<Self, StartError> {
        let Handover {
            storage,
            store,
            ring,
        } = handover;
        // A leader's store is complete at its index by construction.
        let state = FollowerState::opened(store.applied_next(), true);
        let ring = (ring.next_index() == store.applied_next())
            .then(|| ring.rebounded(config.history_capacity, config.history_bytes));
        Self::assemble(config, policy, Some(storage), store, state, ring)
    }
}
