//! The kernel programs against the real kernel: each test causes real events in its own
//! cgroup (its process tree) and checks their fields and exact counts.

use std::{
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::Duration,
};

use monitor::{
    events::{Event, ExitStatus, OomConstraint, SocketAddress},
    probes::{ProbeOptions, Probes, metrics::KernelStatsCollector},
};
use monitor_common::{ProgramId, ProgramStats};
use monitor_tests::{
    capture::Capture,
    cgroups::{TestCgroup, spawn_in},
};

const WAIT: Duration = Duration::from_secs(15);
/// Debian's interpreter by absolute path: a PATH lookup (pyenv shims) would add failed execs of its own.
const PYTHON: &str = "/usr/bin/python3";

fn exits_of(events: &[Event], pid: u32) -> Vec<ExitStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exit(x) if x.task.tgid == pid => Some(x.status),
            _ => None,
        })
        .collect()
}

#[test]
fn exec_counts_are_exact_for_a_process_tree() {
    exec_counts_are_exact(Capture::start(), "exec-count", true);
}

/// The same through the classic `sched_process_exec` and `sched_process_exit` tracepoints (no
/// BTF for user space: the BTF twins cannot load, and the task's fields come from helpers, which
/// know no parent and no start time).
#[test]
fn exec_counts_are_exact_on_the_classic_tracepoints() {
    let options = ProbeOptions { btf_path: Some("/nonexistent/vmlinux".into()), ..ProbeOptions::default() };
    let capture = Capture::with_options(options);
    for name in ["sched_process_exec", "sched_process_exit"] {
        let probe = capture.status().iter().find(|s| s.spec.name == name).expect(name).clone();
        assert_eq!((probe.is_up(), probe.hook), (true, probe.spec.hook), "{probe:?}");
    }
    exec_counts_are_exact(capture, "exec-count-classic", false);
}

fn exec_counts_are_exact(capture: Capture, cgroup: &str, btf: bool) {
    let tree = TestCgroup::v2(cgroup);
    const N: usize = 200;
    let mut child = spawn_in(
        Command::new("/bin/sh").args(["-c", &format!("i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done")]),
        &[&tree],
    );
    let shell = child.id();
    assert!(child.wait().expect("wait").success());
    let id = tree.id();
    let events = capture.wait_until(WAIT, "the shell's exit", |events| {
        events.iter().any(|e| matches!(e, Event::Exit(x) if x.task.tgid == shell))
    });
    let in_tree: Vec<&Event> = events.iter().filter(|e| e.task().cgroup_id == id).collect();
    let execs: Vec<_> = in_tree
        .iter()
        .filter_map(|e| match e {
            Event::Exec(x) => Some(x),
            _ => None,
        })
        .collect();
    // One exec of the shell itself (sh -> /bin/sh), then exactly N of /bin/true.
    assert_eq!(execs.len(), N + 1, "execs in the tree: {execs:#?}");
    let trues: Vec<_> = execs.iter().filter(|x| x.filename == "/bin/true").collect();
    assert_eq!(trues.len(), N);
    for exec in &trues {
        assert_eq!(exec.task.comm, "true");
        assert_eq!(exec.task.uid, 0);
        assert!(!exec.filename_truncated);
        if btf {
            assert_eq!(exec.task.ppid, shell, "parent of /bin/true is the shell");
            assert_ne!(exec.task.start_ns, 0);
        }
    }
    // Every /bin/true exited with 0, and the shell too: N + 1 whole-process exits.
    let exits = in_tree.iter().filter(|e| matches!(e, Event::Exit(_))).count();
    assert_eq!(exits, N + 1);
}

