//! The daemon beside workloads it does not trust: each attack is run for real, and the daemon
//! keeps working, says what it could not do, and is not steered.

use std::{
    fs,
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use monitor_tests::daemon::{Daemon, findings, http_get, wait_for_finding};

const WAIT: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrm-hostile-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Polls `/healthz` until its status and body satisfy `want`; returns the body.
fn healthz_until(daemon: &Daemon, want: impl Fn(u16, &str) -> bool, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((status, body)) = http_get(daemon.address, "/healthz") {
            if want(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("/healthz never as expected within {limit:?}; last {last:?}\nlog:\n{}", daemon.log_text());
}

#[test]
fn a_runtime_socket_that_never_answers_stalls_the_read_and_the_daemon_says_so() {
    // A socket at containerd's path that accepts connections (the kernel queues them) and never
    // answers: every CRI call on it waits for its timeout, and the read of the node takes
    // longer than its deadline.
    let root = scratch("stall");
    fs::create_dir_all(root.join("run/containerd")).expect("run dir");
    let listener = UnixListener::bind(root.join("run/containerd/containerd.sock")).expect("listen");
    let root_arg = root.display().to_string();
    let daemon = Daemon::start(&[
        "--host-root",
        &root_arg,
        "--node-read-deadline-ms",
        "150",
        "--audit-interval-seconds",
        "1",
    ]);
    let stalled = wait_for_finding(&daemon, "node-read-stalled", "node", WAIT);
    assert_eq!(stalled["severity"], "warning");
    assert!(stalled["evidence"].to_string().contains("took longer than 150ms"), "{stalled:#}");
    // While a read runs past twice its deadline, the liveness check fails and says why.
    let body = healthz_until(&daemon, |status, body| status == 503 && body.contains("node reader: busy for"), WAIT);
    assert!(body.starts_with("stalled: "), "{body}");

    // The socket gone, reads complete again: the finding closes, /healthz is 200.
    drop(listener);
    let _ = fs::remove_file(root.join("run/containerd/containerd.sock"));
    let deadline = Instant::now() + WAIT;
    while findings(&daemon).iter().any(|f| f["rule"] == "node-read-stalled") {
        assert!(Instant::now() < deadline, "node-read-stalled never closed:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    healthz_until(&daemon, |status, _| status == 200, WAIT);
    assert_eq!(daemon.stop(), Some(0));
    let _ = fs::remove_dir_all(root);
}

/// Runs `script` with `sh` as an unprivileged user (nobody) in mount and user namespaces of
/// its own, as a pod's process or a node user could; returns its pid.
fn spawn_unprivileged(script: &str) -> std::process::Child {
    Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
        .args(["/usr/bin/unshare", "--user", "--map-root-user", "--mount", "--", "/bin/sh", "-c", script])
        .spawn()
        .expect("setpriv and unshare (util-linux)")
}

#[test]
fn a_fake_containerd_in_its_own_namespace_cannot_steer_the_audit() {
    // The measured attack: a process named containerd, run by an unprivileged user in a mount
    // namespace of its own, whose --config names a FIFO on the host. The daemon took its
    // command line as the node's containerd's and blocked on the FIFO.
    let dir = scratch("fake-containerd");
    let fifo = dir.join("config.toml");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    // An interpreter under the name `containerd` (a link keeps its library path working).
    let fake = dir.join("containerd");
    std::os::unix::fs::symlink("/usr/bin/python3", &fake).expect("link");
    let _ = Command::new("chmod").args(["755"]).arg(&dir).status();
    let mut attacker =
        spawn_unprivileged(&format!("exec {} -c 'import time; time.sleep(600)' --config {}", fake.display(), fifo.display()));
    // Its command line is in /proc as planted, once setpriv, unshare and sh have exec'd it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cmdline = fs::read(format!("/proc/{}/cmdline", attacker.id())).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.starts_with(&format!("{} -c", fake.display())) && text.contains("--config") {
            break;
        }
        // unshare and setpriv exec in turn: wait for the last exec.
        assert!(Instant::now() < deadline, "the attacker never ran: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The process view the node's context comes from leaves it out (it is not the host's: another
    // user, another mount namespace), though its name is the runtime's.
    let host = monitor::node::host_root::HostRoot::new("/");
    let view = monitor::node::binaries::processes(&host).expect("a process view");
    assert!(view.iter().any(|p| p.pid == 1), "the host's own processes are there");
    assert!(!view.iter().any(|p| p.pid == attacker.id()), "the attacker is taken for the host's containerd");

    // `check` finishes (it hung forever) and never names the FIFO.
    let started = Instant::now();
    let out = Command::new(monitor_tests::daemon::binary()).args(["check", "--output", "json"]).output().expect("check");
    assert!(started.elapsed() < Duration::from_secs(60), "check took {:?}", started.elapsed());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!report.contains(fifo.to_str().expect("utf-8")), "the attacker's config reached the audit:\n{report}");

    // The daemon answers, its audit runs and names no FIFO, and it stops on SIGTERM.
    let daemon = Daemon::start(&[]);
    let deadline = Instant::now() + WAIT;
    while !daemon.get("/metrics").unwrap_or_default().contains("node_runtime_monitor_audit_runs_total 1") {
        assert!(Instant::now() < deadline, "no audit ran:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = daemon.get("/findings").unwrap_or_default();
    assert!(!all.contains(fifo.to_str().expect("utf-8")), "{all}");
    assert_eq!(daemon.stop(), Some(0));
    let _ = attacker.kill();
    let _ = attacker.wait();
    let _ = fs::remove_dir_all(dir);
}

/// What the file beside the host root holds: it must never be read.
const OUTSIDE_SECRET: &str = "outside-the-root";

/// A scratch directory (returned first) holding a host root with containerd's config directory
/// and, beside the root, a containerd config with a registry password ([`OUTSIDE_SECRET`]).
fn root_beside_a_secret(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = scratch(name);
    let root = base.join("root");
    fs::create_dir_all(root.join("etc/containerd")).expect("etc");
    let outside = base.join("outside.toml");
    let config = format!("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"x\".auth]\n  password = \"{OUTSIDE_SECRET}\"\n");
    fs::write(&outside, config).expect("secret");
    (base, root, outside)
}

/// One audit of `root` (the CRI's answer recorded, empty), which must neither read the file
/// beside the root nor report it (`what`: the case, for the message). Returns the texts of
/// containerd's config files it read.
fn audit_inside(root: &Path, what: &str) -> Vec<String> {
    use monitor::{
        audit::Audit,
        node::{
            cri_facts::CriFacts,
            snapshot::{CriSource, SnapshotOptions},
        },
    };
    let options = SnapshotOptions { cri: CriSource::Recorded(CriFacts::default()), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let report = rt.block_on(Audit::new(root, options).run_once());
    let read: Vec<String> = report.snapshot.containerd_config.files.iter().map(|f| f.text.clone()).collect();
    assert!(read.iter().all(|t| !t.contains(OUTSIDE_SECRET)), "{what}: read the file outside the root");
    let text = monitor::exporters::check_report::json(&report);
    assert!(!text.contains(OUTSIDE_SECRET), "{text}");
    read
}

#[test]
fn a_link_under_the_host_root_leads_nowhere_outside_it() {
    // A workload that can write under the host root plants links at containerd's config: one
    // climbing out with `..`, one naming a file beside the root in full, and one at the end
    // of a chain longer than the 40 hops a resolver follows (the old resolver kept the 41st
    // link as it was, and the open then followed it out).
    let (base, root, outside) = root_beside_a_secret("links");
    for i in 0..45 {
        std::os::unix::fs::symlink(format!("/chain{}", i + 1), root.join(format!("chain{i}"))).expect("chain");
    }
    std::os::unix::fs::symlink(&outside, root.join("chain45")).expect("chain end");
    for target in [PathBuf::from("../../../outside.toml"), outside.clone(), PathBuf::from("/chain0")] {
        let _ = fs::remove_file(root.join("etc/containerd/config.toml"));
        std::os::unix::fs::symlink(&target, root.join("etc/containerd/config.toml")).expect("link");
        audit_inside(&root, &target.display().to_string());
    }
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_link_swapped_under_the_host_root_while_the_audit_reads_never_leads_out() {
    // nobody, in namespaces of its own, swaps containerd's config between a file inside the
    // root and a link to the file beside it, as fast as it can, while the audit reads it again
    // and again: a resolver that checked the path and then opened it would be raced out.
    let (base, root, outside) = root_beside_a_secret("swap");
    let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(&base).status();
    let script = format!(
        "exec python3 -c \"import os\nd = '{etc}'\nfor i in range(200000):\n  t = d + '/new'\n  if i % 2:\n    os.symlink('{outside}', t)\n  else:\n    open(t, 'w').write('version = 2 # inside-the-root')\n  os.rename(t, d + '/config.toml')\"",
        etc = root.join("etc/containerd").display(),
        outside = outside.display()
    );
    let mut swapper = spawn_unprivileged(&script);
    let (mut inside, mut refused) = (0, 0);
    let deadline = Instant::now() + WAIT;
    while (inside < 20 || refused < 20) && Instant::now() < deadline && swapper.try_wait().expect("swapper").is_none() {
        if audit_inside(&root, "swapped").iter().any(|t| t.contains("inside-the-root")) {
            inside += 1;
        } else {
            refused += 1;
        }
    }
    let _ = swapper.kill();
    let _ = swapper.wait();
    eprintln!("{inside} reads found the file inside the root, {refused} found the link and refused it");
    // The race was run: reads found the file and found the link.
    assert!(inside >= 20 && refused >= 20, "{inside} reads of the file, {refused} of the link");
    let _ = fs::remove_dir_all(base);
}

/// Distinct subjects one flooding caller fails on, twice each: more than a detector's table
/// keeps (4096), so older entries are forgotten, and counted.
const FLOOD: u64 = 5000;

/// Runs `script` (which fails twice on each of [`FLOOD`] distinct `what`) as nobody in
/// namespaces of its own, against a daemon that calls two failures a loop: each subject is a
/// loop of its own, so each would have opened a finding, a findings_open series and a log line.
/// The caller's loops must fold (at most 8 subjects and one folded finding counting the rest,
/// with `findings_folded_total`), and the daemon must keep answering, under the DaemonSet's
/// memory limit. Entries its tables had to forget are counted.
fn flood_from_one_caller_folds(rule: &str, what: &str, script: &str) {
    let daemon = Daemon::start(&["--repeated-failures", "2"]);
    let forgotten = || monitor_tests::daemon::metric_value(&daemon.get("/metrics").unwrap_or_default(), "node_runtime_monitor_detector_entries_forgotten_total", &[]);
    assert_eq!(forgotten(), Some(0.0), "a healthy start forgets nothing");
    let status = spawn_unprivileged(script).wait().expect("flood");
    assert!(status.success(), "{status}");
    // The loops are reported as the events arrive: wait until the last has been counted.
    let deadline = Instant::now() + WAIT;
    let mut last = (0, None);
    let folded = loop {
        let open = findings(&daemon);
        let folded = open.iter().find(|f| f["rule"] == rule && f["subject"].as_str().is_some_and(|s| s.ends_with("|_folded"))).cloned();
        let count = folded.as_ref().and_then(|f| f["count"].as_u64()).unwrap_or(0);
        if let Some(folded) = folded.filter(|_| last.0 == count && last.1.is_some_and(|at: Instant| at.elapsed() > Duration::from_secs(2))) {
            break folded;
        }
        if last.0 != count || last.1.is_none() {
            last = (count, Some(Instant::now()));
        }
        assert!(Instant::now() < deadline, "no settled folded {rule} finding; open: {open:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(folded["title"].as_str().unwrap_or("").contains(&format!("more than 8 different {what}")), "{folded:#}");
    let loops: Vec<serde_json::Value> = findings(&daemon).into_iter().filter(|f| f["rule"] == rule).collect();
    assert!(loops.len() <= 9, "{} {rule} findings open: {loops:#?}", loops.len());
    // What was folded is counted, not dropped: all but the 8 subjects shown, less any the
    // kernel reported lost (none are, at this rate, on this machine).
    let metrics = daemon.get("/metrics").unwrap_or_default();
    let lost: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("node_runtime_monitor_kernel_events_lost_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let count = folded["count"].as_u64().unwrap_or(0);
    let folded_total = monitor_tests::daemon::metric_value(&metrics, "node_runtime_monitor_findings_folded_total", &[&format!("rule=\"{rule}\"")]).unwrap_or(0.0);
    eprintln!("{rule}: {count} folded in the caller's finding, findings_folded_total {folded_total}, kernel events lost {lost}");
    assert!(count as f64 + lost >= (FLOOD - 8) as f64 * 0.9, "the folded finding counts {count} of {FLOOD} subjects ({lost} events lost): {folded:#}");
    assert!(folded_total >= count as f64, "findings_folded_total {folded_total} < {count}");
    // Each subject's failures had an entry of their own: those past the table's 4096 pushed
    // the oldest out.
    let forgotten = forgotten().unwrap_or(0.0);
    eprintln!("{rule}: {forgotten} detector entries forgotten");
    assert!(forgotten + lost >= (FLOOD - 4096) as f64 * 0.9, "{forgotten} entries forgotten, {lost} events lost");
    // The daemon's memory stays far under the DaemonSet's 128 MiB limit, and it answers.
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).expect("status");
    let rss_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmRSS");
    assert!(rss_kib < 128 * 1024, "VmRSS {rss_kib} KiB");
    healthz_until(&daemon, |status, _| status == 200, WAIT);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn thousands_of_distinct_failing_paths_from_one_caller_stay_a_few_findings() {
    // Files nobody may execute.
    let dir = scratch("flood");
    for i in 0..FLOOD {
        fs::write(dir.join(i.to_string()), "").expect("file");
    }
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status();
    let script = format!("for i in $(seq 0 {}); do {d}/$i; {d}/$i; done 2>/dev/null; exit 0", FLOOD - 1, d = dir.display());
    flood_from_one_caller_folds("exec-failure-loop", "binaries", &script);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn thousands_of_distinct_failing_sockets_from_one_caller_stay_a_few_findings() {
    // Runtime sockets that are not there (`.../containerd.sock` is a runtime's socket by its
    // name, whatever mount it is seen through): a connect-failure loop is critical.
    let dir = scratch("sockets");
    let script = format!(
        "exec python3 -c \"import socket\nfor i in range({FLOOD}):\n  for _ in range(2):\n    s = socket.socket(socket.AF_UNIX); s.connect_ex('{d}/%d/containerd.sock' % i); s.close()\"",
        d = dir.display()
    );
    flood_from_one_caller_folds("connect-failure-loop", "endpoints", &script);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn join_tokens_on_a_bootstrap_agents_command_line_never_leave_the_node() {
    // The host's own bootstrap agents, as installers run them: kubeadm's join with the token
    // spaced after its flag (measured: `check` printed it in kubelet-not-running's evidence),
    // with it after `=`, and k0s's worker with its positional token. None is kubeadm-shaped
    // (`[a-z0-9]{6}.[a-z0-9]{16}`), so only the flag and positional rules can catch them.
    let spaced = "nrm-spaced-s3cr3t";
    let equals = "nrm-equals-s3cr3t";
    let positional = "H4sIAAAAAAAC_nrmPositional";
    let idle = env!("CARGO_BIN_EXE_idle");
    let agents: Vec<Vec<String>> = vec![
        vec!["kubeadm".into(), "join".into(), "--token".into(), spaced.into(), "10.0.0.1:6443".into()],
        vec!["/usr/bin/kubeadm".into(), "join".into(), format!("--token={equals}"), "10.0.0.1:6443".into()],
        vec!["k0s".into(), "worker".into(), positional.into()],
    ];
    let mut running: Vec<std::process::Child> = agents
        .iter()
        .map(|argv| {
            use std::os::unix::process::CommandExt as _;
            Command::new(idle).arg0(&argv[0]).args(&argv[1..]).spawn().expect("an idle agent")
        })
        .collect();
    for (child, argv) in running.iter().zip(&agents) {
        let planted = format!("{}\0", argv.join("\0")).into_bytes();
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default() != planted {
            assert!(Instant::now() < deadline, "{argv:?} never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let check_json = Command::new(monitor_tests::daemon::binary()).args(["check", "--output", "json"]).output().expect("check");
    let check_text = Command::new(monitor_tests::daemon::binary()).arg("check").output().expect("check");
    let daemon = Daemon::start(&[]);
    let finding = wait_for_finding(&daemon, "kubelet-not-running", "kubelet", WAIT);
    let metrics = daemon.get("/metrics").unwrap_or_default();
    let all = daemon.get("/findings").unwrap_or_default();
    let (code, log) = daemon.stop_with_log();
    for child in &mut running {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(code, Some(0), "{log}");

    // The agents are the evidence, their tokens hidden where they stood.
    let details: Vec<&str> = finding["evidence"].as_array().into_iter().flatten().filter_map(|e| e["detail"].as_str()).collect();
    for shown in ["kubeadm join --token [REDACTED]", "/usr/bin/kubeadm join --token=[REDACTED] 10.0.0.1:6443", "k0s worker [REDACTED]"] {
        assert!(details.iter().any(|d| d.ends_with(shown)), "no evidence ends with {shown:?}: {details:#?}");
    }
    let outputs = [
        ("check --output json", String::from_utf8_lossy(&check_json.stdout).into_owned()),
        ("check", String::from_utf8_lossy(&check_text.stdout).into_owned()),
        ("/findings", all),
        ("/metrics", metrics),
        ("log", log),
    ];
    for (name, text) in &outputs {
        assert!(text.contains("kubelet-not-running"), "{name} does not report the agents:\n{text}");
        for secret in [spaced, equals, positional] {
            assert!(!text.contains(secret), "{secret} leaked into {name}:\n{text}");
        }
    }
}
