//! The policy runtime: the one door through which the host asks for every
//! sync decision, whoever answers it.
//!
//! A decision comes from a [`PolicyEngine`]: the Wasm component ([`wasm`]) in
//! production, or the guest library linked natively ([`native`]) for
//! comparison and tests. The runtime wraps the active engine and adds what the
//! engine must not be trusted with: every answer is validated ([`validate`]);
//! a trap, a blown deadline or memory limit, or a rejected answer becomes the
//! safe decision (leader: full sync; follower: reconnect and ask for a full
//! sync), logged with the policy's name and counted. Callers therefore get a
//! plain answer, never an error, and never a panic.
//!
//! Hot swap: [`PolicyRuntime::swap_file`] builds and self-checks the new engine
//! completely before an atomic pointer swap; a call in flight keeps the `Arc`
//! of the engine it started on and finishes there.

pub mod cache;
pub mod native;
mod validate;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
pub use regionsync_guest::{
    ConnectPlan, FollowerPhase, FollowerState, FrameDecision, FrameHeader, FrameKind, FrameLimits,
    PolicyInfo, ReconnectReason, RecordRange, RingView, RouteAction, RouteReason, Routing,
    SendStep, StreamPhase, StreamView,
};

pub use native::NativePolicy;
pub use wasm::{WasmPolicy, WasmRuntime};

/// The policy components built from `guest/` and embedded in the binary.
pub mod builtin {
    /// The SPEC behaviour; active unless `--policy` says otherwise.
    pub static DEFAULT: &[u8] = include_bytes!(concat!(
        env!("REGIONSYNC_COMPONENT_DIR"),
        "/policy_default.wasm"
    ));
    /// Any gap means a full sync; one full sync at a time; slower reconnects.
    pub static CONSERVATIVE: &[u8] = include_bytes!(concat!(
        env!("REGIONSYNC_COMPONENT_DIR"),
        "/policy_conservative.wasm"
    ));

    /// A built-in component by policy name.
    pub fn by_name(name: &str) -> Option<&'static [u8]> {
        match name {
            "default" => Some(DEFAULT),
            "conservative" => Some(CONSERVATIVE),
            _ => None,
        }
    }

    /// Directory holding the built components, including the hostile test
    /// fixtures (`policy_hostile_{loop,memory,trap}.wasm`).
    pub const COMPONENT_DIR: &str = env!("REGIONSYNC_COMPONENT_DIR");
}

/// Why a policy call gave no usable answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("exceeded its {0:?} deadline")]
    Deadline(Duration),
    #[error("exceeded its budget of {0} instructions")]
    Fuel(u64),
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("answer rejected: {0}")]
    Rejected(String),
}

/// Something that answers the decisions of `wit/policy.wit`.
///
/// Implementations report failures as errors; they never decide what to do
/// about them (that is the runtime's job, in one place).
pub trait PolicyEngine: Send + Sync {
    /// Name and version, as `describe` answered when the engine was built.
    fn info(&self) -> &PolicyInfo;
    fn route_request(&self, start_index: u64, ring: RingView) -> Result<Routing, PolicyError>;
    fn plan_send(&self, view: StreamView) -> Result<SendStep, PolicyError>;
    fn limits(&self) -> Result<FrameLimits, PolicyError>;
    fn admit_full_sync(&self, running: u32) -> Result<bool, PolicyError>;
    fn on_connect(&self, state: FollowerState) -> Result<ConnectPlan, PolicyError>;
    fn on_frame(
        &self,
        state: FollowerState,
        frame: FrameHeader,
    ) -> Result<FrameDecision, PolicyError>;
    fn backoff(&self, attempt: u32, seed: u64) -> Result<u64, PolicyError>;
}

/// A routing decision, and whether it is the runtime's fallback rather than
/// the policy's own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub routing: Routing,
    pub fallback: bool,
}

impl Routed {
    /// Label for logs and the `full_syncs` counters.
    pub fn reason(&self) -> &'static str {
        if self.fallback {
            "policy_fallback"
        } else {
            self.routing.reason.as_str()
        }
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct PolicyStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub fallbacks: AtomicU64,
    pub swaps: AtomicU64,
    pub failed_swaps: AtomicU64,
}

/// The longest reconnect delay the host accepts from a policy.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Reconnect delay used when the policy gives no usable answer.
pub const FALLBACK_BACKOFF: Duration = Duration::from_secs(1);

/// The active policy plus validation, fallback and swapping.
pub struct PolicyRuntime {
    active: ArcSwap<Box<dyn PolicyEngine>>,
    wasm: WasmRuntime,
    stats: PolicyStats,
}

