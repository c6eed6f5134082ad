//! Plain Rust mirrors of the records and variants in `wit/policy.wit`.
//!
//! They exist so that the decisions can be written, tested and linked without
//! any binding generator; `component.rs` (guest) and the host's Wasm runtime
//! convert between these and their generated twins. `wit/policy.wit` is the
//! contract and says more about each field.

use alloc::string::String;

/// Who a policy is, for logs, status and swaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Short name, e.g. "default".
    pub name: String,
    /// The policy's own version (not the contract's).
    pub version: String,
}

/// The leader's history ring at the moment of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingView {
    /// Oldest readable record index.
    pub first_index: u64,
    /// Index the next record will get.
    pub next_index: u64,
    /// Most records the ring can hold.
    pub capacity: u64,
}

/// Why the leader routed a request where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteReason {
    /// The follower asked for the next index.
    UpToDate,
    /// The follower's index lies inside the ring.
    InRing,
    /// The follower has nothing (index 0).
    ZeroIndex,
    /// The follower's index was overwritten in the ring.
    BehindRing,
    /// The follower claims an index the leader never reached.
    AheadOfLeader,
    /// The index is in the ring, but the policy refuses partial replays.
    GapRefused,
}

impl RouteReason {
    /// Every reason, for tests and tables that must cover them all.
    pub const ALL: [RouteReason; 6] = [
        RouteReason::UpToDate,
        RouteReason::InRing,
        RouteReason::ZeroIndex,
        RouteReason::BehindRing,
        RouteReason::AheadOfLeader,
        RouteReason::GapRefused,
    ];

    /// Stable label for logs, metrics and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::UpToDate => "up_to_date",
            RouteReason::InRing => "in_ring",
            RouteReason::ZeroIndex => "zero_index",
            RouteReason::BehindRing => "behind_ring",
            RouteReason::AheadOfLeader => "ahead_of_leader",
            RouteReason::GapRefused => "gap_refused",
        }
    }
}

/// What the leader does with a follower's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    /// One empty frame at the next index, then live.
    UpToDate,
    /// Replay history from this index, then live.
    History(u64),
    /// Snapshot, catch-up, completion, then live.
    FullSync,
}

/// A routing decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// What to do.
    pub action: RouteAction,
    /// Why.
    pub reason: RouteReason,
}

/// Where a follower stream stands on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPhase {
    /// Replaying records it missed (history, or a full sync's catch-up).
    CatchingUp,
    /// Caught up once; forwarding new records as they come.
    Live,
}

/// One follower stream's view of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamView {
    /// Phase of the stream.
    pub phase: StreamPhase,
    /// Index of the next record this stream must send.
    pub cursor: u64,
    /// The ring now.
    pub ring: RingView,
}

/// A run of consecutive history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRange {
    /// Index of the first record.
    pub start: u64,
    /// Number of records.
    pub count: u32,
}

/// What a follower stream sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStep {
    /// Send these records as one frame (the host may cut it shorter).
    Records(RecordRange),
    /// Caught up: one empty frame at this index, then live.
    CaughtUp(u64),
    /// Live and nothing new: wait for records or the keepalive.
    Idle,
    /// Records the stream needs are gone: end it with RESOURCE_EXHAUSTED.
    Exhausted,
}

/// Bounds of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Most regions (or records) in a frame.
    pub max_regions: u32,
    /// Most encoded bytes of regions in a frame.
    pub max_bytes: u64,
}

/// The follower's phase for the current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerPhase {
    /// Connected, no frame seen yet on this stream.
    Awaiting,
    /// Receiving a full sync; not ready.
    Snapshot,
    /// Applying history and live records.
    Streaming,
}

impl FollowerPhase {
    /// Stable label for logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowerPhase::Awaiting => "awaiting",
            FollowerPhase::Snapshot => "snapshot",
            FollowerPhase::Streaming => "streaming",
        }
    }
}

/// The follower's sync state, owned by the host and passed in whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }
}

/// What the follower learnt of a received frame before touching its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The header carries an error.
    pub error: bool,
    /// The frame's start_index.
    pub start_index: u64,
    /// Number of regions in the frame.
    pub region_count: u32,
}

/// What a received frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An error header: change nothing.
    Error,
    /// First frame of a full sync.
    SnapshotStart,
    /// Further snapshot or catch-up regions.
    SnapshotData,
    /// End of a full sync: the index is the frame's start_index.
    Completion,
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
    pub const ALL: [FrameKind; 8] = [
        FrameKind::Error,
        FrameKind::SnapshotStart,
        FrameKind::SnapshotData,
        FrameKind::Completion,
        FrameKind::History,
        FrameKind::Duplicate,
        FrameKind::Keepalive,
        FrameKind::Unexpected,
    ];
}

/// Why the follower abandons the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// The leader sent an error header.
    ErrorHeader,
    /// Records are missing between the follower's index and the frame.
    Gap,
    /// The frame does not fit the phase.
    UnexpectedFrame,
}

impl ReconnectReason {
    /// Every reason, for tests and tables that must cover them all.
    pub const ALL: [ReconnectReason; 3] = [
        ReconnectReason::ErrorHeader,
        ReconnectReason::Gap,
        ReconnectReason::UnexpectedFrame,
    ];

    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::ErrorHeader => "error_header",
            ReconnectReason::Gap => "gap",
            ReconnectReason::UnexpectedFrame => "unexpected_frame",
        }
    }
}

/// What the follower does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecision {
    /// The follower's state after the frame.
    pub state: FollowerState,
    /// What the frame was.
    pub kind: FrameKind,
    /// Clear cache and durable storage (and mark it incomplete) first.
    pub reset_store: bool,
    /// Apply the frame's regions from this offset on; `None` applies nothing.
    pub apply_from: Option<u32>,
    /// Record the applied regions in the follower's history ring.
    pub record_history: bool,
    /// Persist: the store now holds a complete set for this index.
    pub claim_index: Option<u64>,
    /// Abandon the stream and reconnect.
    pub reconnect: Option<ReconnectReason>,
}

/// What the follower sends when it (re)connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectPlan {
    /// start_index of the SyncRegionRequest.
    pub start_index: u64,
    /// The state for the new stream.
    pub state: FollowerState,
}
