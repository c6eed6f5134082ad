//! The admin HTTP interface (docs/protocol.md §6): `GET /status`,
//! `GET /metrics`, `POST /policy` (swap), and shadow mode: `POST` and
//! `DELETE /policy/shadow`, `POST /policy/promote`.
//!
//! Kept apart from the gRPC port so that operators and scripts can watch
//! and steer a node without a PD client. Reading is open to whoever can
//! reach the port; changing is not: a mutating endpoint needs the bearer
//! token from the node's `--admin-token-file`, and is switched off when the
//! node has none. An address given as a bare port binds loopback, so that
//! exposing the interface is always an explicit choice.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

use crate::policy_runtime::{LoadError, PolicyInfo};
use serde::{Deserialize, Serialize};

use crate::policy_runtime::{PolicyRuntime, PolicySource};
use crate::server::BindError;
use crate::status::{PolicyStatus, Status};

/// What the admin interface needs from a node.
pub trait AdminNode: Send + Sync + 'static {
    /// The status document.
    fn status(&self) -> Status;
    /// The policy runtime, for swaps.
    fn policy(&self) -> &PolicyRuntime;
    /// Prometheus text.
    fn metrics(&self) -> String;
}

/// Answer of the policy endpoints: a swap or a promotion (`old` and `new`
/// active policy), a shadow started (`new`: the candidate) or stopped
/// (`old`: the candidate).
#[derive(Debug, Serialize, Deserialize)]
pub struct SwapAnswer {
    /// The policy that was active, or the shadow stopped (on success).
    pub old: Option<PolicyStatus>,
    /// The policy now active, or the shadow started (on success).
    pub new: Option<PolicyStatus>,
    /// Why the swap was refused (the old policy stays).
    pub error: Option<String>,
}

/// Largest policy component accepted over HTTP.
const MAX_COMPONENT_BYTES: usize = 16 << 20;

/// Who may change the node.
#[derive(Clone, Default)]
pub struct AdminAccess {
    /// The bearer token mutating endpoints require; `None` switches them off.
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_some() { "set" } else { "none" };
        write!(f, "AdminAccess {{ token: {token} }}")
    }
}

/// Why the admin token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the admin token file {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("the admin token file {} is empty", .0.display())]
    Empty(std::path::PathBuf),
}

impl AdminAccess {
    /// Mutating endpoints require `token`.
    pub fn with_token(token: &str) -> Self {
        AdminAccess {
            token: Some(token.into()),
        }
    }

    /// The token in `path` (surrounding whitespace ignored).
    pub fn from_token_file(path: &std::path::Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty(path.to_path_buf()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
            if mode & 0o077 != 0 {
                tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the admin token file can be read by other users; chmod 600 it");
            }
        }
        Ok(Self::with_token(token))
    }

    /// Whether a request with these headers may change the node; the
    /// refusal says why, for the caller.
    fn permits(&self, headers: &axum::http::HeaderMap) -> Result<(), (StatusCode, String)> {
        let Some(token) = &self.token else {
            return Err((
                StatusCode::FORBIDDEN,
                "changes over the admin interface are switched off: start the node with --admin-token-file".into(),
            ));
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if tokens_equal(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong admin token".into())),
            None => Err((
                StatusCode::UNAUTHORIZED,
                "an admin token is required (Authorization: Bearer ..., or --token-file)".into(),
            )),
        }
    }
}

/// Equal tokens, compared as their SHA-256 digests in constant time: the
/// time taken tells neither a matching prefix nor the token's length.
fn tokens_equal(given: &[u8], token: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(token));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Mutating routes: the token is checked here, before any extractor reads
/// the body, so an unauthenticated caller cannot make the node buffer a
/// 16 MiB upload.
async fn authorize(
    State(access): State<AdminAccess>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err((code, why)) = access.permits(request.headers()) {
        tracing::warn!(
            status = code.as_u16(), path = %request.uri().path(), reason = %why,
            "a change over the admin interface refused"
        );
        return refused(code, why);
    }
    next.run(request).await
}

/// The admin routes over `node`.
pub fn router<N: AdminNode>(node: Arc<N>, access: AdminAccess) -> Router {
    let changes = Router::new()
        .route("/policy", post(swap::<N>))
        .route(
            "/policy/shadow",
            post(shadow_start::<N>).delete(shadow_stop::<N>),
        )
        .route("/policy/promote", post(promote::<N>))
        .route_layer(axum::middleware::from_fn_with_state(
            access.clone(),
            authorize,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES));
    Router::new()
        .route("/status", get(status::<N>))
        .route("/metrics", get(metrics::<N>))
        .merge(changes)
        .with_state((node, access))
}

/// `addr` as a socket address to bind: a bare port (`9100`, `:9100`) means
/// loopback.
pub fn admin_bind_address(addr: &str) -> String {
    let port = addr.strip_prefix(':').unwrap_or(addr);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{port}")
    } else {
        addr.to_string()
    }
}

