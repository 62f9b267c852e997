//! Docker's settings that kubelet depends on when it runs pods through cri-dockerd (or the
//! dockershim of kubelet < 1.24): dockerd's cgroup driver (`exec-opts`
//! `native.cgroupdriver=...` in `/etc/docker/daemon.json` or `--config-file`, or `--exec-opt`
//! on its command line, else its default for the host) and cri-dockerd's sandbox image
//! (`--pod-infra-container-image`, else its release's default). cri-dockerd takes its cgroup
//! driver from dockerd (`docker info`), so dockerd's is the pods'.
//!
//! dockerd refuses to start when a setting is given both as a flag and in the file ("the
//! following directives are specified both as a flag and in the configuration file"), so at
//! most one of the two applies; the flag is looked at first. It does not judge.

use std::path::{Path, PathBuf};

use super::{
    containerd_config::{Release, Setting},
    daemon_args::DaemonArgs,
    host_root::{FileError, HostRoot},
    parse_error,
};

/// dockerd's `--config-file` default.
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Why `daemon.json` is unusable: unreadable, or not JSON (dockerd then refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum DaemonJsonProblem {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}:{line}: not valid JSON: {message}", path = path.display())]
    Syntax { path: PathBuf, line: usize, message: String },
}

/// `daemon.json`, parsed.
#[derive(Debug, Clone)]
pub struct DaemonJson {
    pub path: PathBuf,
    pub text: String,
    pub value: serde_json::Value,
}

/// What the cgroup default of dockerd depends on: the host's cgroup hierarchy and its init.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCgroups {
    /// `/sys/fs/cgroup` is the unified (v2) hierarchy; `None`: not readable under the host root.
    pub unified: Option<bool>,
    /// systemd is the init (`/run/systemd/system` is a directory, as `sd_booted(3)` checks).
    pub systemd_booted: bool,
}

impl HostCgroups {
    pub fn read(root: &HostRoot) -> Self {
        let cgroup = Path::new("/sys/fs/cgroup");
        let unified = root.exists(cgroup).then(|| root.exists(&cgroup.join("cgroup.controllers")));
        let systemd_booted = root.metadata(Path::new("/run/systemd/system")).is_ok_and(|m| m.is_dir());
        Self { unified, systemd_booted }
    }
}

/// dockerd's and cri-dockerd's configuration.
#[derive(Debug, Default)]
pub struct DockerConfig {
    pub daemon_json: Option<DaemonJson>,
    pub problems: Vec<DaemonJsonProblem>,
    /// dockerd's command line (running process, else `docker.service`).
    pub dockerd: DaemonArgs,
    /// cri-dockerd's command line (running process, else `cri-docker.service`).
    pub cri_dockerd: DaemonArgs,
}

