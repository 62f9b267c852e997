//! One read of the node: everything the audit judges and attribution needs of kubelet,
//! collected in one pass from the host root (files, `/proc`) and the CRI sockets. Collecting
//! never fails: what cannot be read is recorded as a problem, which the audit turns into a
//! finding of its own.
//!
//! It reads and parses; it never judges (that is `audit`, which sees only a [`NodeSnapshot`]).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    binaries::{self, Binary, Location, Process},
    containerd_config::{self, ContainerdConfig, Release},
    cri_clients::{self, CriClient},
    cri_facts::{self, CriFacts},
    crio_config::CrioConfig,
    daemon_args::DaemonArgs,
    docker_config::{DockerConfig, HostCgroups},
    host_root::HostRoot,
    k0s::{self, K0sImages},
    kubelet::{self, Kubelet},
    memory,
    offline_images::{self, OfflineBundles},
    runtimes,
    static_pods::{self, ManifestError, StaticPod},
    systemd_unit,
};

/// Where the installers put static pods (kubeadm, Kubespray, kOps), assumed only when kubelet's
/// configuration could not be read: kubelet itself has no default (`staticPodPath: ""`).
pub const DEFAULT_STATIC_POD_PATH: &str = "/etc/kubernetes/manifests";

/// How the snapshot gets its CRI answers.
#[derive(Debug, Clone)]
pub enum CriSource {
    /// Ask the sockets under the host root, each call bounded by this timeout.
    Live { timeout: Duration },
    /// A recorded answer (tests, `check --cri-replay`).
    Recorded(CriFacts),
}

/// How to read the node.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub cri: CriSource,
    /// Time allowed for reading the runtime binaries' versions (their Go build info), all
    /// together: a stuck mount cannot hold the read up.
    pub read_timeout: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self { cri: CriSource::Live { timeout: Duration::from_millis(800) }, read_timeout: Duration::from_millis(800) }
    }
}

/// A component's release and where it was learned.
#[derive(Debug, Clone)]
pub struct KnownRelease {
    pub release: Release,
    pub source: String,
}

/// The node as one read saw it.
#[derive(Debug, Default)]
pub struct NodeSnapshot {
    /// The host root it was read from (`/`, or `/host` in the DaemonSet).
    pub host_root: PathBuf,
    pub processes: Option<Vec<Process>>,
    pub kubelet: Kubelet,
    pub containerd_config_path: PathBuf,
    pub containerd_config: ContainerdConfig,
    pub containerd_release: Option<KnownRelease>,
    /// CRI-O's files and command line.
    pub crio_config: CrioConfig,
    /// dockerd's `daemon.json` and command line, cri-dockerd's command line.
    pub docker_config: DockerConfig,
    /// What dockerd's default cgroup driver depends on.
    pub host_cgroups: HostCgroups,
    pub binaries: Vec<Binary>,
    pub memory_total: Option<u64>,
    pub memory_problem: Option<String>,
    pub static_pods: Vec<StaticPod>,
    pub manifest_problems: Vec<ManifestError>,
    pub k0s: Option<K0sImages>,
    /// Offline image bundles the node's distribution imports (an air-gapped node).
    pub offline_bundles: Vec<OfflineBundles>,
    /// containerd registry host files (`certs.d/*/hosts.toml`): mirrors that may serve pulls.
    pub registry_host_files: Vec<std::path::PathBuf>,
    /// Runtimes' systemd unit files present on the node.
    pub units: Vec<PathBuf>,
    pub cri: CriFacts,
    /// The CRI clients configured on the node and the socket each uses.
    pub cri_clients: Vec<CriClient>,
    /// Files whose change should re-read the node.
    pub watched: Vec<PathBuf>,
    /// How long the read took.
    pub elapsed: Duration,
    /// Set on the stand-in the reader publishes when a read missed its deadline (nothing else
    /// is then known): why, and since when the last complete read is all there is.
    pub stalled: Option<String>,
}

impl NodeSnapshot {
    /// The configured CRI clients of a socket.
    pub fn cri_clients_of(&self, socket: &Path) -> Vec<&CriClient> {
        let socket = cri_clients::canonical_socket(socket);
        self.cri_clients.iter().filter(|c| c.socket == socket).collect()
    }

    pub fn installed(&self, name: &str) -> Vec<&Binary> {
        self.binaries.iter().filter(|b| b.name == name && b.location == Location::Path).collect()
    }

