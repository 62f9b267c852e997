//! How each process died, as the kernel proved it: a normal exit with its code, the OOM
//! killer (an `oom:mark_victim` event for that process), a named sender (the task that was
//! current when the fatal signal was generated: kubelet, a runtime shim, runc, systemd, a
//! user's `kill`), or the kernel for a fault. Exit code 137 alone proves nothing: without an
//! OOM event for the process, a SIGKILL is never called an OOM kill.
//!
//! The ledger joins events that arrive in kernel order (OOM event, then the signal, then the
//! exit) through a bounded table of recent OOM victims and fatal signals keyed by process.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt as _};
use serde::Serialize;

use crate::{
    attribution::{Owner, OwnerKind},
    events::{Event, Exit, ExitStatus, OomConstraint},
    node::{
        cgroup_path::{self, CgroupOwner},
        runtimes::{self, RuntimeBinary},
    },
};

/// systemd's own executables (the manager, PID 1 or a user's, and its shutdown program).
const SYSTEMD_BINARIES: [&str; 2] = ["systemd", "systemd-shutdown"];

/// Whether a cgroup path is a runtime's per-container monitor's own scope (CRI-O's conmon).
fn is_monitor_scope(path: &str) -> bool {
    matches!(cgroup_path::parse(path), CgroupOwner::Container(c) if c.monitor)
}

/// Who sent a fatal signal, folded to a small set (bounded metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderClass {
    Kubelet,
    ContainerdShim,
    Containerd,
    Runc,
    Crio,
    Dockerd,
    Systemd,
    /// A process of the same container or service (e.g. a supervisor, a shell's `kill`).
    Other,
}

impl SenderClass {
    /// The class of a sender, from what the kernel says of it: its cgroup (`owner`, as
    /// attribution named it) and its executable's file name (`exe`). A process counts as
    /// kubelet or a runtime only in that daemon's systemd unit (or, for a shim, its runtime's
    /// unit or its own scope, as containerd and CRI-O place them) and running that daemon's
    /// binary; a comm proves nothing (any process may call itself `containerd-shim`).
    pub fn of(owner: Option<&Owner>, exe: &str) -> Self {
        let Some(owner) = owner else { return Self::Other };
        match &owner.kind {
            OwnerKind::HostService { unit, .. } if runtimes::kubelet().units.contains(&unit.as_str()) => {
                if runtimes::kubelet().binaries.contains(&exe) { Self::Kubelet } else { Self::Other }
            }
            OwnerKind::HostService { unit, .. } if runtimes::runtime_of_unit(unit).is_some() => {
                runtimes::runtime_binary(exe).map_or(Self::Other, Self::of_runtime_binary)
            }
            // A shim in its own scope (CRI-O's `crio-conmon-<id>.scope`): its runtime's shim only.
            OwnerKind::Container(_) if owner.cgroup_path.as_deref().is_some_and(is_monitor_scope) => {
                match runtimes::runtime_binary(exe) {
                    Some(binary @ RuntimeBinary::Shim(_)) => Self::of_runtime_binary(binary),
                    _ => Self::Other,
                }
            }
            // systemd itself: PID 1 in the root cgroup or init.scope, a user's manager in its unit.
            OwnerKind::Host if SYSTEMD_BINARIES.contains(&exe) => Self::Systemd,
            OwnerKind::HostService { unit, .. } if unit.starts_with("user@") && SYSTEMD_BINARIES.contains(&exe) => {
                Self::Systemd
            }
            _ => Self::Other,
        }
    }

    /// The class of a runtime's binary (the table in `node::runtimes`).
    fn of_runtime_binary(binary: RuntimeBinary) -> Self {
        match binary {
            RuntimeBinary::Oci => Self::Runc,
            RuntimeBinary::Shim(runtime) | RuntimeBinary::Daemon(runtime) if runtime.cri_name == "cri-o" => Self::Crio,
            RuntimeBinary::Shim(_) => Self::ContainerdShim,
            RuntimeBinary::Daemon(runtime) if runtime.cri_name == "docker" => Self::Dockerd,
            RuntimeBinary::Daemon(_) => Self::Containerd,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubelet => "kubelet",
            Self::ContainerdShim => "containerd_shim",
            Self::Containerd => "containerd",
            Self::Runc => "runc",
            Self::Crio => "crio",
            Self::Dockerd => "dockerd",
            Self::Systemd => "systemd",
            Self::Other => "other",
        }
    }

