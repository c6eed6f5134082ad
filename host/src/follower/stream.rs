//! The follower's side of `SyncRegions`: connect, check the cluster, ask for
//! the index the policy chooses, carry out the policy's decision for every
//! frame, and reconnect with the policy's backoff after any end of stream.
//!
//! Every end of a stream is logged with its reason: a follower that stays
//! behind without saying so was PD #10666's failure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{GetMembersRequest, RequestHeader};
use tonic::Code;
use tonic::transport::Endpoint;

use super::FollowerShared;
use crate::policy_runtime::{ConnectPlan, ReconnectReason};
use crate::storage::WriteBatch;
use crate::wire::{
    CAPABILITIES_HEADER, LINEAGE_HEADER, MAX_MESSAGE_BYTES, ROUTE_HEADER, TERM_HEADER,
};

/// Why a session with the leader ended: the policy's reconnect reasons, and
/// the host's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The policy decided to reconnect after a frame.
    Policy(ReconnectReason),
    /// The leader URL does not parse.
    BadLeaderUrl,
    /// No connection to the leader.
    ConnectFailed,
    /// The leader refused GetMembers.
    LeaderRefused,
    /// The leader belongs to another cluster; the store is left untouched.
    ClusterMismatch,
    /// The leader refused the SyncRegions request.
    SyncRefused,
    /// Three keepalive intervals without a frame.
    KeepaliveSilence,
    /// The leader ended the stream with RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// The stream failed with another gRPC status.
    StreamError,
    /// The leader closed the stream.
    Eof,
    /// A frame could not be stored.
    StoreError,
    /// Another node leads now (etcd discovery re-pointed the follower).
    LeaderChanged,
}

impl EndReason {
    /// Stable label for logs, metrics and status (`reconnects_<label>`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Policy(reason) => reason.as_str(),
            EndReason::BadLeaderUrl => "bad_leader_url",
            EndReason::ConnectFailed => "connect_failed",
            EndReason::LeaderRefused => "leader_refused",
            EndReason::ClusterMismatch => "cluster_mismatch",
            EndReason::SyncRefused => "sync_refused",
            EndReason::KeepaliveSilence => "keepalive_silence",
            EndReason::ResourceExhausted => "resource_exhausted",
            EndReason::StreamError => "stream_error",
            EndReason::Eof => "eof",
            EndReason::StoreError => "store_error",
            EndReason::LeaderChanged => "leader_changed",
        }
    }
}

/// How a session with the leader ended.
#[derive(Debug)]
pub struct Ended {
    /// Why.
    pub reason: EndReason,
    /// What happened, for the log line.
    pub detail: String,
    /// The session received at least one frame (the backoff starts over).
    pub progressed: bool,
}

impl Ended {
    fn new(reason: EndReason, detail: impl Into<String>, progressed: bool) -> Self {
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
    let mut backoff = super::session::Backoff::new(
        xxhash_rust::xxh3::xxh3_64(shared.config.name.as_bytes())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
    );
    let mut leader = shared.leader.subscribe();
    loop {
        // No leader known (etcd has none right now): wait for one.
        let url = tokio::select! {
            url = leader.wait_for(|url| !url.is_empty()) => match url {
                Ok(url) => url.clone(),
                Err(_) => return,
            },
            _ = stopping.wait_for(|s| *s) => return,
        };
        leader.mark_unchanged();
        let plan = shared.begin_stream();
        shared.stats.connects.fetch_add(1, Ordering::Relaxed);
        let ended = tokio::select! {
            ended = session(&shared, &plan, &url) => Some(ended),
            _ = leader.changed() => Some(Ended::new(
                EndReason::LeaderChanged,
                format!("the leader is now {:?}", *leader.borrow()),
                true,
            )),
            _ = stopping.wait_for(|s| *s) => None,
        };
        // A dropped session's apply goes on in its blocking task: it ends
        // before the next session starts (or the stop is honoured), so that
        // its state, facts and store are never written beside the next
        // session's.
        drop(shared.applies_done().await);
        let Some(ended) = ended else {
            return;
        };
        shared.in_session.send_replace(false);
        *shared
            .stats
            .reconnects
            .lock()
            .entry(ended.reason.as_str())
            .or_default() += 1;
        let delay = backoff.after(&shared.policy, ended.progressed);
        let state = shared.state();
        // A new leader is dialled at once: nothing failed.
        let delay = if ended.reason == EndReason::LeaderChanged {
            Duration::ZERO
        } else {
            delay
        };
        tracing::warn!(
            follower = %shared.config.name, leader = %url,
            reason = ended.reason.as_str(), detail = %ended.detail, next_index = state.next_index,
            ready = state.ready, retry_in = ?delay, "sync stream ended; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = leader.changed() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

async fn session(shared: &Arc<FollowerShared>, plan: &ConnectPlan, leader: &str) -> Ended {
    let config = &shared.config;
    let start_index = plan.start_index;
    let endpoint = match Endpoint::from_shared(leader.to_string()).and_then(|e| match &config.tls {
        Some(tls) => e.tls_config(tls.client()),
        None => Ok(e),
    }) {
        Ok(e) => e
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20)),
        Err(e) => {
            return Ended::new(EndReason::BadLeaderUrl, format!("{leader}: {e}"), false);
        }
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Ended::new(EndReason::ConnectFailed, format!("{leader}: {e}"), false);
        }
    };
    let mut client = PdClient::new(channel.clone())
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
        Err(status) => return Ended::new(EndReason::LeaderRefused, status.to_string(), false),
    };
    if let Err(why) = check_cluster(shared, leader, theirs) {
        tracing::error!(follower = %config.name, reason = %why, "refusing to sync");
        shared.set_refusal(Some(why.clone()));
        return Ended::new(EndReason::ClusterMismatch, why, false);
    }
    shared.set_refusal(None);

