//! Loops: the signature of a node that keeps failing the same way.
//!
//! - Restart loops: the same container of the same pod re-created (a new container instance),
//!   or the same host service binary re-exec'd after failing, N times within a window. Each run
//!   keeps its exit (code, or signal and who sent it, or the OOM killer) and lifetime, and the
//!   runtime socket it connected to, if any: a client that connects to the runtime and dies
//!   within a second, again and again, is the shape of a CRI API version gap.
//! - Exec-failure loops: the same binary failing to exec (ENOENT, EACCES...) for the same caller.
//! - Connect-failure loops: the same client failing to reach a runtime socket or the API server.
//!
//! Defaults follow the cadences of the things that loop: kubelet's CrashLoopBackOff (10s,
//! doubling to 5m) gives three re-creations within about two minutes; systemd's `Restart=`
//! with `RestartSec=` of 100ms to 10s gives three failed runs within a minute.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

use super::{
    NodeFacts, Subject, SubjectKind,
    kills::{Death, DeathCause},
};
use crate::{
    events::{Event, SocketAddress, errno_name},
    findings::{Finding, Rule, Severity},
};

pub const CONTAINER_RESTART_LOOP: Rule = Rule {
    id: "container-restart-loop",
    severity: Severity::Warning,
    title: "A container is re-created again and again",
    description: "The same container of the same pod was re-created several times within the window; each run's exit and lifetime are the evidence.",
};

pub const STATIC_POD_RESTART_LOOP: Rule = Rule {
    id: "static-pod-restart-loop",
    severity: Severity::Critical,
    title: "A control-plane static pod is re-created again and again",
    description: "A static pod's container (kube-apiserver, etcd, controller-manager, scheduler, kube-proxy...) keeps being re-created: the control plane on this node is down or flapping.",
};

pub const HOST_SERVICE_RESTART_LOOP: Rule = Rule {
    id: "host-service-restart-loop",
    severity: Severity::Warning,
    title: "A host service keeps failing and being restarted",
    description: "The same host binary was run and failed several times within the window (a systemd Restart= loop or an installer retrying).",
};

pub const EXEC_FAILURE_LOOP: Rule = Rule {
    id: "exec-failure-loop",
    severity: Severity::Warning,
    title: "A binary keeps failing to execute",
    description: "The same caller tried to execute the same path several times and the kernel refused each time (missing binary, no permission, bad format).",
};

pub const CONNECT_FAILURE_LOOP: Rule = Rule {
    id: "connect-failure-loop",
    severity: Severity::Critical,
    title: "A client keeps failing to reach the container runtime or the API server",
    description: "Repeated failed connects to a runtime socket or an API server port: the endpoint is missing, refused or not the one the node runs.",
};

pub const RULES: [Rule; 5] =
    [CONTAINER_RESTART_LOOP, STATIC_POD_RESTART_LOOP, HOST_SERVICE_RESTART_LOOP, EXEC_FAILURE_LOOP, CONNECT_FAILURE_LOOP];

/// Thresholds; see the module doc for why these defaults.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub container_restarts: usize,
    pub container_window: Duration,
    pub host_failures: usize,
    pub host_window: Duration,
    pub exec_failures: usize,
    pub exec_window: Duration,
    pub connect_failures: usize,
    pub connect_window: Duration,
    /// Most loop keys tracked at once (oldest forgotten first): memory stays bounded.
    pub max_tracked: usize,
    /// An open loop finding is reported again at most this often while the loop goes on (its
    /// counts and evidence are at most this stale): a failure storm costs a lookup per event,
    /// not a finding.
    pub refresh: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            container_restarts: 3,
            container_window: Duration::from_secs(600),
            host_failures: 3,
            host_window: Duration::from_secs(300),
            exec_failures: 3,
            exec_window: Duration::from_secs(300),
            connect_failures: 3,
            connect_window: Duration::from_secs(300),
            max_tracked: 4096,
            refresh: Duration::from_secs(1),
        }
    }
}

/// Unix socket names of container runtimes (and their shims), and API server/etcd/kubelet ports.
const RUNTIME_SOCKETS: [&str; 7] =
    ["containerd.sock", "cri-dockerd.sock", "docker.sock", "dockershim.sock", "crio.sock", "cri-containerd.sock", "k3s/containerd"];
const CONTROL_PLANE_PORTS: [u16; 5] = [6443, 2379, 10250, 10257, 10259];

