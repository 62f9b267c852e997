//! The bench's table (console) and BENCHMARKS.md.

use std::{collections::BTreeMap, fmt::Write as _, process::Command};

use super::{
    model::{Config, EXEC_CHAIN_LENGTH, Results, Run, Workload},
    stats::{median, median_interval, percentile},
    workload::get,
};
use crate::workspace_root;

const MIB: f64 = 1024.0 * 1024.0;

/// BENCHMARKS.md from this heading to its end is written by hand and kept by the bench.
pub const KEPT_HEADING: &str = "## Analysis and suggestions";

fn runs(r: &Results, config: Config, workload: Workload) -> Vec<&Run> {
    r.runs.iter().filter(|x| x.config == config && x.workload == workload).collect()
}

/// The runs the medians use: the clean ones (no other tracer loaded) when there are any.
fn measured(r: &Results, config: Config, workload: Workload) -> Vec<&Run> {
    let all = runs(r, config, workload);
    let clean: Vec<&Run> = all.iter().copied().filter(|x| !x.contaminated).collect();
    if clean.is_empty() { all } else { clean }
}

fn cpu_per_op(r: &Results, config: Config, workload: Workload) -> Vec<f64> {
    measured(r, config, workload).iter().map(|x| x.cpu_us_per_op()).collect()
}

fn wall_per_op(r: &Results, config: Config, workload: Workload) -> Vec<f64> {
    measured(r, config, workload).iter().map(|x| x.wall_us_per_op()).collect()
}

fn spread(v: &[f64]) -> String {
    if v.len() < 2 {
        return format!("{:.2}", median(v));
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} [{:.2}-{:.2}]", median(v), min, max)
}

/// Events that happened, by kind, as the driver counted them (plus the worker process's own
/// exec and exit).
pub fn happened(run: &Run) -> BTreeMap<&'static str, f64> {
    let r = &run.report;
    let mut out = BTreeMap::new();
    match run.workload {
        Workload::Exec => {
            out.insert("exec", get(r, "exec_ok") + 1.0);
            out.insert("exit", get(r, "ops") + 1.0);
        }
        Workload::ExecChain => {
            out.insert("exec", get(r, "exec_ok") + 1.0);
            out.insert("exit", get(r, "chains") + 1.0);
        }
        Workload::Connect => {
            out.insert("exec", 1.0);
            out.insert("exit", 1.0);
            out.insert(
                "connect",
                get(r, "tcp_refused") + get(r, "unix_missing") + get(r, "tcp_open_failed") + get(r, "unix_listening_failed"),
            );
        }
        Workload::Syscall => {
            out.insert("exec", 1.0);
            out.insert("exit", 1.0);
        }
        Workload::Oom => {
            out.insert("exec", 1.0);
            out.insert("exit", get(r, "ops") + 1.0);
            out.insert("oom_kill", get(r, "oom_killed"));
            out.insert("signal", get(r, "oom_killed"));
        }
    }
    out
}

/// Happened but filtered in the kernel by design (successful loopback TCP and unix connects).
fn filtered_by_design(run: &Run) -> f64 {
    match run.workload {
        Workload::Connect => get(&run.report, "tcp_ok") + get(&run.report, "unix_ok"),
        _ => 0.0,
    }
}

struct Target {
    what: String,
    goal: String,
    measured: String,
    verdict: &'static str,
}

/// What a ratio compares: a run's CPU time per operation, or its typical operation's.
type Metric = fn(&Run) -> Option<f64>;

fn cpu(run: &Run) -> Option<f64> {
    Some(run.cpu_us_per_op())
}

/// `num` over `den` for `workload` by `metric`, repeat by repeat: a repeat's runs of every
/// configuration are minutes apart at most, so a slow spell of the machine divides out of its
/// ratio.
fn paired_ratios(r: &Results, workload: Workload, (num, den): (Config, Config), metric: Metric) -> Vec<f64> {
    let dens = measured(r, den, workload);
    measured(r, num, workload)
        .iter()
        .filter_map(|n| {
            let d = dens.iter().find(|d| d.rep == n.rep)?;
            Some(metric(n)? / metric(d)?)
        })
        .collect()
}

/// The median of the paired ratios, with a 90% bootstrap interval of it.
struct Ratio {
    median: f64,
    low: f64,
    high: f64,
}

