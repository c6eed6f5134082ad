//! `regionsync node --etcd`: a node whose role etcd decides
//! (docs/protocol.md §8). The flags become a leader's and a follower's
//! settings on one data directory; `regionsync::ha` does the rest.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;

use super::flags::{LeadingArgs, NodeArgs};
use super::{check_data_dir, load_policy, serve_admin, wait_for_signal};

#[derive(Args)]
pub struct NodeCommand {
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

impl NodeCommand {
    /// Run the node under etcd until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let node = &self.node;
        check_data_dir(Some(&self.data_dir))?;
        let Some(cluster_id) = node.cluster_id else {
            bail!("--etcd needs --cluster-id: the election's keys are per cluster");
        };
        if self.lease_ttl < 2 {
            bail!("--lease-ttl must be at least 2 seconds (etcd's minimum TTL)");
        }
        let tls = node.tls.load()?;
        let listener = regionsync::server::bind(&node.listen).await?;
        let policy = load_policy(node, Some(self.data_dir.as_path()))?;
        let mut leader = LeaderConfig::new(&self.data_dir);
        leader.tls = tls.clone();
        leader.cluster_id = Some(cluster_id);
        leader.name = self.name.clone();
        self.leading.configure(&mut leader);
        let mut follower = FollowerConfig::new("", Some(self.data_dir.clone()));
        follower.cluster_id = Some(cluster_id);
        follower.name = self.name.clone();
        follower.tls = tls;
        follower.history_capacity = self.leading.history_capacity;
        follower.history_bytes = self.leading.history_bytes;
        let lease_ttl = std::time::Duration::from_secs(self.lease_ttl);
        let config = regionsync::ha::HaConfig {
            etcd: self.etcd.clone(),
            cluster_id,
            lease_ttl,
            bootstrap_grace: lease_ttl,
            leader,
            follower,
        };
        let ha = regionsync::ha::HaNode::start(config, policy, listener).await?;
        let admin = serve_admin(node, ha.switch.clone()).await?;
        tracing::info!(
            listen = %ha.local_addr(), admin = ?admin, cluster_id, etcd = %self.etcd.join(","),
            "node running under etcd"
        );
        wait_for_signal().await;
        tracing::info!("stopping");
        ha.shutdown().await;
        Ok(())
    }
}
