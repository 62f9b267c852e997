//! The daemon (`run`): wires the stages together and owns their lifetimes.
//!
//! probes -> reader (bounded queue) -> pipeline consumer -> findings; the HTTP server exports
//! metrics and findings. SIGTERM or SIGINT stops the reader and the server, then drops the
//! probes, which detaches and unloads every kernel program, and `run` returns Ok (exit 0).

pub mod pipeline;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicUsize},
};

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{debug, error, info, warn};

use self::pipeline::Pipeline;
use crate::{
    attribution::{self, AttributionConfig, KubeletHints},
    audit::{Audit, AuditOptions, AuditReport, metrics::AuditMetrics},
    detectors::{Detectors, NodeFacts, loops::LoopConfig, metrics::DetectorMetrics},
    exporters::http::{self, AppState},
    node::host_root::HostRoot,
    findings::{metrics::FindingMetrics, store::FindingStore},
    probes::{
        self, PROGRAMS, ProbeOptions, Probes,
        metrics::{KernelStatsCollector, ProbeMetrics, register_build_info},
    },
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the HTTP server (/metrics, /findings, /healthz).
    #[arg(long, env = "NRM_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
    /// Root of the node's filesystem (a DaemonSet mounts the host at e.g. /host).
    #[arg(long, env = "NRM_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    /// Log format: text or json. The level comes from NRM_LOG (e.g. `info`, `monitor=debug`).
    #[arg(long, env = "NRM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Size of the kernel-to-user ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, env = "NRM_RING_BUFFER_BYTES", default_value_t = 8 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_bytes: u32,
    /// Events queued between the ring buffer reader and the pipeline; past this, events are
    /// dropped and counted (events_dropped_total{reason="queue_full"}).
    #[arg(long, env = "NRM_EVENT_QUEUE", default_value_t = 65536)]
    pub event_queue: usize,
    /// Also report successful loopback TCP connects (filtered in the kernel by default).
    #[arg(long)]
    pub report_loopback_connects: bool,
    /// Unix sockets whose successful connects are reported, in addition to the runtime sockets
    /// watched by default (failed connects are always reported). Repeatable.
    #[arg(long = "watch-socket", value_name = "PATH")]
    pub watch_sockets: Vec<PathBuf>,
    /// Kernel programs not to attach, by name (e.g. `signal_generate`). Repeatable.
    #[arg(long = "disable-probe", value_name = "PROGRAM")]
    pub disabled_probes: Vec<String>,
    /// Kernel BTF to read struct layouts from.
    #[arg(long, env = "NRM_BTF", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
    /// Log every kernel event (at info level): for debugging, not for production.
    #[arg(long)]
    pub log_events: bool,
    /// A loop finding closes after this many seconds without a recurrence.
    #[arg(long, env = "NRM_FINDING_QUIET_SECONDS", default_value_t = 600)]
    pub finding_quiet_seconds: u64,
    /// Runs of the same container within the window that make a restart loop.
    #[arg(long, default_value_t = 3)]
    pub container_restarts: usize,
    /// Failed runs of the same host binary within the window that make a restart loop.
    #[arg(long, default_value_t = 3)]
    pub host_failures: usize,
    /// Failed execs of the same path, or failed connects to the same runtime endpoint, by the
    /// same caller within the window that make a loop.
    #[arg(long, default_value_t = 3)]
    pub repeated_failures: usize,
    /// Window of the loop detectors, in seconds.
    #[arg(long, default_value_t = 300)]
    pub loop_window_seconds: u64,
    /// Longest an event waits for its owner (container, pod, service) before it is passed on
    /// as it is, in milliseconds.
    #[arg(long, env = "NRM_ATTRIBUTION_HOLD_MS", default_value_t = 500)]
    pub attribution_hold_ms: u64,
    /// The configuration audit re-runs this often (and whenever a file it read changes).
    #[arg(long, env = "NRM_AUDIT_INTERVAL_SECONDS", default_value_t = 300)]
    pub audit_interval_seconds: u64,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NRM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

impl RunArgs {
    fn probe_options(&self) -> ProbeOptions {
        let mut options = ProbeOptions {
            ring_buffer_bytes: self.ring_buffer_bytes,
            report_loopback_success: self.report_loopback_connects,
            disabled: self.disabled_probes.clone(),
            btf_path: Some(self.btf.clone()),
            ..ProbeOptions::default()
        };
        options.watched_sockets.extend(self.watch_sockets.iter().cloned());
        options
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), host_root = %args.host_root.display(), "starting node-runtime-monitor");
    let mut registry = Registry::with_prefix("node_runtime_monitor");
    register_build_info(&mut registry);
    let probe_metrics = ProbeMetrics::new(&mut registry);
    probe_metrics.ring_buffer_bytes.set(args.ring_buffer_bytes as i64);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let findings = FindingStore::new();
    let finding_metrics = FindingMetrics::new(&mut registry, findings.clone());
    let detector_metrics = DetectorMetrics::new(&mut registry);
    let facts = Arc::new(std::sync::RwLock::new(NodeFacts::default()));
    let probes_up = Arc::new(AtomicUsize::new(0));
    let sources = SourceHealth::new(&mut registry);

    // Probes: a failure here leaves the daemon running degraded (metrics, audit, health).
    let mut probes = match Probes::load(&args.probe_options()) {
        Ok(probes) => {
            probe_metrics.set_status(&probes.status);
            probes_up.store(probes.attached(), std::sync::atomic::Ordering::Relaxed);
            info!("{}/{} kernel programs attached", probes.attached(), PROGRAMS.len());
            sources.set("tracefs", probes.tracefs.is_ok(), "tracepoint programs cannot attach");
            sources.set("kernel_btf", probes.missing_offsets.is_empty(), "kernel struct fields read as zero");
            Some(probes)
        }
        Err(err) => {
            error!("kernel probes unavailable, running without them: {err}");
            probe_metrics.set_all_down();
            sources.set("tracefs", false, "no kernel programs");
            sources.set("kernel_btf", false, "no kernel programs");
            None
        }
    };

    // Parsing the kernel's BTF (twice: ours and aya's) took megabytes that are free now: give
    // them back to the system rather than keep them in the heap for the daemon's lifetime.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };

    let (events_tx, events_rx) = mpsc::channel(args.event_queue.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(probes) = probes.as_mut() {
        let stats = probes.take_stats().context("kernel statistics map")?;
        registry.register_collector(Box::new(KernelStatsCollector::new(stats)));
        let ring = probes.take_events().context("events ring buffer")?;
        let metrics = probe_metrics.clone();
        let shutdown = shutdown_rx.clone();
        tasks.spawn(async move {
            match probes::reader::run(ring, events_tx, metrics, shutdown).await {
                Ok(n) => debug!("reader stopped after {n} records"),
                Err(err) => error!("ring buffer reader failed: {err}"),
            }
        });
    } else {
        drop(events_tx);
    }
    let window = std::time::Duration::from_secs(args.loop_window_seconds.max(1));
    let loop_config = LoopConfig {
        container_restarts: args.container_restarts.max(1),
        container_window: window * 2,
        host_failures: args.host_failures.max(1),
        host_window: window,
        exec_failures: args.repeated_failures.max(1),
        exec_window: window,
        connect_failures: args.repeated_failures.max(1),
        connect_window: window,
        ..LoopConfig::default()
    };
    let pipeline = Pipeline::new(
        Detectors::new(loop_config),
        facts.clone(),
        findings.clone(),
        finding_metrics.clone(),
        detector_metrics,
        args.log_events,
    );
    // What the audit learns of kubelet (static pod directory, node name, runtime socket)
    // reaches attribution.
    let (kubelet_tx, kubelet_rx) = watch::channel(KubeletHints::default());
    let (attributed_rx, attribution_task) =
        attribution::spawn(attribution_config(&args, kubelet_rx), events_rx, &mut registry);
    tasks.spawn(async move {
        let _ = attribution_task.await;
    });
    tasks.spawn(pipeline.run(attributed_rx));

    // The configuration audit: its findings join the store, and what the detectors need of
    // the node's configuration (runtime endpoint, reservation and churn findings) reaches them.
    let audit = Audit::new(&args.host_root, AuditOptions::default());
    let audit_metrics = AuditMetrics::new(&mut registry);
    let (store, opened, node_facts, audit_sources) = (findings.clone(), finding_metrics.clone(), facts.clone(), sources.clone());
    let host_root = HostRoot::new(&args.host_root);
    let audit_task = crate::audit::metrics::spawn_periodic(
        audit,
        audit_metrics,
        std::time::Duration::from_secs(args.audit_interval_seconds.max(1)),
        shutdown_rx.clone(),
        move |report: &AuditReport| {
            info!(findings = report.findings.len(), elapsed_ms = report.elapsed.as_millis() as u64, "configuration audit done");
            let changes = store.replace("audit", report.findings.clone(), std::time::SystemTime::now());
            opened.record(&changes);
            if let Ok(mut facts) = node_facts.write() {
                *facts = NodeFacts::from_audit(report);
            }
            let hints = kubelet_hints(&host_root, report);
            kubelet_tx.send_if_modified(|current| std::mem::replace(current, hints.clone()) != hints);
            let cri = report.cri.sockets.iter().any(|s| s.answers());
            audit_sources.set("cri", cri, "no CRI socket answers: events are attributed from cgroup paths and kubelet's files only");
            audit_sources.set("kubelet", report.runtime_endpoint.is_some(), "no kubelet configured on this node");
        },
    );
    tasks.spawn(async move {
        let _ = audit_task.await;
    });
    let quiet = std::time::Duration::from_secs(args.finding_quiet_seconds.max(1));
    tasks.spawn(expire_findings(findings.clone(), finding_metrics, quiet, shutdown_rx.clone()));

    let registry = Arc::new(registry);
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(address = %listener.local_addr().unwrap_or(args.listen), "serving /metrics, /findings, /healthz");
    let state = AppState { registry, findings, probes_up, probes_total: PROGRAMS.len() };
    let server_shutdown = shutdown_rx.clone();
    tasks.spawn(async move {
        if let Err(err) = http::serve(listener, state, server_shutdown).await {
            error!("HTTP server failed: {err}");
        }
    });

    wait_for_stop_signal().await?;
    info!("stopping: detaching kernel programs");
    let _ = shutdown_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain).await.is_err() {
        warn!("some tasks did not stop within 5s");
    }
    drop(probes);
    info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}

