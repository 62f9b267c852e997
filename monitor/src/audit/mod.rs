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
    findings::{Finding, Origin, Rule, Severity, store::FindingStore},
    progress::Stage,
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

/// Judges a snapshot: every rule, then secrets redacted, then every text bounded (paths and
/// names under the host root are the node's users' to choose, and reach `check`'s report too).
pub fn judge(snapshot: &NodeSnapshot) -> Vec<Finding> {
    let mut findings = rules::evaluate(snapshot);
    redact::redact(&mut findings, &redact::secrets_of(snapshot));
    findings.into_iter().map(Finding::bounded).collect()
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

/// The audit about itself: the node reader missed its deadline.
pub const NODE_READ_STALLED: Rule = Rule {
    id: "node-read-stalled",
    severity: Severity::Warning,
    title: "the node's configuration could not be read in time",
    description: "A read of the node's files and runtime sockets missed its deadline (a stuck mount, a socket that accepts but never answers): the audit's other findings are those of the last complete read, and changes since are not seen until a read completes.",
};

/// The latest audit; `None` until the first snapshot was judged.
pub type Reports = watch::Receiver<Option<Arc<AuditReport>>>;

/// The daemon's audit stage: judges every snapshot `node` publishes, puts the findings in the
/// store (replacing the previous audit's: a finding not found again has closed), counts the
/// run, and publishes the report for the detectors. It ends when the snapshots end.
///
/// A stand-in for a read that missed its deadline keeps the last report's findings and adds
/// [`NODE_READ_STALLED`]; the detectors keep the last report. Judging runs off the async
/// workers, its stage busy meanwhile.
pub fn spawn(mut snapshots: Snapshots, store: FindingStore, metrics: AuditMetrics, stage: Stage) -> (Reports, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut last: Vec<Finding> = Vec::new();
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                if let Some(why) = &snapshot.stalled {
                    let mut findings = last.clone();
                    findings.push(
                        Finding::new(&NODE_READ_STALLED, "node", "the node's configuration could not be read in time")
                            .evidence("node reader", why.clone())
                            .remediation("Look for a stuck mount under the host root (NFS, FUSE) or a runtime socket that accepts but never answers (`ss -xlp`); the findings of the last complete read stand meanwhile."),
                    );
                    store.replace(Origin::Audit, findings, std::time::SystemTime::now());
                } else {
                    let busy = stage.busy();
                    let judged = {
                        let snapshot = snapshot.clone();
                        tokio::task::spawn_blocking(move || judge(&snapshot)).await
                    };
                    drop(busy);
                    let Ok(findings) = judged else { return };
                    metrics.runs.inc();
                    info!(findings = findings.len(), elapsed_ms = snapshot.elapsed.as_millis() as u64, "configuration audit done");
                    store.replace(Origin::Audit, findings.clone(), std::time::SystemTime::now());
                    last = findings.clone();
                    tx.send_replace(Some(Arc::new(AuditReport { snapshot, findings })));
                }
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    (rx, task)
}
