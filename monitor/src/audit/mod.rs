//! Runtime configuration audit: judges one read of the node ([`NodeSnapshot`], from `node`)
//! with the [`rules`], each finding with its evidence and the fix. It reads nothing itself
//! (that is `node`), does not watch kernel events (that is the detectors') and never prints
//! secrets: evidence holds only the values rules interpret, and a last pass redacts any
//! credential value found in the node's files from every finding.
//!
//! # API (used by `check` and by the daemon)
//! ```ignore
//! let findings = audit::judge(&snapshot);                      // a snapshot's findings
//! let report = audit::Audit::new(host_root, options).run_once().await; // read, then judge
//! let (reports, task) = audit::spawn(snapshots, store, metrics);  // the daemon's audit stage
//! ```

pub mod redact;
pub mod rules;

use std::{path::PathBuf, sync::Arc};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

use crate::{
    findings::{Finding, Origin, store::FindingStore},
    node::{
        host_root::HostRoot,
        snapshot::{self, NodeSnapshot, SnapshotOptions},
        watch::Snapshots,
    },
};

/// One audit: the snapshot it judged and its findings.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub snapshot: Arc<NodeSnapshot>,
    pub findings: Vec<Finding>,
}

/// Judges a snapshot: every rule, then secrets redacted.
pub fn judge(snapshot: &NodeSnapshot) -> Vec<Finding> {
    let mut findings = rules::evaluate(snapshot);
    redact::redact(&mut findings, &redact::secrets_of(snapshot));
    findings
}

/// The audit of one host root, read and judged on demand (`check`, tests).
#[derive(Debug, Clone)]
pub struct Audit {
    root: HostRoot,
    options: SnapshotOptions,
}

impl Audit {
    pub fn new(host_root: impl Into<PathBuf>, options: SnapshotOptions) -> Self {
        Self { root: HostRoot::new(host_root), options }
    }

    /// Reads the node and evaluates every rule. Never fails: what cannot be read is a finding.
    pub async fn run_once(&self) -> AuditReport {
        let snapshot = Arc::new(snapshot::collect(&self.root, &self.options).await);
        AuditReport { findings: judge(&snapshot), snapshot }
    }
}

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

/// The latest audit; `None` until the first snapshot was judged.
pub type Reports = watch::Receiver<Option<Arc<AuditReport>>>;

/// The daemon's audit stage: judges every snapshot `node` publishes, puts the findings in the
/// store (replacing the previous audit's: a finding not found again has closed), counts the
/// run, and publishes the report for the detectors. It ends when the snapshots end.
pub fn spawn(mut snapshots: Snapshots, store: FindingStore, metrics: AuditMetrics) -> (Reports, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let findings = judge(&snapshot);
                metrics.runs.inc();
                info!(findings = findings.len(), elapsed_ms = snapshot.elapsed.as_millis() as u64, "configuration audit done");
                store.replace(Origin::Audit, findings.clone(), std::time::SystemTime::now());
                tx.send_replace(Some(Arc::new(AuditReport { snapshot, findings })));
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    (rx, task)
}
