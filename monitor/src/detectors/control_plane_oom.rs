//! OOM kills of the node's own machinery (control-plane static pods, kubelet, the runtime),
//! diagnosed by the limit the kernel killed at: the node's (its memory is not reserved for its
//! machinery) or their own (they outgrew their limit).
//!
//! - the node's memory ran out (the kernel's "Out of memory", or kubelet's pods root, the
//!   node's allocatable memory for pods, reached its limit): the node's memory is not reserved
//!   for its machinery. One finding, `memory-reservations-misconfigured`, joins those kills
//!   with the audit's reservation and request findings: which kills, what is (not) reserved,
//!   which requests are missing, and what to set.
//! - its own limit (the container's, its pod's, its unit's) ran out: the node is not short of
//!   memory, that process outgrew its limit. `memory-limit-oom-kill`, per container or unit:
//!   which limit, the resident memory at the kill, how often, and to raise the limit or find
//!   the growth.
//!
//! Which limit it was comes with the event (the memory cgroup the kernel's counters showed at
//! its limit, named by attribution); whether a limit or the node ran out, from the kernel's
//! report of the kill. Kills older than the window are forgotten: they are no evidence of a
//! problem now. OOM kills of workloads are not this detector's business: the kill ledger and
//! the kill metrics count them.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Actor, ActorKind, AuditContext, loops::secs};
use crate::{
    attribution::Owner,
    events::{Event, OomConstraint, OomKill},
    findings::{Finding, Rule, Severity},
    node::{cgroup_path, memory},
};

pub const MEMORY_RESERVATIONS: Rule = Rule {
    id: "memory-reservations-misconfigured",
    severity: Severity::Critical,
    title: "The node ran out of memory and the OOM killer hit its control plane: memory is not reserved for it",
    description: "OOM kills of static pods, kubelet or the container runtime because the node's memory (or kubelet's pods root, its allocatable memory) ran out, joined with the audit's findings on systemReserved/kubeReserved, eviction thresholds and static pods' memory requests.",
};

pub const MEMORY_LIMIT_OOM_KILL: Rule = Rule {
    id: "memory-limit-oom-kill",
    severity: Severity::Warning,
    title: "The OOM killer killed a control-plane process at its own memory limit",
    description: "OOM kills of a static pod's container, kubelet or the container runtime at its own memory cgroup's limit (the container's, its pod's, its unit's), not because the node ran out: which limit, the resident memory at the kill, how many kills in the window.",
};

/// Kills kept, at most (the latest).
const MAX_KILLS: usize = 64;
/// Kills named in a finding's evidence, at most (the latest).
const MAX_EVIDENCE: usize = 10;

/// Whose limit an OOM kill was at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhoseLimit {
    /// The node's: its memory ran out (the kernel's "Out of memory"; or its report was not
    /// seen and no memory cgroup of the victim was at its limit).
    Node,
    /// kubelet's pods root or a QoS level below it: the node's memory allocatable to pods.
    Pods { cgroup: String, limit_bytes: u64 },
    /// The victim's own: its container's, its pod's, its unit's (`cgroup` and `limit_bytes`
    /// unknown when the cgroup at its limit could not be read or named).
    Own { cgroup: Option<String>, limit_bytes: Option<u64> },
}

impl WhoseLimit {
    /// From the kernel's report (`constraint`), the cgroup its counters showed at its limit
    /// (`oom.limit`) and that cgroup's owner, as attribution named it.
    pub fn of(oom: &OomKill, limit_owner: Option<&Owner>) -> Self {
        let page = memory::page_size();
        let path = limit_owner.and_then(|o| o.cgroup_path.clone());
        match (oom.constraint, oom.limit) {
            (OomConstraint::Global, _) | (OomConstraint::Unknown, None) => Self::Node,
            (_, Some(limit)) => {
                let limit_bytes = limit.max_pages.saturating_mul(page);
                match path {
                    Some(cgroup) if cgroup_path::is_pods_root(&cgroup) => Self::Pods { cgroup, limit_bytes },
                    cgroup => Self::Own { cgroup, limit_bytes: Some(limit_bytes) },
                }
            }
            (OomConstraint::MemoryCgroup, None) => Self::Own { cgroup: None, limit_bytes: None },
        }
    }

