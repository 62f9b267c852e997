//! The daemon (`run`): wires probes -> events -> attribution -> detectors -> exporters.
//! (being written)

use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the HTTP server (/metrics, /findings, /healthz).
    #[arg(long, env = "NRM_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
    /// Root of the node's filesystem (a DaemonSet mounts the host at e.g. /host).
    #[arg(long, env = "NRM_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    /// Log format: text or json.
    #[arg(long, env = "NRM_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NRM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

pub async fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
