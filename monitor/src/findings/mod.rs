//! Findings: what the monitor concludes, with the evidence for it. Detectors (from kernel
//! events) and the audit (from configuration) produce them; exporters (metrics, /findings,
//! logs, the `check` report) consume them and know nothing of how they were found. This
//! module knows no producer: the catalogue of every rule is assembled at the crate's edge
//! (`catalogue`).

use std::fmt;

use serde::Serialize;

pub mod metrics;
pub mod store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stage produced a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The configuration audit: its findings are replaced as a whole by each audit.
    Audit,
    /// The detectors of kernel events: their findings close after a quiet period.
    Detectors,
    /// The monitor about itself (its previous run): closes after a quiet period.
    Monitor,
}

impl Origin {
    /// The `source` label of `findings_open` and field of `/findings`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Audit => "audit",
            Origin::Detectors => "detectors",
            Origin::Monitor => "monitor",
        }
    }
}

/// A rule is data: its id, severity and meaning are printable and testable on their own.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `containerd-config-version-unsupported`.
    pub id: &'static str,
    pub severity: Severity,
    /// One line: what is wrong.
    pub title: &'static str,
    /// What it means for the node, for the catalogue.
    pub description: &'static str,
}

/// One piece of evidence: where it comes from (a file and line, a socket's answer, a kernel
/// event) and what it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// `path:line`, `unix:///run/containerd/containerd.sock (CRI Version)`, `kernel: oom:mark_victim`...
    pub source: String,
    pub detail: String,
}

impl Evidence {
    pub fn new(source: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { source: source.into(), detail: detail.into() }
    }
}

/// A conclusion about one subject (a file, a socket, a pod, a service).
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// What the finding is about, e.g. `/etc/containerd/config.toml` or `kube-system/kube-apiserver-node1`.
    pub subject: String,
    /// One line, specific to this subject.
    pub title: String,
    pub evidence: Vec<Evidence>,
    /// What to do about it.
    pub remediation: String,
}

impl Finding {
    pub fn new(rule: &Rule, subject: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            rule: rule.id,
            severity: rule.severity,
            subject: subject.into(),
            title: title.into(),
            evidence: Vec::new(),
            remediation: String::new(),
        }
    }

    pub fn evidence(mut self, source: impl Into<String>, detail: impl Into<String>) -> Self {
        self.evidence.push(Evidence::new(source, detail));
        self
    }

    pub fn remediation(mut self, text: impl Into<String>) -> Self {
        self.remediation = text.into();
        self
    }

    /// Identity of an open finding: the same rule about the same subject is one finding.
    pub fn key(&self) -> (&'static str, &str) {
        (self.rule, &self.subject)
    }
}