impl DockerConfig {
    pub fn load(root: &HostRoot, dockerd: DaemonArgs, cri_dockerd: DaemonArgs) -> Self {
        let path = dockerd.flag(&["config-file"]).map(|f| PathBuf::from(&f.value)).unwrap_or_else(|| DEFAULT_DAEMON_JSON.into());
        let mut config = DockerConfig { dockerd, cri_dockerd, ..Default::default() };
        match root.read_text(&path) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) => config.daemon_json = Some(DaemonJson { path, text, value }),
                Err(err) => config.problems.push(DaemonJsonProblem::Syntax {
                    path,
                    line: err.line(),
                    message: parse_error::scrub(err.to_string().split(" at line ").next().unwrap_or("invalid JSON")),
                }),
            },
            Err(err) if err.is_not_found() => {}
            Err(err) => config.problems.push(err.into()),
        }
        config
    }

    /// Whether anything says Docker is configured here.
    pub fn is_present(&self) -> bool {
        self.daemon_json.is_some() || !self.problems.is_empty() || !self.dockerd.flags.is_empty()
    }

    /// dockerd's cgroup driver: `native.cgroupdriver` from `--exec-opt`, else from `exec-opts`
    /// of daemon.json (the first one given, as dockerd's `getCD` / `GetExecOpt` read it,
    /// key compared case-insensitively), else [`default_cgroup_driver`].
    pub fn cgroup_driver(&self, release: Option<Release>, host: HostCgroups) -> Setting<String> {
        let from_flags = self.dockerd.values("exec-opt").find_map(|f| {
            cgroup_driver_opt(&f.value).map(|v| Setting { value: v, source: Some(f.source.clone()) })
        });
        let from_file = || {
            let json = self.daemon_json.as_ref()?;
            let opts = json.value.get("exec-opts")?.as_array()?;
            let value = opts.iter().filter_map(|o| o.as_str()).find_map(cgroup_driver_opt)?;
            let line = json.text.lines().position(|l| l.to_ascii_lowercase().contains("native.cgroupdriver"));
            let source = match line {
                Some(i) => format!("{}:{}", json.path.display(), i + 1),
                None => json.path.display().to_string(),
            };
            Some(Setting { value, source: Some(source) })
        };
        from_flags.or_else(from_file).unwrap_or_else(|| Setting::default_value(default_cgroup_driver(release, host).to_string()))
    }

    /// cri-dockerd's sandbox image: `--pod-infra-container-image`, else its release's default.
    pub fn cri_dockerd_sandbox_image(&self, release: Option<Release>) -> Setting<String> {
        match self.cri_dockerd.flag(&["pod-infra-container-image"]) {
            Some(f) => Setting { value: f.value.clone(), source: Some(f.source.clone()) },
            None => Setting::default_value(default_cri_dockerd_sandbox_image(release).to_string()),
        }
    }

    /// Files to watch.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.daemon_json.iter().map(|j| j.path.clone()).collect();
        out.push(DEFAULT_DAEMON_JSON.into());
        out.extend(self.dockerd.sources.iter().chain(&self.cri_dockerd.sources).cloned());
        out
    }
}

/// `native.cgroupdriver=systemd` -> `systemd`.
fn cgroup_driver_opt(opt: &str) -> Option<String> {
    let (key, value) = opt.split_once('=')?;
    key.trim().eq_ignore_ascii_case("native.cgroupdriver").then(|| value.trim().to_string())
}

/// dockerd's cgroup driver when none is set: `systemd` on a cgroup v2 host booted with systemd
/// since Docker 20.10, `cgroupfs` otherwise (moby `daemon/daemon_unix.go`: v19.03 `UsingSystemd`
/// is only the explicit option; v20.10 adds "On cgroup v2 hosts, default to systemd driver":
/// `cgroups.Mode() == cgroups.Unified && IsRunningSystemd()`; unchanged in v28's
/// `cgroupDriver`). A host whose hierarchy is unknown is taken as v1. Unknown release: 20.10+.
pub fn default_cgroup_driver(release: Option<Release>, host: HostCgroups) -> &'static str {
    let v2_default = release.is_none_or(|r| r >= Release { major: 20, minor: 10, patch: 0 });
    if v2_default && host.unified == Some(true) && host.systemd_booted { "systemd" } else { "cgroupfs" }
}

