//! Running the gRPC service on a listener, with a shutdown that cannot hang.
//!
//! tonic's graceful shutdown waits for every open stream; a follower that
//! stopped reading would hold it forever. Nodes first end their own streams
//! (the leader sends "server stopped"), then stop the server here, which
//! waits at most a bound before dropping what is left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::{PdService, RegionSource};

pub struct GrpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Bind `addr` with an error that names it.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

impl GrpcServer {
    pub fn spawn<S: RegionSource>(listener: TcpListener, node: Arc<S>) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(PdService::new(node).into_server());
        // tonic applies its TCP options only to listeners it binds itself;
        // without NODELAY here, small frames wait on Nagle and delayed ACKs
        // (about 40 ms per round trip on loopback).
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|stream| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            })
        });
        let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        }));
        Ok(GrpcServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, wait up to `bound` for open calls, then drop them.
    pub async fn stop(mut self, bound: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(bound, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!(
                    ?bound,
                    "gRPC connections still open after the bound; dropping them"
                );
                self.task.abort();
            }
        }
    }
}
