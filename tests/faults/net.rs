//! A fault-injecting TCP proxy between a follower and its leader: it can cut
//! every connection (a dropped stream), stall the leader-to-follower
//! direction (a follower that stops reading) or slow it down, and be pointed
//! at a restarted leader's new address (so a follower's URL outlives a leader
//! restart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Bytes from the leader that had to wait for a stall to end.
    held: Arc<AtomicU64>,
    /// The leader-to-follower direction's rate in bytes per second (0: as
    /// fast as it goes).
    rate: Arc<AtomicU64>,
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
        let held = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (target, stalled, conns) = (target.clone(), stalled.clone(), conns.clone());
            let held = held.clone();
            let rate = rate.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = *target.lock();
                    let stalled = stalled.clone();
                    let held = held.clone();
                    let rate = rate.clone();
                    let task = tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(to).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pipe(cr, sw, None);
                        let down = pipe(
                            sr,
                            cw,
                            Some(Down {
                                stalled,
                                held,
                                rate,
                            }),
                        );
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
            held,
            rate,
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

    /// Drop every open connection, as a network fault would; how many
    /// were open.
    pub fn cut(&self) -> usize {
        let mut open = 0;
        for task in self.conns.lock().drain(..) {
            open += usize::from(!task.is_finished());
            task.abort();
        }
        open
    }

    /// Pass the leader's bytes on at most at `bytes_per_sec` (0: no bound),
    /// so that a catch-up takes long enough to be seen part-way.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Bytes from the leader that waited for a stall to end, so far.
    pub fn held_back(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Stop (or resume) passing the leader's bytes on.
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.cut();
    }
}

/// The controls of the leader-to-follower direction.
struct Down {
    stalled: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    down: Option<Down>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(d) = &down
            && d.stalled.load(Ordering::Relaxed)
        {
            d.held.fetch_add(n as u64, Ordering::Relaxed);
            while d.stalled.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let rate = down.as_ref().map_or(0, |d| d.rate.load(Ordering::Relaxed));
        for piece in buf[..n].chunks(if rate > 0 { 4 << 10 } else { n }) {
            if to.write_all(piece).await.is_err() {
                return;
            }
            if rate > 0 {
                let secs = piece.len() as f64 / rate as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
    }
}
