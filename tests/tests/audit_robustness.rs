//! The audit on broken nodes: garbage, truncated, huge and unreadable files never panic and
//! each becomes a finding; credentials planted in the node's files never reach the report.

use monitor::{audit::AuditReport, exporters::check_report as report};
use monitor_tests::fixture_node::FixtureNode;

fn has(report: &AuditReport, rule: &str, subject: &str) -> bool {
    report.findings.iter().any(|f| f.rule == rule && f.subject == subject)
}

const CONTAINERD: &str = "/etc/containerd/config.toml";
const KUBELET: &str = "/var/lib/kubelet/config.yaml";
const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

#[test]
fn garbage_files_are_unparsable_findings() {
    let node = FixtureNode::copy_of("healthy-kubeadm-containerd17", "garbage");
    node.write(CONTAINERD, "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n  sandbox_image = ");
    node.write(KUBELET, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: [systemd\n");
    node.write(MANIFEST, "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n");
    let r = node.audit();
    let text = report::text(&r, false);
    assert!(has(&r, "config-unparsable", CONTAINERD), "{text}");
    assert!(has(&r, "config-unparsable", KUBELET), "{text}");
    assert!(has(&r, "config-unparsable", MANIFEST), "{text}");
    let f = r.findings.iter().find(|f| f.subject == CONTAINERD).expect("containerd finding");
    assert_eq!(f.evidence[0].source, "/etc/containerd/config.toml:2", "{text}");
    assert_eq!(report::exit_code(&r.findings), 2);
}

#[test]
fn binary_truncated_and_deep_files_never_panic() {
    let node = FixtureNode::copy_of("healthy-kubeadm-containerd17", "binary");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    node.write(CONTAINERD, &bytes);
    node.write(KUBELET, "a:".repeat(100_000));
    node.write(MANIFEST, "[".repeat(200_000));
    node.write("/etc/containerd/conf.d/deep.toml", "a=".to_string() + &"[".repeat(100_000));
    node.write("/proc/meminfo", "MemTotal: lots");
    node.write("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS=\"--unterminated \\\n");
    let r = node.audit();
    let text = report::text(&r, false);
    assert!(has(&r, "config-unreadable", CONTAINERD), "not UTF-8 text: {text}");
    assert!(has(&r, "config-unparsable", KUBELET), "{text}");
    assert!(has(&r, "config-unparsable", MANIFEST), "{text}");
    assert!(has(&r, "config-unreadable", "/proc/meminfo"), "{text}");
    // Truncated to nothing: an empty containerd config is valid (defaults), kubelet's too.
    let node = FixtureNode::copy_of("healthy-kubeadm-containerd17", "empty");
    node.write(CONTAINERD, "");
    node.write(KUBELET, "");
    let r = node.audit();
    assert!(r.findings.iter().all(|f| f.rule != "config-unparsable"), "{}", report::text(&r, false));
    assert!(has(&r, "memory-reservation-missing", KUBELET));
}

#[test]
fn huge_and_unreadable_files_are_findings() {
    let node = FixtureNode::copy_of("healthy-kubeadm-containerd17", "huge");
    let mut huge = String::from("version = 2\n");
    while huge.len() < 5 * 1024 * 1024 {
        huge.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    node.write(CONTAINERD, huge);
    // A directory where a file should be: read fails even for root (chmod 000 does not stop root).
    std::fs::remove_file(node.root.join(KUBELET.trim_start_matches('/'))).expect("rm");
    std::fs::create_dir_all(node.root.join(KUBELET.trim_start_matches('/'))).expect("mkdir");
    let r = node.audit();
    let text = report::text(&r, false);
    // The huge file stopped at the size limit: read no further than it and not parsed (the
    // file error says so), rather than timed, which would depend on the machine's load.
    let huge = r.findings.iter().find(|f| f.rule == "config-unreadable" && f.subject == CONTAINERD).unwrap_or_else(|| panic!("{text}"));
    let details: Vec<&str> = huge.evidence.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, [format!("{CONTAINERD}: larger than 4194304 bytes, not parsed")], "{text}");
    assert!(!has(&r, "config-unparsable", CONTAINERD), "{text}");
    assert!(has(&r, "config-unreadable", KUBELET), "{text}");
}

#[test]
fn credentials_never_reach_the_report() {
    let node = FixtureNode::copy_of("incident4-kubespray-containerd2-v3", "secrets");
    let config = std::fs::read_to_string(node.root.join("etc/containerd/config.toml")).expect("read");
    let planted = format!(
        "{config}\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"registry.corp.example:5000\".auth]\n  username = \"robot$deployer-u53r\"\n  password = \"Pa55w0rd-planted-1\"\n  auth = \"cm9ib3Q6cGxhbnRlZC1hdXRoLTI=\"\n  identitytoken = \"idtok-planted-3\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"registry.corp.example:5000\".tls]\n  key_file = \"/etc/containerd/certs/client.key\"\n"
    );
    node.write(CONTAINERD, planted);
    node.write(
        "/etc/kubernetes/kubelet.env",
        std::fs::read_to_string(node.root.join("etc/kubernetes/kubelet.env")).expect("read")
            + "KUBELET_EXTRA_ARGS=\"--token=tok-planted-4 --registry-password=Pa55-planted-5\"\n",
    );
    // The kubelet process line too (this is where the flags are read from when it runs).
    let cmdline = std::fs::read(node.root.join("proc/1201/cmdline")).expect("cmdline");
    node.write("/proc/1201/cmdline", [cmdline, b"--token=tok-planted-6\0".to_vec()].concat());
    // A kubelet config that breaks on a line holding a secret value.
    let cfg = node.root.join("etc/kubernetes/kubelet-config.yaml");
    let broken = std::fs::read_to_string(&cfg).expect("read") + "staticPodURLHeader: {Authorization: [\"Bearer tok-planted-7\"]\n";
    node.write("/etc/kubernetes/kubelet-config.yaml", broken);
    // And an imported containerd drop-in that does not parse, with a secret on the bad line.
    let with_import = std::fs::read_to_string(node.root.join("etc/containerd/config.toml")).expect("read")
        .replacen("version = 3\n", "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", 1);
    node.write(CONTAINERD, with_import);
    node.write("/etc/containerd/conf.d/50-auth.toml", "[x]\npassword = \"Pa55-planted-8\" trailing garbage\n");
    let r = node.audit();
    let json = report::json(&r);
    let text = report::text(&r, false);
    assert!(has(&r, "config-unparsable", "/etc/containerd/conf.d/50-auth.toml"), "{text}");
    assert!(has(&r, "config-unparsable", "/etc/kubernetes/kubelet-config.yaml"), "{text}");
    for secret in [
        "robot$deployer-u53r", "Pa55w0rd-planted-1", "cm9ib3Q6cGxhbnRlZC1hdXRoLTI=", "idtok-planted-3", "tok-planted-4",
        "Pa55-planted-5", "tok-planted-6", "tok-planted-7", "Pa55-planted-8", "planted",
    ] {
        assert!(!json.contains(secret), "{secret} leaked into JSON:\n{json}");
        assert!(!text.contains(secret), "{secret} leaked into text:\n{text}");
    }
    // The findings are still there: redaction hides values, not problems.
    assert!(has(&r, "containerd-config-tables-ignored", CONTAINERD), "{text}");
}

#[test]
fn names_the_node_chose_reach_the_report_cut_and_without_control_characters() {
    // A manifest whose file name holds a terminal escape, a newline (a forged report line) and
    // is longer than a subject may be: it does not parse, and its path is the finding's subject.
    let node = FixtureNode::copy_of("healthy-kubeadm-containerd17", "control-chars");
    let name = format!("evil\x1b[2J\n[critical] forged{}.yaml", "x".repeat(220));
    node.write(&format!("/etc/kubernetes/manifests/{name}"), "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n");
    let r = node.audit();
    let text = report::text(&r, false);
    let json = report::json(&r);
    let f = r.findings.iter().find(|f| f.rule == "config-unparsable" && f.subject.contains("evil")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(f.subject.chars().count(), monitor::findings::MAX_SUBJECT_CHARS, "{:?}", f.subject);
    assert!(f.subject.starts_with("/etc/kubernetes/manifests/evil[2J[critical] forged") && f.subject.ends_with('…'), "{:?}", f.subject);
    for (name, shown) in [("text", &text), ("json", &json)] {
        assert!(!shown.contains('\x1b') && !shown.contains("\n[critical] forged"), "{name}:\n{shown}");
    }
}
