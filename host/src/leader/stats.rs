//! What a leader counts, for its status and metrics: heartbeats by outcome,
//! frames and bytes sent, full syncs by cause and outcome, and the cursor of
//! every follower stream (for lag).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use crate::policy_runtime::RouteCause;

/// How far a full sync got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FullSyncOutcome {
    /// Admitted; the snapshot began.
    Started,
    /// The completion frame was sent; the stream is live.
    Completed,
    /// Admission refused it; the follower retries.
    Refused,
    /// The ring lost records its catch-up needed; the follower retries.
    Exhausted,
}

impl FullSyncOutcome {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FullSyncOutcome::Started => "started",
            FullSyncOutcome::Completed => "completed",
            FullSyncOutcome::Refused => "refused",
            FullSyncOutcome::Exhausted => "exhausted",
        }
    }
}

/// Counters read by status and metrics.
#[derive(Debug, Default)]
pub struct LeaderStats {
    /// Heartbeats processed (applied, persisted and published, or ignored).
    pub heartbeats: AtomicU64,
    /// Heartbeats that changed a region (one record each).
    pub accepted: AtomicU64,
    /// Heartbeats ignored as stale.
    pub stale: AtomicU64,
    /// Heartbeats that changed nothing.
    pub unchanged: AtomicU64,
    /// Malformed heartbeats refused.
    pub refused: AtomicU64,
    /// Changes not applied, or not published, because the lease fence had
    /// closed (`fence`).
    pub fenced: AtomicU64,
    /// Follower streams whose history diverged from this leader's lineage
    /// (routed to a full sync).
    pub diverged: AtomicU64,
    /// Streams ended with RESOURCE_EXHAUSTED because the records they
    /// needed had left the history ring (PD's "live drain miss").
    pub history_misses: AtomicU64,
    /// Sync frames sent.
    pub frames_sent: AtomicU64,
    /// Sync frame bytes sent.
    pub bytes_sent: AtomicU64,
    /// Delta syncs served.
    pub deltas: AtomicU64,
    /// Deltas as large as a full sync that admission refused.
    pub deltas_refused: AtomicU64,
    /// SyncRegions streams refused because `max_sync_streams` were open.
    pub sync_streams_refused: AtomicU64,
    /// SyncRegions streams that sent no request within the bound.
    pub sync_first_request_timeouts: AtomicU64,
    /// RegionHeartbeat streams refused because `max_heartbeat_streams`
    /// were open.
    pub heartbeat_streams_refused: AtomicU64,
    /// (cause, outcome) -> count.
    pub(crate) full_syncs: Mutex<BTreeMap<(RouteCause, FullSyncOutcome), u64>>,
}

impl LeaderStats {
    /// Count one step of a full sync.
    pub fn count_full_sync(&self, cause: RouteCause, outcome: FullSyncOutcome) {
        *self.full_syncs.lock().entry((cause, outcome)).or_default() += 1;
    }

    /// Every step of every full sync counted so far: (cause, outcome) ->
    /// count.
    pub fn full_sync_counts(&self) -> BTreeMap<(RouteCause, FullSyncOutcome), u64> {
        self.full_syncs.lock().clone()
    }

    /// Full syncs started, by cause.
    pub fn full_syncs_by_reason(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((cause, outcome), n) in self.full_syncs.lock().iter() {
            if *outcome == FullSyncOutcome::Started {
                *out.entry(cause.as_str().to_string()).or_default() += n;
            }
        }
        out
    }
}

/// A follower stream as the leader tracks it (for lag metrics).
#[derive(Debug)]
pub struct StreamEntry {
    /// The follower's name, from its request.
    pub follower: String,
    /// Index of the next record the stream sends.
    pub cursor: AtomicU64,
}
