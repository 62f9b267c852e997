//! The node's filesystem seen from inside a host root (`--host-root /host`): host paths are
//! joined to the root and symlinks are resolved *inside* it (a host's `/var/run -> /run` must not
//! escape to the container's own `/run`). Files are read with a size limit, so a huge or special
//! file cannot stall the audit.
//!
//! This module only reads; it never writes to the host and never follows a path out of the root.

use std::{
    io::Read,
    os::unix::fs::OpenOptionsExt as _,
    path::{Component, Path, PathBuf},
};

/// Files larger than this are not parsed (a configuration file is a few kilobytes).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Why a file of the node could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {limit} bytes, not parsed")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
}

impl FileError {
    /// The host path of the file (as the operator knows it, without the host root).
    pub fn path(&self) -> &Path {
        match self {
            FileError::Unreadable { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::NotText { path } => path,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Unreadable { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A host root: `/` on the node itself, `/host` in the DaemonSet, a fixture directory in tests.
#[derive(Clone, Debug)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the host path `host_path` (absolute on the host) is in this process's view,
    /// with symlinks resolved inside the root. Paths that do not exist are joined as they are.
    pub fn resolve(&self, host_path: &Path) -> PathBuf {
        let resolved = self.resolve_host_path(host_path);
        self.root.join(resolved.strip_prefix("/").unwrap_or(&resolved))
    }

    /// The host path with every symlink along it resolved inside the root (at most 40 hops).
    pub fn resolve_host_path(&self, host_path: &Path) -> PathBuf {
        let mut queue: std::collections::VecDeque<std::ffi::OsString> = walk_parts(host_path).into();
        let mut resolved = PathBuf::from("/");
        let mut hops = 0;
        while let Some(part) = queue.pop_front() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&part);
            let in_root = self.root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
            match std::fs::symlink_metadata(&in_root) {
                Ok(meta) if meta.file_type().is_symlink() && hops < 40 => {
                    hops += 1;
                    let Ok(target) = std::fs::read_link(&in_root) else {
                        resolved = candidate;
                        continue;
                    };
                    if target.is_absolute() {
                        resolved = PathBuf::from("/");
                    }
                    let mut rest = walk_parts(&target);
                    rest.extend(queue.drain(..));
                    queue = rest.into();
                }
                _ => resolved = candidate,
            }
        }
        resolved
    }

    pub fn exists(&self, host_path: &Path) -> bool {
        std::fs::symlink_metadata(self.resolve(host_path)).is_ok()
    }

    /// Whether a host path is a regular file (links are not followed).
    pub fn is_regular_file(&self, host_path: &Path) -> bool {
        std::fs::symlink_metadata(self.resolve(host_path)).is_ok_and(|m| m.file_type().is_file())
    }

    /// Reads a text file of the host, at most `MAX_CONFIG_BYTES`.
    pub fn read_text(&self, host_path: &Path) -> Result<String, FileError> {
        self.read_text_limited(host_path, MAX_CONFIG_BYTES)
    }

    pub fn read_text_limited(&self, host_path: &Path, limit: u64) -> Result<String, FileError> {
        let bytes = self.read_bytes_limited(host_path, limit)?;
        String::from_utf8(bytes).map_err(|_| FileError::NotText { path: host_path.to_path_buf() })
    }

    pub fn read_bytes_limited(&self, host_path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
        let path = self.resolve(host_path);
        let unreadable = |source| FileError::Unreadable { path: host_path.to_path_buf(), source };
        // Without blocking on a FIFO or a device, and only a regular file is read: a workload
        // can put either where a configuration file is expected.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            let what = if meta.is_dir() { "is a directory" } else { "is not a regular file" };
            return Err(unreadable(std::io::Error::other(what)));
        }
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > limit {
            return Err(FileError::TooLarge { path: host_path.to_path_buf(), limit });
        }
        Ok(bytes)
    }

    /// Entries of a host directory (host paths), sorted; empty if it does not exist.
    pub fn list_dir(&self, host_dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.resolve(host_dir)) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| host_dir.join(e.file_name())).collect();
        out.sort();
        out
    }

    /// Host files matching a pattern whose last component may hold `*` wildcards
    /// (containerd `imports`, systemd drop-in directories).
    pub fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains('*') {
            return if self.exists(pattern) { vec![pattern.to_path_buf()] } else { Vec::new() };
        }
        let dir = pattern.parent().unwrap_or(Path::new("/"));
        self.list_dir(dir)
            .into_iter()
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| wildcard_match(name, n)))
            .collect()
    }
}

/// The components of a path to walk: names and `..` (the root and `.` say nothing).
fn walk_parts(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else { return false };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// 1-based line number of a byte offset in `text`.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard() {
        for (p, n, want) in [
            ("*.toml", "10-runtime.toml", true),
            ("*.toml", "10-runtime.toml.bak", false),
            ("runtime_*.toml", "runtime_nvidia.toml", true),
            ("runtime_*.toml", "other.toml", false),
            ("config.toml", "config.toml", true),
            ("*", "anything", true),
        ] {
            assert_eq!(wildcard_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("nrm-hostroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run/containerd")).unwrap();
        std::fs::create_dir_all(dir.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", dir.join("var/run")).unwrap();
        std::fs::write(dir.join("run/containerd/x"), "hello").unwrap();
        let root = HostRoot::new(&dir);
        assert_eq!(root.resolve_host_path(Path::new("/var/run/containerd/x")), Path::new("/run/containerd/x"));
        assert_eq!(root.read_text(Path::new("/var/run/containerd/x")).unwrap(), "hello");
        // A FIFO is refused, not waited on.
        let fifo = std::ffi::CString::new(dir.join("run/fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = root.read_text(Path::new("/run/fifo")).unwrap_err();
        assert!(err.to_string().contains("is not a regular file"), "{err}");
        // A symlink loop ends instead of spinning.
        std::os::unix::fs::symlink("/loop", dir.join("loop")).unwrap();
        let _ = root.resolve_host_path(Path::new("/loop/x"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
