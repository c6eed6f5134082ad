//! Shadow mode: a candidate policy is asked every decision the node takes,
//! and its answers are compared with the ones the node acted on, but never
//! acted on themselves. This is how an operator learns what a new policy
//! would do on live traffic before promoting it.
//!
//! The candidate never touches the live path: the node hands each decision
//! (inputs and the answer taken) to a bounded queue and goes on; one thread
//! of the shadow's own asks the candidate and tallies. So a candidate that
//! traps, loops to its deadline or is slow costs the node one enqueue per
//! decision; when the queue is full the decision is not shadowed, and is
//! counted as skipped, so memory stays bounded whatever the candidate does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    CatchUpStep, CatchUpView, ConnectPlan, FollowerState, FrameDecision, FrameHeader, LoadError,
    PolicyEngine, PolicyError, PolicyInfo, PolicyRuntime, PolicySource, RingView, Routing,
    SendStep, Sha256, StreamView, SyncRequest,
};

/// Decisions waiting for the candidate; beyond this they are skipped.
pub const QUEUE: usize = 4_096;
/// Examples kept per function (the first ones).
pub const EXAMPLES: usize = 3;

/// One decision the node took: its inputs and the answer it acted on.
#[derive(Debug, Clone, Copy)]
pub enum Asked {
    /// `route-request(request, ring)` and the routing taken.
    RouteRequest(SyncRequest, RingView, Routing),
    /// `plan-catch-up(view)` and the step taken.
    PlanCatchUp(CatchUpView, CatchUpStep),
    /// `plan-send(view)` and the step taken.
    PlanSend(StreamView, SendStep),
    /// `admit-full-sync(running)` and the answer taken.
    AdmitFullSync(u32, bool),
    /// `on-connect(state)` and the plan taken.
    OnConnect(FollowerState, ConnectPlan),
    /// `on-frame(state, frame)` and the decision taken.
    OnFrame(FollowerState, FrameHeader, FrameDecision),
    /// `backoff(attempt, seed)` and the delay taken, in milliseconds.
    Backoff(u32, u64, u64),
}

/// The functions a shadow compares, in the order the status lists them.
pub const FUNCTIONS: [&str; 7] = [
    "route-request",
    "plan-catch-up",
    "plan-send",
    "admit-full-sync",
    "on-connect",
    "on-frame",
    "backoff",
];

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("contract types serialize")
}

impl Asked {
    fn function(&self) -> usize {
        match self {
            Asked::RouteRequest(..) => 0,
            Asked::PlanCatchUp(..) => 1,
            Asked::PlanSend(..) => 2,
            Asked::AdmitFullSync(..) => 3,
            Asked::OnConnect(..) => 4,
            Asked::OnFrame(..) => 5,
            Asked::Backoff(..) => 6,
        }
    }

    /// Ask `candidate` the same: `Ok(None)` when it agrees, `Ok(Some(its
    /// answer))` when it does not, and its error when it failed.
    fn replay(&self, candidate: &dyn PolicyEngine) -> Result<Option<Value>, PolicyError> {
        fn differs<T: PartialEq + Serialize>(ours: T, theirs: T) -> Option<Value> {
            (ours != theirs).then(|| to_json(&theirs))
        }
        Ok(match *self {
            Asked::RouteRequest(r, ring, live) => differs(live, candidate.route_request(r, ring)?),
            Asked::PlanCatchUp(v, live) => differs(live, candidate.plan_catch_up(v)?),
            Asked::PlanSend(v, live) => differs(live, candidate.plan_send(v)?),
            Asked::AdmitFullSync(n, live) => differs(live, candidate.admit_full_sync(n)?),
            Asked::OnConnect(s, live) => differs(live, candidate.on_connect(s)?),
            Asked::OnFrame(s, f, live) => differs(live, candidate.on_frame(s, f)?),
            Asked::Backoff(a, seed, live) => differs(live, candidate.backoff(a, seed)?),
        })
    }

    /// Inputs and the live answer, WIT-shaped as in the conformance vectors.
    fn describe(&self) -> (Value, Value) {
        match self {
            Asked::RouteRequest(r, ring, live) => {
                (json!([to_json(r), to_json(ring)]), to_json(live))
            }
            Asked::PlanCatchUp(v, live) => (json!([to_json(v)]), to_json(live)),
            Asked::PlanSend(v, live) => (json!([to_json(v)]), to_json(live)),
            Asked::AdmitFullSync(n, live) => (json!([n]), json!(live)),
            Asked::OnConnect(s, live) => (json!([to_json(s)]), to_json(live)),
            Asked::OnFrame(s, f, live) => (json!([to_json(s), to_json(f)]), to_json(live)),
            Asked::Backoff(a, seed, live) => (json!([a, seed]), json!(live)),
        }
    }
}

/// Counts of one function's shadowed decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Decisions the candidate answered the same.
    pub same: u64,
    /// Decisions it answered otherwise.
    pub differ: u64,
    /// Calls on which it failed (trap, deadline, memory).
    pub failed: u64,
}

/// One disagreement or failure, for the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The function asked.
    pub function: String,
    /// Its inputs.
    pub args: Value,
    /// The answer the node acted on.
    pub live: Value,
    /// The candidate's answer, or `{"error": ...}`.
    pub candidate: Value,
}

/// What `/status` shows of a shadow (`policy.shadow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowStatus {
    /// The candidate's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its component.
    pub sha256: String,
    /// Decisions not shadowed because the candidate fell behind.
    pub skipped: u64,
    /// Counts by function (the contract's names).
    pub by_function: BTreeMap<String, Counts>,
    /// The first disagreements and failures, a few per function.
    pub examples: Vec<Example>,
}

