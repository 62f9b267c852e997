//! Loops: the signature of a node that keeps failing the same way. This module holds the
//! [`LoopDetector`] that the daemon feeds, its thresholds ([`LoopConfig`]), the rules it can
//! raise, and the dispatch of each event to the loop detectors; what a loop is and what its
//! finding says are each detector's, and the windows and bounded maps they count in are in
//! `window`. It neither decodes nor attributes events: the actor and the death come with them.
//!
//! - `restart`: restart loops, the same container of the same pod re-created (a new container
//!   instance), or the same host service binary re-exec'd after failing, N times within a
//!   window. Each run keeps its exit (code, or signal and who sent it, or the OOM killer) and
//!   lifetime, and the runtime socket it connected to, if any: a client that connects to the
//!   runtime and dies within a second, again and again, is the shape of a CRI API version gap.
//! - `exec_failure`: exec-failure loops, the same binary failing to exec (ENOENT, EACCES...)
//!   for the same caller.
//! - `connect_failure`: connect-failure loops, the same client failing to reach a runtime
//!   socket or the API server.
//!
//! Defaults follow the cadences of the things that loop: kubelet's CrashLoopBackOff (10s,
//! doubling to 5m) gives three re-creations within about two minutes; systemd's `Restart=`
//! with `RestartSec=` of 100ms to 10s gives three failed runs within a minute.

mod connect_failure;
mod exec_failure;
mod restart;
mod window;

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt as _};