/// Binaries of the node's runtime and control plane (and their installers), followed for
/// restart loops even when no systemd unit runs them.
const NODE_DAEMONS: [&str; 20] = [
    "kubelet", "containerd", "dockerd", "cri-dockerd", "crio", "conmon", "etcd", "kube-apiserver",
    "kube-controller-manager", "kube-scheduler", "kube-proxy", "k0s", "k3s", "rke2", "nodeup",
    "kubeadm", "kubekey", "kk", "runc", "containerd-shim-runc-v2",
];

pub fn is_node_daemon(filename: &str) -> bool {
    let name = filename.rsplit('/').next().unwrap_or(filename);
    NODE_DAEMONS.contains(&name)
}

/// Whether a connect target is the runtime or the control plane.
pub fn is_control_endpoint(address: &SocketAddress) -> bool {
    match address {
        SocketAddress::Unix { path, .. } => RUNTIME_SOCKETS.iter().any(|s| path.ends_with(s) || path.contains(s)),
        SocketAddress::Inet { port, .. } => CONTROL_PLANE_PORTS.contains(port),
        SocketAddress::Other { .. } => false,
    }
}

#[derive(Clone, Debug)]
struct Run {
    tgid: u32,
    exec: String,
    ended: Option<(Instant, Death)>,
    connected_to: Option<String>,
    /// An OOM kill inside the container during this run (the victim need not be its init:
    /// a shell whose child was OOM-killed exits 137 by itself).
    oom_inside: Option<String>,
}

#[derive(Debug, Default)]
struct RunHistory {
    last_instance: String,
    runs: VecDeque<Run>,
    reported: Reported,
}

/// Occurrences of a repeated failure within a window.
#[derive(Debug, Default)]
struct Occurrences {
    times: VecDeque<Instant>,
    reported: Reported,
}

impl Occurrences {
    fn push(&mut self, now: Instant, window: Duration) -> usize {
        self.times.push_back(now);
        while self.times.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.times.pop_front();
        }
        self.times.truncate_front_to(MAX_OCCURRENCES);
        self.times.len()
    }
}

/// Occurrence times kept per loop key (memory stays bounded under a storm).
const MAX_OCCURRENCES: usize = 64;

/// A count of occurrences as the titles say it: past the times kept, a lower bound.
fn occurrences_text(count: usize) -> String {
    if count >= MAX_OCCURRENCES { format!("at least {count}") } else { count.to_string() }
}

/// When a loop's finding was last reported.
#[derive(Debug, Default)]
struct Reported(Option<Instant>);

impl Reported {
    /// Whether to report now (the first time, or `refresh` after the last); if so, notes it.
    fn due(&mut self, now: Instant, refresh: Duration) -> bool {
        let due = self.0.is_none_or(|at| now.saturating_duration_since(at) >= refresh);
        if due {
            self.0 = Some(now);
        }
        due
    }
}

trait TruncateFront {
    fn truncate_front_to(&mut self, len: usize);
}

impl<T> TruncateFront for VecDeque<T> {
    fn truncate_front_to(&mut self, len: usize) {
        while self.len() > len {
            self.pop_front();
        }
    }
}

/// A map that forgets its oldest keys past a capacity.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<V: Default> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    fn entry(&mut self, key: &str) -> &mut V {
        if !self.map.contains_key(key) {
            while self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.order.push_back(key.to_string());
            self.map.insert(key.to_string(), V::default());
        }
        self.map.get_mut(key).expect("inserted above")
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }
}

#[derive(Debug)]
pub struct LoopDetector {
    config: LoopConfig,
    histories: Bounded<RunHistory>,
    /// Running processes that started a run: tgid -> run key.
    running: HashMap<u32, String>,
    exec_failures: Bounded<Occurrences>,
    /// ENOENT exec failures not yet counted: a PATH search (execvp) fails in every directory
    /// before the one that has the binary; such a miss is dropped when the same process then
    /// execs a file of the same name, and counted when it exits or execs something else.
    tentative: HashMap<u32, Vec<(crate::events::ExecFailed, Subject)>>,
    connect_failures: Bounded<Occurrences>,
}

impl Default for LoopDetector {
    fn default() -> Self {
        Self::new(LoopConfig::default())
    }
}

fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(120) {
        format!("{}m", d.as_secs() / 60)
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl LoopDetector {
    pub fn new(config: LoopConfig) -> Self {
        let cap = config.max_tracked;
        Self {
            config,
            histories: Bounded::new(cap),
            running: HashMap::new(),
            exec_failures: Bounded::new(cap),
            tentative: HashMap::new(),
            connect_failures: Bounded::new(cap),
        }
    }

    /// Number of processes whose run is being followed (bounded by `max_tracked` keys).
    pub fn tracked_runs(&self) -> usize {
        self.running.len()
    }

    pub fn observe(
        &mut self,
        event: &Event,
        death: Option<&Death>,
        subject: &Subject,
        facts: &NodeFacts,
        now: Instant,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        match event {
            Event::Exec(exec) => {
                findings.extend(self.settle_tentative(exec.task.tgid, Some(&exec.filename), now));
                self.start_run(exec.task.tgid, &exec.filename, subject);
            }
            Event::Exit(exit) => findings.extend(self.settle_tentative(exit.task.tgid, None, now)),
            Event::Connect(connect) if connect.errno == 0 => {
                if is_control_endpoint(&connect.address) {
                    self.note_connect(connect.task.tgid, connect.address.to_string());
                }
            }
            Event::Connect(connect) => findings.extend(self.connect_failure(connect, subject, facts, now)),
            Event::OomKill(oom) if subject.kind == SubjectKind::Container => {
                if let Some(history) = self.histories.get_mut(&subject.key)
                    && let Some(run) = history.runs.iter_mut().rev().find(|r| r.ended.is_none()) {
                        run.oom_inside = Some(format!("{} (pid {})", oom.task.comm, oom.task.tgid));
                    }
            }
            Event::ExecFailed(failed) if failed.errno == libc::ENOENT => {
                if self.tentative.len() >= self.config.max_tracked {
                    self.tentative.clear();
                }
                let pending = self.tentative.entry(failed.task.tgid).or_default();
                if pending.len() < 64 {
                    pending.push((failed.clone(), subject.clone()));
                }
            }
            Event::ExecFailed(failed) => findings.extend(self.exec_failure(failed, subject, now)),
            _ => {}
        }
        if let Some(death) = death {
            findings.extend(self.end_run(death, subject, facts, now));
        }
        findings
    }

    fn run_key(subject: &Subject, filename: &str) -> String {
        match subject.kind {
            SubjectKind::Container => subject.key.to_string(),
            SubjectKind::HostService | SubjectKind::HostProcess => {
                format!("{}|{filename}", subject.key)
            }
        }
    }

    fn start_run(&mut self, tgid: u32, filename: &str, subject: &Subject) {
        // Outside containers and units, only the node's own daemons are followed: a script's
        // `grep` that exits 1 every minute is no restart loop.
        if subject.kind == SubjectKind::HostProcess && !is_node_daemon(filename) {
            return;
        }
        let key = Self::run_key(subject, filename);
        let history = self.histories.entry(&key);
        if subject.kind == SubjectKind::Container {
            // A container's run starts with the first exec in a new container instance.
            if *history.last_instance == *subject.instance {
                return;
            }
            history.last_instance = subject.instance.to_string();
        }
        history.runs.push_back(Run { tgid, exec: filename.to_string(), ended: None, connected_to: None, oom_inside: None });
        history.runs.truncate_front_to(16);
        if self.running.len() >= self.config.max_tracked * 4 {
            self.running.clear();
        }
        self.running.insert(tgid, key);
    }

    fn note_connect(&mut self, tgid: u32, address: String) {
        let Some(key) = self.running.get(&tgid) else {
            return;
        };
        if let Some(history) = self.histories.get_mut(key)
            && let Some(run) = history.runs.iter_mut().rev().find(|r| r.tgid == tgid) {
                run.connected_to = Some(address);
            }
    }

    fn end_run(&mut self, death: &Death, subject: &Subject, facts: &NodeFacts, now: Instant) -> Option<Finding> {
        let tgid = death.exit.task.tgid;
        let key = self.running.remove(&tgid)?;
        let config = self.config.clone();
        let history = self.histories.get_mut(&key)?;
        let run = history.runs.iter_mut().rev().find(|r| r.tgid == tgid && r.ended.is_none())?;
        run.ended = Some((now, death.clone()));

        let (threshold, window) = match subject.kind {
            SubjectKind::Container => (config.container_restarts, config.container_window),
            _ => (config.host_failures, config.host_window),
        };
        let failed = |death: &Death| !matches!(death.cause, DeathCause::Exited { code: 0 });
        // Containers: every re-creation counts (kubelet restarts completed ones too);
        // host binaries: only failed runs (a periodic job that succeeds is no loop).
        let is_recent = |r: &&Run| {
            r.ended.as_ref().is_some_and(|(at, d)| {
                now.duration_since(*at) <= window && (subject.kind == SubjectKind::Container || failed(d))
            })
        };
        // Counted first: every exit of a followed process gets here, few make a finding.
        if history.runs.iter().filter(is_recent).count() < threshold || !history.reported.due(now, config.refresh) {
            return None;
        }
        let recent: Vec<&Run> = history.runs.iter().filter(is_recent).collect();
        Some(restart_finding(subject, &recent, window, facts))
    }

    /// Counts or drops the tentative ENOENT failures of `tgid`: dropped when it now execs a
    /// file of the same name (a PATH search that found it), counted otherwise.
    fn settle_tentative(&mut self, tgid: u32, exec: Option<&str>, now: Instant) -> Vec<Finding> {
        let Some(pending) = self.tentative.remove(&tgid) else {
            return Vec::new();
        };
        let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
        let found = exec.map(base);
        pending
            .into_iter()
            .filter(|(failed, _)| found.as_deref() != Some(base(&failed.filename).as_str()))
            .filter_map(|(failed, subject)| self.exec_failure(&failed, &subject, now))
            .collect()
    }

    fn exec_failure(&mut self, failed: &crate::events::ExecFailed, subject: &Subject, now: Instant) -> Option<Finding> {
        let key = format!("{}|{}|{}", subject.key, failed.filename, failed.errno);
        let occurrences = self.exec_failures.entry(&key);
        let count = occurrences.push(now, self.config.exec_window);
        if count < self.config.exec_failures || !occurrences.reported.due(now, self.config.refresh) {
            return None;
        }
        let caller = format!("{} (pid {}, parent pid {})", failed.task.comm, failed.task.tgid, failed.task.ppid);
        let errno = errno_name(failed.errno);
        let path = if failed.filename.is_empty() { "(an fd, execveat)".to_string() } else { failed.filename.clone() };
        let why = match failed.errno {
            libc::ENOENT => "does not exist",
            libc::EACCES => "is not executable (permission denied)",
            libc::ENOEXEC => "is not a valid executable",
            _ => "cannot be executed",
        };
        let mut finding = Finding::new(
            &EXEC_FAILURE_LOOP,
            path.clone(),
            format!(
                "{path} {why} ({errno}): {} tried {} times in {}",
                subject.display,
                occurrences_text(count),
                secs(self.config.exec_window)
            ),
        )
        .evidence(
            "kernel: syscalls:sys_exit_execve",
            format!("{}: {} returned {errno}; last caller {caller}", failed.syscall, path),
        )
        .evidence("caller", subject.display.to_string());
        finding = finding.remediation(match failed.errno {
            libc::ENOENT => format!(
                "Install {path} where the caller expects it (check the installer's asset cache and the runtime bundle), or fix the caller's configuration."
            ),
            _ => format!("Fix the file mode or format of {path}."),
        });
        Some(finding)
    }

    fn connect_failure(
        &mut self,
        connect: &crate::events::Connect,
        subject: &Subject,
        facts: &NodeFacts,
        now: Instant,
    ) -> Option<Finding> {
        if !is_control_endpoint(&connect.address) {
            return None;
        }
        let key = format!("{}|{}|{}", subject.key, connect.address, connect.errno);
        let occurrences = self.connect_failures.entry(&key);
        let count = occurrences.push(now, self.config.connect_window);
        if count < self.config.connect_failures || !occurrences.reported.due(now, self.config.refresh) {
            return None;
        }
        let address = connect.address.to_string();
        let client = format!("{} (pid {})", connect.task.comm, connect.task.tgid);
        let errno = errno_name(connect.errno);
        let mut finding = Finding::new(
            &CONNECT_FAILURE_LOOP,
            address.clone(),
            format!(
                "{} cannot reach {address} ({errno}): {} failed connects in {}",
                subject.display,
                occurrences_text(count),
                secs(self.config.connect_window)
            ),
        )
        .evidence(
            "kernel: syscalls:sys_exit_connect",
            format!("connect to {address} failed with {errno}; last client {client}"),
        );
        let mut remediation = String::new();
        if let SocketAddress::Unix { path, .. } = &connect.address {
            match &facts.runtime_endpoint {
                Some(endpoint) if !endpoint.ends_with(path.as_str()) => {
                    finding = finding.evidence(
                        "kubelet configuration",
                        format!("the node's runtime endpoint is {endpoint}, not {path}"),
                    );
                    remediation = format!(
                        "Runtime endpoint mismatch: {} expects {path} but this node runs the runtime at {endpoint}. Point the client at {endpoint}, or install and start the runtime it expects; remove leftover shims of a runtime this node does not use.",
                        connect.task.comm
                    );
                }
                Some(endpoint) => {
                    remediation = format!("The configured runtime endpoint {endpoint} does not answer: start the runtime (and check its logs).");
                }
                None => {}
            }
        } else if connect.errno == libc::ECONNREFUSED {
            remediation = "Nothing listens on the API server port: see the control-plane static pods' findings (restart loops, OOM kills) for why.".to_string();
        }
        if remediation.is_empty() {
            remediation = format!("Make {address} reachable, or stop {} from using it.", connect.task.comm);
        }
        Some(finding.remediation(remediation))
    }
}

fn restart_finding(subject: &Subject, runs: &[&Run], window: Duration, facts: &NodeFacts) -> Finding {
    let rule = match (subject.kind, subject.control_plane) {
        (SubjectKind::Container, true) => &STATIC_POD_RESTART_LOOP,
        (SubjectKind::Container, false) => &CONTAINER_RESTART_LOOP,
        _ => &HOST_SERVICE_RESTART_LOOP,
    };
    let deaths: Vec<&Death> = runs.iter().filter_map(|r| r.ended.as_ref().map(|(_, d)| d)).collect();
    let by = |label: &str| deaths.iter().filter(|d| d.cause.label() == label).count();
    let ooms = runs
        .iter()
        .filter(|r| r.oom_inside.is_some() || r.ended.as_ref().is_some_and(|(_, d)| d.cause.label() == "oom"))
        .count();
    let kills = by("signal");
    let runtime_kills = deaths
        .iter()
        .filter(|d| matches!(&d.cause, DeathCause::Killed { sender, .. } if sender.class.is_runtime_or_kubelet()))
        .count();
    let summary = if ooms * 2 > deaths.len() {
        "most runs were killed by the OOM killer".to_string()
    } else if runtime_kills * 2 > deaths.len() {
        "most runs were killed by the kubelet or the container runtime, not by the OOM killer".to_string()
    } else if kills * 2 > deaths.len() {
        "most runs were killed by another process".to_string()
    } else {
        format!("last run {}", deaths.last().map(|d| d.cause.to_string()).unwrap_or_default())
    };
    // Subject: the container (namespace/pod/container), the unit, or the binary's path.
    let name = match subject.kind {
        SubjectKind::HostProcess => runs.last().map(|r| r.exec.clone()).unwrap_or_default(),
        _ => subject.key.trim_start_matches("pod:").trim_start_matches("service:").to_string(),
    };
    let mut finding = Finding::new(
        rule,
        name,
        format!("{} restarted {} times in {}: {summary}", subject.display, runs.len(), secs(window)),
    );
    for (i, run) in runs.iter().enumerate() {
        let Some((_, death)) = &run.ended else {
            continue;
        };
        let connected = run.connected_to.as_ref().map(|a| format!(", connected to {a}")).unwrap_or_default();
        let oom = run.oom_inside.as_ref().map(|v| format!(", OOM killer killed {v} inside")).unwrap_or_default();
        finding = finding.evidence(
            format!(
                "run {} (kernel: exec, exit{})",
                i + 1,
                if death.cause.label() == "oom" || run.oom_inside.is_some() { ", oom:mark_victim" } else { "" }
            ),
            format!(
                "{} pid {}: lived {}{connected}{oom}, {} ({})",
                run.exec,
                run.tgid,
                secs(death.exit.lifetime),
                death.cause,
                death.exit.status
            ),
        );
    }
    let quick_after_runtime = runs
        .iter()
        .filter(|r| r.connected_to.is_some() && r.ended.as_ref().is_some_and(|(_, d)| d.exit.lifetime < Duration::from_secs(5)))
        .count();
    let remediation = if ooms * 2 > deaths.len() {
        for f in &facts.memory_findings {
            finding = finding.evidence(format!("audit: {}", f.rule), f.title.clone());
        }
        "Memory: raise the container's memory limit or request, and reserve memory for the node's daemons (kubelet systemReserved/kubeReserved, evictionHard)."
            .to_string()
    } else if runtime_kills * 2 > deaths.len() {
        for f in &facts.churn_findings {
            finding = finding.evidence(format!("audit: {}", f.rule), f.title.clone());
        }
        "Sandbox churn: the kubelet or runtime keeps killing and re-creating the pod. Make the runtime's cgroup driver (SystemdCgroup) match kubelet's cgroupDriver and the sandbox image match kubelet's; check that containerd reads the config tables its version expects."
            .to_string()
    } else if quick_after_runtime * 2 > runs.len() {
        "The process connects to the container runtime and exits within seconds: check that the runtime serves the CRI API version the client needs (runtime.v1) and the client's logs."
            .to_string()
    } else {
        "The process fails by itself: read its logs for the error; the exit codes above are what the kernel recorded."
            .to_string()
    };
    finding.remediation(remediation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detectors::kills::KillLedger,
        events::{Connect, Exec, ExecFailed, Exit, ExitStatus, Signal, Task},
    };

    fn task(tgid: u32, comm: &str) -> Task {
        Task { pid: tgid, tgid, ppid: 1, uid: 0, cgroup_id: 5, memcg_id: 0, start_ns: 0, comm: comm.into() }
    }

    fn pod(instance: &str) -> Subject {
        Subject {
            key: "pod:kube-system/kube-apiserver-node1/kube-apiserver".into(),
            display: "kube-system/kube-apiserver-node1 (container kube-apiserver)".into(),
            kind: SubjectKind::Container,
            instance: instance.into(),
            control_plane: true,
        }
    }

    fn host() -> Subject {
        Subject {
            key: "process:bash".into(),
            display: "host process bash".into(),
            kind: SubjectKind::HostProcess,
            instance: "".into(),
            control_plane: false,
        }
    }

    struct Harness {
        detector: LoopDetector,
        ledger: KillLedger,
        facts: NodeFacts,
        t0: Instant,
    }

    impl Harness {
        fn new() -> Self {
            Self { detector: LoopDetector::default(), ledger: KillLedger::default(), facts: NodeFacts::default(), t0: Instant::now() }
        }

        fn feed(&mut self, event: Event, subject: &Subject, at_secs: u64) -> Vec<Finding> {
            let death = self.ledger.observe(&event);
            self.detector.observe(&event, death.as_ref(), subject, &self.facts, self.t0 + Duration::from_secs(at_secs))
        }
    }

    fn exec(tgid: u32, filename: &str) -> Event {
        Event::Exec(Exec { task: task(tgid, "x"), filename: filename.into(), filename_truncated: false })
    }

    fn exit(tgid: u32, status: ExitStatus) -> Event {
        Event::Exit(Exit { task: task(tgid, "x"), status, lifetime: Duration::from_millis(900) })
    }

    fn kill_from(tgid: u32, sender: &str) -> Event {
        Event::Signal(Box::new(Signal {
            task: task(tgid, "x"),
            signal: 9,
            code: 0,
            from_kernel: false,
            group: true,
            sender_pid: 50,
            sender_tgid: 50,
            sender_comm: sender.into(),
            sender_cgroup_id: 1,
            sender_memcg_id: 0,
        }))
    }

    const KILLED: ExitStatus = ExitStatus::Signaled { signal: 9, core_dumped: false };

    #[test]
    fn static_pod_killed_by_runtime_points_at_sandbox_churn() {
        let mut h = Harness::new();
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let tgid = 100 + run;
            let at = run as u64 * 30;
            let subject = pod(&format!("c{run}"));
            findings = h.feed(exec(tgid, "/usr/local/bin/kube-apiserver"), &subject, at);
            assert!(findings.is_empty());
            h.feed(kill_from(tgid, "containerd-shim"), &subject, at + 5);
            findings = h.feed(exit(tgid, KILLED), &subject, at + 5);
            if run < 2 {
                assert!(findings.is_empty(), "no finding before the third run");
            }
        }
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.rule, "static-pod-restart-loop");
        assert_eq!(f.subject, "kube-system/kube-apiserver-node1/kube-apiserver");
        assert!(f.title.contains("not by the OOM killer"), "{}", f.title);
        assert!(f.remediation.contains("cgroup driver"), "{}", f.remediation);
        assert_eq!(f.evidence.len(), 3);
        assert!(f.evidence[0].detail.contains("SIGKILL from containerd-shim"), "{:?}", f.evidence[0]);
    }

    #[test]
    fn a_child_oom_killed_inside_the_container_makes_the_run_an_oom_run() {
        let mut h = Harness::new();
        h.facts.memory_findings = vec![Finding::new(&EXEC_FAILURE_LOOP, "kubelet", "no systemReserved")];
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let subject = pod(&format!("c{run}"));
            let (shell, tail) = (400 + run * 2, 401 + run * 2);
            h.feed(exec(shell, "/bin/sh"), &subject, run as u64 * 20);
            h.feed(exec(tail, "/bin/tail"), &subject, run as u64 * 20);
            let oom = Event::OomKill(Box::new(crate::events::OomKill {
                constraint: crate::events::OomConstraint::MemoryCgroup,
                task: task(tail, "tail"),
                trigger_pid: tail,
                trigger_tgid: tail,
                trigger_comm: "tail".into(),
                trigger_cgroup_id: 5,
                trigger_memcg_id: 0,
                total_vm_pages: 1,
                anon_rss_pages: 1,
                file_rss_pages: 0,
                shmem_rss_pages: 0,
                oom_score_adj: 0,
            }));
            h.feed(oom, &subject, run as u64 * 20 + 1);
            // The shell exits 137 by itself: exit code, not a signal.
            findings = h.feed(exit(shell, ExitStatus::Exited { code: 137 }), &subject, run as u64 * 20 + 1);
        }
        assert_eq!(findings.len(), 1);
        assert!(findings[0].title.contains("OOM killer"), "{}", findings[0].title);
        assert!(findings[0].evidence[0].detail.contains("OOM killer killed tail"), "{:?}", findings[0].evidence[0]);
        assert!(findings[0].remediation.starts_with("Memory"), "{}", findings[0].remediation);
    }

    #[test]
    fn a_client_that_connects_to_the_runtime_and_dies_points_at_the_cri_api_version() {
        // kruise-daemon on a v1alpha2-only runtime: connects (successfully), exits 255 at once.
        let mut h = Harness::new();
        let daemon_pod = Subject { control_plane: false, key: "pod:kruise-system/kruise-daemon-x/daemon".into(), ..pod("") };
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let subject = Subject { instance: format!("c{run}").into(), ..daemon_pod.clone() };
            let tgid = 500 + run;
            h.feed(exec(tgid, "/kruise-daemon"), &subject, run as u64 * 10);
            let connect = Event::Connect(Connect {
                task: task(tgid, "kruise-daemon"),
                address: SocketAddress::Unix { path: "/hostvarrun/dockershim.sock".into(), is_abstract: false },
                errno: 0,
                asynchronous: false,
            });
            h.feed(connect, &subject, run as u64 * 10);
            findings = h.feed(exit(tgid, ExitStatus::Exited { code: 255 }), &subject, run as u64 * 10);
        }
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "container-restart-loop");
        assert!(findings[0].evidence[0].detail.contains("connected to unix:/hostvarrun/dockershim.sock"), "{:?}", findings[0].evidence);
        assert!(findings[0].remediation.contains("CRI API version"), "{}", findings[0].remediation);
    }

    #[test]
    fn other_processes_in_the_same_container_do_not_count_as_runs() {
        let mut h = Harness::new();
        let subject = pod("c1");
        h.feed(exec(1, "/pause"), &subject, 0);
        for tgid in 2..20 {
            h.feed(exec(tgid, "/bin/sh"), &subject, 1);
            assert!(h.feed(exit(tgid, ExitStatus::Exited { code: 1 }), &subject, 1).is_empty());
        }
    }

    #[test]
    fn periodic_successful_host_jobs_are_not_loops_but_failing_ones_are() {
        let mut h = Harness::new();
        for i in 0..10u32 {
            h.feed(exec(200 + i, "/usr/bin/true"), &host(), i as u64);
            assert!(h.feed(exit(200 + i, ExitStatus::Exited { code: 0 }), &host(), i as u64).is_empty());
        }
        // A script's failing `grep` is not followed at all.
        for i in 0..5u32 {
            h.feed(exec(250 + i, "/usr/bin/grep"), &host(), 10 + i as u64);
            assert!(h.feed(exit(250 + i, ExitStatus::Exited { code: 1 }), &host(), 10 + i as u64).is_empty());
        }
        let mut last = Vec::new();
        for i in 0..3u32 {
            h.feed(exec(300 + i, "/usr/local/bin/kubelet"), &host(), 20 + i as u64);
            last = h.feed(exit(300 + i, ExitStatus::Exited { code: 1 }), &host(), 20 + i as u64);
        }
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].rule, "host-service-restart-loop");
        assert!(last[0].remediation.contains("fails by itself"));
    }

    #[test]
    fn exec_failures_repeat_into_a_finding_naming_the_binary() {
        let mut h = Harness::new();
        let failed = |tgid| {
            Event::ExecFailed(ExecFailed {
                task: task(tgid, "nodeup"),
                filename: "/usr/local/bin/crictl".into(),
                filename_truncated: false,
                errno: libc::ENOENT,
                syscall: "execve",
            })
        };
        let gone = |tgid| exit(tgid, ExitStatus::Exited { code: 127 });
        assert!(h.feed(failed(1), &host(), 0).is_empty());
        assert!(h.feed(gone(1), &host(), 0).is_empty());
        assert!(h.feed(failed(2), &host(), 30).is_empty());
        assert!(h.feed(gone(2), &host(), 30).is_empty());
        assert!(h.feed(failed(3), &host(), 60).is_empty(), "counted once the process is gone");
        let findings = h.feed(gone(3), &host(), 60);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].subject, "/usr/local/bin/crictl");
        assert!(findings[0].title.contains("does not exist (ENOENT)"), "{}", findings[0].title);
        // Outside the window they do not add up.
        let mut h = Harness::new();
        for (i, at) in [0u64, 400, 800].into_iter().enumerate() {
            assert!(h.feed(failed(i as u32), &host(), at).is_empty());
            assert!(h.feed(gone(i as u32), &host(), at).is_empty());
        }
    }

    #[test]
    fn path_search_misses_are_not_failures() {
        // execvp("crictl") tries /usr/local/sbin/crictl, then finds /usr/bin/crictl: every run.
        let mut h = Harness::new();
        for tgid in 0..10u32 {
            let miss = Event::ExecFailed(ExecFailed {
                task: task(tgid, "cron"),
                filename: "/usr/local/sbin/crictl".into(),
                filename_truncated: false,
                errno: libc::ENOENT,
                syscall: "execve",
            });
            assert!(h.feed(miss, &host(), tgid as u64).is_empty());
            assert!(h.feed(exec(tgid, "/usr/bin/crictl"), &host(), tgid as u64).is_empty());
            assert!(h.feed(exit(tgid, ExitStatus::Exited { code: 0 }), &host(), tgid as u64).is_empty());
        }
    }

    /// A failure storm: the finding opens at the threshold, then is reported at most once per
    /// `refresh` with the count of the moment, however many failures come in between.
    #[test]
    fn an_open_loop_is_reported_again_at_most_once_per_refresh() {
        let mut detector = LoopDetector::new(LoopConfig { refresh: Duration::from_secs(1), ..LoopConfig::default() });
        let facts = NodeFacts::default();
        let t0 = Instant::now();
        let refused = |tgid| {
            Event::Connect(Connect {
                task: task(tgid, "kubelet"),
                address: SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port: 6443 },
                errno: libc::ECONNREFUSED,
                asynchronous: true,
            })
        };
        let mut reports = Vec::new();
        for i in 0..250u64 {
            // Every 10 ms for 2.5 s.
            let at = t0 + Duration::from_millis(10 * i);
            for finding in detector.observe(&refused(i as u32), None, &host(), &facts, at) {
                reports.push((i, finding.title));
            }
        }
        let at: Vec<u64> = reports.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, [2, 102, 202], "opened at the third failure, then once a second");
        assert!(reports[0].1.contains(": 3 failed connects in 5m"), "{}", reports[0].1);
        assert!(
            reports[1].1.contains(": at least 64 failed connects in 5m"),
            "past the times kept, a bound: {}",
            reports[1].1
        );
    }

    #[test]
    fn connect_failures_to_a_runtime_socket_name_the_configured_endpoint() {
        let mut h = Harness::new();
        h.facts.runtime_endpoint = Some("unix:///run/containerd/containerd.sock".into());
        let connect = |tgid| {
            Event::Connect(Connect {
                task: task(tgid, "kubekey"),
                address: SocketAddress::Unix { path: "/var/run/cri-dockerd.sock".into(), is_abstract: false },
                errno: libc::ENOENT,
                asynchronous: false,
            })
        };
        h.feed(connect(1), &host(), 0);
        h.feed(connect(2), &host(), 1);
        let findings = h.feed(connect(3), &host(), 2);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "connect-failure-loop");
        assert!(findings[0].remediation.starts_with("Runtime endpoint mismatch"), "{}", findings[0].remediation);
        // Connects to other sockets are not this detector's business.
        let other = Event::Connect(Connect {
            task: task(9, "curl"),
            address: SocketAddress::Unix { path: "/var/run/nscd/socket".into(), is_abstract: false },
            errno: libc::ENOENT,
            asynchronous: false,
        });
        for at in 0..10 {
            assert!(h.feed(other.clone(), &host(), at).is_empty());
        }
    }
}