    /// Whether this sender is the kubelet or the container runtime (kills that mean the
    /// node's control loop tore the container down, not that the workload failed on its own).
    pub fn is_runtime_or_kubelet(self) -> bool {
        matches!(self, Self::Kubelet | Self::ContainerdShim | Self::Containerd | Self::Runc | Self::Crio | Self::Dockerd)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sender {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    /// Its executable's file name (what it runs, unlike the comm it may set).
    pub exe: String,
    pub class: SenderClass,
    pub cgroup_id: u64,
}

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum DeathCause {
    /// It exited by itself.
    Exited { code: u8 },
    /// The OOM killer chose it (the kernel's `mark_victim` event names it).
    OomKilled { trigger_comm: String, trigger_pid: u32, anon_rss_pages: u64, constraint: OomConstraint },
    /// Another process sent the fatal signal.
    Killed { signal: u8, sender: Sender },
    /// The kernel raised the signal for a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE) or itself.
    Fault { signal: u8 },
    /// Killed by a signal whose origin we did not see (e.g. the signal probe is off).
    Signaled { signal: u8 },
}

impl DeathCause {
    /// Bounded label for metrics: `exit`, `oom`, `signal`, `fault`, `unknown_signal`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exit",
            Self::OomKilled { .. } => "oom",
            Self::Killed { .. } => "signal",
            Self::Fault { .. } => "fault",
            Self::Signaled { .. } => "unknown_signal",
        }
    }

    /// OOM constraint label: `memory_cgroup`, `global`, `unknown`; empty for other causes.
    pub fn constraint_label(&self) -> &'static str {
        match self {
            Self::OomKilled { constraint, .. } => constraint.as_str(),
            _ => "",
        }
    }

    /// Sender class label (`none` when no process sent it).
    pub fn sender_label(&self) -> &'static str {
        match self {
            Self::Killed { sender, .. } => sender.class.as_str(),
            Self::OomKilled { .. } | Self::Fault { .. } => "kernel",
            _ => "none",
        }
    }
}

impl std::fmt::Display for DeathCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with code {code}"),
            Self::OomKilled { trigger_comm, constraint: OomConstraint::Unknown, .. } => {
                write!(f, "killed by the OOM killer (allocation by {trigger_comm})")
            }
            Self::OomKilled { trigger_comm, constraint, .. } => {
                write!(f, "killed by the OOM killer: {constraint} (allocation by {trigger_comm})")
            }
            Self::Killed { signal, sender } if sender.exe == sender.comm || sender.exe.is_empty() => write!(
                f,
                "killed by {} from {} (pid {}, {})",
                crate::events::signal_name(*signal as u32),
                sender.comm,
                sender.tgid,
                sender.class.as_str()
            ),
            Self::Killed { signal, sender } => write!(
                f,
                "killed by {} from {} (executable {}, pid {}, {})",
                crate::events::signal_name(*signal as u32),
                sender.comm,
                sender.exe,
                sender.tgid,
                sender.class.as_str()
            ),
            Self::Fault { signal } => write!(f, "killed by the kernel: {}", crate::events::signal_name(*signal as u32)),
            Self::Signaled { signal } => {
                write!(f, "killed by {} (sender not observed)", crate::events::signal_name(*signal as u32))
            }
        }
    }
}

/// A process's end with its cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Death {
    pub exit: Exit,
    pub cause: DeathCause,
}

#[derive(Clone, Debug)]
enum Mark {
    Oom { trigger_comm: String, trigger_pid: u32, anon_rss_pages: u64, constraint: OomConstraint },
    Signal { signal: u32, from_kernel: bool, sender: Sender },
}

