//! The `regionsync` command line (docs/protocol.md §6): one module per
//! subcommand, each a struct of its flags with a `run()`; [`flags`] holds
//! the flag groups several of them share. [`main`] parses (with the
//! `--config` file spliced in), sets up logging and the runtime, runs the
//! subcommand, and turns an error into one line on stderr.
//!
//! Errors end the process with one line on stderr and a non-zero exit, never
//! a backtrace: a port in use, an unusable data directory, an unreachable
//! address or a refused policy are things a user meets, not bugs.

mod bench;
mod compile_policy;
mod config_file;
mod demo;
pub mod flags;
mod follower;
mod leader;
mod load;
mod node;
mod policy;
mod progress;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use regionsync::admin::AdminAccess;
use regionsync::policy_runtime::compiler;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, RollbackRule, WasmRuntime};

use flags::NodeArgs;

#[derive(Parser)]
#[command(
    name = "regionsync",
    version,
    // A flag given twice (config file, then command line) takes the last.
    args_override_self = true,
    about = "Keeps followers' copies of cluster region metadata in step with a leader (PD's region syncer, wire-compatible)"
)]
pub struct Cli {
    /// A TOML file of flags: a table per subcommand, keys named like the
    /// flags (`[leader] listen = "127.0.0.1:2379"`). Flags on the command
    /// line take precedence.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a leader: takes RegionHeartbeat, keeps the regions and the
    /// history ring, serves SyncRegions to followers.
    Leader(leader::LeaderCommand),
    /// Run a follower: keeps a durable copy of the leader's regions and
    /// serves reads once it is complete.
    Follower(follower::FollowerCommand),
    /// Run a node under etcd: it follows whoever etcd names leader and
    /// campaigns, when fit to, to lead (README: "Three nodes with etcd").
    Node(node::NodeCommand),
    /// Feed a leader region heartbeats with realistic churn (splits,
    /// merges, leader transfers, conf changes, flow updates).
    Load(load::LoadCommand),
    /// Start a leader and two followers on loopback, feed, churn, take
    /// followers down and back, swap policies under load, and check that
    /// every node ends with the same regions.
    Demo(demo::DemoCommand),
    /// Measure this machine: real nodes on loopback with real gRPC and
    /// redb, each figure over several runs (min, median, max) against its
    /// target (BENCHMARKS.md). `all` runs every scenario.
    Bench(bench::BenchCommand),
    /// Print a running node's status JSON (the same as GET /status).
    Status(status::StatusCommand),
    /// Manage a running node's policy.
    Policy(policy::PolicyCommand),
    /// Internal: the child process a node compiles a policy component in
    /// (`policy_runtime::compiler`): the component on stdin, the compiled
    /// artefact on stdout.
    #[command(name = regionsync::policy_runtime::compiler::CHILD_COMMAND, hide = true)]
    CompilePolicy(compile_policy::CompilePolicyCommand),
}

impl Command {
    /// Run the subcommand to its end.
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Leader(c) => c.run().await,
            Command::Follower(c) => c.run().await,
            Command::Node(c) => c.run().await,
            Command::Load(c) => c.run().await,
            Command::Demo(c) => c.run().await,
            Command::Bench(c) => c.run().await,
            Command::Status(c) => c.run().await,
            Command::Policy(c) => c.run().await,
            Command::CompilePolicy(_) => unreachable!("the compiler child runs before any runtime"),
        }
    }

    /// The log level when RUST_LOG says none: the demo, the load and the
    /// bench print their own story, their nodes' logs are for RUST_LOG=info.
    fn default_log_level(&self) -> &'static str {
        match self {
            Command::Demo(_) | Command::Load(_) | Command::Bench(_) => "warn",
            _ => "info",
        }
    }
}

/// The binary's whole life: parse, run, report.
pub fn main() -> ExitCode {
    crate::allocator::tune();
    let args = match config_file::args_with_config() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("regionsync: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    if let Command::CompilePolicy(child) = cli.command {
        return child.run();
    }
    compiler::compile_in_children_of(own_executable());
    init_logging(cli.log_format, cli.command.default_log_level());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("regionsync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.command.run());
    // Do not wait for blocked background work (e.g. a stalled stream).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal, never into files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// This executable, for the policy compiler's child: on Linux the running
/// image itself, so that the child is the same build even after the file
/// was replaced on disk (an upgrade while the node runs).
fn own_executable() -> PathBuf {
    if cfg!(target_os = "linux") {
        "/proc/self/exe".into()
    } else {
        std::env::current_exe().unwrap_or_else(|_| "regionsync".into())
    }
}

/// Refuse a data directory that is a file before anything else touches it.
fn check_data_dir(dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = dir.filter(|d| d.exists() && !d.is_dir()) {
        bail!(
            "data directory {} is a file, not a directory",
            dir.display()
        );
    }
    Ok(())
}

/// The node's policy runtime: `--policy` or the built-in default, with the
/// allow-list and the rollback rule of its flags.
fn load_policy(node: &NodeArgs, data_dir: Option<&Path>) -> anyhow::Result<Arc<PolicyRuntime>> {
    let wasm = WasmRuntime::new(WasmConfig {
        cache_dir: data_dir.map(|d| d.join("policy-cache")),
        ..Default::default()
    })?;
    let source = match &node.policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Builtin("default"),
    };
    let allow = node
        .policy_allow
        .iter()
        .map(|h| regionsync::policy_runtime::Sha256::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = PolicyRuntime::new_allowing(wasm, source, allow)?.with_rollback(RollbackRule {
        failures: node.policy_rollback_failures,
        window: std::time::Duration::from_secs(node.policy_rollback_window),
    });
    let info = runtime.info();
    tracing::info!(policy = %info.name, version = %info.version, "policy loaded");
    Ok(Arc::new(runtime))
}

/// Serve the admin interface on `--admin`, if given; where it listens.
async fn serve_admin<N: regionsync::admin::AdminNode>(
    args: &NodeArgs,
    node: Arc<N>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let access = match &args.admin_token_file {
        Some(file) => AdminAccess::from_token_file(file)?,
        None => AdminAccess::default(),
    };
    match args.admin.as_deref() {
        // The task serves for the life of the process.
        Some(addr) => Ok(Some(regionsync::admin::spawn(addr, node, access).await?.0)),
        None => Ok(None),
    }
}

/// Until SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Write `bytes` to `path`, or to standard output.
fn write_out(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match path {
        Some(p) => {
            std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display()))
        }
        None => std::io::stdout()
            .write_all(bytes)
            .context("cannot write to standard output"),
    }
}