fn ratio(r: &Results, workload: Workload, pair: (Config, Config), metric: Metric) -> Ratio {
    let v = paired_ratios(r, workload, pair, metric);
    let (low, high) = median_interval(&v);
    Ratio { median: median(&v), low, high }
}

/// PASS when the whole interval is within `limit`, MISS when all of it is beyond, else the
/// machine's noise is larger than the margin and the run cannot tell.
fn ratio_verdict(q: &Ratio, limit: f64) -> &'static str {
    if q.high <= limit {
        "PASS"
    } else if q.low > limit {
        "MISS"
    } else {
        "UNDECIDED (interval spans the goal)"
    }
}

/// The run time per operation (ns) of `tracer`'s programs over `workload`, summed (bpf_stats).
fn programs_ns_per_op(r: &Results, tracer: Config, workload: Workload) -> f64 {
    r.profile.iter().filter(|p| p.tracer == tracer && p.workload == workload).map(|p| p.run_time_ns as f64 / p.ops.max(1.0)).sum()
}

/// The added cost per operation of `tracer` (ns), from its parts: the run time of its
/// programs (`bpf_stats`, which itself adds two clock reads per run: an overestimate), and the
/// syscalls per operation times the tax the tracer puts on a syscall nothing hooks. Not
/// counted: building a classic tracepoint's record on each hit, ring buffer wakeups. Returns
/// (programs, syscalls, tax per syscall); `None` without a profile.
fn added_from_parts(r: &Results, tracer: Config, workload: Workload) -> Option<(f64, f64, f64)> {
    let syscalls = *r.syscalls_per_op.get(&workload)?;
    let programs = programs_ns_per_op(r, tracer, workload);
    let syscall_cost = |config| median(&cpu_per_op(r, config, Workload::Syscall)) * 1000.0;
    let tax = (syscall_cost(tracer) - syscall_cost(Config::None)).max(0.0);
    Some((programs, syscalls, tax))
}

fn fmt_ratio(q: &Ratio) -> String {
    format!("{:.3} [{:.3}-{:.3}]", q.median, q.low, q.high)
}

/// A ratio over no probes as the cost it adds: `+3.1% [-1.8% to +17.6%]`.
fn fmt_added(q: &Ratio) -> String {
    let pct = |x: f64| (x - 1.0) * 100.0;
    format!("{:+.1}% [{:+.1}% to {:+.1}%]", pct(q.median), pct(q.low), pct(q.high))
}

fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for (workload, name) in [(Workload::Exec, "exec"), (Workload::Connect, "connect")] {
        let none = median(&cpu_per_op(r, Config::None, workload));
        let ours = median(&cpu_per_op(r, Config::Ours, workload));
        let q = ratio(r, workload, (Config::Ours, Config::None), cpu);
        t.push(Target {
            what: format!("added cost per {name}"),
            goal: "<= 5% over no probes".into(),
            measured: format!("{} (medians: {:+.2} us of CPU per {name})", fmt_added(&q), ours - none),
            verdict: ratio_verdict(&q, 1.05),
        });
        if let Some((programs, syscalls, tax)) = added_from_parts(r, Config::Ours, workload) {
            let added = (programs + syscalls * tax) / (none * 1000.0);
            t.push(Target {
                what: format!("added cost per {name}, from its parts"),
                goal: "<= 5% over no probes".into(),
                measured: format!(
                    "{:+.1}%: programs {programs:.0} ns + {syscalls:.1} syscalls x {tax:.0} ns tax, of {none:.2} us",
                    added * 100.0
                ),
                verdict: if added <= 0.05 { "PASS (estimate)" } else { "MISS (estimate)" },
            });
        }
        let typicals = |config| measured(r, config, workload).iter().filter_map(|x| x.typical_us()).collect::<Vec<_>>();
        if !typicals(Config::Ours).is_empty() {
            let q = ratio(r, workload, (Config::Ours, Config::None), Run::typical_us);
            t.push(Target {
                what: format!("added cost per {name}, typical operation"),
                goal: "<= 5% over no probes".into(),
                measured: format!(
                    "{} (medians: {:.2} us with no probes, {:.2} us with ours)",
                    fmt_added(&q),
                    median(&typicals(Config::None)),
                    median(&typicals(Config::Ours)),
                ),
                verdict: ratio_verdict(&q, 1.05),
            });
            let q = ratio(r, workload, (Config::Ours, Config::Bpftrace), Run::typical_us);
            t.push(Target {
                what: format!("cost per {name} vs bpftrace, typical operation"),
                goal: "ours <= bpftrace".into(),
                measured: format!("ours/bpftrace {} (median {:.2} us with bpftrace)", fmt_ratio(&q), median(&typicals(Config::Bpftrace))),
                verdict: ratio_verdict(&q, 1.0),
            });
        }
        // What any tracer of these events pays here before doing anything: the ceiling below
        // which no program on these hooks can bring the added cost.
        if !measured(r, Config::Hooks, workload).is_empty() {
            let metric: Metric = if typicals(Config::Hooks).is_empty() { cpu } else { Run::typical_us };
            let hooks = ratio(r, workload, (Config::Hooks, Config::None), metric);
            let over = ratio(r, workload, (Config::Ours, Config::Hooks), metric);
            t.push(Target {
                what: format!("added cost per {name}, the hooks alone (empty bpftrace programs on the same tracepoints, all classic)"),
                goal: "none stated (the floor of the 5% goal)".into(),
                measured: format!("{} over no probes; ours over the hooks alone {}", fmt_added(&hooks), fmt_added(&over)),
                verdict: "REPORTED",
            });
        }
    }
    for (workload, name) in [
        (Workload::Exec, "exec"),
        (Workload::ExecChain, "execve (chain)"),
        (Workload::Connect, "connect"),
        (Workload::Oom, "OOM"),
    ] {
        let q = ratio(r, workload, (Config::Ours, Config::Bpftrace), cpu);
        t.push(Target {
            what: format!("cost per {name} vs bpftrace"),
            goal: "ours <= bpftrace".into(),
            measured: format!("ours/bpftrace {}", fmt_ratio(&q)),
            verdict: ratio_verdict(&q, 1.0),
        });
    }
    let none = median(&cpu_per_op(r, Config::None, Workload::Syscall));
    let ours = median(&cpu_per_op(r, Config::Ours, Workload::Syscall));
    let bpftrace = median(&cpu_per_op(r, Config::Bpftrace, Workload::Syscall));
    let hooks = median(&cpu_per_op(r, Config::Hooks, Workload::Syscall));
    t.push(Target {
        what: "added cost per syscall nothing hooks (every process on the node pays it)".into(),
        goal: "none stated (reported)".into(),
        measured: format!(
            "{:+.0} ns ({:+.1}%) ours, {:+.0} ns bpftrace, {:+.0} ns the hooks alone: syscall tracepoints send every syscall through the traced path",
            (ours - none) * 1000.0,
            (ours / none - 1.0) * 100.0,
            (bpftrace - none) * 1000.0,
            (hooks - none) * 1000.0
        ),
        verdict: "REPORTED",
    });
    let mut exec_runs = runs(r, Config::Ours, Workload::Exec);
    exec_runs.extend(runs(r, Config::Ours, Workload::ExecChain));
    let lost: f64 = exec_runs.iter().filter_map(|x| x.daemon.as_ref()).map(|d| d.lost.values().sum::<f64>() + d.dropped.values().sum::<f64>()).sum();
    let rate = exec_runs.iter().map(|x| get(&x.report, "ops") / x.wall_s.max(1e-9)).fold(0.0, f64::max);
    let all_lost: f64 = r.runs.iter().filter_map(|x| x.daemon.as_ref()).map(|d| d.lost.values().sum::<f64>() + d.dropped.values().sum::<f64>()).sum();
    t.push(Target {
        what: "no lost events at 20k execs/s, default buffers".into(),
        goal: "0 lost at >= 20000 execs/s".into(),
        measured: format!("{:.0} lost or dropped in the exec storms and chains, peak {rate:.0} execs/s reached; {:.0} lost or dropped in all storms", lost + 0.0, all_lost + 0.0),
        verdict: if lost > 0.0 {
            "MISS"
        } else if rate >= 20_000.0 {
            "PASS"
        } else {
            "PASS at the rate reached (20k/s not reachable here)"
        },
    });
    let hwm = r.memory.hwm_bytes.iter().copied().max().unwrap_or(0) as f64 / MIB;
    let rss = r.memory.rss_bytes.iter().copied().max().unwrap_or(0) as f64 / MIB;
    t.push(Target {
        what: "daemon RSS after the storms".into(),
        goal: "<= 40 MiB".into(),
        measured: format!("peak (VmHWM) {hwm:.1} MiB, RSS at the end {rss:.1} MiB"),
        verdict: if hwm <= 40.0 { "PASS" } else { "MISS" },
    });
    let idle = r.idle.cpu_fraction * 100.0;
    t.push(Target {
        what: "idle CPU".into(),
        goal: "<= 0.5% of a core".into(),
        measured: format!("{idle:.3}% over {:.0}s", r.idle.seconds),
        verdict: if idle <= 0.5 { "PASS" } else { "MISS" },
    });
    t
}

