//! CRI-O's configuration as crio reads it: `/etc/crio/crio.conf` (or `--config`), then every
//! file under `/etc/crio/crio.conf.d` (or `--config-dir`), walked in lexical order, each file
//! overriding the keys it sets; then crio's own flags (`--cgroup-manager`, `--conmon-cgroup`,
//! `--pause-image`, `--listen`), which win over every file. What no file sets is the built-in
//! default of the crio release, cited below.
//!
//! Sources: cri-o/cri-o `pkg/config/config.go` (`UpdateFromPath`: `filepath.Walk` over the
//! drop-in directory, every regular file decoded over the previous config, not only `*.conf`),
//! `pkg/config/config_unix.go` (`CrioConfigPath`, `CrioConfigDropInPath`) and
//! `internal/criocli/criocli.go` (flags, "command line parameters have a higher priority than
//! any configuration file").
//!
//! It does not judge: the audit compares these settings with kubelet's.

use std::path::{Path, PathBuf};

use super::{
    containerd_config::{ConfigFile, ConfigProblem, Release, Setting},
    daemon_args::DaemonArgs,
    host_root::HostRoot,
};

/// crio's `--config` default (`CrioConfigPath`).
pub const DEFAULT_CONFIG: &str = "/etc/crio/crio.conf";
/// crio's `--config-dir` default (`CrioConfigDropInPath`).
pub const DEFAULT_CONFIG_DIR: &str = "/etc/crio/crio.conf.d";
/// crio's `listen` default (docs/crio.conf.5.md: `listen="/var/run/crio/crio.sock"`).
pub const DEFAULT_LISTEN: &str = "/var/run/crio/crio.sock";

/// Drop-in files read at most (a directory of thousands is not a configuration).
const MAX_DROP_INS: usize = 256;

/// The files crio reads, in the order it applies them, and its flags.
#[derive(Debug, Default)]
pub struct CrioConfig {
    /// The main file (when present) then the drop-ins.
    pub files: Vec<ConfigFile>,
    pub problems: Vec<ConfigProblem>,
    /// crio's command line (running process, else its unit).
    pub args: DaemonArgs,
    /// The main file and the drop-in directory looked at (`--config`, `--config-dir` or the
    /// defaults).
    pub main: PathBuf,
    pub config_dir: PathBuf,
}

/// What a crio release makes of its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CrioEffective {
    /// `[crio.runtime] cgroup_manager`: `systemd` or `cgroupfs`.
    pub cgroup_manager: Setting<String>,
    /// `[crio.runtime] conmon_cgroup` as written (empty: the release's choice, see
    /// [`CrioEffective::conmon_cgroup_refused`]).
    pub conmon_cgroup: Setting<String>,
    /// `[crio.image] pause_image`.
    pub pause_image: Setting<String>,
    /// `[crio.api] listen`.
    pub listen: Setting<String>,
}

impl CrioConfig {
    /// Reads crio's files; missing files are no problem (crio runs on its defaults).
    pub fn load(root: &HostRoot, args: DaemonArgs) -> Self {
        let main = args.flag(&["config", "c"]).map(|f| PathBuf::from(&f.value)).unwrap_or_else(|| DEFAULT_CONFIG.into());
        let config_dir = args.flag(&["config-dir", "d"]).map(|f| PathBuf::from(&f.value)).unwrap_or_else(|| DEFAULT_CONFIG_DIR.into());
        let mut config = CrioConfig { args, main: main.clone(), config_dir: config_dir.clone(), ..Default::default() };
        let mut paths = vec![main.clone()];
        walk(root, &config_dir, 0, &mut paths);
        for path in paths {
            match root.read_text(&path) {
                Ok(text) => match ConfigFile::parse(&path, text) {
                    Ok(file) => config.files.push(file),
                    Err(err) => config.problems.push(err.into()),
                },
                Err(err) if err.is_not_found() && path == main => {}
                Err(err) => config.problems.push(err.into()),
            }
        }
        config
    }

    /// Whether anything says CRI-O is configured here (a file, or a crio command line).
    pub fn is_present(&self) -> bool {
        !self.files.is_empty() || !self.args.flags.is_empty() || !self.problems.is_empty()
    }

