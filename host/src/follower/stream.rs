//! The follower's side of `SyncRegions`: connect, check the cluster, ask for
//! the index the policy chooses, carry out the policy's decision for every
//! frame, and reconnect with the policy's backoff after any end of stream.
//!
//! Every end of a stream is logged with its reason: a follower that stays
//! behind without saying so was PD #10666's failure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prost::Message;
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{
    ErrorType, GetMembersRequest, Member, RequestHeader, SyncRegionRequest, SyncRegionResponse,
};
use tonic::Code;
use tonic::transport::Endpoint;

use super::FollowerShared;
use crate::history::{HistoryRing, Record, fingerprint};
use crate::policy_runtime::{FrameHeader, FrameKind};
use crate::region_store::{Outcome, check_region};
use crate::service::MAX_MESSAGE_BYTES;
use crate::storage::WriteBatch;

/// How a session with the leader ended.
struct Ended {
    /// Stable label for logs, metrics and status.
    reason: &'static str,
    detail: String,
    /// The session received at least one frame (the backoff starts over).
    progressed: bool,
}

impl Ended {
    fn new(reason: &'static str, detail: impl Into<String>, progressed: bool) -> Self {
        Ended {
            reason,
            detail: detail.into(),
            progressed,
        }
    }
}

/// The follower's life: sessions with the leader, forever, until stopped.
pub(super) async fn run(shared: Arc<FollowerShared>) {
    let mut stopping = shared.stopping.subscribe();
    let mut attempt: u32 = 0;
    let seed_base = xxhash_rust::xxh3::xxh3_64(shared.config.name.as_bytes())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let before = *shared.state.lock();
        let plan = shared.policy.on_connect(before);
        shared.set_state(plan.state);
        shared.stats.connects.fetch_add(1, Ordering::Relaxed);
        let ended = tokio::select! {
            ended = session(&shared, plan.start_index) => ended,
            _ = stopping.wait_for(|s| *s) => return,
        };
        *shared
            .stats
            .reconnects
            .lock()
            .entry(ended.reason.to_string())
            .or_default() += 1;
        attempt = if ended.progressed {
            0
        } else {
            attempt.saturating_add(1)
        };
        let delay = shared
            .policy
            .backoff(attempt, seed_base.wrapping_add(u64::from(attempt)));
        let state = *shared.state.lock();
        tracing::warn!(
            follower = %shared.config.name, leader = %shared.config.leader,
            reason = ended.reason, detail = %ended.detail, next_index = state.next_index,
            ready = state.ready, retry_in = ?delay, "sync stream ended; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

async fn session(shared: &Arc<FollowerShared>, start_index: u64) -> Ended {
    let config = &shared.config;
    let endpoint = match Endpoint::from_shared(config.leader.clone()) {
        Ok(e) => e
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20)),
        Err(e) => return Ended::new("bad_leader_url", format!("{}: {e}", config.leader), false),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return Ended::new("connect_failed", format!("{}: {e}", config.leader), false),
    };
    let mut client = PdClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    // Discovery: ask without a cluster id, then compare the leader's.
    let members = client
        .get_members(GetMembersRequest {
            header: Some(RequestHeader::default()),
        })
        .await;
    let theirs = match members {
        Ok(r) => r.into_inner().header.map_or(0, |h| h.cluster_id),
        Err(status) => return Ended::new("leader_refused", status.to_string(), false),
    };
    if let Err(why) = check_cluster(shared, theirs) {
        tracing::error!(follower = %config.name, reason = %why, "refusing to sync");
        *shared.refusal.lock() = Some(why.clone());
        return Ended::new("cluster_mismatch", why, false);
    }
    *shared.refusal.lock() = None;

    let request = SyncRegionRequest {
        header: Some(RequestHeader {
            cluster_id: theirs,
            ..Default::default()
        }),
        member: Some(Member {
            name: config.name.clone(),
            ..Default::default()
        }),
        start_index,
    };
    tracing::info!(follower = %config.name, leader = %config.leader, start_index, "asking the leader to sync");
    let mut frames = match client.sync_regions(tokio_stream::iter(vec![request])).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ended::new("sync_refused", status.to_string(), false),
    };
    let silence = config.keepalive * 3;
    let mut progressed = false;
    loop {
        let frame = match tokio::time::timeout(silence, frames.message()).await {
            Err(_) => {
                return Ended::new(
                    "keepalive_silence",
                    format!("no frame for {silence:?} (3 keepalive intervals)"),
                    progressed,
                );
            }
            Ok(Err(status)) if status.code() == Code::ResourceExhausted => {
                return Ended::new("resource_exhausted", status.message(), progressed);
            }
            Ok(Err(status)) => return Ended::new("stream_error", status.to_string(), progressed),
            Ok(Ok(None)) => return Ended::new("eof", "the leader closed the stream", progressed),
            Ok(Ok(Some(frame))) => frame,
        };
        progressed = true;
        let worker = shared.clone();
        let applied =
            tokio::task::spawn_blocking(move || apply_frame(&worker, frame, start_index)).await;
        match applied {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(ended))) => return ended,
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "cannot apply a frame; the store is left as its last commit");
                return Ended::new("store_error", format!("{e:#}"), progressed);
            }
            Err(e) => return Ended::new("store_error", e.to_string(), progressed),
        }
    }
}

