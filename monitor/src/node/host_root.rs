//! The node's filesystem seen from inside a host root (`--host-root /host`): host paths are
//! joined to the root and symlinks are resolved *inside* it (a host's `/var/run -> /run` must not
//! escape to the container's own `/run`). Files are read with a size limit, so a huge or special
//! file cannot stall the audit.
//!
//! Every open resolves the path in the kernel with `openat2(RESOLVE_IN_ROOT)` (Linux 5.6), or,
//! where the kernel or a seccomp profile refuses that call, by a walk that opens one component
//! at a time with `O_NOFOLLOW` below the directory it already holds: a link a workload swaps
//! along the path can point anywhere, the open stays inside the root.
//!
//! This module only reads; it never writes to the host and never follows a path out of the root.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    ffi::{CString, OsString},
    fs::File,
    io::Read,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::ffi::OsStrExt as _,
    },
    path::{Component, Path, PathBuf},
};

/// Files larger than this are not parsed (a configuration file is a few kilobytes).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Entries of one directory listed at most (a drop-in or manifest directory holds a handful; a
/// workload can fill one with millions).
pub const MAX_DIR_ENTRIES: usize = 4096;

/// Symlinks followed while resolving one path, as the kernel's own limit.
const MAX_LINK_HOPS: usize = 40;

/// Why a file of the node could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {limit} bytes, not parsed")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}: not read: this read of the node already read its budget of {budget} bytes")]
    OverBudget { path: PathBuf, budget: u64 },
}

impl FileError {
    /// The host path of the file (as the operator knows it, without the host root).
    pub fn path(&self) -> &Path {
        match self {
            FileError::Unreadable { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::NotText { path }
            | FileError::OverBudget { path, .. } => path,
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
    /// Bytes that reads through this value (and its clones) may still take, and the budget.
    budget: Option<(Arc<AtomicU64>, u64)>,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), budget: None }
    }

