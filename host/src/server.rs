//! Running the gRPC service on a listener, with a shutdown that cannot hang.
//!
//! tonic's graceful shutdown waits for every open stream; a follower that
//! stopped reading would hold it forever. Nodes first end their own streams
//! (the leader sends "server stopped"), then stop the server here, which
//! waits at most a bound before dropping what is left.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::PdService;
use crate::tls::Tls;

/// A listening address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address asked for.
    pub addr: String,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// The gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener has no local address.
    #[error("the gRPC listener has no local address")]
    Listener(#[source] std::io::Error),
    /// The TLS settings were refused.
    #[error("cannot serve with TLS")]
    Tls(#[source] tonic::transport::Error),
}

/// The gRPC server of one node, running in its own task.
pub struct GrpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Bind `addr` with an error that names it.
pub async fn bind(addr: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })
}

/// HTTP/2 streams one connection may hold open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 1_024;

impl GrpcServer {
    /// Serve `service` on `listener` until stopped, over TLS when `tls`
    /// gives this node an identity.
    pub fn spawn(
        listener: TcpListener,
        service: PdService,
        tls: Option<&Tls>,
    ) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(ServeError::Listener)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(config) = tls.and_then(Tls::server) {
            builder = builder.tls_config(config).map_err(ServeError::Tls)?;
        }
        let server = builder
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // One client connection opens at most this many streams at once
            // (the leader's stream limits bound them across connections).
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .add_service(service.into_server());
        // tonic applies its TCP options only to listeners it binds itself;
        // without NODELAY here, small frames wait on Nagle and delayed ACKs,
        // tens of milliseconds a round trip.
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

    /// The address it listens on.
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
