//! The two tracers under test, started and stopped by the bench: our daemon (release build) and
//! bpftrace counting on the same tracepoints. Also: /metrics scraping and parsing, process CPU
//! and memory from /proc, and per-program BPF run time from `bpftool prog show`.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

// ---------------------------------------------------------------------------------------------
// /metrics

/// One scrape: (metric name, labels) -> value.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self { samples }
    }

    /// Sum of the series of `name` whose labels include all of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| n == name && with.iter().all(|(k, v)| labels.get(*k).is_some_and(|l| l == v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Values of `name` by the value of label `key`.
    pub fn by_label(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.samples {
            if n == name
                && let Some(l) = labels.get(key)
            {
                *out.entry(l.clone()).or_insert(0.0) += v;
            }
        }
        out
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

/// GET /metrics (HTTP/1.0, so the body is not chunked).
pub fn scrape(address: &str) -> anyhow::Result<Metrics> {
    let body = http_get(address, "/metrics")?;
    Ok(Metrics::parse(&body))
}

pub fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

// ---------------------------------------------------------------------------------------------
// /proc

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads, dead ones included), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "(comm)": state is field 3 of the man page, so utime (14) and stime (15) are 11, 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU time of a process's live threads in ns (`/proc/PID/task/*/schedstat`): finer than
/// clock ticks, for the idle measurement.
pub fn cpu_ns_schedstat(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Voluntary context switches of a process's live threads: how often it went to sleep and was
/// woken (for the reader, about once per ring buffer wakeup).
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).and_then(|v| v.trim().parse::<u64>().ok()))
        .sum()
}

/// A `kB` field of /proc/PID/status, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn loadavg1() -> f64 {
    loadavg().split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// our daemon

