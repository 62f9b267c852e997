//! Every rule of the catalogue is produced by a test and absent where its cause is.
//!
//! Audit rules: each fixture node's record (`tests/fixtures/nodes/<name>.findings`, asserted by
//! `audit_incidents.rs`) and the variants below (one change to a node each, every finding listed:
//! a healthy node's own record, or a variant without the cause, shows the rule absent) must,
//! together, produce every audit rule.
//! Detector and monitor rules are raised from real kernel events by the daemon's end-to-end
//! tests: each must be awaited by one of them (`wait_for_finding`/`finding_where` with its id, or
//! a filter of `/findings` on `["rule"] == id`).
//! Adding a rule without such a test fails `every_rule_is_produced_by_a_test`.

use monitor::{
    findings::Origin,
    node::cri_facts::{ApiAnswer, CriFacts, RuntimeIdentity},
};
use monitor_tests::fixture_node::{self as fixture, FixtureNode};

/// A healthy node changed in one way, and the findings the audit must give for it.
struct Variant {
    name: &'static str,
    base: &'static str,
    change: fn(&mut FixtureNode),
    findings: &'static [&'static str],
}

const KUBEADM: &str = "healthy-kubeadm-containerd17";
const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
const K0S_AIRGAP: &str = "incident5-k0s-airgap-images";
const K0S_CONFIG: &str = "/etc/k0s/k0s.yaml";