fn cost_table(r: &Results, out: &mut String) {
    let _ = writeln!(out, "| workload | ops | none us/op | ours us/op | bpftrace us/op | hooks alone us/op | ours/none | ours/bpftrace | hooks alone/none | added by ours | wall us/op none / ours / bpftrace / hooks alone | runs used none / ours / bpftrace / hooks alone |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for workload in Workload::ALL {
        let ops = runs(r, Config::None, workload).first().map(|x| x.ops()).unwrap_or(0.0);
        let c = |config| cpu_per_op(r, config, workload);
        let w = |config| median(&wall_per_op(r, config, workload));
        let none = median(&c(Config::None));
        let ours = median(&c(Config::Ours));
        let _ = writeln!(
            out,
            "| {} ({}) | {ops:.0} | {} | {} | {} | {} | {} | {} | {} | {:+.2} us ({:+.1}%) | {:.2} / {:.2} / {:.2} / {:.2} | {} |",
            workload.as_str(),
            workload.unit(),
            spread(&c(Config::None)),
            spread(&c(Config::Ours)),
            spread(&c(Config::Bpftrace)),
            spread(&c(Config::Hooks)),
            fmt_ratio(&ratio(r, workload, (Config::Ours, Config::None), cpu)),
            fmt_ratio(&ratio(r, workload, (Config::Ours, Config::Bpftrace), cpu)),
            fmt_ratio(&ratio(r, workload, (Config::Hooks, Config::None), cpu)),
            ours - none,
            (ours / none - 1.0) * 100.0,
            w(Config::None),
            w(Config::Ours),
            w(Config::Bpftrace),
            w(Config::Hooks),
            Config::ALL
                .iter()
                .map(|c| format!("{}/{}", measured(r, *c, workload).len(), runs(r, *c, workload).len()))
                .collect::<Vec<_>>()
                .join(" / "),
        );
    }
}

fn fmt_map(m: &BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v:.0}")).collect::<Vec<_>>().join(", ")
}

fn events_table(r: &Results, out: &mut String) {
    let _ = writeln!(out, "| workload | rep | delivered / happened, by kind | kernel emitted | filtered in the kernel (of which by design) | lost (kernel) | dropped (user space) | daemon CPU s | daemon wakeups | drained after |");
    let _ = writeln!(out, "|---|---:|---|---:|---|---|---|---:|---:|---:|");
    for workload in Workload::ALL {
        for run in runs(r, Config::Ours, workload) {
            let Some(d) = &run.daemon else { continue };
            let happened = happened(run);
            let mut kinds: Vec<String> = happened
                .iter()
                .map(|(k, h)| format!("{k} {:.0}/{h:.0}", d.events.get(*k).copied().unwrap_or(0.0)))
                .collect();
            for (k, v) in &d.events {
                if !happened.contains_key(k.as_str()) {
                    kinds.push(format!("{k} {v:.0}/0 (noise)"));
                }
            }
            if let Some(memcg) = run.memcg_oom_kills {
                kinds.push(format!("(memcg counted {memcg} OOM kills)"));
            }
            let filtered: f64 = d.filtered.values().sum();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {filtered:.0} ({:.0}): {} | {} | {} | {:.2} | {} | {:.2}s{} |",
                workload.as_str(),
                run.rep + 1,
                kinds.join(", "),
                d.emitted.values().sum::<f64>(),
                filtered_by_design(run),
                fmt_map(&d.filtered),
                fmt_map(&d.lost),
                fmt_map(&d.dropped),
                d.cpu_s,
                d.wakeups,
                d.drain_s,
                if d.drained { "" } else { " (NOT drained)" },
            );
        }
    }
}

