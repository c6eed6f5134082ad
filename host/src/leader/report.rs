//! What a leader reports about itself: the status document
//! (docs/protocol.md §6) and the Prometheus metrics, both built at request
//! time from the counters the leader keeps anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::LeaderShared;
use crate::policy_runtime::RingView;

/// The ring's figures, read under one lock.
struct RingNow {
    view: RingView,
    len: usize,
    bytes: usize,
    /// How long the ring holds a change at the current rate, in ms.
    covered_ms: Option<u64>,
}

impl LeaderShared {
    fn ring_now(&self) -> RingNow {
        let ring = self.ring.read();
        RingNow {
            view: ring.view(),
            len: ring.len(),
            bytes: ring.bytes(),
            covered_ms: ring
                .seconds_covered(std::time::Instant::now())
                .map(|s| (s * 1e3).min(u64::MAX as f64) as u64),
        }
    }

    /// What this leader holds now (its store, then its ring); with the
    /// region that holds `key` when one is asked about.
    pub fn held(&self, key: Option<&[u8]>) -> crate::status::Held {
        // One lock at a time: the intake takes the ring after the store.
        let (digest, regions, covering) = {
            let store = self.store.read();
            (
                store.digest(),
                store.len(),
                key.and_then(|k| store.get_by_key(k)),
            )
        };
        let (next_index, first_index, ring_len) = {
            let ring = self.ring.read();
            (ring.next_index(), ring.first_index(), ring.len())
        };
        crate::status::Held {
            ready: !self.is_failed(),
            complete: true,
            next_index,
            first_index,
            ring_len,
            digest,
            regions,
            covering,
        }
    }

    /// The index the intake has applied to the store (ahead of what is
    /// published while a commit is under way), with the digest of the set
    /// at it, read together.
    pub fn applied(&self) -> (u64, crate::digest::SetDigest) {
        let store = self.store.read();
        (store.applied_next(), store.digest())
    }

    /// The index published: every record below it is durable and may be
    /// sent.
    pub fn published_index(&self) -> u64 {
        *self.published.borrow()
    }

    /// The region `id` as this leader holds it.
    pub fn region(&self, id: u64) -> Option<crate::region_store::StoredRegion> {
        self.store.read().get(id)
    }

    /// The history ring's bounds, as the policy sees them.
    pub fn ring_view(&self) -> RingView {
        self.ring.read().view()
    }

