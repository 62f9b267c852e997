//! The daemon binary for real: start-up, what it serves, degraded start-up, clean shutdown.

use std::process::Command;

use monitor::probes::PROGRAMS;
use monitor_tests::daemon::{Daemon, binary, metric_value};

/// Ids of the BPF programs whose fds process `pid` holds (from /proc/PID/fdinfo).
fn bpf_programs_of(pid: u32) -> Vec<u64> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids: Vec<u64> = std::fs::read_dir(&dir)
        .expect("read fdinfo")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok())))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether the kernel still has program `id` (bpftool asks the kernel, independently of us).
fn bpf_program_exists(id: u64) -> bool {
    Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn serves_metrics_health_and_findings_then_detaches_on_sigterm() {
    let daemon = Daemon::start(&[]);
    let metrics = daemon.get("/metrics").expect("/metrics answers 200");
    for spec in PROGRAMS {
        let up = metric_value(&metrics, "node_runtime_monitor_probe_up", &[&format!("program=\"{}\"", spec.name)]);
        assert_eq!(up, Some(1.0), "{} attached; log:\n{}", spec.name, daemon.log_text());
    }
    assert!(metrics.contains("node_runtime_monitor_build_info{"), "build info exported");
    for kind in ["exec", "exec_failed", "exit", "oom_kill", "connect", "signal"] {
        assert!(
            metric_value(&metrics, "node_runtime_monitor_events_total", &[&format!("kind=\"{kind}\"")]).is_some(),
            "events_total{{kind={kind}}} exported"
        );
    }
    assert!(metric_value(&metrics, "node_runtime_monitor_kernel_events_lost_total", &["program=\"sched_process_exec\""]).is_some());
    assert!(metrics.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    let health = daemon.get("/healthz").expect("/healthz answers 200");
    assert!(health.contains(&format!("{0}/{0} kernel programs attached", PROGRAMS.len())), "{health}");
    let findings: serde_json::Value = serde_json::from_str(&daemon.get("/findings").expect("/findings")).expect("JSON");
    assert!(findings["findings"].is_array());

    // Events flow: an exec by us shows up in the counter.
    let before = metric_value(&metrics, "node_runtime_monitor_events_total", &["kind=\"exec\""]).unwrap_or(0.0);
    for _ in 0..5 {
        Command::new("/bin/true").status().expect("run /bin/true");
    }
    let mut after = before;
    for _ in 0..100 {
        after = metric_value(&daemon.get("/metrics").unwrap_or_default(), "node_runtime_monitor_events_total", &["kind=\"exec\""])
            .unwrap_or(0.0);
        if after >= before + 5.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(after >= before + 5.0, "exec counter went from {before} to {after}");

    let pid = daemon.child.id();
    let programs = bpf_programs_of(pid);
    assert_eq!(programs.len(), PROGRAMS.len(), "bpftool sees the daemon's {} programs", PROGRAMS.len());
    let log = daemon.log.clone();
    assert_eq!(daemon.stop(), Some(0), "exit code 0 on SIGTERM");
    let leftovers: Vec<u64> = programs.into_iter().filter(|id| bpf_program_exists(*id)).collect();
    assert!(leftovers.is_empty(), "programs left in the kernel after SIGTERM: {leftovers:?}");
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(log.contains("SIGTERM received") && log.contains("stopped"), "{log}");
}

#[test]
fn a_disabled_probe_is_reported_down_while_the_others_work() {
    let daemon = Daemon::start(&["--disable-probe", "signal_generate"]);
    let metrics = daemon.get("/metrics").expect("/metrics");
    for spec in PROGRAMS {
        let expected = if spec.name == "signal_generate" { 0.0 } else { 1.0 };
        let up = metric_value(&metrics, "node_runtime_monitor_probe_up", &[&format!("program=\"{}\"", spec.name)]);
        assert_eq!(up, Some(expected), "{}", spec.name);
    }
    assert!(daemon.log_text().contains("not attached, fatal signals and their senders will be missed"));
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn without_privileges_the_daemon_runs_degraded_and_says_why() {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-all", "--inh-caps=-all", "--"]).arg(binary());
    let daemon = Daemon::start_with(cmd, &[]);
    let metrics = daemon.get("/metrics").expect("/metrics still served");
    for spec in PROGRAMS {
        let up = metric_value(&metrics, "node_runtime_monitor_probe_up", &[&format!("program=\"{}\"", spec.name)]);
        assert_eq!(up, Some(0.0), "{} reported down", spec.name);
    }
    let log = daemon.log_text();
    assert!(log.contains("kernel probes unavailable, running without them"), "{log}");
    assert!(daemon.get("/healthz").is_some_and(|h| h.contains(&format!("0/{}", PROGRAMS.len()))));
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn the_test_harness_fails_loudly_without_privileges() {
    let out = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_load-probes"))
        .output()
        .expect("run load-probes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loading must fail without capabilities");
    assert!(stderr.contains("cannot load the eBPF programs") && stderr.contains("need root"), "{stderr}");
    // And with them it works: the failure above is about privileges, not a broken harness.
    let ok = Command::new(env!("CARGO_BIN_EXE_load-probes")).output().expect("run load-probes");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}
