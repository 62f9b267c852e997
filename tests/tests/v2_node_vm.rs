//! A real pure cgroup v2 node: this machine's kernel keeps the memory controller on v1, so this
//! test boots Debian's stock kernel in QEMU (`monitor_tests::vm`), mounts cgroup2 alone with the
//! memory, cpu and pids controllers, and runs the real daemon binary there, on a node laid out
//! as kubeadm, kubelet and containerd lay it out (`tests/vm/v2_node.sh`: kubeadm's files from
//! `fixtures/nodes/defaults-kubeadm`, kubelet's log directories, the cgroups of both kubelet
//! drivers). In one boot:
//!
//! - `memory-cgroup-smoke`: the OOM tests' helpers (`TestCgroup::memory`) use `memory.max` there,
//!   and the probes report the kill at the cgroup's limit;
//! - for the `systemd` driver, then the `cgroupfs` driver, each with a new daemon:
//!   kube-apiserver's container, re-created three times with new container ids, is OOM-killed at
//!   its `memory.max` each time; kube-scheduler's, re-created three times, is SIGKILLed by a
//!   process of `kubelet.service` each time; a process of `containerd.service`, restarted three
//!   times, is OOM-killed at the unit's `memory.max` each time. The daemon must name each owner
//!   (namespace/pod/container, static pod; the unit), raise `static-pod-restart-loop` and
//!   `host-service-restart-loop` with the right cause and `memory-limit-oom-kill` (each was
//!   killed at its own limit), and count each kill once in `kills_total`;
//! - under the `systemd` driver, kube-controller-manager's container held at a low `memory.high`
//!   without swap, a memory hog in it (writes to a tmpfs) throttled by the kernel: the daemon
//!   exports the pod's PSI (`memory_pressure_stalled_seconds_total`) and raises
//!   `control-plane-memory-pressure` with the figures, with no OOM kill; no kill of the run is
//!   missing from the probes' count against the kernel's `memory.events` and its node-wide
//!   `/proc/vmstat` (`oom_kills_missed_total` stays unserved);
//! - `cri-pod-smoke`: Debian's containerd, runc's v2 shim and runc run a pod through the CRI
//!   with kubelet's cgroupfs parent on v2, its container is OOM-killed at the `memory.max` runc
//!   wrote, and the daemon counts it under the names only the CRI knows. (runc's systemd driver
//!   needs a running systemd, which the VM has not: the systemd layout above is made by the
//!   script, named as runc's systemd driver names it.)
//!
//! Under QEMU's emulation (TCG, no KVM here) the VM boots in about 3 s (5 s with the root moved
//! to a tmpfs), each daemon serves within about 3 s, containerd serves CRI within about 3 s; the
//! whole VM runs about 80 s (the memory hog stalls about 5 s of it).

use std::{path::Path, time::Duration};

use monitor_tests::{daemon, vm::Initramfs};

// Within nextest's limit (5 min, .config/nextest.toml), so that a stuck VM's console is reported.
const LIMIT: Duration = Duration::from_secs(270);
const NODE: &str = "cp1";

/// kubeadm's node with kube-apiserver's manifest given the 32 MiB memory limit its container's
/// `memory.max` gets.
fn node_files(image: &Initramfs) {
    let kubeadm = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nodes/defaults-kubeadm");
    // Its configuration files (not its `proc/` and `usr/bin/`: the VM has its own processes
    // and binaries).
    for dir in ["etc", "usr/lib", "var"] {
        image.tree(&kubeadm.join(dir), &format!("/{dir}"));
    }
    let apiserver = std::fs::read_to_string(kubeadm.join("etc/kubernetes/manifests/kube-apiserver.yaml")).expect("manifest");
    let requests = "    resources:\n      requests:\n        cpu: 250m\n";
    assert!(apiserver.contains(requests), "kubeadm's kube-apiserver resources changed");
    let limited = apiserver.replace(requests, "    resources:\n      limits:\n        memory: 32Mi\n      requests:\n        cpu: 250m\n");
    image.file("/etc/kubernetes/manifests/kube-apiserver.yaml", limited);
    image.file("/etc/hostname", format!("{NODE}\n"));
    // The containers' and kubelet's programs: what they do is what the test needs of them
    // (a script's comm is its file name, as the kernel reports a real binary's).
    image.executable("/usr/local/bin/kube-apiserver", "#!/bin/sh\nexec dd if=/dev/zero of=/dev/null bs=256M count=1\n");
    image.executable("/usr/local/bin/kube-scheduler", "#!/bin/sh\nexec sleep 1000\n");
    // kubelet's kills: senders are told by their executable's name (a script's would be the
    // shell's), so kubelet here is procps's kill under kubelet's name.
    image.binary(Path::new("/bin/kill"), "/usr/bin/kubelet");
}

