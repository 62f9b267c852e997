//! Runtime binaries on the node (every runtime's daemons and tools in `runtimes`, the OCI
//! runtimes, crictl, kubelet): every copy on the PATH and in installer caches (kOps nodeup's
//! `/var/cache/nodeup/extracted/...`), each installed copy with the version read from its file
//! (`buildinfo`); and the node's running processes from `<host-root>/proc/*/cmdline`.
//!
//! Copies reached through symlinks (`/bin -> usr/bin`) count once. No binary is ever run: its
//! version is read from the file (a Go binary's build info), bounded in bytes and in time; a
//! file that carries none has no version, which is not an error, and says why. Nothing here
//! judges whether a binary should be there.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{buildinfo, host_root::HostRoot, runtimes};

/// The binaries looked for: every runtime's daemons and tools (see `runtimes`), the OCI
/// runtimes, crictl and kubelet.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    let all = runtimes::RUNTIMES.iter().flat_map(|r| r.binaries.iter().chain(r.tools));
    for name in all.chain(runtimes::OCI_RUNTIMES).chain([&runtimes::CRI_TOOL, &"kubelet"]) {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
}

/// Directories of the host PATH (plus /opt/bin of Flatcar and some installers).
pub const PATH_DIRS: [&str; 7] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/opt/bin"];

/// Installer caches: copies here are candidates an installer may pick from, not installed.
pub const CACHE_DIRS: [&str; 1] = ["/var/cache/nodeup"];

/// A running process of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub argv: Vec<String>,
}

impl Process {
    /// Base name of argv[0].
    pub fn name(&self) -> &str {
        self.argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("")
    }
}

/// Processes looked at, at most: a node runs a few hundred; a workload can fork many more.
const MAX_PROCESSES: usize = 32 * 1024;

/// Bytes of `/proc` one process view may read in all, apart from the node's files' budget: a
/// workload's processes cannot crowd out kubelet's configuration.
const PROCESS_VIEW_BUDGET: u64 = 16 * 1024 * 1024;

/// The host's own processes from `<host-root>/proc/*/cmdline` (kernel threads, with an empty
/// cmdline, left out; see [`is_host_process`] for who counts). `None` when the host root has no
/// process view (no `/proc` with numeric entries).
pub fn processes(root: &HostRoot) -> Option<Vec<Process>> {
    let root = &root.with_read_budget(PROCESS_VIEW_BUDGET);
    let proc = root.root().join("proc");
    let dir = std::fs::read_dir(&proc).ok()?;
    let pid1_mnt = std::fs::read_link(proc.join("1/ns/mnt")).ok();
    let mut out = Vec::new();
    let mut any = false;
    for entry in dir.flatten().take(MAX_PROCESSES) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        any = true;
        if !is_host_process(root, pid, pid1_mnt.as_deref()) {
            continue;
        }
        let Ok(bytes) = root.read_bytes_limited(&Path::new("/proc").join(pid.to_string()).join("cmdline"), 64 * 1024)
        else {
            continue;
        };
        let argv: Vec<String> = bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !argv.is_empty() {
            out.push(Process { pid, argv });
        }
    }
    out.sort_by_key(|p| p.pid);
    any.then_some(out)
}

/// Whether a process is the host's own, whose command line may say how the node is configured
/// (which config file containerd reads, kubelet's flags): any workload can name a process
/// `containerd` and give it a `--config` of its choosing. It must be run by root as the host
/// sees it (the real uid in `status`; root in a user namespace is another uid here), in no pod's
/// cgroup, and in PID 1's mount namespace where that can be read (reading another root
/// process's namespace takes CAP_SYS_PTRACE, which the DaemonSet does not have; the uid and
/// cgroup need none). What cannot be read is not held against it: a fixture node's `/proc`
/// has command lines only.
pub fn is_host_process(root: &HostRoot, pid: u32, pid1_mnt: Option<&Path>) -> bool {
    let dir = root.root().join("proc").join(pid.to_string());
    if let Ok(status) = root.read_text_limited(&Path::new("/proc").join(pid.to_string()).join("status"), 64 * 1024) {
        let real_uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next());
        if real_uid != Some("0") {
            return false;
        }
    }
    if let Ok(cgroups) = root.read_text_limited(&Path::new("/proc").join(pid.to_string()).join("cgroup"), 64 * 1024) {
        let in_pod = cgroups.lines().filter_map(|l| l.splitn(3, ':').nth(2)).any(|path| {
            matches!(super::cgroup_path::parse(path), super::cgroup_path::CgroupOwner::Container(_) | super::cgroup_path::CgroupOwner::Pod(_))
        });
        if in_pod {
            return false;
        }
    }
    match (pid1_mnt, std::fs::read_link(dir.join("ns/mnt"))) {
        (Some(host), Ok(own)) => own == host,
        (Some(_), Err(_)) => false,
        (None, _) => true,
    }
}

