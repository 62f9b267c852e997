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
    use crate::node::{
        kubelet::tests::{NODEADM_CONFIG_JSON, NODEADM_UNIT},
        snapshot::{self, CriSource, SnapshotOptions},
        systemd_unit::tests::host,
    };

    // nodeadm's /etc/containerd/config.toml (sandbox image rendered):
    // https://github.com/awslabs/amazon-eks-ami/blob/11ca068bff32897e1b875b4ea65439983940ed86/nodeadm/internal/containerd/config.template.toml
    const NODEADM_CONTAINERD: &str = "version = 2\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\n\n[grpc]\naddress = \"/run/containerd/containerd.sock\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"runc\"\ndiscard_unpacked_layers = true\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\nbin_dir = \"/opt/cni/bin\"\nconf_dir = \"/etc/cni/net.d\"\n";

    async fn rule_ids(config_json: &str) -> Vec<&'static str> {
        let (_dir, root) = host(&[
            ("/etc/systemd/system/kubelet.service", NODEADM_UNIT),
            ("/etc/kubernetes/kubelet/config.json", config_json),
            ("/etc/containerd/config.toml", NODEADM_CONTAINERD),
            ("/proc/meminfo", "MemTotal:        7869744 kB\n"),
        ]);
        let options = SnapshotOptions { cri: CriSource::Recorded(Default::default()), ..Default::default() };
        let snapshot = snapshot::collect(&root, &options).await;
        evaluate(&snapshot).iter().map(|f| f.rule).collect()
    }

    /// The measured false findings of a node laid out as the EKS AL2023 AMI does (kubelet's
    /// JSON config named by `--config <path>` on a continued ExecStart line), and the same node
    /// made wrong, where the rules must still fire.
    #[tokio::test]
    async fn nodeadm_node_is_judged_by_its_own_configuration() {
        let healthy = rule_ids(NODEADM_CONFIG_JSON).await;
        assert!(!healthy.contains(&CGROUP_DRIVER_MISMATCH.id), "{healthy:?}");
        assert!(!healthy.contains(&MEMORY_RESERVATION_MISSING.id), "{healthy:?}");
        let cgroupfs = NODEADM_CONFIG_JSON.replace("\"cgroupDriver\": \"systemd\"", "\"cgroupDriver\": \"cgroupfs\"");
        assert!(rule_ids(&cgroupfs).await.contains(&CGROUP_DRIVER_MISMATCH.id));
        let unreserved = NODEADM_CONFIG_JSON.replace("\"memory\": \"574Mi\"", "\"pid\": \"1000\"");
        assert!(rule_ids(&unreserved).await.contains(&MEMORY_RESERVATION_MISSING.id));
        // A file kubelet cannot parse says nothing of its settings: no judgement of defaults.
        let broken = rule_ids("{\n    \"cgroupDriver\": \"systemd\",,\n}").await;
        assert!(broken.contains(&CONFIG_UNPARSABLE.id), "{broken:?}");
        assert!(!broken.contains(&CGROUP_DRIVER_MISMATCH.id) && !broken.contains(&MEMORY_RESERVATION_MISSING.id), "{broken:?}");
    }

    #[test]
    fn catalogue_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
