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
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::daemon::Daemon;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Type as in `# TYPE`.
    kind: String,
    labels: BTreeSet<String>,
    always: bool,
    /// Samples served (scrape only).
    samples: usize,
}

/// The catalogue: `# TYPE` family name -> entry.
fn catalogue() -> BTreeMap<String, Entry> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/METRICS.md");
    let text = std::fs::read_to_string(&path).expect("docs/METRICS.md");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `node_runtime_monitor_")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "docs/METRICS.md row: {line}");
        let name = cells[0].trim_matches('`');
        let kind = cells[1].to_string();
        let family = match kind.as_str() {
            "counter" => name.strip_suffix("_total").unwrap_or_else(|| panic!("counter {name} without _total")),
            "info" => name.strip_suffix("_info").unwrap_or_else(|| panic!("info {name} without _info")),
            "gauge" => name,
            other => panic!("{name}: type {other}?"),
        };
        let labels = cells[2].split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        let always = match cells[3] {
            "always" => true,
            "first series" => false,
            other => panic!("{name}: exported {other}?"),
        };
        assert!(out.insert(family.to_string(), Entry { kind, labels, always, samples: 0 }).is_none(), "{name} twice");
    }
    assert!(out.len() >= 20, "the catalogue lists every family: {}", out.len());
    out
}

/// The scrape's families: `# TYPE` name -> (type, label names of its samples).
fn families(scrape: &str) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut current = None;
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            let entry = Entry { kind: kind.to_string(), labels: BTreeSet::new(), always: true, samples: 0 };
            assert!(out.insert(name.to_string(), entry).is_none(), "family {name} served twice");
            current = Some(name.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let family = current.as_ref().expect("sample before any # TYPE");
            let sample = line.split(' ').next().unwrap();
            out.get_mut(family).unwrap().samples += 1;
            assert!(sample.starts_with(family.as_str()), "sample {sample} under family {family}");
            if let Some((_, labels)) = sample.split_once('{') {
                let labels = labels.trim_end_matches('}');
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let name = pair.split_once('=').expect("label=value").0;
                    out.get_mut(family).unwrap().labels.insert(name.to_string());
                }
            }
        }
    }
    out
}

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
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = loop {
        let scrape = daemon.get("/metrics").expect("/metrics");
        if scrape.contains("node_runtime_monitor_kills_total{") {
            break scrape;
        }
        assert!(Instant::now() < deadline, "no kills_total after a SIGKILL; log:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
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
