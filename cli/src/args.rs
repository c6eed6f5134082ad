//! The command line's shape: subcommands and flags, as clap parses them. The
//! flags of docs/protocol.md §6 are a contract; add flags, never rename them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Leader(LeaderArgs),
    /// Run a follower: keeps a durable copy of the leader's regions and
    /// serves reads once it is complete.
    Follower(FollowerArgs),
    /// Run a node under etcd: it follows whoever etcd names leader and
    /// campaigns, when fit to, to lead (README: "Three nodes with etcd").
    Node(HaArgs),
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
        /// Instead: three `regionsync node` processes under a real etcd
        /// (Debian's etcd-server), the leader killed under load, alternately
        /// with SIGKILL and SIGTERM, and a table of each failover.
        #[arg(long)]
        ha: bool,
        /// Failovers of `--ha`.
        #[arg(long, default_value_t = 4, requires = "ha")]
        kills: usize,
    },
    /// Measure this machine: real nodes on loopback with real gRPC and
    /// redb, each figure over several runs (min, median, max) against its
    /// target (BENCHMARKS.md). `all` runs every scenario.
    Bench {
        /// What to measure.
        #[arg(value_enum)]
        scenario: regionsync_cli::bench::Scenario,
        /// Print one JSON object instead of the table (fields: README).
        #[arg(long)]
        json: bool,
        /// Runs of each figure (at least 3 for a figure worth quoting).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Regions of full-sync, policy-overhead and memory.
        #[arg(long, default_value_t = 1_000_000)]
        regions: u64,
        /// Every scenario at a tiny size, in seconds: checks that the bench
        /// runs, measures nothing worth quoting.
        #[arg(long)]
        smoke: bool,
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
    /// Internal: the child process a node compiles a policy component in
    /// (`policy_runtime::compiler`): the component on stdin, the compiled
    /// artefact on stdout.
    #[command(name = regionsync::policy_runtime::compiler::CHILD_COMMAND, hide = true)]
    CompilePolicy {
        /// Fuel metering compiled in (the node's engine setting).
        #[arg(long, action = clap::ArgAction::Set)]
        fuel_metering: bool,
        /// Epoch checks compiled in (the node's engine setting).
        #[arg(long, action = clap::ArgAction::Set)]
        epoch_deadline: bool,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Swap a running node's policy for the component in FILE; exits 0 only
    /// if the new policy is active.
    Swap {
        /// The node's admin address (host:port).
        #[arg(long)]
        admin: String,
        /// File holding the node's admin token (its --admin-token-file).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// A policy component (.wasm).
        file: PathBuf,
    },
    /// Load a candidate policy beside the active one on a running node: every
    /// decision is also asked of it and compared, never acted on; `status`
    /// shows the disagreements (policy.shadow). `--stop` drops it.
    Shadow {
        /// The node's admin address (host:port).
        #[arg(long)]
        admin: String,
        /// File holding the node's admin token (its --admin-token-file).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The candidate component (.wasm).
        #[arg(required_unless_present = "stop", conflicts_with = "stop")]
        file: Option<PathBuf>,
        /// Stop shadowing (the candidate is dropped).
        #[arg(long)]
        stop: bool,
    },
    /// Make the running shadow the node's active policy (with a swap's
    /// checks) and stop shadowing.
    Promote {
        /// The node's admin address (host:port).
        #[arg(long)]
        admin: String,
        /// File holding the node's admin token (its --admin-token-file).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Write a new policy crate NAME (in ./NAME) that builds into a
    /// component with `cargo build --release --target wasm32-wasip2`.
    New {
        /// The policy's name (a-z, 0-9, '-').
        name: String,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The regionsync policy SDK, a checkout's guest/ (default: the
        /// checkout this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Write an embedded policy component out (`default`, `conservative`,
    /// `gap-fraction`).
    Export {
        /// The embedded policy's name.
        name: String,
        /// Where to write it (standard output when absent).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a component without any node: contract and imports, the
    /// self-check, every export on the conformance vectors' inputs and over
    /// seeded follower streams against the invariants, size and call cost.
    /// Exits non-zero on any violation. FILE may name an embedded policy.
    Check {
        /// A policy component (.wasm), or an embedded policy's name.
        file: String,
    },
    /// List the embedded policies with their versions, sizes and SHA-256.
    List,
    /// Say which decisions two components take differently, over the
    /// conformance vectors' inputs: counts by function and first examples.
    /// Each is a file or an embedded policy's name.
    Diff {
        /// The first component.
        a: String,
        /// The second component.
        b: String,
        /// Examples shown per function.
        #[arg(long, default_value_t = 2)]
        examples: usize,
    },
    /// Write the conformance vectors: inputs for every decision with the
    /// native default policy's answers, as JSON (docs/protocol.md §5).
    Vectors {
        /// Where to write them (standard output when absent).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// TLS material (docs/protocol.md §6): a node serves with --tls-cert and
/// --tls-key; with --tls-ca too it requires client certificates signed by
/// that CA, and checks its leader's certificate against it.
#[derive(Args, Clone, Default)]
pub struct TlsArgs {
    /// This node's (or client's) certificate, PEM.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key, PEM.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA of the cluster's certificates, PEM.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The loaded TLS settings, or `None` when no flag is given.
    pub fn load(&self) -> Result<Option<regionsync::tls::Tls>, regionsync::tls::TlsError> {
        regionsync::tls::Tls::load(&regionsync::tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        })
    }
}

/// Flags every node takes.
#[derive(Args)]
pub struct NodeArgs {
    /// Address of the gRPC pdpb.PD service (a follower serves reads there).
    #[arg(long)]
    pub listen: String,
    /// Address of the admin HTTP interface (status, metrics, policy swap);
    /// none by default. A bare port (9100) binds loopback.
    #[arg(long)]
    pub admin: Option<String>,
    /// File holding the bearer token that the admin interface's mutating
    /// endpoints (POST /policy) require; without it they are switched off.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// SHA-256 (hex) of a policy component this node may run; repeat for
    /// several. When any is given, --policy and every swap must match one
    /// (the built-in policies are always allowed).
    #[arg(long = "policy-allow", value_name = "SHA256")]
    pub policy_allow: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// A policy component (.wasm); the built-in default when absent.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A policy that fails this many calls within --policy-rollback-window
    /// is replaced by the one it replaced (0: never roll back).
    #[arg(long, default_value_t = 20)]
    pub policy_rollback_failures: u32,
    /// The window of --policy-rollback-failures, in seconds.
    #[arg(long, default_value_t = 60)]
    pub policy_rollback_window: u64,
    /// Cluster id. Without it a new leader makes one and a new follower
    /// learns its leader's; either keeps it, and refuses a different one.
    #[arg(long)]
    pub cluster_id: Option<u64>,
}

#[derive(Args)]
pub struct LeaderArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Directory of the leader's embedded store (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Node name, shown to followers and in logs.
    #[arg(long, default_value = "leader")]
    pub name: String,
    #[command(flatten)]
    pub leading: LeadingArgs,
}

/// What a node that leads keeps and sends: `leader`'s flags, and a node
/// under etcd's for when it leads.
#[derive(Args)]
pub struct LeadingArgs {
    /// Records kept in the history ring.
    #[arg(long, default_value_t = 10_000)]
    pub history_capacity: usize,
    /// Encoded bytes kept in the history ring (0: no bound); whichever of
    /// this and --history-capacity is reached first evicts the oldest
    /// record. Status shows how many seconds of changes the ring holds.
    #[arg(long, default_value_t = 64 << 20)]
    pub history_bytes: usize,
    /// A heartbeat whose flow (bytes written/read) changes only below this
    /// many digits makes no record (PD's flow-round-by-digit).
    #[arg(long, default_value_t = 3)]
    pub flow_round_digits: u32,
    /// Limit on a full sync's snapshot, in bytes per second (0: none).
    #[arg(long, default_value_t = 0)]
    pub full_sync_rate: u64,
}

impl LeadingArgs {
    /// Set these on a leader's configuration.
    pub fn configure(&self, config: &mut regionsync::leader::LeaderConfig) {
        config.history_capacity = self.history_capacity;
        config.history_bytes = self.history_bytes;
        config.flow_round_digits = self.flow_round_digits;
        config.full_sync_rate = (self.full_sync_rate > 0).then_some(self.full_sync_rate);
    }
}

#[derive(Args)]
pub struct HaArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// etcd's client URLs, comma-separated (e.g. http://127.0.0.1:2379).
    #[arg(long, value_delimiter = ',', required = true)]
    pub etcd: Vec<String>,
    /// Directory of the node's embedded store (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Node name, unique in the cluster: shown in etcd, to peers and in logs.
    #[arg(long)]
    pub name: String,
    /// TTL of the leadership lease, in seconds: a leader that dies is
    /// replaced after about this long (etcd's minimum applies).
    #[arg(long, default_value_t = 3)]
    pub lease_ttl: u64,
    #[command(flatten)]
    pub leading: LeadingArgs,
}

#[derive(Args)]
pub struct LoadArgs {
    /// The leader's gRPC URL; with nodes under etcd, several comma-separated
    /// node URLs: the load follows the leader (GetMembers) when it changes,
    /// and re-sends every region to the new one.
    #[arg(long)]
    pub leader: String,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Regions to create (when the leader holds none) and heartbeat once.
    #[arg(long)]
    pub regions: u64,
    /// Churn operations after the regions.
    #[arg(long, default_value_t = 0)]
    pub updates: u64,
    /// Churn for this many seconds instead of --updates operations.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Heartbeats per second (0: as fast as the leader takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seed of the churn, to replay a run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct FollowerArgs {
    /// The leader's gRPC URL, e.g. http://127.0.0.1:2379.
    #[arg(long)]
    pub leader: String,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Directory of the follower's embedded store (created if missing).
    #[arg(long, required_unless_present = "memory_only")]
    pub data_dir: Option<PathBuf>,
    /// Keep the copy in memory only (like PD's router service): every start
    /// is a full sync.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory_only: bool,
    /// Node name, shown to the leader and in logs.
    #[arg(long, default_value = "follower")]
    pub name: String,
}