/// Who a task is comes from the task itself (uid, comm, parent, cgroup, start): a process run
/// as another user is reported as that user, in its exec and in its exit.
#[test]
fn exec_and_exit_name_the_task_its_user_parent_and_cgroup() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("exec-task");
    const UID: u32 = 4242;
    let mut child = spawn_in(
        Command::new("setpriv").args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
            "/bin/sleep",
            "0.05",
        ]),
        &[&tree],
    );
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    let events = capture.wait_until(WAIT, "the sleeper's exit", |events| {
        events.iter().any(|e| matches!(e, Event::Exit(x) if x.task.tgid == pid))
    });
    let sleep = events
        .iter()
        .find_map(|e| match e {
            Event::Exec(x) if x.task.tgid == pid && x.filename == "/bin/sleep" => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("exec of /bin/sleep by {pid}: {events:#?}"));
    let exit = events
        .iter()
        .find_map(|e| match e {
            Event::Exit(x) if x.task.tgid == pid => Some(x),
            _ => None,
        })
        .expect("exit");
    for task in [&sleep.task, &exit.task] {
        assert_eq!((task.pid, task.uid, task.comm.as_str()), (pid, UID, "sleep"), "{task:?}");
        assert_eq!(task.ppid, std::process::id(), "{task:?}");
        assert_eq!(task.cgroup_id, tree.id(), "{task:?}");
        assert_ne!(task.start_ns, 0, "{task:?}");
    }
    assert_eq!(sleep.task.start_ns, exit.task.start_ns, "one process, one start");
    assert!(exit.lifetime >= Duration::from_millis(50), "{:?}", exit.lifetime);
}

#[test]
fn failed_execs_report_filename_and_errno() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("exec-failed");
    let dir = std::env::temp_dir().join(format!("nrm-noexec-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let not_executable = dir.join("not-executable");
    fs::write(&not_executable, "#!/bin/sh\necho never\n").expect("write script");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).expect("chmod");
    let missing = "/nonexistent/nrm/crictl";

    // execve of a missing path and of a non-executable file, from a shell in the tree...
    let script = format!("{missing} 2>/dev/null; {} 2>/dev/null; exit 0", not_executable.display());
    let mut shell = spawn_in(Command::new("/bin/sh").args(["-c", &script]), &[&tree]);
    assert!(shell.wait().expect("wait").success());
    // ...and execveat (fexecve) of the non-executable file from python.
    let fexecve = format!(
        "import os\nfd = os.open('{}', os.O_RDONLY)\ntry:\n    os.execve(fd, ['x'], {{}})\nexcept PermissionError:\n    pass\n",
        not_executable.display()
    );
    let mut python = spawn_in(Command::new(PYTHON).args(["-c", &fexecve]), &[&tree]);
    assert!(python.wait().expect("wait").success());

    let id = tree.id();
    let events = capture.wait_until(WAIT, "three failed execs", |events| {
        events.iter().filter(|e| matches!(e, Event::ExecFailed(x) if x.task.cgroup_id == id)).count() >= 3
    });
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ExecFailed(x) if x.task.cgroup_id == id => Some(x),
            _ => None,
        })
        .collect();
    let enoent: Vec<_> = failed.iter().filter(|x| x.filename == missing).collect();
    assert_eq!(enoent.len(), 1, "{failed:#?}");
    assert_eq!((enoent[0].errno, enoent[0].syscall), (libc::ENOENT, "execve"));
    let path = not_executable.display().to_string();
    let eacces: Vec<_> = failed.iter().filter(|x| x.filename == path && x.syscall == "execve").collect();
    assert_eq!(eacces.len(), 1, "{failed:#?}");
    assert_eq!(eacces[0].errno, libc::EACCES);
    let at: Vec<_> = failed.iter().filter(|x| x.syscall == "execveat").collect();
    assert_eq!(at.len(), 1, "{failed:#?}");
    assert_eq!(at[0].errno, libc::EACCES);
    assert_eq!(at[0].filename, "", "fexecve passes an empty path with AT_EMPTY_PATH");
    assert_eq!(failed.len(), 3, "no other failed exec in the tree: {failed:#?}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn exits_report_code_and_killing_signal() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("exit");
    let mut exit3 = spawn_in(Command::new("/bin/sh").args(["-c", "exit 3"]), &[&tree]);
    let exit3_pid = exit3.id();
    assert_eq!(exit3.wait().expect("wait").code(), Some(3));

    let mut sleeper = spawn_in(Command::new("/bin/sleep").arg("100"), &[&tree]);
    let sleeper_pid = sleeper.id();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(sleeper_pid as i32, libc::SIGKILL) }, 0);
    let _ = sleeper.wait();

    let events = capture.wait_until(WAIT, "both exits", |events| {
        !exits_of(events, exit3_pid).is_empty() && !exits_of(events, sleeper_pid).is_empty()
    });
    assert_eq!(exits_of(&events, exit3_pid), vec![ExitStatus::Exited { code: 3 }]);
    assert_eq!(exits_of(&events, sleeper_pid), vec![ExitStatus::Signaled { signal: 9, core_dumped: false }]);
    // The kill came from this test process, not from the kernel.
    let kills: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) if s.task.tgid == sleeper_pid => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(kills[0].signal, 9);
    assert!(!kills[0].from_kernel);
    assert_eq!(kills[0].sender_tgid, std::process::id());
    assert_eq!(kills[0].task.cgroup_id, tree.id(), "the target's cgroup is read from its task");
    let lifetime = events.iter().find_map(|e| match e {
        Event::Exit(x) if x.task.tgid == sleeper_pid => Some(x.lifetime),
        _ => None,
    });
    assert!(lifetime.is_some_and(|l| l >= Duration::from_millis(100)), "sleeper lived >= 100ms: {lifetime:?}");
}

