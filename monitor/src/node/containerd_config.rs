//! containerd's `config.toml` (schema versions 1 to 4, with `imports` drop-ins) and what a given
//! containerd release makes of it: which schema it reads the file as (or refuses), which plugin
//! tables it silently ignores, and the effective cgroup driver (`SystemdCgroup`) and sandbox
//! image with the file and line they come from.
//!
//! It does not judge (the audit compares these with kubelet) and never reports setting values
//! other than the few it interprets: registry credentials and TLS keys live in this file.

use std::path::{Path, PathBuf};

use super::{
    host_root::{FileError, HostRoot, line_of_offset},
    parse_error,
};

pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

/// Why a containerd config file is not TOML. `message` never quotes the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: not valid TOML: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
pub struct SyntaxError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// One parsed config file (the main one or an import).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Host path.
    pub path: PathBuf,
    pub text: String,
    pub table: toml::Table,
}

impl ConfigFile {
    pub fn parse(path: &Path, text: String) -> Result<Self, SyntaxError> {
        match toml::from_str::<toml::Table>(&text) {
            Ok(table) => Ok(Self { path: path.to_path_buf(), text, table }),
            Err(err) => Err(SyntaxError {
                path: path.to_path_buf(),
                line: err.span().map(|s| line_of_offset(&text, s.start)),
                // The message alone: toml's Display quotes the offending line, which may hold a secret.
                message: parse_error::scrub(err.message()),
            }),
        }
    }

    /// The declared `version`, if any (absent means 1).
    pub fn declared_version(&self) -> Option<i64> {
        self.table.get("version").and_then(toml::Value::as_integer)
    }

    /// `path:line` of a key, the line found by searching for `key =` under a table header
    /// that contains `header_contains`.
    pub fn locate(&self, header_contains: &str, key: &str) -> String {
        match line_of_key(&self.text, header_contains, key) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// A problem reading the config set: a file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
}

/// The main config file and its imports, in the order containerd merges them.
#[derive(Debug, Default)]
pub struct ContainerdConfig {
    pub files: Vec<ConfigFile>,
    pub problems: Vec<ConfigProblem>,
}

impl ContainerdConfig {
    /// Loads `main` and, recursively (bounded), the files its `imports` name. A missing main
    /// file gives an empty config and no problem: containerd then runs on its defaults.
    pub fn load(root: &HostRoot, main: &Path) -> Self {
        let mut config = ContainerdConfig::default();
        let mut queue = vec![main.to_path_buf()];
        let mut seen = std::collections::HashSet::new();
        while let Some(path) = queue.pop() {
            if !seen.insert(path.clone()) || seen.len() > 64 {
                continue;
            }
            let text = match root.read_text(&path) {
                Ok(text) => text,
                Err(err) if err.is_not_found() && path == main => continue,
                Err(err) => {
                    config.problems.push(err.into());
                    continue;
                }
            };
            match ConfigFile::parse(&path, text) {
                Ok(file) => {
                    let imports: Vec<PathBuf> = file
                        .table
                        .get("imports")
                        .and_then(toml::Value::as_array)
                        .map(|a| a.iter().filter_map(|v| v.as_str()).map(PathBuf::from).collect())
                        .unwrap_or_default();
                    config.files.push(file);
                    let mut found: Vec<PathBuf> = Vec::new();
                    for pattern in imports {
                        let pattern = if pattern.is_absolute() {
                            pattern
                        } else {
                            main.parent().unwrap_or(Path::new("/")).join(pattern)
                        };
                        found.extend(root.glob(&pattern));
                    }
                    // Processed in order: push reversed onto the stack.
                    queue.extend(found.into_iter().rev());
                }
                Err(err) => config.problems.push(err.into()),
            }
        }
        config
    }

    pub fn main(&self) -> Option<&ConfigFile> {
        self.files.first()
    }

    /// The version containerd sees (the main file's; absent means 1).
    pub fn declared_version(&self) -> i64 {
        self.main().and_then(ConfigFile::declared_version).unwrap_or(1)
    }

    /// The value at `path` in the last file (imports override the main file) that sets it.
    fn lookup(&self, path: &[&str]) -> Option<(&ConfigFile, &toml::Value)> {
        self.files.iter().rev().find_map(|f| lookup(&f.table, path).map(|v| (f, v)))
    }

    /// The `[grpc] address` (where the CRI socket is), default `/run/containerd/containerd.sock`.
    pub fn grpc_address(&self) -> PathBuf {
        self.lookup(&["grpc", "address"])
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/containerd/containerd.sock"))
    }

