//! `bench`: what the agent costs. Five workloads (exec storm, exec chain, connect storm, OOM
//! storm, syscall loop), each run with no probes, with our daemon, with bpftrace counting hits
//! of the same tracepoints and with empty programs on them (the hooks alone), interleaved in an
//! order that rotates from repeat to repeat, and repeated; the median and
//! the spread are reported, and each ratio is the median of the repeats' own ratios, with a
//! bootstrap interval. Also: events delivered vs events that happened, losses, the daemon's CPU and
//! peak RSS, its idle CPU, OOM-kill-to-metric latency, and a per-program run time table
//! (`kernel.bpf_stats_enabled`). Prints one table and writes BENCHMARKS.md.
//!
//! The cost of an operation is the CPU time (user + system) of the workload process and the
//! children it reaped, divided by the operations: kernel programs run in the context of the
//! task that hits the hook, so their cost is in it, and CPU time is far less disturbed than
//! wall time by other work on the machine. (Hardware counters are not available in this VM:
//! `perf stat -e instructions` says "not supported".) Wall time is reported too.
//!
//! Nothing here asserts on time: the bench reports, CI does not gate on it.
//!
//! `cargo xtask bench --help` explains the options; `--daemon BINARY` measures another build of
//! the daemon (a candidate change) the same way.

mod daemon;
mod report;
mod workload;

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use self::{
    daemon::{Bpftrace, Daemon, Metrics},
    workload::Report,
};
use crate::workspace_root;

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub repeats: usize,
    pub execs: u64,
    pub exec_threads: u64,
    /// Execs of the exec chain, in chains of [`EXEC_CHAIN_LENGTH`].
    pub chain_execs: u64,
    /// getppid calls of the syscall loop.
    pub syscalls: u64,
    pub connects: u64,
    pub ooms: u64,
    pub latency_samples: u64,
    pub idle_seconds: u64,
    pub build: bool,
    pub write: bool,
    pub profile: bool,
    /// Also run the criterion pipeline bench and put its throughputs in the table.
    pub pipeline: bool,
    /// Seconds to wait, before each run, for other processes' tracing programs to go away.
    pub wait_foreign: u64,
    pub output: PathBuf,
    /// A daemon binary to measure instead of building this tree's (e.g. a candidate change).
    pub daemon: Option<PathBuf>,
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
pub struct Args {
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
    worker: Option<Vec<String>>,
}

impl Options {
    fn new(a: &Args) -> Self {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    None,
    Ours,
    Bpftrace,
    /// bpftrace with empty programs on the same tracepoints: what the hooks cost by themselves.
    Hooks,
}

impl Config {
    pub const ALL: [Config; 4] = [Config::None, Config::Ours, Config::Bpftrace, Config::Hooks];
    pub fn as_str(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Ours => "ours",
            Config::Bpftrace => "bpftrace",
            Config::Hooks => "hooks alone",
        }
    }
}

/// Execs per process of the exec chain.
pub const EXEC_CHAIN_LENGTH: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Exec,
    ExecChain,
    Connect,
    Oom,
    Syscall,
}

impl Workload {
    pub const ALL: [Workload; 5] =
        [Workload::Exec, Workload::ExecChain, Workload::Connect, Workload::Oom, Workload::Syscall];
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Exec => "exec storm",
            Workload::ExecChain => "exec chain",
            Workload::Connect => "connect storm",
            Workload::Oom => "OOM storm",
            Workload::Syscall => "syscall loop",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Exec => "fork+exec+exit+wait",
            Workload::ExecChain => "execve of a process re-executing itself",
            Workload::Connect => "socket+connect+close",
            Workload::Oom => "fork+fill memcg+OOM kill+wait",
            Workload::Syscall => "getppid, a syscall nothing hooks",
        }
    }
}

/// What the daemon counted over one workload (deltas).
#[derive(Clone, Debug, Default)]
pub struct DaemonDelta {
    pub events: BTreeMap<String, f64>,
    pub emitted: BTreeMap<String, f64>,
    pub lost: BTreeMap<String, f64>,
    pub filtered: BTreeMap<String, f64>,
    pub dropped: BTreeMap<String, f64>,
    pub cpu_s: f64,
    /// Voluntary context switches of the daemon's threads (sleeps, so wakeups).
    pub wakeups: u64,
    /// From the end of the workload until user space had every emitted event.
    pub drain_s: f64,
    pub drained: bool,
}