pub struct Daemon {
    child: Child,
    pub address: String,
    pub log: PathBuf,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Daemon {
    pub fn start(binary: &Path, work: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let address = free_port()?.to_string();
        let log = work.join(format!("daemon-{}.log", address.replace(':', "_")));
        let child = Command::new(binary)
            .args(["run", "--listen", &address])
            .args(extra)
            .env("NRM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let mut daemon = Self { child, address, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(body) = http_get(&daemon.address, "/healthz") {
                let _ = body;
                break;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                bail!("daemon exited ({status}); log:\n{}", std::fs::read_to_string(&daemon.log).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("daemon not serving after 60s; log: {}", daemon.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Every program must be attached, or the comparison means nothing.
        let metrics = scrape(&daemon.address)?;
        let down: Vec<String> = metrics
            .samples
            .iter()
            .filter(|(n, _, v)| n == "node_runtime_monitor_probe_up" && *v != 1.0)
            .filter_map(|(_, l, _)| l.get("program").cloned())
            .collect();
        if !down.is_empty() {
            let _ = daemon.stop();
            bail!("programs not attached: {down:?}");
        }
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn scrape(&self) -> anyhow::Result<Metrics> {
        scrape(&self.address)
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("daemon did not stop within 15s of SIGTERM")
    }
}

/// A daemon left running (the bench failed half-way) would tax every later measurement.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// bpftrace

/// Tracepoints our programs use; bpftrace counts hits of each (`@[probe] = count()`), the
/// minimum work a tracer can do on them. Our BTF tracepoints (`mark_victim`,
/// `signal_generate`, `inet_sock_set_state`) are classic tracepoints of the same names for
/// bpftrace, whose `tracepoint:` probes are all classic.
pub const BPFTRACE_SCRIPT: &str = "tracepoint:sched:sched_process_exec, \
tracepoint:sched:sched_process_exit, \
tracepoint:syscalls:sys_exit_execve, tracepoint:syscalls:sys_exit_execveat, \
tracepoint:syscalls:sys_exit_connect, \
tracepoint:sock:inet_sock_set_state, \
tracepoint:oom:mark_victim, tracepoint:printk:console, \
tracepoint:signal:signal_generate \
{ @[probe] = count(); }";

/// The same tracepoints with empty programs: the hooks' own cost (a classic tracepoint's record
/// is still built, and a syscall tracepoint still sends every syscall through the traced path).
pub fn bpftrace_hooks_script() -> String {
    BPFTRACE_SCRIPT.replace("{ @[probe] = count(); }", "{ }")
}

/// Counts the syscalls entered by tasks named `comms` (the workers and what they exec).
pub fn syscall_count_script(comms: &[&str]) -> String {
    let filter = comms.iter().map(|c| format!("comm == \"{c}\"")).collect::<Vec<_>>().join(" || ");
    format!("tracepoint:raw_syscalls:sys_enter /{filter}/ {{ @[probe] = count(); }}")
}

pub struct Bpftrace {
    child: Child,
    output: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Bpftrace {
    /// Starts bpftrace with `script` (tracepoint probes); `before` are the BPF program ids loaded
    /// before it.
    pub fn start(work: &Path, before: &[u64], script: &str) -> anyhow::Result<Self> {
        // One program per probe.
        let probes = script.matches("tracepoint:").count();
        let log = work.join("bpftrace.err");
        let mut child = Command::new("bpftrace")
            .args(["-e", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start bpftrace (apt-get install bpftrace)")?;
        let mut stdout = BufReader::new(child.stdout.take().context("bpftrace stdout")?);
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let _ = child.wait();
                bail!("bpftrace ended before attaching: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if line.contains("Attaching") {
                break;
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not attach within 120s");
            }
        }
        let output = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            rest
        });
        // "Attaching N probes..." is printed before the probes are attached.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if bpf_programs().iter().filter(|p| is_tracing(p) && !before.contains(&p.id)).count() >= probes {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self { child, output: Some(output) })
    }

    /// Stops bpftrace (SIGINT) and returns its map: probe -> count.
    pub fn stop(&mut self) -> anyhow::Result<BTreeMap<String, u64>> {
        // bpftrace 0.17 now and then misses a SIGINT: repeat it, then give up on its counts.
        let started = Instant::now();
        let mut last_signal: Option<Instant> = None;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            if last_signal.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
                last_signal = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = self.output.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("@[")
                && let Some((probe, n)) = rest.split_once("]: ")
            {
                counts.insert(probe.to_string(), n.trim().parse().unwrap_or(0));
            }
        }
        Ok(counts)
    }
}

// ---------------------------------------------------------------------------------------------
// bpftool

#[derive(Clone, Debug)]
pub struct BpfProgram {
    pub id: u64,
    pub kind: String,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Every loaded BPF program, with its owner and (when `kernel.bpf_stats_enabled`) run time.
pub fn bpf_programs() -> Vec<BpfProgram> {
    let Ok(out) = Command::new("bpftool").args(["prog", "show", "-j"]).stderr(Stdio::null()).output() else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(programs)) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    programs
        .iter()
        .map(|p| {
            BpfProgram {
                id: p["id"].as_u64().unwrap_or(0),
                kind: p["type"].as_str().unwrap_or("").to_string(),
                name: p["name"].as_str().unwrap_or("").to_string(),
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

pub fn is_tracing(p: &BpfProgram) -> bool {
    matches!(p.kind.as_str(), "tracepoint" | "raw_tracepoint" | "tracing" | "kprobe" | "perf_event")
}

/// Tracing programs (tracepoints, raw and BTF tracepoints, kprobes, fentry) other than the
/// tracer's own (`ours`, by id): they would tax every configuration, the baseline included.
pub fn foreign_tracing_programs(ours: &[u64]) -> Vec<BpfProgram> {
    bpf_programs().into_iter().filter(|p| is_tracing(p) && !ours.contains(&p.id)).collect()
}

pub fn set_bpf_stats(enabled: bool) -> bool {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", if enabled { "1" } else { "0" }).is_ok()
}

/// tracefs must be mounted for bpftrace's tracepoints (our daemon mounts it itself).
pub fn ensure_tracefs() {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    let _ = Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]).status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hooks_alone_are_the_same_tracepoints_with_empty_programs() {
        let hooks = bpftrace_hooks_script();
        assert_ne!(hooks, BPFTRACE_SCRIPT);
        assert!(hooks.ends_with("{ }") && !hooks.contains("count()"), "{hooks}");
        assert_eq!(hooks.split('{').next(), BPFTRACE_SCRIPT.split('{').next());
    }
}
