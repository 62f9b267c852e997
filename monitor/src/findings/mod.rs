//! Findings: what the monitor concludes, with the evidence for it. Detectors (from kernel
//! events) and the audit (from configuration) produce them; exporters (metrics, /findings,
//! logs, the `check` report) consume them and know nothing of how they were found.

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

/// Every rule the monitor can raise (configuration audit, then detectors), as a Markdown
/// table: what `node-runtime-monitor rules` prints and docs/FINDINGS.md holds.
pub fn catalogue() -> String {
    let mut out = String::from(
        "| rule | severity | source | title | what it means |\n|---|---|---|---|---|\n",
    );
    let audit = crate::audit::rules::RULES.iter().map(|r| (r, "audit"));
    let detectors = crate::detectors::rules();
    for (rule, source) in audit.chain(detectors.iter().map(|r| (r, "kernel events"))) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            rule.id,
            rule.severity,
            source,
            rule.title,
            rule.description.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_catalogue_is_the_one_the_code_has() {
        let doc = include_str!("../../../docs/FINDINGS.md");
        assert!(
            doc.ends_with(&super::catalogue()),
            "docs/FINDINGS.md is stale: regenerate its table with `node-runtime-monitor rules`"
        );
    }

    #[test]
    fn rule_ids_are_unique() {
        let catalogue = super::catalogue();
        let mut ids: Vec<&str> = catalogue.lines().skip(2).filter_map(|l| l.split('`').nth(1)).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "duplicate rule ids");
        assert!(count >= 25, "{count} rules");
    }
}
