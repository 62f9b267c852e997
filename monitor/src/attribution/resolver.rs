//! The resolver task: from a cgroup key to its owner, off the event path.
//!
//! For each key it finds the cgroup's path (v2 id, else v1 memory cgroup id; walks run in
//! `spawn_blocking`), parses it, and for containers names the pod: from the CRI (one
//! `ListPodSandbox` + `ListContainers` refreshes every container at once, at most every
//! [`MIN_LIST_INTERVAL`]), else from kubelet's log layout and static pod manifests. It checks
//! known cgroups periodically and reports removed ones so the stage forgets them.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{Answer, AttributionConfig, CgroupKey, ContainerOwner, Owner, OwnerKind, PodRef, Request, UnknownReason, kubelet_files, metrics::AttributionMetrics};
use crate::node::{
    cgroup_path::{self, CgroupOwner, ContainerCgroup},
    kubelet, runtimes,
    cgroupfs::{CgroupIndex, Mounts},
    cri::{self, CriApi},
    host_root::HostRoot,
    static_pods::{self, StaticPod},
};

/// The CRI is listed at most this often.
pub const MIN_LIST_INTERVAL: Duration = Duration::from_millis(100);
/// A runtime socket that did not answer is asked again after this long.
const CRI_REPROBE: Duration = Duration::from_secs(5);
/// A container the CRI does not list yet (a sandbox's processes run before RunPodSandbox
/// returns) is looked up again every [`MIN_LIST_INTERVAL`] for this long.
const RETRY_FOR: Duration = Duration::from_secs(3);
/// Static pod manifests are re-read after this long.
const MANIFESTS_MAX_AGE: Duration = Duration::from_secs(30);

pub(crate) struct Resolver {
    v2: Option<CgroupIndex>,
    memcg: Option<CgroupIndex>,
    sockets: Vec<PathBuf>,
    cri_timeout: Duration,
    /// The socket that answers (host path) and the API it serves.
    cri: Option<(PathBuf, CriApi)>,
    last_probe: Option<Instant>,
    containers: HashMap<String, cri::Container>,
    sandboxes: HashMap<String, cri::Sandbox>,
    last_list: Option<Instant>,
    static_dir: Option<PathBuf>,
    static_pods: Vec<StaticPod>,
    static_read: Option<Instant>,
    node_name: String,
    /// Whether `node_name` was given in the stage's settings (then kubelet's hints do not
    /// replace it).
    node_name_given: bool,
    /// Where kubelet's log directories are read (`AttributionConfig::host_root`).
    host_root: HostRoot,
    kubelet: Option<tokio::sync::watch::Receiver<super::KubeletHints>>,
    /// Keys answered, with the paths they were read from (for the removal sweep).
    known: HashMap<CgroupKey, (Option<String>, Option<String>)>,
    sweep_interval: Duration,
    metrics: AttributionMetrics,
}

impl Resolver {
    pub(crate) fn new(config: &AttributionConfig, metrics: AttributionMetrics) -> Self {
        let mounts = config.mounts.clone().unwrap_or_else(Mounts::discover);
        let host_root = HostRoot::new(&config.host_root);
        let node_name = config.node_name.clone().unwrap_or_else(|| kubelet::default_node_name(&host_root));
        Self {
            v2: mounts.v2.map(CgroupIndex::new),
            memcg: mounts.memory_v1.map(CgroupIndex::new),
            sockets: config.cri_sockets.clone(),
            cri_timeout: config.cri_timeout,
            cri: None,
            last_probe: None,
            containers: HashMap::new(),
            sandboxes: HashMap::new(),
            last_list: None,
            static_dir: config.static_pod_dir.clone(),
            static_pods: Vec::new(),
            static_read: None,
            node_name,
            node_name_given: config.node_name.is_some(),
            host_root,
            kubelet: config.kubelet.clone(),
            known: HashMap::new(),
            sweep_interval: config.sweep_interval.max(Duration::from_millis(100)),
            metrics,
        }
    }

