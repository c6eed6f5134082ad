//! A fault-injecting TCP proxy on loopback, the one every harness puts
//! between two parts: a follower and its leader (a dropped stream, a reader
//! that stops reading or reads slowly, a leader restarted on a new address)
//! or a node and etcd (a partition, an etcd whose answers come late).
//!
//! "Answers" are the bytes from the target back to whoever dialled the
//! proxy: a leader's frames to its follower, etcd's replies to a node.
//! Requests always pass at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The controls every connection reads as it goes.
#[derive(Default)]
struct Controls {
    /// New connections go here.
    target: Mutex<Option<SocketAddr>>,
    /// Partitioned: new connections are closed at once.
    partitioned: AtomicBool,
    /// Answers wait while this is set.
    stalled: AtomicBool,
    /// Bytes of answers that had to wait for a stall to end.
    held: AtomicU64,
    /// Answers pass at most at this many bytes per second (0: no bound).
    rate: AtomicU64,
    /// Each answer is passed on this many milliseconds after the target
    /// sent it, in order.
    delay_ms: AtomicU64,
}

/// One proxy, listening on a loopback port of its own.
pub struct Proxy {
    addr: SocketAddr,
    controls: Arc<Controls>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let controls = Arc::new(Controls {
            target: Mutex::new(Some(target)),
            ..Default::default()
        });
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (controls, conns) = (controls.clone(), conns.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = *controls.target.lock();
                    let Some(to) = to.filter(|_| !controls.partitioned.load(Ordering::Acquire))
                    else {
                        drop(client);
                        continue;
                    };
                    let task = tokio::spawn(connect(client, to, controls.clone()));
                    let mut conns = conns.lock();
                    conns.retain(|t| !t.is_finished());
                    conns.push(task);
                }
            }
        });
        Ok(Proxy {
            addr,
            controls,
            conns,
            accept,
        })
    }

    /// The URL to dial (a follower's `--leader`, a node's `--etcd`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// New connections go to `target`.
    pub fn retarget(&self, target: SocketAddr) {
        *self.controls.target.lock() = Some(target);
    }

    /// Drop every open connection, as a network fault would; how many
    /// were open. New connections still pass.
    pub fn cut(&self) -> usize {
        let mut open = 0;
        for task in self.conns.lock().drain(..) {
            open += usize::from(!task.is_finished());
            task.abort();
        }
        open
    }

    /// A partition: drop every connection and refuse new ones until
    /// [`Proxy::heal`].
    pub fn partition(&self) {
        self.controls.partitioned.store(true, Ordering::Release);
        self.cut();
    }

    /// End a partition.
    pub fn heal(&self) {
        self.controls.partitioned.store(false, Ordering::Release);
    }

    /// Stop (or resume) passing answers on.
    pub fn stall(&self, on: bool) {
        self.controls.stalled.store(on, Ordering::Release);
    }

    /// Bytes of answers that waited for a stall to end, so far.
    pub fn held_back(&self) -> u64 {
        self.controls.held.load(Ordering::Relaxed)
    }

    /// Pass answers on at most at `bytes_per_sec` (0: no bound), so that a
    /// catch-up takes long enough to be seen part-way.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.controls.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Deliver every answer `delay` after the target sent it, in order
    /// (zero: at once), on open connections and new ones: an etcd electing
    /// its own leader, whose answers come late.
    pub fn delay_answers(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.controls.delay_ms.store(ms, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.cut();
    }
}

async fn connect(client: TcpStream, to: SocketAddr, controls: Arc<Controls>) {
    let Ok(server) = TcpStream::connect(to).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        requests(client_read, server_write),
        answers(server_read, client_write, controls)
    );
}

async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Answers are read, held while stalled and paced to the rate (so that the
/// target's sends back up as a slow reader's would), then written by a
/// second half that honours the delay; the queue between them is bounded.
async fn answers(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, controls: Arc<Controls>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let read = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if controls.stalled.load(Ordering::Acquire) {
                controls.held.fetch_add(n as u64, Ordering::Relaxed);
                while controls.stalled.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let rate = controls.rate.load(Ordering::Relaxed);
            for piece in buf[..n].chunks(if rate > 0 { 4 << 10 } else { n }) {
                let delay = Duration::from_millis(controls.delay_ms.load(Ordering::Acquire));
                let due = tokio::time::Instant::now() + delay;
                if tx.send((due, piece.to_vec())).await.is_err() {
                    return;
                }
                if rate > 0 {
                    let secs = piece.len() as f64 / rate as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
            }
        }
    };
    let write = async {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
