//! One follower's stream as a machine with no I/O and no clock: it owns the
//! stream's phase, cursor, pin, covered index and catch-up passes, and
//! answers [`StreamMachine::next`] with the one [`Step`] to take now. The
//! task in `super` only carries steps out (send, wait, end); the simulator
//! drives the same machine on simulated time.
//!
//! What the machine reads (the store, the ring, the published index) and
//! the few things it sets off (pins, full-sync slots, counters) come through
//! a [`Source`], the leader's shared state in production. It reads under
//! the source's locks one chunk at a time, as the task did, so the intake
//! never waits for more than a chunk.
//!
//! The route decides the shape of the stream:
//! - up to date: the index, then live;
//! - history: the ring from the follower's index, then live;
//! - full sync for a follower that announced regionsync's extensions: the
//!   snapshot, then a catch-up from the store (`catch_up`), then live;
//! - full sync for a follower that announced nothing (PD's protocol): the
//!   snapshot under a pin of the ring, then the ring's records from the pin,
//!   the completion at an index that covers the snapshot, then live;
//! - delta: a catch-up from the store since the follower's index, then live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::catch_up::CatchUp;
use super::snapshot::Snapshot;
use crate::history::{HistoryRing, Pin};
use crate::leader::{FullSyncOutcome, frames};
use crate::policy_runtime::{
    PolicyRuntime, RingView, Route, RouteAction, RouteCause, SendStep, StreamPhase, StreamView,
};
use crate::region_store::RegionStore;
use crate::wire::{Capabilities, Frame};

/// What the machine reads and sets off; the leader's shared state, or the
/// simulator's.
pub trait Source {
    /// The cluster every frame names.
    fn cluster_id(&self) -> u64;
    /// Every decision comes from here.
    fn policy(&self) -> &PolicyRuntime;
    /// The leader is stopping.
    fn stopping(&self) -> bool;
    /// The leader cannot persist changes: it claims no index any more.
    fn failed(&self) -> bool;
    /// next_index after the last published (durable) batch.
    fn published(&self) -> u64;
    /// Read the store (under its lock, for as long as `read` runs).
    fn store<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R;
    /// Read the ring (under its lock, for as long as `read` runs).
    fn ring<R>(&self, read: impl FnOnce(&HistoryRing) -> R) -> R;
    /// Pin the ring from its next index (PD's full sync).
    fn pin(&self) -> Arc<Pin>;
    /// One more running full sync, if the policy admits it; `Err` with how
    /// many ran already when it does not. The slot counts while it lives.
    fn full_sync_slot(&self) -> Result<Slot, u32>;
    /// Count a step of a full sync.
    fn count_full_sync(&self, cause: RouteCause, outcome: FullSyncOutcome);
    /// Count an event of a stream.
    fn count(&self, event: Counted);
}

/// A running full sync, counted for admission while it lives.
pub type Slot = Box<dyn Send + Sync>;

/// Full syncs running, for admission: each [`Slot`] taken counts until it
/// is dropped.
#[derive(Debug, Default, Clone)]
pub struct Running(Arc<std::sync::atomic::AtomicU32>);

