//! What the bench measures and what it keeps of it: the configurations (no probes, ours,
//! bpftrace, the hooks alone), the workloads, one run of a workload in a configuration with
//! what the daemon counted meanwhile, the per-program run times, the idle daemon, the
//! OOM-kill-to-metric latency, the daemon's memory, and [`Results`], all of it together. Plain
//! data and the per-operation figures of a run: nothing here runs a workload or a tracer (the
//! orchestration in bench.rs does), computes a statistic over runs (stats.rs) or formats
//! (report.rs).

use std::collections::BTreeMap;

use super::{
    options::Options,
    workload::{self, Report},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Config {
    None,
    Ours,
    Bpftrace,
    /// bpftrace with empty programs on the same tracepoints: what the hooks cost by themselves.
    Hooks,
}

impl Config {
    pub(super) const ALL: [Config; 4] = [Config::None, Config::Ours, Config::Bpftrace, Config::Hooks];
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Ours => "ours",
            Config::Bpftrace => "bpftrace",
            Config::Hooks => "hooks alone",
        }
    }
}

/// Execs per process of the exec chain.
pub(super) const EXEC_CHAIN_LENGTH: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Workload {
    Exec,
    ExecChain,
    Connect,
    Oom,
    Syscall,
}

impl Workload {
    pub(super) const ALL: [Workload; 5] =
        [Workload::Exec, Workload::ExecChain, Workload::Connect, Workload::Oom, Workload::Syscall];
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Workload::Exec => "exec storm",
            Workload::ExecChain => "exec chain",
            Workload::Connect => "connect storm",
            Workload::Oom => "OOM storm",
            Workload::Syscall => "syscall loop",
        }
    }
    pub(super) fn unit(self) -> &'static str {
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
pub(super) struct DaemonDelta {
    pub(super) events: BTreeMap<String, f64>,
    pub(super) emitted: BTreeMap<String, f64>,
    pub(super) lost: BTreeMap<String, f64>,
    pub(super) filtered: BTreeMap<String, f64>,
    pub(super) dropped: BTreeMap<String, f64>,
    pub(super) cpu_s: f64,
    /// Voluntary context switches of the daemon's threads (sleeps, so wakeups).
    pub(super) wakeups: u64,
    /// From the end of the workload until user space had every emitted event.
    pub(super) drain_s: f64,
    pub(super) drained: bool,
}

/// One workload run in one configuration.
#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) config: Config,
    pub(super) workload: Workload,
    pub(super) rep: usize,
    pub(super) report: Report,
    /// CPU time of the workload process and its reaped children.
    pub(super) cpu_s: f64,
    pub(super) wall_s: f64,
    pub(super) load1: f64,
    pub(super) daemon: Option<DaemonDelta>,
    /// OOM kills the memory cgroup counted (`memory.oom_control` oom_kill), for the OOM storm.
    pub(super) memcg_oom_kills: Option<u64>,
    /// Another process's tracing BPF programs were loaded before or after the run (e.g. a test
    /// suite's daemon): the run is left out of the medians when clean runs exist.
    pub(super) contaminated: bool,
}

impl Run {
    pub(super) fn ops(&self) -> f64 {
        workload::get(&self.report, "ops")
    }
    pub(super) fn cpu_us_per_op(&self) -> f64 {
        self.cpu_s * 1e6 / self.ops().max(1.0)
    }
    pub(super) fn wall_us_per_op(&self) -> f64 {
        self.wall_s * 1e6 / self.ops().max(1.0)
    }
    /// The typical operation's CPU time (us), where the workload measures it.
    pub(super) fn typical_us(&self) -> Option<f64> {
        Some(workload::get(&self.report, workload::TYPICAL_NS) / 1000.0).filter(|us| *us > 0.0)
    }
}

/// Per-program run time over one workload (bpf_stats).
#[derive(Clone, Debug)]
pub(super) struct ProgramCost {
    pub(super) tracer: Config,
    pub(super) workload: Workload,
    pub(super) ops: f64,
    pub(super) program: String,
    pub(super) runs: u64,
    pub(super) run_time_ns: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Idle {
    pub(super) seconds: f64,
    pub(super) cpu_fraction: f64,
    pub(super) events: BTreeMap<String, f64>,
    pub(super) filtered: f64,
    pub(super) rss_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Latency {
    pub(super) events_us: Vec<f64>,
    pub(super) kills_us: Vec<f64>,
    pub(super) timeouts: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Memory {
    /// Peak RSS (VmHWM) of the daemon at the end of each run with it.
    pub(super) hwm_bytes: Vec<u64>,
    /// RSS (VmRSS) at the end of each run with it.
    pub(super) rss_bytes: Vec<u64>,
}

pub(super) struct Results {
    pub(super) options: Options,
    pub(super) runs: Vec<Run>,
    pub(super) idle: Idle,
    pub(super) latency: Latency,
    pub(super) memory: Memory,
    pub(super) profile: Vec<ProgramCost>,
    /// Syscalls the workload's tasks entered per operation: what the syscall tax multiplies.
    pub(super) syscalls_per_op: BTreeMap<Workload, f64>,
    /// Criterion throughputs (events/s) by benchmark id, from `monitor/benches/pipeline.rs`.
    pub(super) pipeline: Vec<(String, f64)>,
    pub(super) bpftrace_counts: BTreeMap<String, u64>,
    pub(super) foreign: Vec<String>,
    pub(super) exec_target: String,
    pub(super) loads: Vec<f64>,
    pub(super) started: String,
    pub(super) elapsed_s: f64,
}