    pub(crate) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>, answers: mpsc::UnboundedSender<Answer>) {
        let mut sweep = tokio::time::interval(self.sweep_interval);
        let mut retry = tokio::time::interval(MIN_LIST_INTERVAL);
        let mut retries: Vec<(CgroupKey, Instant)> = Vec::new();
        loop {
            tokio::select! {
                // Requests first: a cgroup learnt at its creation must not be swept (its
                // directory may be gone already) before the keys behind it are asked.
                biased;
                request = requests.recv() => {
                    let Some(request) = request else { break };
                    // Cgroups created are learnt first: the keys asked with them may be theirs.
                    let mut batch = Vec::new();
                    for request in std::iter::once(request).chain(std::iter::from_fn(|| requests.try_recv().ok())) {
                        match request {
                            Request::Owner(key) => batch.push(key),
                            Request::Created { hierarchy, id, path } => self.learn(hierarchy, id, &path),
                        }
                    }
                    batch.sort();
                    batch.dedup();
                    for key in batch {
                        let (owner, settled) = self.resolve(key).await;
                        if !settled && !retries.iter().any(|(k, _)| *k == key) {
                            retries.push((key, Instant::now()));
                        }
                        if answers.send(Answer::Owner { key, owner: Arc::new(owner), settled }).is_err() {
                            return;
                        }
                    }
                }
                _ = retry.tick(), if !retries.is_empty() => {
                    let mut still = Vec::new();
                    for (key, since) in std::mem::take(&mut retries) {
                        let (owner, settled) = self.resolve(key).await;
                        let settled = settled || since.elapsed() >= RETRY_FOR;
                        if !settled {
                            still.push((key, since));
                        }
                        if answers.send(Answer::Owner { key, owner: Arc::new(owner), settled }).is_err() {
                            return;
                        }
                    }
                    retries = still;
                }
                _ = sweep.tick() => {
                    for key in self.sweep() {
                        let _ = answers.send(Answer::Removed(key));
                    }
                }
            }
        }
    }

    /// A cgroup created at `path` in `hierarchy` (0: the unified one; else the memory
    /// controller's, the only v1 one the probes report).
    fn learn(&mut self, hierarchy: u32, id: u64, path: &str) {
        let index = if hierarchy == 0 { self.v2.as_mut() } else { self.memcg.as_mut() };
        if let Some(index) = index {
            index.learn(id, path);
        }
    }

    /// The owner of `key`, and whether it is final.
    async fn resolve(&mut self, key: CgroupKey) -> (Owner, bool) {
        // A cgroup read before keeps its path (ids are never reused), gone or not: a container
        // that exited while its owner was asked again (CRI had not listed it yet) is still that
        // container, and asking again walks no hierarchy.
        let (known_v2, known_memcg) = self.known.get(&key).cloned().unwrap_or_default();
        let v2_path = match known_v2 {
            Some(path) => Some(path),
            None => lookup(&mut self.v2, key.cgroup_id).await,
        };
        let memcg_path = match known_memcg {
            Some(path) => Some(path),
            None => lookup(&mut self.memcg, key.memcg_id).await,
        };
        if v2_path.is_none() && memcg_path.is_none() {
            return (Owner::unknown(UnknownReason::CgroupGone), true);
        }
        self.known.insert(key, (v2_path.clone(), memcg_path.clone()));
        // On hybrid nodes a runtime may leave the unified hierarchy alone: take whichever
        // path says more.
        let candidates = [v2_path, memcg_path];
        let (path, parsed) = candidates
            .iter()
            .flatten()
            .map(|p| (p.clone(), cgroup_path::parse(p)))
            .max_by_key(|(_, parsed)| specificity(parsed))
            .unwrap_or_else(|| (String::from("/"), CgroupOwner::Host { path: "/".into() }));
        let (kind, settled) = match parsed {
            CgroupOwner::Container(container) => self.container(container).await,
            CgroupOwner::Pod(pod) => {
                // A process in the pod's own cgroup (rare): the pod by uid, named when the
                // files say.
                let mut pod = PodRef { uid: pod.uid, ..Default::default() };
                if let Some((namespace, name)) = kubelet_files::find_pod(&self.host_root, &pod.uid) {
                    (pod.namespace, pod.name) = (namespace, name);
                }
                (OwnerKind::Pod(pod), true)
            }
            CgroupOwner::HostService { unit, service } => (OwnerKind::HostService { unit, service }, true),
            CgroupOwner::Host { .. } => (OwnerKind::Host, true),
        };
        (Owner::new(kind, Some(path)), settled)
    }

    async fn container(&mut self, parsed: ContainerCgroup) -> (OwnerKind, bool) {
        let id = parsed.id.as_str().to_string();
        let mut owner = ContainerOwner {
            runtime: parsed.runtime,
            id: parsed.id.clone(),
            name: None,
            pod: parsed.pod.as_ref().map(|p| PodRef { uid: p.uid.clone(), ..Default::default() }),
            sandbox: false,
            attempt: None,
        };
        self.follow_kubelet();
        self.refresh_static_pods();
        if self.ensure_cri().await {
            if !self.containers.contains_key(&id) && !self.sandboxes.contains_key(&id) {
                self.list().await;
            }
            if self.fill_from_cri(&mut owner) {
                return (OwnerKind::Container(owner), true);
            }
            if self.cri.is_some() {
                debug!(container = %id, "container not in CRI (yet)");
                // Not listed yet (being created), or not a CRI container at all (`ctr`): the
                // caller asks again for a while before settling.
                self.fill_from_files(&mut owner);
                return (OwnerKind::Container(owner), false);
            }
        }
        self.fill_from_files(&mut owner);
        (OwnerKind::Container(owner), true)
    }

    /// Finds a socket that answers, asking again at most every [`CRI_REPROBE`].
    async fn ensure_cri(&mut self) -> bool {
        if self.cri.is_some() {
            return true;
        }
        if self.last_probe.is_some_and(|at| at.elapsed() < CRI_REPROBE) || self.sockets.is_empty() {
            return false;
        }
        self.last_probe = Some(Instant::now());
        for socket in &self.sockets {
            // Host paths, resolved inside the host root (`/var/run` is often a link to `/run`).
            let Some(held) = self.host_root.socket(socket) else {
                continue;
            };
            let probe = cri::probe_socket(&held.path(), self.cri_timeout).await;
            if let Some(api) = probe.preferred_api() {
                info!(socket = %socket.display(), ?api, "attribution asks this CRI socket");
                self.cri = Some((socket.clone(), api));
                return true;
            }
            self.metrics.cri_errors.get_or_create(&super::metrics::CallLabels { call: "Version" }).inc();
        }
        false
    }

    async fn list(&mut self) {
        let Some((socket, api)) = self.cri.clone() else {
            return;
        };
        if let Some(at) = self.last_list {
            let since = at.elapsed();
            if since < MIN_LIST_INTERVAL {
                tokio::time::sleep(MIN_LIST_INTERVAL - since).await;
            }
        }
        self.last_list = Some(Instant::now());
        let Some(held) = self.host_root.socket(&socket) else {
            self.cri = None;
            return;
        };
        match cri::list_workloads(&held.path(), api, self.cri_timeout).await {
            Ok(workloads) => {
                self.containers = workloads.containers.into_iter().map(|c| (c.id.clone(), c)).collect();
                self.sandboxes = workloads.sandboxes.into_iter().map(|s| (s.id.clone(), s)).collect();
            }
            Err(err) => {
                debug!("CRI list failed: {err}");
                self.metrics.cri_errors.get_or_create(&super::metrics::CallLabels { call: "List" }).inc();
                if err.is_unreachable() {
                    self.cri = None;
                }
            }
        }
    }

    /// Names the container and its pod from the CRI's labels and annotations.
    fn fill_from_cri(&self, owner: &mut ContainerOwner) -> bool {
        let id = owner.id.as_str();
        let (sandbox, container) = if let Some(c) = self.containers.get(id) {
            (self.sandboxes.get(&c.sandbox_id), Some(c))
        } else if let Some(s) = self.sandboxes.get(id) {
            (Some(s), None)
        } else {
            return false;
        };
        let label = |key: &str| {
            container.and_then(|c| c.labels.get(key)).or_else(|| sandbox.and_then(|s| s.labels.get(key))).cloned()
        };
        let namespace = label("io.kubernetes.pod.namespace").or_else(|| sandbox.map(|s| s.namespace.clone())).unwrap_or_default();
        let name = label("io.kubernetes.pod.name").or_else(|| sandbox.map(|s| s.name.clone())).unwrap_or_default();
        let uid = label("io.kubernetes.pod.uid").or_else(|| sandbox.map(|s| s.uid.clone())).unwrap_or_default();
        let source = sandbox
            .and_then(|s| s.annotations.get("kubernetes.io/config.source"))
            .or_else(|| container.and_then(|c| c.annotations.get("kubernetes.io/config.source")));
        let static_pod = source.is_some_and(|s| s == "file" || s == "http");
        let manifest = static_pod
            .then(|| static_pods::find(&self.static_pods, &namespace, &name, &self.node_name).map(|p| p.path.clone()))
            .flatten();
        owner.name = match container {
            Some(c) => Some(label("io.kubernetes.container.name").unwrap_or_else(|| c.name.clone())),
            None => Some("POD".into()),
        };
        owner.sandbox = container.is_none();
        owner.attempt = container.map(|c| c.attempt);
        if owner.runtime == cgroup_path::Runtime::Unknown
            && let Some((socket, _)) = &self.cri {
                owner.runtime = cgroup_runtime_of_socket(socket);
            }
        owner.pod = Some(PodRef { namespace, name, uid, static_pod, manifest });
        true
    }

    /// Names the container from kubelet's log layout and the static pod manifests.
    fn fill_from_files(&self, owner: &mut ContainerOwner) {
        let uid = owner.pod.as_ref().map(|p| p.uid.clone()).unwrap_or_default();
        let logged = kubelet_files::find_container(&self.host_root, owner.id.as_str());
        let pod_dir = (!uid.is_empty()).then(|| kubelet_files::find_pod(&self.host_root, &uid)).flatten();
        let (namespace, name) = match (&logged, pod_dir) {
            (Some(l), _) => (l.namespace.clone(), l.pod.clone()),
            (None, Some(found)) => found,
            (None, None) => {
                // A static pod may declare its uid.
                match self.static_pods.iter().find(|p| !uid.is_empty() && p.uid.as_deref() == Some(uid.as_str())) {
                    Some(p) => (p.namespace.clone(), p.pod_name_on(&self.node_name)),
                    None => return,
                }
            }
        };
        let manifest = static_pods::find(&self.static_pods, &namespace, &name, &self.node_name).map(|p| p.path.clone());
        if owner.name.is_none() {
            owner.name = logged.map(|l| l.container).or_else(|| {
                // A static pod with one container names it.
                let pod = static_pods::find(&self.static_pods, &namespace, &name, &self.node_name)?;
                (pod.containers.len() == 1).then(|| pod.containers[0].name.clone())
            });
        }
        owner.pod = Some(PodRef { namespace, name, uid, static_pod: manifest.is_some(), manifest });
    }

    /// Takes what the node reader learnt of kubelet's configuration, when it changed: the static pod
    /// directory (re-read at once), the node name, and the runtime socket (asked first when
    /// no socket answered yet).
    fn follow_kubelet(&mut self) {
        let Some(hints) = self.kubelet.as_mut() else { return };
        if !hints.has_changed().unwrap_or(false) {
            return;
        }
        let hints = hints.borrow_and_update().clone();
        if let Some(dir) = hints.static_pod_dir
            && self.static_dir.as_ref() != Some(&dir)
        {
            info!(dir = %dir.display(), "static pods from kubelet's staticPodPath");
            self.static_dir = Some(dir);
            self.static_read = None;
        }
        // A node name given to the stage (the DaemonSet's spec.nodeName) is the truth.
        if let Some(name) = hints.node_name
            && !self.node_name_given
        {
            self.node_name = name;
        }
        if let Some(socket) = hints.runtime_socket
            && self.cri.is_none()
            && self.sockets.first() != Some(&socket)
        {
            self.sockets.retain(|s| *s != socket);
            self.sockets.insert(0, socket);
            self.last_probe = None;
        }
    }

    fn refresh_static_pods(&mut self) {
        let Some(dir) = &self.static_dir else { return };
        if self.static_read.is_some_and(|at| at.elapsed() < MANIFESTS_MAX_AGE) {
            return;
        }
        self.static_read = Some(Instant::now());
        let (pods, errors) = static_pods::load_dir(&self.host_root, dir);
        for err in errors.iter().take(3) {
            debug!("static pod manifest: {err}");
        }
        self.static_pods = pods;
    }

    /// Keys whose cgroups are gone.
    fn sweep(&mut self) -> Vec<CgroupKey> {
        let gone: Vec<CgroupKey> = self
            .known
            .iter()
            .filter(|(key, (v2, memcg))| {
                let v2_gone = match (v2, &self.v2) {
                    (Some(path), Some(index)) => !index.exists(key.cgroup_id, path),
                    _ => true,
                };
                let memcg_gone = match (memcg, &self.memcg) {
                    (Some(path), Some(index)) => !index.exists(key.memcg_id, path),
                    _ => true,
                };
                v2_gone && memcg_gone
            })
            .map(|(key, _)| *key)
            .collect();
        for key in &gone {
            self.known.remove(key);
        }
        if let Some(index) = self.v2.as_mut() {
            index.sweep();
        }
        if let Some(index) = self.memcg.as_mut() {
            index.sweep();
        }
        gone
    }
}

