//! The policy runtime: the one door through which the host asks for every
//! sync decision, whoever answers it.
//!
//! A decision comes from a [`PolicyEngine`]: the Wasm component ([`wasm`]) in
//! production, or the guest library linked natively ([`native`]) for
//! comparison and tests. The runtime wraps the active engine and adds what the
//! engine must not be trusted with: every answer is checked against the
//! contract's invariants (`regionsync_guest::invariants`), and a follower's
//! answers also against the host's own facts about its store and stream
//! (`StreamFacts`), never against fields the policy controls. A trap, a
//! blown deadline or memory limit, or a rejected answer is answered instead
//! by the built-in default policy, linked natively, for that one decision
//! (logged with the policy's name and counted); only if that answer too were
//! refused does the runtime take the safe decision (leader: full sync;
//! follower: reconnect and ask for a full sync). Callers therefore get a
//! plain answer, never an error, and never a panic.
//!
//! Hot swap: [`PolicyRuntime::swap`] builds and self-checks the new engine
//! completely ([`self_check`]) before an atomic pointer swap; a call in flight
//! keeps the `Arc` of the engine it started on and finishes there. A swapped-in
//! policy that keeps failing is rolled back on its own ([`rollback`]).

mod allow_list;
pub mod builtin;
pub mod cache;
pub mod compiler;
mod decisions;
mod engine;
mod epoch;
pub mod native;
pub mod rollback;
mod self_check;
pub mod shadow;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use regionsync_guest::invariants::Rejection;
pub use regionsync_guest::invariants::StreamFacts;
pub use regionsync_guest::{
    AnnouncedSync, CatchUpStep, CatchUpView, ConnectPlan, DigestCheck, FollowerPhase,
    FollowerState, FrameDecision, FrameHeader, FrameKind, FrameLimits, PolicyInfo, ReconnectReason,
    RecordRange, RingView, RouteAction, RouteReason, Routing, SendStep, StreamPhase, StreamView,
    SyncRequest,
};

pub use allow_list::{AllowList, BadDigest, Sha256};
pub use engine::{LoadError, PolicyEngine, PolicyError};
pub use native::NativePolicy;
pub use rollback::RollbackRule;
pub use self_check::run as self_check;
pub use wasm::{WasmPolicy, WasmRuntime};

/// Why a stream got its route: the policy's own reason, or the runtime's
/// fallback when the policy gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteCause {
    /// The policy's answer, with its reason.
    Policy(RouteReason),
    /// The policy failed; the built-in policy (or, failing that, the
    /// runtime's safe full sync) decided.
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
pub struct Route {
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
    /// Decisions taken instead of the policy's (by the built-in policy or,
    /// failing that, the safe decision).
    pub fallbacks: AtomicU64,
    /// Of those, decisions the built-in policy answered.
    pub builtin_answers: AtomicU64,
    /// Automatic rollbacks to the previous policy.
    pub rollbacks: AtomicU64,
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
    /// The guest library linked natively, with tuning of one's own (tests
    /// use short backoffs, for instance).
    Tuned(regionsync_guest::Policy),
}

impl std::fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "built-in {name}"),
            PolicySource::File(path) => write!(f, "file {}", path.display()),
            PolicySource::Bytes(b) => write!(f, "{} uploaded bytes", b.len()),
            PolicySource::Native(name) => write!(f, "native {name}"),
            PolicySource::Tuned(p) => write!(f, "native {} (tuned)", p.name),
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

/// The active policy plus validation, fallback, swapping and rollback.
pub struct PolicyRuntime {
    active: ArcSwap<Active>,
    /// What the active policy replaced: where a rollback goes.
    previous: Mutex<Option<Arc<Active>>>,
    /// The built-in default policy, linked natively: it answers a decision
    /// the active policy failed.
    builtin: Active,
    failures: rollback::FailureWindow,
    allow: AllowList,
    last_rollback: Mutex<Option<String>>,
    wasm: WasmRuntime,
    stats: PolicyStats,
    /// A candidate asked every decision too, never acted on ([`shadow`]).
    shadow: ArcSwapOption<shadow::Shadow>,
}

impl PolicyRuntime {
    /// Start with the given policy; it must pass the same checks as a swap.
    pub fn new(wasm: WasmRuntime, source: PolicySource) -> Result<Self, LoadError> {
        Self::new_allowing(wasm, source, Vec::new())
    }

    /// Start with the given policy, and load only components whose SHA-256
    /// is in `allow` (any when empty) now and at every swap.
    pub fn new_allowing(
        wasm: WasmRuntime,
        source: PolicySource,
        allow: Vec<Sha256>,
    ) -> Result<Self, LoadError> {
        let allow = AllowList::new(allow);
        let active = Self::build(&wasm, &allow, &source)?;
        let builtin = Self::build(&wasm, &allow, &PolicySource::Native("default"))?;
        Ok(PolicyRuntime {
            active: ArcSwap::from_pointee(active),
            previous: Mutex::new(None),
            builtin,
            failures: rollback::FailureWindow::new(RollbackRule::default()),
            allow,
            last_rollback: Mutex::new(None),
            wasm,
            stats: PolicyStats::default(),
            shadow: ArcSwapOption::empty(),
        })
    }

    /// The same runtime with another rollback rule.
    pub fn with_rollback(mut self, rule: RollbackRule) -> Self {
        self.failures = rollback::FailureWindow::new(rule);
        self
    }

    /// The built-in default component with a default Wasm runtime.
    pub fn with_default() -> Result<Self, LoadError> {
        Self::new(
            WasmRuntime::new(Default::default())?,
            PolicySource::Builtin("default"),
        )
    }

