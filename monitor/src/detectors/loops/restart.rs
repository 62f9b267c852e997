//! Restart loops: the same container of the same pod re-created (a new container instance),
//! or the same host service binary re-exec'd after failing, N times within a window. Each run
//! keeps its exit (code, or signal and who sent it, or the OOM killer), its lifetime, the
//! runtime socket it connected to and any OOM kill inside it; the finding names what most runs
//! died of and the audit's findings that explain it. It does not follow every host process:
//! outside containers and units only the node's own daemons are runs, and a host binary's
//! successful runs do not count.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{
    LoopDetector, is_node_daemon,
    window::{Reported, TruncateFront as _, secs},
};
use crate::{
    detectors::{
        Actor, ActorKind, AuditContext,
        kills::{Death, DeathCause},
    },
    events::OomKill,
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

#[derive(Clone, Debug)]
struct Run {
    tgid: u32,
    exec: String,
    ended: Option<(Instant, Death)>,
    connected_to: Option<String>,
    /// An OOM kill inside the container during this run (the victim need not be its init:
    /// a shell whose child was OOM-killed exits 137 by itself).
    oom_inside: Option<String>,
    /// The runtime's own code in the container before the command (see
    /// [`is_exec_of_open_file`]): the command's exec takes the run over; a failure of its own
    /// (the runtime could not start the container) ends it.
    bootstrap: bool,
}

impl Run {
    fn new(tgid: u32, exec: &str, bootstrap: bool) -> Self {
        Self { tgid, exec: exec.to_string(), ended: None, connected_to: None, oom_inside: None, bootstrap }
    }
}

#[derive(Debug, Default)]
pub(super) struct RunHistory {
    last_instance: String,
    runs: VecDeque<Run>,
    reported: Reported,
}

impl LoopDetector {
    fn run_key(actor: &Actor, filename: &str) -> String {
        match actor.kind {
            ActorKind::Container => actor.key.to_string(),
            ActorKind::HostService | ActorKind::HostProcess => {
                format!("{}|{filename}", actor.key)
            }
        }
    }

    pub(super) fn start_run(&mut self, tgid: u32, filename: &str, actor: &Actor) {
        // Outside containers and units, only the node's own daemons are followed: a script's
        // `grep` that exits 1 every minute is no restart loop.
        if actor.kind == ActorKind::HostProcess && !is_node_daemon(filename) {
            return;
        }
        // The runtime's bootstrap in the container's cgroup before the command runs: runc up
        // to 1.1 re-execs itself from a memfd as `/dev/fd/N`, and exits 0 once the command's
        // process is set up.
        let bootstrap = actor.kind == ActorKind::Container && is_exec_of_open_file(filename);
        let key = Self::run_key(actor, filename);
        let history = self.histories.entry(&key);
        if actor.kind == ActorKind::Container {
            // A container's run starts with the first exec in a new instance; the command's
            // exec takes over from the runtime's bootstrap.
            if *history.last_instance == *actor.instance {
                if let Some(run) = history.runs.back_mut().filter(|r| r.bootstrap && r.ended.is_none() && !bootstrap) {
                    self.running.remove(&run.tgid);
                    *run = Run::new(tgid, filename, false);
                    self.running.insert(tgid, key);
                }
                return;
            }
            history.last_instance = actor.instance.to_string();
        }
        history.runs.push_back(Run::new(tgid, filename, bootstrap));
        history.runs.truncate_front_to(16);
        if self.running.len() >= self.config.max_tracked * 4 {
            self.dropped += self.running.len() as u64;
            self.running.clear();
        }
        self.running.insert(tgid, key);
    }

    pub(super) fn note_connect(&mut self, tgid: u32, address: String) {
        let Some(key) = self.running.get(&tgid) else {
            return;
        };
        if let Some(history) = self.histories.get_mut(key)
            && let Some(run) = history.runs.iter_mut().rev().find(|r| r.tgid == tgid) {
                run.connected_to = Some(address);
            }
    }

    /// An OOM kill inside a container: marks the container's current run.
    pub(super) fn note_oom_inside(&mut self, oom: &OomKill, actor: &Actor) {
        if let Some(history) = self.histories.get_mut(&actor.key)
            && let Some(run) = history.runs.iter_mut().rev().find(|r| r.ended.is_none()) {
                run.oom_inside = Some(format!("{} (pid {})", oom.task.comm, oom.task.tgid));
            }
    }

    pub(super) fn end_run(&mut self, death: &Death, actor: &Actor, facts: &AuditContext, now: Instant) -> Option<Finding> {
        let tgid = death.exit.task.tgid;
        let key = self.running.remove(&tgid)?;
        let config = self.config.clone();
        let history = self.histories.get_mut(&key)?;
        let at = history.runs.iter().rposition(|r| r.tgid == tgid && r.ended.is_none())?;
        let failed = |death: &Death| !matches!(death.cause, DeathCause::Exited { code: 0 });
        // A process that moved into a container since its exec ended no run of the owner it
        // started in: runc's init, exec'd in the runtime's cgroup, exits in the container's. If it
        // failed there, before the command ran, the container failed to start: its run.
        if actor.kind == ActorKind::Container && Self::run_key(actor, &history.runs[at].exec) != key {
            let moved = history.runs.remove(at)?;
            if !failed(death) {
                return None;
            }
            self.start_run(tgid, &moved.exec, actor);
            return self.end_run(death, actor, facts, now);
        }
        let run = &mut history.runs[at];
        if run.bootstrap && !failed(death) {
            // The runtime's part is done; the command's exec takes the run over.
            return None;
        }
        run.ended = Some((now, death.clone()));

        let (threshold, window) = match actor.kind {
            ActorKind::Container => (config.container_restarts, config.container_window),
            _ => (config.host_failures, config.host_window),
        };
        // Containers: every re-creation counts (kubelet restarts completed ones too);
        // host binaries: only failed runs (a periodic job that succeeds is no loop).
        let is_recent = |r: &&Run| {
            r.ended.as_ref().is_some_and(|(at, d)| {
                now.duration_since(*at) <= window && (actor.kind == ActorKind::Container || failed(d))
            })
        };
        // Counted first: every exit of a followed process gets here, few make a finding.
        if history.runs.iter().filter(is_recent).count() < threshold || !history.reported.due(now, config.refresh) {
            return None;
        }
        let recent: Vec<&Run> = history.runs.iter().filter(is_recent).collect();
        Some(restart_finding(actor, &recent, window, facts))
    }
}

/// An exec of an open file descriptor (`fexecve`: the kernel names it `/dev/fd/N`, glibc
/// without `execveat` `/proc/self/fd/N`) or of the caller's own binary (`/proc/self/exe`): how
/// runtimes start their code inside a container. A container's command is a path in its image.
fn is_exec_of_open_file(filename: &str) -> bool {
    if filename.starts_with("/dev/fd/") {
        return true;
    }
    let Some(rest) = filename.strip_prefix("/proc/") else { return false };
    let (process, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let own = process == "self" || process == "thread-self" || (!process.is_empty() && process.bytes().all(|b| b.is_ascii_digit()));
    own && (rest == "exe" || rest.starts_with("fd/"))
}

fn restart_finding(actor: &Actor, runs: &[&Run], window: Duration, facts: &AuditContext) -> Finding {
    let rule = match (actor.kind, actor.control_plane) {
        (ActorKind::Container, true) => &STATIC_POD_RESTART_LOOP,
        (ActorKind::Container, false) => &CONTAINER_RESTART_LOOP,
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
    // The finding's subject: the container (namespace/pod/container), the unit, or the binary's path.
    let name = match actor.kind {
        ActorKind::HostProcess => runs.last().map(|r| r.exec.clone()).unwrap_or_default(),
        _ => actor.key.trim_start_matches("pod:").trim_start_matches("service:").to_string(),
    };
    let mut finding = Finding::new(
        rule,
        name,
        format!("{} restarted {} times in {}: {summary}", actor.display, runs.len(), secs(window)),
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
        // The audit asked that socket: name the API gap when it found one.
        let file_name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let connected: Vec<String> = runs.iter().filter_map(|r| r.connected_to.as_deref()).map(file_name).collect();
        let gaps: Vec<&(String, String)> =
            facts.sockets_without_cri_v1.iter().filter(|(socket, _)| connected.contains(&file_name(socket))).collect();
        for (socket, serves) in &gaps {
            finding = finding.evidence(format!("audit: unix://{socket} (runtime.v1 Version)"), format!("Unimplemented: {serves}"));
        }
        if gaps.is_empty() {
            "The process connects to the container runtime and exits within seconds: check that the runtime serves the CRI API version the client needs (runtime.v1) and the client's logs."
                .to_string()
        } else {
            "The process connects to a runtime socket that serves no CRI API version runtime.v1 and exits within seconds: a CRI v1 client (kruise-daemon >= 1.6, crictl >= 1.26) fails there with Unimplemented. Run a CRI v1 runtime (cri-dockerd >= 0.3 instead of dockershim, containerd with its CRI plugin enabled) or a client release that speaks the runtime's version."
                .to_string()
        }
    } else {
        "The process fails by itself: read its logs for the error; the exit codes above are what the kernel recorded."
            .to_string()
    };
    finding.remediation(remediation)
}

#[cfg(test)]
mod tests {
    use crate::{
        detectors::{
            Actor, ActorKind,
            loops::{EXEC_FAILURE_LOOP, test_support::*},
        },
        events::{Connect, Event, ExitStatus, Signal, SocketAddress},
        findings::Finding,
    };

    fn pod(instance: &str) -> Actor {
        Actor {
            key: "pod:kube-system/kube-apiserver-node1/kube-apiserver".into(),
            display: "kube-system/kube-apiserver-node1 (container kube-apiserver)".into(),
            kind: ActorKind::Container,
            instance: instance.into(),
            control_plane: true,
        }
    }

    /// containerd's unit, where runc runs and execs its init.
    fn containerd_unit() -> Actor {
        Actor {
            key: "service:containerd.service".into(),
            display: "host service containerd.service".into(),
            kind: ActorKind::HostService,
            instance: "".into(),
            control_plane: false,
        }
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
            sender_exe: sender.into(),
            sender_cgroup_id: 1,
            sender_memcg_id: 0,
        }))
    }

    const KILLED: ExitStatus = ExitStatus::Signaled { signal: 9, core_dumped: false };

    #[test]
    fn static_pod_killed_by_runtime_points_at_sandbox_churn() {
        let mut h = Harness::new();
        let containerd = crate::attribution::Owner::new(
            crate::attribution::OwnerKind::HostService { unit: "containerd.service".into(), service: "containerd".into() },
            Some("/system.slice/containerd.service".into()),
        );
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let tgid = 100 + run;
            let at = run as u64 * 30;
            let actor = pod(&format!("c{run}"));
            findings = h.feed(exec(tgid, "/usr/local/bin/kube-apiserver"), &actor, at);
            assert!(findings.is_empty());
            h.feed_with(kill_from(tgid, "containerd-shim-runc-v2"), &actor, Some(&containerd), at + 5);
            findings = h.feed(exit(tgid, KILLED), &actor, at + 5);
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
        assert!(f.evidence[0].detail.contains("SIGKILL from containerd-shim-runc-v2"), "{:?}", f.evidence[0]);
    }

    #[test]
    fn a_child_oom_killed_inside_the_container_makes_the_run_an_oom_run() {
        let mut h = Harness::new();
        h.facts.memory_findings = vec![Finding::new(&EXEC_FAILURE_LOOP, "kubelet", "no systemReserved")];
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let actor = pod(&format!("c{run}"));
            let (shell, tail) = (400 + run * 2, 401 + run * 2);
            h.feed(exec(shell, "/bin/sh"), &actor, run as u64 * 20);
            h.feed(exec(tail, "/bin/tail"), &actor, run as u64 * 20);
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
                limit: None,
            }));
            h.feed(oom, &actor, run as u64 * 20 + 1);
            // The shell exits 137 by itself: exit code, not a signal.
            findings = h.feed(exit(shell, ExitStatus::Exited { code: 137 }), &actor, run as u64 * 20 + 1);
        }
        assert_eq!(findings.len(), 1);
        assert!(findings[0].title.contains("OOM killer"), "{}", findings[0].title);
        assert!(findings[0].evidence[0].detail.contains("OOM killer killed tail"), "{:?}", findings[0].evidence[0]);
        assert!(findings[0].remediation.starts_with("Memory"), "{}", findings[0].remediation);
    }

    /// kruise-daemon on a v1alpha2-only runtime: connects (successfully), exits 255 at once.
    fn v1_client_loop(h: &mut Harness) -> Vec<Finding> {
        let daemon_pod = Actor { control_plane: false, key: "pod:kruise-system/kruise-daemon-x/daemon".into(), ..pod("") };
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let actor = Actor { instance: format!("c{run}").into(), ..daemon_pod.clone() };
            let tgid = 500 + run;
            h.feed(exec(tgid, "/kruise-daemon"), &actor, run as u64 * 10);
            let connect = Event::Connect(Connect {
                task: task(tgid, "kruise-daemon"),
                address: SocketAddress::Unix { path: "/hostvarrun/dockershim.sock".into(), is_abstract: false },
                errno: 0,
                asynchronous: false,
            });
            h.feed(connect, &actor, run as u64 * 10);
            findings = h.feed(exit(tgid, ExitStatus::Exited { code: 255 }), &actor, run as u64 * 10);
        }
        findings
    }

    #[test]
    fn a_client_that_connects_to_the_runtime_and_dies_points_at_the_cri_api_version() {
        let findings = v1_client_loop(&mut Harness::new());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "container-restart-loop");
        assert!(findings[0].evidence[0].detail.contains("connected to unix:/hostvarrun/dockershim.sock"), "{:?}", findings[0].evidence);
        assert!(findings[0].remediation.contains("CRI API version"), "{}", findings[0].remediation);
        assert!(!findings[0].evidence.iter().any(|e| e.source.starts_with("audit:")), "{:?}", findings[0].evidence);
    }

    #[test]
    fn the_audits_answer_of_that_socket_names_the_api_gap() {
        let mut h = Harness::new();
        h.facts.sockets_without_cri_v1 =
            vec![("/var/run/dockershim.sock".into(), "serves CRI v1alpha2 only (docker 20.10.24)".into())];
        let findings = v1_client_loop(&mut h);
        assert_eq!(findings.len(), 1);
        let audit = findings[0].evidence.iter().find(|e| e.source.starts_with("audit:")).expect("the audit's answer");
        assert_eq!(audit.source, "audit: unix:///var/run/dockershim.sock (runtime.v1 Version)");
        assert!(audit.detail.contains("v1alpha2 only"), "{audit:?}");
        assert!(findings[0].remediation.contains("serves no CRI API version runtime.v1"), "{}", findings[0].remediation);
    }

    #[test]
    fn other_processes_in_the_same_container_do_not_count_as_runs() {
        let mut h = Harness::new();
        let actor = pod("c1");
        h.feed(exec(1, "/pause"), &actor, 0);
        for tgid in 2..20 {
            h.feed(exec(tgid, "/bin/sh"), &actor, 1);
            assert!(h.feed(exit(tgid, ExitStatus::Exited { code: 1 }), &actor, 1).is_empty());
        }
    }

    /// runc up to 1.1: `runc init` re-execs itself from a memfd (`/dev/fd/6`), sometimes
    /// after runc has moved it into the container's cgroup; it exits 0 once the container's
    /// init is set up, and that init then execs the command. Each run is the command's exit.
    #[test]
    fn the_runtimes_bootstrap_in_the_container_is_not_its_run() {
        let mut h = Harness::new();
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let actor = Actor { control_plane: false, ..pod(&format!("c{run}")) };
            let (bootstrap, init) = (600 + run * 2, 601 + run * 2);
            let at = run as u64 * 10;
            h.feed(exec(bootstrap, "/dev/fd/6"), &actor, at);
            assert!(h.feed(exit(bootstrap, ExitStatus::Exited { code: 0 }), &actor, at).is_empty());
            h.feed(exec(init, "/bin/sh"), &actor, at + 1);
            findings = h.feed(exit(init, ExitStatus::Exited { code: 3 }), &actor, at + 1);
        }
        assert_eq!(findings.len(), 1, "three runs of the command");
        assert_eq!(findings[0].evidence.len(), 3);
        for line in &findings[0].evidence {
            assert!(line.detail.starts_with("/bin/sh pid ") && line.detail.contains("exited with code 3"), "{line:?}");
        }
    }

    /// runc's init exec'd while still in the runtime's cgroup (a run of its unit) and moved
    /// into the container before it exits 0: no run of the unit, none of the container.
    #[test]
    fn a_process_that_moved_into_a_container_ends_no_run_of_its_unit() {
        let mut h = Harness::new();
        let containerd = containerd_unit();
        let mut findings = Vec::new();
        for run in 0..3u32 {
            let actor = Actor { control_plane: false, ..pod(&format!("c{run}")) };
            let (bootstrap, init) = (700 + run * 2, 701 + run * 2);
            let at = run as u64 * 10;
            h.feed(exec(bootstrap, "/usr/sbin/runc"), &containerd, at);
            assert!(h.feed(exit(bootstrap, ExitStatus::Exited { code: 0 }), &actor, at).is_empty());
            h.feed(exec(init, "/bin/sh"), &actor, at + 1);
            findings.extend(h.feed(exit(init, ExitStatus::Exited { code: 3 }), &actor, at + 1));
        }
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].evidence.len(), 3);
        for line in &findings[0].evidence {
            assert!(line.detail.starts_with("/bin/sh pid ") && line.detail.contains("exited with code 3"), "{line:?}");
        }
        // The unit's failures still count when they end in the unit.
        for run in 0..3u32 {
            h.feed(exec(800 + run, "/usr/sbin/runc"), &containerd, 40 + run as u64);
            findings = h.feed(exit(800 + run, ExitStatus::Exited { code: 1 }), &containerd, 40 + run as u64);
        }
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "host-service-restart-loop");
        assert_eq!(findings[0].evidence.len(), 3);
    }

    /// runc's init failing before the command (a mount, seccomp or AppArmor error), in the
    /// container's cgroup or moved into it after its exec: the container failed to start, and
    /// each attempt is a run.
    #[test]
    fn a_runtime_that_fails_to_start_the_container_is_a_run_each_time() {
        let containerd = containerd_unit();
        for moved in [false, true] {
            let mut h = Harness::new();
            let mut findings = Vec::new();
            for run in 0..3u32 {
                let actor = Actor { control_plane: false, ..pod(&format!("c{run}")) };
                let bootstrap = 900 + run;
                h.feed(exec(bootstrap, "/dev/fd/6"), if moved { &containerd } else { &actor }, run as u64 * 10);
                findings = h.feed(exit(bootstrap, ExitStatus::Exited { code: 1 }), &actor, run as u64 * 10);
            }
            assert_eq!(findings.len(), 1, "moved {moved}: {findings:#?}");
            assert_eq!(findings[0].rule, "container-restart-loop");
            assert_eq!(findings[0].evidence.len(), 3, "moved {moved}");
            assert!(findings[0].evidence[0].detail.starts_with("/dev/fd/6 pid 900") && findings[0].evidence[0].detail.contains("code 1"), "{:?}", findings[0].evidence);
        }
    }

    #[test]
    fn execs_of_open_files_and_of_the_own_binary_are_told_from_paths_in_the_image() {
        for runtime in ["/dev/fd/6", "/dev/fd/12", "/proc/self/exe", "/proc/self/fd/5", "/proc/thread-self/fd/3", "/proc/4242/fd/7", "/proc/4242/exe"] {
            assert!(super::is_exec_of_open_file(runtime), "{runtime}");
        }
        for command in ["/bin/sh", "/proc", "/proc/self", "/proc/self/cwd/app", "/proc/x1/fd/3", "/proc//fd/3", "/dev/fdisk", "/app/dev/fd/6"] {
            assert!(!super::is_exec_of_open_file(command), "{command}");
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
}
