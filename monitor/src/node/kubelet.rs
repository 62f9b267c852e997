//! Kubelet's configuration as it is (or will be) in force: the command line of the running
//! kubelet, else the flags its systemd unit, drop-ins and env files give it (kubeadm,
//! KubeKey, Kubespray, kOps), and its `KubeletConfiguration` file (`--config`, else the
//! default path of kubeadm, Kubespray, kOps or k0s). Command-line flags override the file,
//! as in kubelet. Every value keeps the `file:line` it comes from.
//!
//! It only reads; the audit judges. Flag values may be secrets: callers show them through
//! [`is_sensitive_flag`].

use std::path::{Path, PathBuf};

use super::{
    binaries::Process,
    host_root::{FileError, HostRoot},
};

/// Default `KubeletConfiguration` paths, in the order they are tried.
pub const CONFIG_CANDIDATES: [&str; 4] = [
    "/var/lib/kubelet/config.yaml",          // kubeadm, KubeKey
    "/etc/kubernetes/kubelet-config.yaml",   // Kubespray
    "/var/lib/kubelet/kubelet.conf",         // kOps (nodeup)
    "/var/lib/k0s/kubelet-config.yaml",      // k0s
];

/// Files that hold kubelet flags in environment variables, in the order kubelet's unit
/// expands them (later ones win).
pub const FLAG_ENV_FILES: [&str; 5] = [
    "/var/lib/kubelet/kubeadm-flags.env", // kubeadm, KubeKey: KUBELET_KUBEADM_ARGS
    "/etc/kubernetes/kubelet.env",        // Kubespray: KUBELET_ARGS ...
    "/etc/sysconfig/kubelet",             // kOps (DAEMON_ARGS), RPM packages (KUBELET_EXTRA_ARGS)
    "/etc/default/kubelet",               // deb packages: KUBELET_EXTRA_ARGS
    "/etc/kubernetes/kubelet.conf.env",   // unused by the big installers; kept for hand-made units
];

pub const UNIT_DIRS: [&str; 3] = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// Kubelet's default runtime endpoint since 1.27 (and the one kubeadm writes).
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

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

/// Flags whose values are secrets: a name with a word `token`, `password`, `secret`,
/// `credential(s)` or `key` (`--token`, `--bootstrap-token`, `--certificate-key`), unless it
/// names a file, a directory or a path (`--token-file`), or a switch (`--anonymous-auth`,
/// `--authentication-token-webhook`: their values are booleans and modes, not secrets).
pub fn is_sensitive_flag(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let words: Vec<&str> = n.split(['-', '_', '.']).collect();
    let secret_word = words.iter().any(|w| matches!(*w, "token" | "password" | "passwd" | "secret" | "credential" | "credentials" | "key"));
    let names_a_place = matches!(words.last(), Some(&("file" | "dir" | "path" | "config" | "webhook" | "ttl")));
    secret_word && !names_a_place
}

/// A command-line flag and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Without dashes: `container-runtime-endpoint`.
    pub name: String,
    pub value: String,
    /// `/proc/1234/cmdline` or `/var/lib/kubelet/kubeadm-flags.env:1`.
    pub source: String,
}

/// A value of kubelet's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub value: String,
    /// `file:line`; `None` for kubelet's built-in default.
    pub source: Option<String>,
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
    pub config: Option<ConfigFile>,
    pub problems: Vec<KubeletProblem>,
}

/// A parsed `KubeletConfiguration`.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
    pub doc: serde_yaml::Value,
}