type AdminState<N> = State<(Arc<N>, AdminAccess)>;

async fn status<N: AdminNode>(State((node, _)): AdminState<N>) -> Json<Status> {
    Json(node.status())
}

async fn metrics<N: AdminNode>(State((node, _)): AdminState<N>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics(),
    )
        .into_response()
}

fn refused(code: StatusCode, error: String) -> Response {
    let answer = SwapAnswer {
        old: None,
        new: None,
        error: Some(error),
    };
    (code, Json(answer)).into_response()
}

/// Run a policy change off the async threads (it compiles a component);
/// answer with what changed or why not. The caller was permitted by
/// `authorize`, the layer every change route sits behind.
async fn change<N: AdminNode>(
    (node, _): (Arc<N>, AdminAccess),
    what: &'static str,
    op: impl FnOnce(&PolicyRuntime) -> Result<(Option<PolicyInfo>, Option<PolicyInfo>), LoadError>
    + Send
    + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || op(node.policy())).await {
        Ok(Ok((old, new))) => Json(SwapAnswer {
            old: old.map(Into::into),
            new: new.map(Into::into),
            error: None,
        })
        .into_response(),
        Ok(Err(e @ LoadError::NoShadow)) => refused(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e)) => refused(StatusCode::UNPROCESSABLE_ENTITY, crate::error_chain(&e)),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed: {e}"),
        )
            .into_response(),
    }
}

async fn swap<N: AdminNode>(State(state): AdminState<N>, body: Bytes) -> Response {
    let bytes = body.to_vec();
    change(state, "policy swap", move |p| {
        p.swap(PolicySource::Bytes(bytes))
            .map(|(old, new)| (Some(old), Some(new)))
    })
    .await
}

async fn shadow_start<N: AdminNode>(State(state): AdminState<N>, body: Bytes) -> Response {
    let bytes = body.to_vec();
    change(state, "policy shadow", move |p| {
        p.start_shadow(bytes).map(|new| (None, Some(new)))
    })
    .await
}

async fn shadow_stop<N: AdminNode>(State(state): AdminState<N>) -> Response {
    change(state, "policy shadow stop", |p| {
        p.stop_shadow()
            .map(|old| (Some(old), None))
            .ok_or(LoadError::NoShadow)
    })
    .await
}

async fn promote<N: AdminNode>(State(state): AdminState<N>) -> Response {
    change(state, "policy promote", |p| {
        p.promote().map(|(old, new)| (Some(old), Some(new)))
    })
    .await
}

