//! Everything the rules look at, collected once per audit run from the host root (and the CRI
//! sockets, through [`CriFacts`]). Collecting never fails: what cannot be read is recorded as a
//! problem, which is a finding of its own.

use std::path::{Path, PathBuf};

use super::{
    cri_facts::CriFacts,
    manifests::{self, K0sImages, ManifestProblem},
};
use crate::node::{
    binaries::{self, Binary, Location, Process},
    containerd_config::{self, ContainerdConfig, Release},
    host_root::HostRoot,
    kubelet::Kubelet,
    memory,
    static_pods::StaticPod,
};

/// Well-known CRI sockets (host paths), looked at whether or not kubelet uses them.
pub const KNOWN_SOCKETS: [&str; 7] = [
    "/run/containerd/containerd.sock",
    "/run/k0s/containerd.sock",
    "/run/cri-dockerd.sock",
    "/var/run/dockershim.sock",
    "/run/crio/crio.sock",
    "/run/docker/containerd/containerd.sock",
    "/run/cri-docker/cri-dockerd.sock",
];

/// Systemd units of runtime shims and runtimes the audit looks for.
pub const RUNTIME_UNITS: [&str; 4] = ["cri-docker.service", "cri-docker.socket", "docker.service", "crio.service"];

/// The containerd release and where it was learned.
#[derive(Debug, Clone)]
pub struct KnownRelease {
    pub release: Release,
    pub source: String,
}

/// The node as the rules see it.
#[derive(Debug, Default)]
pub struct NodeFacts {
    pub processes: Option<Vec<Process>>,
    pub kubelet: Kubelet,
    pub containerd_config_path: PathBuf,
    pub containerd_config: ContainerdConfig,
    pub containerd_release: Option<KnownRelease>,
    pub binaries: Vec<Binary>,
    pub memory_total: Option<u64>,
    pub memory_problem: Option<String>,
    pub static_pods: Vec<StaticPod>,
    pub manifest_problems: Vec<ManifestProblem>,
    pub k0s: Option<K0sImages>,
    pub units: Vec<PathBuf>,
    pub cri: CriFacts,
    /// Files whose change should re-run the audit.
    pub watched: Vec<PathBuf>,
}

impl NodeFacts {
    pub fn installed(&self, name: &str) -> Vec<&Binary> {
        self.binaries.iter().filter(|b| b.name == name && b.location == Location::Path).collect()
    }

    /// The runtime socket kubelet uses, as a host path (`unix://` stripped).
    pub fn kubelet_socket(&self) -> PathBuf {
        PathBuf::from(endpoint_path(&self.kubelet_endpoint().value))
    }

    /// Kubelet's runtime endpoint; without one set, its default: dockershim before 1.24
    /// (or with `--container-runtime=docker`), containerd's socket since.
    pub fn kubelet_endpoint(&self) -> crate::node::kubelet::Value {
        let endpoint = self.kubelet.runtime_endpoint();
        if endpoint.source.is_some() {
            return endpoint;
        }
        let docker_flag = self.kubelet.flag("container-runtime").is_some_and(|f| f.value == "docker");
        let old_kubelet = self.installed("kubelet").iter().find_map(|b| b.version()).and_then(|v| Release::parse(&v)).is_some_and(|r| r.major == 1 && r.minor < 24);
        if docker_flag || old_kubelet {
            return crate::node::kubelet::Value { value: "unix:///var/run/dockershim.sock".into(), source: None };
        }
        endpoint
    }

    /// Whether the node looks like a Kubernetes node (kubelet configured, installed or bootstrapping).
    pub fn expects_kubelet(&self) -> bool {
        self.kubelet.is_configured()
            || !self.installed("kubelet").is_empty()
            || self.processes.as_ref().is_some_and(|ps| ps.iter().any(is_bootstrap_agent))
    }
}

/// Node bootstrap agents: while one runs, kubelet is expected to come.
pub fn is_bootstrap_agent(p: &Process) -> bool {
    matches!(p.name(), "nodeup" | "kubeadm" | "k0s" | "kk")
}

/// `unix:///run/x.sock` -> `/run/x.sock`.
pub fn endpoint_path(endpoint: &str) -> &str {
    endpoint.strip_prefix("unix://").unwrap_or(endpoint)
}

