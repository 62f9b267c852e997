//! The monitor reports on itself: its restarts, and a previous run the kernel OOM-killed (read
//! from its memory cgroup at start), as metrics and the `monitor-restarted` finding. The OOM
//! kill is real: the daemon runs in a v1 memory cgroup with a limit, made the OOM killer's
//! first choice (oom_score_adj 1000), and a memory hog fills the cgroup (it may be killed
//! next, once the daemon's memory is not enough: the count is then 2).

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use monitor_tests::{
    cgroups::TestCgroup,
    daemon::{Daemon, binary, findings, metric_value},
};

const PYTHON: &str = "/usr/bin/python3";

/// The daemon, started inside `memcg` with `state_dir`.
fn start_in(memcg: &TestCgroup, state_dir: &Path) -> Daemon {
    let mut cmd = Command::new(binary());
    join_on_exec(&mut cmd, memcg.procs());
    Daemon::start_with(cmd, &["--state-dir", state_dir.to_str().expect("utf-8 path")])
}

fn join_on_exec(cmd: &mut Command, procs: PathBuf) {
    // SAFETY: the closure only opens and writes a file before exec.
    unsafe {
        cmd.pre_exec(move || fs::write(&procs, b"0"));
    }
}

fn metric(daemon: &Daemon, name: &str) -> Option<f64> {
    metric_value(&daemon.get("/metrics").unwrap_or_default(), name, &[])
}

fn monitor_findings(daemon: &Daemon) -> Vec<serde_json::Value> {
    findings(daemon).into_iter().filter(|f| f["rule"] == "monitor-restarted").collect()
}

#[test]
fn restarts_and_an_oom_kill_of_the_previous_run_are_reported() {
    let state = std::env::temp_dir().join(format!("nrm-self-report-{}", std::process::id()));
    let _ = fs::remove_dir_all(&state);
    let memcg = TestCgroup::memory("nrm-self", 1 << 30);

    // A first start, stopped cleanly, then a second: restarts counted, nothing to report.
    let daemon = start_in(&memcg, &state);
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_restarts_total"), Some(0.0));
    assert!(monitor_findings(&daemon).is_empty());
    assert_eq!(daemon.stop(), Some(0));
    let daemon = start_in(&memcg, &state);
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_restarts_total"), Some(1.0));
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_oom_kills_total"), Some(0.0));
    assert!(monitor_findings(&daemon).is_empty(), "a clean stop is not a finding: {:?}", findings(&daemon));

    // The kernel OOM-kills it: it is made the first victim.
    let pid = daemon.child.id();
    fs::write(format!("/proc/{pid}/oom_score_adj"), "1000").expect("oom_score_adj of the daemon");
    memcg.set_memory_limit(memcg.memory_usage() + (40 << 20));
    let mut hog = Command::new(PYTHON);
    hog.args(["-c", "import time\nb = []\nfor i in range(400):\n    b.append(bytearray(1 << 20))\n    b[-1][::4096] = b'x' * 256\ntime.sleep(60)\n"]);
    join_on_exec(&mut hog, memcg.procs());
    let mut hog = hog.spawn().expect("start the memory hog");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut daemon = daemon;
    let status = loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon was not OOM-killed; log:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = hog.kill();
    let _ = hog.wait();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status:?}");
    assert!(memcg.oom_kills() >= 1, "the kernel counted the kill");
    drop(daemon);

    // The next start says so.
    memcg.set_memory_limit(1 << 30);
    let daemon = start_in(&memcg, &state);
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_restarts_total"), Some(2.0));
    let kills = metric(&daemon, "node_runtime_monitor_self_oom_kills_total").unwrap_or(0.0);
    assert!(kills >= 1.0, "self_oom_kills_total {kills}");
    let found = monitor_findings(&daemon);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["severity"], "warning");
    assert_eq!(found[0]["source"], "monitor");
    assert_eq!(found[0]["title"], "The monitor's previous run was OOM-killed", "{:#?}", found[0]);
    assert!(daemon.log_text().contains("the previous run of the monitor was OOM-killed"));

    // Killed without an OOM kill: reported as killed or crashed.
    let mut daemon = daemon;
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    drop(daemon);
    let daemon = start_in(&memcg, &state);
    let found = monitor_findings(&daemon);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["title"], "The monitor's previous run was killed or crashed");
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_oom_kills_total"), Some(0.0));
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(&state);
}

/// A start that cannot listen (its port taken) exits with the reason and leaves the state file
/// as the run before it left it: the next start reports nothing after a clean stop, and still
/// reports a kill of the run before.
#[test]
fn a_start_that_cannot_listen_leaves_the_previous_run_as_it_was() {
    let state = std::env::temp_dir().join(format!("nrm-self-report-bind-{}", std::process::id()));
    let _ = fs::remove_dir_all(&state);
    let state_arg = state.to_str().expect("utf-8 path");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    let port_taken = || {
        let out = Command::new(binary())
            .args(["run", "--listen", &taken.local_addr().expect("address").to_string(), "--state-dir", state_arg])
            .env("NRM_LOG", "info")
            .output()
            .expect("run the daemon");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "the daemon must not run without its port:\n{stderr}");
        assert!(stderr.contains("cannot listen on"), "{stderr}");
    };

    let daemon = Daemon::start(&["--state-dir", state_arg]);
    assert_eq!(daemon.stop(), Some(0));
    port_taken();
    let daemon = Daemon::start(&["--state-dir", state_arg]);
    assert!(monitor_findings(&daemon).is_empty(), "a clean stop, then a start that could not listen: {:#?}", findings(&daemon));
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_restarts_total"), Some(1.0));

    // Killed, then a start that cannot listen: the kill is still reported at the next start.
    let mut daemon = daemon;
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    drop(daemon);
    port_taken();
    let daemon = Daemon::start(&["--state-dir", state_arg]);
    let found = monitor_findings(&daemon);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["title"], "The monitor's previous run was killed or crashed");
    assert_eq!(metric(&daemon, "node_runtime_monitor_self_restarts_total"), Some(2.0));
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(&state);
}
