//! The policy runtime: the one door through which the host asks for every
//! sync decision, whoever answers it.
//!
//! A decision comes from a [`PolicyEngine`]: the Wasm component ([`wasm`]) in
//! production, or the guest library linked natively ([`native`]) for
//! comparison and tests. The runtime wraps the active engine and adds what the
//! engine must not be trusted with: every answer is checked against the
//! contract's invariants (`regionsync_guest::invariants`); a trap, a blown
//! deadline or memory limit, or a rejected answer becomes the safe decision
//! (leader: full sync; follower: reconnect and ask for a full sync), logged
//! with the policy's name and counted. Callers therefore get a plain answer,
//! never an error, and never a panic.
//!
//! Hot swap: [`PolicyRuntime::swap`] builds and self-checks the new engine
//! completely ([`self_check`]) before an atomic pointer swap; a call in flight
//! keeps the `Arc` of the engine it started on and finishes there.

pub mod builtin;
pub mod cache;
mod engine;
pub mod native;
mod self_check;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use regionsync_guest::invariants::{self, Rejection};
pub use regionsync_guest::{
    AnnouncedSync, CatchUpStep, CatchUpView, ConnectPlan, DigestCheck, FollowerPhase,
    FollowerState, FrameDecision, FrameHeader, FrameKind, FrameLimits, PolicyInfo, ReconnectReason,
    RecordRange, RingView, RouteAction, RouteReason, Routing, SendStep, StreamPhase, StreamView,
    SyncRequest,
};

pub use engine::{LoadError, PolicyEngine, PolicyError};
pub use native::NativePolicy;
pub use wasm::{WasmPolicy, WasmRuntime};

/// Why a stream got its route: the policy's own reason, or the runtime's
/// fallback when the policy gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteCause {
    /// The policy's answer, with its reason.
    Policy(RouteReason),
    /// The policy failed; the runtime chose a full sync.
    Fallback,
}

impl RouteCause {
    /// Stable label for logs, metrics and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteCause::Policy(reason) => reason.as_str(),
            RouteCause::Fallback => "policy_fallback",
        }
    }
}

/// A routing decision as the host carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// What the stream does.
    pub action: RouteAction,
    /// Why.
    pub cause: RouteCause,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct PolicyStats {
    /// Decisions asked.
    pub calls: AtomicU64,
    /// Calls that failed or gave a rejected answer.
    pub errors: AtomicU64,
    /// Safe decisions taken instead of the policy's.
    pub fallbacks: AtomicU64,
    /// Swaps that made a new policy active.
    pub swaps: AtomicU64,
    /// Swaps refused (the old policy stayed).
    pub failed_swaps: AtomicU64,
}

/// Reconnect delay used when the policy gives no usable answer.
pub const FALLBACK_BACKOFF: Duration = Duration::from_secs(1);

/// Where a policy comes from.
#[derive(Clone)]
pub enum PolicySource {
    /// A component embedded in the binary, by name.
    Builtin(&'static str),
    /// A component file.
    File(PathBuf),
    /// Component bytes (e.g. uploaded to the admin endpoint).
    Bytes(Vec<u8>),
    /// The guest library linked natively, by policy name.
    Native(&'static str),
}

impl std::fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "built-in {name}"),
            PolicySource::File(path) => write!(f, "file {}", path.display()),
            PolicySource::Bytes(b) => write!(f, "{} uploaded bytes", b.len()),
            PolicySource::Native(name) => write!(f, "native {name}"),
        }
    }
}

/// An engine that passed its self-check, with what it answered once and for
/// all: its frame limits are a constant of the policy, asked at load rather
/// than on every frame, and swapped together with the engine.
struct Active {
    engine: Box<dyn PolicyEngine>,
    limits: FrameLimits,
}

/// The active policy plus validation, fallback and swapping.
pub struct PolicyRuntime {
    active: ArcSwap<Active>,
    wasm: WasmRuntime,
    stats: PolicyStats,
}

impl PolicyRuntime {
    /// Start with the given policy; it must pass the same checks as a swap.
    pub fn new(wasm: WasmRuntime, source: PolicySource) -> Result<Self, LoadError> {
        let active = Self::build(&wasm, &source)?;
        Ok(PolicyRuntime {
            active: ArcSwap::from_pointee(active),
            wasm,
            stats: PolicyStats::default(),
        })
    }

    /// The built-in default component with a default Wasm runtime.
    pub fn with_default() -> Result<Self, LoadError> {
        Self::new(
            WasmRuntime::new(Default::default())?,
            PolicySource::Builtin("default"),
        )
    }

    fn build(wasm: &WasmRuntime, source: &PolicySource) -> Result<Active, LoadError> {
        let unknown = |name: &str| LoadError::UnknownPolicy(name.to_string());
        let engine: Box<dyn PolicyEngine> = match source {
            PolicySource::Builtin(name) => {
                Box::new(wasm.load(builtin::by_name(name).ok_or_else(|| unknown(name))?)?)
            }
            PolicySource::File(path) => Box::new(wasm.load_file(path)?),
            PolicySource::Bytes(bytes) => Box::new(wasm.load(bytes)?),
            PolicySource::Native(name) => {
                Box::new(NativePolicy::by_name(name).ok_or_else(|| unknown(name))?)
            }
        };
        self_check::run(engine.as_ref())?;
        let limits = engine.limits().map_err(|e| LoadError::SelfCheck {
            name: engine.info().name.clone(),
            what: format!("limits {e}"),
        })?;
        Ok(Active { engine, limits })
    }

