//! Kubelet's configuration as it is (or will be) in force, read as kubelet and systemd read it:
//! the command line of the running kubelet, else the command its systemd unit runs (unit file,
//! drop-ins, `Environment=`, `EnvironmentFile=` and `$VAR` expansion, by [`systemd_unit`]); the
//! `KubeletConfiguration` file named by `--config` at any path, YAML or JSON, with the drop-ins of
//! `--config-dir` merged over it; and kubelet's built-in defaults where all of these are silent.
//! Flags override the drop-ins, which override the file (kubelet's precedence). Every value says
//! where it comes from ([`Origin`]): the flag's `file:line` (or `/proc/<pid>/cmdline`), the
//! config file's `file:line`, or kubelet's default with its upstream citation.
//!
//! Only when nothing names kubelet's configuration (no kubelet process, no unit) are the
//! installers' usual paths tried: [`CONFIG_CANDIDATES`], [`FLAG_ENV_FILES`].
//!
//! It only reads; the audit judges. Flag values may be secrets: callers show them through
//! [`is_sensitive_flag`].

use std::path::{Path, PathBuf};

use super::{
    binaries::Process,
    host_root::{FileError, HostRoot},
    systemd_unit::{self, ServiceUnit},
};

/// `KubeletConfiguration` paths the installers write, tried in order when nothing names one.
pub const CONFIG_CANDIDATES: [&str; 6] = [
    "/var/lib/kubelet/config.yaml",                // kubeadm, KubeKey
    "/etc/kubernetes/kubelet-config.yaml",         // Kubespray
    "/var/lib/kubelet/kubelet.conf",               // kOps (nodeup)
    "/var/lib/k0s/kubelet-config.yaml",            // k0s
    "/etc/kubernetes/kubelet/config.json",         // Amazon EKS AL2023 (nodeadm)
    "/etc/kubernetes/kubelet/kubelet-config.json", // Amazon EKS AL2 (bootstrap.sh)
];

/// Files that hold kubelet flags in environment variables, read (later ones win) only when no
/// kubelet unit says which it reads.
pub const FLAG_ENV_FILES: [&str; 6] = [
    "/var/lib/kubelet/kubeadm-flags.env", // kubeadm, KubeKey: KUBELET_KUBEADM_ARGS
    "/etc/kubernetes/kubelet.env",        // Kubespray: KUBELET_ARGS ...
    "/etc/sysconfig/kubelet",             // kOps (DAEMON_ARGS), RPM packages (KUBELET_EXTRA_ARGS)
    "/etc/default/kubelet",               // deb packages: KUBELET_EXTRA_ARGS
    "/etc/eks/kubelet/environment",       // nodeadm: NODEADM_KUBELET_ARGS
    "/etc/kubernetes/kubelet.conf.env",   // unused by the big installers; kept for hand-made units
];

/// kubelet's systemd unit.
pub const UNIT: &str = "kubelet.service";

/// Kubelet's default runtime endpoint since 1.27 (and the one kubeadm writes):
/// `SetDefaults_KubeletConfiguration`, pkg/kubelet/apis/config/v1beta1/defaults.go
/// (`obj.ContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"`).
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// Kubelet's default cgroup driver, for the flag and the file alike: `SetDefaults_KubeletConfiguration`,
/// pkg/kubelet/apis/config/v1beta1/defaults.go (`obj.CgroupDriver = "cgroupfs"`).
pub const DEFAULT_CGROUP_DRIVER: &str = "cgroupfs";

/// Kubelet's default hard eviction threshold for memory: `DefaultEvictionHard`,
/// pkg/kubelet/eviction/defaults_linux.go (`"memory.available": "100Mi"`), in force only when
/// evictionHard is not set at all (or `mergeDefaultEvictionSettings: true`, kubelet 1.34+).
pub const DEFAULT_EVICTION_HARD_MEMORY: &str = "100Mi";

/// Kubelet's boolean flags (pflag `BoolVar`, every release's): `--flag` alone means true and the
/// next word is never its value (kubelet would reject it as an argument). Any other flag written
/// `--flag value` takes the next word as its value unless that word is a flag itself (a value that
/// starts with `-`, other than a negative number, is read as the next flag: a non-boolean flag
/// missing its value is a configuration kubelet refuses anyway).
const BOOLEAN_FLAGS: &[&str] = &[
    "add-dir-header", "allow-privileged", "alsologtostderr", "anonymous-auth", "authentication-token-webhook",
    "babysit-daemons", "cgroups-per-qos", "configure-cbr0", "containerized", "cpu-cfs-quota",
    "docker-disable-shared-pid", "docker-only", "docker-tls", "enable-cadvisor-json-endpoints",
    "enable-controller-attach-detach", "enable-custom-metrics", "enable-debugging-handlers", "enable-load-reader",
    "enable-server", "enable-tracing", "exit-on-lock-contention", "experimental-allocatable-ignore-eviction",
    "experimental-check-node-capabilities-before-mount", "experimental-dockershim", "experimental-fail-swap-on",
    "experimental-flannel-overlay", "experimental-kernel-memcg-notification", "fail-cgroupv1", "fail-swap-on",
    "help", "keep-terminated-pod-volumes", "kernel-memcg-notification", "local-storage-capacity-isolation",
    "log-cadvisor-usage", "logtostderr", "make-iptables-util-chains", "one-output", "protect-kernel-defaults",
    "really-crash-for-testing", "reconcile-cidr", "redirect-container-streaming", "register-node",
    "register-schedulable", "require-kubeconfig", "rotate-certificates", "rotate-server-certificates", "runonce",
    "seccomp-default", "serialize-image-pulls", "skip-headers", "skip-log-headers", "storage-driver-secure",
    "version",
];

/// Drop-ins of `--config-dir` read at most (a hostile directory could hold thousands).
const MAX_CONFIG_DROPINS: usize = 256;

