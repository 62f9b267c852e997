//! Runtime binaries on the node (every runtime's daemons and tools in `runtimes`, the OCI
//! runtimes, crictl, kubelet): every copy on the PATH and in installer caches (kOps nodeup's
//! `/var/cache/nodeup/extracted/...`), each with its `--version` answer; and the node's
//! running processes from `<host-root>/proc/*/cmdline`.
//!
//! Copies reached through symlinks (`/bin -> usr/bin`) count once. A version is asked by
//! running the binary with a timeout; a binary that cannot run has no version, which is not an
//! error. Nothing here judges whether a binary should be there.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{host_root::HostRoot, runtimes};

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

/// Processes from `<host-root>/proc/*/cmdline` (kernel threads, with an empty cmdline, left out).
/// `None` when the host root has no process view (no `/proc` with numeric entries).
pub fn processes(root: &HostRoot) -> Option<Vec<Process>> {
    let dir = std::fs::read_dir(root.root().join("proc")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        any = true;
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
    /// First line of `--version`, if it answered.
    pub version_output: Option<String>,
}

impl Binary {
    /// The version number in the `--version` answer (`1.7.6`, `v1.28.0`, `0.3.9`).
    pub fn version(&self) -> Option<String> {
        self.version_output.as_deref().and_then(version_in)
    }
}

/// The first version-looking word of a `--version` line:
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
            let Ok(meta) = std::fs::metadata(root.resolve(&path)) else { continue };
            if !meta.is_file() || !seen.insert(resolved) {
                continue;
            }
            out.push(Binary { name: name.into(), path, location: Location::Path, version_output: None });
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
        let Ok(meta) = std::fs::symlink_metadata(root.resolve(&entry)) else { continue };
        if meta.is_dir() {
            walk_cache(root, &entry, names, depth + 1, out);
        } else if let Some(name) = entry.file_name().and_then(|n| n.to_str()).filter(|n| names.contains(n)) {
            out.push(Binary {
                name: name.into(),
                path: entry.clone(),
                location: Location::InstallerCache,
                version_output: None,
            });
        }
    }
}

/// Asks every installed copy for its version, all at once, each bounded by `timeout`.
pub async fn ask_versions(root: &HostRoot, binaries: &mut [Binary], timeout: Duration) {
    let mut tasks = Vec::new();
    for (i, b) in binaries.iter().enumerate() {
        if b.location != Location::Path {
            continue;
        }
        let exe = root.resolve(&b.path);
        let arg = if b.name == "k0s" { "version" } else { "--version" };
        tasks.push((i, tokio::spawn(async move { run_version(&exe, arg, timeout).await })));
    }
    for (i, task) in tasks {
        if let Ok(answer) = task.await {
            binaries[i].version_output = answer;
        }
    }
}

async fn run_version(exe: &Path, arg: &str, timeout: Duration) -> Option<String> {
    let child = tokio::process::Command::new(exe)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let output = tokio::time::timeout(timeout, child.wait_with_output()).await.ok()?.ok()?;
    // cri-dockerd prints its version on stderr.
    let text = if output.stdout.iter().any(|b| !b.is_ascii_whitespace()) { output.stdout } else { output.stderr };
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    text.lines().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(200).collect())
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
    fn process_name() {
        let p = Process { pid: 1, argv: vec!["/usr/bin/kubelet".into(), "--v=2".into()] };
        assert_eq!(p.name(), "kubelet");
        assert_eq!(Process { pid: 2, argv: vec![] }.name(), "");
    }
}
