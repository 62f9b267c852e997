//! Runtime configuration audit: collectors read what this node's runtime configuration is
//! (containerd config, kubelet flags and config, static pods, CRI sockets, runtime binaries,
//! memory), rules say what in it will break the node, with the evidence and the fix.
//! It does not watch kernel events (that is the detectors') and never prints secrets:
//! evidence holds only the values rules interpret, and a last pass redacts any credential
//! value found in the node's files from every finding.
//!
//! # API (used by `check` and by the daemon)
//! ```ignore
//! let audit = audit::Audit::new(host_root, audit::AuditOptions::default());
//! let report: audit::AuditReport = audit.run_once().await;   // findings, watched files, ...
//! let metrics = audit::metrics::AuditMetrics::new(&mut registry); // audit_runs_total
//! let handle = audit::metrics::spawn_periodic(audit, metrics, interval, shutdown_rx, on_report);
//! ```
//! `spawn_periodic` re-runs the audit every `interval` and whenever a watched file changes
//! (mtime poll every 2 s), and hands each report to its caller (the daemon's finding store).

pub mod cri_facts;
pub mod facts;
pub mod manifests;
pub mod metrics;
pub mod report;
pub mod rules;
mod live_cri;

use std::{
    io::IsTerminal,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
pub use cri_facts::CriFacts;

use crate::{findings::Finding, node::host_root::HostRoot};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Root of the node's filesystem (a DaemonSet mounts the host at e.g. /host).
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,
    /// Report format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// Colour in the text report: auto (on a terminal), always, never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Time allowed for each CRI call (e.g. the Version call on each socket), in milliseconds.
    #[arg(long, default_value_t = 800)]
    pub cri_timeout_ms: u64,
    /// Use recorded CRI answers (JSON) instead of asking the sockets (tests, offline analysis).
    #[arg(long, hide = true)]
    pub cri_replay: Option<PathBuf>,
}

/// How the audit gets its CRI facts.
#[derive(Debug, Clone)]
pub enum CriSource {
    /// Ask the sockets under the host root, each call bounded by this timeout.
    Live { timeout: Duration },
    /// A recorded answer.
    Recorded(CriFacts),
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub cri: CriSource,
    /// Time allowed for each `--version` of a runtime binary.
    pub exec_timeout: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self { cri: CriSource::Live { timeout: Duration::from_millis(800) }, exec_timeout: Duration::from_millis(800) }
    }
}

/// kubelet's `staticPodPath` when its configuration does not say (kubeadm's, and the default
/// of most installers).
pub const DEFAULT_STATIC_POD_PATH: &str = "/etc/kubernetes/manifests";

/// The result of one audit run.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub host_root: PathBuf,
    pub findings: Vec<Finding>,
    /// Host paths whose change should re-run the audit.
    pub watched: Vec<PathBuf>,
    pub cri: CriFacts,
    pub containerd_release: Option<String>,
    /// kubelet's runtime endpoint (as configured, else its default) on a Kubernetes node.
    pub runtime_endpoint: Option<String>,
    /// kubelet's static pod directory (host path), on a Kubernetes node.
    pub static_pod_path: Option<PathBuf>,
    /// kubelet's `--hostname-override`, when set: static pods are named `<name>-<this>`.
    pub node_name: Option<String>,
    pub elapsed: Duration,
}

/// The audit of one host root.
#[derive(Debug, Clone)]
pub struct Audit {
    root: HostRoot,
    options: AuditOptions,
}

impl Audit {
    pub fn new(host_root: impl Into<PathBuf>, options: AuditOptions) -> Self {
        Self { root: HostRoot::new(host_root), options }
    }

    pub fn host_root(&self) -> &std::path::Path {
        self.root.root()
    }