    /// How `release` reads this configuration.
    pub fn effective(&self, release: Option<Release>) -> Effective {
        let declared = self.declared_version();
        let release = release.unwrap_or(Release { major: 1, minor: 7, patch: 0 });
        let read_as = release.reads_version(declared);
        let schema = match read_as {
            Ok(v) => v,
            Err(_) => {
                return Effective {
                    declared,
                    read_as,
                    systemd_cgroup: Setting::default_value(false),
                    sandbox_image: Setting::default_value(release.default_sandbox_image().to_string()),
                    ignored: Vec::new(),
                };
            }
        };
        // Where each release reads the CRI runtime and image settings from.
        let (runtime_plugin, images): (Vec<&str>, Vec<&str>) = match (release.major, schema) {
            (_, 1) => (vec!["plugins", "cri"], vec!["plugins", "cri", "sandbox_image"]),
            (1, _) => (
                vec!["plugins", "io.containerd.grpc.v1.cri"],
                vec!["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"],
            ),
            // 2.x reading a version 2 file migrates the v2 tables.
            (_, 2) => (
                vec!["plugins", "io.containerd.grpc.v1.cri"],
                vec!["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"],
            ),
            _ => (
                vec!["plugins", "io.containerd.cri.v1.runtime"],
                vec!["plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"],
            ),
        };
        let header = runtime_plugin[1];
        let mut default_runtime = runtime_plugin.clone();
        default_runtime.extend(["containerd", "default_runtime_name"]);
        let runtime_name = self
            .lookup(&default_runtime)
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("runc")
            .to_string();
        let mut systemd_path = runtime_plugin.clone();
        systemd_path.extend(["containerd", "runtimes", runtime_name.as_str(), "options", "SystemdCgroup"]);
        let systemd_cgroup = match self.lookup(&systemd_path) {
            Some((file, v)) => match v.as_bool() {
                Some(b) => Setting { value: b, source: Some(file.locate(header, "SystemdCgroup")) },
                None => Setting::default_value(false),
            },
            None => Setting::default_value(false),
        };
        let image_header = if images.len() > 3 { "pinned_images" } else { images[1] };
        let image_key = images[images.len() - 1];
        let sandbox_image = match self.lookup(&images).and_then(|(f, v)| v.as_str().map(|s| (f, s))) {
            Some((file, s)) if !s.is_empty() => {
                Setting { value: s.to_string(), source: Some(file.locate(image_header, image_key)) }
            }
            _ => Setting::default_value(release.default_sandbox_image().to_string()),
        };
        let ignored = self.files.iter().flat_map(|f| ignored_tables(f, release, schema)).collect();
        Effective { declared, read_as, systemd_cgroup, sandbox_image, ignored }
    }
}

/// A setting as containerd will use it, and where it comes from (`None`: the built-in default).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Option<String>,
}

impl<T> Setting<T> {
    pub fn default_value(value: T) -> Self {
        Self { value, source: None }
    }
}

/// What a release makes of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub declared: i64,
    /// The schema version the release reads the file as, or why it refuses it.
    pub read_as: Result<i64, VersionRefusal>,
    pub systemd_cgroup: Setting<bool>,
    pub sandbox_image: Setting<String>,
    pub ignored: Vec<IgnoredTable>,
}

/// Why a release refuses a config version (containerd exits at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRefusal {
    pub max_supported: i64,
}

/// A plugin table present in a file that this release does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredTable {
    /// `path:line` of its first header.
    pub source: String,
    /// As written in TOML: `plugins."io.containerd.grpc.v1.cri"`.
    pub table: String,
    /// Names (never values) of the settings in it that are lost.
    pub keys: Vec<String>,
}

/// Keys `io.containerd.grpc.v1.cri` still reads in containerd 2.x (the CRI gRPC server only).
const GRPC_CRI_KEYS_2X: [&str; 6] = [
    "disable_tcp_service",
    "stream_server_address",
    "stream_server_port",
    "stream_idle_timeout",
    "enable_tls_streaming",
    "x509_key_pair_streaming",
];

