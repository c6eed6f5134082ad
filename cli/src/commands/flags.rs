//! The flag groups several subcommands share, flattened into each: TLS, a
//! node's flags, a leading node's, and an admin client's. The flags of
//! docs/protocol.md §6 are a contract; add flags, never rename them.

use std::path::PathBuf;

use clap::Args;

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

/// A client of a node's admin interface that may change it: its address
/// and the token its mutating endpoints require.
#[derive(Args)]
pub struct AdminClientArgs {
    /// The node's admin address (host:port).
    #[arg(long)]
    pub admin: String,
    /// File holding the node's admin token (its --admin-token-file).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}