/// Where a copy was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// On the PATH: installed.
    Path,
    /// In an installer's cache: a candidate, not installed.
    InstallerCache,
}

/// One copy of a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub name: String,
    /// Host path.
    pub path: PathBuf,
    pub location: Location,
    /// The version read from the file (`v2.0.2`, `1.6.20`, `v1.30.2+k0s.0`), if it carries one.
    pub version: Option<String>,
    /// Where in the file the version was read, or why there is none, as evidence:
    /// `cri-dockerd 0.3.9 (Go build info: -X github.com/Mirantis/cri-dockerd/cmd/version.Version)`,
    /// `version unknown: not an ELF binary (a script, or another format)`. `None`: not read
    /// (copies in installer caches).
    pub version_source: Option<String>,
}

impl Binary {
    /// The version read from the file (`1.7.6`, `v1.28.0`, `0.3.9`).
    pub fn version(&self) -> Option<String> {
        self.version.clone()
    }
}

/// The first version-looking word of a text (an `-X` value, a module version):
/// `containerd containerd.io 1.7.6 091922f...` -> `1.7.6`, `crictl version v1.28.0` -> `v1.28.0`,
/// `Docker version 24.0.7, build afdd53b` -> `24.0.7`, `Kubernetes v1.30.2` -> `v1.30.2`.
pub fn version_in(line: &str) -> Option<String> {
    line.split_whitespace().map(|w| w.trim_end_matches(',')).find_map(|w| {
        let digits = w.trim_start_matches('v');
        let mut parts = digits.split('.');
        let ok = parts.next().is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            && parts.next().is_some_and(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()));
        ok.then(|| w.to_string())
    })
}

/// Finds every copy of the binaries of [`names`] (PATH and caches), without versions.
pub fn find(root: &HostRoot) -> Vec<Binary> {
    let names = names();
    let mut out: Vec<Binary> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in PATH_DIRS {
        for name in names.iter().copied() {
            let path = Path::new(dir).join(name);
            let resolved = root.resolve_host_path(&path);
            let Ok(meta) = root.metadata(&path) else { continue };
            // Once per file and name: a file reached again through a linked directory
            // (`/bin -> usr/bin`) is the same copy, but a link to a multi-call binary
            // (`/usr/local/bin/ctr -> k3s`) is another program than the file's own name.
            if !meta.is_file() || !seen.insert((resolved, name)) {
                continue;
            }
            out.push(Binary { name: name.into(), path, location: Location::Path, version: None, version_source: None });
        }
    }
    for cache in CACHE_DIRS {
        walk_cache(root, Path::new(cache), &names, 0, &mut out);
    }
    out
}

fn walk_cache(root: &HostRoot, dir: &Path, names: &[&str], depth: usize, out: &mut Vec<Binary>) {
    if depth > 6 || out.len() > 1000 {
        return;
    }
    for entry in root.list_dir(dir) {
        let Ok(meta) = root.symlink_metadata(&entry) else { continue };
        if meta.is_dir() {
            walk_cache(root, &entry, names, depth + 1, out);
        } else if let Some(name) = entry.file_name().and_then(|n| n.to_str()).filter(|n| names.contains(n)) {
            out.push(Binary {
                name: name.into(),
                path: entry.clone(),
                location: Location::InstallerCache,
                version: None,
                version_source: None,
            });
        }
    }
}

