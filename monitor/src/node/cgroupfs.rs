//! From a cgroup id to its path: the kernel reports a task's cgroup v2 id (the inode number of
//! the cgroup's directory in cgroup2fs) and its v1 memory cgroup's inode; this module finds the
//! directory with that inode under the hierarchy's mount point.
//!
//! [`Mounts`] finds the hierarchies in a mountinfo text (the daemon's own, which in a DaemonSet
//! shows the host's cgroup mounts); [`CgroupIndex`] keeps inode -> path for one hierarchy,
//! rescanning the tree on a miss (at most once per [`CgroupIndex::min_rescan`]);
//! [`workload_cgroups`] lists the containers' and node daemons' cgroups there. It only reads
//! directory metadata; it never creates, moves or deletes cgroups. Walks are blocking
//! filesystem work: run them off the async event path (`spawn_blocking`).

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    cgroup_path::{self, CgroupOwner},
    runtimes,
};

/// Most directories visited by one walk (a busy node has a few thousand cgroups).
pub const MAX_WALK_DIRS: usize = 200_000;

/// Where the cgroup hierarchies attribution needs are mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 (unified) hierarchy: `/sys/fs/cgroup` on v2 nodes,
    /// `/sys/fs/cgroup/unified` on hybrid ones.
    pub v2: Option<PathBuf>,
    /// The v1 memory controller's hierarchy, when memory is on v1.
    pub memory_v1: Option<PathBuf>,
}

impl Mounts {
    /// Reads `/proc/self/mountinfo`.
    pub fn discover() -> Self {
        fs::read_to_string("/proc/self/mountinfo").map(|text| Self::from_mountinfo(&text)).unwrap_or_default()
    }

    /// Parses mountinfo text (`proc(5)`): field 5 is the mount point, after ` - ` come the
    /// filesystem type, the source and the super options (`rw,memory`).
    pub fn from_mountinfo(text: &str) -> Self {
        let mut mounts = Self::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let Some(mount) = left.split_whitespace().nth(4) else { continue };
            let mut right = right.split_whitespace();
            let fstype = right.next();
            let options = right.nth(1).unwrap_or("");
            let mount = PathBuf::from(unescape_mount(mount));
            match fstype {
                Some("cgroup2") if mounts.v2.is_none() => mounts.v2 = Some(mount),
                Some("cgroup") if mounts.memory_v1.is_none() && options.split(',').any(|o| o == "memory") => {
                    mounts.memory_v1 = Some(mount)
                }
                _ => {}
            }
        }
        mounts
    }
}

/// A memory cgroup and the kernel's count of OOM kills in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomKillCount {
    /// Its path in the hierarchy (`/kubepods/burstable/pod.../<id>`, `/system.slice/x.service`).
    pub cgroup: String,
    /// `oom_kill` of `memory.events` (v2: this cgroup and its descendants) or of
    /// `memory.oom_control` (v1: this cgroup's own).
    pub oom_kills: u64,
}

/// The OOM kill counts of this process's memory cgroup and of its parent (a container's pod),
/// from `/proc/self/cgroup` and the hierarchies in `mounts`. `None` where the memory
/// controller or the cgroup cannot be read (a cgroup namespace hides the path, no memory
/// controller on the unified hierarchy).
pub fn own_oom_kills(mounts: &Mounts) -> (Option<OomKillCount>, Option<OomKillCount>) {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else { return (None, None) };
    let Some((mount, path)) = memory_cgroup_of(mounts, &text) else { return (None, None) };
    // In a cgroup namespace (a container's, on v2) the path reads `/`: the monitor's cgroup is
    // then the one of the host's hierarchy whose cgroup.procs lists its pid (the DaemonSet
    // runs in the host's PID namespace, so the pid is the host's).
    let pid = std::process::id();
    let path = if path != "/" && lists_pid(&mount.join(path.trim_start_matches('/')), pid) {
        path
    } else {
        match find_cgroup_of_pid(&mount, pid) {
            Some(found) => found,
            None => return (None, None),
        }
    };
    let count = |path: &str| {
        let dir = mount.join(path.trim_start_matches('/'));
        oom_kills_in(&dir).map(|oom_kills| OomKillCount { cgroup: path.to_string(), oom_kills })
    };
    let parent = Path::new(&path).parent().map(|p| p.to_string_lossy().into_owned()).filter(|p| p != "/");
    (count(&path), parent.as_deref().and_then(count))
}

fn lists_pid(dir: &Path, pid: u32) -> bool {
    fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|procs| procs.lines().any(|l| l.trim().parse() == Ok(pid)))
}

