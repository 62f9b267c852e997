//! Real cgroups for tests: a cgroup v2 directory that marks a test's process tree (its id is
//! what the kernel programs report as `cgroup_id`) and a v1 memory cgroup with a limit, for
//! real memcg OOM kills.

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
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(mount))
        })
        .expect("no cgroup2 hierarchy mounted: tests need one (v2 or hybrid)")
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

    /// A new v1 memory cgroup limited to `limit_bytes`, without swap.
    pub fn memory_v1(name: &str, limit_bytes: u64) -> Self {
        let mount = memory_v1_mount().expect("the memory controller is not on cgroup v1 here");
        let path = mount.join(unique(name));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::write(path.join("memory.limit_in_bytes"), limit_bytes.to_string()).expect("set memory limit");
        let _ = fs::write(path.join("memory.swappiness"), "0");
        Self { path }
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
