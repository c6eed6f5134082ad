//! The oracle: a minimal follower of its own, written apart from the real
//! one (no policy, no storage, no phase machine), that stays on the leader's
//! live stream and records the digest of the leader's region set at every
//! index it passes. A real follower's claim "ready at index i with digest d"
//! is then checked against what the leader had at i.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use regionsync::region_store::RegionStore;
use regionsync::wire::{CAPABILITIES_HEADER, Capabilities, MAX_MESSAGE_BYTES, ROUTE_HEADER};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{Member, RequestHeader, SyncRegionRequest};
use tokio::task::JoinHandle;

/// Digests of the leader's set by index, as far as the oracle saw them.
#[derive(Default)]
pub struct Seen {
    /// index -> digest value.
    pub digests: HashMap<u64, u128>,
    /// Frames that broke the protocol (numbering gaps, a completion at an
    /// index it did not expect).
    pub anomalies: Vec<String>,
    /// Indexes at which the leader's set was seen with two digests: the
    /// same index must always name the same set, across restarts too.
    pub changed: Vec<String>,
    /// Full syncs whose set differed from the digest the leader sent with
    /// the completion. A real follower refuses such a set (it verifies and
    /// starts over), and so does the oracle: it records nothing for it.
    pub unverified: Vec<String>,
    /// The oracle's own index: how far its copy, assembled from the wire,
    /// has come.
    pub oracle_at: u64,
    /// Sessions another cluster's leader refused (a port reused by another
    /// scenario; see `cluster_of`).
    pub misrouted: u64,
    /// What the oracle and the scenario did, newest last (the last
    /// [`LOG_KEPT`]), for a failure's message.
    pub log: std::collections::VecDeque<String>,
}

/// Events kept in [`Seen::log`].
const LOG_KEPT: usize = 60;

impl Seen {
    /// Note an event for a failure's message.
    pub fn note(&mut self, what: String) {
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        self.log.push_back(what);
    }

    /// Record the leader's digest at `index`; a different one than seen
    /// there before is a broken numbering (or a set the oracle assembled
    /// that is not the one the leader published there).
    pub fn record(&mut self, index: u64, digest: u128) {
        if let Some(had) = self.digests.insert(index, digest)
            && had != digest
        {
            self.changed.push(format!(
                "index {index} named digest {had:032x}, later {digest:032x}; events: {:?}",
                self.log
            ));
        }
    }

    /// The highest index it has seen the leader at (0 before any).
    pub fn last_index(&self) -> u64 {
        self.digests.keys().max().copied().unwrap_or(0)
    }
}

/// The oracle's task.
pub struct Oracle {
    pub seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Oracle {
    /// Follow the leader at `url` (of cluster `cluster_id`) until dropped.
    pub fn start(url: String, cluster_id: u64) -> Oracle {
        Oracle::start_on(url, cluster_id, Arc::default())
    }

    /// The same, recording into `seen` (which the leader's digest tap may
    /// fill too).
    pub fn start_on(url: String, cluster_id: u64, seen: Arc<Mutex<Seen>>) -> Oracle {
        let task = tokio::spawn(run(url, cluster_id, seen.clone()));
        Oracle { seen, task }
    }
}

async fn run(url: String, cluster_id: u64, seen: Arc<Mutex<Seen>>) {
    let mut store = RegionStore::new();
    let mut next = 0u64;
    loop {
        if let Err(why) = session(&url, cluster_id, &seen, &mut store, &mut next).await {
            let _ = why; // a dropped stream or a restarting leader: reconnect
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn session(
    url: &str,
    cluster_id: u64,
    seen: &Mutex<Seen>,
    store: &mut RegionStore,
    next: &mut u64,
) -> Result<(), String> {
    let mut client = PdClient::connect(url.to_string())
        .await
        .map_err(|e| e.to_string())?
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = SyncRegionRequest {
        header: Some(RequestHeader {
            cluster_id,
            ..Default::default()
        }),
        member: Some(Member {
            name: "oracle".into(),
            ..Default::default()
        }),
        start_index: *next,
    };
    let mut call = tonic::Request::new(tokio_stream::iter(vec![request]));
    let caps = Capabilities {
        verify: true,
        ..Default::default()
    };
    call.metadata_mut()
        .insert(CAPABILITIES_HEADER, caps.to_header().parse().unwrap());
    let response = match client.sync_regions(call).await {
        Ok(r) => r,
        Err(status) => {
            if status.message().contains("mismatched cluster id") {
                seen.lock().misrouted += 1;
            }
            return Err(status.to_string());
        }
    };
    let full = response
        .metadata()
        .get(ROUTE_HEADER)
        .and_then(|v| v.to_str().ok())
        == Some("full-sync");
    seen.lock().note(format!(
        "oracle asked for {} and got {}",
        *next,
        if full { "a full sync" } else { "history" }
    ));
    let mut frames = response.into_inner();
    // A full sync: a first frame (the snapshot's start), regions, then an
    // empty frame at the completion index. The set before it is unknown.
    let mut snapshot = if full {
        // Like a real follower's reset: until the completion the set is
        // partial and claims no index, so a stream that ends before it
        // makes the next one ask for a full sync again. (Keeping the old
        // index here once let an interrupted sync resume as history on top
        // of a partial set, and the oracle recorded digests the leader
        // never had.)
        *store = RegionStore::new();
        *next = 0;
        Some(0u32)
    } else {
        None
    };
    while let Some(frame) = frames.message().await.map_err(|e| e.to_string())? {
        if frame
            .header
            .as_ref()
            .and_then(|h| h.error.as_ref())
            .is_some_and(|e| e.r#type != 0)
        {
            return Err("error frame".into());
        }
        let leader_of = |i: usize| frame.region_leaders.get(i).map_or(0, |p| p.id);
        if let Some(seen_frames) = snapshot.as_mut() {
            *seen_frames += 1;
            if frame.regions.is_empty() && *seen_frames > 1 {
                let ours = store.digest().value();
                let theirs = regionsync::wire::digest_of(&frame.regionsync_digest);
                if theirs.is_some_and(|d| d != ours) {
                    let what = format!(
                        "full sync completed at {} with digest {ours:032x}, the leader's is {:032x}",
                        frame.start_index,
                        theirs.unwrap_or_default()
                    );
                    seen.lock().unverified.push(what.clone());
                    *next = 0;
                    return Err(what);
                }
                *next = frame.start_index;
                let mut s = seen.lock();
                s.note(format!("oracle completed at {} with {ours:032x}", *next));
                s.record(*next, ours);
                s.oracle_at = *next;
                snapshot = None;
                continue;
            }
            for (i, r) in frame.regions.iter().enumerate() {
                store.apply(r, leader_of(i), 0, 0);
            }
            continue;
        }
        if frame.regions.is_empty() {
            continue; // up to date, caught up, keepalive
        }
        if frame.start_index != *next {
            let what = format!("history frame at {} while at {}", frame.start_index, *next);
            seen.lock().anomalies.push(what.clone());
            return Err(what);
        }
        let mut s = seen.lock();
        s.note(format!(
            "oracle took records [{}, {})",
            *next,
            *next + frame.regions.len() as u64
        ));
        for (i, r) in frame.regions.iter().enumerate() {
            store.apply(r, leader_of(i), 0, 0);
            *next += 1;
            s.record(*next, store.digest().value());
        }
        s.oracle_at = *next;
    }
    Err("stream ended".into())
}