    /// The setting `key` of table `crio.<table>`: crio's flag, else the last file that sets
    /// it, else `default`.
    fn setting(&self, flag: &str, table: &str, key: &str, default: &str) -> Setting<String> {
        if let Some(f) = self.args.flag(&[flag]) {
            return Setting { value: f.value.clone(), source: Some(f.source.clone()) };
        }
        let in_file = self.files.iter().rev().find_map(|f| {
            let value = f.table.get("crio")?.get(table)?.get(key)?.as_str()?;
            Some(Setting { value: value.to_string(), source: Some(f.locate(&format!("crio.{table}"), key)) })
        });
        in_file.unwrap_or_else(|| Setting::default_value(default.to_string()))
    }

    /// The settings `release` runs with (unknown release: the current defaults).
    pub fn effective(&self, release: Option<Release>) -> CrioEffective {
        CrioEffective {
            cgroup_manager: self.setting("cgroup-manager", "runtime", "cgroup_manager", default_cgroup_manager(release)),
            conmon_cgroup: self.setting("conmon-cgroup", "runtime", "conmon_cgroup", ""),
            pause_image: self.setting("pause-image", "image", "pause_image", default_pause_image(release)),
            listen: self.setting("listen", "api", "listen", DEFAULT_LISTEN),
        }
    }

    /// Files to watch: the main file (present or not), the drop-in directory and its files,
    /// and the unit's.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        out.extend([self.main.clone(), self.config_dir.clone()]);
        out.extend(self.args.sources.iter().cloned());
        out
    }
}

impl CrioEffective {
    /// Why `release` refuses to start with this `conmon_cgroup` and cgroup manager, if it does
    /// (cri-o `pkg/config/config.go`, `TranslateMonitorFields[ForHandler]`): with cgroupfs it
    /// must be `pod` or empty (from 1.33 `system.slice`, the systemd default, is also taken as
    /// empty); with systemd, `pod` or a `.slice`.
    pub fn conmon_cgroup_refused(&self, release: Option<Release>) -> Option<&'static str> {
        let value = self.conmon_cgroup.value.as_str();
        if self.cgroup_manager.value == "cgroupfs" {
            let tolerated = release.is_none_or(|r| r >= Release { major: 1, minor: 33, patch: 0 }) && value == "system.slice";
            (!matches!(value, "" | "pod") && !tolerated).then_some("with the cgroupfs manager conmon_cgroup must be \"pod\" or empty")
        } else {
            (!value.is_empty() && value != "pod" && !value.ends_with(".slice")).then_some("conmon_cgroup must be \"pod\" or a systemd slice")
        }
    }
}

/// The drop-in directory as crio walks it: depth first, entries in lexical order, every
/// regular file (crio applies each, whatever its name).
fn walk(root: &HostRoot, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    for entry in root.list_dir(dir) {
        if out.len() > MAX_DROP_INS {
            return;
        }
        match root.metadata(&entry) {
            Ok(meta) if meta.is_dir() => walk(root, &entry, depth + 1, out),
            Ok(meta) if meta.is_file() => out.push(entry),
            _ => {}
        }
    }
}

/// crio's `cgroup_manager` default: `cgroupfs` before 1.18, `systemd` since (cri-o
/// `pkg/config/config.go` `DefaultConfig`: v1.17.0 `cgroupManager = "cgroupfs"`, v1.18.0
/// `CgroupManager: "systemd"`; later `internal/config/cgmgr` `DefaultCgroupManager =
/// systemdCgroupManager`).
pub fn default_cgroup_manager(release: Option<Release>) -> &'static str {
    match release {
        Some(r) if r < (Release { major: 1, minor: 18, patch: 0 }) => "cgroupfs",
        _ => "systemd",
    }
}

