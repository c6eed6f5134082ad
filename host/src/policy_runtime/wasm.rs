//! The policy as a WebAssembly component, run by wasmtime.
//!
//! Containment is the point of this module: a component gets no imports (no
//! WASI, no host functions), every call runs under an epoch deadline and a
//! memory limit, and an instance that trapped is thrown away (a component
//! instance may not be re-entered after a trap) and a fresh one is made from
//! the pre-instantiated component on the next call. Instances live in a few
//! slots so that concurrent callers rarely queue behind one another, or
//! behind a call that is about to hit its deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use super::cache::{CacheOutcome, ComponentCache};
use super::compiler::{Codegen, CompileIn};
use super::epoch::Ticker;
use super::{
    CatchUpStep, CatchUpView, ConnectPlan, FollowerState, FrameDecision, FrameHeader, FrameLimits,
    LoadError, PolicyEngine, PolicyError, PolicyInfo, RingView, Routing, SendStep, StreamView,
    SyncRequest,
};
use regionsync_guest::CONTRACT_VERSION;

mod bindings {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
    });
}

use bindings::exports::regionsync::policy::decisions as wit;
regionsync_guest::wit_conversions!(bindings::exports::regionsync::policy::decisions);

/// The interface a policy component must export, at this host's version.
pub fn contract_export() -> String {
    format!("regionsync:policy/decisions@{CONTRACT_VERSION}")
}

/// Limits and caching for policy components.
///
/// Two bounds stop a runaway call. Fuel counts the component's own
/// instructions, so it is exact and immune to the host thread being
/// descheduled on a busy machine: it is what stops an endless loop, within
/// milliseconds. The epoch deadline is the wall-clock backstop.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Instructions one call may execute (a decision needs a few hundred).
    pub fuel: u64,
    /// Wall-clock bound on one call.
    pub deadline: Duration,
    /// Bound on a component instance's linear memory.
    pub memory_limit: usize,
    /// Where precompiled components are kept across runs (none: memory only).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Count fuel (the `fuel` bound). Off, only the deadline stops a loop.
    pub fuel_metering: bool,
    /// Interrupt calls at the wall-clock `deadline`. Off, only fuel does.
    pub epoch_deadline: bool,
    /// Where components are compiled (`compiler`); by default in a child
    /// process when this process's executable said it can run one.
    pub compile_in: CompileIn,
}

impl WasmConfig {
    /// The settings that change generated code.
    fn codegen(&self) -> Codegen {
        Codegen {
            fuel_metering: self.fuel_metering,
            epoch_deadline: self.epoch_deadline,
        }
    }
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            fuel: 5_000_000,
            deadline: Duration::from_millis(100),
            memory_limit: 32 << 20,
            cache_dir: None,
            fuel_metering: true,
            epoch_deadline: true,
            compile_in: CompileIn::default(),
        }
    }
}

/// The wasmtime engine, linker and component cache shared by every policy
/// this process loads, and the thread that drives epoch deadlines.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    config: WasmConfig,
    ticker: Ticker,
}

