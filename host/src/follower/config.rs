//! A follower's tunables; the CLI fills them from its flags
//! (docs/protocol.md §6), tests and benchmarks set them directly.

use std::path::PathBuf;
use std::time::Duration;

/// Tunables of a follower.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The leader's gRPC URL.
    pub leader: String,
    /// Store directory; `None` for a cache-only follower (`--memory-only`).
    pub data_dir: Option<PathBuf>,
    /// Expected cluster id (`--cluster-id`); otherwise learnt and kept.
    pub cluster_id: Option<u64>,
    /// Name shown to the leader and in logs.
    pub name: String,
    /// Records kept in the follower's own history ring.
    pub history_capacity: usize,
    /// Encoded bytes kept in that ring (0: no bound).
    pub history_bytes: usize,
    /// The leader's keepalive interval; three without a frame end the stream.
    pub keepalive: Duration,
    /// Bound on connecting to the leader.
    pub connect_timeout: Duration,
    /// Longest time between durable commits of history frames. Commits in
    /// between may be lost in a crash, never torn: the store then resumes
    /// from an older index and replays. Above zero, history is written
    /// behind the apply (`writer`); zero makes every history frame durable
    /// before the next one is applied.
    pub durable_every: Duration,
    /// TLS for its read service and for dialling the leader (an `https://`
    /// URL); plain when `None`.
    pub tls: Option<crate::tls::Tls>,
    /// What it announces beyond PD's protocol; less than its policy asks
    /// for only to stand in for PD's own followers and older ones.
    pub announce: Announce,
    /// A sync's data and history are written on a thread of their own,
    /// behind the apply. Off, every batch is written in line: one thread
    /// does everything (the simulator).
    pub write_behind: bool,
}

/// What a follower announces to the leader beyond PD's protocol
/// (docs/protocol.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Announce {
    /// What its policy asks for.
    #[default]
    Policy,
    /// Deltas as its policy asks, but no `verify`: a completion comes
    /// without a digest to check the set against.
    NoVerify,
    /// Nothing: PD's protocol, as PD's own follower speaks it.
    Nothing,
}

impl FollowerConfig {
    /// Defaults for a follower of `leader`, durable in `data_dir` if given.
    pub fn new(leader: impl Into<String>, data_dir: Option<PathBuf>) -> Self {
        FollowerConfig {
            leader: leader.into(),
            data_dir,
            cluster_id: None,
            name: "follower".into(),
            history_capacity: 10_000,
            history_bytes: 64 << 20,
            keepalive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            durable_every: Duration::from_millis(500),
            tls: None,
            announce: Announce::Policy,
            write_behind: true,
        }
    }
}
