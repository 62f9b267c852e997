//! Runs inside a VM with a stock distribution kernel (`tests/tests/stock_kernel_vm.rs`): loads the
//! probes, checks that the syscall probes are attached by fexit (which the development machine's
//! kernel refuses), causes a failed execve and execveat and failed unix, TCP and non-blocking
//! TCP connects, and checks each event with what the call was given, and its own exec and exit.
//! Prints `SMOKE OK` and the hooks on success; panics (exit 101) otherwise.

use std::{ffi::CString, net::TcpStream, os::unix::net::UnixStream, process::Command, time::Duration};

use monitor::{
    events::{Event, ExitStatus, SocketAddress},
    probes::Hook,
};
use monitor_tests::capture::Capture;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("act") {
        return act();
    }
    let capture = Capture::start();
    let hooks: Vec<String> = capture.status().iter().map(|s| format!("{}={}", s.spec.name, s.hook)).collect();
    for status in capture.status().iter().filter(|s| matches!(s.spec.fast, Some((_, Hook::SyscallReturn(_))))) {
        assert!(matches!(status.hook, Hook::SyscallReturn(_)), "{} is not on fexit: {hooks:?}", status.spec.name);
    }
    // The probes do not report the process that loaded them: a child acts.
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe).arg("act").spawn().expect("spawn the acting child");
    let actor = child.id();
    assert!(child.wait().expect("wait").success(), "the acting child failed");

    let failed_execs = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ExecFailed(x) if x.filename.starts_with("/nonexistent-smoke") => Some((x.filename.clone(), x.errno, x.syscall)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let connects = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Connect(c) if c.task.tgid == actor => Some((c.address.clone(), c.errno)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The actor's own exec and exit (`sched_process_exec` and `sched_process_exit`, on whichever
    // twin this kernel loads).
    let comm = std::fs::read_to_string("/proc/self/comm").expect("own comm").trim_end().to_string();
    let lived = |events: &[Event]| {
        let exec = events.iter().any(|e| matches!(e, Event::Exec(x) if x.task.tgid == actor && x.task.comm == comm));
        let exit = events.iter().any(|e| {
            matches!(e, Event::Exit(x) if x.task.tgid == actor && x.status == ExitStatus::Exited { code: 0 } && x.task.start_ns != 0)
        });
        exec && exit
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = capture.events();
        if failed_execs(&events).len() >= 2 && connects(&events).len() >= 3 && lived(&events) {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two failed execs, three failed connects and the actor's exec and exit not seen; hooks {hooks:?}; events {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let execs = failed_execs(&events);
    assert!(execs.iter().any(|x| x.0 == "/nonexistent-smoke-execve" && x.1 == libc::ENOENT && x.2 == "execve"), "{execs:?}");
    assert!(execs.iter().any(|x| x.0 == "/nonexistent-smoke-execveat" && x.1 == libc::ENOENT && x.2 == "execveat"), "{execs:?}");
    let connects = connects(&events);
    let unix = SocketAddress::Unix { path: "/nonexistent-smoke.sock".into(), is_abstract: false };
    let closed = |port| SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port };
    assert_eq!(connects, vec![(unix, libc::ENOENT), (closed(1), libc::ECONNREFUSED), (closed(2), libc::ECONNREFUSED)]);
    println!("SMOKE OK {}", hooks.join(" "));
}

/// What the probes must see: a failed execve (in a child of this child), a failed execveat,
/// failed unix, TCP and non-blocking TCP connects.
fn act() {
    // std's spawn reports the exec error to the parent.
    assert!(Command::new("/nonexistent-smoke-execve").status().is_err());
    let path = CString::new("/nonexistent-smoke-execveat").expect("path");
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: valid NUL-terminated strings and NULL-terminated arrays; the call fails (ENOENT).
    let rc = unsafe { libc::syscall(libc::SYS_execveat, libc::AT_FDCWD, path.as_ptr(), argv.as_ptr(), envp.as_ptr(), 0) };
    assert_eq!(rc, -1);
    assert!(UnixStream::connect("/nonexistent-smoke.sock").is_err());
    assert!(TcpStream::connect("127.0.0.1:1").is_err());
    non_blocking_refused_connect(2);
}

/// A non-blocking connect to a closed loopback port: EINPROGRESS (or refused at once), then
/// refused; the probes report it once, whichever path saw the outcome.
fn non_blocking_refused_connect(port: u16) {
    // SAFETY: plain socket calls on a socket this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(fd, (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as libc::socklen_t);
        assert_eq!(rc, -1);
        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        libc::poll(&mut pfd, 1, 5000);
        libc::close(fd);
    }
}
