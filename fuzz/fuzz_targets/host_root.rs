//! The host root on hostile trees: `node::host_root::HostRoot` over a small tree the input
//! builds in a scratch directory (directories, files, symlinks absolute and relative, climbing
//! with `..`, looping, to the real path of a file outside the root; FIFOs, sockets, a character
//! device), then paths the input names opened with each flag set the crate uses, both through
//! `openat2(RESOLVE_IN_ROOT)` and through the `O_NOFOLLOW` walk `open` falls back to.
//! Properties: both ways agree (the same file by device and inode, or both refuse); nothing
//! opened is outside the root (its `/proc/self/fd` link starts with the root, and it is none of
//! the root's ancestors nor the files beside it); a bounded read returns only a regular file.
#![no_main]

use std::{
    collections::HashSet,
    ffi::CString,
    fs::File,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _, io::AsRawFd as _},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use monitor::node::host_root::{HostRoot, Resolution};

#[path = "../shared/scratch.rs"]
mod scratch;

/// The scratch directory: `root/` (rebuilt for every input) and `outside/` beside it.
struct Scratch {
    root: PathBuf,
    /// The root as `/proc/self/fd` links name what is below it.
    canonical_root: PathBuf,
    /// What must never be opened: the root's ancestors and the files beside it.
    outside: HashSet<(u64, u64)>,
    secret: PathBuf,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let base = scratch::fresh("host-root");
        std::fs::create_dir_all(base.join("outside/dir")).expect("scratch");
        let secret = base.join("outside/secret");
        std::fs::write(&secret, "outside").expect("scratch");
        let root = base.join("root");
        std::fs::create_dir_all(&root).expect("scratch");
        let canonical_root = std::fs::canonicalize(&root).expect("canonical root");
        let mut outside = HashSet::new();
        for p in [base.join("outside"), base.join("outside/dir"), secret.clone()].iter().chain(canonical_root.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>().iter()) {
            let m = std::fs::metadata(p).expect("stat");
            outside.insert((m.dev(), m.ino()));
        }
        Scratch { root, canonical_root, outside, secret }
    })
}

const NAMES: [&str; 8] = ["etc", "run", "var", "a", "b", "containerd.sock", "config.toml", "outside"];

fn name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? {
        return Ok(u.choose(&NAMES)?.to_string());
    }
    let len = u.int_in_range(1..=6)?;
    let mut s = String::new();
    for _ in 0..len {
        s.push(*u.choose(&['a', 'b', '.', '-', '_', 'z', '1'])?);
    }
    Ok(if s == "." || s == ".." { "dot".into() } else { s })
}

/// A path made of names, `..` and `.`, absolute or relative, or the real path of the secret
/// beside the root.
fn path(u: &mut Unstructured, outside: &Path) -> Result<String> {
    if u.ratio(1, 16)? {
        return Ok(outside.display().to_string());
    }
    let mut s = if u.ratio(1, 2)? { "/".to_string() } else { String::new() };
    for i in 0..u.int_in_range(0..=5)? {
        if i > 0 {
            s.push('/');
        }
        match u.int_in_range(0..=5)? {
            0 => s.push_str(".."),
            1 => s.push('.'),
            _ => s.push_str(&name(u)?),
        }
    }
    if u.ratio(1, 8)? {
        s.push('/');
    }
    Ok(s)
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return };
    // SAFETY: a valid C string; the result is only a file created or not.
    unsafe { libc::mknod(c.as_ptr(), mode, dev) };
}

/// Builds the input's tree under the root (entries whose parent is missing are skipped).
fn build(u: &mut Unstructured, s: &Scratch) -> Result<()> {
    let mut dirs = vec![s.root.clone()];
    for _ in 0..u.int_in_range(0..=24)? {
        let parent = dirs[u.choose_index(dirs.len())?].clone();
        let at = parent.join(name(u)?);
        match u.int_in_range(0..=9)? {
            0 | 1 => {
                if std::fs::create_dir(&at).is_ok() {
                    dirs.push(at);
                }
            }
            // Never through what is there already (a link out of the root, a FIFO).
            2 => {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).create_new(true).open(&at) {
                    std::io::Write::write_all(&mut f, b"inside").expect("write a file of the tree");
                }
            }
            3..=6 => drop(std::os::unix::fs::symlink(path(u, &s.secret)?, &at)),
            7 => mknod(&at, libc::S_IFIFO | 0o600, 0),
            8 => drop(std::os::unix::net::UnixListener::bind(&at)),
            _ => mknod(&at, libc::S_IFCHR | 0o600, libc::makedev(1, 3)),
        }
    }
    Ok(())
}

/// The flag sets `HostRoot` opens with.
const FLAGS: [libc::c_int; 4] = [
    libc::O_PATH,
    libc::O_PATH | libc::O_NOFOLLOW,
    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
    libc::O_RDONLY | libc::O_DIRECTORY,
];

/// What was opened (device and inode), checked to be inside the root.
fn opened(file: &File, s: &Scratch, how: &str, host_path: &str) -> (u64, u64) {
    let m = file.metadata().expect("fstat of an open file");
    let id = (m.dev(), m.ino());
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("the fd's link");
    assert!(link.starts_with(&s.canonical_root), "{how} opened {host_path:?} outside the root: {}", link.display());
    assert!(!s.outside.contains(&id), "{how} opened {host_path:?}: a file outside the root ({})", link.display());
    id
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    assert_eq!(std::fs::read(&s.secret).expect("the secret beside the root"), b"outside", "the file beside the root was written");
    let mut u = Unstructured::new(data);
    let _ = std::fs::remove_dir_all(&s.root);
    std::fs::create_dir(&s.root).expect("scratch root");
    if build(&mut u, s).is_err() {
        return;
    }
    let root = HostRoot::new(&s.root);
    for _ in 0..8 {
        let (Ok(host_path), Ok(flags)) = (path(&mut u, &s.secret), u.choose(&FLAGS).copied()) else { break };
        let p = Path::new(&host_path);
        let kernel = root.open_resolving(p, flags, Resolution::Kernel).map(|f| opened(&f, s, "openat2", &host_path));
        let walk = root.open_resolving(p, flags, Resolution::Walk).map(|f| opened(&f, s, "the walk", &host_path));
        match (&kernel, &walk) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{host_path:?} (flags {flags:#x}): openat2 and the walk opened different files"),
            (Err(_), Err(_)) => {}
            _ => panic!("{host_path:?} (flags {flags:#x}): openat2 says {kernel:?}, the walk {walk:?}"),
        }
        // A bounded read takes a regular file only (never a FIFO, a socket or a device).
        if let Ok(bytes) = root.read_bytes_limited(p, 64) {
            let m = root.metadata(p).expect("what was read exists");
            assert!(m.is_file(), "{host_path:?}: read {} bytes of a {:?}", bytes.len(), m.file_type());
            assert_eq!(bytes, b"inside", "{host_path:?}: only the tree's own files are read");
        }
    }
});
