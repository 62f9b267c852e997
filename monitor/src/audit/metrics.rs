//! The audit in the daemon: a task that re-runs the audit periodically and whenever a watched
//! file changes (an mtime poll: portable, no inotify), and a counter of its runs. Its findings
//! are exported with every other finding (`findings_open{source="audit"}`), by whoever takes
//! the reports.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};

use super::{Audit, AuditReport};

/// The audit's metrics.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    pub runs: Counter,
}

impl AuditMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("audit_runs", "Runs of the runtime configuration audit", m.runs.clone());
        m
    }
}

/// How often watched files are polled for changes.
pub const POLL: Duration = Duration::from_secs(2);

fn mtimes(audit: &Audit, paths: &[PathBuf]) -> HashMap<PathBuf, Option<SystemTime>> {
    let root = crate::node::host_root::HostRoot::new(audit.host_root());
    paths
        .iter()
        .map(|p| (p.clone(), std::fs::metadata(root.resolve(p)).and_then(|m| m.modified()).ok()))
        .collect()
}

/// Runs the audit now, then every `interval` and whenever a watched file changes, until
/// `shutdown` turns true. Each run is counted in `metrics` and its report passed to
/// `on_report` (the daemon puts its findings in the store, which exports and serves them).
pub fn spawn_periodic(
    audit: Audit,
    metrics: AuditMetrics,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    on_report: impl Fn(&AuditReport) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let report = audit.run_once().await;
            metrics.runs.inc();
            on_report(&report);
            let seen = mtimes(&audit, &report.watched);
            let deadline = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(POLL.min(interval)) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
                if tokio::time::Instant::now() >= deadline || mtimes(&audit, &report.watched) != seen {
                    break;
                }
            }
        }
    })
}
