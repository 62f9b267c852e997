//! Developer and CI verbs: `setup`, `run`, `test`, `bench`, `fuzz`, `package`, `image`. Every
//! verb first runs `setup`, which installs only what is missing (pinned Rust toolchain with
//! rust-src, pinned bpf-linker, the Debian packages), so a fresh machine needs nothing but
//! `cargo xtask <verb>`.
//!
//! xtask itself builds with the machine's default toolchain; everything else builds with the
//! pinned one (`cargo +TOOLCHAIN`), which aya 0.16 needs.

mod bench;
mod fuzz;
mod image;
mod package;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rust toolchain of the project (aya 0.16 needs >= 1.98; its LLVM 22 matches bpf-linker's).
pub const TOOLCHAIN: &str = "1.98.0";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Set up, build, run, test and benchmark node-runtime-monitor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: Rust toolchain, rust-src, bpf-linker, Debian packages.
    Setup {
        /// Also install what the test suite and benchmarks use (containerd, prometheus, ...).
        #[arg(long)]
        tests: bool,
    },
    /// Build and run the daemon on this host (needs root); extra arguments go to `run`.
    Run {
        /// Build in release mode.
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite (needs root: it loads the eBPF programs into this kernel).
    Test {
        /// Extra arguments for `cargo nextest run` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz every target of fuzz/ (or one) for a bounded time each: the parsers, the event
    /// pipeline, HostRoot's resolver, redaction; a crash fails the run.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only write the seeds (target/fuzz/seeds/<target>/).
        #[arg(long)]
        seed: bool,
        /// One target (e.g. pipeline, host_root, redaction, containerd_config); all when absent.
        target: Option<String>,
    },
    #[command(about = "Render deploy/overlays/prometheus-operator/prometheusrule.yaml from dashboards/prometheus-rules.yaml")] Package,
    Bench(bench::Args),
    Image(image::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { tests } => setup::run(if tests { setup::Scope::Tests } else { setup::Scope::Build }),
        Command::Run { release, args } => run::run(release, &args),
        Command::Test { args } => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Package => package::run(),
        Command::Image(args) => image::run(&args),
        Command::Fuzz { seconds, seed, target } => fuzz::run(&fuzz::Options { seconds, target, seed_only: seed }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cmd`, failing with its name when it fails.
pub fn status(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| anyhow::anyhow!("cannot start {shown}: {e}"))?;
    if !status.success() {
        anyhow::bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// `cargo +TOOLCHAIN` from the workspace root.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new("cargo");
    cmd.arg(format!("+{TOOLCHAIN}")).current_dir(workspace_root());
    // Cargo run by xtask sets these for xtask's own toolchain; the pinned one must not see them.
    for var in ["RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO"] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.to_path_buf()).unwrap_or_default()
}
