//! Scenario tests of the configuration audit: one fixture host root per incident of
//! INCIDENTS.md plus two healthy nodes. Each asserts exactly the findings expected (rule and
//! subject), and that healthy nodes have none. CRI answers are recorded next to each fixture
//! (`<name>.cri.json`); the live CRI path is tested against a real containerd in
//! `audit_containerd_live.rs`.

use monitor::{audit::AuditReport, exporters::check_report as report};
use monitor_tests::fixture_node::{self as fixture, audit, evidence_of};

/// Audits a fixture node and asserts its findings are its record (`<name>.findings`), the exit
/// code `check` gives, and that every finding has evidence and a remediation.
fn expect(name: &str, exit: u8) -> AuditReport {
    let report = audit(name);
    fixture::assert_expected(name, &report);
    assert_eq!(report::exit_code(&report.findings), exit, "{name}");
    for f in &report.findings {
        assert!(!f.evidence.is_empty(), "{name}: {} has no evidence", f.rule);
        assert!(!f.remediation.is_empty(), "{name}: {} has no remediation", f.rule);
    }
    report
}

/// Nodes as the major installers and managed images leave them (kubeadm, k0s, Kubespray, kOps,
/// CRI-O and Docker with cri-dockerd under kubeadm, EKS AL2023, a Docker host without
/// Kubernetes): healthy, with notes at most. A record blessed with a warning fails here.
#[test]
fn installer_defaults_are_healthy_nodes_with_notes_at_most() {
    let defaults: Vec<String> = fixture::names()
        .into_iter()
        .filter(|n| n.starts_with("defaults-") || n.starts_with("managed-") || n == "docker-host-no-kubernetes")
        .collect();
    assert!(defaults.len() >= 8, "{defaults:?}");
    for name in defaults {
        let report = audit(&name);
        assert_eq!(report::exit_code(&report.findings), 0, "{name}:\n{}", report::text(&report, false));
        fixture::assert_expected(&name, &report);
    }
}

#[test]
fn every_fixture_node_has_exactly_its_recorded_findings() {
    for name in fixture::names() {
        let report = audit(&name);
        fixture::assert_expected(&name, &report);
    }
}

#[test]
fn healthy_kubeadm_containerd17_has_no_findings() {
    let r = expect("healthy-kubeadm-containerd17", 0);
    assert!(r.snapshot.containerd_release_text().as_deref().is_some_and(|v| v.starts_with("1.7.13")));
}

#[test]
fn healthy_containerd2_with_version3_config_has_no_findings() {
    let r = expect("healthy-containerd2-v3", 0);
    // SystemdCgroup comes from the imported drop-in.
    assert!(r.snapshot.watched.iter().any(|p| p.ends_with("conf.d/10-systemd-cgroup.toml")), "{:?}", r.snapshot.watched);
}

#[test]
fn incident1_kops_nodeup_stuck_on_two_crictl_assets() {
    let r = expect("incident1-kops-nodeup-crictl", 2);
    let ev = evidence_of(&r, "installer-asset-conflict");
    assert!(ev.contains("cri-containerd-cni-1_7_6"), "the bundle that brought the second copy: {ev}");
    assert!(evidence_of(&r, "kubelet-not-running").contains("/opt/kops/bin/nodeup"));
}

#[test]
fn incident2_kubekey_drives_cri_dockerd_on_a_containerd_node() {
    let r = expect("incident2-kubekey-cri-dockerd", 2);
    let ev = evidence_of(&r, "runtime-endpoint-missing");
    assert!(ev.contains("/var/lib/kubelet/kubeadm-flags.env:1"), "{ev}");
    assert!(ev.contains("/run/containerd/containerd.sock answers as containerd"), "{ev}");
    assert!(evidence_of(&r, "runtime-shim-unused").contains("/usr/bin/cri-dockerd | cri-dockerd 0.3.9"));
}

#[test]
fn incident3_dockershim_serves_v1alpha2_only() {
    let r = expect("incident3-dockershim-v1alpha2", 1);
    let ev = evidence_of(&r, "cri-v1-unavailable");
    assert!(ev.contains("unknown service runtime.v1.RuntimeService"), "{ev}");
    assert!(ev.contains("served: docker 20.10.24"), "{ev}");
}

#[test]
fn incident4_kubespray_version3_header_on_v2_body() {
    let r = expect("incident4-kubespray-containerd2-v3", 2);
    let ev = evidence_of(&r, "containerd-config-tables-ignored");
    assert!(ev.contains("/etc/containerd/config.toml:1 | version = 3"), "{ev}");
    assert!(ev.contains("/etc/containerd/config.toml:22 | [plugins.\"io.containerd.grpc.v1.cri\"] ignored: systemdCgroup"), "{ev}");
    assert!(ev.contains("sandbox_image"), "{ev}");
    let ev = evidence_of(&r, "cgroup-driver-mismatch");
    assert!(ev.contains("/etc/kubernetes/kubelet-config.yaml:15 | cgroupDriver: systemd"), "{ev}");
    assert!(ev.contains("runtime reports SystemdCgroup = false"), "{ev}");
    let ev = evidence_of(&r, "sandbox-image-mismatch");
    assert!(ev.contains("registry.k8s.io/pause:3.10"), "{ev}");
}

#[test]
fn incident5_k0s_airgapped_node_pinned_to_old_images() {
    let r = expect("incident5-k0s-airgap-images", 2);
    let ev = evidence_of(&r, "image-not-present-pull-forbidden");
    assert!(ev.contains("/etc/k0s/k0s.yaml:31 | pull policy Never"), "{ev}");
    assert!(ev.contains("store has quay.io/k0sproject/kube-proxy:v1.30.2"), "{ev}");
    assert!(ev.contains("node release v1.30.2+k0s.0, image tag v1.29.6: version skew"), "{ev}");
}

#[test]
fn json_report_carries_findings_and_exit_code() {
    let r = audit("incident4-kubespray-containerd2-v3");
    let json: serde_json::Value = serde_json::from_str(&report::json(&r)).expect("valid JSON");
    assert_eq!(json["exit_code"], 2);
    assert_eq!(json["status"], "critical");
    assert_eq!(json["summary"]["critical"], 2);
    assert_eq!(json["findings"].as_array().map(|a| a.len()), Some(7));
    assert_eq!(json["findings"][0]["severity"], "critical");
    assert_eq!(json["sockets"][0]["cri_v1"], "containerd v2.0.2");
    let healthy = audit("healthy-containerd2-v3");
    let json: serde_json::Value = serde_json::from_str(&report::json(&healthy)).expect("valid JSON");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["findings"].as_array().map(|a| a.len()), Some(0));
}

#[test]
fn text_report_groups_by_severity_and_colours_only_when_asked() {
    let r = audit("incident2-kubekey-cri-dockerd");
    let plain = report::text(&r, false);
    let crit = plain.find("CRITICAL (1)").expect("critical group");
    let warn = plain.find("WARNING (1)").expect("warning group");
    assert!(crit < warn, "{plain}");
    assert!(!plain.contains('\x1b'));
    assert!(report::text(&r, true).contains("\x1b[1;31mCRITICAL"));
}