/// One workload run in one configuration.
#[derive(Clone, Debug)]
pub struct Run {
    pub config: Config,
    pub workload: Workload,
    pub rep: usize,
    pub report: Report,
    /// CPU time of the workload process and its reaped children.
    pub cpu_s: f64,
    pub wall_s: f64,
    pub load1: f64,
    pub daemon: Option<DaemonDelta>,
    /// OOM kills the memory cgroup counted (`memory.oom_control` oom_kill), for the OOM storm.
    pub memcg_oom_kills: Option<u64>,
    /// Another process's tracing BPF programs were loaded before or after the run (e.g. a test
    /// suite's daemon): the run is left out of the medians when clean runs exist.
    pub contaminated: bool,
}

impl Run {
    pub fn ops(&self) -> f64 {
        workload::get(&self.report, "ops")
    }
    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu_s * 1e6 / self.ops().max(1.0)
    }
    pub fn wall_us_per_op(&self) -> f64 {
        self.wall_s * 1e6 / self.ops().max(1.0)
    }
    /// The typical operation's CPU time (us), where the workload measures it.
    pub fn typical_us(&self) -> Option<f64> {
        Some(workload::get(&self.report, workload::TYPICAL_NS) / 1000.0).filter(|us| *us > 0.0)
    }
}

/// Per-program run time over one workload (bpf_stats).
#[derive(Clone, Debug)]
pub struct ProgramCost {
    pub tracer: Config,
    pub workload: Workload,
    pub ops: f64,
    pub program: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub seconds: f64,
    pub cpu_fraction: f64,
    pub events: BTreeMap<String, f64>,
    pub filtered: f64,
    pub rss_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub events_us: Vec<f64>,
    pub kills_us: Vec<f64>,
    pub timeouts: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Peak RSS (VmHWM) of the daemon at the end of each run with it.
    pub hwm_bytes: Vec<u64>,
    /// RSS (VmRSS) at the end of each run with it.
    pub rss_bytes: Vec<u64>,
}

pub struct Results {
    pub options: Options,
    pub runs: Vec<Run>,
    pub idle: Idle,
    pub latency: Latency,
    pub memory: Memory,
    pub profile: Vec<ProgramCost>,
    /// Syscalls the workload's tasks entered per operation: what the syscall tax multiplies.
    pub syscalls_per_op: BTreeMap<Workload, f64>,
    /// Criterion throughputs (events/s) by benchmark id, from `monitor/benches/pipeline.rs`.
    pub pipeline: Vec<(String, f64)>,
    pub bpftrace_counts: BTreeMap<String, u64>,
    pub foreign: Vec<String>,
    pub exec_target: String,
    pub loads: Vec<f64>,
    pub started: String,
    pub elapsed_s: f64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(worker) = &args.worker {
        return workload::run_worker(worker);
    }
    let options = Options::new(args);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads eBPF programs and makes memory cgroups: run it as root");
    }
    let started = Instant::now();
    let binary = options.daemon.clone().unwrap_or_else(|| workspace_root().join("target/release/node-runtime-monitor"));
    if options.build {
        crate::setup::run(crate::setup::Scope::Build)?;
        eprintln!("bench: building the daemon (release)");
        crate::status(crate::cargo().args(["build", "--release", "--package", "monitor", "--bin", "node-runtime-monitor"]))?;
    }
    if !binary.exists() {
        bail!("{} missing (drop --no-build)", binary.display());
    }
    which("bpftrace")?;
    which("bpftool")?;
    daemon::ensure_tracefs();
    daemon::set_bpf_stats(false);

    let work = std::env::temp_dir().join(format!("nrm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (exec_program, _) = workload::exec_target(&work)?;
    let chain_program = workload::exec_chain_target(&work)?;
    // Workers run from a copy: a rebuild of xtask during the bench must not pull the binary away.
    let worker_exe = work.join("xtask-worker");
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, &worker_exe)
        .or_else(|_| std::fs::copy(workspace_root().join("target/debug/xtask"), &worker_exe))
        .with_context(|| format!("copy the xtask binary ({}) for the workers", exe.display()))?;
    let memcg = Memcg::create()?;
    let mut bench =
        Bench { options: options.clone(), binary, work: work.clone(), worker_exe, exec_program, chain_program, memcg, loads: Vec::new() };
    let result = bench.measure(started);
    let _ = std::fs::remove_dir_all(&work);
    let results = result?;
    let text = report::console(&results);
    println!("{text}");
    if options.write {
        // The hand-written analysis at the end of the file (from its heading on) is kept.
        let kept = std::fs::read_to_string(&options.output)
            .ok()
            .and_then(|old| old.find(report::KEPT_HEADING).map(|i| old[i..].to_string()))
            .unwrap_or_default();
        let mut text = report::markdown(&results);
        if !kept.is_empty() {
            text.push('\n');
            text.push_str(&kept);
        }
        std::fs::write(&options.output, text)?;
        eprintln!("bench: wrote {}", options.output.display());
    }
    Ok(())
}