/// kubelet's node name when `--hostname-override` does not set one: the node's hostname,
/// lowercased, from its `/etc/hostname` (read inside the host root: in a pod, the kernel's
/// hostname is the pod's own), else the kernel's.
pub fn default_node_name(root: &HostRoot) -> String {
    let from_file = root
        .read_text_limited(Path::new("/etc/hostname"), 4096)
        .ok()
        .and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    from_file
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Flags whose values are secrets: a name that ends in the word `token`, `password`, `secret`,
/// `credential(s)` or `key` (`--token`, `--bootstrap-token`, `--registry-password`,
/// `--certificate-key`). A name that goes on past that word names something else: a file or a
/// place (`--token-file`, `--tls-private-key-file`), a switch or a mode
/// (`--authentication-token-webhook`), a hash (`--discovery-token-ca-cert-hash`), a setting
/// about keys (`key-model`): their values are no secrets, and treating them as secrets would
/// blank ordinary words out of every report.
pub fn is_sensitive_flag(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.rsplit(['-', '_', '.']).next(),
        Some("token" | "password" | "passwd" | "secret" | "credential" | "credentials" | "key")
    )
}

/// A command-line flag and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Without dashes, `_` read as `-` as kubelet does: `container-runtime-endpoint`.
    pub name: String,
    pub value: String,
    /// `/proc/1234/cmdline`, `/var/lib/kubelet/kubeadm-flags.env:1` or the unit's `file:line`.
    pub source: String,
}

/// Where a value of kubelet's effective configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, at `/proc/<pid>/cmdline` or the `file:line` that put it there.
    Flag(String),
    /// The `KubeletConfiguration` file (or a `--config-dir` drop-in), at `file:line`.
    File(String),
    /// Kubelet's built-in default, with where upstream sets it.
    Default(&'static str),
}

impl Origin {
    pub fn is_default(&self) -> bool {
        matches!(self, Origin::Default(_))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(at) | Origin::File(at) => f.write_str(at),
            Origin::Default(cite) => write!(f, "default (kubelet {cite})"),
        }
    }
}

/// A value of kubelet's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub value: String,
    pub origin: Origin,
}

impl Value {
    fn default(value: &str, cite: &'static str) -> Self {
        Value { value: value.to_string(), origin: Origin::Default(cite) }
    }

    fn of_flag(f: &Flag, value: String) -> Self {
        Value { value, origin: Origin::Flag(f.source.clone()) }
    }
}

/// Why kubelet's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KubeletProblem {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}:{line}: not a KubeletConfiguration: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
}

/// What is known of kubelet on this node.
#[derive(Debug, Default)]
pub struct Kubelet {
    pub running: Option<Process>,
    /// Effective flags (the last occurrence of a name wins).
    pub flags: Vec<Flag>,
    /// Files the flags and config came from (for watching).
    pub sources: Vec<PathBuf>,
    pub config_path: Option<PathBuf>,
    /// The `--config` file.
    pub config: Option<ConfigFile>,
    /// The `--config-dir` drop-ins, in the order kubelet merges them over [`Kubelet::config`].
    pub config_dropins: Vec<ConfigFile>,
    pub problems: Vec<KubeletProblem>,
}

/// A parsed `KubeletConfiguration` (YAML, or JSON).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
    pub doc: serde_yaml::Value,
}

impl ConfigFile {
    pub fn parse(path: &Path, text: String) -> Result<Self, KubeletProblem> {
        let syntax = |line: Option<usize>, message: String| KubeletProblem::Syntax {
            path: path.to_path_buf(),
            line,
            message: super::parse_error::scrub(&message),
        };
        // Kubelet's decoder takes YAML, and JSON as its subset. A document that looks like JSON
        // (nodeadm's, EKS's) is read as JSON first, so that its error is JSON's, then as YAML
        // (a flow mapping `{a: b}` is YAML, not JSON).
        let looks_json = text.trim_start().starts_with('{');
        let json = looks_json.then(|| serde_json::from_str::<serde_json::Value>(&text));
        let parsed = match json {
            Some(Ok(json)) => serde_yaml::to_value(json).map_err(|e| syntax(None, e.to_string())),
            _ => serde_yaml::from_str::<serde_yaml::Value>(&text).map_err(|yaml_err| match json {
                Some(Err(err)) => {
                    let message = err.to_string();
                    syntax(Some(err.line()), message.split(" at line ").next().unwrap_or("invalid JSON").to_string())
                }
                _ => {
                    let message = yaml_err.to_string();
                    syntax(yaml_err.location().map(|l| l.line()), message.split(" at line ").next().unwrap_or("invalid YAML").to_string())
                }
            }),
        };
        match parsed? {
            doc @ serde_yaml::Value::Mapping(_) => Ok(Self { path: path.to_path_buf(), text, doc }),
            serde_yaml::Value::Null => Ok(Self { path: path.to_path_buf(), text, doc: serde_yaml::Value::Mapping(Default::default()) }),
            _ => Err(syntax(Some(1), "the document is not a mapping".into())),
        }
    }

    fn get(&self, path: &[&str]) -> Option<&serde_yaml::Value> {
        let mut v = &self.doc;
        for key in path {
            v = v.as_mapping()?.get(*key)?;
        }
        Some(v)
    }