fn profile_table(r: &Results, out: &mut String) {
    let _ = writeln!(out, "| tracer | workload | program | runs/op | ns/run | ns/op |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for p in &r.profile {
        if p.runs == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} |",
            p.tracer.as_str(),
            p.workload.as_str(),
            p.program,
            p.runs as f64 / p.ops.max(1.0),
            p.run_time_ns as f64 / p.runs as f64,
            p.run_time_ns as f64 / p.ops.max(1.0),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Sum of program run time per operation (the rest of a tracer's cost is the hooks' own: the syscall tracepoints' slow path, building the tracepoint record, the ring buffer wakeups):");
    let _ = writeln!(out);
    for workload in Workload::ALL {
        let _ = writeln!(
            out,
            "- {}: ours {:.0} ns/op, bpftrace {:.0} ns/op",
            workload.as_str(),
            programs_ns_per_op(r, Config::Ours, workload),
            programs_ns_per_op(r, Config::Bpftrace, workload)
        );
    }
    if !r.syscalls_per_op.is_empty() {
        let counts: Vec<String> = r.syscalls_per_op.iter().map(|(w, n)| format!("{} {n:.1}", w.as_str())).collect();
        let _ = writeln!(out, "\nSyscalls entered per operation by the workload's tasks (no probes of ours): {}.", counts.join(", "));
    }
}

fn latency_text(r: &Results, out: &mut String) {
    let l = &r.latency;
    let line = |name: &str, v: &[f64]| {
        format!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            v.len(),
            percentile(v, 50.0) / 1000.0,
            percentile(v, 99.0) / 1000.0,
            v.iter().copied().fold(0.0, f64::max) / 1000.0
        )
    };
    let _ = writeln!(out, "| metric | samples | p50 ms | p99 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let _ = writeln!(out, "{}", line("events_total{kind=\"oom_kill\"}", &l.events_us));
    let _ = writeln!(out, "{}", line("kills_total{cause=\"oom\"}", &l.kills_us));
    if l.timeouts > 0 {
        let _ = writeln!(out, "\n{} samples timed out (no metric change within 5 s).", l.timeouts);
    }
}

fn targets_table(r: &Results, out: &mut String) {
    let _ = writeln!(out, "| target | goal | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|---|");
    for t in targets(r) {
        let _ = writeln!(out, "| {} | {} | {} | {} |", t.what, t.goal, t.measured, t.verdict);
    }
    let get = |id: &str| r.pipeline.iter().find(|(n, _)| n == id).map(|(_, v)| *v);
    match get("pipeline/decode_attribute_detect") {
        Some(v) => {
            let _ = writeln!(
                out,
                "| pipeline decode -> attribute -> detect, one core | >= 1M events/s | {:.2} M events/s (decode alone {:.1} M/s; decode -> detect without attribution {:.2} M/s) | {} |",
                v / 1e6,
                get("pipeline/decode").unwrap_or(f64::NAN) / 1e6,
                get("pipeline/decode_subject_detect").unwrap_or(f64::NAN) / 1e6,
                if v >= 1e6 { "PASS" } else { "MISS" }
            );
        }
        None => {
            let _ = writeln!(out, "| pipeline decode -> attribute -> detect, one core | >= 1M events/s | not run here: `cargo +1.98.0 bench -p monitor --bench pipeline` | - |");
        }
    }
}

fn conditions(r: &Results, out: &mut String) {
    let loads = &r.loads;
    let contaminated = r.runs.iter().filter(|x| x.contaminated).count();
    if contaminated > 0 {
        let _ = writeln!(
            out,
            "- {contaminated} of {} runs had another process's tracing BPF programs loaded (after waiting up to {} s for them to go); \
             the medians leave them out where clean runs exist (\"runs used\").",
            r.runs.len(),
            r.options.wait_foreign
        );
    }
    let _ = writeln!(
        out,
        "- load average (1 min) during the measured runs: median {:.2}, max {:.2}; {} repeat(s), interleaved none, ours, bpftrace, the hooks alone.",
        median(loads),
        loads.iter().copied().fold(0.0, f64::max),
        r.options.repeats
    );
    let _ = writeln!(
        out,
        "- idle interval ({:.0}s, daemon running, no workload): {} events delivered ({}), {:.0} hook hits filtered: the background the storms' counts include.",
        r.idle.seconds,
        r.idle.events.values().sum::<f64>(),
        fmt_map(&r.idle.events),
        r.idle.filtered
    );
    if r.foreign.is_empty() {
        let _ = writeln!(out, "- no other process had tracing BPF programs loaded during the runs.");
    } else {
        let _ = writeln!(out, "- other processes' tracing BPF programs were loaded during some runs (they tax every configuration, \"none\" included):");
        for f in r.foreign.iter().take(20) {
            let _ = writeln!(out, "  - {f}");
        }
    }
    let _ = writeln!(out, "- exec target: `{}`; exec storm on {} thread(s).", r.exec_target, r.options.exec_threads);
}

