//! Runs inside the pure cgroup v2 VM (`tests/tests/v2_node_vm.rs`): the OOM tests' helpers
//! there. [`TestCgroup::memory`] must pick the unified hierarchy (`memory.max`), a process
//! spawned in it must be OOM-killed at its limit, the kernel must count the kill
//! ([`TestCgroup::oom_kills`]) and the probes must report it as a kill at a memory cgroup's
//! limit, in that cgroup. Prints `MEMCG OK ...` on success; panics (exit 101) otherwise.

use std::{os::unix::process::ExitStatusExt as _, process::Command, time::Duration};

use monitor::events::{Event, OomConstraint};
use monitor_tests::{
    capture::Capture,
    cgroups::{MemoryLayout, TestCgroup, memory_layout, spawn_in},
};

fn main() {
    let layout = memory_layout();
    assert!(matches!(layout, MemoryLayout::V2(_)), "a pure v2 node keeps the memory controller on v2: {layout:?}");
    let capture = Capture::start();
    let tree = TestCgroup::v2("smoke-tree");
    let memcg = TestCgroup::memory("smoke-oom", 32 << 20);
    let limit = std::fs::read_to_string(memcg.path.join("memory.max")).expect("memory.max");
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    let mut hog = spawn_in(Command::new("/bin/dd").args(["if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]), &[&tree, &memcg]);
    let pid = hog.id();
    assert_eq!(hog.wait().expect("wait").signal(), Some(libc::SIGKILL), "the hog was not killed");
    assert_eq!(memcg.oom_kills(), 1, "the kernel's count in memory.events");
    let events = capture.wait_until(Duration::from_secs(30), "the OOM kill", |events| {
        events.iter().any(|e| matches!(e, Event::OomKill(o) if o.task.tgid == pid && o.constraint != OomConstraint::Unknown))
    });
    let oom = events
        .iter()
        .find_map(|e| match e {
            Event::OomKill(o) if o.task.tgid == pid => Some(o),
            _ => None,
        })
        .expect("the kill");
    assert_eq!(oom.constraint, OomConstraint::MemoryCgroup, "{oom:?}");
    // As the OOM tests expect them (`ids_with`): on v2 the memory cgroup is the task's cgroup.
    assert_eq!(memcg.ids_with(&tree), (memcg.id(), 0));
    assert_eq!((oom.task.cgroup_id, oom.task.memcg_id), memcg.ids_with(&tree), "the victim's cgroups: {oom:?}");
    assert_eq!((oom.trigger_cgroup_id, oom.trigger_memcg_id), memcg.ids_with(&tree), "the allocating task's: {oom:?}");
    println!(
        "MEMCG OK layout=v2 memory.max={} oom_kill={} constraint={} cgroup_id={} memcg_id={}",
        limit.trim(),
        memcg.oom_kills(),
        oom.constraint.as_str(),
        oom.task.cgroup_id,
        oom.task.memcg_id
    );
}