/// The cgroup (path in the hierarchy at `mount`) whose `cgroup.procs` lists `pid`: a walk of
/// at most [`MAX_WALK_DIRS`] directories, leaves first in each directory.
fn find_cgroup_of_pid(mount: &Path, pid: u32) -> Option<String> {
    let mut stack = vec![mount.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > MAX_WALK_DIRS {
            return None;
        }
        if dir != mount && lists_pid(&dir, pid) {
            let relative = dir.strip_prefix(mount).ok()?;
            return Some(format!("/{}", relative.display()));
        }
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
    }
    None
}

/// Where this process's memory cgroup is, from `/proc/self/cgroup` text: the v1 `memory`
/// line when memory is on v1, else the unified (`0::`) line.
fn memory_cgroup_of(mounts: &Mounts, proc_self_cgroup: &str) -> Option<(PathBuf, String)> {
    let line = |want: &dyn Fn(&str) -> bool| {
        proc_self_cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            want(controllers).then(|| path.to_string())
        })
    };
    match &mounts.memory_v1 {
        Some(v1) => Some((v1.clone(), line(&|c| c.split(',').any(|c| c == "memory"))?)),
        None => Some((mounts.v2.clone()?, line(&|c| c.is_empty())?)),
    }
}

/// The `oom_kill` count of a memory cgroup directory (v2 `memory.events`, v1 `memory.oom_control`).
pub fn oom_kills_in(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("memory.events")).or_else(|_| fs::read_to_string(dir.join("memory.oom_control"))).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The id of the v1 hierarchy the memory controller is bound to, from `/proc/cgroups`
/// (`memory <hierarchy> <cgroups> <enabled>`); 0 when it is on the unified hierarchy, or unknown.
pub fn memory_hierarchy_id() -> u32 {
    fs::read_to_string("/proc/cgroups").map(|text| parse_memory_hierarchy(&text)).unwrap_or(0)
}

