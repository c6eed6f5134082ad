//! A real single-member etcd on loopback (Debian's `etcd-server`), for the
//! high-availability tests and `regionsync demo --ha`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::eventually::poll_until;
use crate::ports::free_ports;

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
        let url = self.url();
        let answers = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let url = url.clone();
            async move {
                let probe = async {
                    let mut c = etcd_client::Client::connect([url], None).await?;
                    c.get("/regionsync-probe", None).await
                };
                let answered = tokio::time::timeout(Duration::from_secs(1), probe).await;
                answered.is_ok_and(|r| r.is_ok()).then_some(())
            }
        })
        .await;
        if answers.is_none() {
            bail!(
                "etcd did not answer within 20 s (log: {})",
                self.dir.join("etcd.log").display()
            );
        }
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
