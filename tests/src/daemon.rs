//! The daemon binary run for real, on a loopback port the kernel picks for it.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Path of the daemon binary built by cargo for this test run.
pub fn binary() -> PathBuf {
    // tests/ is a workspace member: the binary sits next to the test executable's deps dir.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("node-runtime-monitor");
    assert!(bin.exists(), "{} not built; run the suite through `cargo xtask test`", bin.display());
    bin
}

/// The message the daemon logs once it listens, with the address it got as a field.
const SERVING: &str = "serving /metrics, /findings, /healthz";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

pub struct Daemon {
    pub child: Child,
    pub address: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `node-runtime-monitor run` with `args` and waits until it serves /healthz.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(binary()), args)
    }

    /// Starts the daemon through `cmd` (e.g. a `setpriv` wrapper whose last argument is the binary).
    ///
    /// The daemon listens on `127.0.0.1:0` and its address is read from its log: no port is
    /// chosen here and released for it, so none can be taken by another test in between.
    pub fn start_with(cmd: Command, args: &[&str]) -> Self {
        Self::start_until(cmd, args, |daemon| daemon.get("/healthz").is_some())
    }

    /// Starts the daemon through `cmd` and waits until it logs its address and `serving` says
    /// so (for a daemon that serves TLS, which [`Daemon::get`] does not speak).
    pub fn start_until(mut cmd: Command, args: &[&str], serving: impl Fn(&Daemon) -> bool) -> Self {
        let log = std::env::temp_dir().join(format!(
            "nrm-daemon-{}-{}.log",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let log_file = std::fs::File::create(&log).expect("daemon log");
        // Each daemon of the suite has its own state directory (unless the test gives one): on a
        // node there is one monitor, here many start and stop side by side, and a shared state
        // would report each other's runs as the previous run (`monitor-restarted`).
        let state_dir = log.with_extension("state");
        let mut state_args: Vec<&std::ffi::OsStr> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--state-dir")) {
            state_args.extend([std::ffi::OsStr::new("--state-dir"), state_dir.as_os_str()]);
        }
        let child = cmd
            .arg("run")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&state_args)
            .args(args)
            .env("NRM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start daemon");
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut daemon = Self { child, address: unbound, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if daemon.address == unbound
                && let Some(address) = serving_address(&daemon.log_text())
            {
                daemon.address = address;
            }
            if daemon.address != unbound && serving(&daemon) {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon exited early ({status}); log:\n{}", daemon.log_text());
            }
            assert!(Instant::now() < deadline, "daemon not serving after 30s; log:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path`; the body when the status is 200.
    pub fn get(&self, path: &str) -> Option<String> {
        let (status, body) = http_get(self.address, path)?;
        (status == 200).then_some(body)
    }

    /// Sends SIGTERM and waits for the exit status code.
    pub fn stop(self) -> Option<i32> {
        self.stop_with_log().0
    }

    /// Sends SIGTERM, waits, and returns the exit status code and the whole log.
    pub fn stop_with_log(mut self) -> (Option<i32>, String) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon ignored SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Keep the log of a failed test for its report; otherwise leave nothing behind.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
        let _ = std::fs::remove_dir_all(self.log.with_extension("state"));
    }
}

/// Open findings as `/findings` serves them.
pub fn findings(daemon: &Daemon) -> Vec<serde_json::Value> {
    let body = daemon.get("/findings").unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["findings"].as_array().cloned())
        .unwrap_or_default()
}

/// Waits (bounded) until a finding of `rule` about `subject` is open; returns it.
pub fn wait_for_finding(daemon: &Daemon, rule: &str, subject: &str, limit: Duration) -> serde_json::Value {
    wait_for_finding_where(daemon, rule, subject, limit, |_| true)
}

/// Waits (bounded) until a finding of `rule` about `subject` is open and `pred` holds for it
/// (e.g. it was refreshed: `count >= 2`); returns it. Panics with the open findings (the one
/// about `subject` as it was last) when it never does.
pub fn wait_for_finding_where(
    daemon: &Daemon,
    rule: &str,
    subject: &str,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let open = findings(daemon);
        if let Some(f) = open.iter().find(|f| f["rule"] == rule && f["subject"] == subject && pred(f)) {
            return f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {rule} finding about {subject} as expected after {limit:?}; open: {open:#?}\nlog:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until the sample `name{labels}` (as [`metric_value`] finds it) is served and
/// `pred` holds for its value; returns the value. A series not served yet never satisfies.
/// Panics with the last scrape when it never does.
pub fn wait_for_metric(daemon: &Daemon, name: &str, labels: &[&str], pred: impl Fn(f64) -> bool, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let metrics = daemon.get("/metrics").unwrap_or_default();
        let value = metric_value(&metrics, name, labels);
        if let Some(value) = value
            && pred(value)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{}}} is {value:?}, not as expected after {limit:?}:\n{metrics}\nlog:\n{}",
            labels.join(","),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until the daemon's log contains `needle`; returns the log.
pub fn wait_for_log(daemon: &Daemon, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = daemon.log_text();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "the log has no {needle:?} after {limit:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address in the daemon's `serving ...` log line (`address=127.0.0.1:PORT` in the text
/// format, its terminal colours or not; `"address":"..."` in JSON).
fn serving_address(log: &str) -> Option<SocketAddr> {
    let line = strip_ansi(log.lines().find(|l| l.contains(SERVING))?);
    let (_, rest) = line.split_once("address=").or_else(|| line.split_once("\"address\":\""))?;
    rest.split(|c: char| c.is_whitespace() || c == '"' || c == ',').next()?.parse().ok()
}

/// `text` without terminal escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A minimal HTTP/1.1 GET (no client library needed for loopback tests).
pub fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_with(address, path, "")
}

/// [`http_get`] with `headers` (each line ending in `\r\n`) added to the request.
pub fn http_get_with(address: SocketAddr, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `name{labels}` (labels as printed, e.g. `program="x",hook="y"`).
pub fn metric_value(metrics: &str, name: &str, labels_contain: &[&str]) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let series_name = series.split('{').next()?;
        if series_name != name || !labels_contain.iter().all(|l| series.contains(l)) {
            return None;
        }
        value.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_the_daemon_got_from_its_log() {
        let coloured = "\u{1b}[2m2026-12-01T21:41:52.223668Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mmonitor::daemon\u{1b}[0m\u{1b}[2m:\u{1b}[0m serving /metrics, /findings, /healthz \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:39715\n";
        assert_eq!(serving_address(coloured), Some("127.0.0.1:39715".parse().unwrap()));
        let plain = "2026-12-01T21:41:52Z  INFO monitor::daemon: starting\n2026-12-01T21:41:52Z  INFO monitor::daemon: serving /metrics, /findings, /healthz address=127.0.0.1:8080\n";
        assert_eq!(serving_address(plain), Some("127.0.0.1:8080".parse().unwrap()));
        let json = r#"{"timestamp":"x","level":"INFO","fields":{"message":"serving /metrics, /findings, /healthz","address":"127.0.0.1:9"},"target":"monitor::daemon"}"#;
        assert_eq!(serving_address(json), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(serving_address("INFO monitor::daemon: starting\n"), None);
    }
}