/// Recent OOM victims and fatal signals, by target process; bounded.
#[derive(Debug)]
pub struct KillLedger {
    marks: HashMap<u32, Vec<Mark>>,
    order: VecDeque<u32>,
    capacity: usize,
}

impl Default for KillLedger {
    fn default() -> Self {
        Self::with_capacity(16_384)
    }
}

impl KillLedger {
    /// Keeps marks for at most `capacity` processes (oldest forgotten first).
    pub fn with_capacity(capacity: usize) -> Self {
        Self { marks: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    fn remember(&mut self, tgid: u32, mark: Mark) {
        if !self.marks.contains_key(&tgid) {
            while self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.marks.remove(&old);
                }
            }
            self.order.push_back(tgid);
        }
        let marks = self.marks.entry(tgid).or_default();
        if marks.len() < 8 {
            marks.push(mark);
        }
    }

    fn take(&mut self, tgid: u32) -> Vec<Mark> {
        let marks = self.marks.remove(&tgid).unwrap_or_default();
        if !marks.is_empty() {
            self.order.retain(|t| *t != tgid);
        }
        marks
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// Feeds one event; returns the death it completes (for exit events). `other` is
    /// attribution's other owner of the event: for a signal, the sender's.
    pub fn observe(&mut self, event: &Event, other: Option<&Owner>) -> Option<Death> {
        match event {
            Event::OomKill(oom) => {
                self.remember(
                    oom.task.tgid,
                    Mark::Oom {
                        trigger_comm: oom.trigger_comm.clone(),
                        trigger_pid: oom.trigger_tgid,
                        anon_rss_pages: oom.anon_rss_pages,
                        constraint: oom.constraint,
                    },
                );
                None
            }
            Event::Signal(signal) => {
                let sender = Sender {
                    pid: signal.sender_pid,
                    tgid: signal.sender_tgid,
                    comm: signal.sender_comm.clone(),
                    exe: signal.sender_exe.clone(),
                    class: SenderClass::of(other, &signal.sender_exe),
                    cgroup_id: signal.sender_cgroup_id,
                };
                self.remember(signal.task.tgid, Mark::Signal { signal: signal.signal, from_kernel: signal.from_kernel, sender });
                None
            }
            Event::Exit(exit) => {
                let marks = self.take(exit.task.tgid);
                Some(Death { exit: exit.clone(), cause: cause_of(exit.status, &marks) })
            }
            _ => None,
        }
    }
}

fn cause_of(status: ExitStatus, marks: &[Mark]) -> DeathCause {
    let signal = match status {
        ExitStatus::Exited { code } => return DeathCause::Exited { code },
        ExitStatus::Signaled { signal, .. } => signal,
    };
    // The OOM killer's SIGKILL: only with the kernel's OOM event for this very process.
    if signal == libc::SIGKILL as u8
        && let Some(Mark::Oom { trigger_comm, trigger_pid, anon_rss_pages, constraint }) =
            marks.iter().find(|m| matches!(m, Mark::Oom { .. }))
        {
            return DeathCause::OomKilled {
                trigger_comm: trigger_comm.clone(),
                trigger_pid: *trigger_pid,
                anon_rss_pages: *anon_rss_pages,
                constraint: *constraint,
            };
        }
    // The signal that killed it: the last generated one with that number.
    let matching = marks.iter().rev().find_map(|m| match m {
        Mark::Signal { signal: s, from_kernel, sender } if *s == signal as u32 => Some((*from_kernel, sender)),
        _ => None,
    });
    match matching {
        Some((true, _)) => DeathCause::Fault { signal },
        Some((false, sender)) => DeathCause::Killed { signal, sender: sender.clone() },
        None => DeathCause::Signaled { signal },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::{OomKill, Signal, Task};

    fn task(tgid: u32) -> Task {
        Task { pid: tgid, tgid, ppid: 1, uid: 0, cgroup_id: 9, memcg_id: 0, start_ns: 0, comm: "kube-apiserver".into() }
    }

    fn exit(tgid: u32, status: ExitStatus) -> Event {
        Event::Exit(Exit { task: task(tgid), status, lifetime: Duration::from_secs(3) })
    }

    fn signal(tgid: u32, sig: u32, from_kernel: bool, sender: &str) -> Event {
        signal_from(tgid, sig, from_kernel, sender, sender)
    }

    fn signal_from(tgid: u32, sig: u32, from_kernel: bool, comm: &str, exe: &str) -> Event {
        Event::Signal(Box::new(Signal {
            task: task(tgid),
            signal: sig,
            code: if from_kernel { 0x80 } else { 0 },
            from_kernel,
            group: true,
            sender_pid: 77,
            sender_tgid: 77,
            sender_comm: comm.into(),
            sender_exe: exe.into(),
            sender_cgroup_id: 1,
            sender_memcg_id: 0,
        }))
    }

    fn oom(tgid: u32) -> Event {
        Event::OomKill(Box::new(OomKill {
            task: task(tgid),
            constraint: OomConstraint::Global,
            trigger_pid: tgid,
            trigger_tgid: tgid,
            trigger_comm: "kube-apiserver".into(),
            trigger_cgroup_id: 9,
            trigger_memcg_id: 0,
            total_vm_pages: 10,
            anon_rss_pages: 5,
            file_rss_pages: 0,
            shmem_rss_pages: 0,
            oom_score_adj: -997,
            limit: None,
        }))
    }

    const KILLED: ExitStatus = ExitStatus::Signaled { signal: 9, core_dumped: false };

    #[test]
    fn sigkill_is_oom_only_with_the_kernels_oom_event() {
        let mut ledger = KillLedger::default();
        assert_eq!(ledger.observe(&oom(10), None), None);
        assert_eq!(ledger.observe(&signal(10, 9, true, "kube-apiserver"), None), None);
        let death = ledger.observe(&exit(10, KILLED), None).expect("a death");
        assert_eq!(death.cause.label(), "oom");
        assert_eq!(death.cause.constraint_label(), "global");
        assert_eq!(death.cause.to_string(), "killed by the OOM killer: the node ran out of memory (allocation by kube-apiserver)");

        // The same 137 without an OOM event: a kill by the runtime's shim, in containerd's unit.
        let containerd = unit("containerd.service");
        ledger.observe(&signal(11, 9, false, "containerd-shim-runc-v2"), Some(&containerd));
        let death = ledger.observe(&exit(11, KILLED), None).expect("a death");
        assert_eq!(death.cause.label(), "signal");
        assert_eq!(death.cause.sender_label(), "containerd_shim");
        assert!(death.cause.to_string().contains("SIGKILL from containerd-shim-runc-v2 (pid 77, containerd_shim)"), "{}", death.cause);

        // And with no signal seen at all: never guessed.
        let death = ledger.observe(&exit(12, KILLED), None).expect("a death");
        assert_eq!(death.cause, DeathCause::Signaled { signal: 9 });
        assert!(ledger.is_empty(), "marks are consumed by the exit");
    }

    #[test]
    fn faults_and_plain_exits() {
        let mut ledger = KillLedger::default();
        ledger.observe(&signal(20, 11, true, "crashy"), None);
        let death = ledger.observe(&exit(20, ExitStatus::Signaled { signal: 11, core_dumped: true }), None).expect("death");
        assert_eq!(death.cause, DeathCause::Fault { signal: 11 });
        let death = ledger.observe(&exit(21, ExitStatus::Exited { code: 1 }), None).expect("death");
        assert_eq!(death.cause, DeathCause::Exited { code: 1 });
    }

    #[test]
    fn ledger_is_bounded() {
        let mut ledger = KillLedger::with_capacity(100);
        for tgid in 0..10_000 {
            ledger.observe(&signal(tgid, 15, false, "kill"), None);
        }
        assert_eq!(ledger.len(), 100);
    }

    fn unit(unit: &str) -> Owner {
        let service = unit.split('.').next().unwrap_or(unit).to_string();
        Owner::new(OwnerKind::HostService { unit: unit.into(), service }, Some(format!("/system.slice/{unit}")))
    }

    #[test]
    fn a_sender_is_classed_by_its_unit_and_its_executable_not_its_comm() {
        let (kubelet, containerd, crio) = (unit("kubelet.service"), unit("containerd.service"), unit("crio.service"));
        assert_eq!(SenderClass::of(Some(&kubelet), "kubelet"), SenderClass::Kubelet);
        assert_eq!(SenderClass::of(Some(&containerd), "containerd"), SenderClass::Containerd);
        assert_eq!(SenderClass::of(Some(&containerd), "containerd-shim-runc-v2"), SenderClass::ContainerdShim);
        assert_eq!(SenderClass::of(Some(&containerd), "runc"), SenderClass::Runc);
        assert_eq!(SenderClass::of(Some(&crio), "crio"), SenderClass::Crio);
        assert_eq!(SenderClass::of(Some(&unit("docker.service")), "dockerd"), SenderClass::Dockerd);
        assert_eq!(SenderClass::of(Some(&unit("cri-docker.service")), "cri-dockerd"), SenderClass::Dockerd);
        // CRI-O's conmon in its own scope.
        let conmon_scope = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-conmon-47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251.scope";
        let cgroup_path::CgroupOwner::Container(parsed) = cgroup_path::parse(conmon_scope) else { panic!("a container path") };
        let conmon = Owner::new(
            OwnerKind::Container(crate::attribution::ContainerOwner {
                runtime: parsed.runtime,
                id: parsed.id,
                name: None,
                pod: None,
                sandbox: false,
                attempt: None,
            }),
            Some(conmon_scope.into()),
        );
        assert_eq!(SenderClass::of(Some(&conmon), "conmon"), SenderClass::Crio);
        assert_eq!(SenderClass::of(Some(&conmon), "containerd"), SenderClass::Other);
        // systemd: PID 1 on the host, or a user's manager.
        assert_eq!(SenderClass::of(Some(&Owner::new(OwnerKind::Host, Some("/init.scope".into()))), "systemd"), SenderClass::Systemd);
        assert_eq!(SenderClass::of(Some(&unit("user@1000.service")), "systemd"), SenderClass::Systemd);

        // The right binary in the wrong cgroup, the wrong binary in the right one, nothing known.
        let ordinary = unit("cron.service");
        assert_eq!(SenderClass::of(Some(&ordinary), "containerd-shim"), SenderClass::Other, "a copy named like a shim");
        assert_eq!(SenderClass::of(Some(&Owner::new(OwnerKind::Host, Some("/".into()))), "kubelet"), SenderClass::Other);
        assert_eq!(SenderClass::of(Some(&containerd), "python3"), SenderClass::Other, "renamed by prctl: the exe says python3");
        assert_eq!(SenderClass::of(Some(&kubelet), "bash"), SenderClass::Other, "a shell in kubelet's unit");
        assert_eq!(SenderClass::of(None, "kubelet"), SenderClass::Other, "no owner: no proof");
        assert!(SenderClass::Kubelet.is_runtime_or_kubelet());
        assert!(!SenderClass::Systemd.is_runtime_or_kubelet());
    }

    #[test]
    fn a_process_calling_itself_a_shim_is_other() {
        let mut ledger = KillLedger::default();
        // prctl(PR_SET_NAME, "containerd-shim") in an interpreter, in an ordinary service.
        ledger.observe(&signal_from(30, 9, false, "containerd-shim", "python3.11"), Some(&unit("cron.service")));
        let death = ledger.observe(&exit(30, KILLED), None).expect("a death");
        assert_eq!(death.cause.sender_label(), "other");
        assert!(death.cause.to_string().contains("from containerd-shim (executable python3.11, pid 77, other)"), "{}", death.cause);
    }
}