    /// The runtime socket kubelet uses, as a host path (`unix://` stripped).
    pub fn kubelet_socket(&self) -> PathBuf {
        PathBuf::from(endpoint_path(&self.kubelet_endpoint().value))
    }

    /// Kubelet's runtime endpoint; without one set, its default: dockershim before 1.24
    /// (or with `--container-runtime=docker`), containerd's socket since.
    pub fn kubelet_endpoint(&self) -> kubelet::Value {
        let endpoint = self.kubelet.runtime_endpoint();
        if !endpoint.origin.is_default() {
            return endpoint;
        }
        let docker_flag = self.kubelet.flag("container-runtime").is_some_and(|f| f.value == "docker");
        let old_kubelet = self.installed("kubelet").iter().find_map(|b| b.version()).and_then(|v| Release::parse(&v)).is_some_and(|r| r.major == 1 && r.minor < 24);
        if docker_flag || old_kubelet {
            let cite = "before 1.24: the built-in dockershim's socket";
            return kubelet::Value { value: "unix:///var/run/dockershim.sock".into(), origin: kubelet::Origin::Default(cite) };
        }
        endpoint
    }

    /// Whether the node looks like a Kubernetes node (kubelet configured, installed or bootstrapping).
    pub fn expects_kubelet(&self) -> bool {
        self.kubelet.is_configured()
            || !self.installed("kubelet").is_empty()
            || self.processes.as_ref().is_some_and(|ps| ps.iter().any(is_bootstrap_agent))
    }

    /// kubelet's runtime endpoint (as configured, else its default), on a Kubernetes node.
    pub fn runtime_endpoint(&self) -> Option<String> {
        self.expects_kubelet().then(|| self.kubelet_endpoint().value)
    }

    /// kubelet's static pod directory (host path), on a Kubernetes node.
    pub fn static_pod_path(&self) -> Option<PathBuf> {
        self.expects_kubelet().then(|| self.manifest_dir()).flatten()
    }

    /// Where kubelet reads static pods from: its setting; none when its configuration was read
    /// and sets none; the installers' directory when it could not be read.
    fn manifest_dir(&self) -> Option<PathBuf> {
        if let Some(v) = self.kubelet.static_pod_path() {
            return Some(PathBuf::from(v.value));
        }
        // Known to set none: its file was read, or it runs without one.
        let known = self.kubelet.config.is_some() || (self.kubelet.running.is_some() && self.kubelet.config_path.is_none());
        (!known).then(|| PathBuf::from(DEFAULT_STATIC_POD_PATH))
    }

    /// What attribution needs of kubelet's configuration (host paths, symlinks not resolved).
    pub fn kubelet_hints(&self) -> KubeletHints {
        KubeletHints {
            static_pod_dir: self.static_pod_path(),
            node_name: self.kubelet.hostname_override().map(|v| v.value.to_ascii_lowercase()),
            runtime_socket: self.runtime_endpoint().map(|e| PathBuf::from(endpoint_path(&e))).filter(|p| p.is_absolute()),
        }
    }

    /// The release of a runtime: the CRI `Version` answer of a socket answering as `cri_name`
    /// (cri-dockerd answers with dockerd's release), else the installed `binary`'s version.
    pub fn runtime_release(&self, cri_name: &str, binary: &str) -> Option<KnownRelease> {
        let from_cri = self.cri.sockets.iter().find_map(|s| {
            let r = s.runtime().filter(|r| r.runtime_name == cri_name)?;
            Some(KnownRelease {
                release: Release::parse(&r.runtime_version)?,
                source: format!("unix://{} (CRI Version: {} {})", s.endpoint.display(), r.runtime_name, r.runtime_version),
            })
        });
        from_cri.or_else(|| self.binary_release(binary))
    }

    /// The version read from an installed binary: the running process's copy when it is one
    /// of them, else the first on the PATH.
    pub fn binary_release(&self, name: &str) -> Option<KnownRelease> {
        let running = self.processes.iter().flatten().find(|p| p.name() == name).and_then(|p| p.argv.first()).map(PathBuf::from);
        let mut installed = self.installed(name);
        installed.sort_by_key(|b| running.as_ref() != Some(&b.path));
        installed.into_iter().find_map(|b| {
            let v = b.version()?;
            Some(KnownRelease { release: Release::parse(&v)?, source: format!("{}: {}", b.path.display(), b.version_source.as_deref().unwrap_or(&v)) })
        })
    }

