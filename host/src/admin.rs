//! The admin HTTP interface (docs/protocol.md §6): `GET /status`, `POST /policy`.
//!
//! Kept apart from the gRPC port so that operators and scripts can watch
//! and steer a node without a PD client, and bound to loopback by default.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
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

/// Answer of `POST /policy`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SwapAnswer {
    /// The policy that was active (on success).
    pub old: Option<PolicyStatus>,
    /// The policy now active (on success).
    pub new: Option<PolicyStatus>,
    /// Why the swap was refused (the old policy stays).
    pub error: Option<String>,
}

/// Largest policy component accepted over HTTP.
const MAX_COMPONENT_BYTES: usize = 16 << 20;

/// The admin routes over `node`.
pub fn router<N: AdminNode>(node: Arc<N>) -> Router {
    Router::new()
        .route("/status", get(status::<N>))
        .route("/metrics", get(metrics::<N>))
        .route("/policy", post(swap::<N>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(node)
}

async fn status<N: AdminNode>(State(node): State<Arc<N>>) -> Json<Status> {
    Json(node.status())
}

async fn metrics<N: AdminNode>(State(node): State<Arc<N>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics(),
    )
        .into_response()
}

async fn swap<N: AdminNode>(State(node): State<Arc<N>>, body: Bytes) -> Response {
    let bytes = body.to_vec();
    let result =
        tokio::task::spawn_blocking(move || node.policy().swap(PolicySource::Bytes(bytes))).await;
    match result {
        Ok(Ok((old, new))) => Json(SwapAnswer {
            old: Some(old.into()),
            new: Some(new.into()),
            error: None,
        })
        .into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(SwapAnswer {
                old: None,
                new: None,
                error: Some(crate::error_chain(&e)),
            }),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("swap failed: {e}"),
        )
            .into_response(),
    }
}

/// Serve the admin interface on `addr` until the task is dropped.
pub async fn spawn<N: AdminNode>(
    addr: &str,
    node: Arc<N>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BindError> {
    let bind_error = |source| BindError {
        addr: format!("admin address {addr}"),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let app = router(node);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok((local, task))
}