fn connects_in(events: &[Event], id: u64) -> Vec<monitor::events::Connect> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connect(c) if c.task.cgroup_id == id => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// A unix or UDP address is read from user memory when the call returns, through the
/// registers the call was given; a TCP one was noted when the socket entered SYN_SENT. Every
/// family's layout is checked both ways (a unix path, an abstract name, IPv4, IPv6).
#[test]
fn connects_to_missing_unix_socket_and_closed_port_fail_with_errno() {
    failed_connects_are_reported_with_errno(Capture::start(), "connect", libc::ECONNREFUSED);
}

/// The same with the TCP state probe on its classic tracepoint (as without kernel BTF): the
/// destination comes from the tracepoint's record instead of the socket. Without BTF the
/// socket's error cannot be read: a non-blocking connect's refusal seen by that probe is a
/// failure of unknown cause (ECONNABORTED).
#[test]
fn connects_fail_with_errno_when_tcp_states_come_from_the_classic_tracepoint() {
    let options = ProbeOptions { btf_path: Some("/nonexistent/vmlinux".into()), ..ProbeOptions::default() };
    let capture = Capture::with_options(options);
    let tcp_state = capture.status().iter().find(|s| s.spec.name == "inet_sock_set_state").expect("TCP state probe");
    assert_eq!((tcp_state.is_up(), tcp_state.hook), (true, tcp_state.spec.hook), "{tcp_state:?}");
    failed_connects_are_reported_with_errno(capture, "connect-classic", libc::ECONNABORTED);
}