    fn node_ran_out(&self) -> bool {
        matches!(self, Self::Node | Self::Pods { .. })
    }
}

impl std::fmt::Display for WhoseLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node => f.write_str("the node ran out of memory"),
            Self::Pods { cgroup, limit_bytes } => {
                write!(f, "kubelet's pods root {cgroup} reached its limit of {} (the node's allocatable memory)", memory::human_bytes(*limit_bytes))
            }
            Self::Own { cgroup: Some(cgroup), limit_bytes: Some(bytes) } => {
                write!(f, "its memory cgroup {cgroup} reached its limit of {}", memory::human_bytes(*bytes))
            }
            Self::Own { limit_bytes: Some(bytes), .. } => write!(f, "its memory cgroup reached its limit of {}", memory::human_bytes(*bytes)),
            Self::Own { .. } => f.write_str("its memory cgroup's limit was reached"),
        }
    }
}

struct Kill {
    at: Instant,
    /// The actor's key and display.
    actor: Arc<str>,
    display: Arc<str>,
    whose: WhoseLimit,
    /// The evidence line.
    text: String,
}

#[derive(Debug)]
pub struct ControlPlaneOomDetector {
    /// Control-plane OOM kills within the window, oldest first.
    kills: VecDeque<Kill>,
    window: Duration,
}

impl std::fmt::Debug for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Default for ControlPlaneOomDetector {
    fn default() -> Self {
        Self::new(super::loops::LoopConfig::default().container_window)
    }
}

const RESERVE: &str = "Reserve memory for the node's daemons in the KubeletConfiguration (systemReserved.memory and kubeReserved.memory, e.g. 5-10% of the node's memory each), set evictionHard memory.available so kubelet evicts pods before the kernel OOM-kills, and give every control-plane static pod a memory request.";
const RAISE_LIMIT: &str = "The kernel killed it at its own memory cgroup's limit, not because the node ran out: raise that limit (resources.limits.memory in a static pod's manifest, MemoryMax= in a unit's drop-in) or find what makes it grow (its resident memory at each kill is in the evidence).";

impl ControlPlaneOomDetector {
    /// Kills count for `window` after they happened.
    pub fn new(window: Duration) -> Self {
        Self { kills: VecDeque::new(), window }
    }

    /// Feeds one event of `actor`; `limit_owner` is the owner of the memory cgroup an OOM kill
    /// was at (attribution's other owner of an OOM kill).
    pub fn observe(
        &mut self,
        event: &Event,
        actor: &Actor,
        limit_owner: Option<&Owner>,
        facts: &AuditContext,
        now: Instant,
    ) -> Option<Finding> {
        let Event::OomKill(oom) = event else { return None };
        if !actor.control_plane {
            return None;
        }
        while self.kills.front().is_some_and(|k| now.saturating_duration_since(k.at) > self.window) {
            self.kills.pop_front();
        }
        let whose = WhoseLimit::of(oom, limit_owner);
        let page = memory::page_size();
        let text = format!(
            "{} pid {} ({}) killed with {} resident ({} anonymous), oom_score_adj {}, allocation by {} (pid {}): {whose}",
            actor.display,
            oom.task.tgid,
            oom.task.comm,
            memory::human_bytes(oom.rss_pages().saturating_mul(page)),
            memory::human_bytes(oom.anon_rss_pages.saturating_mul(page)),
            oom.oom_score_adj,
            oom.trigger_comm,
            oom.trigger_tgid,
        );
        let node_ran_out = whose.node_ran_out();
        self.kills.push_back(Kill { at: now, actor: actor.key.clone(), display: actor.display.clone(), whose, text });
        while self.kills.len() > MAX_KILLS {
            self.kills.pop_front();
        }
        Some(if node_ran_out { self.reservations(facts) } else { self.own_limit(actor) })
    }

