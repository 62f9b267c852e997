//! The audit in the daemon: a gauge per open finding
//! (`node_runtime_monitor_audit_findings_open{rule,severity,subject} 1` under the registry's
//! prefix) whose series is removed when the cause is fixed, and a task that re-runs the audit
//! periodically and whenever a watched file changes (an mtime poll: portable, no inotify).

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{Audit, AuditReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub rule: String,
    pub severity: String,
    pub subject: String,
}

/// The audit's metrics.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    pub findings_open: Family<FindingLabels, Gauge>,
    pub runs: Counter,
    open: Arc<std::sync::Mutex<HashSet<FindingLabels>>>,
}

impl AuditMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "audit_findings_open",
            "Open runtime configuration findings (1 per finding; the series disappears when fixed)",
            m.findings_open.clone(),
        );
        registry.register("audit_runs", "Runs of the runtime configuration audit", m.runs.clone());
        m
    }

    /// Sets one series per open finding and removes the series of findings that closed.
    pub fn update(&self, report: &AuditReport) {
        self.runs.inc();
        let now: HashSet<FindingLabels> = report
            .findings
            .iter()
            .map(|f| FindingLabels { rule: f.rule.to_string(), severity: f.severity.to_string(), subject: f.subject.clone() })
            .collect();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for closed in open.difference(&now) {
            self.findings_open.remove(closed);
        }
        for labels in &now {
            self.findings_open.get_or_create(labels).set(1);
        }
        *open = now;
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
/// `shutdown` turns true. Each report updates `metrics` and is passed to `on_report`
/// (e.g. to publish findings on /findings).
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
            metrics.update(&report);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{Finding, Rule, Severity};

    const R: Rule = Rule { id: "cgroup-driver-mismatch", severity: Severity::Critical, title: "t", description: "d" };

    fn report(findings: Vec<Finding>) -> AuditReport {
        AuditReport {
            host_root: "/".into(),
            findings,
            watched: vec![],
            cri: Default::default(),
            containerd_release: None,
            runtime_endpoint: None,
            static_pod_path: None,
            node_name: None,
            elapsed: Duration::ZERO,
        }
    }

    fn scrape(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap_or_default();
        out
    }

    #[test]
    fn series_appear_and_disappear_with_findings() {
        let mut registry = Registry::with_prefix("node_runtime_monitor");
        let m = AuditMetrics::new(&mut registry);
        m.update(&report(vec![Finding::new(&R, "kubelet/containerd", "x")]));
        let text = scrape(&registry);
        assert!(
            text.contains("node_runtime_monitor_audit_findings_open{rule=\"cgroup-driver-mismatch\",severity=\"critical\",subject=\"kubelet/containerd\"} 1"),
            "{text}"
        );
        m.update(&report(vec![]));
        let text = scrape(&registry);
        assert!(!text.contains("subject=\"kubelet/containerd\""), "{text}");
        assert!(text.contains("node_runtime_monitor_audit_runs_total 2"), "{text}");
    }
}
