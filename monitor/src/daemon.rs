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

use self::pipeline::{MemoryReads, Pipeline};
use crate::{
    attribution::{self, AttributionConfig},
    audit::{self, AuditMetrics},
    events,
    detectors::{
        Detectors,
        loops::LoopConfig,
        memory_cgroups::{MemoryWatch, MemoryWatchConfig},
        metrics::DetectorMetrics,
    },
    exporters::{
        http::{self, AppState},
        web_config::WebConfig,
    },
    findings::{self, Origin, store::FindingStore},
    health::{SourceHealth, previous_run::PreviousRun},
    node::{
        self,
        host_root::HostRoot,
        snapshot::{KubeletHints, SnapshotOptions},
    },
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
    /// Web configuration file (YAML) for TLS and authentication of the HTTP server, in the
    /// format of every Prometheus exporter (prometheus/exporter-toolkit, docs/web-configuration.md):
    /// `tls_server_config` (cert_file, key_file, client_auth_type NoClientCert,
    /// VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file,
    /// min_version/max_version TLS12/TLS13), `basic_auth_users` (user: bcrypt hash; /healthz
    /// needs none), `http_server_config.headers`. Relative paths are the file's directory's;
    /// an unknown or unsupported key stops the daemon at start. Without it: plain HTTP, no
    /// authentication.
    #[arg(long = "web.config.file", env = "NRM_WEB_CONFIG_FILE", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Root of the node's filesystem (a DaemonSet mounts the host at e.g. /host).
    #[arg(long, env = "NRM_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    /// The node's name as Kubernetes knows it (static pods are named `<name>-<node>`); the
    /// DaemonSet passes `spec.nodeName`. Without it: kubelet's --hostname-override, else the
    /// node's /etc/hostname.
    #[arg(long, env = "NRM_NODE_NAME")]
    pub node_name: Option<String>,
    /// The monitor's own state directory (writable; an emptyDir in the DaemonSet): how its
    /// previous run ended, to report restarts and an OOM kill of the monitor itself.
    #[arg(long, env = "NRM_STATE_DIR", default_value = "/run/node-runtime-monitor")]
    pub state_dir: PathBuf,
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
    /// A finding of the detectors (or the monitor about itself) closes after this many seconds
    /// without a recurrence.
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
    /// The memory cgroups of the workloads seen (OOM kill counts, memory pressure), the node's
    /// memory pressure and its OOM kill count (`/proc/vmstat`) are read this often.
    #[arg(long, env = "NRM_MEMORY_READ_SECONDS", default_value_t = 15)]
    pub memory_read_seconds: u64,
    /// A control-plane cgroup fully stalled on memory (PSI `full`) for this share of the
    /// window, in percent, is a `control-plane-memory-pressure` finding.
    #[arg(long, env = "NRM_MEMORY_PRESSURE_PERCENT", default_value_t = 10.0)]
    pub memory_pressure_percent: f64,
    /// The window of that share, in seconds.
    #[arg(long, env = "NRM_MEMORY_PRESSURE_WINDOW_SECONDS", default_value_t = 60)]
    pub memory_pressure_window_seconds: u64,
    /// The configuration audit re-runs this often (and whenever a file it read changes).
    #[arg(long, env = "NRM_AUDIT_INTERVAL_SECONDS", default_value_t = 300)]
    pub audit_interval_seconds: u64,
    /// A read of the node's files and runtime sockets not done by then is reported
    /// (`node-read-stalled`), in milliseconds; `/healthz` fails while one runs past twice that.
    #[arg(long, env = "NRM_NODE_READ_DEADLINE_MS", default_value_t = 30_000)]
    pub node_read_deadline_ms: u64,
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
    /// The loop detectors' thresholds from the options (containers: twice the window).
    fn loop_config(&self) -> LoopConfig {
        let window = std::time::Duration::from_secs(self.loop_window_seconds.max(1));
        LoopConfig {
            container_restarts: self.container_restarts.max(1),
            container_window: window * 2,
            host_failures: self.host_failures.max(1),
            host_window: window,
            exec_failures: self.repeated_failures.max(1),
            exec_window: window,
            connect_failures: self.repeated_failures.max(1),
            connect_window: window,
            ..LoopConfig::default()
        }
    }

    fn memory_reads(&self) -> MemoryReads {
        let mounts = node::cgroupfs::Mounts::discover();
        // Cgroups created from now on are compared from zero: see MemoryWatchConfig::born_after.
        let born_after = mounts.memory_v1.as_ref().or(mounts.v2.as_ref()).and_then(|m| node::memory_pressure::newest_cgroup_id(m));
        let config = MemoryWatchConfig {
            born_after,
            window: std::time::Duration::from_secs(self.memory_pressure_window_seconds.max(1)),
            full_percent: self.memory_pressure_percent,
            ..MemoryWatchConfig::default()
        };
        MemoryReads {
            watch: MemoryWatch::new(config),
            interval: std::time::Duration::from_secs(self.memory_read_seconds.max(1)),
            mounts,
            host: HostRoot::new(&self.host_root),
        }
    }

    fn probe_options(&self) -> ProbeOptions {
        let mut options = ProbeOptions {
            ring_buffer_bytes: self.ring_buffer_bytes,
            report_loopback_success: self.report_loopback_connects,
            disabled: self.disabled_probes.clone(),
            btf_path: Some(self.btf.clone()),
            memory_hierarchy: node::cgroupfs::memory_hierarchy_id(),
            ..ProbeOptions::default()
        };
        options.watched_sockets.extend(self.watch_sockets.iter().cloned());
        options
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), host_root = %args.host_root.display(), "starting node-runtime-monitor");
    // A web configuration that does not load stops the daemon before it does anything.
    let web = match &args.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    // The port first: a daemon that cannot serve stops before it records a start, so the next
    // start still judges the run before this one (and no program is loaded for nothing).
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut registry = Registry::with_prefix("node_runtime_monitor");
    register_build_info(&mut registry);
    let probe_metrics = ProbeMetrics::new(&mut registry);
    probe_metrics.ring_buffer_bytes.set(args.ring_buffer_bytes as i64);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let findings = FindingStore::new();
    findings::metrics::register(&mut registry, &findings);
    let detector_metrics = DetectorMetrics::new(&mut registry);
    let probes_up = Arc::new(AtomicUsize::new(0));
    // Each stage's progress, for /healthz.
    let watchdog = crate::progress::Watchdog::default();
    let read_deadline = std::time::Duration::from_millis(args.node_read_deadline_ms.max(1));
    let sources = SourceHealth::new(&mut registry);
    // How the previous run ended (restarts, an OOM kill of the monitor), before anything else.
    let (own_cgroup, parent_cgroup) = node::cgroupfs::own_oom_kills(&node::cgroupfs::Mounts::discover());
    let previous_run = PreviousRun::record_start(&args.state_dir, own_cgroup, parent_cgroup);
    previous_run.register(&mut registry);
    if let Some(finding) = previous_run.finding() {
        findings.record(Origin::Monitor, finding, std::time::SystemTime::now());
    }

    // From here every exit is recorded as a stop of the monitor's own: a stop signal, or an
    // error it logs (not a kill or a crash), once every program is detached (the block's
    // values, the probes among them, are dropped when it ends).
    let outcome: anyhow::Result<()> = async {
        // Probes: a failure here leaves the daemon running degraded (metrics, audit, health).
        let mut probes = match Probes::load(&args.probe_options()) {
            Ok(probes) => {
                probe_metrics.set_status(&probes.status);
                probes_up.store(probes.attached(), std::sync::atomic::Ordering::Relaxed);
                info!("{}/{} kernel programs attached", probes.attached(), PROGRAMS.len());
                probes.report_sources(&sources);
                Some(probes)
            }
            Err(err) => {
                error!("kernel probes unavailable, running without them: {err}");
                probe_metrics.set_all_down();
                Probes::report_no_sources(&sources);
                None
            }
        };

        // Parsing the kernel's BTF (twice: ours and aya's) took megabytes that are free now: give
        // them back to the system rather than keep them in the heap for the daemon's lifetime.
        // SAFETY: malloc_trim only releases free memory of the allocator (glibc's; the static
        // musl build of the image has none).
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0)
        };

        let memory_reads = args.memory_reads();
        let (events_tx, events_rx) = mpsc::channel(args.event_queue.max(1));
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(probes) = probes.as_mut() {
            let stats = probes.take_stats().context("kernel statistics map")?;
            registry.register_collector(Box::new(KernelStatsCollector::new(stats)));
            let ring = probes.take_events().context("events ring buffer")?;
            let metrics = probe_metrics.clone();
            let shutdown = shutdown_rx.clone();
            let stage = watchdog.stage("ring buffer reader", std::time::Duration::from_secs(30));
            tasks.spawn(report_existing_cgroups(events_tx.clone(), memory_reads.mounts.clone()));
            tasks.spawn(async move {
                match probes::reader::run(ring, events_tx, metrics, stage, shutdown).await {
                    Ok(n) => debug!("reader stopped after {n} records"),
                    Err(err) => error!("ring buffer reader failed: {err}"),
                }
            });
        } else {
            // The kernel counters' families stay, at 0, for the alerts over them.
            registry.register_collector(Box::new(KernelStatsCollector::unloaded()));
            drop(events_tx);
        }

        // The node's configuration, read now and whenever it changes: the audit judges it,
        // attribution takes kubelet's hints from it.
        let interval = std::time::Duration::from_secs(args.audit_interval_seconds.max(1));
        let schedule = node::watch::ReadSchedule { interval, deadline: read_deadline };
        let node = node::watch::spawn(
            HostRoot::new(&args.host_root),
            SnapshotOptions::default(),
            schedule,
            watchdog.stage("node reader", read_deadline * 2),
            shutdown_rx.clone(),
        );
        let sources_task = sources.follow_node(node.snapshots.clone());
        let audit_stage = watchdog.stage("audit", std::time::Duration::from_secs(30));
        let (audit_reports, audit_task) = audit::spawn(node.snapshots, findings.clone(), AuditMetrics::new(&mut registry), audit_stage);

        let (attributed_rx, attribution_task) =
            attribution::spawn(attribution_config(&args, node.kubelet), events_rx, &mut registry);
        let pipeline = Pipeline::new(Detectors::new(args.loop_config()), audit_reports, findings.clone(), detector_metrics, args.log_events)
            .with_memory_reads(memory_reads);
        for task in [node.task, audit_task, attribution_task, sources_task] {
            tasks.spawn(async move {
                let _ = task.await;
            });
        }
        tasks.spawn(pipeline.run(attributed_rx, watchdog.stage("pipeline", std::time::Duration::from_secs(30))));
        let quiet = std::time::Duration::from_secs(args.finding_quiet_seconds.max(1));
        tasks.spawn(findings.clone().close_quiet(Origin::Detectors, quiet, shutdown_rx.clone()));
        tasks.spawn(findings.clone().close_quiet(Origin::Monitor, quiet, shutdown_rx.clone()));

        let http_metrics = http::HttpMetrics::new(&mut registry);
        let registry = Arc::new(registry);
        info!(address = %listener.local_addr().unwrap_or(args.listen), tls = web.tls.is_some(), basic_auth = web.basic_auth.is_some(), "serving /metrics, /findings, /healthz");
        let state = AppState { watchdog, ..AppState::new(registry, findings, probes_up, PROGRAMS.len()) };
        let server_shutdown = shutdown_rx.clone();
        tasks.spawn(async move {
            if let Err(err) = http::serve(listener, state, http::Limits::default(), web, http_metrics, server_shutdown).await {
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
        Ok(())
    }
    .await;
    previous_run.record_clean_stop();
    info!("stopped");
    outcome
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

/// The attribution stage's settings: the host root, kubelet's hints from the node reader.
fn attribution_config(args: &RunArgs, kubelet: watch::Receiver<KubeletHints>) -> AttributionConfig {
    AttributionConfig {
        kubelet: Some(kubelet),
        node_name: args.node_name.clone().filter(|n| !n.is_empty()),
        hold: std::time::Duration::from_millis(args.attribution_hold_ms),
        host_root: args.host_root.clone(),
        queue: args.event_queue.max(1),
        ..AttributionConfig::default()
    }
}

/// Reports the containers' and node daemons' cgroups that are there at the start (the kernel
/// reports those created later), as if just created: attribution names their owners and the
/// detectors follow them from now, events or not.
async fn report_existing_cgroups(events: mpsc::Sender<events::Record>, mounts: node::cgroupfs::Mounts) {
    let found = tokio::task::spawn_blocking(move || {
        let (hierarchy, mount) = node::cgroupfs::memory_hierarchy(&mounts)?;
        Some((hierarchy, node::cgroupfs::workload_cgroups(&mount)))
    })
    .await;
    let Ok(Some((hierarchy, found))) = found else {
        warn!("no memory cgroup hierarchy to look for the cgroups already there: only those that make events are followed");
        return;
    };
    info!(cgroups = found.len(), hierarchy, "containers' and node daemons' cgroups already there, followed from now");
    for (id, path) in found {
        let created = events::CgroupCreated { task: events::Task::default(), hierarchy, id, path, path_truncated: false, existing: true };
        if events.send(events::Record { cpu: 0, event: events::Event::CgroupCreated(created) }).await.is_err() {
            return;
        }
    }
}