impl WasmRuntime {
    /// An engine with the given limits, and its deadline thread.
    pub fn new(config: WasmConfig) -> Result<Self, LoadError> {
        let cfg = engine_config(config.codegen());
        let engine = Engine::new(&cfg).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine, config.deadline)
            .map_err(|e| LoadError::Engine(format!("cannot start the deadline thread: {e}")))?;
        let linker = Linker::new(&engine);
        let cache = ComponentCache::new(
            &engine,
            config.cache_dir.clone(),
            config.compile_in.clone(),
            config.codegen(),
        );
        Ok(WasmRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                config,
                ticker,
            }),
        })
    }

    /// Load a component file.
    pub fn load_file(&self, path: &Path) -> Result<WasmPolicy, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&bytes).map_err(|e| LoadError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Compile (or fetch from cache), check the contract, instantiate and ask
    /// `describe`.
    pub fn load(&self, bytes: &[u8]) -> Result<WasmPolicy, LoadError> {
        self.load_traced(bytes).map(|(p, _)| p)
    }

    /// [`Self::load`], also telling where the compiled code came from.
    pub fn load_traced(&self, bytes: &[u8]) -> Result<(WasmPolicy, CacheOutcome), LoadError> {
        let rt = &self.inner;
        check_header(bytes)?;
        let (component, outcome) = rt
            .cache
            .get(&rt.engine, bytes)
            .map_err(LoadError::NotAComponent)?;
        check_contract(&rt.engine, &component)?;
        let pre = rt
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = bindings::PolicyPre::new(pre).map_err(|e| {
            LoadError::Link(format!(
                "the component does not fit the policy world: {e:#}"
            ))
        })?;
        let mut policy = WasmPolicy {
            runtime: self.clone(),
            pre,
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            info: PolicyInfo {
                name: "(loading)".into(),
                version: String::new(),
            },
        };
        let info: PolicyInfo = policy
            .call(|s, b| b.call_describe(s))
            .map_err(LoadError::Describe)?
            .into();
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic());
        if !printable(&info.name) || !printable(&info.version) {
            return Err(LoadError::BadInfo {
                name: info.name,
                version: info.version,
            });
        }
        policy.info = info;
        Ok((policy, outcome))
    }
}

/// The engine configuration for `codegen`: the node's engine and the
/// compiler child's are built by this one function, so that an artefact
/// one compiles the other accepts.
pub(super) fn engine_config(codegen: Codegen) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(codegen.epoch_deadline);
    cfg.consume_fuel(codegen.fuel_metering);
    // Decisions are synchronous and tiny; without concurrency support a
    // call costs about a third (measured: docs/design.md), and the
    // workspace builds wasmtime without it.
    cfg.concurrency_support(false);
    // A policy's code is a few comparisons; a call's cost is wasmtime's
    // component bookkeeping, not the code, and is the same unoptimised,
    // while compiling, which a swap to a new policy waits for, takes less
    // (BENCHMARKS.md, "Kept: policies are compiled unoptimised").
    cfg.cranelift_opt_level(wasmtime::OptLevel::None);
    // The same trade for the register allocator: the single-pass one
    // compiles a policy in about two thirds of the default backtracking
    // one's time, which a first swap under load waits for, for a call a
    // few percent dearer (BENCHMARKS.md, "Kept: policies compiled with the
    // single-pass register allocator").
    cfg.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
    cfg
}

/// Name the common wrong files plainly before the compiler does verbosely.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        return Err(LoadError::NotAComponent(
            "the file has no WebAssembly header".into(),
        ));
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::NotAComponent(
            "it is a core module (build the policy as a component for wasm32-wasip2)".into(),
        ));
    }
    Ok(())
}

