//! The `node-runtime-monitor` command: the daemon (`run`) and the one-shot audit (`check`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use monitor::{catalogue, check, daemon};

#[derive(Debug, Parser)]
#[command(
    name = "node-runtime-monitor",
    version,
    about = "eBPF node agent that names why a node's container runtime or control plane fails",
    long_about = "Kernel probes observe OOM kills, execs (and failed execs), exits, fatal signals and \
socket connects; each event is attributed to its container, pod, static pod or host service and \
correlated with the node's runtime configuration. `run` is the daemon (Prometheus metrics on \
/metrics, findings on /findings); `check` audits the runtime configuration once and exits."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: load and attach the kernel probes, serve /metrics, /findings, /healthz.
    Run(Box<daemon::RunArgs>),
    /// Audit this node's runtime configuration once and print a report.
    ///
    /// Exit code: 0 healthy, 1 warnings, 2 critical findings, 3 the check itself failed.
    Check(check::CheckArgs),
    /// Print the catalogue of every finding the monitor can raise (Markdown table).
    Rules,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(3);
        }
    };
    match cli.command {
        Command::Run(args) => {
            daemon::init_logging(&args.log_format);
            match runtime.block_on(daemon::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Rules => {
            print!("{}", catalogue::markdown());
            ExitCode::SUCCESS
        }
        Command::Check(args) => match runtime.block_on(check::run(args)) {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(3)
            }
        },
    }
}
