//! OOM kills that hit the node's own machinery (control-plane static pods, kubelet, the
//! runtime) mean the node's memory is not reserved for it. This detector joins those kills
//! with the audit's reservation and request findings into one finding that shows which kills,
//! what is (not) reserved, which requests are missing, and what to set. OOM kills of
//! workloads are not its business: the kill ledger and the kill metrics count them.

use std::{collections::VecDeque, time::Instant};

use super::{Actor, AuditContext};
use crate::{
    events::{Event, OomConstraint},
    findings::{Finding, Rule, Severity},
};

pub const MEMORY_RESERVATIONS: Rule = Rule {
    id: "memory-reservations-misconfigured",
    severity: Severity::Critical,
    title: "The OOM killer hits the node's control plane: memory is not reserved for it",
    description: "OOM kills of static pods, kubelet or the container runtime, joined with the audit's findings on systemReserved/kubeReserved, eviction thresholds and static pods' memory requests.",
};

#[derive(Debug, Default)]
pub struct ControlPlaneOomDetector {
    /// The latest control-plane OOM kills with their constraints, newest last (at most 10 kept).
    kills: VecDeque<(String, OomConstraint)>,
}

const RESERVE: &str = "Reserve memory for the node's daemons in the KubeletConfiguration (systemReserved.memory and kubeReserved.memory, e.g. 5-10% of the node's memory each), set evictionHard memory.available so kubelet evicts pods before the kernel OOM-kills, and give every control-plane static pod a memory request.";
const RAISE_LIMIT: &str = "The kernel killed it at its own memory cgroup's limit, not because the node ran out: raise that container's or service's memory limit (resources.limits.memory in a static pod's manifest, MemoryMax= for a unit) or find what makes it grow.";

impl ControlPlaneOomDetector {
    pub fn observe(&mut self, event: &Event, actor: &Actor, facts: &AuditContext, _now: Instant) -> Option<Finding> {
        let Event::OomKill(oom) = event else { return None };
        if !actor.control_plane {
            return None;
        }
        let page_kib = 4;
        self.kills.push_back((
            format!(
                "{} pid {} ({}) killed with {} MiB anonymous RSS, oom_score_adj {}, allocation by {} (pid {}): {}",
                actor.display,
                oom.task.tgid,
                oom.task.comm,
                oom.anon_rss_pages * page_kib / 1024,
                oom.oom_score_adj,
                oom.trigger_comm,
                oom.trigger_tgid,
                oom.constraint
            ),
            oom.constraint,
        ));
        while self.kills.len() > 10 {
            self.kills.pop_front();
        }
        // Only kills at a cgroup's own limit say nothing about the node's reservations.
        let node_ran_out = self.kills.iter().any(|(_, c)| *c != OomConstraint::MemoryCgroup);
        let at_limit = self.kills.iter().any(|(_, c)| *c == OomConstraint::MemoryCgroup);
        let mut finding = Finding::new(
            &MEMORY_RESERVATIONS,
            "node",
            format!(
                "The OOM killer killed {} control-plane process(es), latest {} ({}){}",
                self.kills.len(),
                actor.display,
                oom.constraint,
                if facts.memory_findings.is_empty() { "" } else { ": memory reservations are misconfigured" }
            ),
        );
        for (kill, _) in &self.kills {
            finding = finding.evidence("kernel: oom:mark_victim, printk:console", kill.clone());
        }
        for f in &facts.memory_findings {
            for e in &f.evidence {
                finding = finding.evidence(format!("audit {}: {}", f.rule, e.source), e.detail.clone());
            }
            if f.evidence.is_empty() {
                finding = finding.evidence(format!("audit {}", f.rule), f.title.clone());
            }
        }
        let remediation = match (node_ran_out, at_limit) {
            (true, true) => format!("{RESERVE} For the kills at a limit: {RAISE_LIMIT}"),
            (false, true) if facts.memory_findings.is_empty() => RAISE_LIMIT.to_string(),
            (false, true) => format!("{RAISE_LIMIT} Also: {RESERVE}"),
            _ => RESERVE.to_string(),
        };
        Some(finding.remediation(remediation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detectors::ActorKind,
        events::{OomKill, Task},
    };

    fn control_plane_container(pod: &str, container: &str) -> Actor {
        Actor {
            key: format!("pod:kube-system/{pod}/{container}").into(),
            display: format!("kube-system/{pod} (container {container})").into(),
            kind: ActorKind::Container,
            instance: "abc".into(),
            control_plane: true,
        }
    }

    fn oom_kill(comm: &str, constraint: OomConstraint, anon_rss_pages: u64) -> Event {
        Event::OomKill(Box::new(OomKill {
            task: Task { pid: 7, tgid: 7, ppid: 1, uid: 0, cgroup_id: 1, memcg_id: 2, start_ns: 0, comm: comm.into() },
            constraint,
            trigger_pid: 7,
            trigger_tgid: 7,
            trigger_comm: comm.into(),
            trigger_cgroup_id: 1,
            trigger_memcg_id: 2,
            total_vm_pages: 100_000,
            anon_rss_pages,
            file_rss_pages: 0,
            shmem_rss_pages: 0,
            oom_score_adj: -997,
        }))
    }

    #[test]
    fn control_plane_oom_kills_join_the_audit_findings() {
        let actor = control_plane_container("etcd-node1", "etcd");
        let oom = oom_kill("etcd", OomConstraint::Global, 51_200);
        let reservations = Rule { id: "no-memory-reservation", severity: Severity::Warning, title: "", description: "" };
        let facts = AuditContext {
            memory_findings: vec![Finding::new(&reservations, "kubelet", "no systemReserved")
                .evidence("/var/lib/kubelet/config.yaml", "systemReserved.memory unset")],
            ..Default::default()
        };
        let mut detector = ControlPlaneOomDetector::default();
        let finding = detector.observe(&oom, &actor, &facts, Instant::now()).expect("a finding");
        assert_eq!(finding.rule, "memory-reservations-misconfigured");
        assert!(finding.title.contains("(the node ran out of memory): memory reservations are misconfigured"), "{}", finding.title);
        assert!(finding.evidence[0].detail.contains("200 MiB anonymous RSS"), "{:?}", finding.evidence[0]);
        assert!(finding.evidence[0].detail.ends_with(": the node ran out of memory"), "{:?}", finding.evidence[0]);
        assert_eq!(finding.evidence[1].source, "audit no-memory-reservation: /var/lib/kubelet/config.yaml");
        assert!(finding.remediation.starts_with("Reserve memory"), "{}", finding.remediation);

        let workload = Actor { control_plane: false, ..actor };
        assert!(detector.observe(&oom, &workload, &facts, Instant::now()).is_none(), "workload OOMs are counted, not this finding");
    }

    #[test]
    fn a_kill_at_its_own_limit_asks_for_a_higher_limit_not_reservations() {
        let actor = control_plane_container("kube-apiserver-node1", "kube-apiserver");
        let oom = oom_kill("kube-apiserver", OomConstraint::MemoryCgroup, 0);
        let mut detector = ControlPlaneOomDetector::default();
        let finding = detector.observe(&oom, &actor, &AuditContext::default(), Instant::now()).expect("a finding");
        assert!(finding.title.ends_with("(its memory cgroup's limit was reached)"), "{}", finding.title);
        assert!(finding.remediation.starts_with("The kernel killed it at its own memory cgroup's limit"), "{}", finding.remediation);
        assert!(!finding.remediation.contains("systemReserved"), "{}", finding.remediation);
    }
}