    /// The containerd release as `release (where it was learned)`.
    pub fn containerd_release_text(&self) -> Option<String> {
        self.containerd_release.as_ref().map(|r| format!("{} ({})", r.release, r.source))
    }
}

/// What kubelet's configuration says that attribution needs, as host paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeletHints {
    /// kubelet's `staticPodPath`.
    pub static_pod_dir: Option<PathBuf>,
    /// kubelet's `--hostname-override`, when set: static pods are named `<name>-<this>`.
    pub node_name: Option<String>,
    /// The runtime socket kubelet talks to (asked first); none for a TCP endpoint.
    pub runtime_socket: Option<PathBuf>,
}

/// Node bootstrap agents: while one runs, kubelet is expected to come.
pub fn is_bootstrap_agent(p: &Process) -> bool {
    runtimes::INSTALLERS.contains(&p.name())
}

/// `unix:///run/x.sock` -> `/run/x.sock`.
pub fn endpoint_path(endpoint: &str) -> &str {
    endpoint.strip_prefix("unix://").unwrap_or(endpoint)
}

/// Reads the node: its files, then its CRI sockets (or the recorded answer).
/// Bytes one read of the node's files may take in all (its configuration is kilobytes; the
/// process view has a budget of its own).
pub const READ_BUDGET: u64 = 32 * 1024 * 1024;

pub async fn collect(root: &HostRoot, options: &SnapshotOptions) -> NodeSnapshot {
    let started = Instant::now();
    let root = &root.with_read_budget(READ_BUDGET);
    let mut snapshot = collect_files(root, options.read_timeout).await;
    snapshot.cri = match &options.cri {
        CriSource::Recorded(cri) => cri.clone(),
        CriSource::Live { timeout } => cri_facts::ask(root, &candidate_sockets(&snapshot), *timeout).await,
    };
    snapshot.containerd_release = containerd_release(&snapshot);
    snapshot.elapsed = started.elapsed();
    snapshot
}

