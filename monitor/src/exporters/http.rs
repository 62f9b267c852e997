//! The HTTP server: `/metrics` (OpenMetrics text), `/findings` (JSON), `/healthz`.
//!
//! It serves on the pod network beside workloads it does not trust, so every resource a client
//! can hold is bounded: at most [`Limits::max_connections`] connections; past the cap a new
//! connection evicts an idle one (the oldest of the address that holds the most), never one with
//! a request in progress, and is refused when every candidate is busy, so neither idle nor slow
//! clients can lock a scraper out or cut its scrape. There is no cap per address: behind a proxy
//! (the hardened deployment's kube-rbac-proxy) every client is one address. Request headers (and the TLS handshake) must arrive
//! within [`Limits::header_timeout`], a connection lives at most [`Limits::max_lifetime`], at
//! most [`Limits::max_concurrent_requests`] requests are worked on at once (the others wait,
//! bounded by the request timeout), a request's head must fit 16 KiB and 32 headers, bodies are
//! refused past 4 KiB. `/findings` is encoded once per change of the store and `/metrics` at
//! most once a second, each shared by every request, not copied per request. Evictions and
//! refusals are counted (`http_connections_evicted_total`, `http_connections_refused_total`).
//!
//! TLS, basic authentication and security headers come from the web configuration file
//! ([`WebConfig`], `--web.config.file`); without one the server speaks plain HTTP to anyone.
//! `/healthz` needs no password (the kubelet's probes carry none; it says only whether the
//! monitor runs), but is served over TLS like the rest.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{oneshot, watch},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::debug;

use super::web_config::WebConfig;
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
    refused: Counter,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register("http_connections_open", "HTTP connections open", metrics.open.clone());
        registry.register(
            "http_connections_evicted",
            "Idle HTTP connections closed to admit a new one past the connection caps (the oldest of the address holding the most)",
            metrics.evicted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once past the connection caps, every other connection having a request in progress",
            metrics.refused.clone(),
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

pub fn router(state: AppState, limits: Limits, web: &WebConfig) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/findings", get(findings))
        .route("/healthz", get(healthz))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests.max(1)))
        // Outside the concurrency limit: a scraper whose credentials are remembered does not
        // queue behind requests waiting for a password check.
        .layer(axum::middleware::from_fn_with_state(web.clone(), authenticate))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

/// Basic authentication (every path but `/healthz`) and the configured headers, as the
/// toolkit's servers answer: 401 with `WWW-Authenticate: Basic`.
async fn authenticate(State(web): State<WebConfig>, request: Request, next: Next) -> Response {
    let allowed = match &web.basic_auth {
        Some(auth) if request.uri().path() != "/healthz" => auth.allows(request.headers().get(header::AUTHORIZATION)).await,
        _ => true,
    };
    let mut response = if allowed {
        next.run(request).await
    } else {
        ([(header::WWW_AUTHENTICATE, "Basic")], (StatusCode::UNAUTHORIZED, "Unauthorized\n")).into_response()
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
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

/// An open connection: where from, how many of its requests are in progress, and the sender
/// that closes it.
struct Open {
    id: u64,
    peer: IpAddr,
    in_progress: Arc<AtomicUsize>,
    close: oneshot::Sender<()>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: VecDeque<Open>,
    /// Open connections per address, kept with `open` (an accept must stay cheap under a flood).
    held: HashMap<IpAddr, usize>,
}

/// What admitting a connection takes.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Room under the cap.
    Room,
    /// Closing the connection at this index makes room.
    Evict(usize),
    /// Every connection that could make room has a request in progress.
    Refuse,
}

impl Connections {
    /// The oldest idle connection from `peer`.
    fn oldest_idle(&self, peer: IpAddr) -> Option<usize> {
        self.open.iter().position(|o| o.peer == peer && o.in_progress.load(Ordering::Acquire) == 0)
    }

    /// What admitting a connection takes: past the cap, an idle one of the address holding the
    /// most (a flood gives way before a scraper's one or two).
    fn admission(&self, limits: &Limits) -> Admission {
        if self.open.len() < limits.max_connections.max(1) {
            return Admission::Room;
        }
        let mut peers: Vec<(IpAddr, usize)> = self.held.iter().map(|(peer, count)| (*peer, *count)).collect();
        peers.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        peers.iter().find_map(|(p, _)| self.oldest_idle(*p)).map_or(Admission::Refuse, Admission::Evict)
    }

    /// Forgets the connection at `index` (closed, or to be closed); its close sender.
    fn remove_at(&mut self, index: usize) -> Option<oneshot::Sender<()>> {
        let open = self.open.remove(index)?;
        if let Some(count) = self.held.get_mut(&open.peer) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(&open.peer);
            }
        }
        Some(open.close)
    }

    /// Forgets the connection `id`, which ended.
    fn remove(&mut self, id: u64) {
        if let Some(index) = self.open.iter().position(|open| open.id == id) {
            self.remove_at(index);
        }
    }

    /// Admits a connection from `peer`, closing an idle one if a cap says so: its id and its
    /// count of requests in progress, or None when it is refused.
    fn admit(&mut self, peer: IpAddr, limits: &Limits, close: oneshot::Sender<()>, metrics: &HttpMetrics) -> Option<(u64, Arc<AtomicUsize>)> {
        match self.admission(limits) {
            Admission::Room => {}
            Admission::Evict(index) => {
                if let Some(close) = self.remove_at(index) {
                    let _ = close.send(());
                    metrics.evicted.inc();
                }
            }
            Admission::Refuse => {
                metrics.refused.inc();
                return None;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let in_progress = Arc::new(AtomicUsize::new(0));
        self.open.push_back(Open { id, peer, in_progress: in_progress.clone(), close });
        *self.held.entry(peer).or_default() += 1;
        Some((id, in_progress))
    }
}

/// Counts a request in progress from its start until its response's body is dropped (hyper
/// drops it once written): a connection with one is never evicted.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves until `shutdown` turns true: over TLS when `web` says so.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    web: WebConfig,
    metrics: HttpMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let service = router(state, limits, &web);
    let tls = web.tls.map(TlsAcceptor::from);
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
        let admitted = {
            let Ok(mut connections) = connections.lock() else { break };
            connections.admit(peer.ip().to_canonical(), &limits, close_tx, &metrics)
        };
        let Some((id, in_progress)) = admitted else {
            debug!(%peer, "connection refused: every connection that could make room has a request in progress");
            continue;
        };
        metrics.open.inc();
        while tasks.try_join_next().is_some() {}
        let (service, connections, metrics, mut shutdown, tls) = (service.clone(), connections.clone(), metrics.clone(), shutdown.clone(), tls.clone());
        tasks.spawn(async move {
            let work = async {
                match tls {
                    None => serve_connection(stream, service, in_progress, limits).await,
                    Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, service, in_progress, limits).await,
                        Ok(Err(err)) => Err(format!("TLS handshake failed: {err}")),
                        Err(_) => Err("TLS handshake timed out".to_string()),
                    },
                }
            };
            tokio::select! {
                result = work => if let Err(err) = result { debug!(%peer, "connection ended: {err}") },
                _ = close_rx => debug!(%peer, "connection evicted"),
                _ = tokio::time::sleep(limits.max_lifetime) => debug!(%peer, "connection closed at its maximum lifetime"),
                _ = stopped(&mut shutdown) => {}
            }
            metrics.open.dec();
            if let Ok(mut connections) = connections.lock() {
                connections.remove(id);
            }
        });
    }
    tasks.shutdown().await;
    Ok(())
}

