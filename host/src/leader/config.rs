//! A leader's tunables; the CLI fills them from its flags
//! (docs/protocol.md §6), tests and benchmarks set them directly.

use std::path::PathBuf;
use std::time::Duration;

/// How long a SyncRegions stream may take to send its request, unless set.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Tunables of a leader.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Directory of the leader's durable store.
    pub data_dir: PathBuf,
    /// Cluster id from the command line; a new leader makes one without it.
    pub cluster_id: Option<u64>,
    /// Records kept in the history ring.
    pub history_capacity: usize,
    /// Encoded bytes kept in the history ring (0: no bound).
    pub history_bytes: usize,
    /// Flow (bytes written and read) makes a record only when it changes
    /// after rounding to this many digits (PD's `flow-round-by-digit`).
    pub flow_round_digits: u32,
    /// Name shown to followers and in logs.
    pub name: String,
    /// Bound on one frame's send to one follower (PD: 10 s).
    pub send_timeout: Duration,
    /// Empty frame on an idle live stream (docs/protocol.md §2: 10 s).
    pub keepalive: Duration,
    /// Bound on telling every stream that the leader stops.
    pub shutdown_timeout: Duration,
    /// Full-sync snapshot rate limit in bytes per second (none: unlimited).
    pub full_sync_rate: Option<u64>,
    /// Heartbeats queued for the intake task before senders wait.
    pub intake_queue: usize,
    /// Most heartbeats applied in one transaction.
    pub intake_batch: usize,
    /// TLS for the gRPC service (mutual when it has a CA); plain when `None`.
    pub tls: Option<crate::tls::Tls>,
    /// The etcd term this leadership won (`crate::lineage`); `None` for a
    /// static leader.
    pub term: Option<u64>,
    /// Changes are accepted only while it holds (the etcd lease; a static
    /// leader's never closes).
    pub fence: std::sync::Arc<super::Fence>,
    /// A store that is not a complete set (a follower's, left mid-sync) is
    /// cleared before leading instead of refused: for a node elected to
    /// lead a cluster that never had a leader, as an empty node
    /// (`ha::supervisor`). Never for `regionsync leader`.
    pub clear_incomplete: bool,
    /// SyncRegions streams served at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub max_sync_streams: usize,
    /// RegionHeartbeat streams open at once; more are refused.
    pub max_heartbeat_streams: usize,
    /// A SyncRegions stream must send its request within this.
    pub first_request_timeout: Duration,
    /// Told the leader's digest at every index it publishes: an audit of
    /// what each index names, for checks that judge a follower's claims
    /// (the fault scenarios). `None` costs nothing.
    pub digest_tap: Option<DigestTap>,
}

/// A listener for `(next_index, digest)`: the set's digest once the records
/// below `next_index` are applied, for every index of a published batch,
/// called after the batch is published (so never for an index a failed
/// commit gave back).
#[derive(Clone)]
pub struct DigestTap(pub std::sync::Arc<TapFn>);

/// What a [`DigestTap`] calls with each published batch's digests.
pub type TapFn = dyn Fn(&[(u64, u128)]) + Send + Sync;

impl std::fmt::Debug for DigestTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestTap")
    }
}

impl LeaderConfig {
    /// Defaults for a leader keeping its store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LeaderConfig {
            data_dir: data_dir.into(),
            cluster_id: None,
            history_capacity: 10_000,
            history_bytes: 64 << 20,
            flow_round_digits: 3,
            name: "leader".into(),
            send_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(3),
            full_sync_rate: None,
            intake_queue: 16_384,
            intake_batch: 4_096,
            tls: None,
            term: None,
            fence: std::sync::Arc::new(super::Fence::open()),
            clear_incomplete: false,
            max_sync_streams: 1_024,
            max_heartbeat_streams: 4_096,
            first_request_timeout: FIRST_REQUEST_TIMEOUT,
            digest_tap: None,
        }
    }
}
