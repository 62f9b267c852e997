//! `check`: reads the node once, judges it and prints the report (the audit without the
//! daemon). A composition root like `daemon`: it wires `node`, `audit` and the report exporter.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::{
    audit::Audit,
    exporters::check_report,
    node::{
        cri_facts::CriFacts,
        snapshot::{CriSource, SnapshotOptions},
    },
};

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

/// Runs the audit once and prints the report; returns the exit code (0, 1, 2).
pub async fn run(args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.host_root.is_dir(), "host root {} is not a directory", args.host_root.display());
    let cri = match &args.cri_replay {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading CRI replay {}", path.display()))?;
            CriSource::Recorded(CriFacts::from_json(&text).with_context(|| format!("parsing CRI replay {}", path.display()))?)
        }
        None => CriSource::Live { timeout: Duration::from_millis(args.cri_timeout_ms) },
    };
    let audit = Audit::new(&args.host_root, SnapshotOptions { cri, ..Default::default() });
    let report = audit.run_once().await;
    let colour = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let text = if args.output == "json" { check_report::json(&report) } else { check_report::text(&report, colour) };
    println!("{text}");
    Ok(check_report::exit_code(&report.findings))
}