    /// The kills of the window where the node ran out, joined with the audit's findings.
    fn reservations(&self, facts: &AuditContext) -> Finding {
        let kills: Vec<&Kill> = self.kills.iter().filter(|k| k.whose.node_ran_out()).collect();
        let mut finding = Finding::new(
            &MEMORY_RESERVATIONS,
            "node",
            format!(
                "The OOM killer killed {} control-plane process(es) in {} because the node ran out of memory, latest {} ({}){}",
                kills.len(),
                secs(self.window),
                kills.last().map(|k| &*k.display).unwrap_or(""),
                kills.last().map(|k| k.whose.to_string()).unwrap_or_default(),
                if facts.memory_findings.is_empty() { "" } else { ": memory reservations are misconfigured" }
            ),
        );
        for kill in kills.iter().rev().take(MAX_EVIDENCE).rev() {
            finding = finding.evidence("kernel: oom:mark_victim, printk:console", kill.text.clone());
        }
        for f in &facts.memory_findings {
            for e in &f.evidence {
                finding = finding.evidence(format!("audit {}: {}", f.rule, e.source), e.detail.clone());
            }
            if f.evidence.is_empty() {
                finding = finding.evidence(format!("audit {}", f.rule), f.title.clone());
            }
        }
        finding.remediation(RESERVE)
    }

    /// The kills of `actor` at its own limit in the window.
    fn own_limit(&self, actor: &Actor) -> Finding {
        let kills: Vec<&Kill> = self.kills.iter().filter(|k| k.actor == actor.key && !k.whose.node_ran_out()).collect();
        let whose = kills.last().map(|k| k.whose.to_string()).unwrap_or_default();
        let mut finding = Finding::new(
            &MEMORY_LIMIT_OOM_KILL,
            subject(actor),
            format!("The OOM killer killed {} {} time(s) in {}: {whose}", actor.display, kills.len(), secs(self.window)),
        );
        for kill in kills.iter().rev().take(MAX_EVIDENCE).rev() {
            finding = finding.evidence("kernel: oom:mark_victim, printk:console", kill.text.clone());
        }
        finding.remediation(RAISE_LIMIT)
    }
}

