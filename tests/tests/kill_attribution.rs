//! Who killed a process, as the kernel proved it: the same kind of death produced three ways
//! (memcg OOM kill, `kill -9` from a sibling named like a runtime shim, a segfault) gives three
//! different causes, with the right sender: the sender's executable comes from the kernel, so a
//! process that only calls itself a shim is not taken for one.

use std::{os::unix::process::ExitStatusExt as _, process::Command, time::Duration};

use monitor::{
    detectors::kills::{Death, DeathCause, KillLedger, SenderClass},
    events::{Event, OomConstraint},
};
use monitor_tests::{
    capture::Capture,
    cgroups::{TestCgroup, spawn_in},
};

const PYTHON: &str = "/usr/bin/python3";

fn deaths(events: &[Event]) -> Vec<Death> {
    let mut ledger = KillLedger::default();
    events.iter().filter_map(|e| ledger.observe(e, None)).collect()
}

fn death_of(capture: &Capture, pid: u32) -> Death {
    let events = capture.wait_until(Duration::from_secs(15), "the exit", |events| {
        events.iter().any(|e| matches!(e, Event::Exit(x) if x.task.tgid == pid))
    });
    deaths(&events).into_iter().find(|d| d.exit.task.tgid == pid).expect("a death for the pid")
}

#[test]
fn oom_kill_shim_kill_and_segfault_are_three_different_causes() {
    let capture = Capture::start();
    let tree = TestCgroup::v2("kills");

    // 1. The OOM killer.
    let memcg = TestCgroup::memory("nrm-kill-oom", 40 << 20);
    let mut hog = spawn_in(
        Command::new(PYTHON).args(["-c", "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"]),
        &[&tree, &memcg],
    );
    let hog_pid = hog.id();
    assert_eq!(hog.wait().expect("wait").signal(), Some(libc::SIGKILL));

    // 2. SIGKILL from a sibling whose comm is a runtime shim's.
    let mut victim = spawn_in(Command::new("/bin/sleep").arg("100"), &[&tree]);
    let victim_pid = victim.id();
    let killer_script = format!(
        "import ctypes, os\nctypes.CDLL(None).prctl(15, b'containerd-shim', 0, 0, 0)\nos.kill({victim_pid}, 9)\n"
    );
    let mut killer = spawn_in(Command::new(PYTHON).args(["-c", &killer_script]), &[&tree]);
    let killer_pid = killer.id();
    assert!(killer.wait().expect("wait").success());
    assert_eq!(victim.wait().expect("wait").signal(), Some(libc::SIGKILL));

    // 3. A segfault.
    let mut crash = spawn_in(Command::new(PYTHON).args(["-c", "import ctypes\nctypes.string_at(0)\n"]), &[&tree]);
    let crash_pid = crash.id();
    assert_eq!(crash.wait().expect("wait").signal(), Some(libc::SIGSEGV));

    let oom = death_of(&capture, hog_pid);
    let killed = death_of(&capture, victim_pid);
    let fault = death_of(&capture, crash_pid);

    assert!(
        matches!(oom.cause, DeathCause::OomKilled { constraint: OomConstraint::MemoryCgroup, .. }),
        "an OOM kill at the memory cgroup's limit: {:?}",
        oom.cause
    );
    // Whose limit: the kernel's counters at the kill name the 40 MiB memory cgroup.
    let events = capture.events();
    let kill = events
        .iter()
        .find_map(|e| match e {
            Event::OomKill(k) if k.task.tgid == hog_pid => Some(k),
            _ => None,
        })
        .expect("the OOM kill event");
    let limit = kill.limit.expect("the memory cgroup at its limit");
    assert_eq!(limit.cgroup_id, memcg.id(), "{kill:?}");
    let page = monitor::node::memory::page_size();
    assert_eq!(limit.max_pages * page, 40 << 20, "{kill:?}");
    assert_eq!(oom.exit.status.shell_code(), 137);

    assert_eq!(killed.exit.status.shell_code(), 137, "the same 137...");
    match &killed.cause {
        DeathCause::Killed { signal: 9, sender } => {
            assert_eq!(sender.tgid, killer_pid);
            assert_eq!(sender.comm, "containerd-shim");
            assert!(sender.exe.starts_with("python3"), "the executable, from the kernel: {sender:?}");
            assert_eq!(sender.class, SenderClass::Other, "a name is no proof");
            assert_eq!(sender.cgroup_id, tree.id());
        }
        other => panic!("...but not an OOM kill: a kill by the shim, got {other:?}"),
    }

    assert_eq!(fault.cause, DeathCause::Fault { signal: libc::SIGSEGV as u8 });
    let labels = [oom.cause.label(), killed.cause.label(), fault.cause.label()];
    assert_eq!(labels, ["oom", "signal", "fault"]);
}