/// cri-dockerd's `--pod-infra-container-image` default by release (Mirantis/cri-dockerd
/// `cmd/cri/options/options.go` at each tag: `k8s.gcr.io/pause:3.1` in 0.2.0, 3.6 from 0.2.1,
/// `registry.k8s.io/pause:3.6` from 0.2.6, 3.9 from 0.3.10, 3.10 from 0.3.17). Unknown
/// release: the newest.
pub fn default_cri_dockerd_sandbox_image(release: Option<Release>) -> &'static str {
    let Some(r) = release else { return "registry.k8s.io/pause:3.10" };
    let at = |minor, patch| Release { major: 0, minor, patch };
    if r < at(2, 1) {
        "k8s.gcr.io/pause:3.1"
    } else if r < at(2, 6) {
        "k8s.gcr.io/pause:3.6"
    } else if r < at(3, 10) {
        "registry.k8s.io/pause:3.6"
    } else if r < at(3, 17) {
        "registry.k8s.io/pause:3.9"
    } else {
        "registry.k8s.io/pause:3.10"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::parse_args;

    fn rel(s: &str) -> Option<Release> {
        Release::parse(s)
    }

    const V2_SYSTEMD: HostCgroups = HostCgroups { unified: Some(true), systemd_booted: true };
    const V1_SYSTEMD: HostCgroups = HostCgroups { unified: Some(false), systemd_booted: true };

    fn with_json(text: &str) -> DockerConfig {
        let value = serde_json::from_str(text).unwrap();
        DockerConfig { daemon_json: Some(DaemonJson { path: DEFAULT_DAEMON_JSON.into(), text: text.into(), value }), ..Default::default() }
    }

    #[test]
    fn dockerd_default_cgroup_driver_per_release_and_host() {
        let none = DockerConfig::default();
        for (release, host, want) in [
            ("19.03.15", V2_SYSTEMD, "cgroupfs"),
            ("20.10.0", V2_SYSTEMD, "systemd"),
            ("24.0.7", V1_SYSTEMD, "cgroupfs"),
            ("24.0.7", HostCgroups { unified: Some(true), systemd_booted: false }, "cgroupfs"),
            ("27.3.1", HostCgroups { unified: None, systemd_booted: true }, "cgroupfs"),
        ] {
            let setting = none.cgroup_driver(rel(release), host);
            assert_eq!(setting, Setting { value: want.to_string(), source: None }, "{release} {host:?}");
        }
    }

    #[test]
    fn exec_opts_from_daemon_json_and_flags() {
        // The daemon.json Kubernetes' container runtime docs (and kubeadm guides) have operators write.
        let json = "{\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"],\n  \"log-driver\": \"json-file\",\n  \"storage-driver\": \"overlay2\"\n}\n";
        let config = with_json(json);
        assert_eq!(config.cgroup_driver(rel("24.0.7"), V1_SYSTEMD), Setting { value: "systemd".into(), source: Some("/etc/docker/daemon.json:2".into()) });
        let mut config = with_json("{\"exec-opts\": [\"Native.CgroupDriver = cgroupfs\"]}");
        assert_eq!(config.cgroup_driver(rel("24.0.7"), V2_SYSTEMD).value, "cgroupfs");
        config.dockerd.flags = parse_args(&["-H", "fd://", "--exec-opt", "native.cgroupdriver=systemd"], "/proc/9/cmdline");
        assert_eq!(config.cgroup_driver(rel("24.0.7"), V1_SYSTEMD).source.as_deref(), Some("/proc/9/cmdline"));
    }

    #[test]
    fn cri_dockerd_sandbox_image_per_release() {
        let none = DockerConfig::default();
        for (release, want) in [
            ("0.2.0", "k8s.gcr.io/pause:3.1"),
            ("0.2.5", "k8s.gcr.io/pause:3.6"),
            ("0.3.9", "registry.k8s.io/pause:3.6"),
            ("0.3.16", "registry.k8s.io/pause:3.9"),
            ("v0.3.17", "registry.k8s.io/pause:3.10"),
            ("0.4.3", "registry.k8s.io/pause:3.10"),
        ] {
            assert_eq!(none.cri_dockerd_sandbox_image(rel(release)), Setting { value: want.into(), source: None }, "{release}");
        }
        // KubeKey's cri-docker.service sets it.
        let mut config = DockerConfig::default();
        config.cri_dockerd.flags = parse_args(&["--pod-infra-container-image", "kubesphere/pause:3.9"], "/etc/systemd/system/cri-docker.service:9");
        assert_eq!(config.cri_dockerd_sandbox_image(rel("0.3.9")).value, "kubesphere/pause:3.9");
    }

    #[test]
    fn a_broken_daemon_json_is_a_problem_without_its_values() {
        let dir = std::env::temp_dir().join(format!("nrm-docker-json-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/docker")).unwrap();
        std::fs::write(dir.join("etc/docker/daemon.json"), "{\n  \"registry-mirrors\": [\"https://user:s3cret@m\"],\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"\n}\n").unwrap();
        let config = DockerConfig::load(&HostRoot::new(&dir), DaemonArgs::default(), DaemonArgs::default());
        assert!(config.is_present());
        let problem = config.problems.first().expect("a syntax problem").to_string();
        assert!(problem.contains("/etc/docker/daemon.json:4"), "{problem}");
        assert!(!problem.contains("s3cret"), "{problem}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
