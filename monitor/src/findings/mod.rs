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

/// Longest subject (and evidence source) shown, in characters; longer ones end in `…`.
pub const MAX_SUBJECT_CHARS: usize = 256;
/// Longest title shown, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// Longest evidence detail or remediation, in characters.
pub const MAX_TEXT_CHARS: usize = 2048;
/// Most pieces of evidence kept per finding.
pub const MAX_EVIDENCE: usize = 64;

/// `text` without control characters (a newline or an escape sequence would forge log lines
/// or terminal output), cut to `max` characters.
pub fn bounded_text(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max + 1).collect();
    if out.chars().count() > max {
        out = out.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
    }
    out
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
    /// It stands for findings folded past a cap (a caller's subjects): counted as a fold. A
    /// flag, not a subject's shape: subjects are paths a workload may choose.
    #[serde(skip)]
    pub folded: bool,
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
            folded: false,
        }
    }

    /// The finding as one that stands for others folded past a cap.
    pub fn folded(mut self) -> Self {
        self.folded = true;
        self
    }

    pub fn evidence(mut self, source: impl Into<String>, detail: impl Into<String>) -> Self {
        self.evidence.push(Evidence::new(source, detail));
        self
    }

    pub fn remediation(mut self, text: impl Into<String>) -> Self {
        self.remediation = text.into();
        self
    }

    /// The finding with every text bounded and stripped of control characters: subjects,
    /// titles and evidence may hold what a workload chose (a path, a socket name), and are
    /// shown in logs, `/findings`, metric labels and the `check` report.
    pub fn bounded(mut self) -> Self {
        self.subject = bounded_text(&self.subject, MAX_SUBJECT_CHARS);
        self.title = bounded_text(&self.title, MAX_TITLE_CHARS);
        self.remediation = bounded_text(&self.remediation, MAX_TEXT_CHARS);
        self.evidence.truncate(MAX_EVIDENCE);
        for e in &mut self.evidence {
            e.source = bounded_text(&e.source, MAX_SUBJECT_CHARS);
            e.detail = bounded_text(&e.detail, MAX_TEXT_CHARS);
        }
        self
    }

    /// Identity of an open finding: the same rule about the same subject is one finding.
    pub fn key(&self) -> (&'static str, &str) {
        (self.rule, &self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_and_stripped_of_control_characters() {
        assert_eq!(bounded_text("/tmp/x\n\x1b[31mfake log line", 100), "/tmp/x[31mfake log line");
        assert_eq!(bounded_text("abcdef", 4), "abc…");
        assert_eq!(bounded_text("abcd", 4), "abcd");
        let rule = Rule { id: "r", severity: Severity::Warning, title: "", description: "" };
        let long = "p".repeat(10_000);
        let f = Finding::new(&rule, long.clone(), format!("title\r\n{long}")).evidence(long.clone(), long).bounded();
        assert_eq!(f.subject.chars().count(), MAX_SUBJECT_CHARS);
        assert!(f.title.starts_with("titlepp") && f.title.chars().count() == MAX_TITLE_CHARS);
        assert_eq!(f.evidence[0].detail.chars().count(), MAX_TEXT_CHARS);
    }
}
