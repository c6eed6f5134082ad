//! The follower's side of the contract: its state, what it learns of a frame,
//! and what it decides.

/// The follower's phase for the current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum FollowerPhase {
    /// Connected, no frame seen yet on this stream.
    Awaiting,
    /// Receiving a full sync; not ready.
    Snapshot,
    /// Applying history and live records.
    Streaming,
    /// Receiving a delta sync; not ready.
    Delta,
}

impl FollowerPhase {
    /// Stable label for logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowerPhase::Awaiting => "awaiting",
            FollowerPhase::Snapshot => "snapshot",
            FollowerPhase::Streaming => "streaming",
            FollowerPhase::Delta => "delta",
        }
    }
}

/// The follower's sync state, owned by the host and passed in whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct FollowerState {
    /// Phase on the current stream.
    pub phase: FollowerPhase,
    /// Index of the next record the follower expects; what it persists.
    pub next_index: u64,
    /// Regions received in the current snapshot.
    pub snapshot_regions: u64,
    /// Local regions form a complete set for `next_index`.
    pub complete: bool,
    /// Reads may be served.
    pub ready: bool,
    /// Ask for a full sync at the next connect even if complete.
    pub force_full_sync: bool,
    /// Incomplete only because a delta from `next_index` was under way.
    pub resumable: bool,
}

impl FollowerState {
    /// A follower that just opened its store: it resumes from the stored
    /// index if the store says it is complete, and is not ready yet.
    pub fn opened(next_index: u64, complete: bool) -> Self {
        FollowerState {
            phase: FollowerPhase::Awaiting,
            next_index,
            snapshot_regions: 0,
            complete,
            ready: false,
            force_full_sync: false,
            resumable: false,
        }
    }
}

/// What the follower learnt of a received frame before touching its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct FrameHeader {
    /// The header carries an error.
    pub error: bool,
    /// The frame's start_index.
    pub start_index: u64,
    /// Number of regions in the frame.
    pub region_count: u32,
    /// What the leader announced for this stream.
    pub announced: AnnouncedSync,
    /// The frame's digest against the follower's store as it is now.
    pub digest: DigestCheck,
}

impl FrameHeader {
    /// A frame of a stream that announced nothing, without a digest: what a
    /// PD leader sends.
    pub const fn plain(error: bool, start_index: u64, region_count: u32) -> Self {
        FrameHeader {
            error,
            start_index,
            region_count,
            announced: AnnouncedSync::None,
            digest: DigestCheck::Absent,
        }
    }
}

/// The kind of sync the leader announced for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum AnnouncedSync {
    /// Nothing announced: PD's protocol.
    None,
    /// A full sync.
    Full,
    /// A delta sync.
    Delta,
    /// History replay or up to date.
    History,
}

impl AnnouncedSync {
    /// Every case, for tests that must cover them all.
    pub const ALL: [AnnouncedSync; 4] = [
        AnnouncedSync::None,
        AnnouncedSync::Full,
        AnnouncedSync::Delta,
        AnnouncedSync::History,
    ];
}

/// How a completion's digest compares with the follower's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum DigestCheck {
    /// No digest in the frame.
    Absent,
    /// Equal.
    Matched,
    /// Different.
    Mismatched,
}

impl DigestCheck {
    /// Every case, for tests that must cover them all.
    pub const ALL: [DigestCheck; 3] = [
        DigestCheck::Absent,
        DigestCheck::Matched,
        DigestCheck::Mismatched,
    ];
}

/// What a received frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum FrameKind {
    /// An error header: change nothing.
    Error,
    /// First frame of a full sync.
    SnapshotStart,
    /// Further snapshot or catch-up regions.
    SnapshotData,
    /// End of a full or delta sync: the index is the frame's start_index.
    Completion,
    /// First frame of a delta sync.
    DeltaStart,
    /// Further regions of a delta sync.
    DeltaData,
    /// A completion whose digest differs from the follower's set.
    VerifyFailed,
    /// History or live records.
    History,
    /// Records the follower already has.
    Duplicate,
    /// An empty frame at the follower's index.
    Keepalive,
    /// A frame that does not fit the follower's state.
    Unexpected,
}

impl FrameKind {
    /// Every kind, for tests and tables that must cover them all.
    pub const ALL: [FrameKind; 11] = [
        FrameKind::Error,
        FrameKind::SnapshotStart,
        FrameKind::SnapshotData,
        FrameKind::Completion,
        FrameKind::DeltaStart,
        FrameKind::DeltaData,
        FrameKind::VerifyFailed,
        FrameKind::History,
        FrameKind::Duplicate,
        FrameKind::Keepalive,
        FrameKind::Unexpected,
    ];
}

/// Why the follower abandons the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ReconnectReason {
    /// The leader sent an error header.
    ErrorHeader,
    /// Records are missing between the follower's index and the frame.
    Gap,
    /// The frame does not fit the phase.
    UnexpectedFrame,
    /// The leader's digest at completion differs from the follower's.
    VerifyFailed,
}

impl ReconnectReason {
    /// Every reason, for tests and tables that must cover them all.
    pub const ALL: [ReconnectReason; 4] = [
        ReconnectReason::ErrorHeader,
        ReconnectReason::Gap,
        ReconnectReason::UnexpectedFrame,
        ReconnectReason::VerifyFailed,
    ];

    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::ErrorHeader => "error_header",
            ReconnectReason::Gap => "gap",
            ReconnectReason::UnexpectedFrame => "unexpected_frame",
            ReconnectReason::VerifyFailed => "verify_failed",
        }
    }
}

/// What the follower does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct FrameDecision {
    /// The follower's state after the frame.
    pub state: FollowerState,
    /// What the frame was.
    pub kind: FrameKind,
    /// Clear cache and durable storage (and mark it incomplete) first.
    pub reset_store: bool,
    /// Mark the store incomplete but resumable, keeping its regions, first.
    pub begin_delta: bool,
    /// Apply the frame's regions from this offset on; `None` applies nothing.
    pub apply_from: Option<u32>,
    /// Record the applied regions in the follower's history ring.
    pub record_history: bool,
    /// Persist: the store now holds a complete set for this index.
    pub claim_index: Option<u64>,
    /// Abandon the stream and reconnect.
    pub reconnect: Option<ReconnectReason>,
}

impl FrameDecision {
    /// A decision that changes nothing but the state (and names the frame's
    /// kind).
    pub fn keep(state: FollowerState, kind: FrameKind) -> Self {
        FrameDecision {
            state,
            kind,
            reset_store: false,
            begin_delta: false,
            apply_from: None,
            record_history: false,
            claim_index: None,
            reconnect: None,
        }
    }
}

/// What the follower sends when it (re)connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct ConnectPlan {
    /// start_index of the SyncRegionRequest.
    pub start_index: u64,
    /// The state for the new stream.
    pub state: FollowerState,
    /// Announce that this follower takes delta syncs.
    pub ask_delta: bool,
    /// Announce that this follower checks completions against the digest.
    pub ask_verify: bool,
}
