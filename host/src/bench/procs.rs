//! Nodes as processes of the `regionsync` binary, for the scenarios that
//! measure memory: resident memory is per process, so each node gets one.
//! They are driven and read the way an operator would: flags, the admin
//! interface's status JSON, and /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use regionsync_proto::pdpb::pd_client::PdClient;
use serde_json::Value;

use super::cluster;
use crate::tools::admin_client;
use crate::tools::ports::free_ports;

/// A node process; killed when dropped.
pub struct Proc {
    child: Child,
    /// Its admin address.
    pub admin: String,
    /// Its gRPC URL.
    pub url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(binary: &Path, role: &str, dir: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let ports = free_ports(2)?;
        let (grpc, admin) = (ports[0], ports[1]);
        let admin = format!("127.0.0.1:{admin}");
        let child = Command::new(binary)
            .arg(role)
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .arg("--data-dir")
            .arg(dir)
            .args(["--admin", &admin])
            .args(["--cluster-id", &cluster::CLUSTER.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let p = Proc {
            child,
            admin,
            url: format!("http://127.0.0.1:{grpc}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(&p.admin).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {role} never opened its admin port"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    /// A leader with its store in `dir`.
    pub fn leader(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(binary, "leader", dir, &[])
    }

    /// A follower of `leader_url`, durable in `dir`.
    pub fn follower(binary: &Path, dir: &Path, leader_url: &str) -> anyhow::Result<Self> {
        Self::spawn(
            binary,
            "follower",
            dir,
            &["--leader".into(), leader_url.into()],
        )
    }

    /// Its status JSON.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let (code, body) = admin_client::request(&self.admin, "GET", "/status", &[], None).await?;
        anyhow::ensure!(code == 200, "status answered {code}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// (peak, current) resident memory in bytes, from /proc.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kib("VmHWM:"), kib("VmRSS:"))
    }
}

/// A temporary directory's path for a node.
pub fn dir(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

/// Feed `n` regions to the leader process and wait until it holds them.
pub async fn populate(leader: &Proc, n: u64) -> anyhow::Result<()> {
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
pub async fn synced(leader: &Proc, follower: &Proc, limit: Duration) -> anyhow::Result<()> {
    let want = leader.status().await?["next_index"].clone();
    wait(follower, limit, |s| {
        s["ready"] == true && s["next_index"] == want
    })
    .await
}

/// Until `p`'s status satisfies `ok`, polled every 5 ms.
pub async fn wait(p: &Proc, limit: Duration, ok: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = p.status().await
            && ok(&s)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "a node did not get there within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bytes of the regions as protobuf: what the memory is weighed against.
pub fn encoded_size(n: u64) -> u64 {
    use prost::Message;
    (0..n)
        .map(|i| cluster::region(i, n, 1).encoded_len() as u64)
        .sum()
}