fn failed_connects_are_reported_with_errno(capture: Capture, cgroup: &str, non_blocking_refused: i32) {
    let tree = TestCgroup::v2(cgroup);
    // Nothing listens on port 1, and no test can be given it by bind(0) (below 1024): a port
    // chosen free and released could be taken by a parallel test before the connects.
    let closed_port: u16 = 1;
    let missing = format!("/tmp/nrm-missing-{}.sock", std::process::id());
    let script = format!(
        r#"
import socket, errno
u = socket.socket(socket.AF_UNIX)
assert u.connect_ex("{missing}") == errno.ENOENT
t = socket.socket()
assert t.connect_ex(("127.0.0.1", {closed_port})) == errno.ECONNREFUSED
n = socket.socket()
n.setblocking(False)
r = n.connect_ex(("127.0.0.1", {closed_port}))
assert r in (errno.EINPROGRESS, errno.ECONNREFUSED), r
import select, time
select.select([], [n], [], 5)
assert n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, errno.ECONNREFUSED)
a = socket.socket(socket.AF_UNIX)
assert a.connect_ex("\0nrm-missing-abstract") == errno.ECONNREFUSED
s = socket.socket(socket.AF_INET6)
assert s.connect_ex(("::1", {closed_port})) == errno.ECONNREFUSED
# UDP to documentation addresses: no SYN_SENT, so the address comes from user memory. The
# result (0, or ENETUNREACH without a route) is printed for the test to compare.
d4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
print(d4.connect_ex(("192.0.2.1", 9)), d6.connect_ex(("2001:db8::1", 9)))
"#
    );
    let python = spawn_in(Command::new(PYTHON).args(["-c", &script]).stdout(std::process::Stdio::piped()), &[&tree]);
    let output = python.wait_with_output().expect("wait");
    assert!(output.status.success(), "the client script failed");
    let udp_results: Vec<i32> =
        String::from_utf8_lossy(&output.stdout).split_whitespace().map(|r| r.parse().expect("a connect result")).collect();
    let id = tree.id();
    let events = capture.wait_until(WAIT, "seven connects", |events| connects_in(events, id).len() >= 7);
    let connects = connects_in(&events, id);
    assert_eq!(connects.len(), 7, "{connects:#?}");
    assert_eq!(connects[0].address, SocketAddress::Unix { path: missing.clone(), is_abstract: false });
    assert_eq!(connects[0].errno, libc::ENOENT);
    let loopback = SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port: closed_port };
    assert_eq!((connects[1].address.clone(), connects[1].errno), (loopback.clone(), libc::ECONNREFUSED));
    assert!(!connects[1].asynchronous, "a blocking connect's result is the syscall's");
    // The non-blocking one: the refusal is reported once, whichever path saw it first.
    assert_eq!((connects[2].address.clone(), connects[2].errno), (loopback, non_blocking_refused));
    let abstract_name = SocketAddress::Unix { path: "nrm-missing-abstract".into(), is_abstract: true };
    assert_eq!((connects[3].address.clone(), connects[3].errno), (abstract_name, libc::ECONNREFUSED));
    let loopback6 = SocketAddress::Inet { ip: "::1".parse().expect("ip"), port: closed_port };
    assert_eq!((connects[4].address.clone(), connects[4].errno), (loopback6, libc::ECONNREFUSED));
    let udp4 = SocketAddress::Inet { ip: "192.0.2.1".parse().expect("ip"), port: 9 };
    let udp6 = SocketAddress::Inet { ip: "2001:db8::1".parse().expect("ip"), port: 9 };
    let reported: Vec<_> = connects[5..].iter().map(|c| (c.address.clone(), c.errno)).collect();
    assert_eq!(reported, vec![(udp4, udp_results[0]), (udp6, udp_results[1])]);
}

/// A non-blocking connect whose outcome comes long after the call returned, out of the
/// caller's context: the listener's accept queue is full, so the SYN is dropped and the socket
/// stays in SYN_SENT; the listener then closes and the retransmitted SYN (about a second later,
/// from a kernel timer) is refused. The refusal is reported once, as asynchronous, for the
/// caller, with the address the caller asked for.
#[test]
fn a_non_blocking_connect_refused_after_the_call_returned_is_reported_for_its_caller() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("connect-late");
    let script = r#"
import socket, errno, select, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(0)
port = l.getsockname()[1]
first = socket.create_connection(("127.0.0.1", port))  # fills the accept queue
n = socket.socket()
n.setblocking(False)
assert n.connect_ex(("127.0.0.1", port)) == errno.EINPROGRESS
time.sleep(0.3)
assert n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0  # still in SYN_SENT
l.close()
first.close()
select.select([], [n], [], 10)
assert n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
print(port)
"#;
    let child = spawn_in(Command::new(PYTHON).args(["-c", script]).stdout(std::process::Stdio::piped()), &[&tree]);
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "the client script failed");
    let port: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("port printed");
    let id = tree.id();
    let events = capture.wait_until(WAIT, "the late refusal", |events| !connects_in(events, id).is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let connects = connects_in(&capture.events(), id);
    assert_eq!(connects.len(), 1, "one report, the outcome's: {connects:#?} (of {} events)", events.len());
    let refused = &connects[0];
    assert_eq!(refused.address, SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port });
    assert_eq!(refused.errno, libc::ECONNREFUSED);
    assert!(refused.asynchronous, "the result came from the TCP state machine");
    assert_eq!(refused.task.comm, "python3", "attributed to the caller, not to the timer's task");
}