/// The attribution stage's settings: the runtime sockets and the static pod directory under
/// the host root.
fn attribution_config(args: &RunArgs, kubelet: watch::Receiver<KubeletHints>) -> AttributionConfig {
    let defaults = AttributionConfig::default();
    let root = HostRoot::new(&args.host_root);
    AttributionConfig {
        kubelet: Some(kubelet),
        hold: std::time::Duration::from_millis(args.attribution_hold_ms),
        cri_sockets: defaults.cri_sockets.iter().map(|p| root.resolve(p)).collect(),
        static_pod_dir: defaults.static_pod_dir.as_deref().map(|p| root.resolve(p)),
        host_root: args.host_root.clone(),
        queue: args.event_queue.max(1),
        ..defaults
    }
}

/// What attribution needs of kubelet's configuration, from an audit report (host paths as
/// this process sees them, symlinks resolved inside the root: `/var/run` is often one).
fn kubelet_hints(root: &HostRoot, report: &AuditReport) -> KubeletHints {
    KubeletHints {
        static_pod_dir: report.static_pod_path.as_deref().map(|p| root.resolve(p)),
        node_name: report.node_name.clone(),
        runtime_socket: report
            .runtime_endpoint
            .as_deref()
            .map(crate::audit::facts::endpoint_path)
            .filter(|p| p.starts_with('/'))
            .map(|p| root.resolve(std::path::Path::new(p))),
    }
}

