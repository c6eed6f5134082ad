//! The `regionsync` command line (docs/protocol.md §6): one binary for every role.
//!
//! Errors end the process with one line on stderr and a non-zero exit, never
//! a backtrace: a port in use, an unusable data directory, an unreachable
//! address or a refused policy are things a user meets, not bugs.

mod args;
mod config_file;
mod load_cmd;
mod node_cmd;
mod policy_cmd;
mod progress;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use regionsync::admin::AdminAccess;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::node::{RunningFollower, RunningLeader};
use regionsync::policy_runtime::compiler;
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, RollbackRule, WasmRuntime};
use regionsync_cli::tools::demo;
use regionsync_harness::admin_client;

use args::{Cli, Command, FollowerArgs, LeaderArgs, LogFormat, NodeArgs, PolicyCommand};

/// mimalloc (`regionsync_cli::allocator` says why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Refuse a data directory that is a file before anything else touches it.
pub(crate) fn check_data_dir(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(dir) = dir.filter(|d| d.exists() && !d.is_dir()) {
        bail!(
            "data directory {} is a file, not a directory",
            dir.display()
        );
    }
    Ok(())
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

pub(crate) fn load_policy(
    node: &NodeArgs,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Arc<PolicyRuntime>> {
    let path = node.policy.as_ref();
    let wasm = WasmRuntime::new(WasmConfig {
        cache_dir: data_dir.map(|d| d.join("policy-cache")),
        ..Default::default()
    })?;
    let source = match path {
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

/// This executable, for the policy compiler's child: on Linux the running
/// image itself, so that the child is the same build even after the file
/// was replaced on disk (an upgrade while the node runs).
fn own_executable() -> std::path::PathBuf {
    if cfg!(target_os = "linux") {
        "/proc/self/exe".into()
    } else {
        std::env::current_exe().unwrap_or_else(|_| "regionsync".into())
    }
}

/// Serve the admin interface on `addr`, if one is given; where it listens.
pub(crate) async fn serve_admin<N: regionsync::admin::AdminNode>(
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

pub(crate) async fn wait_for_signal() {
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

async fn run_leader(args: LeaderArgs) -> anyhow::Result<()> {
    let node = &args.node;
    check_data_dir(Some(&args.data_dir))?;
    let tls = node.tls.load()?;
    let listener = regionsync::server::bind(&node.listen).await?;
    let policy = load_policy(node, Some(args.data_dir.as_path()))?;
    let mut config = LeaderConfig::new(&args.data_dir);
    config.tls = tls;
    config.cluster_id = node.cluster_id;
    config.name = args.name.clone();
    args.leading.configure(&mut config);
    let leader = RunningLeader::start(config, policy, listener).await?;
    let admin = serve_admin(node, leader.shared().clone()).await?;
    tracing::info!(
        listen = %leader.server.local_addr(),
        admin = ?admin,
        cluster_id = leader.shared().cluster_id,
        "leader running"
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    leader.shutdown().await;
    Ok(())
}

async fn run_follower(args: FollowerArgs) -> anyhow::Result<()> {
    let node = &args.node;
    check_data_dir(args.data_dir.as_deref())?;
    if !args.leader.starts_with("http://") && !args.leader.starts_with("https://") {
        bail!(
            "--leader must be a URL such as http://127.0.0.1:2379, not {:?}",
            args.leader
        );
    }
    let tls = node.tls.load()?;
    let listener = regionsync::server::bind(&node.listen).await?;
    // A follower with nothing yet cannot do anything without its leader:
    // say so at once. One with a store keeps serving it and retries.
    let has_store = args
        .data_dir
        .as_ref()
        .is_some_and(|d| d.join(regionsync::storage::FILE_NAME).exists());
    if let Err(e) = regionsync_harness::load::connect_with(&args.leader, tls.as_ref()).await {
        if !has_store {
            return Err(e);
        }
        tracing::warn!(error = %format!("{e:#}"), "leader unreachable; serving the stored copy once caught up, retrying");
    }
    let policy = load_policy(node, args.data_dir.as_deref())?;
    let mut config = FollowerConfig::new(&args.leader, args.data_dir.clone());
    config.cluster_id = node.cluster_id;
    config.name = args.name.clone();
    config.tls = tls;
    let follower = RunningFollower::start(config, policy, listener).await?;
    let admin = serve_admin(node, follower.shared().clone()).await?;
    tracing::info!(
        listen = %follower.server.local_addr(),
        admin = ?admin,
        leader = %args.leader,
        memory_only = args.memory_only,
        "follower running"
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        tokio::spawn(progress::show_full_sync_progress(follower.shared().clone()));
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    follower.shutdown().await;
    Ok(())
}

async fn run_status(admin: &str) -> anyhow::Result<()> {
    let (code, body) = admin_client::request(admin, "GET", "/status", &[], None).await?;
    if code != 200 {
        bail!(
            "{admin} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let status: regionsync::status::Status =
        serde_json::from_slice(&body).context("the status answer is not status JSON")?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

async fn run_bench(
    scenario: regionsync_cli::bench::Scenario,
    json: bool,
    runs: usize,
    regions: u64,
    smoke: bool,
) -> anyhow::Result<()> {
    use regionsync_cli::bench;
    let options = if smoke {
        bench::Options::smoke()
    } else {
        bench::Options {
            runs,
            regions,
            ..bench::Options::full()
        }
    };
    let machine = bench::Machine::this();
    let progress = |line: &str| eprintln!("{line}");
    let reports = bench::run(scenario, &options, &progress).await?;
    if json {
        let all = serde_json::json!({ "machine": machine, "scenarios": reports });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", bench::table(&machine, &reports));
    }
    Ok(())
}

/// Write `bytes` to `path`, or to standard output.
fn write_out(path: Option<&std::path::Path>, bytes: &[u8]) -> anyhow::Result<()> {
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

fn main() -> ExitCode {
    regionsync_cli::allocator::tune();
    let args = match config_file::args_with_config() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("regionsync: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    if let Command::CompilePolicy {
        fuel_metering,
        epoch_deadline,
    } = cli.command
    {
        let codegen = compiler::Codegen {
            fuel_metering,
            epoch_deadline,
        };
        return ExitCode::from(compiler::run_child(codegen) as u8);
    }
    compiler::compile_in_children_of(own_executable());
    // The demo prints its own story; its nodes' logs are for RUST_LOG=info.
    let default_level = match cli.command {
        Command::Demo { .. } | Command::Load(_) | Command::Bench { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("regionsync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Leader(args) => run_leader(args).await,
            Command::Follower(args) => run_follower(args).await,
            Command::Node(args) => node_cmd::run(args).await,
            Command::Load(args) => load_cmd::run(args).await,
            Command::Demo {
                data_dir,
                ha,
                kills,
            } => {
                let agreed = if ha {
                    regionsync_cli::tools::demo_ha::run(data_dir, kills).await
                } else {
                    demo::run(data_dir).await
                };
                match agreed {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(anyhow::anyhow!("the nodes' digests differ")),
                    Err(e) => Err(e),
                }
            }
            Command::Status { admin } => run_status(&admin).await,
            Command::CompilePolicy { .. } => unreachable!("the compiler child returns above"),
            Command::Bench {
                scenario,
                json,
                runs,
                regions,
                smoke,
            } => run_bench(scenario, json, runs, regions, smoke).await,
            Command::Policy {
                command:
                    PolicyCommand::Swap {
                        admin,
                        token_file,
                        file,
                    },
            } => policy_cmd::swap(&admin, token_file.as_deref(), &file).await,
            Command::Policy {
                command:
                    PolicyCommand::Shadow {
                        admin,
                        token_file,
                        file,
                        stop,
                    },
            } => policy_cmd::shadow(&admin, token_file.as_deref(), file.as_deref(), stop).await,
            Command::Policy {
                command: PolicyCommand::Promote { admin, token_file },
            } => policy_cmd::promote(&admin, token_file.as_deref()).await,
            Command::Policy {
                command: PolicyCommand::New { name, dir, sdk },
            } => policy_cmd::new(&name, dir, sdk),
            Command::Policy {
                command: PolicyCommand::Export { name, output },
            } => {
                let bytes =
                    regionsync::policy_runtime::builtin::by_name(&name).with_context(|| {
                        format!(
                            "no embedded policy named {name:?} (there are: {})",
                            regionsync::policy_runtime::builtin::NAMES.join(", ")
                        )
                    })?;
                write_out(output.as_deref(), bytes)
            }
            Command::Policy {
                command: PolicyCommand::List,
            } => policy_cmd::list(),
            Command::Policy {
                command: PolicyCommand::Check { file },
            } => policy_cmd::check(&file),
            Command::Policy {
                command: PolicyCommand::Diff { a, b, examples },
            } => policy_cmd::diff(&a, &b, examples),
            Command::Policy {
                command: PolicyCommand::Vectors { output },
            } => {
                let vectors = regionsync_harness::vectors::generate(
                    &regionsync_guest::Policy::default_policy(),
                    regionsync_harness::vectors::SEED,
                );
                let mut text = serde_json::to_string_pretty(&vectors)?;
                text.push('\n');
                write_out(output.as_deref(), text.as_bytes())
            }
        }
    });
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