#[derive(Default)]
struct Tally {
    /// Set when the shadow is dropped: what is still queued is not asked.
    stopped: AtomicBool,
    counts: [[AtomicU64; 3]; 7],
    skipped: AtomicU64,
    examples: Mutex<Vec<Example>>,
}

impl Tally {
    fn record(&self, asked: &Asked, outcome: Result<Option<Value>, PolicyError>) {
        let f = asked.function();
        let (slot, candidate) = match outcome {
            Ok(None) => (0, None),
            Ok(Some(theirs)) => (1, Some(theirs)),
            Err(e) => (2, Some(json!({ "error": e.to_string() }))),
        };
        self.counts[f][slot].fetch_add(1, Ordering::Relaxed);
        let Some(candidate) = candidate else { return };
        let mut examples = self.examples.lock();
        let name = FUNCTIONS[f];
        if examples.iter().filter(|e| e.function == name).count() < EXAMPLES {
            let (args, live) = asked.describe();
            examples.push(Example {
                function: name.to_string(),
                args,
                live,
                candidate,
            });
        }
    }
}

/// A candidate policy running in shadow.
pub struct Shadow {
    info: PolicyInfo,
    sha256: Sha256,
    /// Its component, for promotion.
    bytes: Arc<Vec<u8>>,
    queue: SyncSender<Asked>,
    tally: Arc<Tally>,
}

impl Shadow {
    /// Start shadowing with `candidate` (already loaded and self-checked),
    /// built from `bytes`.
    pub fn start(candidate: Box<dyn PolicyEngine>, bytes: Vec<u8>) -> std::io::Result<Self> {
        let (queue, rx) = sync_channel(QUEUE);
        let tally = Arc::new(Tally::default());
        let info = candidate.info().clone();
        let theirs = tally.clone();
        std::thread::Builder::new()
            .name(format!("shadow-{}", info.name))
            .spawn(move || run(candidate, rx, theirs))?;
        Ok(Shadow {
            info,
            sha256: Sha256::of(&bytes),
            bytes: Arc::new(bytes),
            queue,
            tally,
        })
    }

    /// Hand one decision to the candidate; never waits.
    pub fn ask(&self, asked: Asked) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(asked) {
            self.tally.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The candidate's name and version.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The candidate's component.
    pub fn bytes(&self) -> Arc<Vec<u8>> {
        self.bytes.clone()
    }

    /// What the status document shows.
    pub fn status(&self) -> ShadowStatus {
        let by_function = FUNCTIONS
            .iter()
            .zip(&self.tally.counts)
            .map(|(name, c)| {
                let n = |i: usize| c[i].load(Ordering::Relaxed);
                (
                    name.to_string(),
                    Counts {
                        same: n(0),
                        differ: n(1),
                        failed: n(2),
                    },
                )
            })
            .collect();
        ShadowStatus {
            name: self.info.name.clone(),
            version: self.info.version.clone(),
            sha256: self.sha256.to_string(),
            skipped: self.tally.skipped.load(Ordering::Relaxed),
            by_function,
            examples: self.tally.examples.lock().clone(),
        }
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.tally.stopped.store(true, Ordering::Relaxed);
    }
}

/// Shadow mode on the runtime: start, stop, look, promote.
impl PolicyRuntime {
    /// Load the component in `bytes` as a shadow (replacing any), after the
    /// same checks as a swap: every decision is then also asked of it and
    /// compared, never acted on.
    pub fn start_shadow(&self, bytes: Vec<u8>) -> Result<PolicyInfo, LoadError> {
        let candidate = Self::build(&self.wasm, &self.allow, &PolicySource::Bytes(bytes.clone()))?;
        let shadow = Shadow::start(candidate.engine, bytes).map_err(LoadError::Shadow)?;
        let info = shadow.info().clone();
        let old = self.shadow.swap(Some(Arc::new(shadow)));
        tracing::info!(
            candidate = %format!("{} {}", info.name, info.version),
            active = %self.info().name,
            replaced = ?old.map(|s| s.info().name.clone()),
            "policy shadow started: every decision is also asked of the candidate, never acted on"
        );
        Ok(info)
    }

    /// Drop the shadow; returns what it was.
    pub fn stop_shadow(&self) -> Option<PolicyInfo> {
        let old = self.shadow.swap(None)?;
        tracing::info!(candidate = %old.info().name, "policy shadow stopped");
        Some(old.info().clone())
    }

    /// The shadow's tallies, if one runs.
    pub fn shadow_status(&self) -> Option<ShadowStatus> {
        self.shadow.load().as_ref().map(|s| s.status())
    }

    /// Make the shadow the active policy (a swap, with its checks) and stop
    /// shadowing; returns (old, new). Without a shadow: `NoShadow`.
    pub fn promote(&self) -> Result<(PolicyInfo, PolicyInfo), LoadError> {
        let candidate = self.shadow.load_full().ok_or(LoadError::NoShadow)?;
        let swapped = self.swap(PolicySource::Bytes(candidate.bytes().to_vec()))?;
        // Only the shadow promoted: another may have been started meanwhile.
        let promoted = Some(candidate);
        self.shadow.compare_and_swap(&promoted, None);
        Ok(swapped)
    }
}

/// The shadow's thread: until the `Shadow` (the sender) is dropped, ask the
/// candidate each decision and tally the outcome.
fn run(candidate: Box<dyn PolicyEngine>, rx: Receiver<Asked>, tally: Arc<Tally>) {
    while let Ok(asked) = rx.recv() {
        if tally.stopped.load(Ordering::Relaxed) {
            break;
        }
        let outcome = asked.replay(candidate.as_ref());
        tally.record(&asked, outcome);
    }
    tracing::debug!(policy = %candidate.info().name, "shadow stopped");
}
