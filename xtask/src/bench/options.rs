//! The command line of `cargo xtask bench`: the flags clap parses ([`Args`], whose doc comments
//! are the `--help` text) and the sizes and switches they resolve to ([`Options`]), with the
//! defaults of a full run and of `--quick`. It only reads the command line: it does not check
//! that the bench can run (root, tools), and it starts nothing.

use std::path::PathBuf;

use crate::workspace_root;

#[derive(Clone, Debug)]
pub(super) struct Options {
    pub(super) quick: bool,
    pub(super) repeats: usize,
    pub(super) execs: u64,
    pub(super) exec_threads: u64,
    /// Execs of the exec chain, in chains of
    /// [`EXEC_CHAIN_LENGTH`](super::model::EXEC_CHAIN_LENGTH).
    pub(super) chain_execs: u64,
    /// getppid calls of the syscall loop.
    pub(super) syscalls: u64,
    pub(super) connects: u64,
    pub(super) ooms: u64,
    pub(super) latency_samples: u64,
    pub(super) idle_seconds: u64,
    pub(super) build: bool,
    pub(super) write: bool,
    pub(super) profile: bool,
    /// Also run the criterion pipeline bench and put its throughputs in the table.
    pub(super) pipeline: bool,
    /// Seconds to wait, before each run, for other processes' tracing programs to go away.
    pub(super) wait_foreign: u64,
    pub(super) output: PathBuf,
    /// A daemon binary to measure instead of building this tree's (e.g. a candidate change).
    pub(super) daemon: Option<PathBuf>,
}

/// `cargo xtask bench`: what each option does. Sizes left out take their defaults, smaller with
/// `--quick`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Measure what the agent costs: workloads with no probes, with the daemon, with bpftrace counting and with the hooks alone",
    long_about = "Measure what the agent costs. Five workloads (exec storm, exec chain, connect storm, OOM storm, \
                  syscall loop) run with no probes, with the daemon, with bpftrace counting hits of the same \
                  tracepoints and with empty programs on them (the hooks alone), interleaved and repeated. Prints \
                  one table and rewrites BENCHMARKS.md (keeping its hand-written analysis). Needs root; takes \
                  about 13 minutes, 4 with --quick. Nothing here asserts on time."
)]
pub(crate) struct Args {
    /// A short run to check the bench itself: 1 repeat, a fifth of the workloads.
    #[arg(long)]
    quick: bool,
    /// Repeats of every configuration [default: 11; --quick: 1].
    #[arg(long, value_name = "N")]
    repeats: Option<usize>,
    /// fork+execs of the exec storm [default: 20000; --quick: 4000].
    #[arg(long, value_name = "N")]
    execs: Option<u64>,
    /// Threads of the exec storm and chain [default: the CPUs].
    #[arg(long, value_name = "N")]
    exec_threads: Option<u64>,
    /// execs of the exec chain, 100 per process [default: 100000; --quick: 20000].
    #[arg(long, value_name = "N")]
    chain_execs: Option<u64>,
    /// getppid calls of the syscall loop [default: 10000000; --quick: 2000000].
    #[arg(long, value_name = "N")]
    syscalls: Option<u64>,
    /// Connects of the connect storm [default: 100000; --quick: 20000].
    #[arg(long, value_name = "N")]
    connects: Option<u64>,
    /// memcg OOM kills of the OOM storm [default: 100; --quick: 20].
    #[arg(long, value_name = "N")]
    ooms: Option<u64>,
    /// OOM kills timed from the kill to the metric [default: 100; --quick: 20].
    #[arg(long, value_name = "N")]
    latency_samples: Option<u64>,
    /// Seconds the daemon idles while its CPU is measured [default: 20; --quick: 5].
    #[arg(long, value_name = "N")]
    idle_seconds: Option<u64>,
    /// Measure the release daemon already built (target/release) instead of building it.
    #[arg(long)]
    no_build: bool,
    /// Print the table only; leave BENCHMARKS.md as it is.
    #[arg(long)]
    no_write: bool,
    /// Skip the per-program run time pass (bpf_stats) and the syscall count.
    #[arg(long)]
    no_profile: bool,
    /// Skip the user-space pipeline bench (criterion).
    #[arg(long)]
    no_pipeline: bool,
    /// Seconds to wait, before each run, for other processes' tracing programs to go away.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    wait_foreign: u64,
    /// Where to write the report [default: BENCHMARKS.md at the workspace root].
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Measure this daemon binary (a candidate change) instead of this tree's; implies --no-build.
    #[arg(long, value_name = "BINARY")]
    daemon: Option<PathBuf>,
    /// Internal: run one workload and print its report (the bench starts itself this way).
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true, value_name = "WORKLOAD")]
    pub(super) worker: Option<Vec<String>>,
}

impl Options {
    pub(super) fn new(a: &Args) -> Self {
        let quick = a.quick;
        let pick = |set: Option<u64>, full: u64, short: u64| set.unwrap_or(if quick { short } else { full });
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        Options {
            quick,
            repeats: a.repeats.unwrap_or(if quick { 1 } else { 11 }).max(1),
            execs: pick(a.execs, 20_000, 4_000),
            exec_threads: a.exec_threads.unwrap_or(cpus),
            chain_execs: pick(a.chain_execs, 100_000, 20_000),
            syscalls: pick(a.syscalls, 10_000_000, 2_000_000),
            connects: pick(a.connects, 100_000, 20_000),
            ooms: pick(a.ooms, 100, 20),
            latency_samples: pick(a.latency_samples, 100, 20),
            idle_seconds: pick(a.idle_seconds, 20, 5),
            build: !a.no_build && a.daemon.is_none(),
            write: !a.no_write,
            profile: !a.no_profile,
            pipeline: !a.no_pipeline,
            wait_foreign: a.wait_foreign,
            output: a.output.clone().unwrap_or_else(|| workspace_root().join("BENCHMARKS.md")),
            daemon: a.daemon.clone(),
        }
    }
}