    let hello = shared.hello(plan, theirs);
    let caps = hello.caps;
    tracing::info!(
        follower = %config.name, %leader, start_index, last_term = ?caps.last_term,
        capabilities = %caps.to_header(), "asking the leader to sync"
    );
    let mut call = tonic::Request::new(tokio_stream::iter(vec![hello.request]));
    // What this follower takes beyond PD's protocol travels in metadata, so
    // that the request's body is PD's byte for byte.
    if let Some(value) = caps.any().then(|| caps.to_header().parse().ok()).flatten() {
        call.metadata_mut().insert(CAPABILITIES_HEADER, value);
    }
    if let Some(value) = caps.last_term.header().and_then(|t| t.parse().ok()) {
        call.metadata_mut().insert(TERM_HEADER, value);
    }
    let (announced, mut frames) = match super::received::sync_regions(channel, call).await {
        Ok(r) => {
            shared.in_session.send_replace(true);
            let header = |name| r.metadata().get(name).and_then(|v| v.to_str().ok());
            match shared.accepted(header(ROUTE_HEADER), header(LINEAGE_HEADER)) {
                Ok(announced) => (announced, r.into_inner()),
                Err(e) => return Ended::new(EndReason::StoreError, crate::error_chain(&e), false),
            }
        }
        Err(status) => return Ended::new(EndReason::SyncRefused, status.to_string(), false),
    };
    let silence = config.keepalive * 3;
    let mut progressed = false;
    // The next frames are received and decoded while this one is applied,
    // so that the two overlap on a second core; few are read ahead, so
    // memory stays bounded (a frame is at most a few MiB).
    let (ahead, mut received) = tokio::sync::mpsc::channel(READ_AHEAD);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let next = frames.message().await;
            let last = !matches!(next, Ok(Some(_)));
            if ahead.send(next).await.is_err() || last {
                return;
            }
        }
    }));
    loop {
        let frame = match tokio::time::timeout(silence, received.recv()).await {
            Err(_) => {
                return Ended::new(
                    EndReason::KeepaliveSilence,
                    format!("no frame for {silence:?} (3 keepalive intervals)"),
                    progressed,
                );
            }
            Ok(Some(Err(status))) if status.code() == Code::ResourceExhausted => {
                return Ended::new(EndReason::ResourceExhausted, status.message(), progressed);
            }
            Ok(Some(Err(status))) => {
                return Ended::new(EndReason::StreamError, status.to_string(), progressed);
            }
            Ok(Some(Ok(None)) | None) => {
                return Ended::new(EndReason::Eof, "the leader closed the stream", progressed);
            }
            Ok(Some(Ok(Some(frame)))) => frame,
        };
        progressed = true;
        let worker = shared.clone();
        let gate = shared.enter_apply().await;
        let applied = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            worker.receive(frame, start_index, announced)
        })
        .await;
        match applied {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(ended))) => return ended,
            Ok(Err(e)) => {
                return Ended::new(EndReason::StoreError, crate::error_chain(&e), progressed);
            }
            Err(e) => return Ended::new(EndReason::StoreError, e.to_string(), progressed),
        }
    }
}

/// Frames received ahead of the one being applied.
const READ_AHEAD: usize = 2;

/// Ends the frame reader with the session that started it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Learn the cluster id on first contact and keep it; refuse another.
fn check_cluster(shared: &FollowerShared, leader: &str, theirs: u64) -> Result<(), String> {
    let ours = shared.cluster_id();
    if theirs == 0 {
        return Err(format!("leader {leader} reports no cluster id"));
    }
    if ours != 0 && ours != theirs {
        return Err(format!(
            "leader {leader} belongs to cluster {theirs}, this follower to cluster {ours}; \
             the store is left untouched"
        ));
    }
    // Kept the first time it is used, learnt or given by --cluster-id, so
    // that a later start without the flag cannot mix two clusters' regions.
    if !shared.cluster_kept.load(Ordering::Acquire) {
        shared
            .persist(&WriteBatch {
                cluster_id: Some(theirs),
                durable: true,
                ..Default::default()
            })
            .map_err(|e| crate::error_chain(&e))?;
        shared.cluster_kept.store(true, Ordering::Release);
        let how = if ours == 0 {
            "learnt from the leader"
        } else {
            "given by --cluster-id"
        };
        tracing::info!(follower = %shared.config.name, cluster_id = theirs, how, "cluster id kept");
    }
    shared.cluster_id.store(theirs, Ordering::Release);
    Ok(())
}