fn ignored_tables(file: &ConfigFile, release: Release, schema: i64) -> Vec<IgnoredTable> {
    let Some(plugins) = file.table.get("plugins").and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, value) in plugins {
        let Some(table) = value.as_table() else { continue };
        let lost: Vec<String> = match (id.as_str(), release.major, schema) {
            // Short ids are only read from version 1 files.
            ("cri", _, s) if s >= 2 => leaf_keys(table, &[]),
            // Full ids are not read from version 1 files by 1.x (2.x migrates them too).
            ("io.containerd.grpc.v1.cri", 1, 1) => leaf_keys(table, &[]),
            // 2.x reading a version 3+ file: the v2 CRI body moved to cri.v1.runtime / cri.v1.images.
            ("io.containerd.grpc.v1.cri", m, s) if m >= 2 && s >= 3 => leaf_keys(table, &GRPC_CRI_KEYS_2X),
            // 1.x knows nothing of the 2.x plugin ids.
            (id, 1, _) if id.starts_with("io.containerd.cri.v1.") => leaf_keys(table, &[]),
            _ => Vec::new(),
        };
        if lost.is_empty() {
            continue;
        }
        let header = if id.contains('.') { format!("plugins.\"{id}\"") } else { format!("plugins.{id}") };
        let line = file.text.lines().position(|l| {
            let t = l.trim_start();
            t.starts_with('[') && (t.contains(&format!("\"{id}\"")) || t.contains(&format!("'{id}'")) || t.contains(&format!("plugins.{id}")))
        });
        let source = match line {
            Some(i) => format!("{}:{}", file.path.display(), i + 1),
            None => file.path.display().to_string(),
        };
        out.push(IgnoredTable { source, table: header, keys: lost });
    }
    out
}

/// Names of leaf settings under a table, except those in `kept` at the top level.
fn leaf_keys(table: &toml::Table, kept: &[&str]) -> Vec<String> {
    fn walk(t: &toml::Table, depth: usize, out: &mut Vec<String>) {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) if depth < 32 => walk(inner, depth + 1, out),
                _ => {
                    if !out.contains(k) {
                        out.push(k.clone())
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (k, v) in table {
        if kept.contains(&k.as_str()) {
            continue;
        }
        match v {
            toml::Value::Table(inner) => walk(inner, 1, &mut out),
            _ => {
                if !out.contains(k) {
                    out.push(k.clone())
                }
            }
        }
    }
    out
}

/// Looks a key path up; the last key matches case-insensitively, as containerd's decoding of
/// runtime `options` does (Kubespray writes `systemdCgroup`).
fn lookup<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = match table.get(*first) {
        Some(v) => v,
        None if rest.is_empty() => table.iter().find(|(k, _)| k.eq_ignore_ascii_case(first)).map(|(_, v)| v)?,
        None => return None,
    };
    if rest.is_empty() { Some(value) } else { lookup(value.as_table()?, rest) }
}

/// 1-based line of `key = ...` under the first table header containing `header_contains`
/// (falls back to the first `key =` anywhere, for dotted keys).
pub fn line_of_key(text: &str, header_contains: &str, key: &str) -> Option<usize> {
    let is_key_line = |line: &str| {
        let t = line.trim_start().trim_start_matches(['"', '\'']);
        let head = t.get(..key.len()).filter(|h| h.eq_ignore_ascii_case(key));
        head.map(|_| &t[key.len()..])
            .map(|r| r.trim_start_matches(['"', '\'']).trim_start().starts_with('='))
            .unwrap_or(false)
    };
    let mut in_header = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_header = t.contains(header_contains);
        } else if in_header && is_key_line(line) {
            return Some(i + 1);
        }
    }
    text.lines().position(|l| l.contains(key) && l.contains('=')).map(|i| i + 1)
}

