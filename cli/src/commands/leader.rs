//! `regionsync leader`: a leader on its data directory until a signal.

use std::path::PathBuf;

use clap::Args;
use regionsync::leader::LeaderConfig;
use regionsync::role::RunningLeader;

use super::flags::{LeadingArgs, NodeArgs};
use super::{check_data_dir, load_policy, serve_admin, wait_for_signal};

#[derive(Args)]
pub struct LeaderCommand {
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

impl LeaderCommand {
    /// Run the leader until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let node = &self.node;
        check_data_dir(Some(&self.data_dir))?;
        let tls = node.tls.load()?;
        let listener = regionsync::server::bind(&node.listen).await?;
        let policy = load_policy(node, Some(self.data_dir.as_path()))?;
        let mut config = LeaderConfig::new(&self.data_dir);
        config.tls = tls;
        config.cluster_id = node.cluster_id;
        config.name = self.name.clone();
        self.leading.configure(&mut config);
        let leader = RunningLeader::start(config, policy, listener).await?;
        let admin = serve_admin(node, leader.shared().clone()).await?;
        tracing::info!(
            listen = %leader.server.local_addr(),
            admin = ?admin,
            cluster_id = leader.shared().cluster_id(),
            "leader running"
        );
        wait_for_signal().await;
        tracing::info!("stopping");
        leader.shutdown().await;
        Ok(())
    }
}