    /// A scalar at `path` as text, with its line.
    pub fn value(&self, path: &[&str]) -> Option<Value> {
        let v = self.get(path)?;
        let text = match v {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        Some(Value { value: text, origin: Origin::File(self.locate(path)) })
    }

    /// Whether a mapping is set at `path` (e.g. `evictionHard`), with its keys.
    pub fn map_keys(&self, path: &[&str]) -> Option<Vec<String>> {
        let m = self.get(path)?.as_mapping()?;
        Some(m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
    }

    /// `path:line` of a nested key: each key is looked for among the lines of its parent's block
    /// (more indented than the parent, YAML or pretty-printed JSON), or on the parent's own line
    /// (flow style, one-line JSON).
    pub fn locate(&self, path: &[&str]) -> String {
        match self.line_of(path) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    fn line_of(&self, path: &[&str]) -> Option<usize> {
        let lines: Vec<&str> = self.text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut block = 0..lines.len();
        let mut parent: Option<usize> = None;
        for key in path {
            let on_parent_line = parent.filter(|&p| key_after_colon(lines[p], key));
            let hit = on_parent_line.or_else(|| {
                let mut hit = None;
                for i in block.clone() {
                    let t = lines[i].trim_start();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    if parent.is_some_and(|p| indent(lines[i]) <= indent(lines[p])) {
                        break;
                    }
                    if sets_key(t, key) {
                        hit = Some(i);
                        break;
                    }
                }
                hit
            })?;
            let end = (hit + 1..lines.len())
                .find(|&j| {
                    let t = lines[j].trim_start();
                    !t.is_empty() && !t.starts_with('#') && indent(lines[j]) <= indent(lines[hit])
                })
                .unwrap_or(lines.len());
            block = hit + 1..end;
            parent = Some(hit);
        }
        parent.map(|p| p + 1)
    }
}

/// A line that sets `key`: `key:`, `"key":`, `'key':`, `- key:`.
fn starts_with_key(line: &str, key: &str) -> bool {
    let t = line.trim_start_matches("- ").trim_start_matches(['"', '\'', '{', ' ']);
    t.strip_prefix(key).is_some_and(|r| r.trim_start_matches(['"', '\'']).trim_start().starts_with(':'))
}

/// A line that sets `key` at its start or after a `{` or `,` (one-line JSON).
fn sets_key(line: &str, key: &str) -> bool {
    starts_with_key(line, key) || line.split([',', '{']).any(|part| starts_with_key(part.trim_start(), key))
}

/// Whether `key` is set later on the same line, in flow style (`kubeReserved: {memory: 1Gi}`).
fn key_after_colon(line: &str, key: &str) -> bool {
    let Some((_, rest)) = line.split_once(':') else { return false };
    rest.split([',', '{']).any(|part| starts_with_key(part.trim_start(), key))
}

impl Kubelet {
    /// Reads kubelet's configuration from the host root, given the node's processes.
    pub fn load(root: &HostRoot, processes: &[Process]) -> Self {
        let mut kubelet = Kubelet {
            running: processes.iter().find(|p| p.name() == "kubelet").cloned(),
            ..Default::default()
        };
        // Whether something says how kubelet is (or will be) started: then its --config is the
        // only file it reads, and there may be none.
        let mut command_known = true;
        if let Some(p) = &kubelet.running {
            kubelet.flags = parse_args(&p.argv[1..], &format!("/proc/{}/cmdline", p.pid));
        } else if let Some(mut unit) = ServiceUnit::load(root, UNIT) {
            if let Some(command) = unit.main_command() {
                kubelet.flags = parse_words(command.args.iter().map(|w| (w.text.as_str(), w.origin.as_str())));
            }
            kubelet.sources.append(&mut unit.files);
            kubelet.problems.extend(unit.problems.drain(..).map(KubeletProblem::from));
        } else {
            command_known = false;
            kubelet.flags = flags_from_env_files(root, &mut kubelet.sources, &mut kubelet.problems);
        }
        // A relative --config is relative to kubelet's working directory: `/` under systemd.
        let config_flag = kubelet.flag("config").map(|f| Path::new("/").join(&f.value));
        let config_path = config_flag.or_else(|| {
            (!command_known).then(|| CONFIG_CANDIDATES.iter().map(PathBuf::from).find(|p| root.exists(p))).flatten()
        });
        if let Some(path) = &config_path {
            kubelet.sources.push(path.clone());
            kubelet.config = kubelet.read_config(root, path);
        }
        kubelet.config_path = config_path;
        if let Some(dir) = kubelet.flag("config-dir").map(|f| Path::new("/").join(&f.value)) {
            kubelet.sources.push(dir.clone());
            // KEP-3983: every `*.conf` of the directory, in lexical order, merged over the file.
            for path in root.list_dir(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "conf")).take(MAX_CONFIG_DROPINS) {
                kubelet.sources.push(path.clone());
                if let Some(file) = kubelet.read_config(root, &path) {
                    kubelet.config_dropins.push(file);
                }
            }
        }
        kubelet
    }

    fn read_config(&mut self, root: &HostRoot, path: &Path) -> Option<ConfigFile> {
        let parsed = root.read_text(path).map_err(KubeletProblem::from).and_then(|text| ConfigFile::parse(path, text));
        parsed.map_err(|problem| self.problems.push(problem)).ok()
    }

    /// Whether kubelet's configuration file is named but could not be read or parsed: then its
    /// settings are unknown, not kubelet's defaults (kubelet itself would not start).
    pub fn config_unread(&self) -> bool {
        self.config_path.is_some() && self.config.is_none()
    }

    /// Whether anything says this node runs kubelet (a process, flags or a config file).
    pub fn is_configured(&self) -> bool {
        self.running.is_some() || !self.flags.is_empty() || self.config_path.is_some()
    }

    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    /// The configuration files, the last merged last: the `--config` file, then its drop-ins.
    fn config_files(&self) -> impl DoubleEndedIterator<Item = &ConfigFile> {
        self.config.iter().chain(&self.config_dropins)
    }

    /// A scalar of the merged configuration: the last file that sets it wins (maps merge key by
    /// key, so a nested key is looked up alone).
    pub fn config_value(&self, path: &[&str]) -> Option<Value> {
        self.config_files().rev().find_map(|c| c.value(path))
    }

    /// Where the merged configuration sets `path`: the last file that does.
    pub fn locate_setting(&self, path: &[&str]) -> Option<String> {
        self.config_files().rev().find(|c| c.get(path).is_some()).map(|c| c.locate(path))
    }

    /// A setting from the flag (which wins) or the configuration files.
    fn setting(&self, flag: &str, config_path: &[&str]) -> Option<Value> {
        if let Some(f) = self.flag(flag) {
            return Some(Value::of_flag(f, f.value.clone()));
        }
        self.config_value(config_path)
    }

    pub fn cgroup_driver(&self) -> Value {
        self.setting("cgroup-driver", &["cgroupDriver"]).unwrap_or_else(|| {
            Value::default(DEFAULT_CGROUP_DRIVER, "SetDefaults_KubeletConfiguration, pkg/kubelet/apis/config/v1beta1/defaults.go")
        })
    }

    /// A feature gate set explicitly (`true`/`false`): `--feature-gates=A=true,B=false` (its
    /// entries override the file's, as kubelet merges them), else `featureGates:` of the file.
    pub fn feature_gate(&self, name: &str) -> Option<Value> {
        if let Some(f) = self.flag("feature-gates")
            && let Some(v) = map_flag_entry(&f.value, name, '=')
        {
            return Some(Value { value: v, origin: Origin::Flag(f.source.clone()) });
        }
        self.config.as_ref().and_then(|c| c.value(&["featureGates", name]))
    }

    /// The runtime endpoint as written (`unix:///run/containerd/containerd.sock`).
    pub fn runtime_endpoint(&self) -> Value {
        self.setting("container-runtime-endpoint", &["containerRuntimeEndpoint"]).unwrap_or_else(|| {
            Value::default(DEFAULT_RUNTIME_ENDPOINT, "1.27+ SetDefaults_KubeletConfiguration, pkg/kubelet/apis/config/v1beta1/defaults.go")
        })
    }

    /// kubelet's image service endpoint, when set apart from the runtime endpoint.
    pub fn image_endpoint(&self) -> Option<Value> {
        self.setting("image-service-endpoint", &["imageServiceEndpoint"]).filter(|v| !v.value.is_empty())
    }

    /// The sandbox image kubelet is told about (`--pod-infra-container-image`), if any.
    pub fn pod_infra_image(&self) -> Option<Value> {
        self.flag("pod-infra-container-image").map(|f| Value::of_flag(f, f.value.clone()))
    }

    /// Where kubelet reads static pods; none by default (KubeletConfiguration v1beta1
    /// `staticPodPath`: "Default: \"\""; kubeadm, Kubespray and k0s set it, kOps passes
    /// `--pod-manifest-path`).
    pub fn static_pod_path(&self) -> Option<Value> {
        self.setting("pod-manifest-path", &["staticPodPath"]).filter(|v| !v.value.is_empty())
    }

    /// The node name kubelet registers when it is not the hostname (`--hostname-override`).
    pub fn hostname_override(&self) -> Option<Value> {
        self.setting("hostname-override", &["hostnameOverride"])
    }

    /// `systemReserved.memory` / `kubeReserved.memory` (or `--system-reserved=memory=...`); none
    /// by default (KubeletConfiguration v1beta1 `systemReserved`, `kubeReserved`: "Default: nil").
    pub fn reserved_memory(&self, which: Reservation) -> Option<Value> {
        let (flag, key) = match which {
            Reservation::System => ("system-reserved", "systemReserved"),
            Reservation::Kube => ("kube-reserved", "kubeReserved"),
        };
        if let Some(f) = self.flag(flag) {
            return map_flag_entry(&f.value, "memory", '=').map(|v| Value::of_flag(f, v));
        }
        self.config_value(&[key, "memory"])
    }

    /// The hard eviction threshold for `memory.available`. Kubelet applies its defaults only
    /// when evictionHard is not set at all: a map (or `--eviction-hard`, which replaces the map)
    /// without `memory.available` means no hard eviction on memory, unless
    /// `mergeDefaultEvictionSettings: true` (kubelet 1.34+) fills the missing signals in.
    pub fn eviction_hard_memory(&self) -> EvictionHardMemory {
        let default = || {
            EvictionHardMemory::Default(Value::default(
                DEFAULT_EVICTION_HARD_MEMORY,
                "DefaultEvictionHard, pkg/kubelet/eviction/defaults_linux.go",
            ))
        };
        let merges_defaults = self.config_value(&["mergeDefaultEvictionSettings"]).is_some_and(|v| v.value == "true");
        if let Some(f) = self.flag("eviction-hard") {
            return match map_flag_entry(&f.value, "memory.available", '<') {
                Some(v) => EvictionHardMemory::Set(Value::of_flag(f, v)),
                None if merges_defaults => default(),
                None => EvictionHardMemory::Missing,
            };
        }
        if self.config_files().all(|c| c.map_keys(&["evictionHard"]).is_none()) {
            return default();
        }
        match self.config_value(&["evictionHard", "memory.available"]) {
            Some(v) => EvictionHardMemory::Set(v),
            None if merges_defaults => default(),
            None => EvictionHardMemory::Missing,
        }
    }
}

/// What the kubelet's evictionHard says of `memory.available`.
#[derive(Debug, Clone, PartialEq)]
pub enum EvictionHardMemory {
    /// evictionHard is not set: the kubelet's default (100Mi) applies.
    Default(Value),
    /// evictionHard is set without `memory.available`: no hard eviction on memory.
    Missing,
    Set(Value),
}

#[derive(Debug, Clone, Copy)]
pub enum Reservation {
    System,
    Kube,
}

/// `memory=1Gi,cpu=500m` -> `1Gi` for `memory`; `memory.available<100Mi,...` with `<`.
fn map_flag_entry(value: &str, key: &str, sep: char) -> Option<String> {
    value.split(',').find_map(|kv| {
        let (k, v) = kv.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Flags in an argument vector, all from one source, as kubelet's flag parser (pflag) reads
/// them: `--name=value`, `--name value`, a boolean `--name` alone; see [`parse_words`].
pub fn parse_args<S: AsRef<str>>(args: &[S], source: &str) -> Vec<Flag> {
    parse_words(args.iter().map(|a| (a.as_ref(), source)))
}

/// Flags in words that each know their source. `--name=value` and `-name=value` (pflag's
/// shorthand form, e.g. `-v=2`) set `value`; `--name` takes the next word as its value unless the
/// flag is boolean ([`BOOLEAN_FLAGS`]) or the next word is a flag, and is `true` otherwise; `--`
/// ends the flags; other words (arguments) are skipped. Names are normalized as kubelet does
/// (`_` is `-`).
pub fn parse_words<'a>(words: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Flag> {
    let words: Vec<(&str, &str)> = words.into_iter().collect();
    let is_flag = |w: &str| w.starts_with('-') && w.len() > 1 && w[1..].parse::<f64>().is_err();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (word, source) = words[i];
        i += 1;
        if word == "--" {
            break;
        }
        let Some(body) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else { continue };
        // `---x`, `--_x` (`_` is `-`), `--=x`: no flag kubelet knows.
        if body.is_empty() || body.starts_with(['-', '_', '=']) {
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name.replace('_', "-"), value.to_string()),
            None => {
                let name = body.replace('_', "-");
                match words.get(i) {
                    Some((next, _)) if !BOOLEAN_FLAGS.contains(&name.as_str()) && !is_flag(next) => {
                        i += 1;
                        (name, next.to_string())
                    }
                    _ => (name, "true".to_string()),
                }
            }
        };
        out.push(Flag { name, value, source: source.to_string() });
    }
    out
}

/// Flags from the installers' environment files, when no unit says which kubelet reads: every
/// assignment's value, split into words as `$VAR` on a command line is.
fn flags_from_env_files(root: &HostRoot, sources: &mut Vec<PathBuf>, problems: &mut Vec<KubeletProblem>) -> Vec<Flag> {
    let mut flags = Vec::new();
    for path in FLAG_ENV_FILES.iter().map(PathBuf::from) {
        match root.read_text(&path) {
            Ok(text) => {
                sources.push(path.clone());
                for (_, value, line) in systemd_unit::env_file_assignments(&text) {
                    let source = format!("{}:{line}", path.display());
                    flags.extend(parse_args(&systemd_unit::split_value(&value), &source));
                }
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => problems.push(err.into()),
        }
    }
    flags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::node::systemd_unit::tests::host;

    fn flags(args: &[&str]) -> Vec<(String, String)> {
        parse_args(args, "p").into_iter().map(|f| (f.name, f.value)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn flags_in_every_form_kubelet_accepts() {
        assert_eq!(
            flags(&["--config", "/c.yaml", "--v=2", "--fail-swap-on", "--x=a=b", "-v", "3", "--cgroup_driver=systemd"]),
            pairs(&[("config", "/c.yaml"), ("v", "2"), ("fail-swap-on", "true"), ("x", "a=b"), ("v", "3"), ("cgroup-driver", "systemd")])
        );
        // A boolean flag never takes the next word; a flag never takes a flag; a negative number
        // is a value; `--` ends the flags.
        assert_eq!(
            flags(&["--register-node", "kubelet-arg", "--node-ip", "--config=/c", "--oom-score-adj", "-999", "--", "--v=9"]),
            pairs(&[("register-node", "true"), ("node-ip", "true"), ("config", "/c"), ("oom-score-adj", "-999")])
        );
        assert_eq!(flags(&["--fail-swap-on=false", "--anonymous-auth", "false"]), pairs(&[("fail-swap-on", "false"), ("anonymous-auth", "true")]));
        assert_eq!(flags(&["-", "---x", "--_X_ARGS", "--=v", "positional"]), pairs(&[]));
    }

    #[test]
    fn sensitive_flags() {
        assert!(is_sensitive_flag("token"));
        assert!(is_sensitive_flag("registry-password"));
        assert!(!is_sensitive_flag("tls-private-key-file"));
        assert!(!is_sensitive_flag("container-runtime-endpoint"));
        assert!(!is_sensitive_flag("bootstrap-kubeconfig"));
        assert!(is_sensitive_flag("certificate-key") && is_sensitive_flag("bootstrap_token"));
        assert!(!is_sensitive_flag("key-model") && !is_sensitive_flag("discovery-token-ca-cert-hash"));
        assert!(!is_sensitive_flag("authentication-token-webhook") && !is_sensitive_flag("token-ttl"));
    }

    // kubeadm's generated /var/lib/kubelet/config.yaml (abridged), with reservations patched in.
    const KUBEADM_CONFIG: &str = r#"apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
evictionHard:
  imagefs.available: 15%
  memory.available: 100Mi
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
systemReserved:
  cpu: 500m
  memory: 1Gi
"#;

    fn kubelet_with(config: &str, flags: Vec<Flag>) -> Kubelet {
        let c = ConfigFile::parse(Path::new("/var/lib/kubelet/config.yaml"), config.into()).unwrap();
        Kubelet { config: Some(c), flags, ..Default::default() }
    }

    #[test]
    fn config_values_and_lines() {
        let k = kubelet_with(KUBEADM_CONFIG, vec![]);
        assert_eq!(k.cgroup_driver(), Value { value: "systemd".into(), origin: Origin::File("/var/lib/kubelet/config.yaml:5".into()) });
        assert_eq!(k.reserved_memory(Reservation::System).map(|v| v.value), Some("1Gi".into()));
        assert_eq!(k.reserved_memory(Reservation::System).map(|v| v.origin.to_string()), Some("/var/lib/kubelet/config.yaml:15".into()));
        assert_eq!(k.reserved_memory(Reservation::Kube), None);
        assert!(matches!(k.eviction_hard_memory(), EvictionHardMemory::Set(v) if v.value == "100Mi"));
        assert!(k.runtime_endpoint().origin.is_default());
    }

    #[test]
    fn flags_override_config() {
        let flags = parse_args(&["--cgroup-driver=cgroupfs", "--system-reserved=cpu=1,memory=2Gi", "--eviction-hard=nodefs.available<10%"], "p");
        let k = kubelet_with(KUBEADM_CONFIG, flags);
        assert_eq!(k.cgroup_driver(), Value { value: "cgroupfs".into(), origin: Origin::Flag("p".into()) });
        assert_eq!(k.reserved_memory(Reservation::System).map(|v| v.value), Some("2Gi".into()));
        assert_eq!(k.eviction_hard_memory(), EvictionHardMemory::Missing, "--eviction-hard replaces the map");
    }

    // Each default the audit relies on, where every file and flag is silent.

    #[test]
    fn default_cgroup_driver_is_cgroupfs() {
        // SetDefaults_KubeletConfiguration: `if obj.CgroupDriver == "" { obj.CgroupDriver = "cgroupfs" }`.
        let v = Kubelet::default().cgroup_driver();
        assert_eq!(v.value, "cgroupfs");
        assert!(v.origin.to_string().starts_with("default (kubelet SetDefaults_KubeletConfiguration"), "{}", v.origin);
        assert_eq!(kubelet_with("kind: KubeletConfiguration\n", vec![]).cgroup_driver().value, "cgroupfs");
    }

    #[test]
    fn default_runtime_endpoint_is_containerd() {
        // SetDefaults_KubeletConfiguration (1.27+): ContainerRuntimeEndpoint "unix:///run/containerd/containerd.sock".
        let v = kubelet_with("kind: KubeletConfiguration\n", vec![]).runtime_endpoint();
        assert_eq!(v.value, "unix:///run/containerd/containerd.sock");
        assert!(v.origin.is_default());
    }

    #[test]
    fn default_eviction_hard_only_when_unset() {
        // DefaultEvictionHard (memory.available<100Mi) applies only when evictionHard is unset...
        let unset = kubelet_with("kind: KubeletConfiguration\n", vec![]).eviction_hard_memory();
        assert!(matches!(&unset, EvictionHardMemory::Default(v) if v.value == "100Mi" && v.origin.is_default()), "{unset:?}");
        assert!(matches!(Kubelet::default().eviction_hard_memory(), EvictionHardMemory::Default(_)));
        // ...a partial map leaves memory.available at 0...
        let partial = kubelet_with("evictionHard:\n  nodefs.available: 10%\n", vec![]);
        assert_eq!(partial.eviction_hard_memory(), EvictionHardMemory::Missing);
        // ...unless mergeDefaultEvictionSettings (kubelet 1.34+) fills the missing signals in.
        let merged = kubelet_with("evictionHard:\n  nodefs.available: 10%\nmergeDefaultEvictionSettings: true\n", vec![]);
        assert!(matches!(merged.eviction_hard_memory(), EvictionHardMemory::Default(_)));
    }

    #[test]
    fn default_reservations_and_static_pod_path_are_none() {
        // KubeletConfiguration v1beta1: systemReserved/kubeReserved "Default: nil", staticPodPath "Default: \"\"".
        let k = kubelet_with("kind: KubeletConfiguration\nstaticPodPath: \"\"\n", vec![]);
        assert_eq!(k.reserved_memory(Reservation::System), None);
        assert_eq!(k.reserved_memory(Reservation::Kube), None);
        assert_eq!(k.static_pod_path(), None);
    }

    #[test]
    fn feature_gates_from_flag_and_file() {
        let c = ConfigFile::parse(Path::new("/c.yaml"), "featureGates:\n  KubeletCgroupDriverFromCRI: false\n  Other: true\n".into()).unwrap();
        let mut k = Kubelet { config: Some(c), ..Default::default() };
        assert_eq!(k.feature_gate("KubeletCgroupDriverFromCRI"), Some(Value { value: "false".into(), origin: Origin::File("/c.yaml:2".into()) }));
        k.flags = parse_args(&["--feature-gates=Other=false,KubeletCgroupDriverFromCRI=true"], "p");
        assert_eq!(k.feature_gate("KubeletCgroupDriverFromCRI").map(|v| v.value), Some("true".into()));
        assert_eq!(k.feature_gate("Absent"), None);
    }

    #[test]
    fn bad_yaml_is_an_error_without_values() {
        for text in ["cgroupDriver: [systemd", "- a\n- b", "password: \"s3cret\"\n  bad: indent: here", "\t\u{0}", "a: &a [*a]", "{\"password\": \"s3cret\",,}"] {
            let r = ConfigFile::parse(Path::new("/c.yaml"), text.into());
            if let Err(e) = r {
                assert!(!e.to_string().contains("s3cret"), "{e}");
            }
        }
        assert!(ConfigFile::parse(Path::new("/c.yaml"), "- a\n".into()).is_err());
        assert!(ConfigFile::parse(Path::new("/c.yaml"), "".into()).is_ok());
        let flow = ConfigFile::parse(Path::new("/c.yaml"), "{cgroupDriver: systemd}".into()).unwrap();
        assert_eq!(flow.value(&["cgroupDriver"]).map(|v| v.value), Some("systemd".into()), "a YAML flow mapping is no JSON");
        let e = ConfigFile::parse(Path::new("/c.json"), "{\n  \"a\": 1,\n  \"b\" 2\n}".into()).unwrap_err();
        assert!(e.to_string().starts_with("/c.json:3:"), "{e}");
    }

    // nodeadm's /etc/kubernetes/kubelet/config.json as it writes it (json.MarshalIndent, 4
    // spaces, fields in the order of its kubeletConfig struct) for an m5.large:
    // https://github.com/awslabs/amazon-eks-ami/blob/main/nodeadm/internal/kubelet/config.go
    // (defaultKubeletSubConfig, withDefaultReservedResources).
    pub(crate) const NODEADM_CONFIG_JSON: &str = r#"{
    "address": "0.0.0.0",
    "authentication": {
        "anonymous": {
            "enabled": false
        },
        "webhook": {
            "cacheTTL": "2m0s",
            "enabled": true
        },
        "x509": {
            "clientCAFile": "/etc/kubernetes/pki/ca.crt"
        }
    },
    "authorization": {
        "mode": "Webhook",
        "webhook": {
            "cacheAuthorizedTTL": "5m0s",
            "cacheUnauthorizedTTL": "30s"
        }
    },
    "cgroupDriver": "systemd",
    "cgroupRoot": "/",
    "clusterDNS": [
        "10.100.0.10"
    ],
    "clusterDomain": "cluster.local",
    "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
    "evictionHard": {
        "memory.available": "100Mi",
        "nodefs.available": "10%",
        "nodefs.inodesFree": "5%"
    },
    "featureGates": {
        "RotateKubeletServerCertificate": true
    },
    "hairpinMode": "hairpin-veth",
    "kubeReserved": {
        "cpu": "80m",
        "ephemeral-storage": "1Gi",
        "memory": "574Mi"
    },
    "kubeReservedCgroup": "/runtime",
    "logging": {
        "verbosity": 2
    },
    "maxPods": 29,
    "protectKernelDefaults": true,
    "providerID": "aws:///us-west-2a/i-0123456789abcdef0",
    "readOnlyPort": 0,
    "serializeImagePulls": false,
    "serverTLSBootstrap": true,
    "systemReservedCgroup": "/system",
    "tlsCipherSuites": [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    ],
    "kind": "KubeletConfiguration",
    "apiVersion": "kubelet.config.k8s.io/v1beta1"
}
"#;

    // The unit nodeadm's AMI installs: ExecStart over several lines, `--config <path>`.
    // https://github.com/awslabs/amazon-eks-ami/blob/e9460f82cd7f3b96576f4a4caacdd4cea1901c8c/nodeadm/internal/install/kubelet.service
    pub(crate) const NODEADM_UNIT: &str = "[Unit]\nDescription=Kubernetes Kubelet\nDocumentation=https://github.com/kubernetes/kubernetes\nAfter=containerd.service\nRequires=containerd.service\n\n[Service]\nSlice=runtime.slice\nExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5\nExecStart=/usr/bin/kubelet \\\n    --config /etc/kubernetes/kubelet/config.json \\\n    --kubeconfig /var/lib/kubelet/kubeconfig \\\n    --container-runtime-endpoint unix:///run/containerd/containerd.sock \\\n    $KUBELET_ARGS \\\n    $KUBELET_EXTRA_ARGS\n\nRestart=on-failure\nRestartForceExitStatus=SIGPIPE\nRestartSec=5\nKillMode=process\nCPUAccounting=true\nMemoryAccounting=true\n\n[Install]\nWantedBy=multi-user.target\n";

    /// The measured bug: on a nodeadm node (no kubelet process read) kubelet's configuration
    /// was not found, so the audit judged kubelet's defaults (cgroupfs, no reservation).
    #[test]
    fn nodeadm_node_reads_json_config_named_by_spaced_flag() {
        let (_dir, root) = host(&[
            ("/etc/systemd/system/kubelet.service", NODEADM_UNIT),
            ("/etc/kubernetes/kubelet/config.json", NODEADM_CONFIG_JSON),
        ]);
        let k = Kubelet::load(&root, &[]);
        assert!(k.problems.is_empty(), "{:?}", k.problems);
        assert_eq!(k.config_path.as_deref(), Some(Path::new("/etc/kubernetes/kubelet/config.json")));
        assert_eq!(k.flag("config").unwrap().source, "/etc/systemd/system/kubelet.service:11");
        assert_eq!(k.cgroup_driver(), Value { value: "systemd".into(), origin: Origin::File("/etc/kubernetes/kubelet/config.json:22".into()) });
        let kube = k.reserved_memory(Reservation::Kube).unwrap();
        assert_eq!((kube.value.as_str(), kube.origin.to_string().as_str()), ("574Mi", "/etc/kubernetes/kubelet/config.json:41"));
        assert!(matches!(k.eviction_hard_memory(), EvictionHardMemory::Set(v) if v.origin.to_string() == "/etc/kubernetes/kubelet/config.json:30"));
        // The flag on the unit wins over the file's containerRuntimeEndpoint.
        assert_eq!(k.runtime_endpoint().origin, Origin::Flag("/etc/systemd/system/kubelet.service:13".into()));
        assert!(k.sources.contains(&PathBuf::from("/etc/systemd/system/kubelet.service")));
    }

    /// nodeadm >= kubelet 1.29: `--config-dir` drop-ins (KEP-3983) merged over config.json in
    /// lexical order; maps merge key by key, the last file wins.
    #[test]
    fn config_dir_dropins_merge_over_the_file() {
        let environment = "NODEADM_KUBELET_ARGS=--config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d --kubeconfig=/var/lib/kubelet/kubeconfig";
        let (_dir, root) = host(&[
            ("/etc/systemd/system/kubelet.service", "[Service]\nEnvironmentFile=/etc/eks/kubelet/environment\nExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS\n"),
            ("/etc/eks/kubelet/environment", environment),
            ("/etc/kubernetes/kubelet/config.json", NODEADM_CONFIG_JSON),
            // nodeadm's 40-nodeadm.conf (the user's NodeConfig kubelet.config, as JSON).
            ("/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf", "{\n    \"apiVersion\": \"kubelet.config.k8s.io/v1beta1\",\n    \"kind\": \"KubeletConfiguration\",\n    \"systemReserved\": {\n        \"memory\": \"256Mi\"\n    },\n    \"kubeReserved\": {\n        \"cpu\": \"100m\"\n    }\n}\n"),
            ("/etc/kubernetes/kubelet/config.json.d/50-later.conf", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n"),
            ("/etc/kubernetes/kubelet/config.json.d/60-ignored.yaml", "cgroupDriver: nonsense\n"),
        ]);
        let k = Kubelet::load(&root, &[]);
        assert!(k.problems.is_empty(), "{:?}", k.problems);
        assert_eq!(k.config_dropins.len(), 2);
        assert_eq!(k.cgroup_driver().origin.to_string(), "/etc/kubernetes/kubelet/config.json.d/50-later.conf:3");
        assert_eq!(k.reserved_memory(Reservation::System).unwrap().origin.to_string(), "/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf:5");
        // kubeReserved.cpu from the drop-in does not hide kubeReserved.memory of the file.
        assert_eq!(k.reserved_memory(Reservation::Kube).unwrap().value, "574Mi");
        assert_eq!(k.locate_setting(&["kubeReserved"]).as_deref(), Some("/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf:7"));
    }

    // Kubespray's kubelet.service.j2 and kubelet.env.v1beta1.j2 rendered with its defaults
    // (bin_dir /usr/local/bin, kube_config_dir /etc/kubernetes, containerd, no hardening):
    // https://github.com/kubernetes-sigs/kubespray/blob/026f477410ab9a6d376b669a4eaf4eff63b9469e/roles/kubernetes/node/templates/kubelet.service.j2
    // https://github.com/kubernetes-sigs/kubespray/blob/02d8c033824aa4aaca623c843b40badc59059986/roles/kubernetes/node/templates/kubelet.env.v1beta1.j2
    const KUBESPRAY_UNIT: &str = "[Unit]\nDescription=Kubernetes Kubelet Server\nDocumentation=https://github.com/GoogleCloudPlatform/kubernetes\nAfter=containerd.service\nWants=containerd.service\n\n[Service]\nEnvironmentFile=-/etc/kubernetes/kubelet.env\nExecStart=/usr/local/bin/kubelet \\\n\t\t$KUBE_LOGTOSTDERR \\\n\t\t$KUBE_LOG_LEVEL \\\n\t\t$KUBELET_API_SERVER \\\n\t\t$KUBELET_ADDRESS \\\n\t\t$KUBELET_PORT \\\n\t\t$KUBELET_HOSTNAME \\\n\t\t$KUBELET_ARGS \\\n\t\t$DOCKER_SOCKET \\\n\t\t$KUBELET_NETWORK_PLUGIN \\\n\t\t$KUBELET_VOLUME_PLUGIN \\\n\t\t$KUBELET_CLOUDPROVIDER\nRestart=always\nRestartSec=10s\n\n[Install]\nWantedBy=multi-user.target\n";
    const KUBESPRAY_ENV: &str = r#"KUBE_LOGTOSTDERR="--logtostderr=true"
KUBE_LOG_LEVEL="--v=2"
KUBELET_ADDRESS="--node-ip=10.0.0.11"
KUBELET_HOSTNAME="--hostname-override=node1"

KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--config=/etc/kubernetes/kubelet-config.yaml \
--kubeconfig=/etc/kubernetes/kubelet.conf \
--pod-infra-container-image=registry.k8s.io/pause:3.9 \
--container-runtime-endpoint=/var/run/containerd/containerd.sock \
--runtime-cgroups=/system.slice/containerd.service \
 --node-labels=  "
KUBELET_CLOUDPROVIDER=""

PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"#;

    #[test]
    fn kubespray_unit_and_env_file() {
        let (_dir, root) = host(&[("/etc/systemd/system/kubelet.service", KUBESPRAY_UNIT), ("/etc/kubernetes/kubelet.env", KUBESPRAY_ENV)]);
        let k = Kubelet::load(&root, &[]);
        let got: Vec<(&str, &str, &str)> = k.flags.iter().map(|f| (f.name.as_str(), f.value.as_str(), f.source.as_str())).collect();
        let env = "/etc/kubernetes/kubelet.env";
        assert_eq!(got[0], ("logtostderr", "true", "/etc/kubernetes/kubelet.env:1"));
        assert!(got.contains(&("config", "/etc/kubernetes/kubelet-config.yaml", &format!("{env}:7"))), "{got:?}");
        assert!(got.contains(&("runtime-cgroups", "/system.slice/containerd.service", &format!("{env}:11"))), "{got:?}");
        assert_eq!(got.last().map(|f| (f.0, f.1)), Some(("node-labels", "")));
        assert_eq!(k.config_path.as_deref(), Some(Path::new("/etc/kubernetes/kubelet-config.yaml")));
        assert!(matches!(&k.problems[..], [KubeletProblem::File(e)] if e.is_not_found()), "the named config file is missing: {:?}", k.problems);
    }

    // kOps nodeup's kubelet unit and /etc/sysconfig/kubelet (golden test output):
    // https://github.com/kubernetes/kops/blob/5f439bf1ef2ca826d45293ba14464a4284b9d575/nodeup/pkg/model/tests/kubelet/featuregates/tasks.yaml
    #[test]
    fn kops_quoted_daemon_args() {
        let unit = "[Unit]\nDescription=Kubernetes Kubelet Server\nDocumentation=https://github.com/kubernetes/kubernetes\nAfter=docker.service\n\n[Service]\nEnvironmentFile=/etc/sysconfig/kubelet\nExecStart=/usr/local/bin/kubelet \"$DAEMON_ARGS\"\nRestart=always\nRestartSec=2s\nStartLimitInterval=0\nKillMode=process\nUser=root\nCPUAccounting=true\nMemoryAccounting=true\n";
        let sysconfig = "DAEMON_ARGS=\"--feature-gates=AllowExtTrafficLocalEndpoints=false,ExperimentalCriticalPodAnnotation=true --node-labels=kubernetes.io/role=node,node-role.kubernetes.io/node= --pod-manifest-path=/etc/kubernetes/manifests --register-schedulable=true --volume-plugin-dir=/usr/libexec/kubernetes/kubelet-plugins/volume/exec/ --cni-bin-dir=/opt/cni/bin/ --cni-conf-dir=/etc/cni/net.d/ --cni-bin-dir=/opt/cni/bin/\"\nHOME=\"/root\"\n";
        let (_dir, root) = host(&[("/lib/systemd/system/kubelet.service", unit), ("/etc/sysconfig/kubelet", sysconfig)]);
        let k = Kubelet::load(&root, &[]);
        // "$DAEMON_ARGS" is unquoted first, then split: systemd's replace_env_argv.
        assert_eq!(k.flags.len(), 8, "{:?}", k.flags);
        assert_eq!(k.static_pod_path().map(|v| (v.value, v.origin)), Some(("/etc/kubernetes/manifests".into(), Origin::Flag("/etc/sysconfig/kubelet:1".into()))));
        assert_eq!(k.config_path, None, "kOps passes no --config here: kubelet reads no file");
        assert!(k.eviction_hard_memory() != EvictionHardMemory::Missing);
    }

    /// Without a process or a unit, the installers' env files and config paths are tried.
    #[test]
    fn fallback_without_unit() {
        let (_dir, root) = host(&[
            ("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n"),
            ("/var/lib/kubelet/config.yaml", KUBEADM_CONFIG),
        ]);
        let k = Kubelet::load(&root, &[]);
        assert_eq!(k.runtime_endpoint().origin, Origin::Flag("/var/lib/kubelet/kubeadm-flags.env:1".into()));
        assert_eq!(k.config_path.as_deref(), Some(Path::new("/var/lib/kubelet/config.yaml")));
        assert_eq!(k.cgroup_driver().value, "systemd");
    }

    #[test]
    fn locate_in_yaml_blocks_and_flow_style() {
        let c = ConfigFile::parse(Path::new("/c.yaml"), "kubeReserved:\n  cpu: 1\nsystemReserved: {memory: 1Gi}\nevictionHard:\n  nodefs.available: 5%\nother:\n  memory.available: 1\n".into()).unwrap();
        assert_eq!(c.locate(&["systemReserved", "memory"]), "/c.yaml:3");
        // A key of another block is not taken for a missing child.
        assert_eq!(c.locate(&["evictionHard", "memory.available"]), "/c.yaml");
        let one_line = ConfigFile::parse(Path::new("/c.json"), "{\"cgroupDriver\":\"systemd\",\"kubeReserved\":{\"memory\":\"1Gi\"}}".into()).unwrap();
        assert_eq!(one_line.value(&["kubeReserved", "memory"]).unwrap().origin.to_string(), "/c.json:1");
    }
}