/// The machine the report was written on, for its Conditions.
fn machine_facts() -> Vec<(String, String)> {
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

pub fn console(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nCost per operation: CPU time (user+system) of the workload and its children, us; median [min-max]\n");
    cost_table(r, &mut out);
    let _ = writeln!(out, "\nEvents with our daemon\n");
    events_table(r, &mut out);
    let _ = writeln!(out, "\nOOM kill to metric\n");
    latency_text(r, &mut out);
    if !r.profile.is_empty() {
        let _ = writeln!(out, "\nPer-program run time (bpf_stats)\n");
        profile_table(r, &mut out);
    }
    let _ = writeln!(out, "\nTargets\n");
    targets_table(r, &mut out);
    let _ = writeln!(out);
    conditions(r, &mut out);
    if !r.bpftrace_counts.is_empty() {
        let _ = writeln!(out, "- bpftrace's counts over all its runs: {:?}", r.bpftrace_counts);
    }
    out
}

pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench{}` on {} ({:.0} s). What the agent costs a node, against no probes and \
         against bpftrace counting hits of the same tracepoints. Numbers from one machine, one run: \
         compare ratios, not absolute values, and read the spread and the load.\n",
        if r.options.quick { " --quick" } else { "" },
        r.started,
        r.elapsed_s
    );
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(
        out,
        "A ratio is the median of the repeats' own ratios (each repeat runs every configuration back to back, \
         in an order that rotates from repeat to repeat), with its 90% bootstrap interval in brackets. A ratio \
         target is PASS when the whole interval meets it, MISS when none of it does, and UNDECIDED when this \
         machine's noise is wider than the margin. \"From its parts\" adds up what is measured precisely: the \
         programs' run time per operation (`bpf_stats`, below; it overestimates, the stats' own clock reads are in it) \
         and the syscalls per operation (bpftrace on `raw_syscalls:sys_enter`) times the tax a syscall pays while \
         the probes are attached (the syscall loop). It leaves out the building of each classic tracepoint's record. \
         \"Typical operation\" compares the median over a run's operations of what each cost the task that made it \
         (the calling thread's CPU time around the call, plus the reaped child's for a fork+exec; for the connect \
         storm, the mean of its four kinds' medians): a burst of other work on the machine moves a run's total CPU \
         time by several percent, but hardly moves the median of thousands of operations. It leaves out work done \
         elsewhere for the operation (the connect storm's accepting threads, softirqs on other CPUs).\n"
    );
    targets_table(r, &mut out);
    let _ = writeln!(out, "\n## Cost per operation\n");
    let _ = writeln!(
        out,
        "CPU time (user + system) of the workload process and of the children it reaped, per operation, in us: \
         median [min-max] over the repeats. Kernel programs run in the context of the task that hits the hook, \
         so their cost is in these figures; CPU time is far less disturbed than wall time by other work on the \
         machine (hardware counters are not available in this VM). The daemon's own CPU is reported apart, below.\n"
    );
    cost_table(r, &mut out);
    let _ = writeln!(out, "\n## Events: delivered vs happened\n");
    let _ = writeln!(
        out,
        "\"happened\" is what the driver did and counted (plus the worker process's own exec and exit); \"delivered\" \
         is the delta of `events_total{{kind}}`. Successful loopback TCP connects and successful unix connects to \
         sockets that are not watched are filtered in the kernel by design: they are counted as filtered, not \
         delivered. The counters are global: the idle background below is part of each delta.\n"
    );
    events_table(r, &mut out);
    let _ = writeln!(out, "\n## Daemon resources\n");
    let hwm: Vec<String> = r.memory.hwm_bytes.iter().map(|b| format!("{:.1}", *b as f64 / MIB)).collect();
    let _ = writeln!(out, "- peak RSS (VmHWM) at the end of each run with the daemon: {} MiB", hwm.join(", "));
    let _ = writeln!(out, "- idle: {:.3}% of a core over {:.0} s, RSS {:.1} MiB", r.idle.cpu_fraction * 100.0, r.idle.seconds, r.idle.rss_bytes as f64 / MIB);
    for workload in Workload::ALL {
        let cpu: Vec<f64> = runs(r, Config::Ours, workload).iter().filter_map(|x| x.daemon.as_ref().map(|d| d.cpu_s)).collect();
        let ops = runs(r, Config::Ours, workload).first().map(|x| x.ops()).unwrap_or(1.0);
        let _ = writeln!(out, "- {}: daemon CPU {} s (median {:.2} us per operation)", workload.as_str(), spread(&cpu), median(&cpu) * 1e6 / ops);
    }
    let _ = writeln!(out, "\n## OOM kill to metric\n");
    let _ = writeln!(
        out,
        "One memcg OOM kill at a time, daemon running; from the moment the victim is reaped (`waitpid` returned, \
         so the kill has happened) to the end of the first `/metrics` scrape that shows it (scrapes every ~0.1 ms \
         plus the scrape's own time).\n"
    );
    latency_text(r, &mut out);
    if !r.profile.is_empty() {
        let _ = writeln!(out, "\n## Per-program run time\n");
        let _ = writeln!(
            out,
            "`kernel.bpf_stats_enabled=1` (only for this pass: it adds two clock reads per run), `bpftool prog show`: run time of each \
             program per workload, at {} of the workload sizes.\n",
            if r.options.quick { "1x" } else { "1/4" }
        );
        profile_table(r, &mut out);
    }
    if !r.pipeline.is_empty() {
        let _ = writeln!(out, "\n## User-space pipeline (criterion)\n");
        let _ = writeln!(
            out,
            "`monitor/benches/pipeline.rs`, one core, realistic records of every kind (a stream of process lives: exec, connect, \
             exit; failed execs, OOM kills with their SIGKILL). `pipeline/*` is the chain, `stage/*` each stage alone, `decode/*` \
             one record of each kind.\n"
        );
        let _ = writeln!(out, "| benchmark | events/s |");
        let _ = writeln!(out, "|---|---:|");
        for (name, v) in &r.pipeline {
            let _ = writeln!(out, "| {name} | {:.2} M |", v / 1e6);
        }
    }
    let _ = writeln!(out, "\n## Conditions\n");
    conditions(r, &mut out);
    for (k, v) in machine_facts() {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\n## Reproduce\n");
    let _ = writeln!(
        out,
        "```sh\ncargo xtask bench            # as root; ~13 min; --quick for ~4 min; --help for sizes\n\
         cargo +1.98.0 bench -p monitor --bench pipeline   # user-space pipeline (criterion)\n```\n"
    );
    let _ = writeln!(
        out,
        "Workloads: exec storm: {} fork+exec of a 129-byte static ELF that calls exit_group(0), on {} thread(s); \
         exec chain: {} execs of a 168-byte static ELF that re-executes itself, {} per process, on the same threads; \
         connect storm: {} connects, round-robin: loopback TCP to a listening port, to a closed port (ECONNREFUSED), \
         unix to a listening socket, to a missing path (ENOENT); OOM storm: {} processes that each join a 16 MiB v1 \
         memory cgroup and touch memory until the memcg OOM killer kills them; syscall loop: {} getppid calls. bpftrace runs \
         `{}`; \"the hooks alone\" is the same with empty programs (`{{ }}`).",
        r.options.execs,
        r.options.exec_threads,
        r.options.chain_execs,
        EXEC_CHAIN_LENGTH,
        r.options.connects,
        r.options.ooms,
        r.options.syscalls,
        super::daemon::BPFTRACE_SCRIPT
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_target_is_decided_only_by_its_whole_interval() {
        let q = |median, low, high| Ratio { median, low, high };
        assert_eq!(ratio_verdict(&q(1.02, 1.00, 1.04), 1.05), "PASS");
        assert_eq!(ratio_verdict(&q(1.09, 1.06, 1.20), 1.05), "MISS");
        assert!(ratio_verdict(&q(1.03, 0.99, 1.08), 1.05).starts_with("UNDECIDED"));
    }
}