    /// The same root whose reads (this value's and its clones') take at most `bytes` in all:
    /// a node whose files a workload can grow (64 imports of 4 MiB) cannot make one read of
    /// it take more. A read past the budget fails with [`FileError::OverBudget`].
    pub fn with_read_budget(&self, bytes: u64) -> Self {
        Self { root: self.root.clone(), budget: Some((Arc::new(AtomicU64::new(bytes)), bytes)) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the host path `host_path` (absolute on the host) is in this process's view,
    /// with symlinks resolved inside the root. Paths that do not exist are joined as they are.
    /// A name only: opening it later follows whatever link is there then. Reads go through
    /// [`Self::open`]; this serves paths handed to other programs (inotify, logs).
    pub fn resolve(&self, host_path: &Path) -> PathBuf {
        let resolved = self.resolve_host_path(host_path);
        self.root.join(resolved.strip_prefix("/").unwrap_or(&resolved))
    }

    /// The host path with every symlink along it resolved inside the root (at most 40 hops). A
    /// link that cannot be read or one hop too many ends the walk at a name that cannot exist
    /// under the root (`/.unresolvable-link`), never at the link itself.
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
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    let target = std::fs::read_link(&in_root);
                    let Ok(target) = target.as_ref().map_err(|_| ()).and_then(|t| if hops > MAX_LINK_HOPS { Err(()) } else { Ok(t) }) else {
                        return PathBuf::from(UNRESOLVABLE);
                    };
                    if target.is_absolute() {
                        resolved = PathBuf::from("/");
                    }
                    let mut rest = walk_parts(target);
                    rest.extend(queue.drain(..));
                    queue = rest.into();
                }
                _ => resolved = candidate,
            }
        }
        resolved
    }

    /// Opens a host path inside the root (`flags` as for open(2); `O_CLOEXEC` is added).
    pub fn open(&self, host_path: &Path, flags: libc::c_int) -> std::io::Result<File> {
        match self.open_resolving(host_path, flags, Resolution::Kernel) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                self.open_resolving(host_path, flags, Resolution::Walk)
            }
            result => result,
        }
    }

    /// [`Self::open`] resolving the path one given way, whatever the kernel supports: for the
    /// `host_root` fuzz target, which checks that both ways agree. Everything else calls
    /// [`Self::open`].
    #[doc(hidden)]
    pub fn open_resolving(&self, host_path: &Path, flags: libc::c_int, resolution: Resolution) -> std::io::Result<File> {
        let root = open_dir_path(&self.root)?;
        match resolution {
            Resolution::Kernel => openat2_in_root(&root, &walk_parts(host_path).into_iter().collect::<PathBuf>(), flags),
            Resolution::Walk => walk_open(&root, host_path, flags),
        }
    }

    /// What is at a host path: links along it resolved inside the root, the last one too.
    pub fn metadata(&self, host_path: &Path) -> std::io::Result<std::fs::Metadata> {
        self.open(host_path, libc::O_PATH)?.metadata()
    }

    /// What is at a host path, the last component not followed if it is a link.
    pub fn symlink_metadata(&self, host_path: &Path) -> std::io::Result<std::fs::Metadata> {
        self.open(host_path, libc::O_PATH | libc::O_NOFOLLOW)?.metadata()
    }

    pub fn exists(&self, host_path: &Path) -> bool {
        self.symlink_metadata(host_path).is_ok()
    }

    /// Whether a host path is a regular file (links are not followed).
    pub fn is_regular_file(&self, host_path: &Path) -> bool {
        self.symlink_metadata(host_path).is_ok_and(|m| m.file_type().is_file())
    }

    /// A unix socket of the host, held open (`O_PATH`) so that connecting to
    /// [`HostSocket::path`] reaches the socket found inside the root, whatever is renamed
    /// meanwhile. `None` when there is no socket there.
    pub fn socket(&self, host_path: &Path) -> Option<HostSocket> {
        let file = self.open(host_path, libc::O_PATH).ok()?;
        let meta = file.metadata().ok()?;
        std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()).then_some(HostSocket { file })
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
        let unreadable = |source| FileError::Unreadable { path: host_path.to_path_buf(), source };
        // Without blocking on a FIFO or a device, and only a regular file is read: a workload
        // can put either where a configuration file is expected.
        let file = self.open(host_path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            let what = if meta.is_dir() { "is a directory" } else { "is not a regular file" };
            return Err(unreadable(std::io::Error::other(what)));
        }
        let remaining = self.budget.as_ref().map(|(left, _)| left.load(Ordering::Relaxed));
        let mut bytes = Vec::new();
        file.take(limit.min(remaining.unwrap_or(u64::MAX)).saturating_add(1)).read_to_end(&mut bytes).map_err(unreadable)?;
        let read = bytes.len() as u64;
        if let Some((left, budget)) = &self.budget {
            let _ = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(l.saturating_sub(read)));
            if remaining.is_some_and(|r| read > r) && read <= limit {
                return Err(FileError::OverBudget { path: host_path.to_path_buf(), budget: *budget });
            }
        }
        if read > limit {
            return Err(FileError::TooLarge { path: host_path.to_path_buf(), limit });
        }
        Ok(bytes)
    }

    /// Entries of a host directory (host paths), sorted; empty if it cannot be listed. At most
    /// [`MAX_DIR_ENTRIES`] are listed (see [`HostRoot::read_dir`] to tell why a listing is
    /// empty or short).
    pub fn list_dir(&self, host_dir: &Path) -> Vec<PathBuf> {
        self.read_dir(host_dir).map(|listing| listing.paths).unwrap_or_default()
    }

    /// Entries of a host directory (host paths), sorted, at most [`MAX_DIR_ENTRIES`] of them;
    /// an error when it cannot be listed (not there, not a directory, a link loop...).
    pub fn read_dir(&self, host_dir: &Path) -> Result<DirListing, FileError> {
        let unreadable = |source| FileError::Unreadable { path: host_dir.to_path_buf(), source };
        let dir = self.open(host_dir, libc::O_RDONLY | libc::O_DIRECTORY).map_err(unreadable)?;
        // The directory the walk opened, by its descriptor: not the name, which may be swapped.
        let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())).map_err(unreadable)?;
        let mut listing = DirListing::default();
        for entry in entries {
            if listing.paths.len() == MAX_DIR_ENTRIES {
                listing.truncated = true;
                break;
            }
            listing.paths.push(host_dir.join(entry.map_err(unreadable)?.file_name()));
        }
        listing.paths.sort();
        Ok(listing)
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

