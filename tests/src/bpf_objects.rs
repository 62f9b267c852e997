//! The kernel's own view of BPF programs, independent of the daemon: which programs a process
//! holds, whether the kernel still has one, and a reference a test can hold on purpose.
//!
//! The kernel frees a program after its last reference is dropped *and* an RCU grace period
//! has passed, so "gone" is observed a little after the owner exits: checks here wait for it
//! with a deadline instead of looking once.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

/// Ids of the BPF programs whose fds process `pid` holds (from /proc/PID/fdinfo).
pub fn programs_held_by(pid: u32) -> Vec<u64> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids: Vec<u64> = std::fs::read_dir(&dir)
        .expect("read fdinfo")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok())))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether the kernel still has program `id` (bpftool asks the kernel, independently of us).
pub fn program_exists(id: u64) -> bool {
    Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]).output().is_ok_and(|o| o.status.success())
}

/// The programs of `ids` the kernel still has after waiting up to `limit` for it to free them
/// (empty when all were freed in time).
pub fn still_loaded_after(ids: &[u64], limit: Duration) -> Vec<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u64> = ids.iter().copied().filter(|id| program_exists(*id)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A reference to program `id` (`BPF_PROG_GET_FD_BY_ID`): while it is held the kernel keeps
/// the program, whatever its loader does. Tests use it to prove a "no program left" check can
/// fail.
pub fn hold_program(id: u64) -> OwnedFd {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    /// The `union bpf_attr` member of the *_GET_FD_BY_ID commands.
    #[repr(C)]
    struct GetFdById {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let attr = GetFdById { id: u32::try_from(id).expect("program ids are u32"), next_id: 0, open_flags: 0 };
    // SAFETY: bpf(2) reads `size` bytes of `attr`, which lives across the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, &attr as *const GetFdById, std::mem::size_of::<GetFdById>())
    };
    assert!(fd >= 0, "BPF_PROG_GET_FD_BY_ID {id}: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}