    /// Collects the node's facts and evaluates every rule. Never fails: what cannot be read
    /// becomes a finding.
    pub async fn run_once(&self) -> AuditReport {
        let started = Instant::now();
        let mut facts = facts::collect_files(&self.root, self.options.exec_timeout).await;
        facts.cri = match &self.options.cri {
            CriSource::Recorded(cri) => cri.clone(),
            CriSource::Live { timeout } => live_cri::probe(&self.root, &facts::candidate_sockets(&facts), *timeout).await,
        };
        facts.containerd_release = facts::containerd_release(&facts);
        let runtime_endpoint = facts.expects_kubelet().then(|| facts.kubelet_endpoint().value);
        let static_pod_path = facts.expects_kubelet().then(|| {
            facts.kubelet.static_pod_path().map(|v| PathBuf::from(v.value)).unwrap_or_else(|| PathBuf::from(DEFAULT_STATIC_POD_PATH))
        });
        let node_name = facts.kubelet.hostname_override().map(|v| v.value.to_ascii_lowercase());
        let mut findings = rules::evaluate(&facts);
        let secrets = secrets_of(&facts);
        redact(&mut findings, &secrets);
        AuditReport {
            host_root: self.root.root().to_path_buf(),
            findings,
            watched: facts.watched,
            cri: facts.cri,
            containerd_release: facts.containerd_release.map(|r| format!("{} ({})", r.release, r.source)),
            runtime_endpoint,
            static_pod_path,
            node_name,
            elapsed: started.elapsed(),
        }
    }
}

/// Runs the audit once and prints the report; returns the exit code (0, 1, 2).
pub async fn run_check(args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.host_root.is_dir(), "host root {} is not a directory", args.host_root.display());
    let cri = match &args.cri_replay {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading CRI replay {}", path.display()))?;
            CriSource::Recorded(CriFacts::from_json(&text).with_context(|| format!("parsing CRI replay {}", path.display()))?)
        }
        None => CriSource::Live { timeout: Duration::from_millis(args.cri_timeout_ms) },
    };
    let audit = Audit::new(&args.host_root, AuditOptions { cri, ..Default::default() });
    let report = audit.run_once().await;
    let colour = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let text = if args.output == "json" { report::json(&report) } else { report::text(&report, colour) };
    println!("{text}");
    Ok(report::exit_code(&report.findings))
}

/// Credential values present in the node's configuration: registry auth in containerd's
/// config, inline secret flags of kubelet.
fn secrets_of(facts: &facts::NodeFacts) -> Vec<String> {
    fn walk(v: &toml::Value, key: &str, out: &mut Vec<String>, depth: usize) {
        match v {
            toml::Value::Table(t) if depth < 64 => t.iter().for_each(|(k, v)| walk(v, k, out, depth + 1)),
            toml::Value::Array(a) if depth < 64 => a.iter().for_each(|v| walk(v, key, out, depth + 1)),
            toml::Value::String(s) => {
                let k = key.to_ascii_lowercase();
                let secret = ["auth", "password", "token", "secret", "username"].iter().any(|w| k.contains(w))
                    || (k.contains("key") && !k.ends_with("_file") && !k.ends_with("key_path"));
                if secret && s.len() >= 3 {
                    out.push(s.clone());
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in &facts.containerd_config.files {
        for (k, v) in &f.table {
            walk(v, k, &mut out, 0);
        }
    }
    for flag in &facts.kubelet.flags {
        if crate::node::kubelet::is_sensitive_flag(&flag.name) && flag.value.len() >= 3 {
            out.push(flag.value.clone());
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Replaces every secret value in every text of every finding.
fn redact(findings: &mut [Finding], secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let clean = |s: &mut String| {
        for secret in secrets {
            if s.contains(secret.as_str()) {
                *s = s.replace(secret.as_str(), "[REDACTED]");
            }
        }
    };
    for f in findings {
        clean(&mut f.subject);
        clean(&mut f.title);
        clean(&mut f.remediation);
        for e in &mut f.evidence {
            clean(&mut e.source);
            clean(&mut e.detail);
        }
    }
}
