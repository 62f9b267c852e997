//! The dashboards and the rules against a real Prometheus scraping real daemons: Debian's
//! Prometheus 2.42 scrapes every second and evaluates dashboards/prometheus-rules.yaml every
//! second. Three targets of the job:
//! - the node's monitor, on the Kubespray node tree of incident 4 (`--host-root`) with a real
//!   containerd's CRI socket in it, one kernel program disabled (`--disable-probe`);
//! - a second monitor with a 4 KiB ring buffer, which loses events in an exec burst, and its
//!   `mark_victim` program off, so that the kernel counts OOM kills its probes never deliver:
//!   every OOM kill on the host after its first read (this test's, and those of any other test
//!   running meanwhile), by the node's count (`/proc/vmstat`) or its cgroup's;
//! - a port nothing listens on (a monitor that is down): port 1, which no test can be given by
//!   `bind(0)` (below 1024) and nothing on a test host serves.
//!
//! Real events: a static kube-apiserver pod OOM-killed in containerd, a pod container killed
//! twice by runc (kubelet's StopContainer), a host memcg OOM kill, a unit's process OOM-killed at
//! the unit's memory limit (missed by the second monitor), a SIGKILL, a binary that keeps
//! failing to exec, and an exec burst in a cgroup shaped like a container that CRI does not know.
//! Then:
//! - every recording rule and every alert expression returns data, and every alert is active
//!   (pending or firing) in Prometheus, each for the cause the test created;
//! - NodeRuntimeMonitorStaticPodOOMKilled reaches `firing` for the OOM-killed static pod, with
//!   its namespace, pod and container; FindingCritical fires for the audit's critical findings;
//! - every expression of every panel of every dashboard in dashboards/grafana returns data,
//!   with the dashboards' variables set to the node's monitor and `.*`;
//! - every family the node's monitor then serves is in docs/METRICS.md with its type and label
//!   names (tests/tests/metrics_catalogue.rs checks the same on a quiet daemon, with promtool).
//!
//! Runs alone (.config/nextest.toml): it judges what the daemons see on this host.

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use monitor_tests::{
    cgroups::{MemoryLayout, TestCgroup, cgroup2_mount, memory_layout, spawn_in, unit_cgroup},
    containerd::{ContainerSpec, Containerd, PodSpec},
    daemon::Daemon,
    prometheus::{Prometheus, catalogue, encode, families},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
const JOB: &str = "node-runtime-monitor";
/// Every alert of the rule file and what makes it active here.
const ALERTS: [&str; 10] = [
    "NodeRuntimeMonitorFindingCritical",         // the audit of the Kubespray node tree
    "NodeRuntimeMonitorFindingWarning",          // the exec-failure-loop (pending: `for` 15m)
    "NodeRuntimeMonitorStaticPodOOMKilled",      // kube-apiserver-node1 OOM-killed in containerd
    "NodeRuntimeMonitorContainerKilledByRuntime", // default/web-0 killed twice by runc
    "NodeRuntimeMonitorProbeDown",               // --disable-probe (pending: `for` 5m)
    "NodeRuntimeMonitorEventsLost",              // the 4 KiB ring buffer in an exec burst
    "NodeRuntimeMonitorAttributionMisses",       // execs in a container CRI does not know
    "NodeRuntimeMonitorOOMKillsMissed",          // the lossy monitor without mark_victim
    "NodeRuntimeMonitorDown",                    // the target nothing listens on
    "NodeRuntimeMonitorSeriesFolded",            // one caller failing on 10 different paths
];
const DISABLED_PROBE: &str = "inet_sock_set_state";
/// Off on the lossy monitor: the OOM kills it misses.
const MISSED_PROBE: &str = "mark_victim";

/// The kernel's count of OOM kills on the host (`oom_kill` of `/proc/vmstat`).
fn host_oom_kills() -> u64 {
    let vmstat = fs::read_to_string("/proc/vmstat").expect("/proc/vmstat");
    vmstat.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).expect("oom_kill in /proc/vmstat")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every (dashboard, panel title, expr) of dashboards/grafana.
fn panel_exprs() -> Vec<(String, String, String)> {
    let dir = root().join("dashboards/grafana");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: Value = serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap();
        let variables: Vec<&str> =
            dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(variables, ["datasource", "node", "namespace", "pod"], "{name}: variables");
        for panel in dashboard["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}: {}", panel["title"]);
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {} has no query", panel["title"]);
            for target in targets {
                out.push((name.clone(), panel["title"].as_str().unwrap().to_string(), target["expr"].as_str().unwrap().to_string()));
            }
        }
    }
    assert_eq!(files.len(), 5, "five dashboards");
    out
}