struct RunningSlot(Arc<std::sync::atomic::AtomicU32>);

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Running {
    /// One more: its slot, and how many ran before it.
    pub fn take(&self) -> (Slot, u32) {
        let before = self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        (Box::new(RunningSlot(self.0.clone())), before)
    }

    /// How many run now.
    pub fn now(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Stream events a [`Source`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A delta sync started.
    Delta,
    /// A delta as large as a full sync was refused by admission.
    DeltaRefused,
}

/// The tunables a stream reads.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// Time without a frame after which an idle stream sends a keepalive.
    pub keepalive: Duration,
    /// A full sync's snapshot bytes per second, if limited.
    pub full_sync_rate: Option<u64>,
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The follower went away (its side of the stream closed).
    Gone,
    /// A send did not complete within the bound.
    SendTimeout,
    /// The leader is stopping.
    Stopped,
    /// Records the stream needed are gone from the ring.
    Exhausted(String),
    /// Too many full syncs (or deltas as large) running.
    Refused,
    /// The leader's storage failed: it claims no index any more.
    Failed,
}

/// What the stream does next.
#[derive(Debug)]
pub enum Step {
    /// Send this frame; ask again once it is queued.
    Send(Frame),
    /// Nothing to send until the published index reaches this.
    WaitPublished(u64),
    /// A completion at this index waits until every change up to it is
    /// durable (published).
    WaitDurable(u64),
    /// Nothing to do until `until`, or until the published index reaches
    /// `or_published`: ask again then.
    Idle {
        /// When to ask again at the latest.
        until: Instant,
        /// Ask earlier once the published index reaches this.
        or_published: Option<u64>,
    },
    /// The stream ends.
    End(End),
}

/// Where the stream is.
pub(super) enum State {
    /// Routed, nothing sent.
    Routed,
    /// Sending a full sync's snapshot.
    Snapshot(Snapshot),
    /// Sending what changed since a mark, from the store.
    CatchUp(CatchUp),
    /// Sending the ring's records (history, PD's catch-up, live).
    Ring(Ring),
    /// Ended.
    Ended,
}

/// The ring phase: a cursor into the ring.
pub(super) struct Ring {
    phase: StreamPhase,
    cursor: u64,
    /// The least index a completion may claim (PD's protocol only).
    covers: u64,
    /// PD's full sync: the pin and the slot it holds until its completion.
    pin: Option<(Arc<Pin>, Option<Slot>)>,
    /// When an idle stream sends its next keepalive.
    keepalive_at: Option<Instant>,
}

/// One follower's stream on the leader.
pub struct StreamMachine {
    pub(super) cluster_id: u64,
    pub(super) follower: String,
    pub(super) caps: Capabilities,
    pub(super) config: StreamConfig,
    route: Route,
    /// The ring as routing saw it.
    routed_ring: RingView,
    state: State,
}

impl StreamMachine {
    /// A stream routed by `route` when the ring was `ring`.
    pub fn new(
        cluster_id: u64,
        follower: String,
        caps: Capabilities,
        config: StreamConfig,
        route: Route,
        ring: RingView,
    ) -> Self {
        StreamMachine {
            cluster_id,
            follower,
            caps,
            config,
            route,
            routed_ring: ring,
            state: State::Routed,
        }
    }

    /// The next record a live stream sends (once in the ring phase).
    pub fn cursor(&self) -> Option<u64> {
        match &self.state {
            State::Ring(r) => Some(r.cursor),
            _ => None,
        }
    }

    /// The step to take at `now`.
    pub fn next(&mut self, now: Instant, src: &impl Source) -> Step {
        if src.stopping() {
            self.state = State::Ended;
            return Step::End(End::Stopped);
        }
        loop {
            let state = std::mem::replace(&mut self.state, State::Ended);
            let (state, step) = match state {
                State::Routed => self.open(now, src),
                State::Snapshot(snapshot) => self.snapshot_step(now, src, snapshot),
                State::CatchUp(catch_up) => self.catch_up_step(now, src, catch_up),
                State::Ring(mut ring) => {
                    let step = self.ring_step(now, src, &mut ring);
                    (State::Ring(ring), Some(step))
                }
                State::Ended => (State::Ended, Some(Step::End(End::Stopped))),
            };
            self.state = match &step {
                Some(Step::End(_)) => State::Ended,
                _ => state,
            };
            if let Some(step) = step {
                return step;
            }
        }
    }

    /// Act on the route.
    fn open(&self, now: Instant, src: &impl Source) -> Next {
        let cause = self.route.cause;
        match self.route.action {
            RouteAction::UpToDate => {
                let at = self.routed_ring.next_index;
                let frame = frames::empty(self.cluster_id, at).into();
                (State::Ring(Ring::live(at)), Some(Step::Send(frame)))
            }
            RouteAction::History(from) => (
                State::Ring(Ring {
                    phase: StreamPhase::CatchingUp,
                    cursor: from,
                    covers: 0,
                    pin: None,
                    keepalive_at: None,
                }),
                None,
            ),
            // A follower that speaks regionsync's extensions is caught up
            // from the store, so that its sync ends under any churn.
            RouteAction::FullSync => match self.admit(src, cause) {
                Ok(slot) => {
                    let pin = (!self.caps.any()).then(|| src.pin());
                    (State::Snapshot(Snapshot::start(now, src, pin, slot)), None)
                }
                Err(end) => ended(end),
            },
            RouteAction::Delta(from) => match self.admit_delta(src, from) {
                Ok(slot) => {
                    src.count(Counted::Delta);
                    let catch_up = CatchUp::start(now, from.into(), Some(from), slot);
                    (State::CatchUp(catch_up), None)
                }
                Err(end) => ended(end),
            },
        }
    }

    /// The snapshot is sent: catch up from the store, or (PD's protocol)
    /// from the ring under the pin, to an index that covers the snapshot.
    pub(super) fn after_snapshot(
        &self,
        now: Instant,
        src: &impl Source,
        mark: super::snapshot::Mark,
        pin: Option<Arc<Pin>>,
        slot: Slot,
    ) -> State {
        match pin {
            None => State::CatchUp(CatchUp::start(now, mark, None, Some(slot))),
            Some(pin) => State::Ring(Ring {
                phase: StreamPhase::CatchingUp,
                cursor: pin.from(),
                // The snapshot may hold changes applied but not yet
                // durable; the completion must come at an index that
                // covers them.
                covers: src.store(|s| s.applied_next()),
                pin: Some((pin, Some(slot))),
                keepalive_at: None,
            }),
        }
    }

    /// The catch-up's completion is sent: live from `index`.
    pub(super) fn after_catch_up(&self, src: &impl Source, index: u64, full_sync: bool) -> State {
        if full_sync {
            src.count_full_sync(self.route.cause, FullSyncOutcome::Completed);
        }
        State::Ring(Ring::live(index))
    }

    /// Ask the policy whether another full sync may start.
    fn admit(&self, src: &impl Source, cause: RouteCause) -> Result<Slot, End> {
        let slot = src.full_sync_slot();
        let counted = match slot {
            Ok(_) => FullSyncOutcome::Started,
            Err(_) => FullSyncOutcome::Refused,
        };
        src.count_full_sync(cause, counted);
        slot.map_err(|_| End::Refused)
    }

    /// Admit a delta from `from` as a full sync when it may cost like one.
    /// Its cost is at most the changes since its base and at most the
    /// store: a delta from near the delta floor scans and sends most of the
    /// store, and as many of those at once as clients like would do what
    /// full-sync admission exists to prevent. A small delta takes no slot.
    fn admit_delta(&self, src: &impl Source, from: u64) -> Result<Option<Slot>, End> {
        let cost = src.store(|s| s.applied_next().saturating_sub(from).min(s.len() as u64));
        if cost < LARGE_DELTA {
            return Ok(None);
        }
        match src.full_sync_slot() {
            Ok(slot) => Ok(Some(slot)),
            Err(running) => {
                src.count(Counted::DeltaRefused);
                tracing::warn!(
                    follower = %self.follower, from, cost, running,
                    "a delta as large as a full sync refused by admission"
                );
                Err(End::Refused)
            }
        }
    }

    /// Records the stream needs from `cursor` are gone from the ring.
    pub(super) fn lost(&self, src: &impl Source, cursor: u64) -> End {
        let ring = src.ring(|r| r.view());
        End::Exhausted(format!(
            "records from index {cursor} are no longer in the leader's history ring [{}, {}) \
             (capacity {}); reconnect for a delta or a full sync",
            ring.first_index, ring.next_index, ring.capacity
        ))
    }

    /// The ring phase: what the policy plans to send next.
    fn ring_step(&self, now: Instant, src: &impl Source, ring: &mut Ring) -> Step {
        if src.failed() {
            return Step::End(End::Failed);
        }
        if ring.pin.as_ref().is_some_and(|(p, _)| p.is_broken()) {
            return Step::End(self.lost(src, ring.cursor));
        }
        let view = StreamView {
            phase: ring.phase,
            cursor: ring.cursor,
            ring: src.ring(|r| r.view()),
        };
        let limits = src.policy().limits();
        match src.policy().plan_send(view) {
            SendStep::Records(range) => {
                let records = src
                    .ring(|r| r.read(range.start, range.count as usize, limits.max_bytes as usize));
                if records.is_empty() {
                    return Step::End(self.lost(src, ring.cursor));
                }
                ring.cursor = range.start + records.len() as u64;
                ring.keepalive_at = None;
                Step::Send(frames::records_encoded(
                    self.cluster_id,
                    range.start,
                    &records,
                ))
            }
            // Not yet published: wait, as an idle stream does.
            SendStep::CaughtUp(index) if index < ring.covers => Step::WaitPublished(ring.covers),
            SendStep::CaughtUp(index) => {
                ring.phase = StreamPhase::Live;
                ring.keepalive_at = None;
                if let Some((pin, _slot)) = ring.pin.take() {
                    src.count_full_sync(self.route.cause, FullSyncOutcome::Completed);
                    tracing::info!(
                        follower = %self.follower, pinned_from = pin.from(), completion_index = index,
                        "full sync complete; stream is live"
                    );
                }
                Step::Send(frames::empty(self.cluster_id, index).into())
            }
            SendStep::Idle => match ring.keepalive_at {
                // Only idle streams get keepalives, so one can never
                // overtake records still to be sent.
                Some(at) if now >= at => {
                    ring.keepalive_at = None;
                    Step::Send(frames::empty(self.cluster_id, ring.cursor).into())
                }
                Some(at) => Step::Idle {
                    until: at,
                    or_published: Some(ring.cursor + 1),
                },
                None => {
                    let at = now + self.config.keepalive;
                    ring.keepalive_at = Some(at);
                    Step::Idle {
                        until: at,
                        or_published: Some(ring.cursor + 1),
                    }
                }
            },
            SendStep::Exhausted => Step::End(self.lost(src, ring.cursor)),
        }
    }

    /// The route's cause (for counting).
    pub(super) fn cause(&self) -> RouteCause {
        self.route.cause
    }
}

/// The state a step leaves, and the step to take (none: ask again).
pub(super) type Next = (State, Option<Step>);

/// The stream ends.
pub(super) fn ended(end: End) -> Next {
    (State::Ended, Some(Step::End(end)))
}

impl Ring {
    fn live(at: u64) -> Self {
        Ring {
            phase: StreamPhase::Live,
            cursor: at,
            covers: 0,
            pin: None,
            keepalive_at: None,
        }
    }
}

/// Changes since a delta's base from which it is admitted as a full sync
/// is: a few frames' worth is cheap enough to serve whatever runs.
pub(super) const LARGE_DELTA: u64 = 10_000;
