//! [`Rejection`]: why an answer breaks the contract, with the numbers that
//! show it, for the host's log line and the tests' assertions.

use core::fmt;

use super::{MAX_BACKOFF_MS, MIN_FRAME_BYTES};
use crate::{FollowerPhase, MAX_FRAME_BYTES, MAX_FRAME_REGIONS, StreamPhase};

/// Why an answer breaks the contract. Each case names the rule it breaks and
/// carries the numbers that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Routing: up to date for an index that is not the leader's next index
    /// (or for index 0, which always needs a snapshot).
    UpToDateNotAtNext {
        /// The requested index.
        start: u64,
        /// The leader's next index.
        next: u64,
    },
    /// Routing: history from an index other than the request's, or one the
    /// ring does not hold.
    HistoryOutsideRing {
        /// Where the policy would replay from.
        from: u64,
        /// The requested index.
        start: u64,
        /// The ring's first index.
        first: u64,
        /// The ring's next index.
        next: u64,
    },
    /// Routing: a delta the follower cannot take or the store cannot give.
    DeltaInfeasible {
        /// Where the delta would start.
        from: u64,
        /// The requested index.
        start: u64,
        /// Whether the follower takes deltas.
        can_delta: bool,
        /// The leader's delta floor.
        floor: u64,
        /// The leader's next index.
        next: u64,
    },
    /// Routing: history or "up to date" for a follower part-way through a
    /// delta, whose store claims no index.
    ReplayOnPartialDelta {
        /// The requested index.
        start: u64,
    },
    /// Plan-send: records that do not start at the stream's cursor.
    RecordsNotAtCursor {
        /// First record of the planned frame.
        start: u64,
        /// The stream's cursor.
        cursor: u64,
    },
    /// Plan-send: an empty frame of records, or more records than the
    /// policy's own frame limit.
    RecordCountOutOfBounds {
        /// Records planned.
        count: u32,
        /// The policy's frame limit.
        limit: u32,
    },
    /// Plan-send: records the ring does not hold.
    RecordsOutsideRing {
        /// First record planned.
        start: u64,
        /// Records planned.
        count: u32,
        /// The ring's first index.
        first: u64,
        /// The ring's next index.
        next: u64,
    },
    /// Plan-send: "caught up" where the stream is not catching up at the
    /// ring's end.
    CaughtUpMisplaced {
        /// Index the frame would carry.
        at: u64,
        /// The stream's cursor.
        cursor: u64,
        /// The ring's next index.
        next: u64,
        /// The stream's phase.
        phase: StreamPhase,
    },
    /// Plan-send: idle while the stream still has records to send or has not
    /// gone live, which would stall it.
    IdleWouldStall {
        /// The stream's cursor.
        cursor: u64,
        /// The ring's next index.
        next: u64,
        /// The stream's phase.
        phase: StreamPhase,
    },
    /// Limits: regions per frame outside 1..=[`MAX_FRAME_REGIONS`].
    MaxRegionsOutOfRange(u32),
    /// Limits: bytes per frame outside [`MIN_FRAME_BYTES`]..=[`MAX_FRAME_BYTES`].
    MaxBytesOutOfRange(u64),
    /// On-connect: a new stream must start in the awaiting phase.
    NewStreamNotAwaiting(FollowerPhase),
    /// On-connect: the index and completeness belong to the store, not to
    /// the connect plan.
    ConnectChangedStore,
    /// A state that serves reads from a store that claims no index.
    ReadyWhileIncomplete,
    /// On-connect: asks for an index other than 0 that the store does not
    /// hold completely.
    AsksForUnheldIndex {
        /// The index asked for.
        asked: u64,
        /// The store's index.
        held: u64,
        /// Whether the store is complete.
        complete: bool,
    },
    /// On-frame: an error frame must change nothing.
    ErrorFrameChangesStore,
    /// On-frame: applying from an offset past the frame's regions.
    ApplyBeyondFrame {
        /// The offset.
        from: u32,
        /// Regions in the frame.
        count: u32,
    },
    /// On-frame: a reset store cannot be complete at once.
    ResetButComplete,
    /// On-frame: a complete store cannot also be part-way through a delta.
    ResumableButComplete,
    /// On-frame: a delta begun on a store that has no index to add to, or
    /// that leaves the state anything but incomplete, resumable and at the
    /// same index.
    DeltaBeginInvalid,
    /// On-frame: a completion claiming another index than the frame's.
    ClaimNotAtCompletion {
        /// The claimed index.
        claim: u64,
        /// The completion frame's index.
        frame: u64,
    },
    /// On-frame: an index claimed although the leader's digest differs.
    ClaimDespiteMismatch,
    /// On-frame: an incomplete store made complete without a claim.
    CompleteWithoutClaim,
    /// On-frame: a frame that ends the stream must not change the store.
    ReconnectChangesStore,
    /// On-frame: regions applied outside a full sync without being recorded
    /// as history would make the follower's numbering diverge.
    UnrecordedApply,
    /// On-frame: history recorded without applying anything.
    RecordWithoutApply,
    /// On-frame: history recorded on a store that claims no index.
    HistoryWithoutIndex,
    /// On-frame: history numbered from an index other than the follower's.
    HistoryMisnumbered {
        /// First index the records would get.
        from: u64,
        /// The follower's next index.
        next: u64,
    },
    /// On-frame: history must advance and claim the index to the frame's end.
    HistoryNotClaimedToEnd,
    /// On-frame: a claimed index that the new state does not hold completely.
    ClaimMismatch {
        /// The claimed index.
        claim: u64,
        /// The new state's index.
        next: u64,
        /// Whether the new state is complete.
        complete: bool,
    },
    /// On-frame: an index claimed by something other than history or a
    /// completion frame.
    ClaimWithoutCause,
    /// On-frame: the index moved without a claim.
    IndexMovedUnclaimed,
    /// Host facts: the answer's store fields (complete, resumable, index)
    /// differ from what the store holds once the decision is carried out.
    StateDisagreesWithStore {
        /// `complete` in the answer.
        complete: bool,
        /// `next-index` in the answer.
        next: u64,
        /// What the store will claim.
        held_complete: bool,
        /// The store's index.
        held_next: u64,
    },
    /// Host facts: a snapshot phase without a reset on this stream, or a
    /// delta phase without a delta begun on it.
    PhaseWithoutCause(FollowerPhase),
    /// Host facts: unrecorded regions applied on a stream that neither reset
    /// the store nor began a delta.
    UnrecordedApplyOffSync,
    /// Host facts: a completion claimed on a stream that ran no sync, on a
    /// frame that is no completion, or at another index than the frame's.
    CompletionOffSync {
        /// The claimed index.
        claim: u64,
        /// The frame's index.
        frame: u64,
    },
    /// Backoff longer than [`MAX_BACKOFF_MS`].
    BackoffTooLong(u64),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Rejection::*;
        match *self {
            UpToDateNotAtNext { start, next } => {
                write!(
                    f,
                    "up-to-date for index {start}, but the leader is at {next}"
                )
            }
            HistoryOutsideRing {
                from,
                start,
                first,
                next,
            } => write!(
                f,
                "history from {from} for a request at {start}, ring holds [{first}, {next})"
            ),
            DeltaInfeasible {
                from,
                start,
                can_delta,
                floor,
                next,
            } => write!(
                f,
                "delta from {from} for a request at {start} (takes deltas: {can_delta}), \
                 the store names changes from {floor}, the leader is at {next}"
            ),
            ReplayOnPartialDelta { start } => write!(
                f,
                "replay or up-to-date for a follower part-way through a delta from {start}"
            ),
            RecordsNotAtCursor { start, cursor } => {
                write!(f, "records from {start} but the cursor is {cursor}")
            }
            RecordCountOutOfBounds { count, limit } => {
                write!(f, "{count} records in one frame (limit {limit})")
            }
            RecordsOutsideRing {
                start,
                count,
                first,
                next,
            } => write!(
                f,
                "records [{start}, +{count}) outside the ring [{first}, {next})"
            ),
            CaughtUpMisplaced {
                at,
                cursor,
                next,
                phase,
            } => write!(
                f,
                "caught-up at {at} with cursor {cursor} and next index {next} ({phase:?})"
            ),
            IdleWouldStall {
                cursor,
                next,
                phase,
            } => write!(
                f,
                "idle with cursor {cursor} and next index {next} ({phase:?}) would stall the stream"
            ),
            MaxRegionsOutOfRange(n) => {
                write!(f, "max-regions {n} outside 1..={MAX_FRAME_REGIONS}")
            }
            MaxBytesOutOfRange(n) => write!(
                f,
                "max-bytes {n} outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}"
            ),
            NewStreamNotAwaiting(phase) => {
                write!(f, "a new stream must start awaiting, not {phase:?}")
            }
            ConnectChangedStore => {
                f.write_str("on-connect may not change the index or completeness")
            }
            ReadyWhileIncomplete => f.write_str("ready with an incomplete store"),
            AsksForUnheldIndex {
                asked,
                held,
                complete,
            } => write!(
                f,
                "asks for index {asked} but holds a {} store at {held}",
                if complete { "complete" } else { "incomplete" }
            ),
            ErrorFrameChangesStore => f.write_str("an error frame must change nothing"),
            ApplyBeyondFrame { from, count } => {
                write!(f, "apply from {from} in a frame of {count} regions")
            }
            ResetButComplete => f.write_str("a reset store cannot be complete before completion"),
            ResumableButComplete => f.write_str("complete and part-way through a delta at once"),
            DeltaBeginInvalid => f.write_str(
                "a delta must begin on a store with an index, and leave it incomplete, \
                 resumable, not ready, at the same index",
            ),
            ClaimNotAtCompletion { claim, frame } => {
                write!(f, "claims index {claim} at a completion frame for {frame}")
            }
            ClaimDespiteMismatch => {
                f.write_str("claims an index although the leader's digest differs")
            }
            CompleteWithoutClaim => {
                f.write_str("an incomplete store made complete without a claim")
            }
            ReconnectChangesStore => {
                f.write_str("a frame that ends the stream must not change the store")
            }
            UnrecordedApply => {
                f.write_str("regions applied outside a full sync must be recorded as history")
            }
            RecordWithoutApply => f.write_str("record-history without applying anything"),
            HistoryWithoutIndex => f.write_str("history recorded on a store without an index"),
            HistoryMisnumbered { from, next } => write!(
                f,
                "history numbered from {from} but the follower is at {next}"
            ),
            HistoryNotClaimedToEnd => {
                f.write_str("history must advance and claim the index to the frame's end")
            }
            ClaimMismatch {
                claim,
                next,
                complete,
            } => write!(
                f,
                "claims index {claim} but the state says {next} (complete: {complete})"
            ),
            ClaimWithoutCause => {
                f.write_str("an index may be claimed only by history or a completion frame")
            }
            IndexMovedUnclaimed => f.write_str("the index moved without being claimed"),
            StateDisagreesWithStore {
                complete,
                next,
                held_complete,
                held_next,
            } => write!(
                f,
                "the answer says complete={complete} at {next}, \
                 but the store holds complete={held_complete} at {held_next}"
            ),
            PhaseWithoutCause(phase) => write!(
                f,
                "phase {} without a reset or delta on this stream",
                phase.as_str()
            ),
            UnrecordedApplyOffSync => {
                f.write_str("unrecorded regions on a stream that runs no full sync or delta")
            }
            CompletionOffSync { claim, frame } => write!(
                f,
                "completion claim {claim} on frame {frame} outside a sync this stream ran"
            ),
            BackoffTooLong(ms) => write!(f, "backoff of {ms} ms exceeds {MAX_BACKOFF_MS} ms"),
        }
    }
}

impl core::error::Error for Rejection {}
