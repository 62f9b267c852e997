//! Rules about memory kept for the node itself: kubelet's systemReserved/kubeReserved, its hard
//! eviction threshold, and the memory requests of control-plane static pods.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{kubelet::{EvictionHardMemory, Reservation}, memory::{self, Quantity}, snapshot::NodeSnapshot},
};

rule!(MEMORY_RESERVATION_MISSING, "memory-reservation-missing", Info, "no memory reserved for the system or Kubernetes daemons",
    "Pods may take all memory: under pressure the kernel OOM-kills system daemons, kubelet or control-plane processes.");

rule!(MEMORY_RESERVATION_IMPLAUSIBLE, "memory-reservation-implausible", Warning, "memory reservations implausible for the node's capacity",
    "Reservations that exceed half the node or cannot be parsed leave too little for pods or none for daemons.");

rule!(EVICTION_HARD_MISSING, "eviction-hard-memory-missing", Warning, "no hard eviction threshold for memory",
    "Without memory.available in evictionHard kubelet never evicts before the kernel OOM killer acts.");

rule!(STATIC_POD_NO_MEMORY_REQUEST, "static-pod-memory-request-missing", Info,
    "control-plane static pod without a memory request on a node with no memory reservation",
    "Nothing protects this control-plane component's memory; under pressure it is among the first OOM victims.");

pub(super) fn memory_reservations(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let k = &facts.kubelet;
    if k.config_unread() {
        return; // its settings are unknown; the unreadable file is a finding of its own
    }
    let subject = k.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "kubelet".into());
    let system = k.reserved_memory(Reservation::System);
    let kube = k.reserved_memory(Reservation::Kube);
    if system.is_none() && kube.is_none() {
        let mut f = Finding::new(&MEMORY_RESERVATION_MISSING, &subject, "neither systemReserved nor kubeReserved reserves memory")
            .evidence(subject.clone(), "systemReserved.memory and kubeReserved.memory unset (no --system-reserved/--kube-reserved memory)");
        if let Some(total) = facts.memory_total {
            f = f.evidence("/proc/meminfo", format!("MemTotal {}", memory::human_bytes(total)));
        }
        out.push(f.remediation("Reserve memory for daemons, e.g. `systemReserved: {memory: 512Mi}` and `kubeReserved: {memory: 512Mi}` (more on large nodes), and restart kubelet."));
        for pod in facts.static_pods.iter().filter(|p| p.is_control_plane()) {
            let missing: Vec<&str> = pod.containers.iter().filter(|c| c.memory_request.is_none()).map(|c| c.name.as_str()).collect();
            if missing.is_empty() {
                continue;
            }
            out.push(
                Finding::new(&STATIC_POD_NO_MEMORY_REQUEST, format!("{}/{}", pod.namespace, pod.name), format!(
                    "static pod {} has no memory request ({}) and the node reserves none",
                    pod.name,
                    missing.join(", ")
                ))
                .evidence(pod.path.display().to_string(), format!("containers without resources.requests.memory: {}", missing.join(", ")))
                .evidence(subject.clone(), "no systemReserved/kubeReserved memory")
                .remediation("Give control-plane containers a memory request (kubeadm: patches for the component) and reserve memory for daemons."),
            );
        }
    }
    let mut reserved = 0u64;
    for (name, v) in [("systemReserved", &system), ("kubeReserved", &kube)] {
        let Some(v) = v else { continue };
        match memory::parse_quantity(&v.value) {
            Ok(Quantity::Bytes(b)) => reserved += b,
            _ => out.push(
                Finding::new(&MEMORY_RESERVATION_IMPLAUSIBLE, &subject, format!("{name}.memory is not a memory quantity"))
                    .evidence(v.origin.to_string(), format!("{name}.memory: {}", v.value.chars().take(40).collect::<String>()))
                    .remediation("Use a quantity such as 512Mi or 1Gi."),
            ),
        }
    }
    if let (Some(total), true) = (facts.memory_total, reserved > 0)
        && reserved > total / 2 {
            let mut f = Finding::new(&MEMORY_RESERVATION_IMPLAUSIBLE, &subject, format!(
                "{} reserved for daemons on a node with {}",
                memory::human_bytes(reserved),
                memory::human_bytes(total)
            ));
            for (name, v) in [("systemReserved", &system), ("kubeReserved", &kube)] {
                if let Some(v) = v {
                    f = f.evidence(v.origin.to_string(), format!("{name}.memory: {}", v.value));
                }
            }
            out.push(f.evidence("/proc/meminfo", format!("MemTotal {}", memory::human_bytes(total)))
                .remediation("Reserve a fraction of the node (typically 5-15% of memory) for system and Kubernetes daemons."));
        }
    match k.eviction_hard_memory() {
        EvictionHardMemory::Missing => out.push(
            Finding::new(&EVICTION_HARD_MISSING, &subject, "evictionHard is set without memory.available")
                .evidence(k.flag("eviction-hard").map(|f| f.source.clone()).or_else(|| k.locate_setting(&["evictionHard"])).unwrap_or_default(), "evictionHard has no memory.available threshold")
                .remediation("Add `memory.available: 100Mi` (or a percentage) to evictionHard."),
        ),
        EvictionHardMemory::Set(v) => {
            let zero = matches!(memory::parse_quantity(&v.value), Ok(Quantity::Bytes(0)) | Ok(Quantity::Percent(0.0)));
            if zero {
                out.push(
                    Finding::new(&EVICTION_HARD_MISSING, &subject, "the hard eviction threshold for memory is zero")
                        .evidence(v.origin.to_string(), format!("memory.available: {}", v.value))
                        .remediation("Set memory.available to at least 100Mi."),
                );
            }
        }
        EvictionHardMemory::Default(_) => {}
    }
}