fn which(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status()?.success();
    if !found {
        bail!("{tool} is not installed (cargo xtask setup --tests installs it)");
    }
    Ok(())
}

/// The v1 memory cgroup the OOM storm's victims join.
struct Memcg {
    path: PathBuf,
}

impl Memcg {
    const LIMIT: u64 = 16 << 20;

    fn create() -> anyhow::Result<Self> {
        let mount = PathBuf::from("/sys/fs/cgroup/memory");
        if !mount.join("memory.limit_in_bytes").exists() {
            bail!("no v1 memory controller at {}: the OOM storm needs one", mount.display());
        }
        let path = mount.join(format!("nrm-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        std::fs::write(path.join("memory.limit_in_bytes"), Self::LIMIT.to_string())?;
        let _ = std::fs::write(path.join("memory.swappiness"), "0");
        Ok(Self { path })
    }

    fn oom_kills(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path.join("memory.oom_control")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

enum Tracer {
    None,
    Ours(Daemon),
    Bpftrace(Bpftrace),
}

/// A tracer and the ids of the BPF programs it loaded (this bpftool shows no owner pids, so
/// they are the tracing programs that appeared while it started).
struct Started {
    tracer: Tracer,
    programs: Vec<u64>,
}

impl Tracer {
    fn start(config: Config, bench: &Bench) -> anyhow::Result<Started> {
        let before: Vec<u64> = daemon::bpf_programs().iter().map(|p| p.id).collect();
        let tracer = match config {
            Config::None => Tracer::None,
            Config::Ours => Tracer::Ours(Daemon::start(&bench.binary, &bench.work, &[])?),
            Config::Bpftrace => Tracer::Bpftrace(Bpftrace::start(&bench.work, &before, daemon::BPFTRACE_SCRIPT)?),
            Config::Hooks => Tracer::Bpftrace(Bpftrace::start(&bench.work, &before, &daemon::bpftrace_hooks_script())?),
        };
        let programs = match tracer {
            Tracer::None => vec![],
            _ => daemon::bpf_programs().iter().filter(|p| daemon::is_tracing(p) && !before.contains(&p.id)).map(|p| p.id).collect(),
        };
        Ok(Started { tracer, programs })
    }
}

struct Bench {
    options: Options,
    binary: PathBuf,
    work: PathBuf,
    worker_exe: PathBuf,
    exec_program: PathBuf,
    chain_program: PathBuf,
    memcg: Memcg,
    loads: Vec<f64>,
}

impl Bench {
    fn worker_args(&self, workload: Workload, scale: f64) -> Vec<String> {
        let n = |x: u64| ((x as f64 * scale).round() as u64).max(1).to_string();
        match workload {
            Workload::Exec => vec![
                "exec".into(),
                self.exec_program.display().to_string(),
                n(self.options.execs),
                self.options.exec_threads.to_string(),
            ],
            Workload::ExecChain => vec![
                "exec-chain".into(),
                self.chain_program.display().to_string(),
                n(self.options.chain_execs),
                self.options.exec_threads.to_string(),
                EXEC_CHAIN_LENGTH.to_string(),
            ],
            Workload::Connect => vec!["connect".into(), n(self.options.connects)],
            Workload::Oom => vec!["oom".into(), self.memcg.path.display().to_string(), n(self.options.ooms)],
            Workload::Syscall => vec!["syscall".into(), n(self.options.syscalls)],
        }
    }

    /// Runs a worker; returns its report and its CPU time (itself and its reaped children).
    fn worker(&self, args: &[String]) -> anyhow::Result<(Report, f64, String)> {
        let mut child = Command::new(&self.worker_exe)
            .arg("bench")
            .arg("--worker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("start worker")?;
        let mut out = String::new();
        child.stdout.take().context("worker stdout")?.read_to_string(&mut out)?;
        let mut status = 0;
        // SAFETY: rusage is plain old data; we reap our own child (std's Child is not waited).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as i32;
        loop {
            // SAFETY: as above.
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if rc == pid {
                break;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                bail!("wait4 worker: {}", std::io::Error::last_os_error());
            }
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!("worker {args:?} failed (status {status:#x}): {out}");
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
        let report = workload::parse_report(&out).with_context(|| format!("worker printed no RESULT: {out}"))?;
        Ok((report, cpu, out))
    }

    fn measure(&mut self, started: Instant) -> anyhow::Result<Results> {
        let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
        let mut runs = Vec::new();
        let mut memory = Memory::default();
        let mut foreign = Vec::new();
        let mut bpftrace_counts = BTreeMap::new();

        // Warm-up: page cache, the worker binary, the tiny ELF; not measured.
        eprintln!("bench: warm-up");
        for workload in Workload::ALL {
            self.worker(&self.worker_args(workload, 0.05))?;
        }

        for rep in 0..self.options.repeats {
            // A rotating order: no configuration always runs first, or always after another.
            let mut order = Config::ALL;
            order.rotate_left(rep % Config::ALL.len());
            for config in order {
                eprintln!("bench: repeat {}/{}: {}", rep + 1, self.options.repeats, config.as_str());
                let Started { tracer, programs } = Tracer::start(config, self)?;
                std::thread::sleep(Duration::from_millis(500));
                for p in daemon::foreign_tracing_programs(&programs) {
                    let line = format!("{} program {}", p.kind, p.name);
                    if !foreign.contains(&line) {
                        foreign.push(line);
                    }
                }
                for workload in Workload::ALL {
                    let run = self.run_one(config, workload, rep, &tracer, &programs)?;
                    eprintln!(
                        "bench:   {:<14} {:>9.2} us/op CPU  {:>9.2} us/op wall  (load {:.2}){}",
                        workload.as_str(),
                        run.cpu_us_per_op(),
                        run.wall_us_per_op(),
                        run.load1,
                        if run.contaminated { "  [another tracer was loaded]" } else { "" }
                    );
                    runs.push(run);
                }
                match tracer {
                    Tracer::None => {}
                    Tracer::Ours(mut d) => {
                        if let Some(hwm) = daemon::status_bytes(d.pid(), "VmHWM:") {
                            memory.hwm_bytes.push(hwm);
                        }
                        if let Some(rss) = daemon::status_bytes(d.pid(), "VmRSS:") {
                            memory.rss_bytes.push(rss);
                        }
                        d.stop()?;
                    }
                    Tracer::Bpftrace(mut b) => {
                        for (probe, n) in b.stop()? {
                            *bpftrace_counts.entry(probe).or_insert(0) += n;
                        }
                    }
                }
            }
        }

        eprintln!("bench: idle daemon for {}s, then OOM-kill-to-metric latency", self.options.idle_seconds);
        let (idle, latency) = self.idle_and_latency()?;
        let (profile, syscalls_per_op) = if self.options.profile {
            eprintln!("bench: per-program run time (kernel.bpf_stats_enabled=1)");
            let profile = self.profile()?;
            eprintln!("bench: syscalls per operation (bpftrace on raw_syscalls:sys_enter)");
            (profile, self.syscalls_per_op()?)
        } else {
            (Vec::new(), BTreeMap::new())
        };
        let pipeline = if self.options.pipeline {
            eprintln!("bench: user-space pipeline (criterion)");
            pipeline_bench()?
        } else {
            Vec::new()
        };
        Ok(Results {
            options: self.options.clone(),
            runs,
            idle,
            latency,
            memory,
            profile,
            syscalls_per_op,
            pipeline,
            bpftrace_counts,
            foreign,
            exec_target: self.exec_program.display().to_string(),
            loads: self.loads.clone(),
            started: date,
            elapsed_s: started.elapsed().as_secs_f64(),
        })
    }

    fn run_one(&mut self, config: Config, workload: Workload, rep: usize, tracer: &Tracer, programs: &[u64]) -> anyhow::Result<Run> {
        let args = self.worker_args(workload, 1.0);
        // Someone else's tracer (a test suite's daemon) taxes every configuration: wait for it.
        let waited = Instant::now();
        while !daemon::foreign_tracing_programs(programs).is_empty() && waited.elapsed() < Duration::from_secs(self.options.wait_foreign) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let foreign_before = !daemon::foreign_tracing_programs(programs).is_empty();
        let daemon = match tracer {
            Tracer::Ours(d) => Some(d),
            _ => None,
        };
        let before = daemon.map(|d| d.scrape()).transpose()?;
        let cpu_before = daemon.and_then(|d| daemon::cpu_seconds(d.pid()));
        let switches_before = daemon.map(|d| daemon::voluntary_switches(d.pid())).unwrap_or(0);
        let oom_before = self.memcg.oom_kills();
        let load_before = daemon::loadavg1();
        let (report, cpu_s, _) = self.worker(&args)?;
        let contaminated = foreign_before || !daemon::foreign_tracing_programs(programs).is_empty();
        let load1 = (load_before + daemon::loadavg1()) / 2.0;
        self.loads.push(load1);
        let memcg_oom_kills = match (workload, oom_before, self.memcg.oom_kills()) {
            (Workload::Oom, Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        let delta = match (daemon, before) {
            (Some(d), Some(before)) => Some(drain(d, &before, cpu_before.unwrap_or(0.0), switches_before)?),
            _ => None,
        };
        let wall_s = workload::get(&report, "wall_s");
        Ok(Run { config, workload, rep, report, cpu_s, wall_s, load1, daemon: delta, memcg_oom_kills, contaminated })
    }

    fn idle_and_latency(&mut self) -> anyhow::Result<(Idle, Latency)> {
        let mut d = Daemon::start(&self.binary, &self.work, &[])?;
        std::thread::sleep(Duration::from_secs(2));
        let before = d.scrape()?;
        let cpu0 = daemon::cpu_ns_schedstat(d.pid());
        let cpu0_ticks = daemon::cpu_seconds(d.pid()).unwrap_or(0.0);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(self.options.idle_seconds));
        let seconds = t0.elapsed().as_secs_f64();
        let cpu1 = daemon::cpu_ns_schedstat(d.pid());
        let cpu1_ticks = daemon::cpu_seconds(d.pid()).unwrap_or(0.0);
        let after = d.scrape()?;
        let cpu_s = match (cpu0, cpu1) {
            (Some(a), Some(b)) if b >= a => (b - a) as f64 / 1e9,
            _ => cpu1_ticks - cpu0_ticks,
        };
        let delta = |name: &str, key: &str| -> BTreeMap<String, f64> {
            let b = before.by_label(name, key);
            after.by_label(name, key).into_iter().map(|(k, v)| (k.clone(), v - b.get(&k).copied().unwrap_or(0.0))).collect()
        };
        let idle = Idle {
            seconds,
            cpu_fraction: cpu_s / seconds,
            events: delta("node_runtime_monitor_events_total", "kind"),
            filtered: delta("node_runtime_monitor_kernel_events_filtered_total", "program").values().sum(),
            rss_bytes: daemon::status_bytes(d.pid(), "VmRSS:").unwrap_or(0),
        };

        let args = vec![
            "oom-latency".to_string(),
            self.memcg.path.display().to_string(),
            self.options.latency_samples.to_string(),
            d.address.clone(),
        ];
        let (report, _, out) = self.worker(&args)?;
        let mut latency = Latency { timeouts: workload::get(&report, "timeouts") as u64, ..Default::default() };
        if let Some(line) = out.lines().find_map(|l| l.strip_prefix("SAMPLES ")) {
            for part in line.split_whitespace() {
                if let Some((key, values)) = part.split_once('=') {
                    let v: Vec<f64> = values.split(',').filter_map(|x| x.parse().ok()).collect();
                    match key {
                        "events_us" => latency.events_us = v,
                        "kills_us" => latency.kills_us = v,
                        _ => {}
                    }
                }
            }
        }
        d.stop()?;
        Ok((idle, latency))
    }

    /// Per-program run time with `kernel.bpf_stats_enabled` (it adds two clock reads per run, so
    /// it is on only here, not while the costs above are measured).
    fn profile(&mut self) -> anyhow::Result<Vec<ProgramCost>> {
        let scale = self.profile_scale();
        let mut costs = Vec::new();
        if !daemon::set_bpf_stats(true) {
            eprintln!("bench: cannot enable kernel.bpf_stats_enabled; no per-program table");
            return Ok(costs);
        }
        let result = (|| -> anyhow::Result<()> {
            for config in [Config::Ours, Config::Bpftrace] {
                let Started { tracer, programs } = Tracer::start(config, self)?;
                std::thread::sleep(Duration::from_millis(500));
                for workload in Workload::ALL {
                    let snapshot = || -> BTreeMap<u64, daemon::BpfProgram> {
                        daemon::bpf_programs().into_iter().filter(|p| programs.contains(&p.id)).map(|p| (p.id, p)).collect()
                    };
                    let before = snapshot();
                    let (report, _, _) = self.worker(&self.worker_args(workload, scale))?;
                    let after = snapshot();
                    let ops = workload::get(&report, "ops");
                    for (id, p) in after {
                        let (runs0, time0) = before.get(&id).map(|b| (b.run_cnt, b.run_time_ns)).unwrap_or((0, 0));
                        costs.push(ProgramCost {
                            tracer: config,
                            workload,
                            ops,
                            program: p.name.clone(),
                            runs: p.run_cnt.saturating_sub(runs0),
                            run_time_ns: p.run_time_ns.saturating_sub(time0),
                        });
                    }
                }
                match tracer {
                    Tracer::Ours(mut d) => d.stop()?,
                    Tracer::Bpftrace(mut b) => {
                        b.stop()?;
                    }
                    Tracer::None => {}
                }
            }
            Ok(())
        })();
        daemon::set_bpf_stats(false);
        result?;
        Ok(costs)
    }

    /// Workload size of the profile passes, relative to the measured runs'.
    fn profile_scale(&self) -> f64 {
        if self.options.quick { 1.0 } else { 0.25 }
    }

    /// Syscalls per operation of each workload (no tracer of ours running), counted by bpftrace
    /// on `raw_syscalls:sys_enter` for the tasks named as the worker and the programs it execs,
    /// at the profile's scale.
    fn syscalls_per_op(&mut self) -> anyhow::Result<BTreeMap<Workload, f64>> {
        let scale = self.profile_scale();
        let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().chars().take(15).collect::<String>()).unwrap_or_default();
        let comms = [name(&self.worker_exe), name(&self.exec_program), name(&self.chain_program)];
        let script = daemon::syscall_count_script(&comms.iter().map(String::as_str).collect::<Vec<_>>());
        let mut out = BTreeMap::new();
        for workload in Workload::ALL {
            let before: Vec<u64> = daemon::bpf_programs().iter().map(|p| p.id).collect();
            let mut counter = Bpftrace::start(&self.work, &before, &script)?;
            let (report, _, _) = self.worker(&self.worker_args(workload, scale))?;
            let syscalls: u64 = counter.stop()?.values().sum();
            out.insert(workload, syscalls as f64 / workload::get(&report, "ops").max(1.0));
        }
        Ok(out)
    }
}

/// Waits until user space received every event the kernel emitted (or 20 s), then takes the
/// deltas of the daemon's counters.
fn drain(d: &Daemon, before: &Metrics, cpu_before: f64, switches_before: u64) -> anyhow::Result<DaemonDelta> {
    let ended = Instant::now();
    let total = |m: &Metrics| {
        (
            m.sum("node_runtime_monitor_kernel_events_emitted_total", &[]),
            m.sum("node_runtime_monitor_events_total", &[]) + m.sum("node_runtime_monitor_events_dropped_total", &[("reason", "decode_error")]),
        )
    };
    let (mut after, mut drained) = (d.scrape()?, false);
    while ended.elapsed() < Duration::from_secs(20) {
        let (emitted, received) = total(&after);
        let (emitted0, received0) = total(before);
        if received - received0 >= emitted - emitted0 {
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        after = d.scrape()?;
    }
    let drain_s = ended.elapsed().as_secs_f64();
    let cpu_s = daemon::cpu_seconds(d.pid()).unwrap_or(0.0) - cpu_before;
    let delta = |name: &str, key: &str| -> BTreeMap<String, f64> {
        let b = before.by_label(name, key);
        after
            .by_label(name, key)
            .into_iter()
            .map(|(k, v)| (k.clone(), v - b.get(&k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v != 0.0)
            .collect()
    };
    Ok(DaemonDelta {
        events: delta("node_runtime_monitor_events_total", "kind"),
        emitted: delta("node_runtime_monitor_kernel_events_emitted_total", "program"),
        lost: delta("node_runtime_monitor_kernel_events_lost_total", "program"),
        filtered: delta("node_runtime_monitor_kernel_events_filtered_total", "program"),
        dropped: delta("node_runtime_monitor_events_dropped_total", "reason"),
        cpu_s,
        wakeups: daemon::voluntary_switches(d.pid()).saturating_sub(switches_before),
        drain_s,
        drained,
    })
}

/// Runs the criterion bench (`monitor/benches/pipeline.rs`) with short measurement times and
/// returns each benchmark's median throughput in elements (events) per second.
fn pipeline_bench() -> anyhow::Result<Vec<(String, f64)>> {
    let out = crate::cargo()
        .args(["bench", "--package", "monitor", "--bench", "pipeline", "--", "--warm-up-time", "1", "--measurement-time", "3", "--noplot"])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench --bench pipeline failed ({})", out.status);
    }
    Ok(parse_criterion(&String::from_utf8_lossy(&out.stdout)))
}

pub fn parse_criterion(text: &str) -> Vec<(String, f64)> {
    let mut results = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !line.starts_with(char::is_whitespace) && !line.is_empty() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('/') {
                name = first.to_string();
            }
        }
        if let Some(rest) = trimmed.strip_prefix("thrpt:") {
            let parts: Vec<&str> = rest.trim().trim_matches(['[', ']']).split_whitespace().collect();
            // [low unit mid unit high unit]
            if let (Some(value), Some(unit)) = (parts.get(2), parts.get(3)) {
                let scale = match *unit {
                    "Gelem/s" => 1e9,
                    "Melem/s" => 1e6,
                    "Kelem/s" => 1e3,
                    _ => 1.0,
                };
                if let Ok(v) = value.parse::<f64>() {
                    results.push((name.clone(), v * scale));
                }
            }
        }
    }
    results
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

pub fn machine_facts() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo").lines().find_map(|l| l.strip_prefix("model name")).map(|s| s.trim_start_matches([' ', '\t', ':']).to_string()).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = read("/proc/meminfo").lines().next().unwrap_or("").split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).map(|kb| format!("{:.1} GiB", kb as f64 / 1048576.0)).unwrap_or_default();
    let out = |cmd: &str, args: &[&str]| Command::new(cmd).args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    vec![
        ("kernel".into(), out("uname", &["-r"])),
        ("CPU".into(), format!("{cpus} x {cpu}")),
        ("memory".into(), mem),
        ("bpftrace".into(), out("bpftrace", &["--version"])),
        ("commit".into(), out("git", &["-C", &workspace_root().display().to_string(), "rev-parse", "--short", "HEAD"])),
    ]
}
