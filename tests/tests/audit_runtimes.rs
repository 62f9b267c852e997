//! The audit of nodes whose kubelet runs pods through CRI-O or through dockerd and cri-dockerd
//! (`tests/fixtures/runtimes`): the cgroup driver of the runtime kubelet really uses, from its
//! files, drop-ins, flags and built-in defaults, against kubelet's, and which of the two
//! decides (KEP-4033). Each case has a healthy variant.

use std::path::PathBuf;

use monitor_tests::fixture_node::evidence_of as evidence;
use monitor::{
    audit::{Audit, AuditReport},
    node::{
        cri_facts::CriFacts,
        snapshot::{CriSource, SnapshotOptions},
    },
};

/// A copy of a runtime fixture node in a temporary directory, removed on drop.
struct Node {
    root: PathBuf,
    cri: CriFacts,
}

impl Node {
    /// The fixture, booted with systemd (`/run/systemd/system` is a directory).
    fn copy_of(fixture: &str, tag: &str) -> Node {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/runtimes").join(fixture);
        let root = std::env::temp_dir().join(format!("nrm-runtimes-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let status = std::process::Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp");
        assert!(status.success(), "copying {}", src.display());
        std::fs::create_dir_all(root.join("run/systemd/system")).expect("systemd as init");
        let text = std::fs::read_to_string(src.with_extension("cri.json")).expect("cri replay");
        Node { root, cri: CriFacts::from_json(&text).expect("cri replay parses") }
    }

    fn edit(&self, host_path: &str, edit: impl FnOnce(String) -> String) {
        let p = self.root.join(host_path.trim_start_matches('/'));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        std::fs::write(&p, edit(text)).expect("write");
    }

    fn remove(&self, host_path: &str) {
        let p = self.root.join(host_path.trim_start_matches('/'));
        if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) }.expect("remove");
    }

    fn audit(&self) -> AuditReport {
        let options = SnapshotOptions { cri: CriSource::Recorded(self.cri.clone()), ..Default::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(Audit::new(&self.root, options).run_once())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The findings of the rules these nodes are about, as `(rule, subject)`.
fn runtime_findings(report: &AuditReport) -> Vec<(String, String)> {
    let rules = ["cgroup-driver-mismatch", "sandbox-image-mismatch", "crio-conmon-cgroup-invalid", "config-unparsable", "config-unreadable"];
    let mut out: Vec<(String, String)> =
        report.findings.iter().filter(|f| rules.contains(&f.rule)).map(|f| (f.rule.to_string(), f.subject.clone())).collect();
    out.sort();
    out
}

fn mismatch(subject: &str) -> Vec<(String, String)> {
    vec![("cgroup-driver-mismatch".to_string(), subject.to_string())]
}

#[test]
fn crio_drop_in_to_cgroupfs_against_kubelet_systemd_with_the_gate_off() {
    let node = Node::copy_of("crio-cgroupfs-dropin", "crio-off");
    let report = node.audit();
    assert_eq!(runtime_findings(&report), mismatch("kubelet/cri-o"));
    let ev = evidence(&report, "cgroup-driver-mismatch");
    assert!(ev.contains("/var/lib/kubelet/config.yaml:12 | cgroupDriver: systemd"), "{ev}");
    assert!(ev.contains("decided by kubelet's /var/lib/kubelet/config.yaml:12: KubeletCgroupDriverFromCRI=false at /var/lib/kubelet/config.yaml:20"), "{ev}");
    assert!(ev.contains("/etc/crio/crio.conf.d/20-cgroupfs.conf:2 | cgroup_manager = cgroupfs"), "{ev}");
    assert!(ev.contains("unix:///var/run/crio/crio.sock (CRI RuntimeConfig) | runtime answers cgroup driver cgroupfs"), "{ev}");
    // The unit and its env file were read (and are watched).
    assert!(report.snapshot.watched.iter().any(|p| p.ends_with("crio.service")), "{:?}", report.snapshot.watched);
}

#[test]
fn crio_healthy_variants_kubelet_asks_the_runtime_or_the_drop_in_is_gone() {
    // The gate left at its default: kubelet (release unknown: on since 1.31) takes CRI-O's
    // RuntimeConfig answer, whatever its file says.
    let node = Node::copy_of("crio-cgroupfs-dropin", "crio-gate-default");
    node.edit("/var/lib/kubelet/config.yaml", |t| t.replace("featureGates:\n  KubeletCgroupDriverFromCRI: false\n", ""));
    assert_eq!(runtime_findings(&node.audit()), []);

    // The gate off but the drop-in removed: CRI-O's default (systemd since 1.18) agrees.
    let node = Node::copy_of("crio-cgroupfs-dropin", "crio-no-dropin");
    node.remove("/etc/crio/crio.conf.d/20-cgroupfs.conf");
    let mut cri = node.cri.clone();
    cri.sockets[0].cri_runtime_config = None;
    let node = Node { root: node.root.clone(), cri };
    assert_eq!(runtime_findings(&node.audit()), []);
}

#[test]
fn crio_flags_from_its_env_file_win_over_its_drop_ins() {
    // `--cgroup-manager` in /etc/sysconfig/crio (expanded into the unit's ExecStart) wins.
    let node = Node::copy_of("crio-cgroupfs-dropin", "crio-flag");
    node.edit("/etc/sysconfig/crio", |t| format!("{t}CRIO_RUNTIME_OPTIONS=\"--cgroup-manager=systemd\"\n"));
    let mut cri = node.cri.clone();
    cri.sockets[0].cri_runtime_config = None;
    let node = Node { root: node.root.clone(), cri };
    assert_eq!(runtime_findings(&node.audit()), []);
    // ... and its conmon_cgroup ("pod") still fits; "system.slice" with cgroupfs does not (1.30).
    node.edit("/etc/sysconfig/crio", |t| t.replace("--cgroup-manager=systemd", "--cgroup-manager=cgroupfs --conmon-cgroup=system.slice"));
    let report = node.audit();
    let found = runtime_findings(&report);
    assert!(found.contains(&("crio-conmon-cgroup-invalid".to_string(), "cri-o".to_string())), "{found:?}");
    let evidence: Vec<String> = report.findings.iter().filter(|f| f.rule == "crio-conmon-cgroup-invalid").flat_map(|f| f.evidence.iter().map(|e| e.source.clone())).collect();
    assert!(evidence.contains(&"/etc/sysconfig/crio:8".to_string()), "{evidence:?}");
}

#[test]
fn dockerd_through_cri_dockerd_not_its_own_containerd() {
    let node = Node::copy_of("docker-cri-dockerd", "docker");
    let report = node.audit();
    // Only dockerd is judged: Docker's containerd (cgroupfs, CRI disabled) is not kubelet's.
    assert_eq!(runtime_findings(&report), mismatch("kubelet/docker"));
    let ev = evidence(&report, "cgroup-driver-mismatch");
    assert!(ev.contains("/etc/docker/daemon.json:2 | native.cgroupdriver=cgroupfs"), "{ev}");
    assert!(ev.contains("answers RuntimeConfig Unimplemented: kubelet falls back to its own setting"), "{ev}");

    // Healthy: no exec-opts, dockerd 24's default on a cgroup v2 host booted by systemd.
    node.remove("/etc/docker/daemon.json");
    assert_eq!(runtime_findings(&node.audit()), []);
    // The same without systemd as init: dockerd's default is cgroupfs again.
    node.remove("/run/systemd/system");
    let report = node.audit();
    assert_eq!(runtime_findings(&report), mismatch("kubelet/docker"));
    let ev = evidence(&report, "cgroup-driver-mismatch");
    assert!(ev.contains("default (dockerd 24.0.7) | native.cgroupdriver not set: default cgroupfs (cgroup v2, init not systemd)"), "{ev}");
}
