//! The dashboards and the rules against a real Prometheus scraping the real daemon: Debian's
//! Prometheus 2.42 scrapes the daemon's OpenMetrics every second and evaluates
//! dashboards/prometheus-rules.yaml every second. The test causes real events (a memcg OOM kill,
//! a SIGKILL, a binary that keeps failing to exec) and the daemon audits a node tree with
//! critical findings (the Kubespray fixture of incident 4, through --host-root), then:
//! - every rule group loads and evaluates without error;
//! - every expression of every panel of every dashboard in dashboards/grafana returns data,
//!   with the dashboards' variables set to this daemon's instance and `.*`;
//! - NodeRuntimeMonitorFindingCritical reaches `firing` for the audit's critical findings (it has
//!   no `for`); FindingWarning is `pending` for the exec-failure-loop (its `for` is 15 minutes);
//!   every rule evaluates with health "ok".
//!
//! Not covered here: NodeRuntimeMonitorStaticPodOOMKilled firing needs an OOM kill inside a
//! kube-system static pod in real containerd (tests/tests/scenarios.rs incident 4 does that
//! without Prometheus); its expression is tested by promtool (deploy_manifests.rs).
//!
//! Runs alone (.config/nextest.toml): it judges what one daemon sees on this host.

use std::{
    path::PathBuf,
    process::Command,
    time::Duration,
};

use monitor_tests::{
    cgroups::{TestCgroup, spawn_in},
    daemon::Daemon,
    prometheus::Prometheus,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const JOB: &str = "node-runtime-monitor";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every (dashboard, panel title, expr) of dashboards/grafana.
fn panel_exprs() -> Vec<(String, String, String)> {
    let dir = root().join("dashboards/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
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

#[test]
fn dashboards_and_alerts_work_against_a_real_prometheus_scraping_the_daemon() {
    let fixture = root().join("tests/fixtures/nodes/incident4-kubespray-containerd2-v3");
    let daemon = Daemon::start(&[
        "--host-root",
        fixture.to_str().unwrap(),
        "--loop-window-seconds",
        "120",
        "--finding-quiet-seconds",
        "600",
    ]);
    let instance = daemon.address.to_string();
    let rules = root().join("dashboards/prometheus-rules.yaml");
    let prometheus = Prometheus::start(JOB, &[daemon.address], &[rules.as_path()]);

    // Scraped before the events, so that their increase is seen.
    let sel = format!("instance=\"{instance}\", job=\"{JOB}\"");
    prometheus.wait_for(&format!("count_over_time(up{{{sel}}}[1m]) >= 2"), WAIT);

    // Real events: a memcg OOM kill, a SIGKILL, a binary that keeps failing to exec.
    let tree = TestCgroup::v2("prom-e2e");
    let memcg = TestCgroup::memory_v1("nrm-prom-e2e-oom", 40 << 20);
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

    // Prometheus has them, through the scrape.
    prometheus.wait_for(&format!("up{{{sel}}} == 1"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_kills_total{{{sel}, cause=\"oom\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_kills_total{{{sel}, cause=\"signal\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_findings_open{{{sel}, rule=\"exec-failure-loop\"}}"), WAIT);
    prometheus.wait_for(&format!("node_runtime_monitor_findings_open{{{sel}, severity=\"critical\", source=\"audit\"}}"), WAIT);
    // Rates and increases need two samples past each event.
    prometheus.wait_for(&format!("increase(node_runtime_monitor_events_total{{{sel}, kind=\"oom_kill\"}}[1m]) > 0"), WAIT);
    prometheus.wait_for(&format!("count_over_time(node_runtime_monitor_kills_total{{{sel}, cause=\"oom\"}}[1m]) >= 3"), WAIT);

    // Every rule group loaded and evaluates cleanly.
    let groups = prometheus.rule_groups();
    let mut names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["node-runtime-monitor.alerts", "node-runtime-monitor.recording"], "{groups:#?}");
    // Recording rules need one more evaluation after the data.
    prometheus.wait_for(&format!("node_runtime_monitor:kills:increase10m{{instance=\"{instance}\", cause=\"oom\"}}"), WAIT);
    for group in prometheus.rule_groups() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "rule {} does not evaluate: {}", rule["name"], rule["lastError"]);
        }
    }

    // Every panel's query returns data.
    let mut empty = Vec::new();
    for (dashboard, title, expr) in panel_exprs() {
        let query = substitute(&expr, &instance);
        if prometheus.query(&query).is_empty() {
            empty.push(format!("{dashboard} / {title}: {query}"));
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    // The node variable finds this daemon.
    let nodes = prometheus.api(&format!("/api/v1/label/instance/values?match[]={}", monitor_tests::prometheus::encode("node_runtime_monitor_build_info")));
    assert!(nodes.as_array().unwrap().iter().any(|n| n == instance.as_str()), "{nodes}");

    // An alert reaches firing: the audit's critical findings on this node tree.
    let deadline = std::time::Instant::now() + WAIT;
    let firing = loop {
        let alerts = prometheus.alerts();
        let firing: Vec<Value> = alerts
            .iter()
            .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] == "NodeRuntimeMonitorFindingCritical")
            .cloned()
            .collect();
        if !firing.is_empty() {
            break firing;
        }
        assert!(std::time::Instant::now() < deadline, "NodeRuntimeMonitorFindingCritical not firing: {alerts:#?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let open: Vec<String> = monitor_tests::daemon::findings(&daemon)
        .iter()
        .filter(|f| f["severity"] == "critical")
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    for alert in &firing {
        assert_eq!(alert["labels"]["instance"], instance.as_str());
        let rule = alert["labels"]["rule"].as_str().unwrap();
        assert!(open.iter().any(|r| r == rule), "alert for {rule}, open critical findings: {open:?}");
        assert!(alert["annotations"]["summary"].as_str().unwrap().starts_with(rule), "{alert:#}");
    }
    // The warning finding (exec-failure-loop) is pending: its `for` is 15 minutes.
    let alerts = prometheus.alerts();
    assert!(
        alerts.iter().any(|a| a["labels"]["alertname"] == "NodeRuntimeMonitorFindingWarning"
            && a["labels"]["rule"] == "exec-failure-loop"
            && a["state"] == "pending"),
        "{alerts:#?}"
    );
    // Nothing was lost or dropped: no EventsLost alert on this quiet host.
    assert!(!alerts.iter().any(|a| a["labels"]["alertname"] == "NodeRuntimeMonitorEventsLost"), "{alerts:#?}");
    drop(prometheus);
    assert_eq!(daemon.stop(), Some(0));
}