fn parse_memory_hierarchy(text: &str) -> u32 {
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("memory")).then(|| fields.next()?.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// The hierarchy the memory controller is on and its mount: v1's (its id from
/// `/proc/cgroups`) when memory is on v1, else the unified one (id 0). `None` when neither is
/// mounted, or v1's id is unknown.
pub fn memory_hierarchy(mounts: &Mounts) -> Option<(u32, PathBuf)> {
    match (&mounts.memory_v1, &mounts.v2) {
        (Some(v1), _) => Some(memory_hierarchy_id()).filter(|id| *id != 0).map(|id| (id, v1.clone())),
        (None, Some(v2)) => Some((0, v2.clone())),
        (None, None) => None,
    }
}

/// The cgroups of the node's containers and of its daemons' units (kubelet's, the runtime's)
/// in the hierarchy mounted at `mount` now, with their kernfs ids (as events carry them),
/// ordered by path. The monitor may start long after them, and a quiet one (a static pod's
/// container that never execs) would otherwise make no event to be followed by (its OOM kill
/// count, its memory pressure). One walk, bounded by [`MAX_WALK_DIRS`].
pub fn workload_cgroups(mount: &Path) -> Vec<(u64, String)> {
    let mut index = CgroupIndex::new(mount);
    index.walk();
    let mut found: Vec<(u64, String)> = index
        .paths
        .into_iter()
        .filter(|(_, path)| match cgroup_path::parse(path) {
            CgroupOwner::Container(_) => true,
            CgroupOwner::HostService { unit, .. } => runtimes::is_node_unit(&unit),
            _ => false,
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found
}

/// The kernfs id (inode number) of every hierarchy's root directory.
const ROOT_CGROUP_ID: u64 = 1;

/// inode -> cgroup path (relative to the mount, starting with `/`) for one hierarchy.
#[derive(Debug)]
pub struct CgroupIndex {
    mount: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
    /// A miss rescans the tree at most this often.
    pub min_rescan: Duration,
    walks: u64,
    /// The mount is the hierarchy's root (not a subtree, as in a cgroup namespace): paths the
    /// kernel gives from the root are paths in the mount.
    whole_hierarchy: bool,
}

impl CgroupIndex {
    pub fn new(mount: impl Into<PathBuf>) -> Self {
        let mount = mount.into();
        let whole_hierarchy = fs::metadata(&mount).is_ok_and(|m| m.ino() == ROOT_CGROUP_ID);
        Self { mount, paths: HashMap::new(), last_walk: None, min_rescan: Duration::from_millis(50), walks: 0, whole_hierarchy }
    }

    /// Cgroup `id` was created at `path` (from the hierarchy's root), as the kernel said. Kept
    /// even once the directory is gone; ignored where the mount is not the whole hierarchy,
    /// for paths that are not plain absolute ones, and past [`MAX_WALK_DIRS`] entries.
    pub fn learn(&mut self, id: u64, path: &str) {
        let plain = path.starts_with('/') && !path.split('/').any(|part| part == ".." || part == ".");
        if self.whole_hierarchy && id != 0 && plain && self.paths.len() < MAX_WALK_DIRS {
            self.paths.insert(id, path.to_string());
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// How many times the tree was walked (for tests and metrics).
    pub fn walks(&self) -> u64 {
        self.walks
    }

    /// The path of cgroup `id`, walking the tree again on a miss (blocking until `min_rescan`
    /// after the previous walk). A cached path whose directory is gone is forgotten, and
    /// returned this once unless the walk finds the cgroup renamed: ids are never reused.
    pub fn lookup(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        let last = match self.paths.get(&id) {
            Some(path) if self.still_there(id, path) => return Some(path.clone()),
            Some(_) => self.paths.remove(&id),
            None => None,
        };
        // Walks are spaced by `min_rescan`: wait for the next one rather than report a miss
        // for a cgroup created just after the last walk.
        if let Some(since) = self.last_walk.map(|at| at.elapsed())
            && since < self.min_rescan {
                std::thread::sleep(self.min_rescan - since);
            }
        self.walk();
        self.paths.get(&id).cloned().or(last)
    }

    /// The cached path only (no walk).
    pub fn cached(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Whether cgroup `id` (as last seen at `path`) still exists.
    pub fn exists(&self, id: u64, path: &str) -> bool {
        self.still_there(id, path)
    }

    /// Drops entries whose directories are gone; returns their ids.
    pub fn sweep(&mut self) -> Vec<u64> {
        let gone: Vec<u64> = self.paths.iter().filter(|(id, path)| !self.still_there(**id, path)).map(|(id, _)| *id).collect();
        for id in &gone {
            self.paths.remove(id);
        }
        gone
    }

    fn still_there(&self, id: u64, path: &str) -> bool {
        fs::metadata(self.absolute(path)).is_ok_and(|m| m.ino() == id)
    }

    fn absolute(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }

    /// Walks the whole hierarchy (iteratively, bounded by [`MAX_WALK_DIRS`]).
    pub fn walk(&mut self) {
        self.walks += 1;
        self.last_walk = Some(Instant::now());
        let mut stack = vec![(self.mount.clone(), String::from("/"))];
        let mut seen = 0usize;
        while let Some((dir, rel)) = stack.pop() {
            seen += 1;
            if seen > MAX_WALK_DIRS {
                break;
            }
            let Ok(meta) = fs::symlink_metadata(&dir) else { continue };
            if !meta.is_dir() {
                continue;
            }
            self.paths.insert(meta.ino(), rel.clone());
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if rel == "/" { format!("/{name}") } else { format!("{rel}/{name}") };
                    stack.push((entry.path(), child));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_cgroup_on_v1_and_v2() {
        let hybrid = Mounts { v2: Some("/sys/fs/cgroup/unified".into()), memory_v1: Some("/sys/fs/cgroup/memory".into()) };
        let text = "12:memory:/system.slice/nrm.service\n1:name=systemd:/system.slice/nrm.service\n0::/system.slice/nrm.service\n";
        assert_eq!(
            memory_cgroup_of(&hybrid, text),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "/system.slice/nrm.service".to_string()))
        );
        let v2 = Mounts { v2: Some("/sys/fs/cgroup".into()), memory_v1: None };
        let text = "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n";
        assert_eq!(
            memory_cgroup_of(&v2, text).map(|(_, p)| p).as_deref(),
            Some("/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope")
        );
        assert_eq!(memory_cgroup_of(&Mounts::default(), text), None);
    }

    #[test]
    fn the_workloads_cgroups_already_there_are_containers_and_node_daemons() {
        let root = std::env::temp_dir().join(format!("nrm-cgroup-census-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let id = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
        let systemd = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope");
        let cgroupfs = format!("kubepods/besteffort/pod9729a196-c472-3b60-ab40-1eaff722982d/{id}");
        for dir in [
            systemd.as_str(),
            cgroupfs.as_str(),
            "system.slice/kubelet.service",
            "system.slice/containerd.service",
            "system.slice/cron.service",
            "user.slice/user-1000.slice/session-3.scope",
        ] {
            fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        let found = workload_cgroups(&root);
        let paths: Vec<&str> = found.iter().map(|(_, path)| path.as_str()).collect();
        assert_eq!(
            paths,
            [format!("/{systemd}"), format!("/{cgroupfs}"), "/system.slice/containerd.service".into(), "/system.slice/kubelet.service".into()]
        );
        for (ino, path) in &found {
            assert_eq!(fs::metadata(root.join(path.trim_start_matches('/'))).expect("stat").ino(), *ino, "{path}");
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_cgroup_of_a_pid_is_found_by_its_procs() {
        let root = std::env::temp_dir().join(format!("nrm-cgroup-procs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let pod = root.join("kubepods.slice/kubepods-pod1.slice");
        fs::create_dir_all(pod.join("cri-containerd-aa.scope")).expect("mkdir");
        fs::create_dir_all(pod.join("cri-containerd-bb.scope")).expect("mkdir");
        fs::write(root.join("cgroup.procs"), "1\n").expect("write");
        fs::write(pod.join("cri-containerd-aa.scope/cgroup.procs"), "7\n12\n").expect("write");
        fs::write(pod.join("cri-containerd-bb.scope/cgroup.procs"), "4242\n").expect("write");
        assert_eq!(
            find_cgroup_of_pid(&root, 4242).as_deref(),
            Some("/kubepods.slice/kubepods-pod1.slice/cri-containerd-bb.scope")
        );
        assert_eq!(find_cgroup_of_pid(&root, 424), None);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn mounts_of_a_hybrid_and_a_v2_node() {
        let hybrid = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
38 30 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
";
        let m = Mounts::from_mountinfo(hybrid);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.memory_v1.as_deref(), Some(Path::new("/sys/fs/cgroup/memory")));
        let v2 = "35 24 0:30 / /host/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let m = Mounts::from_mountinfo(v2);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/host/sys/fs/cgroup")));
        assert_eq!(m.memory_v1, None);
        assert_eq!(Mounts::from_mountinfo("garbage\n\n - \n"), Mounts::default());
        assert_eq!(unescape_mount("/a\\040b\\x"), "/a b\\x");
    }

    #[test]
    fn finds_a_directory_by_inode_and_forgets_it_when_removed() {
        let root = std::env::temp_dir().join(format!("nrm-cgroupfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let leaf = root.join("kubepods/burstable/podx");
        fs::create_dir_all(&leaf).expect("mkdir");
        let ino = fs::metadata(&leaf).expect("stat").ino();
        let mut index = CgroupIndex::new(&root);
        index.min_rescan = Duration::ZERO;
        assert_eq!(index.lookup(ino).as_deref(), Some("/kubepods/burstable/podx"));
        assert_eq!(index.walks(), 1);
        assert_eq!(index.lookup(ino).as_deref(), Some("/kubepods/burstable/podx"));
        assert_eq!(index.walks(), 1, "a hit does not walk");
        // Created after the first walk: a miss walks again and finds it.
        let later = root.join("system.slice/kubelet.service");
        fs::create_dir_all(&later).expect("mkdir");
        let later_ino = fs::metadata(&later).expect("stat").ino();
        assert_eq!(index.lookup(later_ino).as_deref(), Some("/system.slice/kubelet.service"));
        fs::remove_dir(&leaf).expect("rmdir");
        assert!(index.sweep().contains(&ino));
        assert_eq!(index.cached(ino), None);
        assert_eq!(index.lookup(0), None);
        let _ = fs::remove_dir_all(&root);
    }

    /// A cgroup removed between two walks is still named by the path the kernel gave when it
    /// was created, once; only where the mount is the whole hierarchy, and only plain paths.
    #[test]
    fn a_cgroup_learnt_at_its_creation_keeps_its_path_once_gone() {
        let root = std::env::temp_dir().join(format!("nrm-cgroup-learn-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("mkdir");
        let mut index = CgroupIndex::new(&root);
        assert!(!index.whole_hierarchy, "a temporary directory is no hierarchy's root");
        index.learn(7_000_001, "/kubepods/burstable/pod1/abc");
        assert_eq!(index.cached(7_000_001), None, "not learnt where the mount is a subtree");
        index.whole_hierarchy = true;
        index.learn(7_000_001, "/kubepods/burstable/pod1/abc");
        index.learn(7_000_002, "/kubepods/../etc");
        index.learn(7_000_003, "relative");
        assert_eq!(index.cached(7_000_002), None);
        assert_eq!(index.cached(7_000_003), None);
        assert_eq!(index.lookup(7_000_001).as_deref(), Some("/kubepods/burstable/pod1/abc"), "gone, but it was there");
        assert_eq!(index.lookup(7_000_001), None, "forgotten after that");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_memory_controllers_hierarchy_is_read_from_proc_cgroups() {
        let v1 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t13\t1\nmemory\t4\t193\t1\npids\t8\t13\t1\n";
        assert_eq!(parse_memory_hierarchy(v1), 4);
        let v2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t88\t1\n";
        assert_eq!(parse_memory_hierarchy(v2), 0);
        assert_eq!(parse_memory_hierarchy("memory x\n"), 0);
        assert_eq!(parse_memory_hierarchy(""), 0);
    }
}