/// Path lookup in a blocking thread (it may walk the hierarchy).
async fn lookup(index: &mut Option<CgroupIndex>, id: u64) -> Option<String> {
    if id == 0 {
        return None;
    }
    let owned = index.take()?;
    let (owned, path) = match tokio::task::spawn_blocking(move || {
        let mut owned = owned;
        let path = owned.lookup(id);
        (owned, path)
    })
    .await
    {
        Ok(done) => done,
        Err(_) => return None,
    };
    *index = Some(owned);
    // The root of a hierarchy says nothing about the owner beyond "host"; keep it anyway.
    path
}

/// How much a parsed path says: a container beats a pod, a pod beats a unit, a unit the host.
fn specificity(owner: &CgroupOwner) -> u8 {
    match owner {
        CgroupOwner::Container(_) => 3,
        CgroupOwner::Pod(_) => 2,
        CgroupOwner::HostService { .. } => 1,
        CgroupOwner::Host { .. } => 0,
    }
}

/// The runtime a socket (host path) belongs to, by the table of runtimes.
fn cgroup_runtime_of_socket(socket: &std::path::Path) -> cgroup_path::Runtime {
    match runtimes::runtime_of_socket(&socket.to_string_lossy()).map(|r| r.name) {
        Some("cri-o") => cgroup_path::Runtime::CriO,
        Some("cri-dockerd" | "dockershim" | "docker") => cgroup_path::Runtime::Docker,
        _ => cgroup_path::Runtime::Containerd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container asked again (CRI had not listed it) after it exited and its cgroup was
    /// removed is still that container, not an owner whose cgroup is gone.
    #[tokio::test]
    async fn a_container_gone_between_two_asks_keeps_its_cgroup() {
        use std::os::unix::fs::MetadataExt as _;
        let root = std::env::temp_dir().join(format!("nrm-resolver-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let id = "8d1f0e5c3b7a49e2a6c4d8f0b2e4a6c8d0f2b4e6a8c0d2f4b6e8a0c2d4f6b8e0";
        let container = root.join(format!("cgroup/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/{id}"));
        std::fs::create_dir_all(&container).expect("mkdir");
        let config = AttributionConfig {
            cri_sockets: vec![root.join("no-such.sock")],
            host_root: root.clone(),
            mounts: Some(Mounts { v2: Some(root.join("cgroup")), memory_v1: None }),
            ..AttributionConfig::default()
        };
        let mut resolver = Resolver::new(&config, AttributionMetrics::unregistered(100));
        let key = CgroupKey { cgroup_id: std::fs::metadata(&container).expect("stat").ino(), memcg_id: 0 };
        let (first, _) = resolver.resolve(key).await;
        assert_eq!(first.container().map(|c| c.id.as_str().to_string()).as_deref(), Some(id), "{first:?}");
        std::fs::remove_dir(&container).expect("rmdir");
        let (again, _) = resolver.resolve(key).await;
        assert_eq!(again.container().map(|c| c.id.as_str().to_string()).as_deref(), Some(id), "{again:?}");
        // A cgroup never read is gone, not guessed.
        let (never, settled) = resolver.resolve(CgroupKey { cgroup_id: u64::MAX - 3, memcg_id: 0 }).await;
        assert!(matches!(never.kind, OwnerKind::Unknown { .. }) && settled, "{never:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_bare_id_is_named_by_the_socket_that_knows_it() {
        for (socket, runtime) in [
            ("/var/run/crio/crio.sock", cgroup_path::Runtime::CriO),
            ("/run/crio/crio.sock", cgroup_path::Runtime::CriO),
            ("/var/run/cri-dockerd.sock", cgroup_path::Runtime::Docker),
            ("/run/containerd/containerd.sock", cgroup_path::Runtime::Containerd),
        ] {
            assert_eq!(cgroup_runtime_of_socket(std::path::Path::new(socket)), runtime, "{socket}");
        }
    }
}
