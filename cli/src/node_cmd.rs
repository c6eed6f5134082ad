//! `regionsync node --etcd`: a node whose role etcd decides
//! (docs/protocol.md §8). The flags become a leader's and a follower's
//! settings on one data directory; `regionsync::ha` does the rest.

use anyhow::bail;
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;

use crate::args::HaArgs;
use crate::{check_data_dir, load_policy, serve_admin, wait_for_signal};

pub async fn run(args: HaArgs) -> anyhow::Result<()> {
    let node = &args.node;
    check_data_dir(Some(&args.data_dir))?;
    let Some(cluster_id) = node.cluster_id else {
        bail!("--etcd needs --cluster-id: the election's keys are per cluster");
    };
    if args.lease_ttl < 2 {
        bail!("--lease-ttl must be at least 2 seconds (etcd's minimum TTL)");
    }
    let tls = node.tls.load()?;
    let listener = regionsync::server::bind(&node.listen).await?;
    let policy = load_policy(node, Some(args.data_dir.as_path()))?;
    let mut leader = LeaderConfig::new(&args.data_dir);
    leader.tls = tls.clone();
    leader.cluster_id = Some(cluster_id);
    leader.name = args.name.clone();
    args.leading.configure(&mut leader);
    let mut follower = FollowerConfig::new("", Some(args.data_dir.clone()));
    follower.cluster_id = Some(cluster_id);
    follower.name = args.name.clone();
    follower.tls = tls;
    follower.history_capacity = args.leading.history_capacity;
    follower.history_bytes = args.leading.history_bytes;
    let lease_ttl = std::time::Duration::from_secs(args.lease_ttl);
    let config = regionsync::ha::HaConfig {
        etcd: args.etcd.clone(),
        cluster_id,
        lease_ttl,
        bootstrap_grace: lease_ttl,
        leader,
        follower,
    };
    let ha = regionsync::ha::HaNode::start(config, policy, listener).await?;
    let admin = serve_admin(node, ha.switch.clone()).await?;
    tracing::info!(
        listen = %ha.local_addr(), admin = ?admin, cluster_id, etcd = %args.etcd.join(","),
        "node running under etcd"
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    ha.shutdown().await;
    Ok(())
}