/// A directory's entries as [`HostRoot::read_dir`] lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirListing {
    /// Host paths, sorted.
    pub paths: Vec<PathBuf>,
    /// The directory holds more than [`MAX_DIR_ENTRIES`] entries: some are not listed.
    pub truncated: bool,
}

/// How [`HostRoot::open_resolving`] resolves a path inside the root.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// `openat2(RESOLVE_IN_ROOT)`: what [`HostRoot::open`] uses.
    Kernel,
    /// The `O_NOFOLLOW` walk [`HostRoot::open`] falls back to where the kernel (or a seccomp
    /// profile) refuses `openat2`.
    Walk,
}

/// The name [`HostRoot::resolve_host_path`] gives a path it cannot resolve.
const UNRESOLVABLE: &str = "/.unresolvable-link";

/// A host socket held open by [`HostRoot::socket`].
#[derive(Debug)]
pub struct HostSocket {
    file: File,
}

impl HostSocket {
    /// A path that reaches the held socket (its descriptor in `/proc/self/fd`), valid while
    /// this value lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_dir_path(path: &Path) -> std::io::Result<File> {
    let c = cstring(path)?;
    // SAFETY: a valid C string; the descriptor returned is owned by the File.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn openat(dir: &File, name: &Path, flags: libc::c_int) -> std::io::Result<File> {
    let c = cstring(name)?;
    // SAFETY: a valid directory descriptor and C string; the descriptor returned is owned by the File.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `openat2(root, relative, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
fn openat2_in_root(root: &File, relative: &Path, flags: libc::c_int) -> std::io::Result<File> {
    let c = cstring(if relative.as_os_str().is_empty() { Path::new(".") } else { relative })?;
    // SAFETY: open_how is plain data; all-zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root.as_raw_fd(), c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd as libc::c_int) })
}

/// `RESOLVE_IN_ROOT` done by hand: each component opened `O_NOFOLLOW` below the directory
/// already held (a stack of them: `..` pops, and never above the root); a link's target is
/// read from the directory holding it and walked in its place, an absolute one from the root.
fn walk_open(root: &File, host_path: &Path, flags: libc::c_int) -> std::io::Result<File> {
    let mut queue: std::collections::VecDeque<OsString> = walk_parts(host_path).into();
    let mut dirs: Vec<File> = vec![root.try_clone()?];
    let mut hops = 0;
    let too_many = || std::io::Error::from_raw_os_error(libc::ELOOP);
    while let Some(part) = queue.pop_front() {
        if part == ".." {
            if dirs.len() > 1 {
                dirs.pop();
            }
            continue;
        }
        // Only after a link's `dir/`: what came before was held as a directory, or refused.
        if part == "." {
            continue;
        }
        let here = dirs.last().expect("the root is never popped");
        let last = queue.is_empty();
        let name = Path::new(&part);
        let node = openat(here, name, libc::O_PATH | libc::O_NOFOLLOW)?;
        let meta = node.metadata()?;
        if meta.file_type().is_symlink() {
            if last && flags & libc::O_NOFOLLOW != 0 {
                return Ok(node);
            }
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return Err(too_many());
            }
            let target = readlinkat(here, name)?;
            if target.is_absolute() {
                dirs.truncate(1);
            }
            let mut rest: std::collections::VecDeque<OsString> = walk_parts(&target).into();
            // As the kernel reads `dir/` (and `dir/.`): what the link names must be a directory.
            if [&b"/"[..], b"/."].iter().any(|end| target.as_os_str().as_bytes().ends_with(end)) {
                rest.push_back(".".into());
            }
            rest.extend(queue.drain(..));
            queue = rest;
            continue;
        }
        if last {
            return openat(here, name, flags | libc::O_NOFOLLOW);
        }
        if !meta.is_dir() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        dirs.push(node);
    }
    // The path named a directory already held (the root, or one reached by `..`).
    let dir = dirs.last().expect("the root is never popped");
    openat(dir, Path::new("."), flags)
}

