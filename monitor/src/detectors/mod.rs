//! Detectors: turn attributed events into deaths and findings. Each detector is a small state
//! machine fed one event at a time, with the time it arrived; none does I/O, so each is
//! tested with scripted event sequences. The daemon records their findings in the store, which
//! closes them after a quiet period.
//!
//! - [`kills`]: how each process died (exit code, OOM killer, named sender, kernel fault).
//! - [`loops`]: restart loops of containers and host services, repeated failed execs of the
//!   same binary, repeated failed connects to runtime sockets and the API server.
//! - [`control_plane_oom`]: OOM kills of control-plane pods and node daemons, by the limit the
//!   kernel killed at: the node's (joined with the audit's reservation findings) or their own.
//! - [`memory_cgroups`]: the kernel's own counts of the workloads' memory cgroups, read
//!   periodically: OOM kills the probes missed, memory pressure of the control plane.

pub mod control_plane_oom;
pub mod kills;
pub mod loops;
pub mod memory_cgroups;
pub mod metrics;

use std::{
    sync::{Arc, LazyLock},
    time::Instant,
};

use crate::{
    attribution::{Owner, OwnerKind},
    audit::{AuditReport, rules as audit_rules},
    node::{cri_facts::ApiAnswer, runtimes},
    events::Event,
    findings::{Finding, Rule},
};

/// Whose event it is, as the detectors need it: a stable key (the same container of the same
/// pod across re-creations; the same host service), what to call it, and whether it is part
/// of the node's control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Stable across restarts: `pod:kube-system/kube-apiserver-node1/kube-apiserver`,
    /// `service:containerd.service`, `process:<comm>`.
    pub key: Arc<str>,
    /// What an operator calls it: `kube-system/kube-apiserver-node1 (container kube-apiserver)`.
    pub display: Arc<str>,
    pub kind: ActorKind,
    /// The instance: container id, or empty for host processes (each exec is a run).
    pub instance: Arc<str>,
    /// A static pod (kubelet manifest) or a node daemon (kubelet, containerd, ...).
    pub control_plane: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Container,
    HostService,
    HostProcess,
}

impl Actor {
    /// What the detectors need of an event's owner (from attribution). Runs for every event:
    /// a container's or a unit's names are the owner's, shared, not copied.
    pub fn of(owner: &Owner, event: &Event) -> Self {
        match &owner.kind {
            OwnerKind::Container(c) => Self {
                key: owner.stable_key().clone(),
                display: owner.display().clone(),
                kind: ActorKind::Container,
                instance: c.id.shared(),
                control_plane: c.pod.as_ref().is_some_and(|p| p.static_pod),
            },
            OwnerKind::HostService { unit, .. } => Self {
                key: owner.stable_key().clone(),
                display: owner.display().clone(),
                kind: ActorKind::HostService,
                instance: no_instance(),
                control_plane: runtimes::is_node_unit(unit),
            },
            // A process of a pod's own cgroup, of the host outside any unit, or unknown: a host
            // process keyed by its command.
            OwnerKind::Pod(_) | OwnerKind::Host | OwnerKind::Unknown { .. } => {
                let comm = &event.task().comm;
                Self {
                    key: format!("process:{comm}").into(),
                    display: format!("host process {comm}").into(),
                    kind: ActorKind::HostProcess,
                    instance: no_instance(),
                    control_plane: false,
                }
            }
        }
    }
}

