//! Three real `regionsync node` processes and a real etcd on loopback: what
//! `regionsync demo --ha` runs and what the failover tests drive.
//!
//! Every node reaches etcd through its own [`Proxy`], so that a test can cut
//! one node off from etcd (a partition) while the others still see it.
//! Processes are killed with real signals: SIGKILL is a crash (the lease
//! must expire), SIGTERM a clean stop (the leader resigns).

use std::path::Path;
use std::time::Duration;

use regionsync::status::Status;

use crate::etcd::Etcd;
use crate::eventually::poll_until;
use crate::ports::free_ports;
use crate::process::NodeProcess;
use crate::proxy::Proxy;

/// etcd, three nodes, and a proxy per node.
pub struct HaCluster {
    /// The etcd they elect through.
    pub etcd: Etcd,
    /// The nodes.
    pub nodes: Vec<NodeProcess>,
    /// Node i's way to etcd.
    pub proxies: Vec<Proxy>,
    /// The cluster id.
    pub cluster_id: u64,
}

impl HaCluster {
    /// Start etcd and `n` nodes of `bin` under `dir`, with a lease of
    /// `lease_ttl_secs`.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        n: usize,
        lease_ttl_secs: u64,
    ) -> anyhow::Result<HaCluster> {
        let etcd = Etcd::start(&dir.join("etcd")).await?;
        let cluster_id = 4242;
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..n {
            proxies.push(Proxy::start(etcd.addr()).await?);
        }
        // Every node's ports at once, after the proxies hold theirs: a port
        // picked for one node and let go must not be handed to the next
        // node or a proxy before its node binds it.
        let ports = free_ports(2 * n)?;
        for (i, proxy) in (1..=n).zip(&proxies) {
            let (grpc, admin) = (ports[2 * i - 2], ports[2 * i - 1]);
            let name = format!("node{i}");
            let args = vec![
                "node".into(),
                "--etcd".into(),
                proxy.url(),
                "--cluster-id".into(),
                cluster_id.to_string(),
                "--name".into(),
                name.clone(),
                "--listen".into(),
                format!("127.0.0.1:{grpc}"),
                "--admin".into(),
                format!("127.0.0.1:{admin}"),
                "--data-dir".into(),
                dir.join(&name).display().to_string(),
                "--lease-ttl".into(),
                lease_ttl_secs.to_string(),
            ];
            let log = dir.join(format!("{name}.log"));
            let mut node = NodeProcess::new(&name, bin, args, grpc, admin, log);
            node.start()?;
            nodes.push(node);
        }
        Ok(HaCluster {
            etcd,
            nodes,
            proxies,
            cluster_id,
        })
    }

    /// The nodes' gRPC URLs, comma-separated (for `regionsync load`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every running node's status (`None` for one that does not answer).
    pub async fn statuses(&self) -> Vec<Option<Status>> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push(if n.is_running() {
                n.status().await
            } else {
                None
            });
        }
        out
    }

    /// The index of the node serving as leader (leader role, ready), other
    /// than `except`, once there is one; `None` after `within`.
    pub async fn wait_for_leader(&self, except: Option<usize>, within: Duration) -> Option<usize> {
        poll_until(within, Duration::from_millis(20), || async move {
            for (i, n) in self.nodes.iter().enumerate() {
                if Some(i) == except || !n.is_running() {
                    continue;
                }
                if let Some(s) = n.status().await
                    && s.role == "leader"
                    && s.ready
                {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    /// Wait until every running node is ready at one index with one digest;
    /// that (index, digest), or `None` after `within`.
    pub async fn wait_converged(&self, within: Duration) -> Option<(u64, String)> {
        poll_until(within, Duration::from_millis(100), || async move {
            let all = self.statuses().await;
            let running: Vec<_> = self
                .nodes
                .iter()
                .zip(&all)
                .filter(|(n, _)| n.is_running())
                .map(|(_, s)| s.clone())
                .collect();
            let first = running.first().cloned().flatten()?;
            let same = running.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s.ready && s.next_index == first.next_index && s.digest == first.digest
                })
            });
            let led = running.iter().flatten().any(|s| s.role == "leader");
            (same && led).then_some((first.next_index, first.digest))
        })
        .await
    }
}
