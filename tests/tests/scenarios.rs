//! Scenarios: the whole daemon, real kernel events, host-level reproductions of the incidents
//! in docs/INCIDENTS.md, and exactly the findings expected (none on a busy healthy host).
//! These tests run alone (see .config/nextest.toml): the daemon judges the whole host.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::{Duration, Instant},
};

use monitor_tests::{
    cgroups::{TestCgroup, spawn_in},
    daemon::{Daemon, findings, metric_value, wait_for_finding, wait_for_finding_where, wait_for_metric},
};

const PYTHON: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(30);
/// Short windows so that loops of a few seconds count; the defaults are minutes.
const ARGS: [&str; 4] = ["--loop-window-seconds", "120", "--finding-quiet-seconds", "600"];

fn rules_and_subjects(daemon: &Daemon) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = findings(daemon)
        .iter()
        .map(|f| (f["rule"].as_str().unwrap_or("").to_string(), f["subject"].as_str().unwrap_or("").to_string()))
        .collect();
    all.sort();
    all
}

/// Waits for each expected (rule, subject) finding (the audit's come on its own schedule),
/// then asserts the open findings are exactly these.
fn expect_exactly(daemon: &Daemon, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected.iter().map(|(r, s)| (r.to_string(), s.to_string())).collect();
    for (rule, subject) in &expected {
        wait_for_finding(daemon, rule, subject, WAIT);
    }
    assert_eq!(rules_and_subjects(daemon), expected);
}

fn run(script: &str, tree: &TestCgroup) {
    let mut child = spawn_in(Command::new("/bin/sh").args(["-c", script]), &[tree]);
    let _ = child.wait();
}