fn kubelet_socket(cri: &mut CriFacts) -> &mut monitor::node::cri_facts::SocketFacts {
    cri.sockets.iter_mut().find(|s| s.endpoint.ends_with("containerd/containerd.sock")).expect("kubelet's socket is recorded")
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "evictionHard set without memory.available (kubelet applies none of its defaults then)",
        base: KUBEADM,
        change: |n| n.edit(KUBELET_CONFIG, "  memory.available: 100Mi\n", ""),
        findings: &["warning eviction-hard-memory-missing /var/lib/kubelet/config.yaml"],
    },
    Variant {
        name: "kubeReserved larger than the node",
        base: KUBEADM,
        change: |n| n.edit(KUBELET_CONFIG, "kubeReserved:\n  cpu: 200m\n  memory: 512Mi", "kubeReserved:\n  cpu: 200m\n  memory: 900Gi"),
        findings: &["warning memory-reservation-implausible /var/lib/kubelet/config.yaml"],
    },
    Variant {
        name: "containerd 2.0 given a version 4 config",
        base: "healthy-containerd2-v3",
        change: |n| n.edit(CONTAINERD_CONFIG, "version = 3", "version = 4"),
        findings: &["critical containerd-config-version-unsupported /etc/containerd/config.toml"],
    },
    Variant {
        name: "kubelet's socket exists but nothing answers on it",
        base: KUBEADM,
        change: |n| {
            let s = kubelet_socket(&mut n.cri);
            s.v1 = ApiAnswer::NoAnswer { message: "connection refused".into() };
            s.v1alpha2 = ApiAnswer::NoAnswer { message: "connection refused".into() };
        },
        findings: &["critical runtime-endpoint-unresponsive unix:///var/run/containerd/containerd.sock"],
    },
    Variant {
        name: "kubelet 1.30 on a socket serving v1alpha2 only",
        base: KUBEADM,
        change: |n| {
            kubelet_socket(&mut n.cri).v1 =
                ApiAnswer::Unimplemented { message: "unknown service runtime.v1.RuntimeService".into() };
        },
        findings: &[
            "critical runtime-endpoint-unresponsive unix:///var/run/containerd/containerd.sock",
            "warning cri-v1-unavailable unix:///var/run/containerd/containerd.sock",
        ],
    },
    Variant {
        name: "kubelet's socket answers as CRI-O on a containerd node",
        base: KUBEADM,
        change: |n| {
            let crio = RuntimeIdentity { runtime_name: "cri-o".into(), runtime_version: "1.30.4".into(), runtime_api_version: "v1".into() };
            let s = kubelet_socket(&mut n.cri);
            s.v1 = ApiAnswer::Served(crio);
            s.v1alpha2 = ApiAnswer::Unimplemented { message: "unknown service runtime.v1alpha2.RuntimeService".into() };
        },
        findings: &["critical runtime-endpoint-not-installed-runtime unix:///var/run/containerd/containerd.sock"],
    },
    Variant {
        name: "a second crictl earlier on the PATH",
        base: KUBEADM,
        change: |n| {
            let crictl = std::fs::read(n.root.join("usr/bin/crictl")).expect("crictl");
            n.write("/usr/local/bin/crictl", crictl);
        },
        findings: &["info cri-tool-duplicate crictl"],
    },
    Variant {
        name: "kubelet's configuration is not YAML",
        base: KUBEADM,
        change: |n| n.write(KUBELET_CONFIG, "cgroupDriver: [systemd\n"),
        findings: &["critical config-unparsable /var/lib/kubelet/config.yaml"],
    },
    Variant {
        name: "containerd's configuration is a directory",
        base: KUBEADM,
        change: |n| {
            n.remove(CONTAINERD_CONFIG);
            std::fs::create_dir_all(n.root.join("etc/containerd/config.toml")).expect("dir");
        },
        findings: &["warning config-unreadable /etc/containerd/config.toml"],
    },
    Variant {
        name: "air-gapped k0s (an offline bundle) with images missing and pull policy IfNotPresent",
        base: K0S_AIRGAP,
        change: |n| {
            n.edit(K0S_CONFIG, "default_pull_policy: Never", "default_pull_policy: IfNotPresent");
            n.write("/var/lib/k0s/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64", "");
        },
        findings: &[
            "critical image-not-present-pull-forbidden quay.io/k0sproject/envoy-distroless:v1.29.5",
            "critical image-not-present-pull-forbidden quay.io/k0sproject/kube-proxy:v1.29.6",
            "info memory-reservation-missing /var/lib/k0s/kubelet-config.yaml",
        ],
    },
    Variant {
        name: "the same node without an offline bundle: it may pull",
        base: K0S_AIRGAP,
        change: |n| n.edit(K0S_CONFIG, "default_pull_policy: Never", "default_pull_policy: IfNotPresent"),
        findings: &["info memory-reservation-missing /var/lib/k0s/kubelet-config.yaml"],
    },
    Variant {
        name: "the same air-gapped node with a registry mirror configured for containerd",
        base: K0S_AIRGAP,
        change: |n| {
            n.edit(K0S_CONFIG, "default_pull_policy: Never", "default_pull_policy: IfNotPresent");
            n.write("/var/lib/k0s/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64", "");
            n.write("/etc/containerd/certs.d/quay.io/hosts.toml", "server = \"https://quay.io\"\n\n[host.\"https://registry.internal:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        },
        findings: &["info memory-reservation-missing /var/lib/k0s/kubelet-config.yaml"],
    },
    Variant {
        name: "CRI-O given a conmon_cgroup its systemd manager refuses",
        base: "defaults-crio",
        change: |n| n.write("/etc/crio/crio.conf.d/20-conmon.conf", "[crio.runtime]\nconmon_cgroup = \"system\"\n"),
        findings: &[
            "critical crio-conmon-cgroup-invalid cri-o",
            "info memory-reservation-missing /var/lib/kubelet/config.yaml",
            "info static-pod-memory-request-missing kube-system/kube-apiserver",
            "info static-pod-memory-request-missing kube-system/kube-controller-manager",
            "info static-pod-memory-request-missing kube-system/kube-scheduler",
        ],
    },
];

#[test]
fn each_variant_gives_exactly_its_findings() {
    let mut failures = Vec::new();
    for (i, v) in VARIANTS.iter().enumerate() {
        let mut node = FixtureNode::copy_of(v.base, &format!("variant-{i}"));
        (v.change)(&mut node);
        let report = node.audit();
        let got = fixture::lines(&report);
        let mut want: Vec<String> = v.findings.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut sorted = got.clone();
        sorted.sort();
        if sorted != want {
            failures.push(format!("{} ({}):\n  want {want:?}\n  got  {got:?}", v.name, v.base));
        }
        for f in &report.findings {
            assert!(!f.evidence.is_empty() && !f.remediation.is_empty(), "{}: {} lacks evidence or remediation", v.name, f.rule);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rule ids awaited by the end-to-end tests (the daemon on real kernel events).
fn awaited_in_end_to_end_tests() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).expect("tests/tests") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != "rules_produced.rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

#[test]
fn every_rule_is_produced_by_a_test() {
    let mut produced: Vec<String> = fixture::names()
        .iter()
        .flat_map(|n| fixture::expected(n))
        .chain(VARIANTS.iter().flat_map(|v| v.findings.iter().map(|s| s.to_string())))
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect();
    produced.sort();
    produced.dedup();
    let e2e = awaited_in_end_to_end_tests();
    let awaited = |id: &str| {
        [
            format!("wait_for_finding(&daemon, \"{id}\""),
            format!("finding_where(&daemon, \"{id}\""),
            format!("[\"rule\"] == \"{id}\""),
        ]
            .iter()
            .any(|call| e2e.contains(call.as_str()))
    };
    let mut missing = Vec::new();
    for (rule, origin) in monitor::catalogue::rules() {
        let ok = match origin {
            // The audit about itself (a read that missed its deadline) needs a running daemon.
            Origin::Audit => produced.iter().any(|p| p == rule.id) || awaited(rule.id),
            _ => awaited(rule.id),
        };
        if !ok {
            missing.push(format!("{} ({})", rule.id, origin.as_str()));
        }
    }
    assert!(
        missing.is_empty(),
        "rules no test produces: {missing:?}. An audit rule needs a fixture record or a variant here; a detector rule an end-to-end test awaiting it."
    );
}
