//! The daemon binary run for real, on a free loopback port.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
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

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr")
}

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
    pub fn start_with(mut cmd: Command, args: &[&str]) -> Self {
        let address = free_port();
        let log = std::env::temp_dir().join(format!("nrm-daemon-{}-{}.log", std::process::id(), address.port()));
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let child = cmd
            .arg("run")
            .arg("--listen")
            .arg(address.to_string())
            .args(args)
            .env("NRM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start daemon");
        let mut daemon = Self { child, address, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.get("/healthz").is_none() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon exited early ({status}); log:\n{}", daemon.log_text());
            }
            assert!(Instant::now() < deadline, "daemon not serving after 30s; log:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
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
    let deadline = Instant::now() + limit;
    loop {
        let open = findings(daemon);
        if let Some(f) = open.iter().find(|f| f["rule"] == rule && f["subject"] == subject) {
            return f.clone();
        }
        assert!(Instant::now() < deadline, "no {rule} finding about {subject} after {limit:?}; open: {open:#?}\nlog:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 GET (no client library needed for loopback tests).
pub fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").ok()?;
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