/// Serve the admin interface on `addr` (see [`admin_bind_address`]) until
/// the task is dropped.
pub async fn spawn<N: AdminNode>(
    addr: &str,
    node: Arc<N>,
    access: AdminAccess,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BindError> {
    let bind = admin_bind_address(addr);
    let bind_error = |source| BindError {
        addr: format!("admin address {bind}"),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            admin = %local, token = access.token.is_some(),
            "the admin interface listens beyond loopback: anyone who reaches it reads status and metrics"
        );
    }
    let app = router(node, access);
    let task = tokio::spawn(serve(listener, app));
    Ok((local, task))
}

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this (slowloris).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// No connection lives longer, whatever it is doing: bounds a body sent
/// byte by byte. A swap's upload and compile take seconds.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Serve `app` on `listener` over HTTP/1 with the bounds above.
async fn serve(listener: tokio::net::TcpListener, app: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pass, and go on.
                tracing::warn!(error = %e, "admin interface: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_CONNECTIONS, "admin interface: too many connections; closed");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection ended"),
                Err(_) => tracing::warn!(%peer, "admin connection open too long; closed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_loopback_and_tokens_compare_whole() {
        assert_eq!(admin_bind_address("9100"), "127.0.0.1:9100");
        assert_eq!(admin_bind_address(":9100"), "127.0.0.1:9100");
        assert_eq!(admin_bind_address("0.0.0.0:9100"), "0.0.0.0:9100");
        assert_eq!(admin_bind_address("[::1]:9100"), "[::1]:9100");
        assert!(tokens_equal(b"token", b"token"));
        assert!(!tokens_equal(b"token", b"tokem"));
        assert!(!tokens_equal(b"token", b"token2"));
        let access = AdminAccess::with_token("t");
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(
            access.permits(&headers).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        headers.insert("authorization", "Bearer t".parse().unwrap());
        assert!(access.permits(&headers).is_ok());
        assert_eq!(
            AdminAccess::default().permits(&headers).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
    }

    struct Fake(PolicyRuntime);

    impl AdminNode for Fake {
        fn status(&self) -> Status {
            panic!("these tests read no status")
        }
        fn policy(&self) -> &PolicyRuntime {
            &self.0
        }
        fn metrics(&self) -> String {
            "# EOF\n".into()
        }
    }

    async fn fake_admin(token: &str) -> SocketAddr {
        let node = Arc::new(Fake(PolicyRuntime::with_default().unwrap()));
        let (addr, _task) = spawn("127.0.0.1:0", node, AdminAccess::with_token(token))
            .await
            .unwrap();
        addr
    }

    /// What the server sends before it closes, within `within`; `None`:
    /// still open then.
    async fn answer(
        stream: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
        read.ok()
            .map(|_| String::from_utf8_lossy(&got).into_owned())
    }

    /// Issue #30 item 8: the token is checked before the body is read. A
    /// caller without one announcing a 16 MiB upload is refused at once,
    /// without sending a byte of it.
    #[tokio::test]
    async fn a_change_without_the_token_is_refused_before_its_body_is_read() {
        use tokio::io::AsyncWriteExt;
        let addr = fake_admin("secret").await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /policy HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_COMPONENT_BYTES - 1
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(std::time::Duration::from_secs(3), {
            use tokio::io::AsyncReadExt;
            s.read(&mut buf)
        })
        .await
        .expect("no answer until the body is sent: the body is read before the token")
        .unwrap();
        let said = String::from_utf8_lossy(&buf[..n]);
        assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    }

    /// Issue #30 item 8: a client that never finishes its headers
    /// (slowloris) is closed after the header timeout.
    #[tokio::test]
    async fn a_request_whose_headers_never_end_is_closed() {
        use tokio::io::AsyncWriteExt;
        let addr = fake_admin("secret").await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let closed = answer(&mut s, HEADER_TIMEOUT * 3).await;
        assert!(
            closed.is_some(),
            "still open {:?} after partial headers",
            HEADER_TIMEOUT * 3
        );
    }

    /// Issue #30 item 8: connections beyond the bound are closed at once;
    /// those within it are served.
    #[tokio::test]
    async fn connections_beyond_the_bound_are_closed() {
        use tokio::io::AsyncWriteExt;
        let addr = fake_admin("secret").await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // The server has taken every one of them before the next.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let closed = answer(&mut extra, std::time::Duration::from_secs(2)).await;
        assert_eq!(
            closed.as_deref(),
            Some(""),
            "a connection beyond the bound was kept"
        );
        let mut first = held.remove(0);
        first
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let said = answer(&mut first, std::time::Duration::from_secs(3))
            .await
            .unwrap();
        assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    }
}
