//! The audit as the daemon runs it: a fixed cause closes its finding, and its series
//! (`findings_open{source="audit"}`) disappears, after a watched file changes (well before the
//! periodic interval).

use std::{path::PathBuf, sync::{Arc, Mutex}, time::Duration};

use monitor::{
    audit::{Audit, AuditOptions, CriFacts, CriSource, metrics::{AuditMetrics, spawn_periodic}},
    findings::{metrics::FindingMetrics, store::FindingStore},
};
use prometheus_client::registry::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_watched_file_closes_the_finding_and_its_series() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nodes/incident4-kubespray-containerd2-v3");
    let root = std::env::temp_dir().join(format!("nrm-audit-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    assert!(std::process::Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp").success());
    let cri = CriFacts::from_json(&std::fs::read_to_string(src.with_extension("cri.json")).expect("replay")).expect("replay parses");
    let audit = Audit::new(&root, AuditOptions { cri: CriSource::Recorded(cri), ..Default::default() });

    let mut registry = Registry::with_prefix("node_runtime_monitor");
    let metrics = AuditMetrics::new(&mut registry);
    let store = FindingStore::new();
    let findings = FindingMetrics::new(&mut registry, store.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runs = Arc::new(Mutex::new(0u32));
    let counter = runs.clone();
    // What the daemon does with each report.
    let task = spawn_periodic(audit, metrics, Duration::from_secs(3600), shutdown, move |report| {
        *counter.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        findings.record(&store.replace("audit", report.findings.clone(), std::time::SystemTime::now()));
    });
    let scrape = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    };
    let series = "node_runtime_monitor_findings_open{rule=\"cgroup-driver-mismatch\",severity=\"critical\",subject=\"kubelet/containerd\",source=\"audit\"} 1";
    let mut waited = 0;
    while !scrape().contains(series) {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(waited < 100, "the finding stayed open after the fix:\n{}", scrape());
    }
    let text = scrape();
    assert!(text.contains("rule=\"containerd-config-tables-ignored\""), "other findings stay open:\n{text}");
    let runs = *runs.lock().unwrap_or_else(|e| e.into_inner());
    assert!(runs >= 2);
    assert!(text.contains(&format!("node_runtime_monitor_audit_runs_total {runs}")), "{text}");
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("task stops").expect("task ok");
    let _ = std::fs::remove_dir_all(&root);
}