fn substitute(expr: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$node", instance).replace("$namespace", ".*").replace("$pod", ".*")
}

/// The Kubespray node tree of incident 4 in a temporary directory, with the test containerd's
/// socket bind-mounted where the node has it (a symlink out of the host root would, rightly,
/// not resolve inside it). Unmounted and removed on drop.
struct NodeRoot {
    root: PathBuf,
}

impl NodeRoot {
    fn new(containerd: &Containerd) -> Self {
        let root = std::env::temp_dir().join(format!("nrm-prom-e2e-node-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let fixture = format!("{}/fixtures/nodes/incident4-kubespray-containerd2-v3", env!("CARGO_MANIFEST_DIR"));
        assert!(Command::new("cp").arg("-a").arg(&fixture).arg(&root).status().expect("cp").success(), "copy {fixture}");
        fs::create_dir_all(root.join("run/containerd")).expect("run dir");
        let socket = root.join("run/containerd/containerd.sock");
        fs::write(&socket, "").expect("mount point");
        let mounted = Command::new("mount").arg("--bind").arg(&containerd.socket).arg(&socket).status().expect("mount");
        assert!(mounted.success(), "bind-mount {} on {}", containerd.socket.display(), socket.display());
        fs::create_dir_all(root.join("var")).expect("var");
        std::os::unix::fs::symlink("../run", root.join("var/run")).expect("var/run link");
        Self { root }
    }
}

impl Drop for NodeRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.root.join("run/containerd/containerd.sock")).status();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A cgroup v2 directory shaped like the pod of a BestEffort pod (cgroupfs driver), and in it
/// `containers` directories shaped like containerd containers, which no runtime knows: their
/// events cannot be attributed (the attribution waits for CRI to list them, then gives up).
fn unknown_container_cgroups(containers: u64) -> (TestCgroup, Vec<TestCgroup>) {
    let pid = std::process::id();
    let pod = cgroup2_mount().join(format!("kubepods/besteffort/pod0e2e{pid:08x}-0000-4000-8000-000000000000"));
    fs::create_dir_all(&pod).unwrap_or_else(|e| panic!("mkdir {}: {e}", pod.display()));
    let containers = (0..containers)
        .map(|n| {
            let path = pod.join(format!("{:0>64x}", (0xe2e0_0000_u64 + pid as u64) << 8 | n));
            fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            TestCgroup { path }
        })
        .collect();
    (TestCgroup { path: pod }, containers)
}

/// The memory cgroup systemd gives unit `unit` with `MemoryMax=` (`/system.slice/<unit>`
/// where the node keeps the memory controller), without swap.
fn unit_memory_cgroup(unit: &str, limit_bytes: u64) -> TestCgroup {
    let (mount, no_swap) = match memory_layout() {
        MemoryLayout::V2(mount) => (mount, ("memory.swap.max", "0")),
        MemoryLayout::V1(mount) => (mount, ("memory.swappiness", "0")),
    };
    let path = mount.join("system.slice").join(unit);
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    let _ = fs::write(path.join(no_swap.0), no_swap.1);
    let cgroup = TestCgroup { path };
    cgroup.set_memory_limit(limit_bytes);
    cgroup
}

fn exec_burst(cgroup: &TestCgroup, execs: u32) {
    let script = format!("i=0; while [ $i -lt {execs} ]; do /bin/true; i=$((i+1)); done");
    let mut child = spawn_in(Command::new("/bin/sh").args(["-c", &script]), &[cgroup]);
    assert!(child.wait().expect("wait burst").success());
}

/// Waits (bounded) until some active alert matches; returns it.
fn wait_for_alert(prometheus: &Prometheus, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let alerts = prometheus.alerts();
        if let Some(alert) = alerts.iter().find(|a| matches(a)) {
            return alert.clone();
        }
        assert!(Instant::now() < deadline, "no alert {what} after {WAIT:?}: {alerts:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn dashboards_and_alerts_work_against_a_real_prometheus_scraping_the_daemon() {
    let containerd = Containerd::start();
    let node = NodeRoot::new(&containerd);
    let daemon = Daemon::start(&[
        "--host-root",
        node.root.to_str().unwrap(),
        "--loop-window-seconds",
        "120",
        "--finding-quiet-seconds",
        "600",
        "--disable-probe",
        DISABLED_PROBE,
    ]);
    let empty_root = std::env::temp_dir().join(format!("nrm-prom-e2e-empty-{}", std::process::id()));
    fs::create_dir_all(&empty_root).expect("empty root");
    // Every kill the lossy monitor can count missed is one the kernel counted after this.
    let host_oom_kills_before_lossy = host_oom_kills();
    let lossy = Daemon::start(&[
        "--host-root",
        empty_root.to_str().unwrap(),
        "--ring-buffer-bytes",
        "4096",
        "--disable-probe",
        MISSED_PROBE,
        "--memory-read-seconds",
        "1",
    ]);
    let down = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let instance = daemon.address.to_string();
    let rules = root().join("dashboards/prometheus-rules.yaml");
    let prometheus = Prometheus::start(JOB, &[daemon.address, lossy.address, down], &[rules.as_path()]);

    // A control-plane static pod OOM-killed: its memory limit is too small.
    let apiserver = PodSpec {
        namespace: "kube-system".into(),
        name: "kube-apiserver-node1".into(),
        uid: "5b9c2a7e31d84f0c9a6e2b7d4c1f8e03".into(),
        static_source: true,
        qos: "burstable",
    };
    let sandbox = containerd.run_pod(&apiserver);
    let mut spec = ContainerSpec::new("kube-apiserver", &["/bin/sh", "-c", "tail /dev/zero; exit 137"]);
    spec.memory_limit_bytes = 48 << 20;
    let id = containerd.run_container(&sandbox, &apiserver, &spec);
    assert_eq!(containerd.wait_exit(&id, Duration::from_secs(20)), 137, "{}", containerd.log());
    containerd.remove_container(&id);
    // An ordinary pod's container stopped twice by kubelet's StopContainer: runc SIGKILLs it.
    let web = PodSpec {
        namespace: "default".into(),
        name: "web-0".into(),
        uid: "0e2e7c1d4b9a4f6e8d2c5a7b3f1e9d04".into(),
        static_source: false,
        qos: "besteffort",
    };
    let sandbox = containerd.run_pod(&web);
    let mut stopped = Vec::new();
    for attempt in 0..2 {
        let mut spec = ContainerSpec::new("web", &["/bin/sleep", "1000"]);
        spec.attempt = attempt;
        let id = containerd.run_container(&sandbox, &web, &spec);
        // Stopped once its command runs (not while runc is still setting it up); removed at
        // the end, as kubelet's garbage collection does later.
        containerd.wait_running(&id, "sleep");
        containerd.stop_container(&id);
        stopped.push(id);
    }

    // Host events: a memcg OOM kill, a SIGKILL, a binary that keeps failing to exec.
    let tree = TestCgroup::v2("prom-e2e");
    let memcg = TestCgroup::memory("nrm-prom-e2e-oom", 40 << 20);
    let mut hog = spawn_in(
        Command::new("/usr/bin/python3").args(["-c", "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"]),
        &[&tree, &memcg],
    );
    let _ = hog.wait();
    let mut sleeper = spawn_in(Command::new("/bin/sleep").arg("60"), &[&tree]);
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(sleeper.id() as i32, libc::SIGKILL) };
    let _ = sleeper.wait();
    let missing = format!("/opt/nrm-prom-e2e-{}/bin/crictl", std::process::id());
    let mut looper = spawn_in(
        Command::new("/bin/sh").args(["-c", &format!("for i in 1 2 3 4; do {missing} info 2>/dev/null; sleep 0.2; done; exit 0")]),
        &[&tree],
    );
    let _ = looper.wait();
    // One caller failing on ever new paths: past 8 of them, the rest fold into one finding.
    let flood = format!("/opt/nrm-prom-e2e-{}/flood", std::process::id());
    let mut flooder = spawn_in(
        Command::new("/bin/sh").args(["-c", &format!("for p in 0 1 2 3 4 5 6 7 8 9; do for i in 1 2 3; do {flood}/$p 2>/dev/null; done; done; exit 0")]),
        &[&tree],
    );
    let _ = flooder.wait();

    // A process of a new unit OOM-killed at the unit's memory limit as soon as it starts, before
    // a monitor may have heard of the unit's cgroup (its events can all be lost in the small
    // ring buffer): the lossy monitor, without mark_victim, hears nothing of the kill, and the
    // kernel's count says it missed one: the unit cgroup's, from its creation, if the lossy
    // monitor heard of the unit, else the node's.
    let unit = format!("nrm-prom-e2e-missed-{}.service", std::process::id());
    let unit_tree = TestCgroup { path: unit_cgroup(&unit) };
    let unit_memory = unit_memory_cgroup(&unit, 40 << 20);
    let mut unit_hog = spawn_in(
        Command::new("/bin/sh").args(["-c", "exec /usr/bin/python3 -c 'b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n'"]),
        &[&unit_tree, &unit_memory],
    );
    let _ = unit_hog.wait();
    assert_eq!(unit_memory.oom_kills(), 1, "the unit's process was OOM-killed");

    // Execs in a container nobody knows, in bursts: the small ring buffer overflows, and
    // neither monitor can name the owner. Bursts go on (bounded) until Prometheus sees the
    // loss grow: other tests running at the same time may have made the lossy monitor lose
    // events before Prometheus's first scrape, and a counter's first sample is no increase.
    let (_pod_cgroup, unknown) = unknown_container_cgroups(2);
    let lost_series = format!("node_runtime_monitor_kernel_events_lost_total{{instance=\"{}\"}}", lossy.address);
    prometheus.wait_for(&lost_series, WAIT);
    let deadline = Instant::now() + WAIT;
    loop {
        exec_burst(&unknown[0], 300);
        std::thread::sleep(Duration::from_millis(1500)); // a scrape after the burst
        if !prometheus.query(&format!("sum(increase({lost_series}[5m])) > 0")).is_empty() {
            break;
        }
        let metrics = lossy.get("/metrics").unwrap_or_default();
        assert!(Instant::now() < deadline, "a 4 KiB ring buffer lost nothing in exec bursts:\n{metrics}");
    }
    // A later burst in another unknown container, so the misses counter grows after its first
    // sample: once Prometheus has scraped the first burst's misses (counted when the
    // attribution gives up on its owner), and one scrape interval more for the next sample.
    prometheus.wait_for(&format!("node_runtime_monitor_attribution_misses_total{{job=\"{JOB}\", reason!=\"cgroup_gone\"}}"), WAIT);
    std::thread::sleep(Duration::from_secs(1)); // the scrape interval
    exec_burst(&unknown[1], 300);

    // Prometheus has them, through the scrape.
    let sel = format!("instance=\"{instance}\", job=\"{JOB}\"");
    prometheus.wait_for(&format!("up{{{sel}}} == 1"), WAIT);
    prometheus.wait_for(&format!("up{{instance=\"{}\"}} == 1", lossy.address), WAIT);
    prometheus.wait_for(&format!("up{{instance=\"{down}\"}} == 0"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_kills_total{{{sel}, cause=\"oom\", pod=\"kube-apiserver-node1\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_kills_total{{{sel}, cause=\"oom\", pod=\"\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_kills_total{{{sel}, cause=\"signal\", pod=\"web-0\", sender=\"runc\"}} == 2"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_findings_open{{{sel}, rule=\"exec-failure-loop\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_findings_open{{{sel}, severity=\"critical\", source=\"audit\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_probe_up{{{sel}, program=\"{DISABLED_PROBE}\"}} == 0"), WAIT);

    // Every rule group loaded; every recording rule and every alert expression returns data,
    // and every rule evaluates cleanly.
    let groups = prometheus.rule_groups();
    let mut names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["node-runtime-monitor.alerts", "node-runtime-monitor.recording"], "{groups:#?}");
    let mut alert_names = Vec::new();
    for group in &groups {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["name"].as_str().unwrap();
            if rule["type"] == "alerting" {
                alert_names.push(name.to_string());
                prometheus.wait_for(rule["query"].as_str().unwrap(), WAIT);
            } else {
                prometheus.wait_for(name, WAIT);
            }
        }
    }
    alert_names.sort();
    let mut expected: Vec<String> = ALERTS.iter().map(|a| a.to_string()).collect();
    expected.sort();
    assert_eq!(alert_names, expected, "the test covers every alert of the rule file");
    for group in prometheus.rule_groups() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "rule {} does not evaluate: {}", rule["name"], rule["lastError"]);
        }
    }

