//! Plain Rust mirrors of the records and variants in `wit/policy.wit`.
//!
//! They exist so that the decisions can be written, tested and linked without
//! any binding generator; `component.rs` (guest) and the host's Wasm runtime
//! convert between these and their generated twins. Field docs live in the WIT.

use alloc::string::String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingView {
    pub first_index: u64,
    pub next_index: u64,
    pub capacity: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteReason {
    UpToDate,
    InRing,
    ZeroIndex,
    BehindRing,
    AheadOfLeader,
    GapRefused,
}

impl RouteReason {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    UpToDate,
    History(u64),
    FullSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    pub action: RouteAction,
    pub reason: RouteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPhase {
    CatchingUp,
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamView {
    pub phase: StreamPhase,
    pub cursor: u64,
    pub ring: RingView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRange {
    pub start: u64,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStep {
    Records(RecordRange),
    CaughtUp(u64),
    Idle,
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_regions: u32,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerPhase {
    Awaiting,
    Snapshot,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    pub phase: FollowerPhase,
    pub next_index: u64,
    pub snapshot_regions: u64,
    pub complete: bool,
    pub ready: bool,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub error: bool,
    pub start_index: u64,
    pub region_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Error,
    SnapshotStart,
    SnapshotData,
    Completion,
    History,
    Duplicate,
    Keepalive,
    Unexpected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    ErrorHeader,
    Gap,
    UnexpectedFrame,
}

impl ReconnectReason {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::ErrorHeader => "error_header",
            ReconnectReason::Gap => "gap",
            ReconnectReason::UnexpectedFrame => "unexpected_frame",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecision {
    pub state: FollowerState,
    pub kind: FrameKind,
    pub reset_store: bool,
    pub apply_from: Option<u32>,
    pub record_history: bool,
    pub claim_index: Option<u64>,
    pub reconnect: Option<ReconnectReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectPlan {
    pub start_index: u64,
    pub state: FollowerState,
}

/// Conversions between these types and the ones a WIT binding generator makes
/// from `wit/policy.wit` (wit-bindgen in the guest, wasmtime's `bindgen!` in
/// the host). Both generators name types, fields and cases after the WIT, so
/// one macro serves both sides: `wit_conversions!(path::to::decisions);`.
#[macro_export]
macro_rules! wit_conversions {
    ($($wit:ident)::+) => {
        const _: () = {
            use $($wit)::+ as wit;
            use $crate as plain;
            $crate::__wit_record!(wit, plain, PolicyInfo { name, version });
            $crate::__wit_record!(wit, plain, RingView { first_index, next_index, capacity });
            $crate::__wit_record!(wit, plain, Routing { action, reason });
            $crate::__wit_record!(wit, plain, StreamView { phase, cursor, ring });
            $crate::__wit_record!(wit, plain, RecordRange { start, count });
            $crate::__wit_record!(wit, plain, FrameLimits { max_regions, max_bytes });
            $crate::__wit_record!(wit, plain, FollowerState {
                phase, next_index, snapshot_regions, complete, ready, force_full_sync
            });
            $crate::__wit_record!(wit, plain, FrameHeader { error, start_index, region_count });
            $crate::__wit_record!(wit, plain, ConnectPlan { start_index, state });
            $crate::__wit_enum!(wit, plain, RouteReason {
                UpToDate, InRing, ZeroIndex, BehindRing, AheadOfLeader, GapRefused
            });
            $crate::__wit_enum!(wit, plain, StreamPhase { CatchingUp, Live });
            $crate::__wit_enum!(wit, plain, FollowerPhase { Awaiting, Snapshot, Streaming });
            $crate::__wit_enum!(wit, plain, FrameKind {
                Error, SnapshotStart, SnapshotData, Completion, History, Duplicate, Keepalive,
                Unexpected
            });
            $crate::__wit_enum!(wit, plain, ReconnectReason { ErrorHeader, Gap, UnexpectedFrame });
            $crate::__wit_variant!(wit, plain, RouteAction { UpToDate, FullSync } { History });
            $crate::__wit_variant!(wit, plain, SendStep { Idle, Exhausted } { Records, CaughtUp });

            impl From<wit::FrameDecision> for plain::FrameDecision {
                fn from(d: wit::FrameDecision) -> Self {
                    plain::FrameDecision {
                        state: d.state.into(),
                        kind: d.kind.into(),
                        reset_store: d.reset_store,
                        apply_from: d.apply_from,
                        record_history: d.record_history,
                        claim_index: d.claim_index,
                        reconnect: d.reconnect.map(Into::into),
                    }
                }
            }
            impl From<plain::FrameDecision> for wit::FrameDecision {
                fn from(d: plain::FrameDecision) -> Self {
                    wit::FrameDecision {
                        state: d.state.into(),
                        kind: d.kind.into(),
                        reset_store: d.reset_store,
                        apply_from: d.apply_from,
                        record_history: d.record_history,
                        claim_index: d.claim_index,
                        reconnect: d.reconnect.map(Into::into),
                    }
                }
            }
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wit_record {
    ($wit:ident, $plain:ident, $ty:ident { $($field:ident),* $(,)? }) => {
        impl From<$wit::$ty> for $plain::$ty {
            fn from(x: $wit::$ty) -> Self {
                $plain::$ty { $($field: x.$field.into()),* }
            }
        }
        impl From<$plain::$ty> for $wit::$ty {
            fn from(x: $plain::$ty) -> Self {
                $wit::$ty { $($field: x.$field.into()),* }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wit_enum {
    ($wit:ident, $plain:ident, $ty:ident { $($case:ident),* $(,)? }) => {
        $crate::__wit_variant!($wit, $plain, $ty { $($case),* } {});
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wit_variant {
    ($wit:ident, $plain:ident, $ty:ident { $($unit:ident),* } { $($payload:ident),* }) => {
        impl From<$wit::$ty> for $plain::$ty {
            fn from(x: $wit::$ty) -> Self {
                match x {
                    $($wit::$ty::$unit => $plain::$ty::$unit,)*
                    $($wit::$ty::$payload(v) => $plain::$ty::$payload(v.into()),)*
                }
            }
        }
        impl From<$plain::$ty> for $wit::$ty {
            fn from(x: $plain::$ty) -> Self {
                match x {
                    $($plain::$ty::$unit => $wit::$ty::$unit,)*
                    $($plain::$ty::$payload(v) => $wit::$ty::$payload(v.into()),)*
                }
            }
        }
    };
}