/// Collects the file-based facts (no sockets): the CRI part comes separately.
pub async fn collect_files(root: &HostRoot, exec_timeout: std::time::Duration) -> NodeFacts {
    let mut facts = NodeFacts { processes: binaries::processes(root), ..Default::default() };
    let procs = facts.processes.clone().unwrap_or_default();
    facts.kubelet = Kubelet::load(root, &procs);
    facts.watched.extend(facts.kubelet.sources.iter().cloned());

    // containerd's config: the running containerd's --config, else k0s's, else the default.
    let running_config = procs
        .iter()
        .filter(|p| p.name() == "containerd")
        .find_map(|p| crate::node::kubelet::parse_args(&p.argv[1..], "").into_iter().find(|f| f.name == "config" || f.name == "c"))
        .map(|f| PathBuf::from(f.value));
    let k0s_config = Path::new("/etc/k0s/containerd.toml");
    facts.containerd_config_path = running_config.unwrap_or_else(|| {
        if root.exists(k0s_config) { k0s_config.into() } else { PathBuf::from(containerd_config::DEFAULT_CONFIG) }
    });
    facts.containerd_config = ContainerdConfig::load(root, &facts.containerd_config_path);
    facts.watched.push(facts.containerd_config_path.clone());
    facts.watched.extend(facts.containerd_config.files.iter().skip(1).map(|f| f.path.clone()));

    facts.binaries = binaries::find(root);
    binaries::ask_versions(root, &mut facts.binaries, exec_timeout).await;
    facts.watched.extend(facts.binaries.iter().filter(|b| b.location == Location::Path).map(|b| b.path.clone()));

    match root.read_text(Path::new("/proc/meminfo")).map(|t| memory::parse_meminfo_total(&t)) {
        Ok(Ok(total)) => facts.memory_total = Some(total),
        Ok(Err(e)) => facts.memory_problem = Some(e.to_string()),
        Err(e) => facts.memory_problem = Some(e.to_string()),
    }

    let manifest_dir = facts
        .kubelet
        .static_pod_path()
        .map(|v| PathBuf::from(v.value))
        .unwrap_or_else(|| PathBuf::from(super::DEFAULT_STATIC_POD_PATH));
    let (pods, problems) = manifests::load_dir(root, &manifest_dir);
    facts.watched.extend(pods.iter().map(|p| p.path.clone()));
    facts.static_pods = pods;
    facts.manifest_problems = problems;

    let k0s = Path::new(manifests::K0S_CONFIG);
    match root.read_text(k0s) {
        Ok(text) => match manifests::parse_k0s(k0s, &text) {
            Ok(images) => facts.k0s = Some(images),
            Err(p) => facts.manifest_problems.push(p),
        },
        Err(e) if e.is_not_found() => {}
        Err(e) => facts.manifest_problems.push(e.into()),
    }
    facts.watched.push(k0s.into());

    for dir in crate::node::kubelet::UNIT_DIRS {
        for unit in RUNTIME_UNITS {
            let path = Path::new(dir).join(unit);
            if root.exists(&path) {
                facts.units.push(path);
            }
        }
    }
    facts.watched.sort();
    facts.watched.dedup();
    facts
}

/// The sockets worth asking: kubelet's, containerd's `[grpc] address`, and the well-known ones.
pub fn candidate_sockets(facts: &NodeFacts) -> Vec<PathBuf> {
    let mut out = vec![facts.kubelet_socket(), facts.containerd_config.grpc_address()];
    out.extend(KNOWN_SOCKETS.iter().map(PathBuf::from));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The containerd release: the CRI answer of a containerd socket, else the installed binary.
pub fn containerd_release(facts: &NodeFacts) -> Option<KnownRelease> {
    let from_cri = facts.cri.sockets.iter().find_map(|s| {
        let r = s.runtime()?;
        if r.runtime_name != "containerd" {
            return None;
        }
        Some(KnownRelease {
            release: Release::parse(&r.runtime_version)?,
            source: format!("unix://{} (CRI Version: {} {})", s.endpoint.display(), r.runtime_name, r.runtime_version),
        })
    });
    from_cri.or_else(|| {
        facts.installed("containerd").into_iter().find_map(|b| {
            let v = b.version()?;
            Some(KnownRelease { release: Release::parse(&v)?, source: format!("{} --version: {v}", b.path.display()) })
        })
    })
}