/// Whether each source of node context is available (`source_up{source}`): tracefs, kernel
/// BTF, a CRI socket that answers, a configured kubelet. A change is logged once.
#[derive(Clone, Debug)]
struct SourceHealth {
    up: prometheus_client::metrics::family::Family<SourceLabels, prometheus_client::metrics::gauge::Gauge>,
    last: Arc<std::sync::Mutex<std::collections::HashMap<&'static str, bool>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

impl SourceHealth {
    fn new(registry: &mut Registry) -> Self {
        let up = prometheus_client::metrics::family::Family::default();
        registry.register(
            "source_up",
            "1 when a source of node context is available (tracefs, kernel_btf, cri, kubelet), 0 when not",
            up.clone(),
        );
        Self { up, last: Default::default() }
    }

    fn set(&self, source: &'static str, available: bool, consequence: &str) {
        self.up.get_or_create(&SourceLabels { source }).set(available as i64);
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.insert(source, available) != Some(available) {
            if available {
                info!(source, "available");
            } else {
                warn!(source, "unavailable: {consequence}");
            }
        }
    }
}

/// Closes detector findings that did not recur for `quiet`.
async fn expire_findings(store: FindingStore, metrics: FindingMetrics, quiet: std::time::Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5).min(quiet));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let changes = store.expire("detectors", quiet, std::time::SystemTime::now());
                metrics.record(&changes);
            }
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit's view of kubelet reaches attribution as host paths under the host root.
    #[test]
    fn kubelet_hints_are_host_paths_under_the_root() {
        let report = AuditReport {
            host_root: "/host".into(),
            findings: vec![],
            watched: vec![],
            cri: Default::default(),
            containerd_release: None,
            runtime_endpoint: Some("unix:///run/k0s/containerd.sock".into()),
            static_pod_path: Some("/etc/k0s/manifests".into()),
            node_name: Some("worker-3".into()),
            elapsed: std::time::Duration::ZERO,
        };
        let hints = kubelet_hints(&HostRoot::new("/host"), &report);
        assert_eq!(hints.static_pod_dir.as_deref(), Some(std::path::Path::new("/host/etc/k0s/manifests")));
        assert_eq!(hints.runtime_socket.as_deref(), Some(std::path::Path::new("/host/run/k0s/containerd.sock")));
        assert_eq!(hints.node_name.as_deref(), Some("worker-3"));
        // A TCP endpoint names no socket; no kubelet, no hints.
        let tcp = AuditReport { runtime_endpoint: Some("tcp://10.0.0.1:2376".into()), ..report.clone() };
        assert_eq!(kubelet_hints(&HostRoot::new("/"), &tcp).runtime_socket, None);
        let none = AuditReport { runtime_endpoint: None, static_pod_path: None, node_name: None, ..report };
        assert_eq!(kubelet_hints(&HostRoot::new("/"), &none), KubeletHints::default());
    }
}
