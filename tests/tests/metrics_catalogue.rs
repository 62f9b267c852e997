//! docs/METRICS.md is what the daemon serves: a running daemon is scraped and every family in
//! its `# TYPE` lines must be in the catalogue with the same type and label names, and every
//! family the catalogue says is always exported must be served. The scrape must also pass
//! `promtool check metrics`.
//!
//! promtool 2.42 (Debian bookworm) checks only the Prometheus text format 0.0.4: it rejects
//! OpenMetrics text outright (`unknown metric type "info"`, `# UNIT`, `# EOF`), so the test
//! checks the same families rewritten to the text format (counter families named with their
//! `_total` suffix, info as a gauge named `_info`, no `# UNIT`/`# EOF`), which is what
//! Prometheus itself would see through its OpenMetrics parser. Prometheus scraping the daemon
//! for real is tests/tests/prometheus_e2e.rs.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use monitor_tests::{
    daemon::{Daemon, wait_for_metric},
    prometheus::{Entry, catalogue, families},
};

/// OpenMetrics text -> Prometheus text format 0.0.4, for promtool 2.42.
fn to_text_format(scrape: &str, families: &BTreeMap<String, Entry>) -> String {
    let mut out = String::new();
    for line in scrape.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line.strip_prefix("# HELP ").map(|r| ("HELP", r)).or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        if let Some((what, rest)) = meta {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, text) = match families[name].kind.as_str() {
                "counter" => (format!("{name}_total"), text.to_string()),
                "info" => (format!("{name}_info"), if what == "TYPE" { "gauge".to_string() } else { text.to_string() }),
                _ => (name.to_string(), text.to_string()),
            };
            out.push_str(&format!("# {what} {name} {text}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_catalogue_is_what_the_daemon_serves_and_promtool_accepts_it() {
    let daemon = Daemon::start(&[]);
    // A kill of our own, so that a "first series" family (kills_total) is served too.
    let mut victim = Command::new("sleep").arg("300").spawn().expect("sleep");
    std::thread::sleep(Duration::from_millis(200));
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    // Once a series is served it stays: the scrape after the wait has it too.
    wait_for_metric(&daemon, "node_runtime_monitor_kills_total", &[], |_| true, Duration::from_secs(30));
    let scrape = daemon.get("/metrics").expect("/metrics");
    let served = families(&scrape);
    let catalogue = catalogue();

    for (name, got) in &served {
        let Some(doc) = catalogue.get(name) else { panic!("{name} ({}) is served but not in docs/METRICS.md", got.kind) };
        assert_eq!(got.kind, doc.kind, "{name}: type served vs catalogue");
        // A family with no series yet (findings_open with nothing open) has no label names to see.
        if got.samples > 0 {
            assert_eq!(got.labels, doc.labels, "{name}: label names served vs catalogue");
        }
    }
    for (name, doc) in &catalogue {
        if doc.always || name == "node_runtime_monitor_kills" {
            assert!(served.contains_key(name), "{name} is in docs/METRICS.md but not served:\n{scrape}");
        } else if !served.contains_key(name) {
            // Not served yet: the family must be a labelled one (an empty family writes nothing).
            assert!(!doc.labels.is_empty(), "{name}: an unlabelled family is always served");
        }
    }

    // promtool: the OpenMetrics text as served is not its format...
    let (ok, out) = promtool_check_metrics(&scrape);
    assert!(!ok, "promtool check metrics now accepts OpenMetrics text: check it as served: {out}");
    // ...the same families in the text format pass, with no lint problem.
    let text = to_text_format(&scrape, &served);
    let (ok, out) = promtool_check_metrics(&text);
    assert!(ok && out.trim().is_empty(), "promtool check metrics: {out}\n{text}");
    assert_eq!(daemon.stop(), Some(0));
}
