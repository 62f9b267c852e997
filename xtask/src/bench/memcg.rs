//! The v1 memory cgroup the OOM storm's victims join (16 MiB, no swap): made when the bench
//! starts, read for its OOM-kill count around each run, removed when dropped. It fills no
//! memory and kills nothing (the OOM workers in workload.rs do), and it does not support
//! cgroup v2: without the v1 memory controller the bench refuses to start.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

/// The v1 memory cgroup the OOM storm's victims join.
pub(super) struct Memcg {
    pub(super) path: PathBuf,
}

impl Memcg {
    const LIMIT: u64 = 16 << 20;

    pub(super) fn create() -> anyhow::Result<Self> {
        let mount = PathBuf::from("/sys/fs/cgroup/memory");
        if !mount.join("memory.limit_in_bytes").exists() {
            bail!("no v1 memory controller at {}: the OOM storm needs one", mount.display());
        }
        let path = mount.join(format!("nrm-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        std::fs::write(path.join("memory.limit_in_bytes"), Self::LIMIT.to_string())?;
        let _ = std::fs::write(path.join("memory.swappiness"), "0");
        Ok(Self { path })
    }

    pub(super) fn oom_kills(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path.join("memory.oom_control")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