/// Where the active policy came from, for loading at start.
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

impl PolicyRuntime {
    /// Start with the given policy; it must pass the same checks as a swap.
    pub fn new(wasm: WasmRuntime, source: PolicySource) -> anyhow::Result<Self> {
        let engine = Self::build(&wasm, &source)?;
        Ok(PolicyRuntime {
            active: ArcSwap::from_pointee(engine),
            wasm,
            stats: PolicyStats::default(),
        })
    }

    /// The built-in default component with a default Wasm runtime.
    pub fn with_default() -> anyhow::Result<Self> {
        Self::new(
            WasmRuntime::new(Default::default())?,
            PolicySource::Builtin("default"),
        )
    }

    fn build(wasm: &WasmRuntime, source: &PolicySource) -> anyhow::Result<Box<dyn PolicyEngine>> {
        let engine: Box<dyn PolicyEngine> = match source {
            PolicySource::Builtin(name) => {
                let bytes = builtin::by_name(name)
                    .ok_or_else(|| anyhow::anyhow!("no built-in policy named {name:?}"))?;
                Box::new(wasm.load(bytes)?)
            }
            PolicySource::File(path) => Box::new(wasm.load_file(path)?),
            PolicySource::Bytes(bytes) => Box::new(wasm.load(bytes)?),
            PolicySource::Native(name) => Box::new(
                NativePolicy::by_name(name)
                    .ok_or_else(|| anyhow::anyhow!("no native policy named {name:?}"))?,
            ),
        };
        self_check(engine.as_ref())?;
        Ok(engine)
    }

    /// Name and version of the active policy.
    pub fn info(&self) -> PolicyInfo {
        self.active.load().info().clone()
    }

    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    /// Replace the active policy with the component in `path`, only if it
    /// loads and passes the self-check; returns (old, new).
    pub fn swap_file(&self, path: &Path) -> anyhow::Result<(PolicyInfo, PolicyInfo)> {
        self.swap(PolicySource::File(path.to_path_buf()))
    }

    /// Replace the active policy, only if the new one loads and self-checks.
    pub fn swap(&self, source: PolicySource) -> anyhow::Result<(PolicyInfo, PolicyInfo)> {
        let engine = match Self::build(&self.wasm, &source) {
            Ok(engine) => engine,
            Err(e) => {
                self.stats.failed_swaps.fetch_add(1, Ordering::Relaxed);
                let active = self.info();
                tracing::warn!(
                    source = ?source, active = %active.name, error = %format!("{e:#}"),
                    "policy swap refused; the active policy stays"
                );
                return Err(e);
            }
        };
        let new = engine.info().clone();
        let old = self.active.swap(Arc::new(engine));
        let old = old.info().clone();
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            old = %format!("{} {}", old.name, old.version),
            new = %format!("{} {}", new.name, new.version),
            "policy swapped"
        );
        Ok((old, new))
    }

    /// Run one call on the active engine, validate the answer, and fall back
    /// to `safe` on any failure.
    fn decide<T>(
        &self,
        call: &'static str,
        ask: impl FnOnce(&dyn PolicyEngine) -> Result<T, PolicyError>,
        check: impl FnOnce(&T) -> Result<(), String>,
        safe: impl FnOnce() -> T,
    ) -> (T, bool) {
        // The guard keeps the engine this call started on alive across a
        // concurrent swap.
        let engine = self.active.load();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let answer = ask(engine.as_ref().as_ref())
            .and_then(|t| check(&t).map(|()| t).map_err(PolicyError::Rejected));
        match answer {
            Ok(t) => (t, false),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                let info = engine.info();
                tracing::warn!(
                    policy = %info.name, version = %info.version, call, error = %e,
                    "policy call failed; taking the safe decision"
                );
                (safe(), true)
            }
        }
    }

    /// Leader: route a request. Fallback: full sync.
    pub fn route_request(&self, start_index: u64, ring: RingView) -> Routed {
        let (routing, fallback) = self.decide(
            "route-request",
            |p| p.route_request(start_index, ring),
            |r| validate::routing(start_index, ring, r),
            || Routing {
                action: RouteAction::FullSync,
                reason: RouteReason::ZeroIndex,
            },
        );
        Routed { routing, fallback }
    }

    /// Leader: what a stream sends next. Fallback: end the stream, so the
    /// follower comes back and is routed afresh.
    pub fn plan_send(&self, view: StreamView) -> SendStep {
        let limits = self.limits();
        self.decide(
            "plan-send",
            |p| p.plan_send(view),
            |s| validate::send_step(view, limits, s),
            || SendStep::Exhausted,
        )
        .0
    }

    /// Frame bounds. Fallback: the SPEC's ceilings.
    pub fn limits(&self) -> FrameLimits {
        self.decide(
            "limits",
            |p| p.limits(),
            validate::limits,
            || FrameLimits {
                max_regions: regionsync_guest::MAX_FRAME_REGIONS,
                max_bytes: regionsync_guest::MAX_FRAME_BYTES,
            },
        )
        .0
    }

    /// Leader: may another full sync start? Fallback: yes (a full sync is
    /// the safe decision; refusing would strand the follower).
    pub fn admit_full_sync(&self, running: u32) -> bool {
        self.decide(
            "admit-full-sync",
            |p| p.admit_full_sync(running),
            |_| Ok(()),
            || true,
        )
        .0
    }

    /// Follower: what to ask for on connect. Fallback: a full sync.
    pub fn on_connect(&self, state: FollowerState) -> ConnectPlan {
        self.decide(
            "on-connect",
            |p| p.on_connect(state),
            |plan| validate::connect_plan(state, plan),
            || ConnectPlan {
                start_index: 0,
                state: FollowerState {
                    phase: FollowerPhase::Awaiting,
                    snapshot_regions: 0,
                    force_full_sync: true,
                    ready: state.ready && state.complete,
                    ..state
                },
            },
        )
        .0
    }

    /// Follower: what a frame means. Fallback: apply nothing, reconnect and
    /// ask for a full sync.
    pub fn on_frame(&self, state: FollowerState, frame: FrameHeader) -> FrameDecision {
        self.decide(
            "on-frame",
            |p| p.on_frame(state, frame),
            |d| validate::frame_decision(state, frame, d),
            || FrameDecision {
                state: FollowerState {
                    force_full_sync: true,
                    ..state
                },
                kind: FrameKind::Unexpected,
                reset_store: false,
                apply_from: None,
                record_history: false,
                claim_index: None,
                reconnect: Some(ReconnectReason::UnexpectedFrame),
            },
        )
        .0
    }

    /// Follower: delay before reconnect attempt `attempt`.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let ms = self
            .decide(
                "backoff",
                |p| p.backoff(attempt, seed),
                |ms| validate::backoff(*ms),
                || FALLBACK_BACKOFF.as_millis() as u64,
            )
            .0;
        Duration::from_millis(ms)
    }
}

