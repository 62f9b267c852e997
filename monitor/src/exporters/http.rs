//! The HTTP server: `/metrics` (OpenMetrics text), `/findings` (JSON), `/healthz`.
//! Requests have a timeout and bodies a size limit; the registry is immutable after start-up
//! and encoded per scrape.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::{net::TcpListener, sync::watch};

use crate::findings::store::{FindingStore, OpenFinding};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest a request may take before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// No endpoint takes a body; anything larger than this is refused.
const BODY_LIMIT: usize = 4096;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub findings: FindingStore,
    /// Number of kernel programs attached; `/healthz` says so.
    pub probes_up: Arc<std::sync::atomic::AtomicUsize>,
    pub probes_total: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/findings", get(findings))
        .route("/healthz", get(healthz))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {err}")).into_response(),
    }
}

#[derive(Serialize)]
struct FindingsBody {
    findings: Vec<OpenFinding>,
}

async fn findings(State(state): State<AppState>) -> Json<FindingsBody> {
    Json(FindingsBody { findings: state.findings.snapshot() })
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let up = state.probes_up.load(std::sync::atomic::Ordering::Relaxed);
    // Alive is alive: a degraded node (some probes down) still answers 200 and says so.
    (StatusCode::OK, format!("ok: {up}/{} kernel programs attached\n", state.probes_total))
}

/// Serves until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: AppState, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let app = router(state).layer(tower_timeout());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

fn tower_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT)
}
