//! Finding tracefs, or mounting it: tracepoints are attached through its `events/` ids.
//! A node that booted without tracefs mounted (this machine kind does) still gets probes; a
//! DaemonSet mounts the host's /sys/kernel/tracing (or /sys/kernel/debug).

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it on {path} failed: {source}")]
    Mount { path: String, source: std::io::Error },
}

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn is_tracefs(path: &Path) -> bool {
    path.join("events").is_dir()
}

/// Where tracefs is, and whether we mounted it (then we unmount it when done? no: leaving it
/// mounted is harmless and other tools expect it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracefs {
    pub path: PathBuf,
    pub mounted_by_us: bool,
}

/// Finds a mounted tracefs, or mounts one on /sys/kernel/tracing.
pub fn find_or_mount() -> Result<Tracefs, TracefsError> {
    if let Some(path) = CANDIDATES.iter().map(Path::new).find(|p| is_tracefs(p)) {
        return Ok(Tracefs { path: path.to_path_buf(), mounted_by_us: false });
    }
    let target = CANDIDATES[0];
    let mount_err = |source| TracefsError::Mount { path: target.to_string(), source };
    let c_target = CString::new(target).map_err(|e| mount_err(std::io::Error::other(e)))?;
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(fstype.as_ptr(), c_target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(mount_err(std::io::Error::last_os_error()));
    }
    Ok(Tracefs { path: PathBuf::from(target), mounted_by_us: true })
}
