//! A real Prometheus (Debian's `/usr/bin/prometheus`) scraping the daemon on loopback, with
//! the project's rule file loaded, and its HTTP API.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::daemon::http_get;

pub const BINARY: &str = "/usr/bin/prometheus";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

pub struct Prometheus {
    pub child: Child,
    pub address: SocketAddr,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `job`) every second, evaluating `rule_files`
    /// every second, with its storage in a temporary directory; waits until it is ready.
    ///
    /// It listens on `127.0.0.1:0` and its address is read from its log (`msg="Listening on"
    /// address=...`): no port is chosen here and released for it, so none can be taken by
    /// another test in between.
    pub fn start(job: &str, targets: &[SocketAddr], rule_files: &[&Path]) -> Self {
        Self::start_scraping(job, targets, "", rule_files)
    }

    /// [`Prometheus::start`], with `scrape_settings` added to the job's scrape config (YAML
    /// keys at the job's level, e.g. `scheme: https` and its `tls_config`, `basic_auth`).
    pub fn start_scraping(job: &str, targets: &[SocketAddr], scrape_settings: &str, rule_files: &[&Path]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "nrm-prometheus-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules: Vec<String> = rule_files.iter().map(|r| format!("'{}'", r.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n{}",
            rules.join(", "),
            targets.join(", "),
            scrape_settings.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {BINARY} (Debian package prometheus): {e}"));
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut prometheus = Self { child, address: unbound, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if prometheus.address == unbound
                && let Some(address) = listening_address(&prometheus.log_text())
            {
                prometheus.address = address;
            }
            if prometheus.address != unbound && http_get(prometheus.address, "/-/ready").is_some_and(|(status, _)| status == 200) {
                break;
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}); log:\n{}", prometheus.log_text());
            }
            assert!(Instant::now() < deadline, "prometheus not ready after 60s; log:\n{}", prometheus.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        // Ready comes before the rule manager has loaded the rule files: wait for their groups.
        let files: Vec<String> = rule_files.iter().map(|r| r.display().to_string()).collect();
        while !files.iter().all(|f| prometheus.rule_groups().iter().any(|g| g["file"].as_str() == Some(f.as_str()))) {
            assert!(Instant::now() < deadline, "rule files {files:?} not loaded after 60s; log:\n{}", prometheus.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` on the API; the `data` of a `success` answer.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.address, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        assert!(status == 200 && answer["status"] == "success", "GET {path}: {status} {body}");
        answer["data"].clone()
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (bounded) until `expr` returns at least one series.
    pub fn wait_for(&self, expr: &str, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let result = self.query(expr);
            if !result.is_empty() {
                return result;
            }
            assert!(Instant::now() < deadline, "no data for {expr} after {limit:?}; targets: {}", self.api("/api/v1/targets"));
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Active alerts (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Loaded rule groups (`/api/v1/rules`).
    pub fn rule_groups(&self) -> Vec<Value> {
        self.api("/api/v1/rules")["groups"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            eprintln!("prometheus log ({}):\n{}", self.dir.display(), self.log_text());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The address in Prometheus's `msg="Listening on" address=127.0.0.1:PORT` log line (the web
/// listener's real address; the `Start listening` line before it names the configured one).
fn listening_address(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("msg=\"Listening on\""))?;
    let (_, rest) = line.split_once(" address=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Percent-encoding of a query parameter (RFC 3986 unreserved characters kept).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A metric family: of docs/METRICS.md ([`catalogue`]) or of a scrape ([`families`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Type as in `# TYPE`.
    pub kind: String,
    pub labels: BTreeSet<String>,
    pub always: bool,
    /// Samples served (scrape only).
    pub samples: usize,
}

/// The catalogue: `# TYPE` family name -> entry.
pub fn catalogue() -> BTreeMap<String, Entry> {
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
pub fn families(scrape: &str) -> BTreeMap<String, Entry> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_prometheus_got_from_its_log() {
        // Prometheus 2.42's lines, as it logs them with `--web.listen-address=127.0.0.1:0`.
        let log = "ts=2026-12-01T21:41:41.991Z caller=web.go:503 level=info component=web msg=\"Start listening for connections\" address=127.0.0.1:0\n\
                   ts=2026-12-01T21:41:41.992Z caller=tls_config.go:232 level=info component=web msg=\"Listening on\" address=127.0.0.1:32973\n";
        assert_eq!(listening_address(log), Some("127.0.0.1:32973".parse().unwrap()));
        assert_eq!(listening_address(log.lines().next().unwrap()), None);
    }
}