/// A containerd release, e.g. `1.6.20` from `1.6.20~ds1`, `v2.0.2`, `1.7.6-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Release {
    pub fn parse(text: &str) -> Option<Release> {
        let t = text.trim().trim_start_matches('v');
        let mut nums = t.split(|c: char| !c.is_ascii_digit());
        let major = nums.next()?.parse().ok()?;
        let minor = nums.next()?.parse().ok()?;
        let patch = nums.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Release { major, minor, patch })
    }

    /// The highest config version this release reads.
    pub fn max_config_version(self) -> i64 {
        match (self.major, self.minor) {
            (0, _) | (1, 0..=2) => 1,
            (1, _) => 2,
            (2, 0..=2) => 3,
            _ => 4,
        }
    }

    /// The schema version this release reads a file declaring `declared` as.
    /// 1.6 before 1.6.32 and 1.7 before 1.7.17 did not check the version and read a
    /// version 3 file as version 2; later 1.x refuse it.
    pub fn reads_version(self, declared: i64) -> Result<i64, VersionRefusal> {
        let max = self.max_config_version();
        if (1..=max).contains(&declared) {
            return Ok(declared);
        }
        let lax_1x = self.major == 1
            && ((self.minor == 6 && self.patch < 32) || (self.minor == 7 && self.patch < 17));
        if lax_1x && declared > max {
            return Ok(max);
        }
        Err(VersionRefusal { max_supported: max })
    }

    /// The sandbox image the release uses when the config sets none.
    pub fn default_sandbox_image(self) -> &'static str {
        match (self.major, self.minor) {
            (1, 0..=4) => "k8s.gcr.io/pause:3.2",
            (1, 5) => "k8s.gcr.io/pause:3.5",
            (1, 6) => "registry.k8s.io/pause:3.6",
            (1, _) => "registry.k8s.io/pause:3.8",
            _ => "registry.k8s.io/pause:3.10",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ContainerdConfig {
        ContainerdConfig {
            files: vec![ConfigFile::parse(Path::new("/etc/containerd/config.toml"), text.to_string()).unwrap()],
            problems: Vec::new(),
        }
    }

    fn rel(s: &str) -> Option<Release> {
        Release::parse(s)
    }

    // `containerd config default` of 1.7, trimmed, with SystemdCgroup set as kubeadm docs say.
    const V2_SYSTEMD: &str = r#"disabled_plugins = []
imports = []
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            SystemdCgroup = true
"#;

    // What Kubespray generated for containerd 2.0 (incident 4): a version 3 header on a v2 body.
    const V3_HEADER_V2_BODY: &str = r#"version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0

[grpc]
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
"#;

    // `containerd config default` of 2.0 with the runc options set (a real version 3 body).
    const V3_SYSTEMD: &str = r#"version = 3
root = '/var/lib/containerd'
state = '/run/containerd'

[grpc]
  address = '/run/containerd/containerd.sock'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'

  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = true

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
"#;

    // A version 1 file (containerd 1.2-era, as many old installers wrote it).
    const V1_SHORT: &str = r#"[plugins.cri]
  sandbox_image = "k8s.gcr.io/pause:3.1"
  [plugins.cri.containerd.runtimes.runc.options]
    SystemdCgroup = true
"#;

    #[test]
    fn effective_settings_per_release() {
        struct Case {
            name: &'static str,
            text: &'static str,
            release: &'static str,
            read_as: Result<i64, i64>,
            systemd: bool,
            systemd_line: Option<&'static str>,
            sandbox: &'static str,
            ignored: Vec<&'static str>,
        }
        let cases = [
            Case { name: "v2 on 1.7", text: V2_SYSTEMD, release: "1.7.6", read_as: Ok(2), systemd: true,
                systemd_line: Some("/etc/containerd/config.toml:15"), sandbox: "registry.k8s.io/pause:3.9", ignored: vec![] },
            Case { name: "v2 on 2.0 is migrated", text: V2_SYSTEMD, release: "v2.0.2", read_as: Ok(2), systemd: true,
                systemd_line: Some("/etc/containerd/config.toml:15"), sandbox: "registry.k8s.io/pause:3.9", ignored: vec![] },
            Case { name: "v3 header, v2 body, on 2.0 (incident 4)", text: V3_HEADER_V2_BODY, release: "2.0.2", read_as: Ok(3),
                systemd: false, systemd_line: None, sandbox: "registry.k8s.io/pause:3.10",
                ignored: vec!["plugins.\"io.containerd.grpc.v1.cri\""] },
            Case { name: "v3 on 2.0", text: V3_SYSTEMD, release: "2.0.2", read_as: Ok(3), systemd: true,
                systemd_line: Some("/etc/containerd/config.toml:20"), sandbox: "registry.k8s.io/pause:3.10", ignored: vec![] },
            Case { name: "v3 on early 1.6 is read as 2", text: V3_SYSTEMD, release: "1.6.20~ds1", read_as: Ok(2), systemd: false,
                systemd_line: None, sandbox: "registry.k8s.io/pause:3.6",
                ignored: vec!["plugins.\"io.containerd.cri.v1.images\"", "plugins.\"io.containerd.cri.v1.runtime\""] },
            Case { name: "v3 on 1.7.17 is refused", text: V3_SYSTEMD, release: "1.7.17", read_as: Err(2), systemd: false,
                systemd_line: None, sandbox: "registry.k8s.io/pause:3.8", ignored: vec![] },
            Case { name: "v1 on 1.6", text: V1_SHORT, release: "1.6.20", read_as: Ok(1), systemd: true,
                systemd_line: Some("/etc/containerd/config.toml:4"), sandbox: "k8s.gcr.io/pause:3.1", ignored: vec![] },
            // Observed with containerd 1.6.20 (`containerd --config C config dump`): a version 1 file's
            // full-id tables and a version 2 file's short-id tables are both dropped.
            Case { name: "v1 with full ids on 1.6.20", text: "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example/pause:fullid\"\n",
                release: "1.6.20", read_as: Ok(1), systemd: false, systemd_line: None, sandbox: "registry.k8s.io/pause:3.6",
                ignored: vec!["plugins.\"io.containerd.grpc.v1.cri\""] },
            Case { name: "v2 with short ids on 1.6.20", text: "version = 2\n[plugins.cri]\n  sandbox_image = \"example/pause:short\"\n",
                release: "1.6.20", read_as: Ok(2), systemd: false, systemd_line: None, sandbox: "registry.k8s.io/pause:3.6",
                ignored: vec!["plugins.cri"] },
            Case { name: "v4 on 1.6.20 is read as 2", text: "version = 4\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example/pause:v2table\"\n",
                release: "1.6.20", read_as: Ok(2), systemd: false, systemd_line: None, sandbox: "example/pause:v2table", ignored: vec![] },
            Case { name: "empty file on 1.7: defaults", text: "", release: "1.7.6", read_as: Ok(1), systemd: false,
                systemd_line: None, sandbox: "registry.k8s.io/pause:3.8", ignored: vec![] },
        ];
        for case in cases {
            let eff = config(case.text).effective(rel(case.release));
            assert_eq!(eff.read_as.clone().map_err(|r| r.max_supported), case.read_as, "{}", case.name);
            assert_eq!(eff.systemd_cgroup.value, case.systemd, "{}", case.name);
            assert_eq!(eff.systemd_cgroup.source.as_deref(), case.systemd_line, "{}", case.name);
            assert_eq!(eff.sandbox_image.value, case.sandbox, "{}", case.name);
            let ignored: Vec<&str> = eff.ignored.iter().map(|i| i.table.as_str()).collect();
            assert_eq!(ignored, case.ignored, "{}", case.name);
        }
    }

    #[test]
    fn ignored_table_names_the_lost_settings_not_their_values() {
        let eff = config(V3_HEADER_V2_BODY).effective(rel("2.0.2"));
        let t = &eff.ignored[0];
        assert_eq!(t.source, "/etc/containerd/config.toml:11");
        assert!(t.keys.contains(&"SystemdCgroup".to_string()), "{:?}", t.keys);
        assert!(t.keys.contains(&"sandbox_image".to_string()), "{:?}", t.keys);
    }

    #[test]
    fn releases() {
        assert_eq!(rel("1.6.20~ds1"), Some(Release { major: 1, minor: 6, patch: 20 }));
        assert_eq!(rel("v2.0.2"), Some(Release { major: 2, minor: 0, patch: 2 }));
        assert_eq!(rel("1.7"), Some(Release { major: 1, minor: 7, patch: 0 }));
        assert_eq!(rel("garbage"), None);
        assert_eq!(Release::parse("2.1.0").map(|r| r.reads_version(4)), Some(Err(VersionRefusal { max_supported: 3 })));
        assert_eq!(Release::parse("2.3.0").map(|r| r.reads_version(4)), Some(Ok(4)));
        assert_eq!(Release::parse("1.6.32").map(|r| r.reads_version(3)), Some(Err(VersionRefusal { max_supported: 2 })));
        assert_eq!(Release::parse("2.0.0").map(|r| r.reads_version(0)), Some(Err(VersionRefusal { max_supported: 3 })));
    }

    #[test]
    fn syntax_errors_do_not_quote_the_file() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".auth]\n  password = \"hunter2-secret\" oops\n";
        let err = ConfigFile::parse(Path::new("/c.toml"), text.into()).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(!err.to_string().contains("hunter2"), "{err}");
        for garbage in ["[[[", "\u{0}\u{1}", "a = ", "x = \"unterminated", "[plugins\n", &"[a]\n".repeat(3), &"a=[".repeat(5000)] {
            let _ = ConfigFile::parse(Path::new("/c.toml"), garbage.to_string());
        }
    }
}
