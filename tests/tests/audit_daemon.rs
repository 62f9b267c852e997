//! The audit as the daemon runs it (the node reader's snapshots judged by the audit stage): a
//! fixed cause closes its finding, and its series (`findings_open{source="audit"}`)
//! disappears, after a watched file changes (well before the periodic interval).

use std::{path::PathBuf, time::Duration};

use monitor::{
    audit::{self, AuditMetrics},
    findings::{self, store::FindingStore},
    node::{
        cri_facts::CriFacts,
        host_root::HostRoot,
        snapshot::{CriSource, SnapshotOptions},
        watch,
    },
};
use prometheus_client::registry::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_watched_file_closes_the_finding_and_its_series() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nodes/incident4-kubespray-containerd2-v3");
    let root = std::env::temp_dir().join(format!("nrm-audit-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    assert!(std::process::Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp").success());
    let cri = CriFacts::from_json(&std::fs::read_to_string(src.with_extension("cri.json")).expect("replay")).expect("replay parses");
    let options = SnapshotOptions { cri: CriSource::Recorded(cri), ..Default::default() };

    let mut registry = Registry::with_prefix("node_runtime_monitor");
    let metrics = AuditMetrics::new(&mut registry);
    let store = FindingStore::new();
    findings::metrics::register(&mut registry, &store);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // What the daemon does: the node reader's snapshots go to the audit stage.
    let watchdog = monitor::progress::Watchdog::default();
    let schedule = watch::ReadSchedule { interval: Duration::from_secs(3600), deadline: Duration::from_secs(30) };
    let node = watch::spawn(HostRoot::new(&root), options, schedule, watchdog.stage("node reader", Duration::from_secs(60)), shutdown);
    let (mut reports, audit_task) = audit::spawn(node.snapshots, store.clone(), metrics, watchdog.stage("audit", Duration::from_secs(30)));
    // Reports seen by polling (a watch channel keeps only the latest, so at most as many as ran).
    let mut seen_reports = 0u32;
    let mut count_reports = || {
        if reports.has_changed().unwrap_or(false) {
            reports.borrow_and_update();
            seen_reports += 1;
        }
        seen_reports
    };
    let scrape = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    };
    let series = "node_runtime_monitor_findings_open{rule=\"cgroup-driver-mismatch\",severity=\"critical\",subject=\"kubelet/containerd\",source=\"audit\"} 1";
    let mut waited = 0;
    while !scrape().contains(series) {
        count_reports();
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(waited < 100, "the first run never exported the finding:\n{}", scrape());
    }
    // The operator makes kubelet use the runtime's real driver.
    let cfg = root.join("etc/kubernetes/kubelet-config.yaml");
    let text = std::fs::read_to_string(&cfg).expect("read").replace("cgroupDriver: systemd", "cgroupDriver: cgroupfs");
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&cfg, text).expect("write");
    let mut waited = 0;
    while scrape().contains(series) {
        count_reports();
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(waited < 100, "the finding stayed open after the fix:\n{}", scrape());
    }
    let seen = count_reports();
    let text = scrape();
    assert!(text.contains("rule=\"containerd-config-tables-ignored\""), "other findings stay open:\n{text}");
    let runs = monitor_tests::daemon::metric_value(&text, "node_runtime_monitor_audit_runs_total", &[]).unwrap_or(0.0);
    assert!(runs >= 2.0 && runs >= f64::from(seen), "audit_runs_total {runs}, {seen} reports seen:\n{text}");
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), node.task).await.expect("node reader stops").expect("task ok");
    tokio::time::timeout(Duration::from_secs(5), audit_task).await.expect("audit stage stops").expect("task ok");
    let _ = std::fs::remove_dir_all(&root);
}

/// A watched file replaced while the node reader reads (after it read that file, before the
/// read ends) by a rename keeping an older mtime (`mv`, `cp -p`) is read again at the next
/// poll, not at the next interval. The read is held in its CRI phase by a socket that accepts
/// and never answers: its first connection says the files were read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_during_a_read_is_read_again() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nodes/incident4-kubespray-containerd2-v3");
    let root = std::env::temp_dir().join(format!("nrm-watch-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    assert!(std::process::Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp").success());
    // kubelet's runtime endpoint: a socket that accepts and never answers.
    std::fs::create_dir_all(root.join("var/run/containerd")).expect("mkdir");
    let listener = std::os::unix::net::UnixListener::bind(root.join("var/run/containerd/containerd.sock")).expect("bind");
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
            if accepted_tx.send(()).is_err() {
                return;
            }
        }
    });
    let options = SnapshotOptions { cri: CriSource::Live { timeout: Duration::from_millis(700) }, ..Default::default() };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let watchdog = monitor::progress::Watchdog::default();
    let schedule = watch::ReadSchedule { interval: Duration::from_secs(3600), deadline: Duration::from_secs(30) };
    let mut node = watch::spawn(HostRoot::new(&root), options, schedule, watchdog.stage("node reader", Duration::from_secs(60)), shutdown);
    let driver = |node: &watch::NodeWatch| {
        node.snapshots.borrow().as_ref().map(|s| s.kubelet.cgroup_driver().value.clone()).unwrap_or_default()
    };
    // The first reads settle (a read of files never seen before is followed by one more).
    tokio::time::timeout(Duration::from_secs(30), node.snapshots.wait_for(|s| s.is_some())).await.expect("first read").expect("reader");
    tokio::time::sleep(monitor::node::watch::POLL * 3).await;
    assert_eq!(driver(&node), "systemd");
    while accepted.try_recv().is_ok() {}

    // A change makes the next read come; once it is asking the socket, its files are read.
    let cfg = root.join("etc/kubernetes/kubelet-config.yaml");
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(&cfg, format!("{text}# touched\n")).expect("write");
    tokio::task::spawn_blocking(move || accepted.recv_timeout(Duration::from_secs(20)).expect("the read reached the socket"))
        .await
        .expect("join");
    // Replaced meanwhile, by a file whose mtime is an hour old.
    let replacement = root.join("etc/kubernetes/.kubelet-config.yaml.new");
    std::fs::write(&replacement, text.replace("cgroupDriver: systemd", "cgroupDriver: cgroupfs")).expect("write");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&replacement).expect("open").set_modified(old).expect("mtime");
    std::fs::rename(&replacement, &cfg).expect("rename");

    let read_again = tokio::time::timeout(Duration::from_secs(20), async {
        while driver(&node) != "cgroupfs" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(read_again.is_ok(), "the replaced file was not read again: cgroupDriver still {}", driver(&node));
    stop.send(true).expect("stop");
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut node.task).await;
    let _ = std::fs::remove_dir_all(&root);
}