    /// Name and version of the active policy.
    pub fn info(&self) -> PolicyInfo {
        self.active.load().engine.info().clone()
    }

    /// The runtime's counters.
    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    /// Replace the active policy with the component in `path`, only if it
    /// loads and passes the self-check; returns (old, new).
    pub fn swap_file(&self, path: &Path) -> Result<(PolicyInfo, PolicyInfo), LoadError> {
        self.swap(PolicySource::File(path.to_path_buf()))
    }

    /// Replace the active policy, only if the new one loads and self-checks.
    pub fn swap(&self, source: PolicySource) -> Result<(PolicyInfo, PolicyInfo), LoadError> {
        let active = match Self::build(&self.wasm, &source) {
            Ok(active) => active,
            Err(e) => {
                self.stats.failed_swaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    source = ?source, active = %self.info().name, error = %crate::error_chain(&e),
                    "policy swap refused; the active policy stays"
                );
                return Err(e);
            }
        };
        let new = active.engine.info().clone();
        let old = self.active.swap(Arc::new(active)).engine.info().clone();
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            old = %format!("{} {}", old.name, old.version),
            new = %format!("{} {}", new.name, new.version),
            "policy swapped"
        );
        Ok((old, new))
    }

    /// Run one call on the active engine, check the answer, and turn it into
    /// what the host acts on (`accept`), or fall back to `safe` on any
    /// failure.
    fn decide<T, U>(
        &self,
        call: &'static str,
        ask: impl FnOnce(&Active) -> Result<T, PolicyError>,
        check: impl FnOnce(&T, &Active) -> Result<(), Rejection>,
        accept: impl FnOnce(T) -> U,
        safe: impl FnOnce() -> U,
    ) -> U {
        // The guard keeps the engine this call started on alive across a
        // concurrent swap, and its limits with it.
        let active = self.active.load();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let answer = ask(&active).and_then(|t| {
            check(&t, &active)
                .map(|()| t)
                .map_err(PolicyError::Rejected)
        });
        match answer {
            Ok(t) => accept(t),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                let info = active.engine.info();
                tracing::warn!(
                    policy = %info.name, version = %info.version, call, error = %e,
                    "policy call failed; taking the safe decision"
                );
                safe()
            }
        }
    }

    /// Leader: route a request. Fallback: full sync.
    pub fn route_request(&self, request: SyncRequest, ring: RingView) -> Routed {
        self.decide(
            "route-request",
            |a| a.engine.route_request(request, ring),
            |r, _| invariants::routing(request, ring, r),
            |r| Routed {
                action: r.action,
                cause: RouteCause::Policy(r.reason),
            },
            || Routed {
                action: RouteAction::FullSync,
                cause: RouteCause::Fallback,
            },
        )
    }

    /// Leader: what a stream sends next, within the active policy's frame
    /// limits. Fallback: end the stream, so the follower comes back and is
    /// routed afresh.
    pub fn plan_send(&self, view: StreamView) -> SendStep {
        self.decide(
            "plan-send",
            |a| a.engine.plan_send(view),
            |s, a| invariants::send_step(view, a.limits, s),
            |s| s,
            || SendStep::Exhausted,
        )
    }

    /// Leader: the next catch-up pass. Fallback: the final pass (it always
    /// ends the sync, holding the intake off for one read of the store).
    pub fn plan_catch_up(&self, view: CatchUpView) -> CatchUpStep {
        self.decide(
            "plan-catch-up",
            |a| a.engine.plan_catch_up(view),
            |_, _| Ok(()),
            |step| step,
            || CatchUpStep::FinalPass,
        )
    }

    /// Frame bounds of the active policy (checked when it was loaded).
    pub fn limits(&self) -> FrameLimits {
        self.active.load().limits
    }

    /// Leader: may another full sync start? Fallback: yes (a full sync is
    /// the safe decision; refusing would strand the follower).
    pub fn admit_full_sync(&self, running: u32) -> bool {
        self.decide(
            "admit-full-sync",
            |a| a.engine.admit_full_sync(running),
            |_, _| Ok(()),
            |admit| admit,
            || true,
        )
    }

    /// Follower: what to ask for on connect. Fallback: a full sync.
    pub fn on_connect(&self, state: FollowerState) -> ConnectPlan {
        self.decide(
            "on-connect",
            |a| a.engine.on_connect(state),
            |plan, _| invariants::connect_plan(state, plan),
            |plan| plan,
            || ConnectPlan {
                start_index: 0,
                state: FollowerState {
                    phase: FollowerPhase::Awaiting,
                    snapshot_regions: 0,
                    force_full_sync: true,
                    ready: state.ready && state.complete,
                    ..state
                },
                ask_delta: false,
                ask_verify: true,
            },
        )
    }

    /// Follower: what a frame means. Fallback: apply nothing, reconnect and
    /// ask for a full sync.
    pub fn on_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        self.decide(
            "on-frame",
            |a| a.engine.on_frame(state, frame),
            |d, _| invariants::frame_decision(state, frame, d),
            |d| d,
            || FrameDecision {
                state: FollowerState {
                    force_full_sync: true,
                    ..state
                },
                kind: FrameKind::Unexpected,
                reset_store: false,
                begin_delta: false,
                apply_from: None,
                record_history: false,
                claim_index: None,
                reconnect: Some(ReconnectReason::UnexpectedFrame),
            },
        )
    }

    /// Follower: delay before reconnect attempt `attempt`.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        self.decide(
            "backoff",
            |a| a.engine.backoff(attempt, seed),
            |ms, _| invariants::backoff(*ms),
            Duration::from_millis,
            || FALLBACK_BACKOFF,
        )
    }
}