/// Reads the node's files (no sockets).
async fn collect_files(root: &HostRoot, read_timeout: Duration) -> NodeSnapshot {
    let mut facts =
        NodeSnapshot { host_root: root.root().to_path_buf(), processes: binaries::processes(root), ..Default::default() };
    let procs = facts.processes.clone().unwrap_or_default();
    facts.kubelet = Kubelet::load(root, &procs);
    facts.watched.extend(facts.kubelet.sources.iter().cloned());

    // containerd's config: the running containerd's --config, else its unit's, else k0s's, else
    // the default.
    let config_flag = |flags: Vec<kubelet::Flag>| {
        flags.into_iter().rev().find(|f| f.name == "config" || f.name == "c").map(|f| Path::new("/").join(f.value))
    };
    let running_config =
        procs.iter().filter(|p| p.name() == "containerd").find_map(|p| config_flag(kubelet::parse_args(&p.argv[1..], "")));
    let unit_config = || {
        let units = runtimes::RUNTIMES.iter().filter(|r| r.name == "containerd").flat_map(|r| r.units);
        units.filter_map(|name| systemd_unit::ServiceUnit::load(root, name)).find_map(|unit| {
            facts.watched.extend(unit.files.iter().cloned());
            let command = unit.main_command()?;
            config_flag(kubelet::parse_words(command.args.iter().map(|w| (w.text.as_str(), w.origin.as_str()))))
        })
    };
    let k0s_config = Path::new("/etc/k0s/containerd.toml");
    facts.containerd_config_path = running_config.or_else(unit_config).unwrap_or_else(|| {
        if root.exists(k0s_config) { k0s_config.into() } else { PathBuf::from(containerd_config::DEFAULT_CONFIG) }
    });
    facts.containerd_config = ContainerdConfig::load(root, &facts.containerd_config_path);
    facts.watched.push(facts.containerd_config_path.clone());
    facts.watched.extend(facts.containerd_config.files.iter().skip(1).map(|f| f.path.clone()));

    // CRI-O's and Docker's: the daemons' command lines, then the files they name.
    let unit_of = |name: &str| runtimes::RUNTIMES.iter().find(|r| r.name == name).map(|r| r.units).unwrap_or(&[]);
    facts.crio_config = CrioConfig::load(root, DaemonArgs::load(root, &procs, "crio", unit_of("cri-o")));
    facts.docker_config = DockerConfig::load(
        root,
        DaemonArgs::load(root, &procs, "dockerd", unit_of("docker")),
        DaemonArgs::load(root, &procs, "cri-dockerd", unit_of("cri-dockerd")),
    );
    facts.watched.extend(facts.crio_config.watched());
    facts.watched.extend(facts.docker_config.watched());
    facts.host_cgroups = HostCgroups::read(root);

    facts.binaries = binaries::find(root);
    binaries::read_versions(root, &mut facts.binaries, read_timeout).await;
    facts.watched.extend(facts.binaries.iter().filter(|b| b.location == Location::Path).map(|b| b.path.clone()));

    match root.read_text(Path::new("/proc/meminfo")).map(|t| memory::parse_meminfo_total(&t)) {
        Ok(Ok(total)) => facts.memory_total = Some(total),
        Ok(Err(e)) => facts.memory_problem = Some(e.to_string()),
        Err(e) => facts.memory_problem = Some(e.to_string()),
    }

    let (pods, problems) = facts.manifest_dir().map(|dir| static_pods::load_dir(root, &dir)).unwrap_or_default();
    facts.watched.extend(pods.iter().map(|p| p.path.clone()));
    facts.static_pods = pods;
    facts.manifest_problems = problems;

    let k0s = Path::new(k0s::CONFIG);
    match root.read_text(k0s) {
        Ok(text) => match k0s::parse(k0s, &text) {
            Ok(images) => facts.k0s = Some(images),
            Err(p) => facts.manifest_problems.push(p),
        },
        Err(e) if e.is_not_found() => {}
        Err(e) => facts.manifest_problems.push(e.into()),
    }
    facts.watched.push(k0s.into());

    for dir in systemd_unit::UNIT_PATH {
        for unit in runtimes::RUNTIMES.iter().flat_map(|r| r.units) {
            let path = Path::new(dir).join(unit);
            if root.exists(&path) {
                facts.units.push(path);
            }
        }
    }
    facts.offline_bundles = offline_images::find(root);
    facts.watched.extend(facts.offline_bundles.iter().map(|b| b.dir.clone()));
    facts.registry_host_files = offline_images::registry_host_files(root);
    if facts.expects_kubelet() {
        facts.cri_clients = cri_clients::kubelet_clients(&facts.kubelet, &facts.kubelet_endpoint());
    }
    facts.cri_clients.extend(cri_clients::crictl_clients(root));
    facts.watched.push(cri_clients::CRICTL_CONFIG.into());
    facts.watched.sort();
    facts.watched.dedup();
    facts
}

/// The sockets worth asking: kubelet's, containerd's `[grpc] address`, CRI-O's `listen` when
/// configured, and every runtime's.
fn candidate_sockets(facts: &NodeSnapshot) -> Vec<PathBuf> {
    let mut out = vec![facts.kubelet_socket(), facts.containerd_config.grpc_address()];
    let crio_listen = facts.crio_config.effective(None).listen;
    if crio_listen.source.is_some() {
        out.push(PathBuf::from(crio_listen.value));
    }
    out.extend(runtimes::cri_sockets().map(PathBuf::from));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The containerd release: the CRI answer of a containerd socket, else the installed binary.
fn containerd_release(facts: &NodeSnapshot) -> Option<KnownRelease> {
    facts.runtime_release("containerd", "containerd")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::systemd_unit::tests::host;

    /// containerd not running: its config is the one its unit names (containerd's own
    /// containerd.service, with an override's `-c` form), not the default path.
    #[tokio::test]
    async fn containerd_config_named_by_its_unit() {
        // https://github.com/containerd/containerd/blob/main/containerd.service (ExecStart line)
        let unit = "[Service]\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/local/bin/containerd\n";
        let dropin = "[Service]\nExecStart=\nExecStart=/usr/local/bin/containerd \\\n  -c /etc/containerd/node.toml\n";
        let (_dir, root) = host(&[
            ("/usr/lib/systemd/system/containerd.service", unit),
            ("/etc/systemd/system/containerd.service.d/10-config.conf", dropin),
            ("/etc/containerd/node.toml", "version = 2\n"),
        ]);
        let snapshot = collect_files(&root, Duration::from_millis(200)).await;
        assert_eq!(snapshot.containerd_config_path, Path::new("/etc/containerd/node.toml"));
        assert!(snapshot.watched.contains(&PathBuf::from("/etc/systemd/system/containerd.service.d/10-config.conf")));
    }
}