    /// The intake failed to persist: the leader takes no more changes.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Follower streams open now, by name.
    pub fn stream_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .streams
            .lock()
            .values()
            .map(|s| s.follower.clone())
            .collect();
        names.sort();
        names
    }

    /// Full syncs streaming now.
    pub fn full_syncs_running(&self) -> u32 {
        self.full_syncs_running.now()
    }

    /// The status document of this leader.
    pub fn status(&self) -> crate::status::Status {
        let now = self.ring_now();
        let ring = now.view;
        let (regions, digest, delta_floor, removals) = {
            let store = self.store.read();
            (
                store.len() as u64,
                store.digest().hex(),
                store.delta_floor(),
                store.removals_kept() as u64,
            )
        };
        let stats = &self.stats;
        let mut details = BTreeMap::new();
        details.insert(
            "heartbeats".into(),
            stats.heartbeats.load(Ordering::Relaxed),
        );
        details.insert("accepted".into(), stats.accepted.load(Ordering::Relaxed));
        details.insert("stale".into(), stats.stale.load(Ordering::Relaxed));
        details.insert("refused".into(), stats.refused.load(Ordering::Relaxed));
        details.insert("fenced".into(), stats.fenced.load(Ordering::Relaxed));
        details.insert("diverged".into(), stats.diverged.load(Ordering::Relaxed));
        details.insert("streams".into(), self.streams.lock().len() as u64);
        details.insert("history_capacity".into(), ring.capacity);
        details.insert("unchanged".into(), stats.unchanged.load(Ordering::Relaxed));
        details.insert("deltas".into(), stats.deltas.load(Ordering::Relaxed));
        details.insert(
            "deltas_refused".into(),
            stats.deltas_refused.load(Ordering::Relaxed),
        );
        details.insert(
            "history_misses".into(),
            stats.history_misses.load(Ordering::Relaxed),
        );
        details.insert("delta_floor".into(), delta_floor);
        details.insert("removals_kept".into(), removals);
        details.insert("history_bytes".into(), now.bytes as u64);
        if let Some(ms) = now.covered_ms {
            // How long a follower may be away and still resume by history
            // (a busy ring covers less than a second).
            details.insert("history_covered_ms".into(), ms);
        }
        crate::status::Status {
            role: "leader".into(),
            name: self.config.name.clone(),
            ready: !self.failed.load(Ordering::Relaxed),
            phase: if self.failed.load(Ordering::Relaxed) {
                "failed".into()
            } else {
                "serving".into()
            },
            cluster_id: self.cluster_id,
            first_index: ring.first_index,
            next_index: ring.next_index,
            regions,
            digest,
            policy: crate::status::PolicyStatus::of(&self.policy),
            full_syncs: stats.full_syncs_by_reason(),
            details,
            ha: None,
        }
    }

    /// Prometheus text for `GET /metrics`.
    pub fn metrics(&self) -> String {
        let mut m = crate::metrics::Metrics::default();
        let now = self.ring_now();
        let ring = now.view;
        let stats = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.gauge("leader", "1 on a leader", 1);
        m.gauge(
            "regions",
            "Regions in the store",
            self.store.read().len() as i64,
        );
        m.history(
            ring.first_index,
            ring.next_index,
            ring.capacity,
            now.len as u64,
        );
        m.gauge(
            "history_bytes",
            "Encoded bytes of the records in the ring",
            now.bytes as i64,
        );
        if let Some(ms) = now.covered_ms {
            m.gauge(
                "history_covered_milliseconds",
                "How long the ring holds a change at the current change rate",
                ms.min(i64::MAX as u64) as i64,
            );
        }
        let counters = [
            (
                "heartbeats",
                "Region heartbeats processed (rate() is the intake rate)",
                &stats.heartbeats,
            ),
            (
                "heartbeats_accepted",
                "Heartbeats that changed a region (one record each)",
                &stats.accepted,
            ),
            (
                "heartbeats_stale",
                "Heartbeats ignored as stale",
                &stats.stale,
            ),
            (
                "heartbeats_refused",
                "Malformed heartbeats refused",
                &stats.refused,
            ),
            ("frames_sent", "SyncRegions frames sent", &stats.frames_sent),
            ("bytes_sent", "SyncRegions bytes sent", &stats.bytes_sent),
            (
                "heartbeats_unchanged",
                "Heartbeats that changed nothing worth a record",
                &stats.unchanged,
            ),
            ("delta_syncs", "Delta syncs served", &stats.deltas),
            (
                "sync_streams_refused",
                "SyncRegions streams refused because the stream limit was reached",
                &stats.sync_streams_refused,
            ),
            (
                "sync_first_request_timeouts",
                "SyncRegions streams closed for sending no request in time",
                &stats.sync_first_request_timeouts,
            ),
            (
                "heartbeat_streams_refused",
                "RegionHeartbeat streams refused because the stream limit was reached",
                &stats.heartbeat_streams_refused,
            ),
            (
                "delta_syncs_refused",
                "Deltas as large as a full sync refused by admission",
                &stats.deltas_refused,
            ),
            (
                "history_misses",
                "Streams ended with RESOURCE_EXHAUSTED because their records had left the history ring",
                &stats.history_misses,
            ),
            (
                "changes_fenced",
                "Changes not applied or not published because the lease fence had closed",
                &stats.fenced,
            ),
            (
                "streams_diverged",
                "Follower streams whose history diverged from this leader's lineage (full sync)",
                &stats.diverged,
            ),
        ];
        for (name, help, counter) in counters {
            m.counter(name, help, load(counter));
        }
        m.counters(
            "full_syncs",
            "Full syncs by reason and outcome",
            stats.full_syncs.lock().iter().map(|((cause, outcome), n)| {
                (
                    vec![
                        ("reason", cause.as_str().to_string()),
                        ("outcome", outcome.as_str().to_string()),
                    ],
                    *n,
                )
            }),
        );
        let streams: Vec<(String, u64)> = self
            .streams
            .lock()
            .values()
            .map(|e| (e.follower.clone(), e.cursor.load(Ordering::Relaxed)))
            .collect();
        m.gauges(
            "follower_lag_records",
            "Records a follower stream has yet to be sent",
            streams.into_iter().map(|(name, cursor)| {
                (
                    vec![("follower", name)],
                    ring.next_index.saturating_sub(cursor) as i64,
                )
            }),
        );
        m.policy(&self.policy);
        m.render()
    }
}
