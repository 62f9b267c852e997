//! The HTTP server: `/metrics` (OpenMetrics text), `/findings` (JSON), `/healthz`.
//!
//! It serves on the pod network beside workloads it does not trust, so every resource a client
//! can hold is bounded: at most [`Limits::max_connections`] connections (a new one evicts the
//! oldest, so idle or slow clients cannot lock a scraper out), request headers must arrive
//! within [`Limits::header_timeout`], a connection lives at most [`Limits::max_lifetime`],
//! at most [`Limits::max_concurrent_requests`] requests are worked on at once (the others wait,
//! bounded by the request timeout), a request's head must fit 16 KiB and 32 headers, bodies are
//! refused past 4 KiB. `/findings` is encoded once per change of the store and `/metrics` at
//! most once a second, each shared by every request, not copied per request. Evictions are
//! counted (`http_connections_evicted_total`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
};
use tracing::debug;

use crate::findings::store::FindingStore;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest a request may take (waiting for a turn included) before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// No endpoint takes a body; anything larger than this is refused.
const BODY_LIMIT: usize = 4096;
/// A connection's read buffer: a request's head must fit (hyper's least is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers of a request, at most.
const MAX_HEADERS: usize = 32;
/// `/metrics` is encoded at most this often and the encoding shared by the requests meanwhile:
/// a client that asks and never reads holds a reference, not its own copy, and a tight loop
/// of requests costs one encoding a second.
const METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// What a client may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_lifetime: Duration,
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(120),
            max_concurrent_requests: 8,
        }
    }
}

/// The server's own metrics.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    open: Gauge,
    evicted: Counter,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register("http_connections_open", "HTTP connections open", metrics.open.clone());
        registry.register(
            "http_connections_evicted",
            "HTTP connections closed to admit a new one past the connection cap (oldest first)",
            metrics.evicted.clone(),
        );
        metrics
    }
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub findings: FindingStore,
    /// Number of kernel programs attached; `/healthz` says so.
    pub probes_up: Arc<std::sync::atomic::AtomicUsize>,
    pub probes_total: usize,
    /// `/findings` as last encoded, with the store's generation it was encoded at.
    pub findings_json: Arc<Mutex<(u64, axum::body::Bytes)>>,
    /// `/metrics` as last encoded, and when.
    pub metrics_text: Arc<Mutex<Option<(std::time::Instant, axum::body::Bytes)>>>,
    /// Whether each stage is still making progress; `/healthz` fails when one is not.
    pub watchdog: crate::progress::Watchdog,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, findings: FindingStore, probes_up: Arc<std::sync::atomic::AtomicUsize>, probes_total: usize) -> Self {
        Self {
            registry,
            findings,
            probes_up,
            probes_total,
            findings_json: Arc::new(Mutex::new((u64::MAX, axum::body::Bytes::new()))),
            metrics_text: Arc::new(Mutex::new(None)),
            watchdog: crate::progress::Watchdog::default(),
        }
    }
}

pub fn router(state: AppState, limits: Limits) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/findings", get(findings))
        .route("/healthz", get(healthz))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests.max(1)))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Ok(mut cached) = state.metrics_text.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics cache poisoned").into_response();
    };
    let fresh = cached.as_ref().filter(|(at, _)| at.elapsed() < METRICS_MAX_AGE).map(|(_, body)| body.clone());
    let body = match fresh {
        Some(body) => body,
        None => {
            let mut text = String::new();
            if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {err}")).into_response();
            }
            let body = axum::body::Bytes::from(text);
            *cached = Some((std::time::Instant::now(), body.clone()));
            body
        }
    };
    ([(header::CONTENT_TYPE, OPENMETRICS)], Body::from(body)).into_response()
}

async fn findings(State(state): State<AppState>) -> Response {
    let generation = state.findings.generation();
    let body = {
        let Ok(mut cached) = state.findings_json.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "findings cache poisoned").into_response();
        };
        if cached.0 != generation {
            *cached = (generation, state.findings.encode_json().into());
        }
        cached.1.clone()
    };
    ([(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let up = state.probes_up.load(std::sync::atomic::Ordering::Relaxed);
    // A stage that stopped making progress fails the check (the kubelet's liveness probe
    // restarts the monitor); a degraded node (some probes down) still answers 200 and says so.
    let stalled = state.watchdog.stalled();
    if !stalled.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: {}\n", stalled.join("; ")));
    }
    (StatusCode::OK, format!("ok: {up}/{} kernel programs attached\n", state.probes_total))
}

/// The open connections, oldest first, each with the sender that closes it.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// Resolves when `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    metrics: HttpMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router(state, limits));
    let connections = Arc::new(Mutex::new(Connections::default()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of fds or a connection reset before accept: go on serving the others.
                Err(err) => {
                    debug!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (close_tx, close_rx) = oneshot::channel();
        let id = {
            let Ok(mut connections) = connections.lock() else { break };
            while connections.open.len() >= limits.max_connections.max(1) {
                if let Some((_, close)) = connections.open.pop_front() {
                    let _ = close.send(());
                    metrics.evicted.inc();
                }
            }
            let id = connections.next_id;
            connections.next_id += 1;
            connections.open.push_back((id, close_tx));
            id
        };
        metrics.open.inc();
        while tasks.try_join_next().is_some() {}
        let (service, connections, metrics, mut shutdown) = (service.clone(), connections.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            // A request's head is bounded too (hyper's default buffer is ~400 KiB a connection).
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = &mut connection => if let Err(err) = result { debug!(%peer, "connection ended: {err}") },
                _ = close_rx => debug!(%peer, "connection evicted"),
                _ = tokio::time::sleep(limits.max_lifetime) => debug!(%peer, "connection closed at its maximum lifetime"),
                _ = stopped(&mut shutdown) => {}
            }
            metrics.open.dec();
            if let Ok(mut connections) = connections.lock() {
                connections.open.retain(|(open, _)| *open != id);
            }
        });
    }
    tasks.shutdown().await;
    Ok(())
}
