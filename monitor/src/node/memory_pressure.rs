//! Memory cgroups as the kernel counts them: pressure stall information (PSI: the node's
//! `/proc/pressure/memory`, a cgroup's `memory.pressure`) and the OOM kills in a cgroup
//! (`memory.events.local`, else `memory.events` on v2; `memory.oom_control` on v1) and on the
//! whole node (`/proc/vmstat`).
//!
//! PSI text (Documentation/accounting/psi.rst), one line per kind, `full` absent from a kernel
//! older than 5.x for the node's CPU file only (memory always has it):
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=3286328
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=1178545
//! ```
//!
//! `avg*` are percentages of wall time stalled over 10 s, 60 s, 300 s; `total` is the
//! cumulative stall time in microseconds since the cgroup was created (the node's: since boot).
//! Files are read bounded (a workload can mount anything at a cgroup's path), and a text that
//! does not parse is `None`, never a panic.

use std::{
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::Path,
};

use super::host_root::HostRoot;

/// More than any kernel writes in these files (two lines of ~70 bytes; memory.events ~200).
const MAX_FILE_BYTES: u64 = 4096;

/// The node's memory PSI, as a host path.
pub const NODE_PRESSURE: &str = "/proc/pressure/memory";

/// The kernel's event counters, `oom_kill` among them (not namespaced: the monitor's own is the
/// node's).
pub const VMSTAT: &str = "/proc/vmstat";

/// More than `/proc/vmstat` holds (about 4 KiB of ~180 counters; more with NUMA and debug
/// counters).
const MAX_VMSTAT_BYTES: u64 = 64 * 1024;

/// One PSI line: averages in percent of wall time, the total stall in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// A memory PSI file: `some` (at least one task stalled on memory) and `full` (every
/// non-idle task stalled at once: the cgroup did no work).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryPressure {
    pub some: PsiLine,
    pub full: PsiLine,
}

/// Parses the text of a memory PSI file; `None` unless both lines are there and well formed.
pub fn parse(text: &str) -> Option<MemoryPressure> {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let mut parsed = PsiLine::default();
        let mut seen = 0u8;
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "avg10" => parsed.avg10 = percent(value)?,
                "avg60" => parsed.avg60 = percent(value)?,
                "avg300" => parsed.avg300 = percent(value)?,
                "total" => parsed.total_us = value.parse().ok()?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return None;
        }
        *slot = Some(parsed);
    }
    Some(MemoryPressure { some: some?, full: full? })
}

fn percent(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
}

/// The node's memory pressure (`<host-root>/proc/pressure/memory`); `None` on a kernel without
/// PSI (`CONFIG_PSI=n`, or `psi=0` on its command line).
pub fn read_node(host: &HostRoot) -> Option<MemoryPressure> {
    parse(&host.read_text_limited(Path::new(NODE_PRESSURE), MAX_FILE_BYTES).ok()?)
}

/// A cgroup v2 directory's memory pressure (`memory.pressure`: a core file of every v2
/// cgroup, with or without the memory controller). `dir` is a path of the monitor's own mount
/// namespace (the hierarchy's mount point joined with the cgroup's path).
pub fn read_cgroup(dir: &Path) -> Option<MemoryPressure> {
    parse(&read_small(&dir.join("memory.pressure"), MAX_FILE_BYTES)?)
}

/// The kernel's count of OOM kills on the whole node since boot (`oom_kill` of `/proc/vmstat`,
/// counted once per victim of every OOM kill, the node's and memory cgroups' alike, and again
/// for a `memory.oom.group` victim: see [`crate::events::OomKillRecounted`]). Read in the
/// monitor's own `/proc`: the counters are not namespaced. `None` on a kernel before 4.13 (it
/// has no such counter).
pub fn read_node_oom_kills() -> Option<u64> {
    parse_oom_kill(&read_small(Path::new(VMSTAT), MAX_VMSTAT_BYTES)?)
}

/// The kernel's count of OOM kills of processes of this memory cgroup itself: `oom_kill` of
/// `memory.events.local` (v2, kernel >= 5.2), else of `memory.events` (v2, which also counts
/// descendants: the same for a leaf such as a container's), else of `memory.oom_control` (v1).
pub fn oom_kills(dir: &Path) -> Option<u64> {
    ["memory.events.local", "memory.events", "memory.oom_control"]
        .iter()
        .find_map(|file| read_small(&dir.join(file), MAX_FILE_BYTES))
        .and_then(|text| parse_oom_kill(&text))
}

/// Most directories [`newest_cgroup_id`] walks: far more cgroups than a node has.
const MAX_CGROUP_DIRS: usize = 100_000;

/// The kernfs id (inode number) of the cgroup directory `dir`.
pub fn cgroup_id(dir: &Path) -> Option<u64> {
    std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir()).map(|m| m.ino())
}