#[test]
fn successful_loopback_and_unwatched_unix_connects_are_filtered() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("connect-ok");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let socket_path = std::env::temp_dir().join(format!("nrm-listening-{}.sock", std::process::id()));
    let _ = fs::remove_file(&socket_path);
    let unix = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind unix");
    let abstract_name = format!("nrm-abstract-{}", std::process::id());
    let script = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}))\nu = socket.socket(socket.AF_UNIX)\nu.connect('{}')\n\
         a = socket.socket(socket.AF_UNIX)\na.bind('\\0{abstract_name}')\na.listen(1)\nb = socket.socket(socket.AF_UNIX)\nb.connect('\\0{abstract_name}')\n\
         v = socket.socket(socket.AF_UNIX)\nassert v.connect_ex('/nonexistent-nrm.sock') != 0\n",
        socket_path.display()
    );
    let mut python = spawn_in(Command::new(PYTHON).args(["-c", &script]), &[&tree]);
    assert!(python.wait().expect("wait").success());
    let id = tree.id();
    let events = capture.wait_until(WAIT, "the failed connect", |events| !connects_in(events, id).is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let connects = connects_in(&capture.events(), id);
    // Only the failure crosses to user space: the loopback TCP, the unwatched unix and the
    // abstract successes are filtered.
    assert_eq!(connects.len(), 1, "{connects:#?} (of {} events)", events.len());
    assert_eq!(connects[0].errno, libc::ENOENT);
    drop((listener, unix));
    let _ = fs::remove_file(socket_path);
}

#[test]
fn memcg_oom_kill_names_victim_and_its_memory_cgroup() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("oom");
    let memcg = TestCgroup::memory("nrm-oom", 50 << 20);
    // v1 (here): the victim's cgroup is `tree`, its memory cgroup `memcg`; pure v2: `memcg` is both.
    let (cgroup_id, memcg_id) = memcg.ids_with(&tree);
    // Allocates and touches 200 MB inside a 50 MB memory cgroup.
    let mut child = spawn_in(
        Command::new(PYTHON).args(["-c", "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"]),
        &[&tree, &memcg],
    );
    let victim = child.id();
    let status = child.wait().expect("wait");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status:?}");

    let events = capture.wait_until(WAIT, "the OOM kill and the victim's exit", |events| {
        events.iter().any(|e| matches!(e, Event::OomKill(o) if o.task.tgid == victim))
            && !exits_of(events, victim).is_empty()
    });
    let ooms: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::OomKill(o) if o.task.memcg_id == memcg_id && o.task.cgroup_id == cgroup_id => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(ooms.len(), 1, "one OOM kill in that memory cgroup: {ooms:#?}");
    let oom = ooms[0];
    assert_eq!(oom.task.tgid, victim);
    assert_eq!(oom.task.comm, "python3");
    assert!(oom.anon_rss_pages > 0 && oom.total_vm_pages > oom.anon_rss_pages, "{oom:#?}");
    assert_eq!(
        (oom.trigger_cgroup_id, oom.trigger_memcg_id),
        (cgroup_id, memcg_id),
        "the allocation that ran the OOM killer was in the same memcg"
    );
    assert_eq!(oom.constraint, OomConstraint::MemoryCgroup, "the kernel's report: a memory cgroup's limit ran out");
    assert_eq!(exits_of(&events, victim), vec![ExitStatus::Signaled { signal: 9, core_dumped: false }]);
    // The kernel sent the SIGKILL: the signal event says so.
    let kill = events.iter().find_map(|e| match e {
        Event::Signal(s) if s.task.tgid == victim && s.signal == 9 => Some(s),
        _ => None,
    });
    assert!(kill.is_some_and(|k| k.from_kernel), "OOM SIGKILL marked as from the kernel: {kill:#?}");
}

