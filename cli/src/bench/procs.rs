//! Nodes as processes of the `regionsync` binary, for the scenarios that
//! measure memory: resident memory is per process, so each node gets one
//! (`regionsync_harness::process`), driven and read the way an operator
//! would: flags, the admin interface's status JSON, and /proc.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use regionsync_harness::cluster::{self, CLUSTER};
use regionsync_harness::eventually::poll_until;
use regionsync_harness::process::NodeProcess;
use regionsync_proto::pdpb::pd_client::PdClient;
use serde_json::Value;

/// A leader process with its store in `dir`.
pub async fn leader(binary: &Path, dir: &Path) -> anyhow::Result<NodeProcess> {
    NodeProcess::role(binary, "leader", dir, CLUSTER, &[]).await
}

/// A follower process of `leader_url`, durable in `dir`.
pub async fn follower(binary: &Path, dir: &Path, leader_url: &str) -> anyhow::Result<NodeProcess> {
    let extra = ["--leader".to_string(), leader_url.to_string()];
    NodeProcess::role(binary, "follower", dir, CLUSTER, &extra).await
}

/// A temporary directory's path for a node.
pub fn dir(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

/// Feed `n` regions to the leader process and wait until it holds them.
pub async fn populate(leader: &NodeProcess, n: u64) -> anyhow::Result<()> {
    let mut client = PdClient::connect(leader.url.clone()).await?;
    for hbs in cluster::heartbeat_chunks(n, 1) {
        let mut responses = client
            .region_heartbeat(tokio_stream::iter(hbs))
            .await?
            .into_inner();
        while responses.message().await?.is_some() {}
    }
    wait(leader, Duration::from_secs(300), |s| s["regions"] == n).await
}

/// Until `leader`'s follower `follower` is ready at the leader's index.
pub async fn synced(
    leader: &NodeProcess,
    follower: &NodeProcess,
    limit: Duration,
) -> anyhow::Result<()> {
    let want = leader.status_json().await?["next_index"].clone();
    wait(follower, limit, |s| {
        s["ready"] == true && s["next_index"] == want
    })
    .await
}

/// Until `p`'s status satisfies `ok`, looked at every 5 ms.
pub async fn wait(
    p: &NodeProcess,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    poll_until(limit, Duration::from_millis(5), || async {
        p.status_json().await.ok().filter(|s| ok(s)).map(drop)
    })
    .await
    .with_context(|| format!("{} did not get there within {limit:?}", p.name))
}

/// Bytes of the regions as protobuf: what the memory is weighed against.
pub fn encoded_size(n: u64) -> u64 {
    use prost::Message;
    (0..n)
        .map(|i| cluster::sample_region(i, n, 1).encoded_len() as u64)
        .sum()
}