/// The highest cgroup id in the hierarchy mounted at `mount`. The kernel numbers the nodes of
/// a cgroup hierarchy (kernfs) in increasing order, so a cgroup created later has a higher id.
/// `None` when the hierarchy cannot be read or has more than [`MAX_CGROUP_DIRS`] directories.
pub fn newest_cgroup_id(mount: &Path) -> Option<u64> {
    let mut newest = cgroup_id(mount)?;
    let mut pending = vec![mount.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            // Cgroup directories only: a cgroup mount holds no links.
            let Ok(kind) = entry.file_type() else { continue };
            if !kind.is_dir() {
                continue;
            }
            seen += 1;
            if seen > MAX_CGROUP_DIRS {
                return None;
            }
            newest = newest.max(entry.ino());
            pending.push(entry.path());
        }
    }
    Some(newest)
}

/// `oom_kill <n>` of a `memory.events`, `memory.oom_control` or `/proc/vmstat` text (one
/// `name value` counter a line in all three).
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
}

/// A kernel file of the monitor's own view (a cgroup mount, its `/proc`), read bounded
/// (`limit` bytes), without following a FIFO or a device a workload could have mounted there.
fn read_small(path: &Path, limit: u64) -> Option<String> {
    HostRoot::new("/").read_text_limited(path, limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/pressure/memory` of this machine (Linux 6.18) as read, and a stalled cgroup's in
    /// the same format (Documentation/accounting/psi.rst) with figures typed for the test.
    /// A cgroup made after the walk has a higher id than every cgroup before it (this
    /// machine's memory hierarchy: v1's, else the unified one).
    #[test]
    fn a_new_cgroup_has_a_higher_id_than_the_newest_before_it() {
        let mounts = crate::node::cgroupfs::Mounts::discover();
        let mount = mounts.memory_v1.as_ref().or(mounts.v2.as_ref()).expect("a memory hierarchy");
        let newest = newest_cgroup_id(mount).expect("walk");
        let dir = mount.join(format!("nrm-unit-cgroup-id-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir cgroup (run as root)");
        let id = cgroup_id(&dir);
        std::fs::remove_dir(&dir).expect("rmdir cgroup");
        assert!(id.expect("id") > newest, "{id:?} after {newest}");
        assert_eq!(cgroup_id(&dir), None, "gone");
    }

    #[test]
    fn parses_the_kernels_psi_text() {
        let node = "some avg10=0.00 avg60=0.00 avg300=0.00 total=3286328\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1178545\n";
        let p = parse(node).expect("psi");
        assert_eq!((p.some.total_us, p.full.total_us), (3_286_328, 1_178_545));
        let stalled = "some avg10=93.12 avg60=61.40 avg300=17.85 total=48211370\nfull avg10=88.07 avg60=57.93 avg300=16.70 total=45632311\n";
        let p = parse(stalled).expect("psi");
        assert_eq!((p.full.avg10, p.full.avg60, p.full.avg300), (88.07, 57.93, 16.70));
        assert_eq!(p.some.total_us, 48_211_370);
    }

    #[test]
    fn hostile_or_partial_texts_are_none() {
        for text in [
            "",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=x avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=NaN avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=1e9 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some total\nfull total\n",
            "\u{0}\u{ff}garbage",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// `memory.events` (v2) and `memory.oom_control` (v1) in the kernel's format
    /// (Documentation/admin-guide/cgroup-v2.rst, mm/memcontrol.c), counts typed for the test.
    #[test]
    fn oom_kill_counts_of_v2_and_v1() {
        let v2 = "low 0\nhigh 0\nmax 412\noom 3\noom_kill 3\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(3));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        assert_eq!(parse_oom_kill("oom_kill x\n"), None);
        let dir = std::env::temp_dir().join(format!("nrm-oom-kills-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.events"), "oom 9\noom_kill 9\n").expect("write");
        std::fs::write(dir.join("memory.events.local"), "oom 1\noom_kill 1\n").expect("write");
        assert_eq!(oom_kills(&dir), Some(1), "the cgroup's own count first");
        std::fs::remove_file(dir.join("memory.events.local")).expect("rm");
        assert_eq!(oom_kills(&dir), Some(9));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `/proc/vmstat` as the kernel writes it (mm/vmstat.c: `name value` a line), lines of it
    /// as read on this machine (Linux 6.18); a kernel before 4.13 has no `oom_kill` line.
    #[test]
    fn the_nodes_oom_kill_count_of_vmstat() {
        let vmstat = "nr_free_pages 3497481\nnr_free_pages_blocks 2645504\npageoutrun 0\npgrotated 390000\ndrop_pagecache 1\ndrop_slab 2\noom_kill 371\nnuma_pte_updates 0\nnuma_huge_pte_updates 0\n";
        assert_eq!(parse_oom_kill(vmstat), Some(371));
        let before_4_13 = "nr_free_pages 3497481\npageoutrun 0\npgrotated 390000\ndrop_pagecache 1\ndrop_slab 2\nnuma_pte_updates 0\n";
        assert_eq!(parse_oom_kill(before_4_13), None);
        assert_eq!(parse_oom_kill("oom_kill_disable 0\noom_kill -1\n"), None, "not a count");
        // This machine's kernel (>= 4.13) has the count, read in the monitor's own /proc.
        assert!(read_node_oom_kills().is_some());
    }

    /// This machine's kernel keeps PSI: the node's file reads through the host root.
    #[test]
    fn the_nodes_pressure_is_read_here() {
        let p = read_node(&HostRoot::new("/")).expect("this kernel's PSI parses");
        assert!(p.some.total_us >= p.full.total_us);
    }
}
