//! Real cgroups for tests: a cgroup v2 directory that marks a test's process tree (its id is
//! what the kernel programs report as `cgroup_id`) and a memory cgroup with a limit, for real
//! memcg OOM kills: on v1 where the node keeps the memory controller there (this machine), on
//! v2 (`memory.max`) on a pure v2 node (a laptop, the VM of `tests/tests/v2_node_vm.rs`).

use std::{
    fs,
    io::Write as _,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

/// Mount point of the cgroup2 (unified) hierarchy: /sys/fs/cgroup on v2 nodes,
/// /sys/fs/cgroup/unified on hybrid ones.
pub fn cgroup2_mount() -> PathBuf {
    cgroup2_mounted().expect("no cgroup2 hierarchy mounted: tests need one (v2 or hybrid)")
}

fn cgroup2_mounted() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(mount))
    })
}

/// Mount point of the v1 memory controller, if it is on v1.
pub fn memory_v1_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let mount = left.split_whitespace().nth(4)?;
        (right.next() == Some("cgroup") && right.nth(1)?.split(',').any(|o| o == "memory")).then(|| PathBuf::from(mount))
    })
}

/// Where the node keeps the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryLayout {
    /// On the unified hierarchy (a pure v2 node), mounted there.
    V2(PathBuf),
    /// On its own v1 hierarchy, mounted there.
    V1(PathBuf),
}

/// The memory controller's layout: v2 when the unified hierarchy's root lists it in
/// `cgroup.controllers` (a controller bound to v1 is never listed there), else v1.
pub fn memory_layout() -> MemoryLayout {
    if let Some(v2) = cgroup2_mounted() {
        let controllers = fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return MemoryLayout::V2(v2);
        }
    }
    MemoryLayout::V1(memory_v1_mount().expect("the memory controller is on neither cgroup v2 nor v1"))
}

/// A cgroup directory removed on drop (after its processes are gone).
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    /// A new cgroup v2 directory: its id is the inode number.
    pub fn v2(name: &str) -> Self {
        let path = cgroup2_mount().join(unique(name));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e} (tests need root)", path.display()));
        Self { path }
    }

    /// A new memory cgroup limited to `limit_bytes`, without swap, where the node keeps the
    /// memory controller: a v2 cgroup when the unified hierarchy has it (then joining it moves a
    /// process out of any other v2 cgroup: give it last to [`spawn_in`]), else a v1 one.
    pub fn memory(name: &str, limit_bytes: u64) -> Self {
        let layout = memory_layout();
        let mount = match &layout {
            MemoryLayout::V2(mount) => {
                // The root delegates the controller to its children (systemd does it at boot).
                fs::write(mount.join("cgroup.subtree_control"), "+memory").expect("enable the memory controller");
                mount
            }
            MemoryLayout::V1(mount) => mount,
        };
        let path = mount.join(unique(name));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e} (tests need root)", path.display()));
        match layout {
            MemoryLayout::V2(_) => fs::write(path.join("memory.swap.max"), "0").expect("no swap"),
            MemoryLayout::V1(_) => {
                let _ = fs::write(path.join("memory.swappiness"), "0");
            }
        }
        let cgroup = Self { path };
        cgroup.set_memory_limit(limit_bytes);
        cgroup
    }

    fn is_v2_memory(&self) -> bool {
        self.path.join("memory.max").exists()
    }

    /// Sets the memory limit (`memory.max` on v2, `memory.limit_in_bytes` on v1).
    pub fn set_memory_limit(&self, bytes: u64) {
        let file = if self.is_v2_memory() { "memory.max" } else { "memory.limit_in_bytes" };
        fs::write(self.path.join(file), bytes.to_string()).unwrap_or_else(|e| panic!("set {file}: {e}"));
    }

    /// The memory in use (`memory.current` on v2, `memory.usage_in_bytes` on v1).
    pub fn memory_usage(&self) -> u64 {
        let file = if self.is_v2_memory() { "memory.current" } else { "memory.usage_in_bytes" };
        let text = fs::read_to_string(self.path.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
        text.trim().parse().unwrap_or_else(|e| panic!("{file}: {text:?}: {e}"))
    }

    /// What the kernel programs report, as `(cgroup_id, memcg_id)`, for a process spawned in
    /// `[tree, self]` (in that order, by [`spawn_in`]): on v1 it stays in `tree` on the unified
    /// hierarchy and its v1 memory cgroup is this one; on v2 this cgroup is both its cgroup and
    /// its memory cgroup, and there is no v1 memory cgroup id (0).
    pub fn ids_with(&self, tree: &TestCgroup) -> (u64, u64) {
        if self.is_v2_memory() { (self.id(), 0) } else { (tree.id(), self.id()) }
    }

    /// The kernel's count of OOM kills in it (`oom_kill` of `memory.events` on v2, of
    /// `memory.oom_control` on v1).
    pub fn oom_kills(&self) -> u64 {
        monitor::node::cgroupfs::oom_kills_in(&self.path).expect("an oom_kill count in memory.events or memory.oom_control")
    }

    /// The id the kernel reports for this cgroup (kernfs id = inode number).
    pub fn id(&self) -> u64 {
        fs::metadata(&self.path).expect("stat cgroup").ino()
    }

    pub fn procs(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The cgroup systemd gives a system unit (`/system.slice/<unit>` in the unified hierarchy),
/// created if missing and never removed (tests running at once share it). Daemons the tests
/// start by hand (containerd) run there, so the monitor sees them in the unit they have on a
/// node: it tells a runtime's processes by their unit, not by their names.
pub fn unit_cgroup(unit: &str) -> PathBuf {
    let path = cgroup2_mount().join("system.slice").join(unit);
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e} (tests need root)", path.display()));
    path
}

/// Makes `cmd`'s child join the unit cgroup at `path` ([`unit_cgroup`]) before it execs.
pub fn join_before_exec(cmd: &mut Command, path: &Path) {
    let procs = path.join("cgroup.procs");
    // SAFETY: the closure only opens and writes a file (async-signal-safe enough for tests).
    unsafe {
        cmd.pre_exec(move || join(&procs));
    }
}

/// Makes `cmd`'s child join every cgroup in `cgroups` before it execs.
pub fn spawn_in(cmd: &mut Command, cgroups: &[&TestCgroup]) -> std::process::Child {
    let procs: Vec<PathBuf> = cgroups.iter().map(|c| c.procs()).collect();
    // SAFETY: the closure only opens and writes files (async-signal-safe enough for tests).
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                join(p)?;
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn join(procs: &Path) -> std::io::Result<()> {
    // "0" is the writing process itself.
    fs::OpenOptions::new().write(true).open(procs)?.write_all(b"0")
}
