//! The audit's rules: the catalogue ([`RULES`], data that can be printed and tested) and the
//! checks that turn a [`NodeSnapshot`] into findings, one file per subject. Each check looks at
//! the snapshot only; none reads a file or a socket. Evidence never carries a setting's value
//! unless the rule interprets it (cgroup driver, images, endpoints, memory sizes): secrets live
//! next to these settings.

use crate::{
    findings::{Finding, Rule},
    node::snapshot::NodeSnapshot,
};

macro_rules! rule {
    ($name:ident, $id:literal, $sev:ident, $title:literal, $desc:literal) => {
        pub const $name: Rule = Rule { id: $id, severity: Severity::$sev, title: $title, description: $desc };
    };
}

pub mod containerd;
pub mod cri;
pub mod files;
pub mod images;
pub mod kubelet;
pub mod kubelet_runtime;
pub mod memory_reservations;

pub use self::{
    containerd::{CONTAINERD_TABLES_IGNORED, CONTAINERD_VERSION_UNSUPPORTED},
    cri::{CRI_TOOL_DUPLICATE, CRI_TOOL_MISSING, CRI_V1_UNAVAILABLE, INSTALLER_ASSET_CONFLICT},
    files::{CONFIG_UNPARSABLE, CONFIG_UNREADABLE},
    images::IMAGE_NOT_PRESENT_NO_PULL,
    kubelet::{
        KUBELET_NOT_RUNNING, RUNTIME_ENDPOINT_MISSING, RUNTIME_ENDPOINT_NOT_INSTALLED, RUNTIME_ENDPOINT_UNRESPONSIVE,
        RUNTIME_SHIM_UNUSED,
    },
    kubelet_runtime::{CGROUP_DRIVER_MISMATCH, CRIO_CONMON_CGROUP_INVALID, SANDBOX_IMAGE_MISMATCH},
    memory_reservations::{
        EVICTION_HARD_MISSING, MEMORY_RESERVATION_IMPLAUSIBLE, MEMORY_RESERVATION_MISSING, STATIC_POD_NO_MEMORY_REQUEST,
    },
};

/// The catalogue, in report order.
pub const RULES: &[Rule] = &[
    CONFIG_UNREADABLE, CONFIG_UNPARSABLE, CONTAINERD_VERSION_UNSUPPORTED, CONTAINERD_TABLES_IGNORED,
    CGROUP_DRIVER_MISMATCH, SANDBOX_IMAGE_MISMATCH, CRIO_CONMON_CGROUP_INVALID, MEMORY_RESERVATION_MISSING, MEMORY_RESERVATION_IMPLAUSIBLE,
    EVICTION_HARD_MISSING, STATIC_POD_NO_MEMORY_REQUEST, RUNTIME_ENDPOINT_MISSING, RUNTIME_ENDPOINT_UNRESPONSIVE,
    RUNTIME_ENDPOINT_NOT_INSTALLED, RUNTIME_SHIM_UNUSED, CRI_V1_UNAVAILABLE, CRI_TOOL_MISSING, CRI_TOOL_DUPLICATE,
    INSTALLER_ASSET_CONFLICT, KUBELET_NOT_RUNNING, IMAGE_NOT_PRESENT_NO_PULL,
];

/// Runs every check.
pub fn evaluate(facts: &NodeSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    files::unreadable_files(facts, &mut out);
    // kubelet refuses a configuration file it cannot read: judge none of its values (its
    // defaults are not what it runs with; it does not run) beyond `config-unparsable`.
    let kubelet_config_known = facts.kubelet.config_path.is_none() || facts.kubelet.config.is_some();
    if containerd::uses_containerd(facts) {
        containerd::containerd_schema(facts, &mut out);
    }
    kubelet_runtime::crio_conmon_cgroup(facts, &mut out);
    if kubelet_config_known && (facts.kubelet.config.is_some() || !facts.kubelet.flags.is_empty()) {
        // Only the runtime kubelet uses: Docker's own containerd on a cri-dockerd node is not.
        if let Some(runtime) = kubelet_runtime::kubelet_runtime(facts) {
            kubelet_runtime::cgroup_driver(facts, runtime, &mut out);
            kubelet_runtime::sandbox_image(facts, runtime, &mut out);
        }
        memory_reservations::memory_reservations(facts, &mut out);
        kubelet::runtime_endpoint(facts, &mut out);
    }
    kubelet::runtime_shims(facts, &mut out);
    cri::cri_versions(facts, &mut out);
    cri::cri_tools(facts, &mut out);
    kubelet::kubelet_running(facts, &mut out);
    images::images(facts, &mut out);
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(b.rule)).then(a.subject.cmp(&b.subject)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