/// Learn the cluster id on first contact and keep it; refuse another.
fn check_cluster(shared: &FollowerShared, theirs: u64) -> Result<(), String> {
    let ours = shared.cluster_id();
    if theirs == 0 {
        return Err(format!(
            "leader {} reports no cluster id",
            shared.config.leader
        ));
    }
    if ours == theirs {
        return Ok(());
    }
    if ours != 0 {
        return Err(format!(
            "leader {} belongs to cluster {theirs}, this follower to cluster {ours}; \
             the store is left untouched",
            shared.config.leader
        ));
    }
    shared
        .persist(&WriteBatch {
            cluster_id: Some(theirs),
            durable: true,
            ..Default::default()
        })
        .map_err(|e| format!("{e:#}"))?;
    shared.cluster_id.store(theirs, Ordering::Release);
    tracing::info!(follower = %shared.config.name, cluster_id = theirs, "learnt the cluster id from the leader");
    Ok(())
}

/// Carry out the policy's decision for one frame. Returns how the session
/// ends when the decision is to reconnect.
fn apply_frame(
    shared: &FollowerShared,
    frame: SyncRegionResponse,
    asked: u64,
) -> anyhow::Result<Option<Ended>> {
    let stats = &shared.stats;
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes
        .fetch_add(frame.encoded_len() as u64, Ordering::Relaxed);
    let header_error = frame.header.as_ref().and_then(|h| {
        let error = h
            .error
            .as_ref()
            .filter(|e| e.r#type != ErrorType::Ok as i32);
        match error {
            Some(e) => Some(e.message.clone()),
            None if h.cluster_id != shared.cluster_id() => Some(format!(
                "frame for cluster {}, not {}",
                h.cluster_id,
                shared.cluster_id()
            )),
            None => None,
        }
    });
    let count = frame.regions.len();
    let header = FrameHeader {
        error: header_error.is_some(),
        start_index: frame.start_index,
        region_count: u32::try_from(count).unwrap_or(u32::MAX),
    };
    let before = *shared.state.lock();
    let d = shared.policy.on_frame(before, header);

    // Readiness drops under the store's write lock, before the store changes,
    // so that no read ever sees a partial set (see `FollowerNode::readable`).
    let mut store = shared.store.write();
    if !d.state.ready {
        shared.ready.store(false, Ordering::Release);
    }
    if d.kind == FrameKind::SnapshotStart {
        let trigger = if asked == 0 {
            "requested"
        } else {
            "leader_routed"
        };
        *stats.full_syncs.lock().entry(trigger.into()).or_default() += 1;
        stats.snapshot_progress.store(0, Ordering::Relaxed);
        tracing::info!(
            follower = %shared.config.name, asked_index = asked, trigger,
            "full sync started: the leader sent a snapshot; the local store is replaced"
        );
    }
    if d.reset_store {
        store.clear();
        shared.persist(&WriteBatch {
            reset: true,
            complete: Some(false),
            next_index: Some(0),
            durable: true,
            ..Default::default()
        })?;
    }

    let mut batch = WriteBatch::default();
    let mut records = Vec::new();
    if let Some(from) = d.apply_from {
        let leaders = (frame.region_leaders.len() == count).then_some(&frame.region_leaders);
        let flows = (frame.region_stats.len() == count).then_some(&frame.region_stats);
        for (i, region) in frame.regions.iter().enumerate().skip(from as usize) {
            let leader = leaders.map(|l| l[i]).unwrap_or_default();
            let flow = flows.map(|s| s[i]).unwrap_or_default();
            match check_region(region) {
                Ok(()) => {
                    if let Outcome::Applied { removed } =
                        store.apply(region, leader.id, fingerprint(&leader, &flow))
                    {
                        for id in removed {
                            batch.delete(id);
                        }
                        let blob = store.encoded(region.id).expect("just applied");
                        batch.put_encoded(region.id, leader.id, blob);
                    }
                }
                Err(why) => {
                    tracing::warn!(region = region.id, reason = %why, "leader sent a malformed region; skipped")
                }
            }
            if d.record_history {
                records.push(Arc::new(Record {
                    region: region.clone(),
                    leader,
                    stats: flow,
                }));
            }
        }
        if matches!(d.kind, FrameKind::SnapshotStart | FrameKind::SnapshotData) {
            stats
                .snapshot_progress
                .fetch_add((count - from as usize) as u64, Ordering::Relaxed);
        }
    }
    if !records.is_empty() {
        let mut ring = shared.ring.write();
        let first = frame.start_index + u64::from(d.apply_from.unwrap_or(0));
        if ring.next_index() != first {
            // The ring starts where the store's index is; anything else means
            // the numbering would diverge from the leader's.
            *ring = HistoryRing::new(shared.config.history_capacity, first);
        }
        for r in records {
            ring.push(r);
        }
    }
    if let Some(claim) = d.claim_index {
        batch.next_index = Some(claim);
        batch.complete = Some(true);
        let mut last = shared.last_durable.lock();
        batch.durable =
            d.kind == FrameKind::Completion || last.elapsed() >= shared.config.durable_every;
        if batch.durable {
            *last = Instant::now();
        }
    }
    shared.persist(&batch)?;
    if d.kind == FrameKind::Completion {
        let claim = d.claim_index.unwrap_or(frame.start_index);
        *shared.ring.write() = HistoryRing::new(shared.config.history_capacity, claim);
        tracing::info!(
            follower = %shared.config.name, regions = store.len(), next_index = claim,
            digest = %store.digest().hex(), "full sync complete; follower is ready"
        );
    }
    drop(store);
    shared.set_state(d.state);
    Ok(d.reconnect.map(|reason| {
        Ended::new(
            reason.as_str(),
            header_error.unwrap_or_else(|| {
                format!(
                    "frame at {} with {count} regions while at {} ({})",
                    frame.start_index,
                    before.next_index,
                    before.phase.as_str()
                )
            }),
            true,
        )
    }))
}