    fn build(
        wasm: &WasmRuntime,
        allow: &AllowList,
        source: &PolicySource,
    ) -> Result<Active, LoadError> {
        let unknown = |name: &str| LoadError::UnknownPolicy(name.to_string());
        let engine: Box<dyn PolicyEngine> = match source {
            PolicySource::Builtin(name) => {
                Box::new(wasm.load(builtin::by_name(name).ok_or_else(|| unknown(name))?)?)
            }
            PolicySource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                    path: path.clone(),
                    source,
                })?;
                let in_file = |e| LoadError::File {
                    path: path.clone(),
                    source: Box::new(e),
                };
                allow.check(&bytes).map_err(in_file)?;
                Box::new(wasm.load(&bytes).map_err(in_file)?)
            }
            PolicySource::Bytes(bytes) => {
                allow.check(bytes)?;
                Box::new(wasm.load(bytes)?)
            }
            PolicySource::Native(name) => {
                Box::new(NativePolicy::by_name(name).ok_or_else(|| unknown(name))?)
            }
            PolicySource::Tuned(policy) => Box::new(NativePolicy::new(*policy)),
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

    /// The last automatic rollback, in words (for the status JSON).
    pub fn last_rollback(&self) -> Option<String> {
        self.last_rollback.lock().clone()
    }

    /// Replace the active policy with the component in `path`, only if it
    /// loads and passes the self-check; returns (old, new).
    pub fn swap_file(&self, path: &Path) -> Result<(PolicyInfo, PolicyInfo), LoadError> {
        self.swap(PolicySource::File(path.to_path_buf()))
    }

    /// Replace the active policy, only if the new one loads and self-checks.
    pub fn swap(&self, source: PolicySource) -> Result<(PolicyInfo, PolicyInfo), LoadError> {
        let active = match Self::build(&self.wasm, &self.allow, &source) {
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
        let mut previous = self.previous.lock();
        let old = self.active.swap(Arc::new(active));
        let old_info = old.engine.info().clone();
        *previous = Some(old);
        self.failures.clear();
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            old = %format!("{} {}", old_info.name, old_info.version),
            new = %format!("{} {}", new.name, new.version),
            "policy swapped"
        );
        Ok((old_info, new))
    }

    /// The active policy failed a call: count it, and roll back to the
    /// previous policy when the rule says it is broken.
    fn failed(&self, failing: &Arc<Active>, call: &'static str) {
        if !self.failures.failed() {
            return;
        }
        let mut previous = self.previous.lock();
        // Only the failing policy is rolled back, and only once: a swap or
        // another rollback may have replaced it meanwhile.
        if !Arc::ptr_eq(&self.active.load(), failing) {
            return;
        }
        let rule = self.failures.rule();
        let bad = failing.engine.info();
        let Some(back) = previous.take() else {
            tracing::error!(
                policy = %bad.name, call, failures = rule.failures, window = ?rule.window,
                "the policy keeps failing and there is no previous policy to roll back to; \
                 the built-in policy keeps answering its failed calls"
            );
            return;
        };
        let good = back.engine.info().clone();
        let what = format!(
            "{} {} rolled back to {} {} after {} failed calls within {:?} (last: {call})",
            bad.name, bad.version, good.name, good.version, rule.failures, rule.window
        );
        self.active.store(back);
        self.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
        tracing::error!(rollback = %what, "policy rolled back on its own");
        *self.last_rollback.lock() = Some(what);
    }

    /// Run one call on the active engine and check the answer; on any
    /// failure ask the built-in policy the same, checked the same; turn the
    /// answer into what the host acts on (`accept`, told whether it is the
    /// policy's own), or take `safe` if even the built-in answer is refused.
    /// With a shadow running, the answer taken goes to it too (`shadowed`).
    pub(super) fn decide<T, U>(
        &self,
        call: &'static str,
        ask: impl Fn(&dyn PolicyEngine) -> Result<T, PolicyError>,
        check: impl Fn(&T, FrameLimits) -> Result<(), Rejection>,
        shadowed: impl FnOnce(&T) -> shadow::Asked,
        accept: impl FnOnce(T, bool) -> U,
        safe: impl FnOnce() -> U,
    ) -> U {
        let shadow = self.shadow.load();
        let accept = |t: T, own: bool| {
            if let Some(s) = shadow.as_ref() {
                s.ask(shadowed(&t));
            }
            accept(t, own)
        };
        // The guard keeps the engine this call started on alive across a
        // concurrent swap, and its limits with it; unlike a full load it
        // takes no reference count (two contended atomics a call) unless
        // the thread already holds several guards.
        let active = self.active.load();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let run = |a: &Active| {
            ask(a.engine.as_ref()).and_then(|t| {
                check(&t, a.limits)
                    .map(|()| t)
                    .map_err(PolicyError::Rejected)
            })
        };
        let e = match run(&active) {
            Ok(t) => return accept(t, true),
            Err(e) => e,
        };
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        let info = active.engine.info();
        let answer = run(&self.builtin);
        tracing::warn!(
            policy = %info.name, version = %info.version, call, error = %e,
            answered_by = if answer.is_ok() { "built-in policy" } else { "safe decision" },
            "policy call failed; the built-in policy decides instead"
        );
        self.failed(&active, call);
        match answer {
            Ok(t) => {
                self.stats.builtin_answers.fetch_add(1, Ordering::Relaxed);
                accept(t, false)
            }
            Err(e) => {
                tracing::error!(call, error = %e, "the built-in policy's answer was refused too");
                safe()
            }
        }
    }

    /// Frame bounds of the active policy (checked when it was loaded).
    pub fn limits(&self) -> FrameLimits {
        self.active.load().limits
    }
}