pub use self::{
    connect_failure::CONNECT_FAILURE_LOOP,
    exec_failure::EXEC_FAILURE_LOOP,
    restart::{CONTAINER_RESTART_LOOP, HOST_SERVICE_RESTART_LOOP, STATIC_POD_RESTART_LOOP},
};
pub(super) use self::window::secs;
use self::{
    restart::RunHistory,
    window::{Bounded, CallerSubjects, Occurrences},
};
use super::{Actor, ActorKind, AuditContext, kills::Death};
use crate::{
    events::{Event, ExecFailed, SocketAddress},
    findings::{Finding, Rule},
    node::runtimes,
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

/// Whether a binary is the node's runtime, control plane or installer (followed for restart
/// loops even when no systemd unit runs it; the list is `node::runtimes`').
pub fn is_node_daemon(filename: &str) -> bool {
    runtimes::is_node_daemon(filename.rsplit('/').next().unwrap_or(filename))
}

/// Whether a connect target is a runtime's socket or a control-plane port.
pub fn is_control_endpoint(address: &SocketAddress) -> bool {
    match address {
        SocketAddress::Unix { path, .. } => runtimes::is_runtime_socket_path(path),
        SocketAddress::Inet { port, .. } => runtimes::is_control_plane_port(*port),
        SocketAddress::Other { .. } => false,
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
    tentative: HashMap<u32, Vec<(ExecFailed, Actor)>>,
    connect_failures: Bounded<Occurrences>,
    /// The paths and addresses each caller has failure findings about (capped per caller).
    failing_subjects: CallerSubjects,
    /// Processes dropped from `running` and `tentative` when they were full.
    dropped: u64,
}

impl Default for LoopDetector {
    fn default() -> Self {
        Self::new(LoopConfig::default())
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
            failing_subjects: CallerSubjects::new(cap),
            dropped: 0,
        }
    }

    /// Number of processes whose run is being followed (bounded by `max_tracked` keys).
    pub fn tracked_runs(&self) -> usize {
        self.running.len()
    }

    /// Entries of the detector's tables forgotten so far to make room (each table keeps
    /// `max_tracked`): a flood of distinct paths, addresses or processes can push out a real
    /// loop's history before it reaches its count, and that must show.
    pub fn forgotten(&self) -> u64 {
        self.histories.evicted()
            + self.exec_failures.evicted()
            + self.connect_failures.evicted()
            + self.failing_subjects.evicted()
            + self.dropped
    }

    pub fn observe(
        &mut self,
        event: &Event,
        death: Option<&Death>,
        actor: &Actor,
        facts: &AuditContext,
        now: Instant,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        match event {
            Event::Exec(exec) => {
                findings.extend(self.settle_tentative(exec.task.tgid, Some(&exec.filename), now));
                self.start_run(exec.task.tgid, &exec.filename, actor);
            }
            Event::Exit(exit) => findings.extend(self.settle_tentative(exit.task.tgid, None, now)),
            Event::Connect(connect) if connect.errno == 0 => {
                if is_control_endpoint(&connect.address) {
                    self.note_connect(connect.task.tgid, connect.address.to_string());
                }
            }
            // A non-blocking connect whose outcome the kernel side could not tell (the TCP
            // state program down, or its entry evicted): neither a success nor a failure.
            Event::Connect(connect) if connect.errno == libc::EINPROGRESS => {}
            Event::Connect(connect) => findings.extend(self.connect_failure(connect, actor, facts, now)),
            Event::OomKill(oom) if actor.kind == ActorKind::Container => self.note_oom_inside(oom, actor),
            Event::ExecFailed(failed) if failed.errno == libc::ENOENT => self.hold_tentative(failed, actor),
            Event::ExecFailed(failed) => findings.extend(self.exec_failure(failed, actor, now)),
            _ => {}
        }
        if let Some(death) = death {
            findings.extend(self.end_run(death, actor, facts, now));
        }
        findings
    }
}

/// What the loop detectors' tests share: tasks and events, a host process, and a harness that
/// feeds events through the kill ledger into a [`LoopDetector`] at seconds after its start.
#[cfg(test)]
pub(super) mod test_support {
    use std::time::{Duration, Instant};

    use super::LoopDetector;
    use crate::{
        detectors::{Actor, ActorKind, AuditContext, kills::KillLedger},
        events::{Event, Exec, Exit, ExitStatus, Task},
        findings::Finding,
    };

    pub(crate) fn task(tgid: u32, comm: &str) -> Task {
        Task { pid: tgid, tgid, ppid: 1, uid: 0, cgroup_id: 5, memcg_id: 0, start_ns: 0, comm: comm.into() }
    }

    pub(crate) fn host() -> Actor {
        Actor {
            key: "process:bash".into(),
            display: "host process bash".into(),
            kind: ActorKind::HostProcess,
            instance: "".into(),
            control_plane: false,
        }
    }

    pub(crate) struct Harness {
        pub(crate) detector: LoopDetector,
        pub(crate) ledger: KillLedger,
        pub(crate) facts: AuditContext,
        pub(crate) t0: Instant,
    }

    impl Harness {
        pub(crate) fn new() -> Self {
            Self { detector: LoopDetector::default(), ledger: KillLedger::default(), facts: AuditContext::default(), t0: Instant::now() }
        }

        pub(crate) fn feed(&mut self, event: Event, actor: &Actor, at_secs: u64) -> Vec<Finding> {
            self.feed_with(event, actor, None, at_secs)
        }

        /// [`Harness::feed`] with attribution's other owner (a signal's sender's).
        pub(crate) fn feed_with(&mut self, event: Event, actor: &Actor, other: Option<&crate::attribution::Owner>, at_secs: u64) -> Vec<Finding> {
            let death = self.ledger.observe(&event, other);
            self.detector.observe(&event, death.as_ref(), actor, &self.facts, self.t0 + Duration::from_secs(at_secs))
        }
    }

    pub(crate) fn exec(tgid: u32, filename: &str) -> Event {
        Event::Exec(Exec { task: task(tgid, "x"), filename: filename.into(), filename_truncated: false })
    }

    pub(crate) fn exit(tgid: u32, status: ExitStatus) -> Event {
        Event::Exit(Exit { task: task(tgid, "x"), status, lifetime: Duration::from_millis(900) })
    }
}