/// A cgroup created in the unified hierarchy or in the memory controller's is reported with its
/// id and its path from the hierarchy's root (what attribution needs once it is gone); one
/// created in another v1 hierarchy is filtered.
#[test]
fn created_cgroups_are_reported_with_their_paths_in_the_hierarchies_events_name() {
    let capture = Capture::start();
    let unified = TestCgroup::v2("mkdir-v2");
    let memory = TestCgroup::memory("mkdir-memory", 64 << 20);
    let other = monitor_tests::cgroups::memory_v1_mount().map(|_| {
        let dir = std::path::Path::new("/sys/fs/cgroup/pids").join(format!("nrm-mkdir-pids-{}", std::process::id()));
        fs::create_dir(&dir).expect("mkdir in the pids hierarchy");
        dir
    });
    let name = |dir: &std::path::Path| format!("/{}", dir.file_name().unwrap().to_string_lossy());
    let created = |events: &[Event], path: &str| -> Vec<monitor::events::CgroupCreated> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::CgroupCreated(c) if c.path == path => Some(c.clone()),
                _ => None,
            })
            .collect()
    };
    let events = capture.wait_until(WAIT, "both cgroups created", |events| {
        !created(events, &name(&unified.path)).is_empty() && !created(events, &name(&memory.path)).is_empty()
    });
    let v2 = created(&events, &name(&unified.path));
    assert_eq!(v2.len(), 1, "{v2:#?}");
    assert_eq!((v2[0].hierarchy, v2[0].id, v2[0].path_truncated), (0, unified.id(), false), "{v2:#?}");
    assert_eq!(v2[0].task.tgid, std::process::id(), "created by this test");
    let memory_hierarchy = monitor::node::cgroupfs::memory_hierarchy_id();
    let mem = created(&events, &name(&memory.path));
    assert_eq!(mem.len(), 1, "{mem:#?}");
    assert_eq!((mem[0].hierarchy, mem[0].id), (memory_hierarchy, memory.id()), "{mem:#?}");
    if let Some(dir) = other {
        std::thread::sleep(Duration::from_millis(200));
        assert!(created(&capture.events(), &name(&dir)).is_empty(), "the pids hierarchy is not reported");
        let _ = fs::remove_dir(&dir);
    }
}

/// A blocking connect whose outcome came out of the caller's context (the refusal of a SYN
/// retransmitted by a kernel timer) leaves nothing behind: the next socket, which the kernel
/// may well carve from the same memory, gets no stale outcome. Here the next connects are
/// non-blocking and still in SYN_SENT when they return; later they succeed. So the only failure
/// reported is the blocking one's, once per round, at its return.
#[test]
fn an_outcome_seen_outside_a_blocking_connect_is_not_given_to_the_next_socket() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("connect-stale");
    let script = r#"
import socket, errno, select, threading
ROUNDS = 3
for _ in range(ROUNDS):
    # A blocking connect refused by a kernel timer: the SYN is dropped (full accept queue), the
    # listener closes, the retransmission is refused.
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
    first = socket.create_connection(l.getsockname())
    print("blocking", l.getsockname()[1])
    b = socket.socket()  # blocking: no timeout (Python's timeouts are non-blocking sockets)
    threading.Timer(0.3, lambda: (l.close(), first.close())).start()
    try:
        b.connect(l.getsockname()); raise SystemExit("connected?")
    except ConnectionRefusedError:
        pass
    # A listener whose queue is full, so the next SYN waits in SYN_SENT too.
    l2 = socket.socket(); l2.bind(("127.0.0.1", 0)); l2.listen(0)
    print("next", l2.getsockname()[1])
    first2 = socket.create_connection(l2.getsockname())
    b.close()
    n = socket.socket()
    n.setblocking(False)
    assert n.connect_ex(l2.getsockname()) == errno.EINPROGRESS
    # Make room: the retransmitted SYN is accepted about a second later.
    l2.accept()[0].close()
    select.select([], [n], [], 10)
    assert n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    n.close(); first2.close(); l2.close()
"#;
    let child = spawn_in(Command::new(PYTHON).args(["-c", script]).stdout(std::process::Stdio::piped()), &[&tree]);
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "the client script failed");
    let id = tree.id();
    let rounds = 3;
    capture.wait_until(WAIT, "the blocking refusals", |events| connects_in(events, id).len() >= rounds);
    std::thread::sleep(Duration::from_millis(300));
    let connects = connects_in(&capture.events(), id);
    assert_eq!(connects.len(), rounds, "one refusal per round, none stale: {connects:#?}");
    for refused in &connects {
        assert_eq!(refused.errno, libc::ECONNREFUSED);
        assert!(!refused.asynchronous, "the blocking call's own result: {refused:?}\nall: {connects:#?}\nports: {}", String::from_utf8_lossy(&output.stdout));
    }
}

/// The real probes with their per-program counters at hand (`Capture` keeps only the events).
struct CountedCapture {
    events: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
    stats: KernelStatsCollector,
    stop: tokio::sync::watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
    _probes: Probes,
}