/// Decisions every valid policy must take, whatever its tuning: they follow
/// from the SPEC, not from a policy's choices. A component that gets one
/// wrong is refused at load and at swap.
fn self_check(engine: &dyn PolicyEngine) -> anyhow::Result<()> {
    let name = engine.info().name.clone();
    let fail = |what: String| anyhow::anyhow!("policy {name:?} failed its self-check: {what}");
    let ring = RingView {
        first_index: 100,
        next_index: 200,
        capacity: 100,
    };
    let cases = [
        (0, RouteAction::FullSync, "index 0 must be a full sync"),
        (200, RouteAction::UpToDate, "next index must be up to date"),
        (
            50,
            RouteAction::FullSync,
            "behind the ring must be a full sync",
        ),
        (
            201,
            RouteAction::FullSync,
            "ahead of the leader must be a full sync",
        ),
    ];
    for (start, want, what) in cases {
        let r = engine
            .route_request(start, ring)
            .map_err(|e| fail(format!("route-request({start}) {e}")))?;
        if r.action != want {
            return Err(fail(format!("{what}, got {:?}", r.action)));
        }
        validate::routing(start, ring, &r).map_err(fail)?;
    }
    let limits = engine.limits().map_err(|e| fail(format!("limits {e}")))?;
    validate::limits(&limits).map_err(fail)?;
    let error_frame = FrameHeader {
        error: true,
        start_index: 200,
        region_count: 0,
    };
    let state = FollowerState::opened(200, true);
    let d = engine
        .on_frame(state, error_frame)
        .map_err(|e| fail(format!("on-frame {e}")))?;
    if d.reconnect.is_none() || d.apply_from.is_some() || d.reset_store {
        return Err(fail(
            "an error header must change nothing and reconnect".into(),
        ));
    }
    let plan = engine
        .on_connect(FollowerState::opened(0, false))
        .map_err(|e| fail(format!("on-connect {e}")))?;
    if plan.start_index != 0 {
        return Err(fail(
            "a follower with an incomplete store must ask for index 0".into(),
        ));
    }
    let ms = engine
        .backoff(0, 1)
        .map_err(|e| fail(format!("backoff {e}")))?;
    validate::backoff(ms).map_err(fail)?;
    engine
        .admit_full_sync(0)
        .map_err(|e| fail(format!("admit-full-sync {e}")))?;
    Ok(())
}
