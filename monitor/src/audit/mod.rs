//! Runtime configuration audit (being written): collectors read the node's configuration,
//! rules turn it into findings. `check` runs it once.

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Root of the node's filesystem (a DaemonSet mounts the host at e.g. /host).
    #[arg(long, default_value = "/")]
    pub host_root: std::path::PathBuf,
}

/// Runs the audit once; returns the process exit code.
pub async fn run_check(_args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::bail!("the configuration audit is not implemented yet")
}