impl CountedCapture {
    fn start(options: ProbeOptions) -> Self {
        let mut probes = Probes::load(&options).expect("load the eBPF programs (root and kernel BTF needed)");
        let down: Vec<_> = probes.status.iter().filter(|s| !s.is_up()).map(|s| (s.spec.name, s.error.clone())).collect();
        assert!(down.is_empty(), "programs down: {down:?}");
        let ring = probes.take_events().expect("events ring buffer");
        let stats = KernelStatsCollector::new(probes.take_stats().expect("stats map"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<monitor::events::Record>(1 << 16);
        let metrics = monitor::probes::metrics::ProbeMetrics::new(&mut prometheus_client::registry::Registry::default());
        runtime.spawn(async move {
            let stage = monitor::progress::Watchdog::default().stage("ring buffer reader", Duration::from_secs(30));
            let _ = monitor::probes::reader::run(ring, tx, metrics, stage, stop_rx).await;
        });
        let sink = events.clone();
        runtime.spawn(async move {
            while let Some(record) = rx.recv().await {
                sink.lock().expect("events lock").push(record.event);
            }
        });
        Self { events, stats, stop, runtime, _probes: probes }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events lock").clone()
    }

    /// One program's counters, summed over CPUs.
    fn counters(&self, program: ProgramId) -> ProgramStats {
        self.stats.read().into_iter().find(|(id, _, _)| *id == program).map(|(_, _, s)| s).expect("program counters")
    }
}

impl Drop for CountedCapture {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
}

/// A flood of non-blocking TCP connects left in SYN_SENT (an unprivileged process, a loopback
/// listener whose accept queue is full: every SYN is dropped) overflows the table of connects
/// waiting for their outcome. The oldest are evicted, and each eviction is counted lost for
/// `sys_exit_connect`; the rest are reported when their sockets close. Reported + lost accounts
/// for every connect. The table is loaded small (`connect_table_entries`, the loader's option)
/// so that a few hundred connects overflow it, and the flood does not evict the connects of
/// tests running at the same time in their own (full-size) tables.
#[test]
fn connects_evicted_from_a_full_table_are_counted_lost() {
    const TABLE: u32 = 256;
    const N: usize = 1000;
    let capture = CountedCapture::start(ProbeOptions { connect_table_entries: TABLE, ..ProbeOptions::default() });
    let tree = TestCgroup::v2("connect-flood");
    let before = capture.counters(ProgramId::ConnectExit);
    let script = format!(
        r#"
import socket, errno, resource, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
port = l.getsockname()[1]
first = socket.create_connection(("127.0.0.1", port))  # fills the accept queue
socks = []
for _ in range({N}):
    s = socket.socket()
    s.setblocking(False)
    r = s.connect_ex(("127.0.0.1", port))
    assert r == errno.EINPROGRESS, r
    socks.append(s)
time.sleep(0.2)
assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks)  # all in SYN_SENT
for s in socks:
    s.close()  # SYN_SENT -> CLOSE: the outcome of each connect still waiting
print(port)
"#
    );
    let child = spawn_in(
        Command::new("setpriv")
            .args(["--reuid=4242", "--regid=4242", "--clear-groups", PYTHON, "-c", &script])
            .stdout(std::process::Stdio::piped()),
        &[&tree],
    );
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "the flood script failed");
    let port: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("port printed");
    let id = tree.id();
    let address = SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port };
    // The flood's own (the libraries may try a unix socket or two: nscd, userdb).
    let flood = || -> Vec<_> { connects_in(&capture.events(), id).into_iter().filter(|c| c.address == address).collect() };
    let lost = || capture.counters(ProgramId::ConnectExit).lost - before.lost;
    let reported = || flood().len();
    let deadline = std::time::Instant::now() + WAIT;
    while reported() + (lost() as usize) < N {
        assert!(std::time::Instant::now() < deadline, "reported {} + lost {} < {N}", reported(), lost());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let others: Vec<_> = connects_in(&capture.events(), id).into_iter().filter(|c| c.address != address).collect();
    assert!(others.iter().all(|c| matches!(c.address, SocketAddress::Unix { .. })), "{others:#?}");
    let connects = flood();
    let lost = lost() as usize;
    eprintln!("{N} connects, table of {TABLE}: {} reported, {lost} counted lost", connects.len());
    // At most a table's worth is still waiting when the flood ends; every older one was evicted.
    assert!(connects.len() <= TABLE as usize, "{} reported", connects.len());
    assert!(lost >= N - TABLE as usize, "{lost} lost");
    // Every connect is accounted for; the lost counter may also hold a few of other processes'
    // connects evicted by the flood (it is per program, not per process), no more.
    assert!(connects.len() + lost >= N && connects.len() + lost <= N + 50, "{} reported + {lost} lost", connects.len());
    for connect in &connects {
        assert_eq!((connect.address.clone(), connect.errno, connect.asynchronous), (address.clone(), libc::ECONNABORTED, true));
        assert_eq!(connect.task.uid, 4242);
    }
}

