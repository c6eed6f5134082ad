//! `wit_conversions!`: conversions between the plain types of `types` and the
//! ones a WIT binding generator makes from `wit/policy.wit`, written once for
//! both sides (wit-bindgen in the guest component, wasmtime's `bindgen!` in
//! the host), since both generators name types, fields and cases after the
//! WIT.

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
            $crate::__wit_record!(wit, plain, RingView {
                first_index, next_index, capacity, delta_floor
            });
            $crate::__wit_record!(wit, plain, SyncRequest { start_index, can_delta, must_delta });
            $crate::__wit_record!(wit, plain, CatchUpView { passes, pending });
            $crate::__wit_record!(wit, plain, Routing { action, reason });
            $crate::__wit_record!(wit, plain, StreamView { phase, cursor, ring });
            $crate::__wit_record!(wit, plain, RecordRange { start, count });
            $crate::__wit_record!(wit, plain, FrameLimits { max_regions, max_bytes });
            $crate::__wit_record!(wit, plain, FollowerState {
                phase, next_index, snapshot_regions, complete, ready, force_full_sync, resumable
            });
            $crate::__wit_record!(wit, plain, FrameHeader {
                error, start_index, region_count, announced, digest
            });
            $crate::__wit_record!(wit, plain, ConnectPlan {
                start_index, state, ask_delta, ask_verify
            });
            $crate::__wit_enum!(wit, plain, RouteReason {
                UpToDate, InRing, ZeroIndex, BehindRing, AheadOfLeader, GapRefused, DeltaResumed
            });
            $crate::__wit_enum!(wit, plain, CatchUpStep { AnotherPass, FinalPass });
            $crate::__wit_enum!(wit, plain, AnnouncedSync { None, Full, Delta, History });
            $crate::__wit_enum!(wit, plain, DigestCheck { Absent, Matched, Mismatched });
            $crate::__wit_enum!(wit, plain, StreamPhase { CatchingUp, Live });
            $crate::__wit_enum!(wit, plain, FollowerPhase { Awaiting, Snapshot, Streaming, Delta });
            $crate::__wit_enum!(wit, plain, FrameKind {
                Error, SnapshotStart, SnapshotData, Completion, DeltaStart, DeltaData,
                VerifyFailed, History, Duplicate, Keepalive, Unexpected
            });
            $crate::__wit_enum!(wit, plain, ReconnectReason {
                ErrorHeader, Gap, UnexpectedFrame, VerifyFailed
            });
            $crate::__wit_variant!(wit, plain, RouteAction { UpToDate, FullSync } { History, Delta });
            $crate::__wit_variant!(wit, plain, SendStep { Idle, Exhausted } { Records, CaughtUp });

            $crate::__wit_frame_decision!(wit => plain);
            $crate::__wit_frame_decision!(plain => wit);
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

/// `FrameDecision` one way: its optional reason maps inside the `Option`,
/// which the record macro's plain `into` cannot do.
#[doc(hidden)]
#[macro_export]
macro_rules! __wit_frame_decision {
    ($from:ident => $to:ident) => {
        impl From<$from::FrameDecision> for $to::FrameDecision {
            fn from(d: $from::FrameDecision) -> Self {
                $to::FrameDecision {
                    state: d.state.into(),
                    kind: d.kind.into(),
                    reset_store: d.reset_store,
                    begin_delta: d.begin_delta,
                    apply_from: d.apply_from,
                    record_history: d.record_history,
                    claim_index: d.claim_index,
                    reconnect: d.reconnect.map(Into::into),
                }
            }
        }
    };
}