/// Refuse anything that is not a capability-free policy at our contract
/// version, before running a single instruction of it.
fn check_contract(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !imports.is_empty() {
        return Err(LoadError::Imports(imports));
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let want = contract_export();
    if exports.contains(&want) {
        return Ok(());
    }
    if let Some(other) = exports
        .iter()
        .find(|e| e.starts_with("regionsync:policy/decisions"))
    {
        let theirs = other.split_once('@').map_or("(unversioned)", |(_, v)| v);
        return Err(LoadError::ContractVersion {
            theirs: theirs.to_string(),
            ours: CONTRACT_VERSION,
        });
    }
    Err(LoadError::MissingExport { want, exports })
}

/// Per-instance host state: only the memory limiter.
struct HostState {
    memory_limit: usize,
    hit_memory_limit: bool,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit_memory_limit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory_limit);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

struct Instance {
    store: Store<HostState>,
    bindings: bindings::Policy,
}

/// A loaded policy component.
pub struct WasmPolicy {
    runtime: WasmRuntime,
    pre: bindings::PolicyPre<HostState>,
    /// Instances, made on first use; a slot is emptied when its instance fails.
    slots: Box<[Mutex<Option<Instance>>]>,
    info: PolicyInfo,
}

/// Concurrent calls that get an instance of their own.
const SLOTS: usize = 4;

impl WasmPolicy {
    fn instantiate(&self) -> Result<Instance, PolicyError> {
        let cfg = &self.runtime.inner.config;
        let mut store = Store::new(
            &self.runtime.inner.engine,
            HostState {
                memory_limit: cfg.memory_limit,
                hit_memory_limit: false,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        if cfg.epoch_deadline {
            store.epoch_deadline_trap();
            store.set_epoch_deadline(self.runtime.inner.ticker.deadline_ticks());
        }
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(Instance { store, bindings }),
            Err(e) => Err(self.classify(e, &store)),
        }
    }

    /// Run one export under the deadline; a failed instance is discarded.
    ///
    /// The slot stays locked for the whole call: one lock round trip per
    /// call, and a caller only waits when every slot is busy.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &wit::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let mut slot = self
            .slots
            .iter()
            .find_map(|s| s.try_lock())
            .unwrap_or_else(|| self.slots[0].lock());
        let inst = match &mut *slot {
            Some(inst) => inst,
            empty => empty.insert(self.instantiate()?),
        };
        let config = &self.runtime.inner.config;
        if config.epoch_deadline {
            inst.store
                .set_epoch_deadline(self.runtime.inner.ticker.deadline_ticks());
        }
        if config.fuel_metering
            && let Err(e) = inst.store.set_fuel(config.fuel)
        {
            return Err(PolicyError::Trap(format!("cannot set fuel: {e}")));
        }
        let guest = inst.bindings.regionsync_policy_decisions();
        match f(&mut inst.store, guest) {
            Ok(r) => Ok(r),
            Err(e) => {
                let err = self.classify(e, &inst.store);
                // A component instance may not be re-entered after a trap.
                *slot = None;
                Err(err)
            }
        }
    }

    fn classify(&self, e: wasmtime::Error, store: &Store<HostState>) -> PolicyError {
        let cfg = &self.runtime.inner.config;
        if store.data().hit_memory_limit {
            PolicyError::Memory(cfg.memory_limit)
        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            PolicyError::Deadline(cfg.deadline)
        } else if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            PolicyError::Fuel(cfg.fuel)
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            // The trap alone: wasmtime's text adds a backtrace over lines.
            PolicyError::Trap(trap.to_string())
        } else {
            PolicyError::Trap(
                format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
    }
}

impl PolicyEngine for WasmPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }
    fn route_request(&self, request: SyncRequest, ring: RingView) -> Result<Routing, PolicyError> {
        self.call(|s, g| g.call_route_request(s, request.into(), ring.into()))
            .map(Into::into)
    }
    fn plan_catch_up(&self, view: CatchUpView) -> Result<CatchUpStep, PolicyError> {
        self.call(|s, g| g.call_plan_catch_up(s, view.into()))
            .map(Into::into)
    }
    fn plan_send(&self, view: StreamView) -> Result<SendStep, PolicyError> {
        self.call(|s, g| g.call_plan_send(s, view.into()))
            .map(Into::into)
    }
    fn limits(&self) -> Result<FrameLimits, PolicyError> {
        self.call(|s, g| g.call_limits(s)).map(Into::into)
    }
    fn admit_full_sync(&self, running: u32) -> Result<bool, PolicyError> {
        self.call(|s, g| g.call_admit_full_sync(s, running))
    }
    fn on_connect(&self, state: FollowerState) -> Result<ConnectPlan, PolicyError> {
        self.call(|s, g| g.call_on_connect(s, state.into()))
            .map(Into::into)
    }
    fn on_frame(
        &self,
        state: FollowerState,
        frame: FrameHeader,
    ) -> Result<FrameDecision, PolicyError> {
        self.call(|s, g| g.call_on_frame(s, state.into(), frame.into()))
            .map(Into::into)
    }
    fn backoff(&self, attempt: u32, seed: u64) -> Result<u64, PolicyError> {
        self.call(|s, g| g.call_backoff(s, attempt, seed))
    }
}
