//! A fault-injecting TCP proxy between a follower and its leader: it can cut
//! every connection (a dropped stream), stall the leader-to-follower
//! direction (a follower that stops reading), and be pointed at a restarted
//! leader's new address (so a follower's URL outlives a leader restart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One proxy, listening on loopback.
pub struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    stalled: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let stalled = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (target, stalled, conns) = (target.clone(), stalled.clone(), conns.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = *target.lock();
                    let stalled = stalled.clone();
                    let task = tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(to).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pipe(cr, sw, None);
                        let down = pipe(sr, cw, Some(stalled));
                        tokio::select! { _ = up => {}, _ = down => {} }
                    });
                    let mut conns = conns.lock();
                    conns.retain(|t| !t.is_finished());
                    conns.push(task);
                }
            }
        });
        Proxy {
            addr,
            target,
            stalled,
            conns,
            accept,
        }
    }

    /// The URL a follower dials.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// New connections go to `target`.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock() = target;
    }

    /// Drop every open connection, as a network fault would.
    pub fn cut(&self) {
        for task in self.conns.lock().drain(..) {
            task.abort();
        }
    }

    /// Stop (or resume) passing the leader's bytes on.
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