fn findings(console: &monitor_tests::vm::Console, driver: &str) -> Vec<serde_json::Value> {
    let body = console.section(&format!("findings-{driver}")).unwrap_or_else(|| panic!("no findings for {driver}:\n{}", console.report()));
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("/findings of {driver}: {e}:\n{body}"));
    json["findings"].as_array().cloned().unwrap_or_default()
}

fn finding<'a>(open: &'a [serde_json::Value], rule: &str, subject: &str) -> &'a serde_json::Value {
    open.iter()
        .find(|f| f["rule"] == rule && f["subject"] == subject)
        .unwrap_or_else(|| panic!("no {rule} about {subject}; open: {open:#?}"))
}

fn kills(metrics: &str, labels: &str) -> Option<f64> {
    let series = format!("node_runtime_monitor_kills_total{{{labels}}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

fn check_driver(console: &monitor_tests::vm::Console, driver: &str) {
    let report = console.report();
    for what in ["APISERVER", "SCHEDULER"] {
        let exits: Vec<&str> = console.text.lines().filter(|l| l.starts_with(&format!("{what} {driver} "))).collect();
        assert_eq!(exits.len(), 3, "{what} runs under {driver}:\n{report}");
        assert!(exits.iter().all(|l| l.ends_with("exit 137")), "{exits:?}");
    }
    let open = findings(console, driver);

    let apiserver = finding(&open, "static-pod-restart-loop", &format!("kube-system/kube-apiserver-{NODE}/kube-apiserver"));
    let title = apiserver["title"].as_str().unwrap_or_default();
    assert!(title.contains(&format!("kube-system/kube-apiserver-{NODE} (container kube-apiserver, static pod)")), "{driver}: {apiserver:#}");
    assert!(title.contains("restarted 3 times") && title.contains("most runs were killed by the OOM killer"), "{driver}: {apiserver:#}");
    let evidence = apiserver["evidence"].to_string();
    assert_eq!(evidence.matches("oom:mark_victim").count(), 3, "each run's OOM kill: {apiserver:#}");

    let unit = console.text.lines().filter(|l| l.starts_with(&format!("CONTAINERD-UNIT {driver} "))).collect::<Vec<_>>();
    assert!(unit.len() == 3 && unit.iter().all(|l| l.ends_with("exit 137")), "containerd.service's runs under {driver}: {unit:?}");
    let containerd = finding(&open, "host-service-restart-loop", "containerd.service");
    let title = containerd["title"].as_str().unwrap_or_default();
    assert!(title.contains("restarted 3 times") && title.contains("most runs were killed by the OOM killer"), "{driver}: {containerd:#}");
    assert_eq!(containerd["evidence"].to_string().matches("oom:mark_victim").count(), 3, "each run's OOM kill: {containerd:#}");

    let scheduler = finding(&open, "static-pod-restart-loop", &format!("kube-system/kube-scheduler-{NODE}/kube-scheduler"));
    let title = scheduler["title"].as_str().unwrap_or_default();
    assert!(title.contains("static pod") && title.contains("restarted 3 times"), "{driver}: {scheduler:#}");
    assert!(title.contains("killed by the kubelet or the container runtime, not by the OOM killer"), "{driver}: {scheduler:#}");

    // kubelet's and containerd's drivers agree in each layout.
    assert!(!open.iter().any(|f| f["rule"] == "cgroup-driver-mismatch"), "{driver}: {open:#?}");
    // Each was killed at its own memory.max, not because the node ran out: their limits, not
    // the node's reservations, are what the findings blame.
    for victim in [format!("kube-system/kube-apiserver-{NODE}/kube-apiserver"), "containerd.service".to_string()] {
        let killed = finding(&open, "memory-limit-oom-kill", &victim).to_string();
        assert!(killed.contains("oom:mark_victim"), "{driver}: {killed}");
        assert!(killed.contains("reached its limit of 32Mi"), "{driver}: {killed}");
    }
    assert!(!open.iter().any(|f| f["rule"] == "memory-reservations-misconfigured"), "{driver}: {open:#?}");

    let metrics = console.section(&format!("metrics-{driver}")).unwrap_or_else(|| panic!("no metrics for {driver}:\n{report}"));
    let expected = [
        (format!(r#"namespace="kube-system",pod="kube-apiserver-{NODE}",container="kube-apiserver",service="",static_pod="true",cause="oom",sender="kernel",constraint="memory_cgroup""#), 3.0),
        (format!(r#"namespace="kube-system",pod="kube-scheduler-{NODE}",container="kube-scheduler",service="",static_pod="true",cause="signal",sender="kubelet",constraint="""#), 3.0),
        (r#"namespace="",pod="",container="",service="containerd.service",static_pod="false",cause="oom",sender="kernel",constraint="memory_cgroup""#.to_string(), 3.0),
    ];
    for (labels, count) in &expected {
        assert_eq!(kills(&metrics, labels), Some(*count), "{driver}: kills_total{{{labels}}}:\n{metrics}");
    }
    let memory_pressure = |scope_labels: &str| {
        let series = format!("node_runtime_monitor_memory_pressure_stalled_seconds_total{{kind=\"full\",{scope_labels}}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok())
    };
    assert!(memory_pressure(r#"scope="node",namespace="",pod="",service="""#).is_some(), "{driver}: the node's PSI:\n{metrics}");
    // Every kill the kernel counted, in the workloads' memory cgroups and on the node, came
    // through the probes.
    // The apiserver's container has memory.oom.group set, as kubelet sets it: the kernel counts
    // each victim twice and logs it twice, and neither is taken for a missed kill.
    assert!(!metrics.contains("oom_kills_missed_total{"), "{driver}: {metrics}");
    assert!(metrics.lines().any(|l| l == "node_runtime_monitor_oom_reports_unmatched_total 0"), "{driver}: {metrics}");
    let pressure_findings: Vec<&serde_json::Value> = open.iter().filter(|f| f["rule"] == "control-plane-memory-pressure").collect();
    let controller_manager = format!("kube-system/kube-controller-manager-{NODE}");
    if driver == "systemd" {
        let hog = console.line("HOG systemd").unwrap_or_else(|| panic!("the memory hog did not finish:\n{report}"));
        assert!(hog.ends_with("exit 0"), "stalled, never killed: {hog}");
        let stalled = memory_pressure(&format!(r#"scope="pod",namespace="kube-system",pod="kube-controller-manager-{NODE}",service="""#));
        assert!(stalled.is_some_and(|s| s > 1.0), "{driver}: the pod's full stall, seconds: {stalled:?}\n{metrics}");
        let finding = pressure_findings.iter().find(|f| f["subject"] == controller_manager.as_str()).unwrap_or_else(|| panic!("no pressure finding: {open:#?}"));
        assert_eq!(finding["severity"], "warning", "{finding:#}");
        let title = finding["title"].as_str().unwrap_or_default();
        assert!(title.contains(&format!("{controller_manager} (static pod) was fully stalled on memory")), "{finding:#}");
        let evidence = finding["evidence"].to_string();
        assert!(evidence.contains("full avg10=") && evidence.contains("avg60=") && evidence.contains(" s stalled in "), "{finding:#}");
        eprintln!("{driver}: {title}\n{}", console.section("pressure-systemd").unwrap_or_default());
    }
    // None where nothing stalls: kube-scheduler sleeps. (kube-apiserver's OOM kills may stall
    // it in reclaim first: that is pressure too, not asserted either way.)
    let scheduler = format!("kube-system/kube-scheduler-{NODE}");
    assert!(!pressure_findings.iter().any(|f| f["subject"] == scheduler.as_str()), "{driver}: {pressure_findings:#?}");
    let all_kills: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("node_runtime_monitor_kills_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(all_kills, 9.0, "{driver}: no other kill counted, none twice:\n{metrics}");
}

#[test]
fn on_a_pure_cgroup_v2_node_kills_are_attributed_under_both_kubelet_drivers() {
    let image = Initramfs::new();
    image.binary(&daemon::binary(), "/usr/bin/node-runtime-monitor");
    image.binary(Path::new(env!("CARGO_BIN_EXE_memory-cgroup-smoke")), "/bin/memory-cgroup-smoke");
    image.file("/etc/nrm/v2_node.sh", include_str!("../vm/v2_node.sh"));
    // Debian's containerd, its runc shim and runc; GNU tar and ctr build and import the image.
    image.binary(Path::new(env!("CARGO_BIN_EXE_cri-pod-smoke")), "/bin/cri-pod-smoke");
    for binary in ["/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc", "/usr/bin/ctr", "/usr/bin/tar"] {
        image.binary(Path::new(binary), binary);
    }
    node_files(&image);
    let init = format!(
        "hostname {NODE}\n\
         . /etc/nrm/v2_node.sh\n\
         cgroup_v2 || echo 'NO CGROUP2'\n\
         section mounts grep cgroup /proc/mounts\n\
         section controllers cat /sys/fs/cgroup/cgroup.controllers\n\
         stamp smoke-start\n\
         /bin/memory-cgroup-smoke; echo \"SMOKE EXIT $?\"\n\
         stamp smoke-done\n\
         node_run systemd\n\
         node_run cgroupfs\n\
         cri_run\n"
    );
    let console = image.boot(&init, "2G", LIMIT);
    let report = console.report();
    let stamps: Vec<String> = console.text.lines().filter(|l| l.starts_with("T ")).map(str::to_string).collect();
    eprintln!("VM ran {:?} (TCG); uptime stamps: {stamps:?}", console.elapsed);
    assert!(console.text.contains("INIT DONE"), "the VM did not finish:\n{report}");

    // A pure v2 node: one cgroup2 mount, no v1 hierarchy, the controllers kubelet needs.
    let mounts = console.section("mounts").unwrap_or_default();
    let cgroup_mounts: Vec<&str> = mounts.lines().filter(|l| !l.is_empty()).collect();
    assert!(matches!(cgroup_mounts[..], [mount] if mount.starts_with("cgroup2 /sys/fs/cgroup cgroup2 ")), "{mounts}\n{report}");
    let controllers = console.section("controllers").unwrap_or_default();
    for controller in ["memory", "cpu", "pids"] {
        assert!(controllers.split_whitespace().any(|c| c == controller), "{controllers}");
    }
    // The OOM tests' helpers on v2.
    let smoke = console.line("MEMCG OK").unwrap_or_else(|| panic!("memory-cgroup-smoke failed:\n{report}"));
    assert!(smoke.contains("layout=v2 memory.max=33554432 oom_kill=1 constraint=memory_cgroup"), "{smoke}");
    assert!(console.text.contains("SMOKE EXIT 0"), "{report}");

    for driver in ["systemd", "cgroupfs"] {
        check_driver(&console, driver);
    }
    assert_eq!(console.text.matches("DAEMON EXIT 0").count(), 3, "each daemon stopped cleanly on SIGTERM:\n{report}");
    // Real containerd and runc on v2, the daemon naming the container by the CRI.
    let cri = console.line("CRI OK").unwrap_or_else(|| panic!("the CRI pod failed:\n{report}"));
    assert!(cri.contains("cgroup=/kubepods/burstable/pod6f1c9a52-3e0b-4d7a-9c85-2b4e7d1a0f36/"), "{cri}");
    assert!(cri.contains("memory.max=33554432 oom_kill=1 kills_total=1"), "{cri}");
    eprintln!("{cri}");
}
