//! `check` against a real containerd (Debian's 1.6.20) started by the test with varied
//! configs: it reports the CRI API versions the socket serves, the release, and the cgroup
//! driver and sandbox image the runtime itself says it uses, and it flags a mismatch with
//! kubelet's cgroup driver from the runtime's own answer. containerd 1.6 predates the CRI
//! `RuntimeConfig` call (KEP-4033): it answers Unimplemented, so kubelet keeps its own driver
//! and the audit says that this decided.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor::{
    audit::Audit,
    exporters::check_report as report,
    node::{cri_facts::RuntimeConfigAnswer, snapshot::SnapshotOptions},
};

/// A containerd serving its socket at `<host root>/run/containerd/containerd.sock`.
struct Containerd {
    child: Child,
    dir: PathBuf,
}

impl Containerd {
    fn start(name: &str, config_body: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nrm-cd-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let host = dir.join("host");
        fs::create_dir_all(host.join("run/containerd")).expect("host root");
        fs::create_dir_all(host.join("etc/containerd")).expect("etc");
        // Top-level keys first (TOML scoping), the body's tables, then our addresses.
        let config = format!(
            "root = \"{d}/root\"\nstate = \"{d}/state\"\n{config_body}\n[grpc]\n  address = \"{d}/host/run/containerd/containerd.sock\"\n[ttrpc]\n  address = \"{d}/ttrpc.sock\"\n",
            d = dir.display()
        );
        fs::write(host.join("etc/containerd/config.toml"), &config).expect("write config");
        let log = fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(host.join("etc/containerd/config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let socket = host.join("run/containerd/containerd.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not serve {}: {}", socket.display(), fs::read_to_string(dir.join("containerd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir }
    }

    fn host_root(&self) -> PathBuf {
        self.dir.join("host")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn kubelet_config(root: &Path, driver: &str) {
    fs::create_dir_all(root.join("var/lib/kubelet")).expect("kubelet dir");
    fs::write(
        root.join("var/lib/kubelet/config.yaml"),
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: {driver}\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\nsystemReserved:\n  memory: 512Mi\nkubeReserved:\n  memory: 512Mi\nevictionHard:\n  memory.available: 100Mi\n"
        ),
    )
    .expect("kubelet config");
}

fn run(root: &Path) -> monitor::audit::AuditReport {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(Audit::new(root, SnapshotOptions::default()).run_once())
}

const V2_SYSTEMD: &str = r#"version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"#;

/// What Kubespray generated in incident 4: a version 3 header on a version 2 body. 1.6.20
/// reads it as version 2 (it predates the refusal added in 1.6.32).
const V3_HEADER_V2_BODY: &str = r#"version = 3
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"#;

#[test]
fn live_containerd_reports_versions_release_and_the_driver_it_really_uses() {
    let containerd = Containerd::start("systemd", V2_SYSTEMD);
    let root = containerd.host_root();
    kubelet_config(&root, "systemd");
    let report = run(&root);
    let socket = report.snapshot.cri.sockets.iter().find(|s| s.exists).expect("the socket was asked");
    let identity = socket.runtime().expect("it answered Version");
    assert_eq!(identity.runtime_name, "containerd");
    assert!(identity.runtime_version.starts_with("1.6."), "{identity:?}");
    assert!(matches!(socket.v1, monitor::node::cri_facts::ApiAnswer::Served(_)), "1.6 serves runtime.v1: {:?}", socket.v1);
    assert!(matches!(socket.v1alpha2, monitor::node::cri_facts::ApiAnswer::Served(_)), "and runtime.v1alpha2");
    assert_eq!(socket.systemd_cgroup(), Some(true), "the runtime's own config says SystemdCgroup = true");
    assert_eq!(socket.sandbox_image(), Some("registry.k8s.io/pause:3.9"));
    assert!(report.snapshot.containerd_release_text().as_deref().is_some_and(|r| r.contains("CRI Version")), "{:?}", report.snapshot.containerd_release_text());
    let json = report::json(&report);
    assert!(json.contains("\"cgroup_driver\": \"systemd\""), "{json}");
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    assert!(!rules.contains(&"cgroup-driver-mismatch"), "drivers agree: {rules:?}");
}

#[test]
fn live_containerd_with_a_mismatched_driver_is_flagged_from_its_own_answer() {
    let containerd = Containerd::start("cgroupfs", V3_HEADER_V2_BODY);
    let root = containerd.host_root();
    kubelet_config(&root, "systemd");
    let report = run(&root);
    let socket = report.snapshot.cri.sockets.iter().find(|s| s.exists).expect("the socket was asked");
    assert_eq!(socket.systemd_cgroup(), Some(false), "1.6.20 read the version 3 file as version 2: cgroupfs");
    assert!(
        matches!(socket.cri_runtime_config, Some(RuntimeConfigAnswer::Unimplemented { .. })),
        "containerd 1.6 predates RuntimeConfig: {:?}",
        socket.cri_runtime_config
    );
    let mismatch = report.findings.iter().find(|f| f.rule == "cgroup-driver-mismatch");
    let mismatch = mismatch.unwrap_or_else(|| panic!("kubelet systemd vs runtime cgroupfs: {:#?}", report.findings));
    let evidence: Vec<String> = mismatch.evidence.iter().map(|e| format!("{} | {}", e.source, e.detail)).collect();
    assert!(
        evidence.iter().any(|e| e.contains("decided by kubelet's /var/lib/kubelet/config.yaml:3")
            && e.contains("answers RuntimeConfig Unimplemented: kubelet falls back to its own setting")),
        "{evidence:#?}"
    );
    let json = report::json(&report);
    assert!(json.contains("\"cgroup_driver\": \"cgroupfs\""), "{json}");
}

/// `/etc/containerd/config.toml` as Docker's containerd.io package ships it (docker/containerd-packaging,
/// `common/containerd.toml`): the CRI plugin disabled, everything else default.
const DOCKER_CONTAINERD_IO: &str = r#"#   Copyright 2018-2022 Docker Inc.

#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.

disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
#state = "/run/containerd"
#subreaper = true
#oom_score = 0

#[grpc]
#  address = "/run/containerd/containerd.sock"
#  uid = 0
#  gid = 0

#[debug]
#  address = "/run/containerd/debug.sock"
#  uid = 0
#  gid = 0
#  level = "info"
"#;

fn check_exit_code(root: &Path) -> (Option<i32>, String) {
    let out = Command::new(monitor_tests::daemon::binary())
        .args(["check", "--color", "never", "--host-root"])
        .arg(root)
        .output()
        .expect("run check");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn dockers_containerd_without_cri_is_no_cri_finding_until_a_cri_client_uses_it() {
    let containerd = Containerd::start("docker", DOCKER_CONTAINERD_IO);
    let root = containerd.host_root();
    let report = run(&root);
    let socket = report.snapshot.cri.sockets.iter().find(|s| s.exists).expect("the socket was asked");
    assert!(
        matches!(socket.v1, monitor::node::cri_facts::ApiAnswer::Unimplemented { .. }),
        "the CRI plugin is disabled: {:?}",
        socket.v1
    );
    assert!(report.findings.is_empty(), "no CRI client uses this socket: {:#?}", report.findings);
    let (code, text) = check_exit_code(&root);
    assert_eq!(code, Some(0), "a Docker host without Kubernetes is healthy:\n{text}");

    // crictl pointed at it (a user's /etc/crictl.yaml): now a CRI client fails there.
    fs::write(root.join("etc/crictl.yaml"), "runtime-endpoint: unix:///var/run/containerd/containerd.sock\n").expect("crictl.yaml");
    let report = run(&root);
    let rules: Vec<(&str, &str)> = report.findings.iter().map(|f| (f.rule, f.subject.as_str())).collect();
    assert_eq!(rules, vec![("cri-v1-unavailable", "unix:///run/containerd/containerd.sock")], "{:#?}", report.findings);
    let evidence = format!("{:?}", report.findings[0].evidence);
    assert!(evidence.contains("/etc/crictl.yaml:1") && evidence.contains("crictl uses"), "{evidence}");
    let (code, text) = check_exit_code(&root);
    assert_eq!(code, Some(1), "a warning:\n{text}");
}