impl ConfigFile {
    pub fn parse(path: &Path, text: String) -> Result<Self, KubeletProblem> {
        match serde_yaml::from_str::<serde_yaml::Value>(&text) {
            Ok(doc @ serde_yaml::Value::Mapping(_)) => Ok(Self { path: path.to_path_buf(), text, doc }),
            Ok(serde_yaml::Value::Null) => Ok(Self {
                path: path.to_path_buf(),
                text,
                doc: serde_yaml::Value::Mapping(Default::default()),
            }),
            Ok(_) => Err(KubeletProblem::Syntax {
                path: path.to_path_buf(),
                line: Some(1),
                message: "the document is not a mapping".into(),
            }),
            Err(err) => Err(KubeletProblem::Syntax {
                path: path.to_path_buf(),
                line: err.location().map(|l| l.line()),
                message: super::parse_error::scrub(
                    err.to_string().split(" at line ").next().unwrap_or("invalid YAML"),
                ),
            }),
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
        Some(Value { value: text, source: Some(self.locate(path)) })
    }

    /// Whether a mapping is set at `path` (e.g. `evictionHard`), with its keys.
    pub fn map_keys(&self, path: &[&str]) -> Option<Vec<String>> {
        let m = self.get(path)?.as_mapping()?;
        Some(m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
    }

    /// `path:line` of a nested key, found by walking `key:` lines in order.
    pub fn locate(&self, path: &[&str]) -> String {
        let mut from = 0;
        let lines: Vec<&str> = self.text.lines().collect();
        let mut found = None;
        for key in path {
            let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                let t = t.trim_start_matches(['"', '\'']);
                t.strip_prefix(key).is_some_and(|r| r.trim_start_matches(['"', '\'']).starts_with(':'))
            });
            match hit {
                Some((i, _)) => {
                    from = i + 1;
                    found = Some(i + 1);
                }
                None => {
                    found = None;
                    break;
                }
            }
        }
        match found {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

impl Kubelet {
    /// Reads kubelet's configuration from the host root, given the node's processes.
    pub fn load(root: &HostRoot, processes: &[Process]) -> Self {
        let mut kubelet = Kubelet {
            running: processes.iter().find(|p| p.name() == "kubelet").cloned(),
            ..Default::default()
        };
        if let Some(p) = &kubelet.running {
            kubelet.flags = parse_args(&p.argv[1..], &format!("/proc/{}/cmdline", p.pid));
        } else {
            kubelet.flags = flags_from_files(root, &mut kubelet.sources, &mut kubelet.problems);
        }
        let config_flag = kubelet.flag("config").map(|f| PathBuf::from(&f.value));
        let config_path = config_flag.or_else(|| {
            CONFIG_CANDIDATES.iter().map(PathBuf::from).find(|p| root.exists(p))
        });
        if let Some(path) = &config_path {
            kubelet.sources.push(path.clone());
            match root.read_text(path) {
                Ok(text) => match ConfigFile::parse(path, text) {
                    Ok(file) => kubelet.config = Some(file),
                    Err(problem) => kubelet.problems.push(problem),
                },
                Err(err) => kubelet.problems.push(err.into()),
            }
        }
        kubelet.config_path = config_path;
        kubelet
    }

    /// Whether anything says this node runs kubelet (a process, flags or a config file).
    pub fn is_configured(&self) -> bool {
        self.running.is_some() || !self.flags.is_empty() || self.config_path.is_some()
    }

    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    /// A setting from the flag (which wins) or the config file.
    fn setting(&self, flag: &str, config_path: &[&str]) -> Option<Value> {
        if let Some(f) = self.flag(flag) {
            return Some(Value { value: f.value.clone(), source: Some(f.source.clone()) });
        }
        self.config.as_ref().and_then(|c| c.value(config_path))
    }

    pub fn cgroup_driver(&self) -> Value {
        self.setting("cgroup-driver", &["cgroupDriver"])
            .unwrap_or(Value { value: "cgroupfs".into(), source: None })
    }

    /// A feature gate set explicitly (`true`/`false`): `--feature-gates=A=true,B=false` (its
    /// entries override the file's, as kubelet merges them), else `featureGates:` of the file.
    pub fn feature_gate(&self, name: &str) -> Option<Value> {
        if let Some(f) = self.flag("feature-gates")
            && let Some(v) = map_flag_entry(&f.value, name, '=')
        {
            return Some(Value { value: v, source: Some(f.source.clone()) });
        }
        self.config.as_ref().and_then(|c| c.value(&["featureGates", name]))
    }

    /// The runtime endpoint as written (`unix:///run/containerd/containerd.sock`).
    pub fn runtime_endpoint(&self) -> Value {
        self.setting("container-runtime-endpoint", &["containerRuntimeEndpoint"])
            .unwrap_or(Value { value: DEFAULT_RUNTIME_ENDPOINT.into(), source: None })
    }

    /// kubelet's image service endpoint, when set apart from the runtime endpoint.
    pub fn image_endpoint(&self) -> Option<Value> {
        self.setting("image-service-endpoint", &["imageServiceEndpoint"]).filter(|v| !v.value.is_empty())
    }

    /// The sandbox image kubelet is told about (`--pod-infra-container-image`), if any.
    pub fn pod_infra_image(&self) -> Option<Value> {
        self.flag("pod-infra-container-image")
            .map(|f| Value { value: f.value.clone(), source: Some(f.source.clone()) })
    }

    pub fn static_pod_path(&self) -> Option<Value> {
        self.setting("pod-manifest-path", &["staticPodPath"])
    }

    /// The node name kubelet registers when it is not the hostname (`--hostname-override`).
    pub fn hostname_override(&self) -> Option<Value> {
        self.setting("hostname-override", &["hostnameOverride"])
    }

    /// `systemReserved.memory` / `kubeReserved.memory` (or `--system-reserved=memory=...`).
    pub fn reserved_memory(&self, which: Reservation) -> Option<Value> {
        let (flag, key) = match which {
            Reservation::System => ("system-reserved", "systemReserved"),
            Reservation::Kube => ("kube-reserved", "kubeReserved"),
        };
        if let Some(f) = self.flag(flag) {
            return map_flag_entry(&f.value, "memory", '=')
                .map(|v| Value { value: v, source: Some(f.source.clone()) });
        }
        self.config.as_ref().and_then(|c| c.value(&[key, "memory"]))
    }

    /// The hard eviction threshold for `memory.available`.
    pub fn eviction_hard_memory(&self) -> EvictionHardMemory {
        if let Some(f) = self.flag("eviction-hard") {
            return match map_flag_entry(&f.value, "memory.available", '<') {
                Some(v) => EvictionHardMemory::Set(Value { value: v, source: Some(f.source.clone()) }),
                None => EvictionHardMemory::Missing,
            };
        }
        let Some(config) = &self.config else { return EvictionHardMemory::Default };
        if config.map_keys(&["evictionHard"]).is_none() {
            return EvictionHardMemory::Default;
        }
        match config.value(&["evictionHard", "memory.available"]) {
            Some(v) => EvictionHardMemory::Set(v),
            None => EvictionHardMemory::Missing,
        }
    }
}

/// What the kubelet's evictionHard says of `memory.available`.
#[derive(Debug, Clone, PartialEq)]
pub enum EvictionHardMemory {
    /// evictionHard is not set: the kubelet's default (100Mi) applies.
    Default,
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

/// Flags in an argument vector: `--name=value`, `--name value`, `--bool-flag`.
pub fn parse_args<S: AsRef<str>>(args: &[S], source: &str) -> Vec<Flag> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        i += 1;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { continue };
        if body.is_empty() {
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => match args.get(i).map(|a| a.as_ref()) {
                Some(next) if !next.starts_with('-') => {
                    i += 1;
                    (body.to_string(), next.to_string())
                }
                _ => (body.to_string(), "true".to_string()),
            },
        };
        out.push(Flag { name, value, source: source.to_string() });
    }
    out
}

/// Splits shell words: quotes, backslash escapes, backslash-newline continuations.
pub fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next()
                    && n != '\n' {
                        cur.push(n)
                    }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next()
                    && n != '\n' {
                        cur.push(n);
                        in_word = true;
                    }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// `KEY=VALUE` assignments of an env file (`KUBELET_KUBEADM_ARGS="--a=b --c=d"`), with lines.
pub fn parse_env_file(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut logical = t.trim_start_matches("export ").to_string();
        // Continuations and multi-line quoted values (Kubespray writes several lines).
        while (logical.ends_with('\\') || logical.matches('"').count() % 2 == 1) && logical.len() < 1 << 20 {
            match lines.next() {
                Some((_, next)) => {
                    if logical.ends_with('\\') {
                        logical.pop();
                    }
                    logical.push(' ');
                    logical.push_str(next.trim());
                }
                None => break,
            }
        }
        let Some((key, value)) = logical.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = shell_words(value).join(" ");
        out.push((key.to_string(), value, i + 1));
    }
    out
}

/// Flags from the kubelet unit, its drop-ins and the installers' env files.
fn flags_from_files(root: &HostRoot, sources: &mut Vec<PathBuf>, problems: &mut Vec<KubeletProblem>) -> Vec<Flag> {
    let mut flags = Vec::new();
    let mut unit_files = Vec::new();
    for dir in UNIT_DIRS {
        let unit = Path::new(dir).join("kubelet.service");
        if root.exists(&unit) {
            unit_files.push(unit);
        }
    }
    for dir in UNIT_DIRS {
        let mut dropins: Vec<PathBuf> = root
            .list_dir(&Path::new(dir).join("kubelet.service.d"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        dropins.sort();
        unit_files.extend(dropins);
    }
    for path in unit_files {
        match root.read_text(&path) {
            Ok(text) => {
                sources.push(path.clone());
                for (i, line) in text.lines().enumerate() {
                    let src = format!("{}:{}", path.display(), i + 1);
                    let t = line.trim();
                    if let Some(env) = t.strip_prefix("Environment=") {
                        for assignment in shell_words(env) {
                            if let Some((_, v)) = assignment.split_once('=') {
                                flags.extend(parse_args(&shell_words(v), &src));
                            }
                        }
                    } else if let Some(exec) = t.strip_prefix("ExecStart=") {
                        let words = shell_words(exec);
                        flags.extend(parse_args(&words[1.min(words.len())..], &src));
                    }
                }
            }
            Err(err) => problems.push(err.into()),
        }
    }
    for path in FLAG_ENV_FILES.iter().map(PathBuf::from) {
        match root.read_text(&path) {
            Ok(text) => {
                sources.push(path.clone());
                for (_, value, line) in parse_env_file(&text) {
                    let src = format!("{}:{line}", path.display());
                    flags.extend(parse_args(&shell_words(&value), &src));
                }
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => problems.push(err.into()),
        }
    }
    // `$VAR` words left from ExecStart are not flags.
    flags.retain(|f| !f.name.starts_with('$'));
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    // /var/lib/kubelet/kubeadm-flags.env as kubeadm 1.30 writes it.
    const KUBEADM_FLAGS: &str = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n";

    // Kubespray's /etc/kubernetes/kubelet.env (multi-line quoted KUBELET_ARGS).
    const KUBESPRAY_ENV: &str = r#"KUBE_LOGTOSTDERR="--logtostderr=true"
KUBE_LOG_LEVEL="--v=2"
KUBELET_ADDRESS="--node-ip=10.0.0.11"
KUBELET_HOSTNAME="--hostname-override=node1"

KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--config=/etc/kubernetes/kubelet-config.yaml \
--kubeconfig=/etc/kubernetes/kubelet.conf \
--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \
--runtime-cgroups=/system.slice/containerd.service \
 "
KUBELET_NETWORK_PLUGIN=""
KUBELET_CLOUDPROVIDER=""

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"#;

    #[test]
    fn env_files() {
        let vars = parse_env_file(KUBEADM_FLAGS);
        assert_eq!(vars.len(), 1);
        let flags = parse_args(&shell_words(&vars[0].1), "f:1");
        assert_eq!(flags[0].name, "container-runtime-endpoint");
        assert_eq!(flags[0].value, "unix:///var/run/containerd/containerd.sock");
        assert_eq!(flags[1].value, "registry.k8s.io/pause:3.9");

        let vars = parse_env_file(KUBESPRAY_ENV);
        let args = vars.iter().find(|v| v.0 == "KUBELET_ARGS").unwrap();
        assert_eq!(args.2, 6);
        let flags = parse_args(&shell_words(&args.1), "x");
        let names: Vec<&str> = flags.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["bootstrap-kubeconfig", "config", "kubeconfig", "container-runtime-endpoint", "runtime-cgroups"]);
    }

    #[test]
    fn args() {
        let flags = parse_args(&["--config", "/c.yaml", "--v=2", "--fail-swap-on", "--x=a=b"], "p");
        let got: Vec<(&str, &str)> = flags.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(got, [("config", "/c.yaml"), ("v", "2"), ("fail-swap-on", "true"), ("x", "a=b")]);
    }

    #[test]
    fn words() {
        assert_eq!(shell_words(r#"a "b c" 'd e' f\ g"#), ["a", "b c", "d e", "f g"]);
        assert_eq!(shell_words("\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\""), ["KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"]);
        assert_eq!(shell_words("\"unterminated"), ["unterminated"]);
    }

    #[test]
    fn sensitive_flags() {
        assert!(is_sensitive_flag("token"));
        assert!(is_sensitive_flag("registry-password"));
        assert!(!is_sensitive_flag("tls-private-key-file"));
        assert!(!is_sensitive_flag("container-runtime-endpoint"));
        assert!(!is_sensitive_flag("bootstrap-kubeconfig"));
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

    #[test]
    fn config_values_and_lines() {
        let c = ConfigFile::parse(Path::new("/var/lib/kubelet/config.yaml"), KUBEADM_CONFIG.into()).unwrap();
        let k = Kubelet { config: Some(c), ..Default::default() };
        assert_eq!(k.cgroup_driver(), Value { value: "systemd".into(), source: Some("/var/lib/kubelet/config.yaml:5".into()) });
        assert_eq!(k.reserved_memory(Reservation::System).map(|v| v.value), Some("1Gi".into()));
        assert_eq!(k.reserved_memory(Reservation::System).and_then(|v| v.source), Some("/var/lib/kubelet/config.yaml:15".into()));
        assert_eq!(k.reserved_memory(Reservation::Kube), None);
        assert!(matches!(k.eviction_hard_memory(), EvictionHardMemory::Set(v) if v.value == "100Mi"));
        assert_eq!(k.runtime_endpoint().source, None);
    }

    #[test]
    fn flags_override_config() {
        let c = ConfigFile::parse(Path::new("/c.yaml"), KUBEADM_CONFIG.into()).unwrap();
        let flags = parse_args(&["--cgroup-driver=cgroupfs", "--system-reserved=cpu=1,memory=2Gi", "--eviction-hard=nodefs.available<10%"], "p");
        let k = Kubelet { config: Some(c), flags, ..Default::default() };
        assert_eq!(k.cgroup_driver().value, "cgroupfs");
        assert_eq!(k.reserved_memory(Reservation::System).map(|v| v.value), Some("2Gi".into()));
        assert_eq!(k.eviction_hard_memory(), EvictionHardMemory::Missing);
    }

    #[test]
    fn feature_gates_from_flag_and_file() {
        let c = ConfigFile::parse(Path::new("/c.yaml"), "featureGates:\n  KubeletCgroupDriverFromCRI: false\n  Other: true\n".into()).unwrap();
        let mut k = Kubelet { config: Some(c), ..Default::default() };
        assert_eq!(k.feature_gate("KubeletCgroupDriverFromCRI"), Some(Value { value: "false".into(), source: Some("/c.yaml:2".into()) }));
        k.flags = parse_args(&["--feature-gates=Other=false,KubeletCgroupDriverFromCRI=true"], "p");
        assert_eq!(k.feature_gate("KubeletCgroupDriverFromCRI").map(|v| v.value), Some("true".into()));
        assert_eq!(k.feature_gate("Absent"), None);
    }

    #[test]
    fn bad_yaml_is_an_error_without_values() {
        for text in ["cgroupDriver: [systemd", "- a\n- b", "password: \"s3cret\"\n  bad: indent: here", "\t\u{0}", "a: &a [*a]"] {
            let r = ConfigFile::parse(Path::new("/c.yaml"), text.into());
            if let Err(e) = r {
                assert!(!e.to_string().contains("s3cret"), "{e}");
            }
        }
        assert!(ConfigFile::parse(Path::new("/c.yaml"), "- a\n".into()).is_err());
        assert!(ConfigFile::parse(Path::new("/c.yaml"), "".into()).is_ok());
    }
}