#[test]
fn incident1_bootstrap_keeps_failing_on_a_missing_crictl() {
    let daemon = Daemon::start(&ARGS);
    let tree = TestCgroup::v2("incident1");
    // nodeup-like: the bootstrap retries a step that needs crictl, which is not installed.
    let crictl = format!("/opt/nrm-{}/usr/local/bin/crictl", std::process::id());
    // Five tries 0.6 s apart: the third opens the finding, the fifth refreshes it (an open loop
    // is reported again at most once a second).
    run(&format!("for i in 1 2 3 4 5; do {crictl} info 2>/dev/null; sleep 0.6; done; exit 0"), &tree);
    // Refreshed by the fifth failure: the finding is updated after the third one opened it, so
    // wait for the refresh rather than look once.
    let refreshed = |f: &serde_json::Value| f["count"].as_u64().unwrap_or(0) >= 2;
    let finding = wait_for_finding_where(&daemon, "exec-failure-loop", &crictl, WAIT, refreshed);
    assert!(finding["title"].as_str().unwrap_or("").contains("does not exist (ENOENT)"), "{finding:#}");
    assert!(finding["remediation"].as_str().unwrap_or("").contains("asset cache"), "{finding:#}");
    assert_eq!(finding["severity"], "warning");
    assert_eq!(rules_and_subjects(&daemon), vec![("exec-failure-loop".to_string(), crictl)]);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn incident2_client_keeps_connecting_to_a_missing_cri_dockerd_socket() {
    // The node's configuration as KubeKey left it (kubelet pointed at cri-dockerd on a
    // containerd node), and a client on this host that keeps trying that socket.
    let root = format!("{}/fixtures/nodes/incident2-kubekey-cri-dockerd", env!("CARGO_MANIFEST_DIR"));
    let mut args = ARGS.to_vec();
    args.extend(["--host-root", root.as_str()]);
    let daemon = Daemon::start(&args);
    let tree = TestCgroup::v2("incident2");
    let socket = "/var/run/cri-dockerd.sock";
    assert!(!std::path::Path::new(socket).exists(), "this scenario needs {socket} absent");
    let script = format!(
        "{PYTHON} -c \"import socket, time\nfor i in range(4):\n    s = socket.socket(socket.AF_UNIX)\n    s.connect_ex('{socket}')\n    time.sleep(0.2)\n\""
    );
    run(&script, &tree);
    let subject = format!("unix:{socket}");
    let finding = wait_for_finding(&daemon, "connect-failure-loop", &subject, WAIT);
    assert_eq!(finding["severity"], "critical");
    assert!(finding["title"].as_str().unwrap_or("").contains("(ENOENT)"), "{finding:#}");
    let evidence = finding["evidence"].to_string();
    assert!(evidence.contains("python3"), "names the client: {evidence}");
    assert!(
        finding["remediation"].as_str().unwrap_or("").contains("unix:///var/run/cri-dockerd.sock"),
        "names the endpoint the node is configured with: {finding:#}"
    );
    // With the audit's view of the same node: the endpoint kubelet uses is missing and the
    // shim it names is a leftover.
    expect_exactly(&daemon, &[
        ("connect-failure-loop", subject.as_str()),
        ("runtime-endpoint-missing", "unix:///var/run/cri-dockerd.sock"),
        ("runtime-shim-unused", "cri-dockerd"),
    ]);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn a_host_service_that_keeps_failing_is_a_restart_loop_with_each_runs_exit() {
    let daemon = Daemon::start(&ARGS);
    let tree = TestCgroup::v2("restart");
    let dir = std::env::temp_dir().join(format!("nrm-svc-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let binary = dir.join("kubelet");
    fs::copy("/bin/false", &binary).expect("copy /bin/false");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod");
    // A supervisor restarting a binary that fails at once (systemd Restart=always).
    run(&format!("for i in 1 2 3; do {}; sleep 0.3; done; exit 0", binary.display()), &tree);
    let subject = binary.display().to_string();
    let finding = wait_for_finding(&daemon, "host-service-restart-loop", &subject, WAIT);
    let evidence = finding["evidence"].as_array().cloned().unwrap_or_default();
    assert_eq!(evidence.len(), 3, "one line per run: {finding:#}");
    for line in &evidence {
        assert!(line["detail"].as_str().unwrap_or("").contains("exited with code 1"), "{line:#}");
    }
    assert_eq!(rules_and_subjects(&daemon), vec![("host-service-restart-loop".to_string(), subject)]);
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_oom_killed_workload_is_counted_as_an_oom_kill_and_a_sigkill_is_not() {
    let daemon = Daemon::start(&ARGS);
    let tree = TestCgroup::v2("oom-count");
    let memcg = TestCgroup::memory("nrm-scenario-oom", 40 << 20);
    let mut hog = spawn_in(
        Command::new(PYTHON).args(["-c", "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"]),
        &[&tree, &memcg],
    );
    let _ = hog.wait();
    let mut sleeper = spawn_in(Command::new("/bin/sleep").arg("60"), &[&tree]);
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(sleeper.id() as i32, libc::SIGKILL) };
    let _ = sleeper.wait();
    let kills = "node_runtime_monitor_kills_total";
    wait_for_metric(&daemon, kills, &["cause=\"oom\"", "constraint=\"memory_cgroup\"", "python3"], |v| v == 1.0, WAIT);
    wait_for_metric(&daemon, kills, &["cause=\"signal\"", "sleep"], |v| v == 1.0, WAIT);
    let metrics = daemon.get("/metrics").unwrap_or_default();
    assert!(metric_value(&metrics, kills, &["cause=\"oom\"", "sleep"]).is_none(), "{metrics}");
    assert_eq!(rules_and_subjects(&daemon), Vec::<(String, String)>::new(), "a workload's OOM kill is counted, not a finding");
    assert_eq!(daemon.stop(), Some(0));
}

/// A process's name is no proof of who it is: a `kill -9` from a copy of `kill` named
/// `containerd-shim`, and from an interpreter that renamed itself so (`prctl(PR_SET_NAME)`),
/// both in an ordinary cgroup, are counted `sender="other"`, never as the runtime's shim.
#[test]
fn a_process_that_only_calls_itself_a_shim_is_counted_as_other() {
    let daemon = Daemon::start(&ARGS);
    let tree = TestCgroup::v2("fake-shim");
    let dir = std::env::temp_dir().join(format!("nrm-fake-shim-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("containerd-shim");
    fs::copy("/bin/kill", &copy).expect("copy /bin/kill");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut victim = spawn_in(Command::new("/bin/sleep").arg("61"), &[&tree]);
    std::thread::sleep(Duration::from_millis(100));
    let killer = spawn_in(Command::new(&copy).args(["-9", &victim.id().to_string()]), &[&tree]).wait_with_output();
    assert!(killer.expect("the copy ran").status.success());
    let _ = victim.wait();

    let mut victim = spawn_in(Command::new("/bin/sleep").arg("62"), &[&tree]);
    std::thread::sleep(Duration::from_millis(100));
    let renamed = format!("import ctypes, os\nctypes.CDLL(None).prctl(15, b'containerd-shim', 0, 0, 0)\nos.kill({}, 9)\n", victim.id());
    let mut killer = spawn_in(Command::new(PYTHON).args(["-c", &renamed]), &[&tree]);
    assert!(killer.wait().expect("wait").success());
    let _ = victim.wait();

    let kills = "node_runtime_monitor_kills_total";
    wait_for_metric(&daemon, kills, &["service=\"process:sleep\"", "cause=\"signal\"", "sender=\"other\""], |v| v >= 2.0, WAIT);
    let metrics = daemon.get("/metrics").unwrap_or_default();
    assert!(!metrics.contains("sender=\"containerd_shim\""), "{metrics}");
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_busy_healthy_host_gets_no_findings() {
    let daemon = Daemon::start(&ARGS);
    let tree = TestCgroup::v2("noise");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            drop(stream);
        }
    });
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(60) {
        round += 1;
        // Normal work: execs that succeed, loopback connects that succeed, a few processes
        // that exit non-zero once each (different binaries), one refused connect to a
        // control-plane port, one failed exec of a path never tried again.
        let once = match round {
            5 => format!("/opt/nrm-noise-{round}/tool 2>/dev/null;"),
            9 => format!("{PYTHON} -c \"import socket; socket.socket().connect_ex(('127.0.0.1', 6443))\";"),
            13 => "ls /nonexistent-nrm 2>/dev/null;".to_string(),
            17 => "grep -q nothing /dev/null;".to_string(),
            _ => String::new(),
        };
        let script = format!(
            "for i in 1 2 3 4 5; do /bin/true; done; ls / >/dev/null; {once} {PYTHON} -c \"import socket; socket.create_connection(('127.0.0.1', {port})).close()\"; exit 0"
        );
        run(&script, &tree);
        std::thread::sleep(Duration::from_millis(500));
    }
    // The daemon saw the activity (the last round's execs may still be on their way).
    let least = (round * 8) as f64;
    wait_for_metric(&daemon, "node_runtime_monitor_events_total", &["kind=\"exec\""], |execs| execs >= least, Duration::from_secs(10));
    assert_eq!(rules_and_subjects(&daemon), Vec::<(String, String)>::new(), "no finding on a healthy host");
    assert_eq!(daemon.stop(), Some(0));
}

fn daemon_memory_kib(daemon: &Daemon, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Documented in README (Reliability): the daemon's resident memory stays under this bound
/// whatever the event rate, because every cache and queue is bounded.
const RSS_BOUND_KIB: u64 = 64 * 1024;

#[test]
fn floods_keep_memory_bounded_and_every_loss_is_counted() {
    // A ring buffer of one page: a storm must overflow it, and each loss must be counted.
    let daemon = Daemon::start(&["--ring-buffer-bytes", "4096", "--event-queue", "64"]);
    let tree = TestCgroup::v2("flood");
    const EXECS: u32 = 3000;
    run(&format!("i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done"), &tree);
    let flood = "import socket\nfor i in range(20000):\n    s = socket.socket(socket.AF_UNIX)\n    s.connect_ex('/run/nrm-flood-%d.sock' % i)\n    s.close()\n";
    let mut python = spawn_in(Command::new(PYTHON).args(["-c", flood]), &[&tree]);
    let _ = python.wait();

    // Every record the kernel emitted reaches user space and is counted there: once the reader
    // has drained what is still in the ring buffer (every 50 ms), within a bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = daemon.get("/metrics").expect("/metrics");
        let emitted = sum_of(&metrics, "node_runtime_monitor_kernel_events_emitted_total");
        let received = sum_of(&metrics, "node_runtime_monitor_events_total");
        let decode_errors = metric_value(&metrics, "node_runtime_monitor_events_dropped_total", &["reason=\"decode_error\""]).unwrap_or(0.0);
        if emitted == received + decode_errors {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 s emitted {emitted} != received {received} + undecodable {decode_errors}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost = sum_of(&metrics, "node_runtime_monitor_kernel_events_lost_total");
    assert!(lost > 0.0, "a one-page ring buffer must overflow under a storm");
    let exec_lost = metric_value(&metrics, "node_runtime_monitor_kernel_events_lost_total", &["program=\"sched_process_exec\""]).unwrap_or(0.0);
    let exec_emitted =
        metric_value(&metrics, "node_runtime_monitor_kernel_events_emitted_total", &["program=\"sched_process_exec\""]).unwrap_or(0.0);
    assert!(exec_emitted + exec_lost >= EXECS as f64, "every exec is either delivered or counted lost: {exec_emitted} + {exec_lost}");

    let rss = daemon_memory_kib(&daemon, "VmHWM:");
    assert!(rss > 0 && rss < RSS_BOUND_KIB, "peak RSS {rss} KiB within the documented {RSS_BOUND_KIB} KiB");
    assert_eq!(daemon.stop(), Some(0));
}

/// Kubespray's node files (no systemReserved/kubeReserved, static pods without memory
/// requests, kubelet on the systemd cgroup driver) around a real containerd whose socket is
/// where kubelet expects it.
struct KubesprayNode {
    root: std::path::PathBuf,
    _socket: BindMount,
}

impl KubesprayNode {
    fn new(containerd: &monitor_tests::containerd::Containerd) -> Self {
        let root = std::env::temp_dir().join(format!("nrm-kubespray-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let fixture = format!("{}/fixtures/nodes/incident4-kubespray-containerd2-v3", env!("CARGO_MANIFEST_DIR"));
        let copied = Command::new("cp").arg("-a").arg(&fixture).arg(&root).status().expect("cp");
        assert!(copied.success(), "copy the fixture");
        fs::create_dir_all(root.join("run/containerd")).expect("run dir");
        // The socket itself, bind-mounted where the node has it (a symlink out of the host
        // root would, rightly, not resolve inside it).
        let socket = root.join("run/containerd/containerd.sock");
        fs::write(&socket, "").expect("mount point");
        let mount = BindMount::new(&containerd.socket, &socket);
        // As on every Debian/Ubuntu node: /var/run is /run.
        fs::create_dir_all(root.join("var")).expect("var");
        std::os::unix::fs::symlink("../run", root.join("var/run")).expect("var/run link");
        Self { root, _socket: mount }
    }

    fn daemon(&self) -> Daemon {
        let root = self.root.display().to_string();
        let mut args = ARGS.to_vec();
        args.extend(["--host-root", root.as_str()]);
        Daemon::start(&args)
    }
}

impl Drop for KubesprayNode {
    fn drop(&mut self) {
        // The bind mount goes first (field drop order is after this).
        let _ = Command::new("umount").arg(self.root.join("run/containerd/containerd.sock")).status();
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn kube_apiserver_pod() -> monitor_tests::containerd::PodSpec {
    monitor_tests::containerd::PodSpec {
        namespace: "kube-system".into(),
        name: "kube-apiserver-node1".into(),
        uid: "5b9c2a7e31d84f0c9a6e2b7d4c1f8e03".into(),
        static_source: true,
        qos: "burstable",
    }
}

/// A bind mount removed on drop.
struct BindMount(std::path::PathBuf);

impl BindMount {
    fn new(source: &std::path::Path, target: &std::path::Path) -> Self {
        let status = Command::new("mount").arg("--bind").arg(source).arg(target).status().expect("mount");
        assert!(status.success(), "bind-mount {} on {}", source.display(), target.display());
        Self(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn incident4_static_pod_crash_loops_under_the_oom_killer_on_a_node_without_reservations() {
    use monitor_tests::containerd::{Containerd, ContainerSpec};

    let containerd = Containerd::start();
    let node = KubesprayNode::new(&containerd);
    let daemon = node.daemon();
    // And a real Prometheus with the shipped rules, scraping the daemon.
    let rules = std::path::PathBuf::from(format!("{}/../dashboards/prometheus-rules.yaml", env!("CARGO_MANIFEST_DIR")));
    let prometheus = monitor_tests::prometheus::Prometheus::start("node-runtime-monitor", &[daemon.address], &[&rules]);

    // kube-apiserver as a static pod, its memory limit too small: the OOM killer kills the
    // allocating process inside at the container's own limit, the container exits, kubelet
    // (here: the test) re-creates it. Four times; the node never runs out.
    let pod = kube_apiserver_pod();
    let sandbox = containerd.run_pod(&pod);
    let mut container_ids = Vec::new();
    for attempt in 0..4 {
        let mut spec = ContainerSpec::new("kube-apiserver", &["/bin/sh", "-c", "tail /dev/zero; exit 137"]);
        spec.memory_limit_bytes = 48 << 20;
        spec.attempt = attempt;
        let id = containerd.run_container(&sandbox, &pod, &spec);
        let code = containerd.wait_exit(&id, Duration::from_secs(20));
        assert_eq!(code, 137, "attempt {attempt} ended 137:\n{}", containerd.log());
        container_ids.push(id);
    }

    let subject = "kube-system/kube-apiserver-node1/kube-apiserver";
    let lp = wait_for_finding(&daemon, "static-pod-restart-loop", subject, WAIT);
    assert_eq!(lp["severity"], "critical");
    let title = lp["title"].as_str().unwrap_or("");
    assert!(title.contains("kube-system/kube-apiserver-node1 (container kube-apiserver, static pod)"), "{lp:#}");
    assert!(title.contains("OOM killer"), "the loop's cause is memory, from the kernel's OOM events: {lp:#}");
    let evidence = lp["evidence"].to_string();
    assert!(evidence.contains("OOM killer killed tail"), "{evidence}");
    assert!(evidence.contains("memory-reservation-missing"), "joined with the audit's reservation finding: {evidence}");
    assert!(lp["remediation"].as_str().unwrap_or("").starts_with("Memory"), "{lp:#}");

    // Each kill was at the container's own limit: its own finding, with that limit, the
    // resident memory at each kill and how many kills.
    let own = wait_for_finding_where(&daemon, "memory-limit-oom-kill", subject, WAIT, |f| {
        f["title"].as_str().is_some_and(|t| t.contains(" 4 time(s) in "))
    });
    assert_eq!(own["severity"], "warning");
    let title = own["title"].as_str().unwrap_or("");
    assert!(title.starts_with("The OOM killer killed kube-system/kube-apiserver-node1 (container kube-apiserver, static pod) 4 time(s) in "), "{own:#}");
    let cgroup = format!("/kubepods/burstable/pod{}/{}", pod.uid, container_ids[3]);
    assert!(title.ends_with(&format!("its memory cgroup {cgroup} reached its limit of 48Mi")), "{own:#}");
    let evidence = own["evidence"].as_array().cloned().unwrap_or_default();
    assert_eq!(evidence.len(), 4, "{own:#}");
    for (kill, id) in evidence.iter().zip(&container_ids) {
        let detail = kill["detail"].as_str().unwrap_or("");
        assert_eq!(kill["source"], "kernel: oom:mark_victim, printk:console");
        assert!(detail.contains("(tail) killed with ") && detail.contains(" resident ("), "{detail}");
        assert!(detail.ends_with(&format!("/{id} reached its limit of 48Mi")), "{detail}");
    }
    let remediation = own["remediation"].as_str().unwrap_or("");
    assert!(remediation.starts_with("The kernel killed it at its own memory cgroup's limit"), "{remediation}");
    assert!(!remediation.contains("systemReserved"), "{remediation}");
    for id in &container_ids {
        containerd.remove_container(id);
    }

    // Exactly: the loop and the kills at the container's own limit from the kernel's events,
    // and the audit's view of this node; no memory-reservations-misconfigured: the node never
    // ran out. The live runtime is containerd 1.6.20, which reads the version-3-headed file's
    // v2 tables (so none is ignored, unlike 2.x in the incident), and its own answer says
    // cgroupfs while kubelet says systemd.
    expect_exactly(&daemon, &[
        ("cgroup-driver-mismatch", "kubelet/containerd"),
        ("memory-limit-oom-kill", subject),
        ("memory-reservation-missing", "/etc/kubernetes/kubelet-config.yaml"),
        ("sandbox-image-mismatch", "kubelet/containerd"),
        ("static-pod-memory-request-missing", "kube-system/kube-apiserver"),
        ("static-pod-memory-request-missing", "kube-system/kube-controller-manager"),
        ("static-pod-memory-request-missing", "kube-system/kube-scheduler"),
        ("static-pod-restart-loop", subject),
    ]);
    // Counted as a static pod's OOM kills, at a memory cgroup's limit.
    let metrics = daemon.get("/metrics").unwrap_or_default();
    let kills = metric_value(
        &metrics,
        "node_runtime_monitor_kills_total",
        &["pod=\"kube-apiserver-node1\"", "static_pod=\"true\"", "cause=\"oom\"", "constraint=\"memory_cgroup\""],
    );
    assert_eq!(kills, Some(4.0), "{metrics}");

    // The alert for an OOM-killed static pod reaches firing in Prometheus.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let firing = prometheus.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == "NodeRuntimeMonitorStaticPodOOMKilled" && a["state"] == "firing"
        });
        if let Some(alert) = firing {
            assert_eq!(alert["labels"]["pod"], "kube-apiserver-node1", "{alert:#}");
            assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");
            break;
        }
        assert!(Instant::now() < deadline, "StaticPodOOMKilled never fired: {:#?}", prometheus.alerts());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn sandbox_churn_static_pod_killed_by_the_runtime_points_at_the_cgroup_driver_not_memory() {
    use monitor_tests::containerd::{Containerd, ContainerSpec};

    let containerd = Containerd::start();
    let node = KubesprayNode::new(&containerd);
    let daemon = node.daemon();
    // Kubelet tearing the sandbox's container down again and again (as with a cgroup driver
    // mismatch): StopContainer with no grace period; the shim has runc send SIGKILL.
    let pod = kube_apiserver_pod();
    let sandbox = containerd.run_pod(&pod);
    let mut stopped = Vec::new();
    for attempt in 0..3 {
        let mut spec = ContainerSpec::new("kube-apiserver", &["/bin/sleep", "1000"]);
        spec.attempt = attempt;
        let id = containerd.run_container(&sandbox, &pod, &spec);
        // Stopped once its command runs (not while runc is still setting it up); removed at
        // the end, as kubelet's garbage collection does later.
        containerd.wait_running(&id, "sleep");
        containerd.stop_container(&id);
        stopped.push(id);
    }
    let subject = "kube-system/kube-apiserver-node1/kube-apiserver";
    let lp = wait_for_finding(&daemon, "static-pod-restart-loop", subject, WAIT);
    let title = lp["title"].as_str().unwrap_or("");
    assert!(title.contains("killed by the kubelet or the container runtime, not by the OOM killer"), "{lp:#}");
    let evidence = lp["evidence"].to_string();
    assert!(evidence.contains("SIGKILL from runc"), "the sender, as the kernel saw it: {evidence}");
    assert!(!evidence.contains("OOM"), "no OOM without the kernel's OOM event: {evidence}");
    assert!(evidence.contains("audit: cgroup-driver-mismatch"), "joined with the audit's explanation: {evidence}");
    assert!(lp["remediation"].as_str().unwrap_or("").starts_with("Sandbox churn"), "{lp:#}");
    let rules = rules_and_subjects(&daemon);
    assert!(
        !rules.iter().any(|(r, _)| r == "memory-reservations-misconfigured" || r == "memory-limit-oom-kill"),
        "not a memory problem: {rules:?}"
    );
    // Kills by owner, cause and sender: all three (the loop may open on the third before the
    // counter shows it), and no more.
    let killed = wait_for_metric(
        &daemon,
        "node_runtime_monitor_kills_total",
        &["pod=\"kube-apiserver-node1\"", "static_pod=\"true\"", "cause=\"signal\"", "sender=\"runc\""],
        |v| v >= 3.0,
        WAIT,
    );
    assert_eq!(killed, 3.0, "kills by owner, cause and sender:\n{}", daemon.get("/metrics").unwrap_or_default());
    for id in &stopped {
        containerd.remove_container(id);
    }
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn incident3_a_node_agent_connects_to_a_v1alpha2_runtime_and_dies_again_and_again() {
    // kruise-daemon on dockershim: it connects to the runtime socket (the connect succeeds),
    // gets `unknown service runtime.v1.RuntimeService` and exits 255, restarted each time by
    // its supervisor. Here: a listening socket named like dockershim's, and a unit cgroup.
    let dir = std::env::temp_dir().join(format!("nrm-incident3-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("dockershim.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("listen");
    let socket_arg = socket.display().to_string();
    let mut args = ARGS.to_vec();
    args.extend(["--watch-socket", socket_arg.as_str()]);
    let daemon = Daemon::start(&args);

    let unit = monitor_tests::cgroups::cgroup2_mount()
        .join("system.slice")
        .join(format!("kruise-daemon-{}.service", std::process::id()));
    fs::create_dir_all(&unit).expect("unit cgroup");
    let unit_cgroup = monitor_tests::cgroups::TestCgroup { path: unit.clone() };
    let client = format!(
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect('{}')\nsys.exit(255)\n",
        socket.display()
    );
    for _ in 0..3 {
        let mut child = spawn_in(Command::new(PYTHON).args(["-c", &client]), &[&unit_cgroup]);
        assert_eq!(child.wait().expect("wait").code(), Some(255));
        std::thread::sleep(Duration::from_millis(200));
    }
    let name = unit.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let finding = wait_for_finding(&daemon, "host-service-restart-loop", &name, WAIT);
    let evidence = finding["evidence"].to_string();
    assert!(evidence.contains(&format!("connected to unix:{}", socket.display())), "{finding:#}");
    assert!(evidence.contains("exited with code 255"), "{finding:#}");
    assert!(finding["remediation"].as_str().unwrap_or("").contains("CRI API version"), "{finding:#}");
    assert_eq!(rules_and_subjects(&daemon), vec![("host-service-restart-loop".to_string(), name)]);
    assert_eq!(daemon.stop(), Some(0));
    drop(unit_cgroup);
    let _ = fs::remove_dir(unit.parent().expect("system.slice"));
    drop(listener);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_ordinary_pods_container_that_keeps_failing_is_a_container_restart_loop() {
    use monitor_tests::containerd::{Containerd, ContainerSpec, PodSpec};

    let containerd = Containerd::start();
    let node = KubesprayNode::new(&containerd);
    let daemon = node.daemon();
    // A Deployment's pod whose container exits 3 at once; kubelet (here: the test) re-creates it.
    let pod = PodSpec {
        namespace: "shop".into(),
        name: "checkout-7d9f8b6c5-x2x4q".into(),
        uid: "0f3a6c1e9b2d4e7fa1c3b5d7e9f10234".into(),
        static_source: false,
        qos: "burstable",
    };
    let sandbox = containerd.run_pod(&pod);
    // Exited containers stay in the CRI until kubelet's garbage collection, so they are
    // removed at the end, not at once (each lives a few ms, its cgroup as long).
    let mut exited = Vec::new();
    for attempt in 0..3 {
        let mut spec = ContainerSpec::new("checkout", &["/bin/sh", "-c", "exit 3"]);
        spec.attempt = attempt;
        let id = containerd.run_container(&sandbox, &pod, &spec);
        assert_eq!(containerd.wait_exit(&id, Duration::from_secs(20)), 3, "attempt {attempt}:\n{}", containerd.log());
        exited.push(id);
    }
    let subject = "shop/checkout-7d9f8b6c5-x2x4q/checkout";
    let lp = wait_for_finding(&daemon, "container-restart-loop", subject, WAIT);
    assert_eq!(lp["severity"], "warning", "an application's pod, not the node: {lp:#}");
    let evidence = lp["evidence"].to_string();
    assert!(evidence.matches("exited with code 3").count() >= 3, "each run's exit, from the kernel: {evidence}\n{}", daemon.log_text());
    assert!(lp["remediation"].as_str().unwrap_or("").contains("fails by itself"), "{lp:#}");
    assert!(
        !rules_and_subjects(&daemon).iter().any(|(r, _)| r == "static-pod-restart-loop" || r == "memory-reservations-misconfigured"),
        "{:?}",
        rules_and_subjects(&daemon)
    );
    for id in &exited {
        containerd.remove_container(id);
    }
    assert_eq!(daemon.stop(), Some(0));
}

/// kubelet's `besteffort` QoS cgroup given a memory limit: the pods' share of the node (its
/// allocatable memory) is what runs out. The limit is lifted on drop.
struct QosMemoryLimit {
    path: std::path::PathBuf,
    unlimited: &'static str,
    file: &'static str,
}

impl QosMemoryLimit {
    fn besteffort(limit_bytes: u64) -> Self {
        use monitor_tests::cgroups::{MemoryLayout, memory_layout};
        let (mount, file, unlimited) = match memory_layout() {
            MemoryLayout::V2(mount) => (mount, "memory.max", "max"),
            MemoryLayout::V1(mount) => (mount, "memory.limit_in_bytes", "-1"),
        };
        let path = mount.join("kubepods/besteffort");
        fs::create_dir_all(&path).expect("kubepods/besteffort");
        fs::write(path.join(file), limit_bytes.to_string()).expect("limit the QoS cgroup");
        Self { path, unlimited, file }
    }
}

impl Drop for QosMemoryLimit {
    fn drop(&mut self) {
        let _ = fs::write(self.path.join(self.file), self.unlimited);
    }
}

#[test]
fn a_static_pod_killed_when_the_pods_memory_ran_out_points_at_the_reservations() {
    use monitor_tests::containerd::{Containerd, ContainerSpec, PodSpec};

    let containerd = Containerd::start();
    let node = KubesprayNode::new(&containerd);
    let daemon = node.daemon();
    // A static pod without a limit of its own, in a QoS level whose memory is capped (as
    // kubelet caps its pods root at the node's allocatable memory): it grows until the pods'
    // memory runs out, and the OOM killer takes it.
    let _qos = QosMemoryLimit::besteffort(64 << 20);
    let pod = PodSpec {
        namespace: "kube-system".into(),
        name: "kube-controller-manager-node1".into(),
        uid: "7c1e5a9d2b3f4e6a8c0d1e2f3a4b5c6d".into(),
        static_source: true,
        qos: "besteffort",
    };
    let sandbox = containerd.run_pod(&pod);
    for attempt in 0..3 {
        let mut spec = ContainerSpec::new("kube-controller-manager", &["/bin/sh", "-c", "tail /dev/zero; exit 137"]);
        spec.attempt = attempt;
        let id = containerd.run_container(&sandbox, &pod, &spec);
        assert_eq!(containerd.wait_exit(&id, Duration::from_secs(20)), 137, "attempt {attempt}:\n{}", containerd.log());
        containerd.remove_container(&id);
    }
    let memory = wait_for_finding(&daemon, "memory-reservations-misconfigured", "node", WAIT);
    assert_eq!(memory["severity"], "critical");
    let evidence = memory["evidence"].to_string();
    assert!(evidence.contains("kube-controller-manager-node1"), "{evidence}");
    assert!(evidence.contains("kubelet's pods root /kubepods/besteffort reached its limit of 64Mi"), "{evidence}");
    assert!(evidence.contains("audit memory-reservation-missing"), "joined with the audit: {evidence}");
    let subject = "kube-system/kube-controller-manager-node1/kube-controller-manager";
    let lp = wait_for_finding(&daemon, "static-pod-restart-loop", subject, WAIT);
    assert!(lp["title"].as_str().unwrap_or("").contains("OOM killer"), "{lp:#}");
    assert!(
        !rules_and_subjects(&daemon).iter().any(|(r, _)| r == "memory-limit-oom-kill"),
        "no limit of its own was hit: {:?}",
        rules_and_subjects(&daemon)
    );
    assert_eq!(daemon.stop(), Some(0));
}
