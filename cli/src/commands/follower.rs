//! `regionsync follower`: a follower of one leader until a signal, with a
//! progress line on a terminal while it takes a full sync.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use regionsync::follower::FollowerConfig;
use regionsync::role::RunningFollower;

use super::flags::NodeArgs;
use super::{check_data_dir, load_policy, progress, serve_admin, wait_for_signal};

#[derive(Args)]
pub struct FollowerCommand {
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

impl FollowerCommand {
    /// Run the follower until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let node = &self.node;
        check_data_dir(self.data_dir.as_deref())?;
        if !self.leader.starts_with("http://") && !self.leader.starts_with("https://") {
            bail!(
                "--leader must be a URL such as http://127.0.0.1:2379, not {:?}",
                self.leader
            );
        }
        let tls = node.tls.load()?;
        let listener = regionsync::server::bind(&node.listen).await?;
        // A follower with nothing yet cannot do anything without its leader:
        // say so at once. One with a store keeps serving it and retries.
        let has_store = self
            .data_dir
            .as_ref()
            .is_some_and(|d| d.join(regionsync::storage::FILE_NAME).exists());
        if let Err(e) = regionsync_harness::load::connect_with(&self.leader, tls.as_ref()).await {
            if !has_store {
                return Err(e);
            }
            tracing::warn!(error = %format!("{e:#}"), "leader unreachable; serving the stored copy once caught up, retrying");
        }
        let policy = load_policy(node, self.data_dir.as_deref())?;
        let mut config = FollowerConfig::new(&self.leader, self.data_dir.clone());
        config.cluster_id = node.cluster_id;
        config.name = self.name.clone();
        config.tls = tls;
        let follower = RunningFollower::start(config, policy, listener).await?;
        let admin = serve_admin(node, follower.shared().clone()).await?;
        tracing::info!(
            listen = %follower.server.local_addr(),
            admin = ?admin,
            leader = %self.leader,
            memory_only = self.memory_only,
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
}