/// HTTP/1.1 on one connection (plain or TLS), each request counted in progress until its
/// response is written.
async fn serve_connection<Io>(
    io: Io,
    service: Router,
    in_progress: Arc<AtomicUsize>,
    limits: Limits,
) -> Result<(), String>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = hyper::service::service_fn(move |request| {
        let guard = InProgress::start(&in_progress);
        let service = service.clone();
        async move {
            let response = service.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(body.map_frame(move |frame| {
                let _in_progress = &guard;
                frame
            }))))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // A request's head is bounded too (hyper's default buffer is ~400 KiB a connection).
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    http.serve_connection(TokioIo::new(io), counted).await.map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(connections: &mut Connections, peer: [u8; 4], limits: &Limits) -> Option<(u64, Arc<AtomicUsize>)> {
        let (close, _) = oneshot::channel();
        connections.admit(IpAddr::from(peer), limits, close, &HttpMetrics::default())
    }

    #[test]
    fn a_crowd_from_one_address_evicts_its_own_idle_connections_only() {
        let limits = Limits { max_connections: 8, ..Limits::default() };
        let mut connections = Connections::default();
        let (_, scrape) = connection(&mut connections, [10, 0, 0, 1], &limits).unwrap();
        connection(&mut connections, [10, 0, 0, 1], &limits).unwrap();
        scrape.fetch_add(1, Ordering::AcqRel);
        for _ in 0..100 {
            assert!(connection(&mut connections, [10, 0, 0, 66], &limits).is_some());
        }
        assert_eq!(connections.open.len(), 8);
        assert_eq!(connections.open[0].peer, IpAddr::from([10, 0, 0, 1]), "the scrape is kept");
        assert_eq!(connections.held, HashMap::from([(IpAddr::from([10, 0, 0, 1]), 2), (IpAddr::from([10, 0, 0, 66]), 6)]));
        let id = connections.open[0].id;
        connections.remove(id);
        assert_eq!(connections.held, HashMap::from([(IpAddr::from([10, 0, 0, 1]), 1), (IpAddr::from([10, 0, 0, 66]), 6)]));
    }

    #[test]
    fn past_the_total_cap_the_address_holding_the_most_gives_way_and_a_busy_connection_never_does() {
        let limits = Limits { max_connections: 4, ..Limits::default() };
        let mut connections = Connections::default();
        let (_, scrape) = connection(&mut connections, [10, 0, 0, 1], &limits).unwrap();
        for _ in 0..3 {
            connection(&mut connections, [10, 0, 0, 2], &limits).unwrap();
        }
        // Full: a third address takes the place of 10.0.0.2's oldest, not of the scraper's.
        connection(&mut connections, [10, 0, 0, 3], &limits).unwrap();
        let peers: Vec<IpAddr> = connections.open.iter().map(|o| o.peer).collect();
        assert_eq!(peers, [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 2], [10, 0, 0, 3]].map(IpAddr::from));
        // Every connection busy: a new one is refused, none is cut.
        scrape.fetch_add(1, Ordering::AcqRel);
        for open in &connections.open {
            open.in_progress.fetch_add(1, Ordering::AcqRel);
        }
        assert!(connection(&mut connections, [10, 0, 0, 4], &limits).is_none());
        assert_eq!(connections.open.len(), 4);
        // The scraper's connection, idle again, may go, as the oldest of the most-holding address only.
        for open in &connections.open {
            open.in_progress.store(0, Ordering::Release);
        }
        connection(&mut connections, [10, 0, 0, 4], &limits).unwrap();
        assert_eq!(connections.open[0].peer, IpAddr::from([10, 0, 0, 1]));
    }
}