/// The finding's subject: the container (namespace/pod/container), the unit, or the process.
fn subject(actor: &Actor) -> String {
    let key = &*actor.key;
    match actor.kind {
        ActorKind::Container => key.trim_start_matches("pod:"),
        ActorKind::HostService => key.trim_start_matches("service:"),
        ActorKind::HostProcess => key,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::{ContainerOwner, OwnerKind, PodRef},
        events::{OomLimit, Task},
        node::cgroup_path::{ContainerId, Runtime},
    };

    const APISERVER_ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
    const APISERVER_CGROUP: &str = "/kubepods/burstable/pod5b9c2a7e31d84f0c9a6e2b7d4c1f8e03/47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";

    fn control_plane_container(pod: &str, container: &str) -> Actor {
        Actor {
            key: format!("pod:kube-system/{pod}/{container}").into(),
            display: format!("kube-system/{pod} (container {container})").into(),
            kind: ActorKind::Container,
            instance: "abc".into(),
            control_plane: true,
        }
    }

    /// The apiserver's container, as attribution names the cgroup its limit is on.
    fn apiserver_cgroup() -> Owner {
        let pod = PodRef { namespace: "kube-system".into(), name: "kube-apiserver-node1".into(), uid: "5b9c2a7e31d84f0c9a6e2b7d4c1f8e03".into(), static_pod: true, manifest: None };
        let container = ContainerOwner {
            runtime: Runtime::Containerd,
            id: ContainerId::parse_hex(APISERVER_ID).expect("an id"),
            name: Some("kube-apiserver".into()),
            pod: Some(pod),
            sandbox: false,
            attempt: Some(0),
        };
        Owner::new(OwnerKind::Container(container), Some(APISERVER_CGROUP.into()))
    }

    fn pods_root() -> Owner {
        Owner::new(OwnerKind::Host, Some("/kubepods".into()))
    }

    /// An OOM kill with 51200 pages resident; `limit`: the cgroup at its limit, in pages.
    fn oom_kill(comm: &str, constraint: OomConstraint, limit_pages: Option<u64>) -> Event {
        Event::OomKill(Box::new(OomKill {
            task: Task { pid: 7, tgid: 7, ppid: 1, uid: 0, cgroup_id: 1, memcg_id: 2, start_ns: 0, comm: comm.into() },
            constraint,
            trigger_pid: 7,
            trigger_tgid: 7,
            trigger_comm: comm.into(),
            trigger_cgroup_id: 1,
            trigger_memcg_id: 2,
            total_vm_pages: 100_000,
            anon_rss_pages: 51_200,
            file_rss_pages: 0,
            shmem_rss_pages: 0,
            oom_score_adj: -997,
            limit: limit_pages.map(|max_pages| OomLimit { cgroup_id: 2, max_pages, usage_pages: max_pages }),
        }))
    }

    fn reservations_missing() -> AuditContext {
        let reservations = Rule { id: "no-memory-reservation", severity: Severity::Warning, title: "", description: "" };
        AuditContext {
            memory_findings: vec![Finding::new(&reservations, "kubelet", "no systemReserved")
                .evidence("/var/lib/kubelet/config.yaml", "systemReserved.memory unset")],
            ..Default::default()
        }
    }

    fn mib(pages: u64) -> String {
        memory::human_bytes(pages * memory::page_size())
    }

    #[test]
    fn control_plane_kills_when_the_node_ran_out_join_the_audit_findings() {
        let actor = control_plane_container("etcd-node1", "etcd");
        let oom = oom_kill("etcd", OomConstraint::Global, None);
        let facts = reservations_missing();
        let mut detector = ControlPlaneOomDetector::default();
        let finding = detector.observe(&oom, &actor, None, &facts, Instant::now()).expect("a finding");
        assert_eq!(finding.rule, "memory-reservations-misconfigured");
        assert!(finding.title.contains("(the node ran out of memory): memory reservations are misconfigured"), "{}", finding.title);
        assert!(finding.evidence[0].detail.contains(&format!("{} resident", mib(51_200))), "{:?}", finding.evidence[0]);
        assert!(finding.evidence[0].detail.ends_with(": the node ran out of memory"), "{:?}", finding.evidence[0]);
        assert_eq!(finding.evidence[1].source, "audit no-memory-reservation: /var/lib/kubelet/config.yaml");
        assert!(finding.remediation.starts_with("Reserve memory"), "{}", finding.remediation);

        let workload = Actor { control_plane: false, ..actor };
        assert!(detector.observe(&oom, &workload, None, &facts, Instant::now()).is_none(), "workload OOMs are counted, not this finding");
    }

    #[test]
    fn kubelets_pods_root_at_its_limit_is_the_node_running_out() {
        let actor = control_plane_container("kube-apiserver-node1", "kube-apiserver");
        let oom = oom_kill("kube-apiserver", OomConstraint::MemoryCgroup, Some(1 << 20));
        let mut detector = ControlPlaneOomDetector::default();
        let root = pods_root();
        let finding = detector.observe(&oom, &actor, Some(&root), &reservations_missing(), Instant::now()).expect("a finding");
        assert_eq!(finding.rule, "memory-reservations-misconfigured");
        let limit = mib(1 << 20);
        assert!(finding.evidence[0].detail.ends_with(&format!("kubelet's pods root /kubepods reached its limit of {limit} (the node's allocatable memory)")), "{:?}", finding.evidence[0]);
    }

    /// The measured bug: four kills of a static pod's container at its own limit gave the
    /// critical reservations finding, though the node never ran out.
    #[test]
    fn kills_at_its_own_limit_are_their_own_finding_not_the_nodes_reservations() {
        let actor = control_plane_container("kube-apiserver-node1", "kube-apiserver");
        let oom = oom_kill("kube-apiserver", OomConstraint::MemoryCgroup, Some(12_288));
        let container = apiserver_cgroup();
        let mut detector = ControlPlaneOomDetector::default();
        let t0 = Instant::now();
        let mut finding = None;
        for i in 0..4 {
            finding = detector.observe(&oom, &actor, Some(&container), &reservations_missing(), t0 + Duration::from_secs(30 * i));
            assert_eq!(finding.as_ref().map(|f| f.rule), Some("memory-limit-oom-kill"), "kill {i}");
        }
        let finding = finding.expect("a finding");
        assert_eq!(finding.severity, Severity::Warning);
        assert_eq!(finding.subject, "kube-system/kube-apiserver-node1/kube-apiserver");
        let limit = mib(12_288);
        assert_eq!(
            finding.title,
            format!("The OOM killer killed kube-system/kube-apiserver-node1 (container kube-apiserver) 4 time(s) in 10m: its memory cgroup {APISERVER_CGROUP} reached its limit of {limit}")
        );
        assert_eq!(finding.evidence.len(), 4);
        assert!(finding.evidence[3].detail.contains(&format!("killed with {} resident", mib(51_200))), "{:?}", finding.evidence[3]);
        assert!(finding.remediation.starts_with("The kernel killed it at its own memory cgroup's limit"), "{}", finding.remediation);
        assert!(!finding.remediation.contains("systemReserved"), "{}", finding.remediation);
    }

    #[test]
    fn kills_age_out_of_the_window() {
        let actor = control_plane_container("etcd-node1", "etcd");
        let node = oom_kill("etcd", OomConstraint::Global, None);
        let mut detector = ControlPlaneOomDetector::new(Duration::from_secs(600));
        let t0 = Instant::now();
        detector.observe(&node, &actor, None, &AuditContext::default(), t0);
        detector.observe(&node, &actor, None, &AuditContext::default(), t0 + Duration::from_secs(60));
        // Eleven minutes after the first, the first is no evidence any more.
        let finding = detector.observe(&node, &actor, None, &AuditContext::default(), t0 + Duration::from_secs(660)).expect("a finding");
        assert!(finding.title.starts_with("The OOM killer killed 2 control-plane process(es) in 10m"), "{}", finding.title);
        assert_eq!(finding.evidence.len(), 2);
        // An old kill where the node ran out does not come back beside a kill at a limit.
        let later = t0 + Duration::from_secs(3600);
        let own = detector.observe(&oom_kill("etcd", OomConstraint::MemoryCgroup, Some(4096)), &actor, Some(&apiserver_cgroup()), &AuditContext::default(), later);
        assert_eq!(own.map(|f| f.rule), Some("memory-limit-oom-kill"));
        assert_eq!(detector.kills.len(), 1, "the old kills are forgotten");
    }

    #[test]
    fn whose_limit_follows_the_kernels_constraint() {
        let container = apiserver_cgroup();
        let of = |constraint, limit, owner: Option<&Owner>| match oom_kill("x", constraint, limit) {
            Event::OomKill(oom) => WhoseLimit::of(&oom, owner),
            _ => unreachable!(),
        };
        assert_eq!(of(OomConstraint::Global, Some(10), Some(&container)), WhoseLimit::Node, "the kernel said the node");
        assert_eq!(of(OomConstraint::Unknown, None, None), WhoseLimit::Node, "no report, no cgroup at its limit");
        assert!(matches!(of(OomConstraint::Unknown, Some(10), Some(&container)), WhoseLimit::Own { cgroup: Some(_), .. }));
        assert_eq!(of(OomConstraint::MemoryCgroup, None, None), WhoseLimit::Own { cgroup: None, limit_bytes: None });
        let unit = Owner::new(OwnerKind::HostService { unit: "kubelet.service".into(), service: "kubelet".into() }, Some("/system.slice/kubelet.service".into()));
        assert_eq!(
            of(OomConstraint::MemoryCgroup, Some(256), Some(&unit)),
            WhoseLimit::Own { cgroup: Some("/system.slice/kubelet.service".into()), limit_bytes: Some(256 * memory::page_size()) }
        );
    }
}
