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
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong admin token".into())),
            None => Err((
                StatusCode::UNAUTHORIZED,
                "an admin token is required (Authorization: Bearer ..., or --token-file)".into(),
            )),
        }
    }
}

/// Equal bytes, in a time that depends only on the lengths: a token must not
/// be guessable byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin routes over `node`.
pub fn router<N: AdminNode>(node: Arc<N>, access: AdminAccess) -> Router {
    Router::new()
        .route("/status", get(status::<N>))
        .route("/metrics", get(metrics::<N>))
        .route("/policy", post(swap::<N>))
        .route(
            "/policy/shadow",
            post(shadow_start::<N>).delete(shadow_stop::<N>),
        )
        .route("/policy/promote", post(promote::<N>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
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

/// Run a policy change off the async threads (it compiles a component),
/// once the caller is permitted; answer with what changed or why not.
async fn change<N: AdminNode>(
    (node, access): (Arc<N>, AdminAccess),
    headers: &axum::http::HeaderMap,
    what: &'static str,
    op: impl FnOnce(&PolicyRuntime) -> Result<(Option<PolicyInfo>, Option<PolicyInfo>), LoadError>
    + Send
    + 'static,
) -> Response {
    if let Err((code, why)) = access.permits(headers) {
        tracing::warn!(status = code.as_u16(), reason = %why, "{what} over the admin interface refused");
        return refused(code, why);
    }
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

async fn swap<N: AdminNode>(
    State(state): AdminState<N>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let bytes = body.to_vec();
    change(state, &headers, "policy swap", move |p| {
        p.swap(PolicySource::Bytes(bytes))
            .map(|(old, new)| (Some(old), Some(new)))
    })
    .await
}

async fn shadow_start<N: AdminNode>(
    State(state): AdminState<N>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let bytes = body.to_vec();
    change(state, &headers, "policy shadow", move |p| {
        p.start_shadow(bytes).map(|new| (None, Some(new)))
    })
    .await
}

async fn shadow_stop<N: AdminNode>(
    State(state): AdminState<N>,
    headers: axum::http::HeaderMap,
) -> Response {
    change(state, &headers, "policy shadow stop", |p| {
        p.stop_shadow()
            .map(|old| (Some(old), None))
            .ok_or(LoadError::NoShadow)
    })
    .await
}

async fn promote<N: AdminNode>(
    State(state): AdminState<N>,
    headers: axum::http::HeaderMap,
) -> Response {
    change(state, &headers, "policy promote", |p| {
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
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok((local, task))
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
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
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
}
