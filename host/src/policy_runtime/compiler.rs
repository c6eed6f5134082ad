//! Where a policy component is compiled: in this process, or in a
//! short-lived child process of the same binary that hands back the
//! compiled artefact.
//!
//! Why a child: one compile leaves Cranelift's code pages and its worker
//! threads' heaps resident for the rest of the node's life (BENCHMARKS.md,
//! "Kept: policies compiled in a child process"), which a node
//! holding a million regions carries on top of them. And a component is
//! untrusted input: compiled in a child, under a CPU-time and an
//! address-space limit of its own, one that makes the compiler run away
//! takes down the child, not the node.
//!
//! The child is `regionsync compile-policy` (hidden): the component on
//! stdin, the artefact on stdout, the compiler's reason on stderr and exit
//! code 2 when the component does not compile. It builds its engine from
//! the same settings as the node's ([`super::wasm::engine_config`]), and
//! the node deserializes the artefact with its own engine, which refuses
//! one built by another engine configuration or wasmtime version (a binary
//! replaced on disk while the node runs): then the node compiles in
//! process, and says so in its log.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use wasmtime::Engine;

/// Where components are compiled.
#[derive(Debug, Clone)]
pub enum CompileIn {
    /// In this process.
    Process,
    /// In a child process: this executable, run as `compile-policy`.
    Child(PathBuf),
}

/// The executable that runs [`CHILD_COMMAND`], once one said it does.
static CHILD_EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();

/// Say that `exe` (this process's own executable) runs [`CHILD_COMMAND`]:
/// every runtime made afterwards with the default setting compiles in a
/// child of it. The `regionsync` binary says so first thing, so that its
/// nodes, its benches and its tools compile alike; a library user's
/// process, whose executable has no such command, compiles in process.
pub fn compile_in_children_of(exe: PathBuf) {
    let _ = CHILD_EXECUTABLE.set(exe);
}

impl Default for CompileIn {
    fn default() -> Self {
        match CHILD_EXECUTABLE.get() {
            Some(exe) => CompileIn::Child(exe.clone()),
            None => CompileIn::Process,
        }
    }
}

/// The hidden subcommand the child runs as.
pub const CHILD_COMMAND: &str = "compile-policy";

/// Exit code of a child whose component does not compile.
const NOT_A_COMPONENT: i32 = 2;

/// CPU seconds a child may use: a policy compiles in tens of milliseconds.
const CHILD_CPU_SECONDS: u64 = 30;

/// Address space a child may map: the compiler needs tens of MiB, wasmtime
/// and the allocator reserve more than they touch.
const CHILD_ADDRESS_SPACE: u64 = 8 << 30;

/// The engine settings that change generated code, as the child's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codegen {
    /// Fuel metering compiled in.
    pub fuel_metering: bool,
    /// Epoch checks compiled in.
    pub epoch_deadline: bool,
}

impl Codegen {
    fn args(self) -> [String; 2] {
        [
            format!("--fuel-metering={}", self.fuel_metering),
            format!("--epoch-deadline={}", self.epoch_deadline),
        ]
    }
}

/// Why a child gave no artefact.
pub(super) enum ChildFailed {
    /// The component does not compile: the compiler's reason.
    Refused(String),
    /// The child could not run or did not finish: worth compiling in process.
    Unavailable(String),
}

impl CompileIn {
    /// The artefact for `bytes`, compiled where this says.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        codegen: Codegen,
        bytes: &[u8],
    ) -> Result<Vec<u8>, ChildFailed> {
        match self {
            CompileIn::Process => in_process(engine, bytes).map_err(ChildFailed::Refused),
            CompileIn::Child(exe) => in_child(exe, codegen, bytes),
        }
    }
}

/// Compile with this process's engine.
pub(super) fn in_process(engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, String> {
    engine
        .precompile_component(bytes)
        .map_err(|e| super::cache::one_line(&e))
}

fn in_child(exe: &PathBuf, codegen: Codegen, bytes: &[u8]) -> Result<Vec<u8>, ChildFailed> {
    let mut child = Command::new(exe)
        .arg(CHILD_COMMAND)
        .args(codegen.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ChildFailed::Unavailable(format!("cannot start {}: {e}", exe.display())))?;
    // The component is written from another thread while this one reads,
    // so that neither pipe can fill and stall the other side. A child that
    // stopped early closes its stdin: the write fails, and the exit status
    // says why.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let output = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(bytes));
        child.wait_with_output()
    })
    .map_err(|e| ChildFailed::Unavailable(format!("lost the compiler process: {e}")))?;
    let reason = String::from_utf8_lossy(&output.stderr).trim().to_string();
    match output.status.code() {
        Some(0) => Ok(output.stdout),
        Some(NOT_A_COMPONENT) => Err(ChildFailed::Refused(reason)),
        Some(code) => Err(ChildFailed::Unavailable(format!(
            "the compiler process failed (exit code {code}): {reason}"
        ))),
        None => Err(ChildFailed::Refused(format!(
            "the compiler process was stopped ({}) within its limits of {CHILD_CPU_SECONDS} \
             CPU seconds and {} GiB: {reason}",
            signal_of(&output.status),
            CHILD_ADDRESS_SPACE >> 30
        ))),
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(s) => format!("signal {s}"),
        None => "no exit code".into(),
    }
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> String {
    "no exit code".into()
}

/// The child's side: limits first, then the component from stdin, the
/// artefact to stdout. Returns the process's exit code.
pub fn run_child(codegen: Codegen) -> i32 {
    limit_self();
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("cannot read the component: {e}");
        return 1;
    }
    let engine = match Engine::new(&super::wasm::engine_config(codegen)) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("cannot make the compiler's engine: {e:#}");
            return 1;
        }
    };
    match in_process(&engine, &bytes) {
        Ok(artefact) => match std::io::stdout().lock().write_all(&artefact) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cannot write the artefact: {e}");
                1
            }
        },
        Err(reason) => {
            eprintln!("{reason}");
            NOT_A_COMPONENT
        }
    }
}

#[cfg(unix)]
fn limit_self() {
    for (resource, value) in [
        (libc::RLIMIT_CPU, CHILD_CPU_SECONDS),
        (libc::RLIMIT_AS, CHILD_ADDRESS_SPACE),
    ] {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            eprintln!(
                "warning: cannot limit the compiler process: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(not(unix))]
fn limit_self() {}
