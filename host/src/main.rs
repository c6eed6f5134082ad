//! The `regionsync` command line (SPEC §6): one binary for every role.
//!
//! Errors end the process with one line on stderr and a non-zero exit, never
//! a backtrace: a port in use, an unusable data directory, an unreachable
//! address or a refused policy are things a user meets, not bugs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use regionsync::leader::{LeaderConfig, RunningLeader};
use regionsync::policy_runtime::wasm::WasmConfig;
use regionsync::policy_runtime::{PolicyRuntime, PolicySource, WasmRuntime};

#[derive(Parser)]
#[command(
    name = "regionsync",
    version,
    // A flag given twice (config file, then command line) takes the last.
    args_override_self = true,
    about = "Keeps followers' copies of cluster region metadata in step with a leader (PD's region syncer, wire-compatible)"
)]
struct Cli {
    /// A TOML file of flags: a table per subcommand, keys named like the
    /// flags (`[leader] listen = "127.0.0.1:2379"`). Flags on the command
    /// line take precedence.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a leader: takes RegionHeartbeat, keeps the regions and the
    /// history ring, serves SyncRegions to followers.
    Leader(LeaderArgs),
    /// Run a follower: keeps a durable copy of the leader's regions and
    /// serves reads once it is complete.
    Follower(FollowerArgs),
    /// Feed a leader region heartbeats with realistic churn (splits,
    /// merges, leader transfers, conf changes, flow updates).
    Load(LoadArgs),
    /// Start a leader and two followers on loopback, feed, churn, take
    /// followers down and back, swap policies under load, and check that
    /// every node ends with the same regions.
    Demo {
        /// Where the nodes keep their stores (a temporary directory if absent).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print a running node's status JSON (the same as GET /status).
    Status {
        /// The node's admin address (host:port).
        #[arg(long)]
        admin: String,
    },
    /// Manage a running node's policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Swap a running node's policy for the component in FILE; exits 0 only
    /// if the new policy is active.
    Swap {
        /// The node's admin address (host:port).
        #[arg(long)]
        admin: String,
        /// A policy component (.wasm).
        file: PathBuf,
    },
}

/// Flags every node takes.
#[derive(Args)]
struct NodeArgs {
    /// Address of the gRPC pdpb.PD service (a follower serves reads there).
    #[arg(long)]
    listen: String,
    /// Address of the admin HTTP interface (status, metrics, policy swap);
    /// none by default.
    #[arg(long)]
    admin: Option<String>,
    /// A policy component (.wasm); the built-in default when absent.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Cluster id. Without it a new leader makes one and a new follower
    /// learns its leader's; either keeps it, and refuses a different one.
    #[arg(long)]
    cluster_id: Option<u64>,
}

#[derive(Args)]
struct LeaderArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Directory of the leader's embedded store (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Node name, shown to followers and in logs.
    #[arg(long, default_value = "leader")]
    name: String,
    /// Records kept in the history ring.
    #[arg(long, default_value_t = 10_000)]
    history_capacity: usize,
    /// Limit on a full sync's snapshot, in bytes per second (0: none).
    #[arg(long, default_value_t = 0)]
    full_sync_rate: u64,
}

#[derive(Args)]
struct LoadArgs {
    /// The leader's gRPC URL.
    #[arg(long)]
    leader: String,
    /// Regions to create (when the leader holds none) and heartbeat once.
    #[arg(long)]
    regions: u64,
    /// Churn operations after the regions.
    #[arg(long, default_value_t = 0)]
    updates: u64,
    /// Heartbeats per second (0: as fast as the leader takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seed of the churn, to replay a run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct FollowerArgs {
    /// The leader's gRPC URL, e.g. http://127.0.0.1:2379.
    #[arg(long)]
    leader: String,
    #[command(flatten)]
    node: NodeArgs,
    /// Directory of the follower's embedded store (created if missing).
    #[arg(long, required_unless_present = "memory_only")]
    data_dir: Option<PathBuf>,
    /// Keep the copy in memory only (like PD's router service): every start
    /// is a full sync.
    #[arg(long, conflicts_with = "data_dir")]
    memory_only: bool,
    /// Node name, shown to the leader and in logs.
    #[arg(long, default_value = "follower")]
    name: String,
}

