//! OOM kills that hit the node's own machinery (control-plane static pods, kubelet, the
//! runtime) mean the node's memory is not reserved for it. This detector joins those kills
//! with the audit's reservation and request findings into one finding that shows which kills,
//! what is (not) reserved, which requests are missing, and what to set.

use std::{collections::VecDeque, time::Instant};

use super::{NodeFacts, Subject};
use crate::{
    events::Event,
    findings::{Finding, Rule, Severity},
};

pub const MEMORY_RESERVATIONS: Rule = Rule {
    id: "memory-reservations-misconfigured",
    severity: Severity::Critical,
    title: "The OOM killer hits the node's control plane: memory is not reserved for it",
    description: "OOM kills of static pods, kubelet or the container runtime, joined with the audit's findings on systemReserved/kubeReserved, eviction thresholds and static pods' memory requests.",
};

#[derive(Debug, Default)]
pub struct MemoryDetector {
    /// The latest control-plane OOM kills, newest last (at most 10 kept).
    kills: VecDeque<String>,
}

impl MemoryDetector {
    pub fn observe(&mut self, event: &Event, subject: &Subject, facts: &NodeFacts, _now: Instant) -> Option<Finding> {
        let Event::OomKill(oom) = event else { return None };
        if !subject.control_plane {
            return None;
        }
        let page_kib = 4;
        self.kills.push_back(format!(
            "{} pid {} ({}) killed with {} MiB anonymous RSS, oom_score_adj {}, allocation by {} (pid {})",
            subject.display,
            oom.task.tgid,
            oom.task.comm,
            oom.anon_rss_pages * page_kib / 1024,
            oom.oom_score_adj,
            oom.trigger_comm,
            oom.trigger_tgid
        ));
        while self.kills.len() > 10 {
            self.kills.pop_front();
        }
        let mut finding = Finding::new(
            &MEMORY_RESERVATIONS,
            "node",
            format!(
                "The OOM killer killed {} control-plane process(es), latest {}{}",
                self.kills.len(),
                subject.display,
                if facts.memory_findings.is_empty() { "" } else { ": memory reservations are misconfigured" }
            ),
        );
        for kill in &self.kills {
            finding = finding.evidence("kernel: oom:mark_victim", kill.clone());
        }
        for f in &facts.memory_findings {
            for e in &f.evidence {
                finding = finding.evidence(format!("audit {}: {}", f.rule, e.source), e.detail.clone());
            }
            if f.evidence.is_empty() {
                finding = finding.evidence(format!("audit {}", f.rule), f.title.clone());
            }
        }
        Some(finding.remediation(
            "Reserve memory for the node's daemons in the KubeletConfiguration (systemReserved.memory and kubeReserved.memory, e.g. 5-10% of the node's memory each), set evictionHard memory.available so kubelet evicts pods before the kernel OOM-kills, and give every control-plane static pod a memory request.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detectors::SubjectKind,
        events::{OomKill, Task},
    };

    #[test]
    fn control_plane_oom_kills_join_the_audit_findings() {
        let subject = Subject {
            key: "pod:kube-system/etcd-node1/etcd".into(),
            display: "kube-system/etcd-node1 (container etcd)".into(),
            kind: SubjectKind::Container,
            instance: "abc".into(),
            control_plane: true,
        };
        let oom = Event::OomKill(OomKill {
            task: Task { pid: 7, tgid: 7, ppid: 1, uid: 0, cgroup_id: 1, memcg_id: 2, start_ns: 0, comm: "etcd".into() },
            trigger_pid: 7,
            trigger_tgid: 7,
            trigger_comm: "etcd".into(),
            trigger_cgroup_id: 1,
            trigger_memcg_id: 2,
            total_vm_pages: 100_000,
            anon_rss_pages: 51_200,
            file_rss_pages: 0,
            shmem_rss_pages: 0,
            oom_score_adj: -997,
        });
        let reservations = Rule { id: "no-memory-reservation", severity: Severity::Warning, title: "", description: "" };
        let facts = NodeFacts {
            memory_findings: vec![Finding::new(&reservations, "kubelet", "no systemReserved")
                .evidence("/var/lib/kubelet/config.yaml", "systemReserved.memory unset")],
            ..Default::default()
        };
        let mut detector = MemoryDetector::default();
        let finding = detector.observe(&oom, &subject, &facts, Instant::now()).expect("a finding");
        assert_eq!(finding.rule, "memory-reservations-misconfigured");
        assert!(finding.title.contains("memory reservations are misconfigured"));
        assert!(finding.evidence[0].detail.contains("200 MiB anonymous RSS"), "{:?}", finding.evidence[0]);
        assert_eq!(finding.evidence[1].source, "audit no-memory-reservation: /var/lib/kubelet/config.yaml");

        let workload = Subject { control_plane: false, ..subject };
        assert!(detector.observe(&oom, &workload, &facts, Instant::now()).is_none(), "workload OOMs are counted, not this finding");
    }
}
