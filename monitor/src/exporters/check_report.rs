//! The `check` report: findings grouped by severity as readable text (with colour on a
//! terminal) or as JSON, and the exit code they mean. It formats; it decides nothing.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    audit::AuditReport,
    findings::{Finding, Severity},
    node::cri_facts::{ApiAnswer, SocketFacts},
};

/// Exit code of `check`: 0 healthy (info at most), 1 warnings, 2 critical findings.
/// (3, the check itself failed, is the binary's.)
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Critical) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    host_root: String,
    status: &'static str,
    exit_code: u8,
    summary: Summary,
    findings: &'a [Finding],
    sockets: Vec<JsonSocket>,
    containerd_release: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    critical: usize,
    warning: usize,
    info: usize,
}

#[derive(Serialize)]
struct JsonSocket {
    endpoint: String,
    exists: bool,
    cri_v1: Option<String>,
    cri_v1alpha2: Option<String>,
    /// The cgroup driver the runtime reports it really uses (`systemd` or `cgroupfs`): its
    /// `RuntimeConfig` answer, else containerd's `Status` config.
    cgroup_driver: Option<String>,
    sandbox_image: Option<String>,
}

fn driver(s: &SocketFacts) -> Option<String> {
    s.reported_cgroup_driver().map(|(driver, _)| driver.to_string())
}

fn api(a: &ApiAnswer) -> Option<String> {
    match a {
        ApiAnswer::Served(r) => Some(format!("{} {}", r.runtime_name, r.runtime_version)),
        _ => None,
    }
}

pub fn json(report: &AuditReport) -> String {
    let count = |s| report.findings.iter().filter(|f| f.severity == s).count();
    let code = exit_code(&report.findings);
    let r = JsonReport {
        host_root: report.snapshot.host_root.display().to_string(),
        status: ["healthy", "warning", "critical"][code as usize],
        exit_code: code,
        summary: Summary { critical: count(Severity::Critical), warning: count(Severity::Warning), info: count(Severity::Info) },
        findings: &report.findings,
        sockets: report
            .snapshot
            .cri
            .sockets
            .iter()
            .filter(|s| s.exists)
            .map(|s| JsonSocket {
                endpoint: format!("unix://{}", s.endpoint.display()),
                exists: s.exists,
                cri_v1: api(&s.v1),
                cri_v1alpha2: api(&s.v1alpha2),
                cgroup_driver: driver(s),
                sandbox_image: s.sandbox_image().map(str::to_string),
            })
            .collect(),
        containerd_release: report.snapshot.containerd_release_text(),
    };
    serde_json::to_string_pretty(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

pub fn text(report: &AuditReport, colour: bool) -> String {
    let paint = |code: &str, s: &str| if colour { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut out = String::new();
    let _ = writeln!(out, "node-runtime-monitor check: host root {}", report.snapshot.host_root.display());
    if let Some(r) = report.snapshot.containerd_release_text() {
        let _ = writeln!(out, "containerd: {r}");
    }
    for s in report.snapshot.cri.sockets.iter().filter(|s| s.exists) {
        let show = |a: &ApiAnswer| api(a).unwrap_or_else(|| "no".into());
        let _ = writeln!(out, "CRI socket unix://{}: runtime.v1: {}; runtime.v1alpha2: {}", s.endpoint.display(), show(&s.v1), show(&s.v1alpha2));
        if let Some(driver) = driver(s) {
            let image = s.sandbox_image().unwrap_or("?");
            let _ = writeln!(out, "  runtime reports: cgroup driver {driver}, sandbox image {image}");
        }
    }
    for (sev, label, code) in [(Severity::Critical, "CRITICAL", "1;31"), (Severity::Warning, "WARNING", "1;33"), (Severity::Info, "INFO", "1;34")] {
        let group: Vec<&Finding> = report.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({})", paint(code, label), group.len());
        for f in group {
            let _ = writeln!(out, "  [{}] {}: {}", f.rule, f.subject, paint("1", &f.title));
            for e in &f.evidence {
                let _ = writeln!(out, "      {} {}: {}", paint("2", "evidence"), e.source, e.detail);
            }
            if !f.remediation.is_empty() {
                let _ = writeln!(out, "      {} {}", paint("32", "fix"), f.remediation);
            }
        }
    }
    let code = exit_code(&report.findings);
    let status = match (code, report.findings.len()) {
        (0, 0) => "healthy: no findings",
        (0, _) => "healthy: notes only",
        (1, _) => "warnings",
        _ => "critical findings",
    };
    let _ = writeln!(out, "\n{} ({} findings, {} ms)", status, report.findings.len(), report.snapshot.elapsed.as_millis());
    out
}