/// Reads the version of every installed copy from its file, all at once, every read done by
/// `timeout` (a file on a stuck network or FUSE mount must not hold the snapshot; its read is
/// left behind). Copies in installer caches are candidates, not read.
pub async fn read_versions(root: &HostRoot, binaries: &mut [Binary], timeout: Duration) {
    // One file at a time, in one blocking task: the memory a hostile file can make a read take
    // is held once, not once per copy on the PATH.
    let files: Vec<(usize, String, PathBuf)> = binaries
        .iter()
        .enumerate()
        .filter(|(_, b)| b.location == Location::Path)
        .map(|(i, b)| (i, b.name.clone(), b.path.clone()))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let root = root.clone();
    drop(tokio::task::spawn_blocking(move || {
        for (i, name, file) in files {
            if tx.send((i, read_version(&root, &name, &file))).is_err() {
                return;
            }
        }
    }));
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some((i, (version, source)))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        binaries[i].version = version;
        binaries[i].version_source = Some(source);
    }
    for b in binaries.iter_mut().filter(|b| b.location == Location::Path && b.version_source.is_none()) {
        b.version_source = Some(format!("version unknown: reading the files took longer than {timeout:?}"));
    }
}

/// The version of the binary `name` at `file` (a path in this process's view) read from its
/// content, and where it was found or why there is none (see [`Binary::version_source`]). The
/// file is opened without following a last symlink and without blocking on a FIFO, and read only
/// if it is a regular file.
pub fn read_version(root: &HostRoot, name: &str, host_path: &Path) -> (Option<String>, String) {
    let opened = root
        .open(host_path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
        .and_then(|f| f.metadata().map(|m| (f, m)));
    let file = match opened {
        Ok((f, meta)) if meta.is_file() => f,
        Ok(_) => return (None, "version unknown: not a regular file".into()),
        Err(e) => return (None, format!("version unknown: cannot open the file: {e}")),
    };
    match buildinfo::read(file) {
        Ok(info) => match info.embedded_version(name) {
            Some(Ok(stamp)) => {
                let program = info.path.as_deref().unwrap_or("another program");
                let source = format!("{name} {} (Go build info of {program}, a multi-call binary: {})", stamp.version, stamp.source);
                (Some(stamp.version), source)
            }
            Some(Err(why)) => (None, format!("version unknown: {why}")),
            None => read_own_version(name, &info),
        },
        Err(e) => (None, format!("version unknown: {e}")),
    }
}

/// The version a Go binary stamped for itself.
fn read_own_version(name: &str, info: &buildinfo::BuildInfo) -> (Option<String>, String) {
    match info.version() {
        Some(stamp) => {
            let source = format!("{name} {} (Go build info: {})", stamp.version, stamp.source);
            (Some(stamp.version), source)
        }
        None => {
            let trimpath = if info.setting("-trimpath") == Some("true") { ", built with -trimpath, which keeps -ldflags out of it" } else { "" };
            (None, format!("version unknown: its Go build info ({}{trimpath}) has no -X ...Version setting and no module version", info.go_version))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_real_answers() {
        for (line, want) in [
            ("containerd containerd.io 1.7.6 091922f03c2762540fd057fba91260237ff86acb", Some("1.7.6")),
            ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", Some("1.6.20~ds1")),
            ("containerd github.com/containerd/containerd/v2 v2.0.2 c507a0257ea6462fbd6f5ba4f5c74facb04021f4", Some("v2.0.2")),
            ("runc version 1.1.9", Some("1.1.9")),
            ("crictl version v1.28.0", Some("v1.28.0")),
            ("ctr github.com/containerd/containerd v1.7.6", Some("v1.7.6")),
            ("cri-dockerd 0.3.9 (c8fe1d3)", Some("0.3.9")),
            ("Docker version 24.0.7, build afdd53b", Some("24.0.7")),
            ("crio version 1.28.1", Some("1.28.1")),
            ("Kubernetes v1.30.2", Some("v1.30.2")),
            ("v1.30.2+k0s.0", Some("v1.30.2+k0s.0")),
            ("garbage", None),
            ("", None),
        ] {
            assert_eq!(version_in(line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn versions_are_read_never_run() {
        let dir = std::env::temp_dir().join(format!("nrm-binaries-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // A stand-in that would leave a mark if anything ran it.
        let script = dir.join("containerd");
        let mark = dir.join("ran");
        std::fs::write(&script, format!("#!/bin/sh\ntouch {}\necho 'containerd github.com/containerd/containerd v1.7.0'\n", mark.display())).expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = HostRoot::new(&dir);
        assert_eq!(read_version(&root, "containerd", Path::new("/containerd")), (None, "version unknown: not an ELF binary (a script, or another format)".into()));
        assert!(!mark.exists(), "the script ran");
        // A FIFO is not opened for reading (that would block), a link is followed inside the root only.
        let fifo = dir.join("runc");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0, "mkfifo");
        assert_eq!(read_version(&root, "runc", Path::new("/runc")), (None, "version unknown: not a regular file".into()));
        // The link names the script's path outside the root; inside the root there is none.
        std::os::unix::fs::symlink(&script, dir.join("ctr")).expect("symlink");
        let (version, source) = read_version(&root, "ctr", Path::new("/ctr"));
        assert_eq!(version, None);
        assert!(source.starts_with("version unknown: cannot open the file"), "{source}");
        assert_eq!(read_version(&root, "crictl", Path::new("/")).0, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_hosts_own_processes_say_how_the_node_is_configured() {
        let dir = std::env::temp_dir().join(format!("nrm-host-processes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let host_ns = "mnt:[4026531841]";
        let container = "0::/kubepods/burstable/pod5b9c2a7e-31d8-4f0c-9a6e-2b7d4c1f8e03/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        // pid, uid, cgroup, mount namespace: only 1 and 10 are the host's.
        for (pid, uid, cgroup, ns) in [
            (1, "0", "0::/init.scope", host_ns),
            (10, "0", "0::/system.slice/containerd.service", host_ns),
            (11, "1000", "0::/user.slice/user-1000.slice/session-3.scope", host_ns),
            (12, "0", container, host_ns),
            (13, "0", "0::/system.slice/containerd.service", "mnt:[4026532999]"),
        ] {
            let p = dir.join(format!("proc/{pid}"));
            std::fs::create_dir_all(p.join("ns")).expect("mkdir");
            std::fs::write(p.join("cmdline"), format!("/usr/bin/containerd\0--config\0/tmp/{pid}.toml\0")).expect("cmdline");
            std::fs::write(p.join("status"), format!("Name:\tcontainerd\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")).expect("status");
            std::fs::write(p.join("cgroup"), format!("{cgroup}\n")).expect("cgroup");
            std::os::unix::fs::symlink(ns, p.join("ns/mnt")).expect("ns");
        }
        let pids: Vec<u32> = processes(&HostRoot::new(&dir)).expect("a process view").iter().map(|p| p.pid).collect();
        assert_eq!(pids, [1, 10]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_fixture_nodes_versions() {
        let root = HostRoot::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nodes/incident2-kubekey-cri-dockerd"));
        let mut found = find(&root);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(read_versions(&root, &mut found, Duration::from_secs(5)));
        let of = |name: &str| found.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("{name}: {found:?}"));
        assert_eq!(of("cri-dockerd").version().as_deref(), Some("0.3.9"));
        assert_eq!(
            of("cri-dockerd").version_source.as_deref(),
            Some("cri-dockerd 0.3.9 (Go build info: -X github.com/Mirantis/cri-dockerd/cmd/version.Version)")
        );
        assert_eq!(of("kubelet").version().as_deref(), Some("v1.28.8"));
        assert_eq!(of("containerd").version().as_deref(), Some("v1.7.13"));
    }

    #[test]
    fn process_name() {
        let p = Process { pid: 1, argv: vec!["/usr/bin/kubelet".into(), "--v=2".into()] };
        assert_eq!(p.name(), "kubelet");
        assert_eq!(Process { pid: 2, argv: vec![] }.name(), "");
    }

    /// A k3s node as k3s's installer lays it out: `/usr/local/bin/k3s`, and `kubectl`, `crictl`,
    /// `ctr` linked to it (install.sh `create_symlinks`: `ln -sf k3s /usr/local/bin/${cmd}`).
    /// The binary's build info is what k3s-io/k3s `scripts/build` stamps (main package
    /// `./cmd/server`, VERSIONFLAGS with `-w -s`), the values of the form `scripts/version.sh`
    /// derives from go.mod (k3s's forks of containerd and cri-tools); an illustrative release.
    /// Each link is its own program with the version of what k3s runs under that name; the
    /// k3s release is k3s's only.
    #[test]
    fn a_k3s_multi_call_binary_and_its_links() {
        use crate::node::buildinfo::tests::{Elf, Format, elf, modinfo};
        let dir = std::env::temp_dir().join(format!("nrm-binaries-k3s-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/local/bin")).expect("mkdir");
        let k3s_ldflags = |crictl: bool| {
            let mut flags = vec![
                "-X github.com/k3s-io/k3s/pkg/version.Version=v1.33.1+k3s1",
                "-X github.com/k3s-io/k3s/pkg/version.GitCommit=99d91538",
                "-X k8s.io/client-go/pkg/version.gitVersion=v1.33.1+k3s1",
                "-X k8s.io/component-base/version.gitVersion=v1.33.1+k3s1",
                "-X k8s.io/component-base/version.gitTreeState=clean",
            ];
            if crictl {
                flags.push("-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.33.0-k3s1");
            }
            flags.extend([
                "-X github.com/containerd/containerd/v2/version.Version=v2.0.5-k3s1",
                "-X github.com/containerd/containerd/v2/version.Package=github.com/k3s-io/containerd/v2",
                "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v1.7.1-k3s1",
                "-X github.com/Mirantis/cri-dockerd/cmd/version.Version=v0.3.15-k3s1",
                "-w -s",
            ]);
            flags.join(" ")
        };
        let binary = |crictl: bool| {
            let info = modinfo("github.com/k3s-io/k3s/cmd/server", Some(("github.com/k3s-io/k3s", "(devel)")), &[("-ldflags", &k3s_ldflags(crictl))]);
            elf(&Elf::amd64("go1.24.2", info, Format::Inline))
        };
        std::fs::write(dir.join("usr/local/bin/k3s"), binary(true)).expect("k3s");
        for cmd in ["kubectl", "crictl", "ctr"] {
            std::os::unix::fs::symlink("k3s", dir.join("usr/local/bin").join(cmd)).expect("link");
        }
        let root = HostRoot::new(&dir);
        let mut found = find(&root);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(read_versions(&root, &mut found, Duration::from_secs(5)));
        let of = |name: &str| found.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("{name}: {found:?}"));
        assert_eq!(of("k3s").version().as_deref(), Some("v1.33.1+k3s1"));
        assert_eq!(of("ctr").version().as_deref(), Some("v2.0.5-k3s1"), "{:?}", of("ctr"));
        assert_eq!(of("ctr").path, Path::new("/usr/local/bin/ctr"));
        assert_eq!(
            of("ctr").version_source.as_deref(),
            Some("ctr v2.0.5-k3s1 (Go build info of github.com/k3s-io/k3s/cmd/server, a multi-call binary: -X github.com/containerd/containerd/v2/version.Version)")
        );
        assert_eq!(of("crictl").version().as_deref(), Some("v1.33.0-k3s1"));
        assert!(found.iter().all(|b| b.name != "kubelet"), "kubelet runs inside k3s, with no file of its own: {found:?}");
        // A build that stamps no crictl version: unknown, and why; never k3s's release.
        std::fs::write(dir.join("usr/local/bin/k3s"), binary(false)).expect("k3s");
        let (version, source) = read_version(&root, "crictl", Path::new("/usr/local/bin/crictl"));
        assert_eq!(version, None);
        assert!(source.starts_with("version unknown: the file is github.com/k3s-io/k3s/cmd/server, a program that runs crictl in itself"), "{source}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