fn readlinkat(dir: &File, name: &Path) -> std::io::Result<PathBuf> {
    let c = cstring(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid descriptor, C string and buffer of the length passed.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(&buf))))
}

/// The components of a path to walk: names and `..` (the root and `.` say nothing).
fn walk_parts(path: &Path) -> Vec<OsString> {
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
        // A symlink loop ends instead of spinning, at a name that does not exist.
        std::os::unix::fs::symlink("/loop", dir.join("loop")).unwrap();
        assert_eq!(root.resolve_host_path(Path::new("/loop/x")), Path::new(UNRESOLVABLE));
        assert!(root.read_text(Path::new("/loop/x")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A root with a secret beside it (outside), and links that try to reach it.
    fn escape_fixture(name: &str) -> (PathBuf, HostRoot) {
        let base = std::env::temp_dir().join(format!("nrm-hostroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("root");
        std::fs::create_dir_all(dir.join("etc/containerd")).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::write(base.join("secret"), "outside").unwrap();
        std::fs::write(dir.join("run/inside"), "inside").unwrap();
        // Relative, climbing past the root; absolute, naming the outside path in full.
        std::os::unix::fs::symlink("../../../secret", dir.join("etc/containerd/config.toml")).unwrap();
        std::os::unix::fs::symlink(base.join("secret"), dir.join("etc/absolute")).unwrap();
        // A directory link swapped to the outside, with a file below it.
        std::os::unix::fs::symlink(&base, dir.join("etc/swapped")).unwrap();
        // A link chain longer than the kernel follows.
        for i in 0..45 {
            std::os::unix::fs::symlink(format!("/chain{}", i + 1), dir.join(format!("chain{i}"))).unwrap();
        }
        std::fs::write(dir.join("chain45"), "end").unwrap();
        (base, HostRoot::new(dir))
    }

    #[test]
    fn no_link_leads_out_of_the_root_with_openat2_or_the_walk() {
        let (base, root) = escape_fixture("escape");
        let outside = |r: std::io::Result<File>| {
            r.ok().and_then(|mut f| {
                let mut s = String::new();
                f.read_to_string(&mut s).ok().map(|_| s)
            })
        };
        let root_dir = open_dir_path(root.root()).unwrap();
        for path in ["/etc/containerd/config.toml", "/etc/absolute", "/etc/swapped/secret", "/../secret", "/chain0"] {
            let via_kernel = outside(openat2_in_root(&root_dir, &walk_parts(Path::new(path)).into_iter().collect::<PathBuf>(), libc::O_RDONLY));
            let via_walk = outside(walk_open(&root_dir, Path::new(path), libc::O_RDONLY));
            assert_ne!(via_kernel.as_deref(), Some("outside"), "{path} escaped through openat2");
            assert_ne!(via_walk.as_deref(), Some("outside"), "{path} escaped through the walk");
            assert_eq!(via_kernel.is_some(), via_walk.is_some(), "{path}: both ways agree");
            assert!(root.read_text(Path::new(path)).is_err(), "{path}");
        }
        // What is inside is read both ways, through links that stay inside.
        std::os::unix::fs::symlink("/run", root.root().join("var")).unwrap();
        assert_eq!(outside(walk_open(&root_dir, Path::new("/var/inside"), libc::O_RDONLY)).as_deref(), Some("inside"));
        assert_eq!(root.read_text(Path::new("/var/inside")).unwrap(), "inside");
        assert_eq!(walk_open(&root_dir, Path::new("/chain0"), libc::O_RDONLY).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        // Found by the `host_root` fuzz target: a link to `file/` names a directory, which a
        // file is not (ENOTDIR both ways); one to `dir/` reaches the directory.
        std::os::unix::fs::symlink("run/inside/", root.root().join("slashed")).unwrap();
        std::os::unix::fs::symlink("/run/.", root.root().join("slashed-dir")).unwrap();
        for resolution in [Resolution::Kernel, Resolution::Walk] {
            let err = root.open_resolving(Path::new("/slashed"), libc::O_PATH, resolution).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{resolution:?}");
            let dir = root.open_resolving(Path::new("/slashed-dir"), libc::O_PATH, resolution).unwrap();
            assert!(dir.metadata().unwrap().is_dir(), "{resolution:?}");
            let up = root.open_resolving(Path::new("/slashed-dir/.."), libc::O_PATH, resolution).unwrap();
            let ino = |f: &File| std::os::unix::fs::MetadataExt::ino(&f.metadata().unwrap());
            assert_eq!(ino(&up), ino(&root_dir), "{resolution:?}: `..` of /run is the root");
        }
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn reads_past_the_budget_fail_and_say_so() {
        let dir = std::env::temp_dir().join(format!("nrm-hostroot-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        for i in 0..4 {
            std::fs::write(dir.join(format!("etc/{i}.toml")), vec![b'#'; 1000]).unwrap();
        }
        let root = HostRoot::new(&dir).with_read_budget(2500);
        let clone = root.clone();
        assert!(root.read_text(Path::new("/etc/0.toml")).is_ok());
        assert!(clone.read_text(Path::new("/etc/1.toml")).is_ok(), "clones share the budget");
        let err = root.read_text(Path::new("/etc/2.toml")).unwrap_err();
        assert!(matches!(err, FileError::OverBudget { budget: 2500, .. }), "{err}");
        assert!(err.to_string().contains("budget of 2500 bytes"), "{err}");
        assert!(matches!(root.read_text(Path::new("/etc/3.toml")), Err(FileError::OverBudget { .. })));
        assert!(HostRoot::new(&dir).read_text(Path::new("/etc/3.toml")).is_ok(), "a new read of the node starts afresh");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn listing_a_huge_directory_stops_at_the_cap() {
        let dir = std::env::temp_dir().join(format!("nrm-hostroot-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/kubernetes/manifests")).unwrap();
        for i in 0..MAX_DIR_ENTRIES + 10 {
            std::fs::write(dir.join(format!("etc/kubernetes/manifests/{i}.yaml")), "").unwrap();
        }
        let root = HostRoot::new(&dir);
        assert_eq!(root.list_dir(Path::new("/etc/kubernetes/manifests")).len(), MAX_DIR_ENTRIES);
        assert!(root.read_dir(Path::new("/etc/kubernetes/manifests")).is_ok_and(|l| l.truncated));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_socket_is_reached_through_its_held_descriptor() {
        let dir = std::env::temp_dir().join(format!("nrm-hostroot-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("run/x.sock")).unwrap();
        std::fs::write(dir.join("run/plain"), "").unwrap();
        std::fs::create_dir_all(dir.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", dir.join("var/run")).unwrap();
        let root = HostRoot::new(&dir);
        let socket = root.socket(Path::new("/var/run/x.sock")).expect("a socket");
        std::os::unix::net::UnixStream::connect(socket.path()).expect("connect through /proc/self/fd");
        assert!(root.socket(Path::new("/run/plain")).is_none());
        assert!(root.socket(Path::new("/run/none.sock")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
