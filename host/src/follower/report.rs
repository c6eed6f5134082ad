//! What a follower reports about itself, and the counters behind it: the status document
//! (docs/protocol.md §6) and the Prometheus metrics, both built at request
//! time from the counters the follower keeps anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::FollowerShared;
use crate::status::Status;

impl FollowerShared {
    /// What this follower holds now, its state read with its store; with
    /// the region that holds `key` when one is asked about.
    pub fn held(&self, key: Option<&[u8]>) -> crate::status::Held {
        let store = self.store.read();
        let state = self.state();
        let ring = self.ring.read();
        crate::status::Held {
            ready: state.ready,
            complete: state.complete,
            next_index: state.next_index,
            first_index: ring.first_index(),
            ring_len: ring.len(),
            digest: store.digest(),
            regions: store.len(),
            covering: key.and_then(|k| store.get_by_key(k)),
        }
    }

    /// The region `id` as this follower holds it.
    pub fn region(&self, id: u64) -> Option<crate::region_store::StoredRegion> {
        self.store.read().get(id)
    }

    /// An apply holds the store now, so that a read would wait (what a
    /// paused apply shows; `pause_applies`).
    pub fn store_is_busy(&self) -> bool {
        self.store.try_read().is_none()
    }

    /// The status document of this follower.
    pub fn status(&self) -> Status {
        let (state, refused) = {
            let sync = self.sync.lock();
            (sync.policy, sync.refusal.is_some())
        };
        let ring = self.ring.read().view();
        let (regions, digest) = {
            let store = self.store.read();
            (store.len() as u64, store.digest().hex())
        };
        let phase = if refused {
            "refused".to_string()
        } else {
            state.phase.as_str().to_string()
        };
        let stats = &self.stats;
        let mut details = BTreeMap::new();
        details.insert("frames".into(), stats.frames.load(Ordering::Relaxed));
        details.insert("bytes".into(), stats.bytes.load(Ordering::Relaxed));
        details.insert("connects".into(), stats.connects.load(Ordering::Relaxed));
        details.insert(
            "snapshot_regions".into(),
            stats.snapshot_progress.load(Ordering::Relaxed),
        );
        details.insert("deltas".into(), stats.deltas.load(Ordering::Relaxed));
        details.insert(
            "verify_failures".into(),
            stats.verify_failures.load(Ordering::Relaxed),
        );
        for (reason, n) in stats.reconnects.lock().iter() {
            details.insert(format!("reconnects_{reason}"), *n);
        }
        Status {
            role: "follower".into(),
            name: self.config.name.clone(),
            ready: state.ready,
            phase,
            cluster_id: self.cluster_id(),
            first_index: ring.first_index,
            next_index: state.next_index,
            regions,
            digest,
            policy: crate::status::PolicyStatus::of(&self.policy),
            full_syncs: stats
                .full_syncs
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            details,
            ha: None,
        }
    }

    /// Prometheus text for `GET /metrics`.
    pub fn metrics(&self) -> String {
        let mut m = crate::metrics::Metrics::default();
        let status = self.status();
        let stats = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.gauge("leader", "1 on a leader", 0);
        m.gauge(
            "ready",
            "1 when the follower serves reads",
            i64::from(status.ready),
        );
        m.gauge("regions", "Regions in the cache", status.regions as i64);
        let ring = self.ring.read();
        m.history(
            status.first_index,
            status.next_index,
            ring.capacity() as u64,
            ring.len() as u64,
        );
        drop(ring);
        for (name, help, counter) in [
            (
                "frames_received",
                "SyncRegions frames received",
                &stats.frames,
            ),
            ("bytes_received", "SyncRegions bytes received", &stats.bytes),
            ("delta_syncs", "Delta syncs begun", &stats.deltas),
            (
                "sync_verify_failures",
                "Completions whose leader digest differed from this follower's regions",
                &stats.verify_failures,
            ),
        ] {
            m.counter(name, help, load(counter));
        }
        m.gauge(
            "snapshot_regions_received",
            "Regions received in the current or last full sync",
            load(&stats.snapshot_progress) as i64,
        );
        m.counters(
            "full_syncs",
            "Full syncs received, by trigger",
            status
                .full_syncs
                .into_iter()
                .map(|(k, v)| (vec![("reason", k.to_string())], v)),
        );
        m.counters(
            "reconnects",
            "Sync stream ends, by reason",
            stats
                .reconnects
                .lock()
                .clone()
                .into_iter()
                .map(|(k, v)| (vec![("reason", k.to_string())], v)),
        );
        m.policy(&self.policy);
        m.render()
    }
}

/// What made a follower take a full sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullSyncTrigger {
    /// It asked for index 0 (new, incomplete, or told to by its policy).
    Requested,
    /// It asked to resume, and the leader routed it to a full sync.
    LeaderRouted,
}

impl FullSyncTrigger {
    /// Stable label for status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FullSyncTrigger::Requested => "requested",
            FullSyncTrigger::LeaderRouted => "leader_routed",
        }
    }
}

/// Counters read by status and metrics.
#[derive(Debug, Default)]
pub struct FollowerStats {
    /// Frames received.
    pub frames: AtomicU64,
    /// Frame bytes received.
    pub bytes: AtomicU64,
    /// Sessions started.
    pub connects: AtomicU64,
    /// Full syncs received, by trigger ([`FullSyncTrigger::as_str`]).
    pub(crate) full_syncs: Mutex<BTreeMap<&'static str, u64>>,
    /// Sessions ended, by reason ([`EndReason::as_str`]).
    pub(crate) reconnects: Mutex<BTreeMap<&'static str, u64>>,
    /// Regions received so far in the running full sync.
    pub snapshot_progress: AtomicU64,
    /// Delta syncs begun.
    pub deltas: AtomicU64,
    /// Completions whose digest differed from the follower's set.
    pub verify_failures: AtomicU64,
}

impl FollowerStats {
    /// Full syncs received so far, by trigger.
    pub fn full_sync_counts(&self) -> BTreeMap<&'static str, u64> {
        self.full_syncs.lock().clone()
    }

    /// Sessions ended so far, by reason.
    pub fn reconnect_counts(&self) -> BTreeMap<&'static str, u64> {
        self.reconnects.lock().clone()
    }
}