/// crio's `pause_image` default by release (cri-o `pkg/config/config.go` at each tag:
/// `PauseImage: "k8s.gcr.io/pause:3.2"` in 1.18-1.20, then `DefaultPauseImage` = pause 3.5
/// (1.21-1.22), `k8s.gcr.io/pause:3.6` (1.23), `registry.k8s.io/pause:3.6` (1.24-1.27), 3.9
/// (1.28-1.30), 3.10 (1.31-1.33), 3.10.1 (1.34-)). Unknown release: the newest.
pub fn default_pause_image(release: Option<Release>) -> &'static str {
    let Some(r) = release else { return "registry.k8s.io/pause:3.10.1" };
    match (r.major, r.minor) {
        (0, _) | (1, 0..=17) => "k8s.gcr.io/pause:3.1",
        (1, 18..=20) => "k8s.gcr.io/pause:3.2",
        (1, 21..=22) => "k8s.gcr.io/pause:3.5",
        (1, 23) => "k8s.gcr.io/pause:3.6",
        (1, 24..=27) => "registry.k8s.io/pause:3.6",
        (1, 28..=30) => "registry.k8s.io/pause:3.9",
        (1, 31..=33) => "registry.k8s.io/pause:3.10",
        _ => "registry.k8s.io/pause:3.10.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::parse_args;

    fn rel(s: &str) -> Option<Release> {
        Release::parse(s)
    }

    fn host(name: &str, files: &[(&str, &str)]) -> (PathBuf, HostRoot) {
        let dir = std::env::temp_dir().join(format!("nrm-crio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, text) in files {
            let p = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        (dir.clone(), HostRoot::new(dir))
    }

    // /etc/crio/crio.conf.d/10-crio.conf as the cri-o packages ship it (cri-o/packaging
    // templates/latest/cri-o/bundle/10-crio.conf at 215567e): it sets no cgroup manager, pause
    // image or socket, so crio runs on its defaults for these.
    const PACKAGED_10_CRIO: &str = r#"[crio.image]
signature_policy = "/etc/crio/policy.json"

[crio.runtime]
default_runtime = "crun"

[crio.runtime.runtimes.crun]
runtime_path = "/usr/libexec/crio/crun"
runtime_root = "/run/crun"
runtime_type = "pod"
monitor_path = "/usr/libexec/crio/conmonrs"
allowed_annotations = [
    "io.containers.trace-syscall",
]

[crio.runtime.runtimes.runc]
runtime_path = "/usr/libexec/crio/runc"
runtime_root = "/run/runc"
runtime_type = "pod"
monitor_path = "/usr/libexec/crio/conmonrs"
"#;

    #[test]
    fn defaults_per_release() {
        // Nothing on the node: crio runs on its built-in defaults.
        let (dir, root) = host("empty", &[]);
        let config = CrioConfig::load(&root, DaemonArgs::default());
        assert!(!config.is_present());
        for (release, manager, pause) in [
            ("1.17.5", "cgroupfs", "k8s.gcr.io/pause:3.1"),
            ("1.18.0", "systemd", "k8s.gcr.io/pause:3.2"),
            ("1.23.2", "systemd", "k8s.gcr.io/pause:3.6"),
            ("1.27.1", "systemd", "registry.k8s.io/pause:3.6"),
            ("1.30.4", "systemd", "registry.k8s.io/pause:3.9"),
            ("1.31.0", "systemd", "registry.k8s.io/pause:3.10"),
            ("v1.34.1", "systemd", "registry.k8s.io/pause:3.10.1"),
        ] {
            let eff = config.effective(rel(release));
            assert_eq!((eff.cgroup_manager.value.as_str(), eff.pause_image.value.as_str()), (manager, pause), "{release}");
            assert_eq!(eff.cgroup_manager.source, None, "a default has no source");
            assert_eq!(eff.listen.value, "/var/run/crio/crio.sock");
            assert_eq!(eff.conmon_cgroup.value, "");
            assert_eq!(eff.conmon_cgroup_refused(rel(release)), None, "{release}");
        }
        let _ = std::fs::remove_dir_all(dir);

        let (dir, root) = host("packaged", &[("/etc/crio/crio.conf.d/10-crio.conf", PACKAGED_10_CRIO)]);
        let config = CrioConfig::load(&root, DaemonArgs::default());
        assert!(config.is_present() && config.problems.is_empty(), "{:?}", config.problems);
        let eff = config.effective(rel("1.34.1"));
        assert_eq!((eff.cgroup_manager.value.as_str(), eff.cgroup_manager.source.as_deref()), ("systemd", None));
        assert_eq!(eff.pause_image.value, "registry.k8s.io/pause:3.10.1");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn drop_ins_override_the_main_file_per_key_in_lexical_order() {
        let (dir, root) = host("dropins", &[
            ("/etc/crio/crio.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nconmon_cgroup = \"pod\"\n\n[crio.image]\npause_image = \"example.com/pause:main\"\n"),
            ("/etc/crio/crio.conf.d/10-crio.conf", PACKAGED_10_CRIO),
            ("/etc/crio/crio.conf.d/20-pause.conf", "[crio.image]\npause_image = \"example.com/pause:20\"\n"),
            // Not `*.conf`: crio applies it all the same, after 20- (lexical order).
            ("/etc/crio/crio.conf.d/30-systemd", "[crio.runtime]\n# moved to systemd\ncgroup_manager = \"systemd\"\n"),
            ("/etc/crio/crio.conf.d/05-nested/listen.conf", "[crio.api]\nlisten = \"/run/custom/crio.sock\"\n"),
        ]);
        let config = CrioConfig::load(&root, DaemonArgs::default());
        let names: Vec<String> = config.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(names, [
            "/etc/crio/crio.conf",
            "/etc/crio/crio.conf.d/05-nested/listen.conf",
            "/etc/crio/crio.conf.d/10-crio.conf",
            "/etc/crio/crio.conf.d/20-pause.conf",
            "/etc/crio/crio.conf.d/30-systemd",
        ]);
        let eff = config.effective(rel("1.30.4"));
        assert_eq!(eff.cgroup_manager, Setting { value: "systemd".into(), source: Some("/etc/crio/crio.conf.d/30-systemd:3".into()) });
        assert_eq!(eff.pause_image, Setting { value: "example.com/pause:20".into(), source: Some("/etc/crio/crio.conf.d/20-pause.conf:2".into()) });
        assert_eq!(eff.conmon_cgroup.source.as_deref(), Some("/etc/crio/crio.conf:3"), "kept from the main file");
        assert_eq!(eff.listen.value, "/run/custom/crio.sock");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn flags_win_and_move_the_files() {
        let (dir, root) = host("flags", &[
            ("/etc/crio/crio.conf", "[crio.runtime]\ncgroup_manager = \"systemd\"\n"),
            ("/opt/crio/main.conf", "[crio.image]\npause_image = \"example.com/pause:opt\"\n"),
            ("/opt/crio/conf.d/01.conf", "[crio.runtime]\ncgroup_manager = \"systemd\"\n"),
        ]);
        let args = DaemonArgs { flags: parse_args(&["--config", "/opt/crio/main.conf", "-d", "/opt/crio/conf.d", "--cgroup-manager=cgroupfs"], "/proc/7/cmdline"), sources: Vec::new() };
        let config = CrioConfig::load(&root, args);
        let eff = config.effective(rel("1.31.1"));
        assert_eq!(eff.cgroup_manager, Setting { value: "cgroupfs".into(), source: Some("/proc/7/cmdline".into()) });
        assert_eq!(eff.pause_image.source.as_deref(), Some("/opt/crio/main.conf:2"));
        assert!(config.files.iter().all(|f| !f.path.starts_with("/etc/crio")), "the default paths are not read");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn conmon_cgroup_crio_refuses() {
        let eff = |manager: &str, conmon: &str| CrioEffective {
            cgroup_manager: Setting::default_value(manager.into()),
            conmon_cgroup: Setting::default_value(conmon.into()),
            pause_image: Setting::default_value(String::new()),
            listen: Setting::default_value(String::new()),
        };
        for (manager, conmon, release, refused) in [
            ("cgroupfs", "pod", "1.30.0", false),
            ("cgroupfs", "", "1.30.0", false),
            ("cgroupfs", "system.slice", "1.30.0", true),
            ("cgroupfs", "system.slice", "1.33.0", false),
            ("cgroupfs", "crio.slice", "1.34.0", true),
            ("systemd", "system.slice", "1.30.0", false),
            ("systemd", "pod", "1.30.0", false),
            ("systemd", "/crio", "1.30.0", true),
        ] {
            assert_eq!(eff(manager, conmon).conmon_cgroup_refused(rel(release)).is_some(), refused, "{manager} {conmon} {release}");
        }
    }

    #[test]
    fn broken_drop_ins_are_problems_not_panics() {
        let (dir, root) = host("broken", &[
            ("/etc/crio/crio.conf.d/10-bad.conf", "[crio.runtime\ncgroup_manager = "),
            ("/etc/crio/crio.conf.d/20-good.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n"),
        ]);
        let config = CrioConfig::load(&root, DaemonArgs::default());
        assert_eq!(config.problems.len(), 1);
        assert!(config.problems[0].to_string().contains("10-bad.conf:1"), "{}", config.problems[0]);
        assert_eq!(config.effective(None).cgroup_manager.value, "cgroupfs");
        let _ = std::fs::remove_dir_all(dir);
    }
}