/// The instance of an actor that has none, shared: `Arc::from("")` would allocate per event.
fn no_instance() -> Arc<str> {
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// What the detectors know of the node's configuration, from the latest audit, to name causes.
#[derive(Clone, Debug, Default)]
pub struct AuditContext {
    /// kubelet's runtime endpoint, e.g. `unix:///run/containerd/containerd.sock`.
    pub runtime_endpoint: Option<String>,
    /// The audit's open findings about memory reservations, limits and requests.
    pub memory_findings: Vec<Finding>,
    /// The audit's open findings that explain sandbox churn (cgroup driver, sandbox image).
    pub churn_findings: Vec<Finding>,
    /// Runtime sockets that answered CRI v1 with Unimplemented, and what they serve instead:
    /// a client seen connecting there and dying is a v1 client on a socket without v1.
    pub sockets_without_cri_v1: Vec<(String, String)>,
}

/// Every rule the detectors can raise.
pub fn rules() -> Vec<Rule> {
    let mut all = loops::RULES.to_vec();
    all.push(control_plane_oom::MEMORY_RESERVATIONS);
    all.push(control_plane_oom::MEMORY_LIMIT_OOM_KILL);
    all.push(memory_cgroups::CONTROL_PLANE_MEMORY_PRESSURE);
    all
}

/// Audit rules whose findings explain OOM kills of the control plane.
const MEMORY_RULES: [Rule; 4] = [
    audit_rules::MEMORY_RESERVATION_MISSING,
    audit_rules::MEMORY_RESERVATION_IMPLAUSIBLE,
    audit_rules::EVICTION_HARD_MISSING,
    audit_rules::STATIC_POD_NO_MEMORY_REQUEST,
];
/// Audit rules whose findings explain kubelet or the runtime killing sandboxes.
const CHURN_RULES: [Rule; 4] = [
    audit_rules::CGROUP_DRIVER_MISMATCH,
    audit_rules::SANDBOX_IMAGE_MISMATCH,
    audit_rules::CONTAINERD_TABLES_IGNORED,
    audit_rules::CONTAINERD_VERSION_UNSUPPORTED,
];

impl AuditContext {
    /// What the detectors need of an audit report.
    pub fn from_audit(report: &AuditReport) -> Self {
        let pick = |rules: &[Rule]| report.findings.iter().filter(|f| rules.iter().any(|r| r.id == f.rule)).cloned().collect();
        Self {
            runtime_endpoint: report.snapshot.runtime_endpoint(),
            memory_findings: pick(&MEMORY_RULES),
            churn_findings: pick(&CHURN_RULES),
            sockets_without_cri_v1: report
                .snapshot
                .cri
                .sockets
                .iter()
                .filter(|s| s.exists && matches!(s.v1, ApiAnswer::Unimplemented { .. }))
                .map(|s| {
                    let serves = match s.runtime() {
                        Some(r) => format!("serves CRI v1alpha2 only ({} {})", r.runtime_name, r.runtime_version),
                        None => "serves no CRI API".to_string(),
                    };
                    (s.endpoint.display().to_string(), serves)
                })
                .collect(),
        }
    }
}

/// Every detector, fed in order.
#[derive(Debug, Default)]
pub struct Detectors {
    pub kills: kills::KillLedger,
    pub loops: loops::LoopDetector,
    pub control_plane_oom: control_plane_oom::ControlPlaneOomDetector,
}

impl Detectors {
    pub fn new(config: loops::LoopConfig) -> Self {
        Self {
            kills: kills::KillLedger::default(),
            control_plane_oom: control_plane_oom::ControlPlaneOomDetector::new(config.container_window),
            loops: loops::LoopDetector::new(config),
        }
    }

    /// Entries the detectors forgot so far to make room (see [`loops::LoopDetector::forgotten`]).
    pub fn forgotten(&self) -> u64 {
        self.loops.forgotten()
    }

    /// Feeds one event of `actor`; returns the death it completes (exits) and the findings
    /// it opens or refreshes. `other` is attribution's other owner of the event (a signal's
    /// sender's, the owner of the memory cgroup an OOM kill was at).
    pub fn observe(
        &mut self,
        event: &Event,
        actor: &Actor,
        other: Option<&Owner>,
        facts: &AuditContext,
        now: Instant,
    ) -> (Option<kills::Death>, Vec<Finding>) {
        let death = self.kills.observe(event, other);
        let mut findings = self.loops.observe(event, death.as_ref(), actor, facts, now);
        findings.extend(self.control_plane_oom.observe(event, actor, other, facts, now));
        (death, findings)
    }
}
