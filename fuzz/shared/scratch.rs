//! The scratch directory of a fuzz target that builds files (a host root, a cgroup tree):
//! `$NRM_FUZZ_SCRATCH` (`cargo xtask fuzz` gives each run one), else one per process under the
//! temp dir. Emptied when the target starts.

use std::path::PathBuf;

/// The empty scratch directory of target `name` (the caller creates what it needs in it).
pub fn fresh(name: &str) -> PathBuf {
    let dir = std::env::var_os("NRM_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("nrm-fuzz-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