    // The alert for the OOM-killed static pod fires, naming it; the others are active for the
    // causes created above.
    let alert = |name: &'static str, state: &'static str, labels: Vec<(&'static str, String)>| {
        let what = format!("{name} {state} {labels:?}");
        wait_for_alert(&prometheus, &what, move |a| {
            a["labels"]["alertname"] == name
                && (state.is_empty() || a["state"] == state)
                && labels.iter().all(|(k, v)| a["labels"][k] == v.as_str())
        })
    };
    let oom = alert(
        "NodeRuntimeMonitorStaticPodOOMKilled",
        "firing",
        vec![
            ("instance", instance.clone()),
            ("namespace", "kube-system".into()),
            ("pod", "kube-apiserver-node1".into()),
            ("container", "kube-apiserver".into()),
        ],
    );
    assert_eq!(oom["labels"]["severity"], "critical", "{oom:#}");
    // The recorded kills of the last 10 minutes count every one of them, the first included
    // (the series was born with it): all the monitor counted since it started.
    let apiserver_oom = format!("instance=\"{instance}\", pod=\"kube-apiserver-node1\", cause=\"oom\"");
    let counted = prometheus.query(&format!("sum(node_runtime_monitor_kills_total{{{apiserver_oom}}})"));
    let counted = counted[0]["value"][1].as_str().unwrap().to_string();
    prometheus.wait_for(&format!("sum(node_runtime_monitor:kills:increase10m{{{apiserver_oom}}}) == {counted}"), WAIT);
    assert!(oom["annotations"]["summary"].as_str().unwrap().contains("kube-apiserver-node1"), "{oom:#}");
    let churn = alert(
        "NodeRuntimeMonitorContainerKilledByRuntime",
        "firing",
        vec![("instance", instance.clone()), ("pod", "web-0".into()), ("sender", "runc".into())],
    );
    assert_eq!(churn["value"].as_str().map(|v| v.parse::<f64>().unwrap()), Some(2.0), "{churn:#}");
    let critical = alert("NodeRuntimeMonitorFindingCritical", "firing", vec![("instance", instance.clone())]);
    let open: Vec<String> = monitor_tests::daemon::findings(&daemon)
        .iter()
        .filter(|f| f["severity"] == "critical")
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    let rule = critical["labels"]["rule"].as_str().unwrap();
    assert!(open.iter().any(|r| r == rule), "alert for {rule}, open critical findings: {open:?}");
    assert!(critical["annotations"]["summary"].as_str().unwrap().starts_with(rule), "{critical:#}");
    alert(
        "NodeRuntimeMonitorFindingWarning",
        "pending",
        vec![("instance", instance.clone()), ("rule", "exec-failure-loop".into())],
    );
    alert("NodeRuntimeMonitorProbeDown", "pending", vec![("instance", instance.clone()), ("program", DISABLED_PROBE.into())]);
    alert("NodeRuntimeMonitorEventsLost", "firing", vec![("instance", lossy.address.to_string())]);
    alert("NodeRuntimeMonitorAttributionMisses", "pending", vec![]);
    alert("NodeRuntimeMonitorDown", "pending", vec![("instance", down.to_string())]);
    alert("NodeRuntimeMonitorSeriesFolded", "firing", vec![("instance", instance.clone())]);
    // The lossy monitor misses every OOM kill on the host since its start (the unit's, the
    // static pod's, the memcg hog's, and any other test's meanwhile): at least the unit's, each
    // counted once, in its cgroup's series (the unit's: exactly its one kill) or in the node's
    // (every label empty), never more in all than the kernel counted.
    let missed = alert("NodeRuntimeMonitorOOMKillsMissed", "firing", vec![("instance", lossy.address.to_string())]);
    let missed_value = missed["value"].as_str().map(|v| v.parse::<f64>().unwrap()).unwrap_or_default();
    assert!(missed_value >= 1.0, "{missed:#}");
    let lossy_metrics = lossy.get("/metrics").unwrap_or_default();
    let host_oom_kills_since = host_oom_kills() - host_oom_kills_before_lossy;
    let missed_series: Vec<(&str, f64)> = lossy_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("node_runtime_monitor_oom_kills_missed_total{"))
        .filter_map(|l| l.split_once("} "))
        .map(|(labels, value)| (labels, value.trim().parse::<f64>().expect("a count")))
        .collect();
    assert!(!missed_series.is_empty(), "{lossy_metrics}");
    let unit_series = format!(r#"namespace="",pod="",container="",service="{unit}""#);
    if let Some((_, count)) = missed_series.iter().find(|(labels, _)| *labels == unit_series) {
        assert_eq!(*count, 1.0, "the unit's one kill: {missed_series:?}");
    }
    let missed_total: f64 = missed_series.iter().map(|(_, count)| count).sum();
    assert!(
        missed_total <= host_oom_kills_since as f64,
        "missed {missed_total} of {host_oom_kills_since} OOM kills on the host since the lossy monitor started: {missed_series:?}"
    );
    // The node's monitor saw every kill the kernel counted (no series at all: checked with the
    // catalogue below).
    assert!(!prometheus.alerts().iter().any(|a| a["labels"]["alertname"] == "NodeRuntimeMonitorOOMKillsMissed" && a["labels"]["instance"] == instance.as_str()));
    // The node's own monitor lost nothing: its 8 MiB ring buffer kept up.
    assert!(
        !prometheus.alerts().iter().any(|a| a["labels"]["alertname"] == "NodeRuntimeMonitorEventsLost" && a["labels"]["instance"] == instance.as_str()),
        "{:#?}\nthe daemon's own counts:\n{}",
        prometheus.alerts(),
        daemon.get("/metrics").unwrap_or_default().lines().filter(|l| l.contains("_lost_total{") || l.contains("events_dropped_total{")).collect::<Vec<_>>().join("\n")
    );

    // Every panel's query returns data (bounded wait: rates need two samples past an event).
    let mut empty = Vec::new();
    for (dashboard, title, expr) in panel_exprs() {
        let query = substitute(&expr, &instance);
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus.query(&query).is_empty() {
            if Instant::now() > deadline {
                empty.push(format!("{dashboard} / {title}: {query}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    // The node variable finds the node's monitor.
    let nodes = prometheus.api(&format!("/api/v1/label/instance/values?match[]={}", encode("node_runtime_monitor_build_info")));
    assert!(nodes.as_array().unwrap().iter().any(|n| n == instance.as_str()), "{nodes}");

    // The catalogue against what the node's monitor serves after all this: every family with
    // its type and label names, and every family of the catalogue but the two nothing here
    // causes (a CRI call of the attribution failing) and the lossy monitor's missed OOM kills.
    let served = families(&daemon.get("/metrics").expect("/metrics"));
    let catalogue = catalogue();
    for (name, got) in &served {
        let doc = catalogue.get(name).unwrap_or_else(|| panic!("{name} is served but not in docs/METRICS.md"));
        assert_eq!((&got.kind, &got.labels), (&doc.kind, &doc.labels), "{name}: served vs docs/METRICS.md");
    }
    let unserved: Vec<&String> = catalogue.keys().filter(|name| !served.contains_key(*name)).collect();
    assert_eq!(
        unserved,
        ["node_runtime_monitor_attribution_cri_errors", "node_runtime_monitor_oom_kills_missed"],
        "catalogue families not served"
    );

    drop(prometheus);
    for id in &stopped {
        containerd.remove_container(id);
    }
    assert_eq!(lossy.stop(), Some(0));
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(&empty_root);
    drop(node);
}