/// An outcome no connect waits for any more (its connect was evicted from a full table, then
/// it was refused) is never given to a later socket carved from the same memory. Each round:
/// `a` waits in a table of one slot, `b` evicts it (a counted loss), both are refused; `a` is
/// closed and `c`, made right after (the kernel reuses the freed socket's memory first), is a
/// non-blocking connect that later succeeds (a loopback success: filtered). So no failure is
/// ever reported for `c`'s address; before the fix, `c` took `a`'s refusal at its return.
#[test]
fn an_outcome_of_an_evicted_connect_is_not_given_to_the_next_socket() {
    let capture = CountedCapture::start(ProbeOptions { connect_table_entries: 1, ..ProbeOptions::default() });
    let lost_before = capture.counters(ProgramId::ConnectExit).lost;
    let tree = TestCgroup::v2("connect-orphan");
    let script = r#"
import socket, errno, select
ROUNDS = 8
def wait(s, want):
    select.select([], [s], [], 10)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == want
for _ in range(ROUNDS):
    l1 = socket.socket(); l1.bind(("127.0.0.1", 0)); l1.listen(0)
    f1 = socket.create_connection(l1.getsockname())  # fills the accept queue: SYNs are dropped
    a = socket.socket(); a.setblocking(False)
    assert a.connect_ex(l1.getsockname()) == errno.EINPROGRESS
    b = socket.socket(); b.setblocking(False)
    assert b.connect_ex(l1.getsockname()) == errno.EINPROGRESS  # evicts a's entry
    l1.close(); f1.close()  # the retransmitted SYNs are refused
    wait(a, errno.ECONNREFUSED); wait(b, errno.ECONNREFUSED)
    l2 = socket.socket(); l2.bind(("127.0.0.1", 0)); l2.listen(0)
    f2 = socket.create_connection(l2.getsockname())
    print(l2.getsockname()[1], flush=True)
    a.close()
    c = socket.socket(); c.setblocking(False)
    assert c.connect_ex(l2.getsockname()) == errno.EINPROGRESS
    l2.accept()[0].close()  # room: the retransmitted SYN is accepted
    wait(c, 0)
    for s in (b, c, f2, l2): s.close()
"#;
    let child = spawn_in(Command::new(PYTHON).args(["-c", script]).stdout(std::process::Stdio::piped()), &[&tree]);
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "the client script failed");
    let ports: Vec<u16> = String::from_utf8_lossy(&output.stdout).lines().map(|l| l.trim().parse().expect("port printed")).collect();
    assert_eq!(ports.len(), 8);
    std::thread::sleep(Duration::from_millis(500));
    let id = tree.id();
    let connects = connects_in(&capture.events(), id);
    let misjoined: Vec<_> = connects
        .iter()
        .filter(|c| matches!(&c.address, SocketAddress::Inet { port, .. } if ports.contains(port)) && c.errno != 0)
        .collect();
    assert!(misjoined.is_empty(), "connects given another socket's outcome: {misjoined:#?}");
    // b's refusals are reported, or counted lost: the one-slot table is the node's, and other
    // processes' connects (other tests running at the same time) may evict b too. a's are lost.
    let refused = connects.iter().filter(|c| c.errno == libc::ECONNREFUSED && c.asynchronous).count();
    let lost = (capture.counters(ProgramId::ConnectExit).lost - lost_before) as usize;
    assert!(refused + lost >= 2 * ports.len(), "{refused} refusals reported, {lost} lost: {connects:#?}");
}
