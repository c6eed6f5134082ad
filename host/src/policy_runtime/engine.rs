//! What answers a decision ([`PolicyEngine`]) and the ways it can fail:
//! per call ([`PolicyError`]) or when a policy is loaded ([`LoadError`]).
//!
//! Engines report failures; they never decide what to do about them. That is
//! the runtime's job, in one place (`policy_runtime::PolicyRuntime::decide`).

use std::path::PathBuf;
use std::time::Duration;

use regionsync_guest::invariants::Rejection;

use super::{
    CatchUpStep, CatchUpView, ConnectPlan, FollowerState, FrameDecision, FrameHeader, FrameLimits,
    PolicyInfo, RingView, Routing, SendStep, StreamView, SyncRequest,
};

/// Why a policy call gave no usable answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The call ran past its wall-clock deadline.
    #[error("exceeded its {0:?} deadline")]
    Deadline(Duration),
    /// The call ran out of its instruction budget.
    #[error("exceeded its budget of {0} instructions")]
    Fuel(u64),
    /// The instance tried to grow its memory past the limit.
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(usize),
    /// The component trapped (or could not be instantiated).
    #[error("trapped: {0}")]
    Trap(String),
    /// The answer breaks one of the contract's invariants.
    #[error("answer rejected: {0}")]
    Rejected(Rejection),
}

/// Why a policy could not be loaded (at start or for a swap). The active
/// policy, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The component in a file was refused; `source` says why.
    #[error("policy file {} refused", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        #[source]
        source: Box<LoadError>,
    },
    /// Not a WebAssembly component (no header, a core module, or a binary
    /// the compiler refuses).
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component imports something; a policy gets no capabilities.
    #[error("the component imports {0:?}; a policy must import nothing")]
    Imports(Vec<String>),
    /// The component speaks another version of the contract.
    #[error(
        "the component was built against regionsync:policy@{theirs}, \
         but this host speaks regionsync:policy@{ours}"
    )]
    ContractVersion {
        /// The version the component exports.
        theirs: String,
        /// The version this host speaks.
        ours: &'static str,
    },
    /// The component does not export the decisions interface.
    #[error("the component does not export {want} (it exports {exports:?})")]
    MissingExport {
        /// The interface this host needs.
        want: String,
        /// What the component exports instead.
        exports: Vec<String>,
    },
    /// The component does not fit the policy world.
    #[error("cannot link the component: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(PolicyError),
    /// `describe` answered a name or version that cannot be shown safely.
    #[error("describe gave an unusable name or version: {name:?} {version:?}")]
    BadInfo {
        /// The name it gave.
        name: String,
        /// The version it gave.
        version: String,
    },
    /// A decision every valid policy must take came out wrong.
    #[error("policy {name:?} failed its self-check: {what}")]
    SelfCheck {
        /// The policy's name.
        name: String,
        /// The decision that came out wrong.
        what: String,
    },
    /// No policy of that name is embedded (or linked natively).
    #[error("no built-in policy named {0:?}")]
    UnknownPolicy(String),
    /// The component is not on the node's allow-list (`--policy-allow`).
    #[error(
        "policy component with sha256 {sha256} is not on this node's allow-list \
         ({allowed} allowed; see --policy-allow)"
    )]
    NotAllowed {
        /// The component's digest.
        sha256: String,
        /// How many digests the list holds.
        allowed: usize,
    },
    /// The Wasm engine could not be set up.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// `promote` without a shadow running.
    #[error("no shadow policy is running; start one with `regionsync policy shadow`")]
    NoShadow,
    /// The shadow's thread could not be started.
    #[error("cannot start the shadow's thread: {0}")]
    Shadow(#[source] std::io::Error),
}

/// Something that answers the decisions of `wit/policy.wit`.
pub trait PolicyEngine: Send + Sync {
    /// Name and version, as `describe` answered when the engine was built.
    fn info(&self) -> &PolicyInfo;
    /// Leader: route a request.
    fn route_request(&self, request: SyncRequest, ring: RingView) -> Result<Routing, PolicyError>;
    /// Leader: the next catch-up pass of a full or delta sync.
    fn plan_catch_up(&self, view: CatchUpView) -> Result<CatchUpStep, PolicyError>;
    /// Leader: what a stream sends next.
    fn plan_send(&self, view: StreamView) -> Result<SendStep, PolicyError>;
    /// Bounds of one frame.
    fn limits(&self) -> Result<FrameLimits, PolicyError>;
    /// Leader: may another full sync start while `running` stream?
    fn admit_full_sync(&self, running: u32) -> Result<bool, PolicyError>;
    /// Follower: what to ask for on (re)connect.
    fn on_connect(&self, state: FollowerState) -> Result<ConnectPlan, PolicyError>;
    /// Follower: what a received frame means.
    fn on_frame(
        &self,
        state: FollowerState,
        frame: FrameHeader,
    ) -> Result<FrameDecision, PolicyError>;
    /// Follower: reconnect delay in milliseconds.
    fn backoff(&self, attempt: u32, seed: u64) -> Result<u64, PolicyError>;
}
