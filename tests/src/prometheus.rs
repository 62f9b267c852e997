//! A real Prometheus (Debian's `/usr/bin/prometheus`) scraping the daemon on loopback, with
//! the project's rule file loaded, and its HTTP API.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::daemon::{free_port, http_get};

pub const BINARY: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    pub child: Child,
    pub address: SocketAddr,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `job`) every second, evaluating `rule_files`
    /// every second, with its storage in a temporary directory; waits until it is ready.
    pub fn start(job: &str, targets: &[SocketAddr], rule_files: &[&Path]) -> Self {
        let address = free_port();
        let dir = std::env::temp_dir().join(format!("nrm-prometheus-{}-{}", std::process::id(), address.port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules: Vec<String> = rule_files.iter().map(|r| format!("'{}'", r.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
            rules.join(", "),
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {BINARY} (Debian package prometheus): {e}"));
        let mut prometheus = Self { child, address, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(address, "/-/ready").is_none_or(|(status, _)| status != 200) {
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
