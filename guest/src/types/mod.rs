//! Plain Rust mirrors of the records and variants in `wit/policy.wit`.
//!
//! They exist so that the decisions can be written, tested and linked without
//! any binding generator; `component.rs` (guest) and the host's Wasm runtime
//! convert between these and their generated twins. `wit/policy.wit` is the
//! contract and says more about each field.

use alloc::string::String;

/// Who a policy is, for logs, status and swaps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct PolicyInfo {
    /// Short name, e.g. "default".
    pub name: String,
    /// The policy's own version (not the contract's).
    pub version: String,
}

/// The leader's history ring at the moment of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct RingView {
    /// Oldest readable record index.
    pub first_index: u64,
    /// Index the next record will get.
    pub next_index: u64,
    /// Most records the ring can hold.
    pub capacity: u64,
    /// Oldest index from which the leader's store can name every region
    /// changed since (0: no delta is possible).
    pub delta_floor: u64,
}

impl RingView {
    /// Can a delta from `request.start_index` be sent? The follower must take
    /// one, and the leader's store must name every region changed since that
    /// index, which must be one it reached. The routing and its invariant
    /// both ask this, so a policy and the host agree on it by construction.
    pub fn takes_delta(&self, request: SyncRequest) -> bool {
        let from = request.start_index;
        request.can_delta
            && from != 0
            && self.delta_floor != 0
            && self.delta_floor <= from
            && from < self.next_index
    }
}

/// What a follower asked for when it opened a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct SyncRequest {
    /// The request's start_index.
    pub start_index: u64,
    /// The follower announced that it takes delta syncs.
    pub can_delta: bool,
    /// The follower is part-way through a delta from start_index.
    pub must_delta: bool,
}

/// Why the leader routed a request where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
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
    /// The follower must finish a delta it began from this index.
    DeltaResumed,
}

impl RouteReason {
    /// Every reason, for tests and tables that must cover them all.
    pub const ALL: [RouteReason; 7] = [
        RouteReason::UpToDate,
        RouteReason::InRing,
        RouteReason::ZeroIndex,
        RouteReason::BehindRing,
        RouteReason::AheadOfLeader,
        RouteReason::GapRefused,
        RouteReason::DeltaResumed,
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
            RouteReason::DeltaResumed => "delta_resumed",
        }
    }
}

/// What the leader does with a follower's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "tag", content = "val", rename_all = "kebab-case")
)]
pub enum RouteAction {
    /// One empty frame at the next index, then live.
    UpToDate,
    /// Replay history from this index, then live.
    History(u64),
    /// Snapshot, catch-up, completion, then live.
    FullSync,
    /// Every region changed since this index, a completion, then live.
    Delta(u64),
}

/// A routing decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Routing {
    /// What to do.
    pub action: RouteAction,
    /// Why.
    pub reason: RouteReason,
}

/// Where a follower stream stands on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum StreamPhase {
    /// Replaying records it missed (history, or a full sync's catch-up).
    CatchingUp,
    /// Caught up once; forwarding new records as they come.
    Live,
}

/// One follower stream's view of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
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
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct RecordRange {
    /// Index of the first record.
    pub start: u64,
    /// Number of records.
    pub count: u32,
}

/// What a follower stream sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "tag", content = "val", rename_all = "kebab-case")
)]
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

/// A catch-up pass of a full or delta sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct CatchUpView {
    /// Passes done so far in this sync.
    pub passes: u32,
    /// Changes made since the current mark.
    pub pending: u64,
}

/// What the next catch-up pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum CatchUpStep {
    /// Send what changed since the mark without holding the intake off.
    AnotherPass,
    /// Take what is left consistently at one index, and complete there.
    FinalPass,
}

/// Bounds of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct FrameLimits {
    /// Most regions (or records) in a frame.
    pub max_regions: u32,
    /// Most encoded bytes of regions in a frame.
    pub max_bytes: u64,
}

mod follower;

pub use follower::*;
