//! Three real `regionsync node` processes and a real etcd on loopback: what
//! `regionsync demo --ha` runs and what the failover tests drive.
//!
//! Every node reaches etcd through its own [`Proxy`], so that a test can cut
//! one node off from etcd (a partition) while the others still see it.
//! Processes are killed with real signals: SIGKILL is a crash (the lease
//! must expire), SIGTERM a clean stop (the leader resigns).
//!
//! Long file: etcd, the proxy and the node processes are one harness; each
//! part is used only with the others, so they read best together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

use super::ports::free_ports;
use crate::status::Status;

/// A single-member etcd on loopback, in its own data directory.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Start `etcd` (Debian's `etcd-server`) and wait until it answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let ports = free_ports(2)?;
        let mut etcd = Etcd {
            child: None,
            dir: dir.to_path_buf(),
            client_port: ports[0],
            peer_port: ports[1],
        };
        etcd.restart().await?;
        Ok(etcd)
    }

    /// etcd's version line (`etcd --version`).
    pub fn version() -> anyhow::Result<String> {
        let out = Command::new("etcd")
            .arg("--version")
            .output()
            .context("etcd is not installed (./setup installs Debian's etcd-server)")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string())
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// Stop it (SIGKILL); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same ports and data, and wait until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::File::create(self.dir.join("etcd.log"))?;
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=regionsync-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=regionsync-test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start etcd (./setup installs Debian's etcd-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = async {
                let mut c = etcd_client::Client::connect([self.url()], None).await?;
                c.get("/regionsync-probe", None).await
            };
            if tokio::time::timeout(Duration::from_secs(1), probe)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not answer within 20 s (log: {})",
                    self.dir.join("etcd.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy that can be cut: every open connection is dropped and new
/// ones are closed at once, as a network partition would. It can also hold
/// every answer (bytes from the target) for a while before passing it on, as
/// an etcd electing its own leader does: requests still reach etcd on time,
/// the answers come late.
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    answer_delay_ms: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forward a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let answer_delay_ms = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (cut, conns, delay) = (cut.clone(), conns.clone(), answer_delay_ms.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::Acquire) {
                        drop(inbound);
                        continue;
                    }
                    let delay = delay.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(target).await {
                            forward(inbound, outbound, delay).await;
                        }
                    });
                    let mut conns = conns.lock();
                    conns.retain(|c| !c.is_finished());
                    conns.push(conn);
                }
            })
        };
        Ok(Proxy {
            addr,
            cut,
            answer_delay_ms,
            conns,
            task,
        })
    }

    /// Deliver every answer `delay` after the target sent it, in order
    /// (zero: at once), on open connections and new ones.
    pub fn delay_answers(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.answer_delay_ms.store(ms, Ordering::Release);
    }

    /// Its URL, for a node's `--etcd`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Partition: drop every connection, refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    /// Heal the partition.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }
}

/// Requests pass at once; each chunk of answers is passed on the answer
/// delay after it was read (the delay read when it arrives), in order.
async fn forward(inbound: TcpStream, outbound: TcpStream, delay_ms: Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
        let _ = out_write.shutdown().await;
    };
    // Bounded: a reader that falls far behind holds the target back.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let read_answers = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match out_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = tokio::time::Instant::now()
                        + Duration::from_millis(delay_ms.load(Ordering::Acquire));
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write_answers = async {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if in_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = in_write.shutdown().await;
    };
    tokio::join!(requests, read_answers, write_answers);
}

/// One `regionsync node` process.
pub struct NodeProcess {
    /// Its name.
    pub name: String,
    /// Its gRPC URL.
    pub url: String,
    /// Its admin address.
    pub admin: String,
    args: Vec<String>,
    bin: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Start (or start again) the process.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process runs (or was asked to stop and has not been waited for).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGTERM (a clean stop) without waiting for it to take effect.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        self.signal("-TERM")
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a node frozen in place, as a
    /// long pause of its machine would.
    pub fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        self.signal(if frozen { "-STOP" } else { "-CONT" })
    }

    /// `kill SIGNAL pid`, if the process runs.
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()?;
            if !status.success() {
                bail!("kill {signal} {} failed", child.id());
            }
        }
        Ok(())
    }

    /// Wait for the process to end after [`NodeProcess::terminate`]; kill
    /// it if it takes longer than `within`.
    pub async fn wait_stopped(&mut self, within: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + within;
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{} did not stop within {within:?} of SIGTERM", self.name);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    /// Its status, if it answers.
    pub async fn status(&self) -> Option<Status> {
        let asked = super::admin_client::request(&self.admin, "GET", "/status", &[], None);
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok((200, body))) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

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
            let mut node = NodeProcess {
                url: format!("http://127.0.0.1:{grpc}"),
                admin: format!("127.0.0.1:{admin}"),
                log: dir.join(format!("{name}.log")),
                name,
                args,
                bin: bin.to_path_buf(),
                child: None,
            };
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
        let deadline = Instant::now() + within;
        loop {
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
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until every running node is ready at one index with one digest;
    /// that (index, digest), or `None` after `within`.
    pub async fn wait_converged(&self, within: Duration) -> Option<(u64, String)> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.statuses().await;
            let running: Vec<_> = self
                .nodes
                .iter()
                .zip(&all)
                .filter(|(n, _)| n.is_running())
                .map(|(_, s)| s.clone())
                .collect();
            if let Some(first) = running.first().cloned().flatten()
                && running.iter().all(|s| {
                    s.as_ref().is_some_and(|s| {
                        s.ready && s.next_index == first.next_index && s.digest == first.digest
                    })
                })
                && running
                    .iter()
                    .filter_map(|s| s.as_ref())
                    .any(|s| s.role == "leader")
            {
                return Some((first.next_index, first.digest));
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
