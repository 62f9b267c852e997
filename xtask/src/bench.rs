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
//!
//! This file is the verb: its entry point and the orchestration (tracers started and stopped,
//! workers run and timed, the passes in order). The command line is in `options`, what is
//! measured in `model`, the statistics in `stats`, the tables in `report`; the tracers, the
//! workloads, the OOM storm's memory cgroup and the criterion pass have their own files.

mod daemon;
mod memcg;
mod model;
mod options;
mod pipeline;
mod report;
mod stats;
mod workload;

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub(crate) use self::options::Args;
use self::{
    daemon::{Bpftrace, Daemon, Metrics},
    memcg::Memcg,
    model::{Config, DaemonDelta, EXEC_CHAIN_LENGTH, Idle, Latency, Memory, ProgramCost, Results, Run, Workload},
    options::Options,
    workload::Report,
};
use crate::workspace_root;

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
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
            pipeline::throughputs()?
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