/// Refuse a data directory that is a file before anything else touches it.
fn check_data_dir(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
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

fn load_policy(
    path: Option<&PathBuf>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Arc<PolicyRuntime>> {
    let wasm = WasmRuntime::new(WasmConfig {
        cache_dir: data_dir.map(|d| d.join("policy-cache")),
        ..Default::default()
    })?;
    let source = match path {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Builtin("default"),
    };
    let runtime = PolicyRuntime::new(wasm, source)?;
    let info = runtime.info();
    tracing::info!(policy = %info.name, version = %info.version, "policy loaded");
    Ok(Arc::new(runtime))
}

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

async fn run_leader(args: LeaderArgs) -> anyhow::Result<()> {
    let node = &args.node;
    check_data_dir(Some(&args.data_dir))?;
    let listener = regionsync::server::bind(&node.listen).await?;
    let policy = load_policy(node.policy.as_ref(), Some(args.data_dir.as_path()))?;
    let mut config = LeaderConfig::new(&args.data_dir);
    config.cluster_id = node.cluster_id;
    config.name = args.name.clone();
    config.history_capacity = args.history_capacity;
    config.full_sync_rate = (args.full_sync_rate > 0).then_some(args.full_sync_rate);
    let leader = RunningLeader::start(config, policy, listener).await?;
    let admin = match &node.admin {
        Some(addr) => Some(regionsync::admin::spawn(addr, leader.shared().clone()).await?),
        None => None,
    };
    tracing::info!(
        listen = %leader.server.local_addr(),
        admin = ?admin.as_ref().map(|(a, _)| *a),
        cluster_id = leader.shared().cluster_id,
        "leader running"
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    leader.shutdown().await;
    Ok(())
}

async fn run_follower(args: FollowerArgs) -> anyhow::Result<()> {
    use regionsync::follower::{FollowerConfig, RunningFollower};
    let node = &args.node;
    check_data_dir(args.data_dir.as_deref())?;
    if !args.leader.starts_with("http://") && !args.leader.starts_with("https://") {
        bail!(
            "--leader must be a URL such as http://127.0.0.1:2379, not {:?}",
            args.leader
        );
    }
    let listener = regionsync::server::bind(&node.listen).await?;
    // A follower with nothing yet cannot do anything without its leader:
    // say so at once. One with a store keeps serving it and retries.
    let has_store = args
        .data_dir
        .as_ref()
        .is_some_and(|d| d.join(regionsync::storage::FILE_NAME).exists());
    if let Err(e) = regionsync::load::connect(&args.leader).await {
        if !has_store {
            return Err(e);
        }
        tracing::warn!(error = %format!("{e:#}"), "leader unreachable; serving the stored copy once caught up, retrying");
    }
    let policy = load_policy(node.policy.as_ref(), args.data_dir.as_deref())?;
    let mut config = FollowerConfig::new(&args.leader, args.data_dir.clone());
    config.cluster_id = node.cluster_id;
    config.name = args.name.clone();
    let follower = RunningFollower::start(config, policy, listener).await?;
    let admin = match &node.admin {
        Some(addr) => Some(regionsync::admin::spawn(addr, follower.shared().clone()).await?),
        None => None,
    };
    tracing::info!(
        listen = %follower.server.local_addr(),
        admin = ?admin.as_ref().map(|(a, _)| *a),
        leader = %args.leader,
        memory_only = args.memory_only,
        "follower running"
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        tokio::spawn(show_full_sync_progress(follower.shared().clone()));
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    follower.shutdown().await;
    Ok(())
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    use regionsync::load;
    let mut client = load::connect(&args.leader).await?;
    let members = client
        .get_members(regionsync_proto::pdpb::GetMembersRequest::default())
        .await
        .with_context(|| format!("{} is not a regionsync leader", args.leader))?
        .into_inner();
    let cluster_id = members.header.map_or(0, |h| h.cluster_id);
    let existing = load::scan_all(&mut client, cluster_id).await?;
    let mut generator = if existing.is_empty() {
        load::Generator::new(cluster_id, args.regions, args.seed)
    } else {
        load::Generator::resume(cluster_id, existing, args.seed)
            .context("the leader holds regions this generator did not write")?
    };
    let started = std::time::Instant::now();
    let mut heartbeats = generator.all();
    for _ in 0..args.updates {
        heartbeats.extend(generator.churn());
    }
    let sent = heartbeats.len();
    load::send(&mut client, heartbeats, args.rate).await?;
    let took = started.elapsed();
    println!(
        "sent {sent} heartbeats ({} regions, {} churn operations) in {took:.2?}: {:.0}/s",
        generator.len(),
        args.updates,
        sent as f64 / took.as_secs_f64()
    );
    // Acceptance: the leader must hold exactly the model's regions.
    let model: std::collections::HashMap<u64, regionsync_proto::metapb::Region> =
        generator.regions().into_iter().map(|r| (r.id, r)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = load::scan_all(&mut client, cluster_id).await?;
        let exact = held
            .iter()
            .filter(|(r, _)| model.get(&r.id) == Some(r))
            .count();
        if exact == model.len() || std::time::Instant::now() > deadline {
            println!(
                "leader holds {exact} of {} model regions exactly ({:.2}% accepted), {} regions in all",
                model.len(),
                100.0 * exact as f64 / model.len().max(1) as f64,
                held.len()
            );
            if exact != model.len() {
                bail!("the leader did not accept every change");
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A progress line on the terminal while a full sync runs: regions received
/// and the rate (the protocol does not announce the snapshot's total).
async fn show_full_sync_progress(shared: Arc<regionsync::follower::FollowerShared>) {
    use regionsync::policy_runtime::FollowerPhase;
    use std::sync::atomic::Ordering;
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} full sync from the leader: {pos} regions received ({per_sec}, {elapsed})",
    )
    .expect("a valid template");
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let syncing = shared.state.lock().phase == FollowerPhase::Snapshot;
        let received = shared.stats.snapshot_progress.load(Ordering::Relaxed);
        match (&bar, syncing) {
            (None, true) => {
                let b = indicatif::ProgressBar::new_spinner().with_style(style.clone());
                b.set_position(received);
                bar = Some(b);
            }
            (Some(b), true) => b.set_position(received),
            (Some(b), false) => {
                b.set_position(received);
                b.finish_and_clear();
                bar = None;
            }
            (None, false) => {}
        }
    }
}

async fn run_status(admin: &str) -> anyhow::Result<()> {
    let (code, body) = regionsync::admin_client::request(admin, "GET", "/status", &[]).await?;
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

async fn run_policy_swap(admin: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read policy file {}", file.display()))?;
    let (code, body) = regionsync::admin_client::request(admin, "POST", "/policy", &bytes).await?;
    let answer: regionsync::admin::SwapAnswer =
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "{admin} answered {code}: {}",
                String::from_utf8_lossy(&body).trim()
            )
        })?;
    match (answer.old, answer.new, answer.error) {
        (Some(old), Some(new), None) if code == 200 => {
            println!(
                "policy swapped: {} {} -> {} {}",
                old.name, old.version, new.name, new.version
            );
            Ok(())
        }
        (_, _, Some(error)) => bail!("policy refused; the old policy stays active: {error}"),
        _ => bail!("{admin} answered {code} without a result"),
    }
}

/// The command line with the `--config` file's flags for the subcommand
/// inserted right after the subcommand's name, so that the user's own
/// flags, coming later, win.
fn args_with_config() -> anyhow::Result<Vec<std::ffi::OsString>> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut file = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--config" && i + 1 < args.len() {
            file = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else if let Some(path) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(path));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    let Some(file) = file else { return Ok(args) };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", file.display()))?;
    let Some(pos) = args.iter().position(|a| {
        let a = a.to_string_lossy();
        ["leader", "follower", "load", "status", "policy", "demo"].contains(&a.as_ref())
    }) else {
        return Ok(args);
    };
    let command = args[pos].to_string_lossy().into_owned();
    let Some(section) = table.get(&command) else {
        return Ok(args);
    };
    let section = section
        .as_table()
        .with_context(|| format!("[{command}] in {} is not a table", file.display()))?;
    let mut extra = Vec::new();
    for (key, value) in section {
        let flag = format!("--{key}");
        match value {
            toml::Value::Boolean(true) => extra.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.extend([flag.into(), s.into()]),
            toml::Value::Integer(n) => extra.extend([flag.into(), n.to_string().into()]),
            other => bail!(
                "{key} in [{command}] of {}: {other} is not a string, number or boolean",
                file.display()
            ),
        }
    }
    args.splice(pos + 1..pos + 1, extra);
    Ok(args)
}

fn main() -> ExitCode {
    let args = match args_with_config() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("regionsync: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    // The demo prints its own story; its nodes' logs are for RUST_LOG=info.
    let default_level = match cli.command {
        Command::Demo { .. } | Command::Load(_) => "warn",
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
            Command::Load(args) => run_load(args).await,
            Command::Demo { data_dir } => match regionsync::demo::run(data_dir).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!("the nodes' digests differ")),
                Err(e) => Err(e),
            },
            Command::Status { admin } => run_status(&admin).await,
            Command::Policy {
                command: PolicyCommand::Swap { admin, file },
            } => run_policy_swap(&admin, &file).await,
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
