//! A runtime daemon's command line as it is (or will be) in force: the running process's
//! arguments, else what its systemd unit would start (`ExecStart=` of the unit and its
//! drop-ins, `$VAR` words expanded from `Environment=` and `EnvironmentFile=`). CRI-O, dockerd
//! and cri-dockerd take the settings the audit compares with kubelet (`--cgroup-manager`,
//! `--exec-opt`, `--pod-infra-container-image`, `--config`) from here as well as from files.
//!
//! Only reads; values may be secrets, like kubelet's flags (shown through
//! `kubelet::is_sensitive_flag`).

use std::path::PathBuf;

use super::{
    binaries::Process,
    host_root::HostRoot,
    kubelet::{self, Flag},
    systemd_unit::ServiceUnit,
};

/// A daemon's flags and the files they came from.
#[derive(Debug, Clone, Default)]
pub struct DaemonArgs {
    /// In order; the last occurrence of a name wins (see [`DaemonArgs::flag`]).
    pub flags: Vec<Flag>,
    /// Unit and env files read (for watching); empty when the flags are the running process's.
    pub sources: Vec<PathBuf>,
}

impl DaemonArgs {
    /// The running process named `binary`, else the first of `units` found under the unit
    /// directories (with its drop-ins).
    pub fn load(root: &HostRoot, processes: &[Process], binary: &str, units: &[&str]) -> Self {
        if let Some(p) = processes.iter().find(|p| p.name() == binary) {
            return Self { flags: kubelet::parse_args(&p.argv[1..], &format!("/proc/{}/cmdline", p.pid)), sources: Vec::new() };
        }
        units.iter().map(|u| from_unit(root, u)).find(|a| !a.sources.is_empty()).unwrap_or_default()
    }

    /// The last value of a flag given under any of `names` (`config-file`, or `c` / `config`).
    pub fn flag(&self, names: &[&str]) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| names.contains(&f.name.as_str()))
    }

    /// Every value of a repeatable flag (`--exec-opt a --exec-opt b`), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Flag> {
        self.flags.iter().filter(move |f| f.name == name)
    }
}

/// What systemd would start for `unit` (its unit file, drop-ins and environment, as
/// [`ServiceUnit`] reads them), as flags.
fn from_unit(root: &HostRoot, unit: &str) -> DaemonArgs {
    let Some(mut unit) = ServiceUnit::load(root, unit) else { return DaemonArgs::default() };
    let flags = unit
        .main_command()
        .map(|c| kubelet::parse_words(c.args.iter().map(|w| (w.text.as_str(), w.origin.as_str()))))
        .unwrap_or_default();
    DaemonArgs { flags, sources: std::mem::take(&mut unit.files) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, files: &[(&str, &str)]) -> (PathBuf, HostRoot) {
        let dir = std::env::temp_dir().join(format!("nrm-daemon-args-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        (dir.clone(), HostRoot::new(dir))
    }

    #[test]
    fn unit_exec_start_with_env_file_and_drop_in() {
        // CRI-O's own unit (contrib/systemd/crio.service): flags come from /etc/sysconfig/crio.
        let (dir, root) = node("crio", &[
            ("/usr/lib/systemd/system/crio.service", "[Service]\nEnvironmentFile=-/etc/sysconfig/crio\nExecStart=/usr/local/bin/crio \\\n          $CRIO_CONFIG_OPTIONS \\\n          $CRIO_RUNTIME_OPTIONS\n"),
            ("/etc/sysconfig/crio", "CRIO_CONFIG_OPTIONS=\"--config-dir=/etc/crio/custom.d\"\nCRIO_RUNTIME_OPTIONS=\"--cgroup-manager cgroupfs\"\n"),
        ]);
        let args = DaemonArgs::load(&root, &[], "crio", &["crio.service"]);
        assert_eq!(args.flag(&["config-dir", "d"]).map(|f| (f.value.as_str(), f.source.as_str())), Some(("/etc/crio/custom.d", "/etc/sysconfig/crio:1")));
        assert_eq!(args.flag(&["cgroup-manager"]).map(|f| f.value.as_str()), Some("cgroupfs"));
        let _ = std::fs::remove_dir_all(dir);

        // A drop-in replacing docker.service's ExecStart (the usual way to add --exec-opt).
        let (dir, root) = node("docker", &[
            ("/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n"),
            ("/etc/systemd/system/docker.service.d/10-cgroup.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// --exec-opt native.cgroupdriver=systemd\n"),
        ]);
        let args = DaemonArgs::load(&root, &[], "dockerd", &["docker.service"]);
        let opts: Vec<(&str, &str)> = args.values("exec-opt").map(|f| (f.value.as_str(), f.source.as_str())).collect();
        assert_eq!(opts, [("native.cgroupdriver=systemd", "/etc/systemd/system/docker.service.d/10-cgroup.conf:3")]);
        assert!(args.flag(&["containerd"]).is_none(), "the reset dropped the unit's ExecStart");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_running_process_wins_over_its_unit() {
        let (dir, root) = node("cri-dockerd", &[("/etc/systemd/system/cri-docker.service", "[Service]\nExecStart=/usr/bin/cri-dockerd --pod-infra-container-image=unit/pause:1\n")]);
        let running = Process { pid: 42, argv: vec!["/usr/bin/cri-dockerd".into(), "--pod-infra-container-image".into(), "proc/pause:2".into()] };
        let args = DaemonArgs::load(&root, &[running], "cri-dockerd", &["cri-docker.service"]);
        assert_eq!(args.flag(&["pod-infra-container-image"]).map(|f| (f.value.as_str(), f.source.as_str())), Some(("proc/pause:2", "/proc/42/cmdline")));
        let unit = DaemonArgs::load(&root, &[], "cri-dockerd", &["cri-docker.service"]);
        assert_eq!(unit.flag(&["pod-infra-container-image"]).map(|f| f.source.as_str()), Some("/etc/systemd/system/cri-docker.service:2"));
        assert!(DaemonArgs::load(&root, &[], "crio", &["crio.service"]).flags.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
