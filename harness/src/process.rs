//! A node as a process of the `regionsync` binary, driven the way an
//! operator drives one: flags, signals, the admin interface's status, and
//! /proc. Used where a process is the point: crashes by SIGKILL, memory
//! per process, the command line itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use regionsync::status::Status;
use serde_json::Value;

use crate::admin_client;
use crate::eventually::poll_until;
use crate::ports::free_ports;

/// A child process, killed (SIGKILL) and reaped when dropped, so that a
/// test that fails leaves no process behind; its output is discarded.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Start `bin` with `args` and `RUST_LOG` set to `rust_log`.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        bin: &Path,
        args: &[S],
        rust_log: &str,
    ) -> std::io::Result<Self> {
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(KillOnDrop(child))
    }

    /// SIGKILL now, and reap: a crash.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One node process of the `regionsync` binary; killed when dropped.
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
    /// A process of `bin` with `args`, not started yet, serving gRPC on
    /// `grpc` and its admin interface on `admin` (loopback ports its args
    /// name), logging to `log`.
    pub fn new(
        name: &str,
        bin: &Path,
        args: Vec<String>,
        grpc: u16,
        admin: u16,
        log: PathBuf,
    ) -> Self {
        NodeProcess {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{grpc}"),
            admin: format!("127.0.0.1:{admin}"),
            args,
            bin: bin.to_path_buf(),
            log,
            child: None,
        }
    }

    /// `regionsync ROLE` (`leader`, `follower`) on fresh loopback ports,
    /// with its store in `dir` (its log beside it) and `extra` flags,
    /// started, once its admin port answers.
    pub async fn role(
        bin: &Path,
        role: &str,
        dir: &Path,
        cluster_id: u64,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let ports = free_ports(2)?;
        let (grpc, admin) = (ports[0], ports[1]);
        let mut args: Vec<String> = vec![role.into()];
        args.extend(["--listen".into(), format!("127.0.0.1:{grpc}")]);
        args.extend(["--data-dir".into(), dir.display().to_string()]);
        args.extend(["--admin".into(), format!("127.0.0.1:{admin}")]);
        args.extend(["--cluster-id".into(), cluster_id.to_string()]);
        args.extend_from_slice(extra);
        let log = dir.with_extension("log");
        let mut p = NodeProcess::new(role, bin, args, grpc, admin, log);
        p.start()?;
        let admin = p.admin.clone();
        let opened = poll_until(Duration::from_secs(120), Duration::from_millis(20), || {
            std::future::ready(std::net::TcpStream::connect(&admin).ok().map(drop))
        })
        .await;
        if opened.is_none() {
            bail!(
                "the {role} never opened its admin port (log: {})",
                p.log.display()
            );
        }
        Ok(p)
    }

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
            let ended = poll_until(within, Duration::from_millis(10), || {
                std::future::ready(child.try_wait().ok().flatten())
            })
            .await;
            if ended.is_none() {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {within:?} of SIGTERM", self.name);
            }
        }
        Ok(())
    }

    /// Its status, if it answers.
    pub async fn status(&self) -> Option<Status> {
        let asked = admin_client::request(&self.admin, "GET", "/status", &[], None);
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok((200, body))) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }

    /// Its status as JSON, for fields [`Status`] does not name.
    pub async fn status_json(&self) -> anyhow::Result<Value> {
        let (code, body) = admin_client::request(&self.admin, "GET", "/status", &[], None).await?;
        anyhow::ensure!(code == 200, "status answered {code}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// (peak, current) resident memory in bytes, from /proc (zeros when it
    /// does not run).
    pub fn rss(&self) -> (u64, u64) {
        let Some(child) = &self.child else {
            return (0, 0);
        };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
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
