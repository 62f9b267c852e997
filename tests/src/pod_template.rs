//! A DaemonSet's pod template turned into the CRI requests kubelet sends for it: the
//! `PodSandboxConfig` of RunPodSandbox and the `ContainerConfig` of each CreateContainer, built
//! the way kubelet's `kuberuntime` builds them (cgroupfs driver, cgroup v1 or v2), from the
//! manifest alone.
//!
//! The translator is strict: every field of the DaemonSet, its pod template, containers,
//! volumes and security contexts must be one it knows what to do with, or [`translate`] fails
//! naming it. A field added to the manifest is then either taught here or makes the tests that
//! run the manifest fail; it is never ignored silently.
//!
//! What kubelet does and how it is done here:
//! - Pod: named as the DaemonSet controller names it (`<name>-<5 chars>`, a random uid), labels
//!   and annotations as kubelet copies them, `kubernetes.io/config.source: api`.
//! - Namespaces: `hostPID` -> pid NODE (else CONTAINER, `shareProcessNamespace` unsupported),
//!   `hostIPC` -> ipc NODE (else POD), `hostNetwork` -> network NODE (else POD), for the
//!   sandbox and every container.
//! - Security contexts (pod and container, container wins): privileged, capabilities add/drop
//!   passed as written (`BPF`: containerd adds the `CAP_` prefix itself), readOnlyRootFilesystem,
//!   allowPrivilegeEscalation: false -> no_new_privs, runAsUser/runAsGroup (runAsNonRoot
//!   checked), supplementalGroups and fsGroup, procMount (default masked and read-only paths,
//!   none for privileged containers), seccompProfile (Unconfined, RuntimeDefault, Localhost
//!   under `<kubelet root>/seccomp`; nothing set -> Unconfined, kubelet's default without
//!   `--seccomp-default`), sent both as `seccomp` and as the older `seccomp_profile_path`.
//! - Volumes: hostPath (its `type` checked or the directory/file created as kubelet does, see
//!   [`Pod::prepare`]) and emptyDir on the node's disk (a directory under the pod's, as kubelet
//!   makes it; its `sizeLimit` is kubelet's eviction manager's, not the runtime's). Each
//!   volumeMount -> a CRI Mount with the host path (a hostPath under [`Node::host_root`]),
//!   readOnly, subPath, mountPropagation (None -> PRIVATE, HostToContainer
//!   -> HOST_TO_CONTAINER, Bidirectional -> BIDIRECTIONAL, privileged only). kubelet's
//!   termination-message file is mounted at `terminationMessagePath`.
//! - command/args (with `$(VAR)` expansion), workingDir, env (value, `$(VAR)` references to
//!   earlier variables, fieldRef: metadata.name/namespace/uid/labels/annotations, spec.nodeName,
//!   spec.serviceAccountName, status.hostIP(s), status.podIP(s); resourceFieldRef), ports ->
//!   port mappings and the `io.kubernetes.container.ports` annotation.
//! - Resources (kubelet's `calculateLinuxResources`): cpu shares = requests milliCPU * 1024 /
//!   1000 (limits when no request, minimum 2), quota = limits milliCPU * period / 1000 (minimum
//!   1000) with period 100000, memory limit, swap limit = memory limit (no swap), oom_score_adj
//!   by QoS class (`-997` for system-node-critical pods), cgroup parent by QoS class.
//! - Probes (httpGet only), tolerations, nodeSelector, affinity, priorityClassName, restart
//!   policy, update strategy: kubelet-side or scheduler-side, no CRI field; read and kept for
//!   the caller ([`Container::readiness`]) or checked for consistency.
//!
//! Not done (no API server, no CNI here): projected service account tokens
//! (`automountServiceAccountToken` must be false), service environment variables
//! (`enableServiceLinks` must be false; the `KUBERNETES_SERVICE_*` variables kubelet adds from
//! the API server are not), other volume types and tmpfs emptyDirs, init containers, pod-level cgroup limits of
//! kubelet's QoS manager, kubelet's managed `/etc/hosts`. The sandbox's log directory is
//! [`Node::log_root`], not `/var/log/pods`.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_cri::v1 as cri;
use serde_json::{Map, Value, json};

/// kubelet's CFS period (`--cpu-cfs-quota-period` default), in microseconds.
pub const CPU_PERIOD: i64 = 100_000;
/// `pkg/kubelet/qos`: the OOM score of guaranteed and node-critical pods, and of best-effort ones.
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// `pkg/securitycontext`: what runtimes mask and make read-only in /proc and /sys by default.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const DEFAULT_READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// What kubelet knows about its node, and where it keeps a pod's files.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name (kubelet: the hostname, lowercased): `spec.nodeName`.
    pub name: String,
    /// `status.hostIP`; also `status.podIP` of a pod on the host network.
    pub host_ip: Option<IpAddr>,
    /// Memory capacity in bytes (burstable pods' oom_score_adj).
    pub memory_capacity: u64,
    /// The root every hostPath is under: `/` for a pod that must see the real host.
    pub host_root: PathBuf,
    /// kubelet's root dir (`/var/lib/kubelet`): pods' own files (termination-message files).
    pub kubelet_root: PathBuf,
    /// Where pods' log directories go (`/var/log/pods`).
    pub log_root: PathBuf,
    /// Where Localhost seccomp profiles are (`<kubelet root>/seccomp` of the real kubelet).
    pub seccomp_root: PathBuf,
}

impl Node {
    /// This host as kubelet would see it, with kubelet's own files under `work` (the host root
    /// is `/`).
    pub fn this_host(work: &Path) -> Result<Self> {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").context("hostname")?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("MemTotal in /proc/meminfo")?;
        // The address the host would use to reach anything outside: a UDP "connect" sends nothing.
        let host_ip = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
            .ok()
            .map(|a| a.ip());
        Ok(Self {
            name: hostname.trim().to_lowercase(),
            host_ip,
            memory_capacity: mem_kib * 1024,
            host_root: PathBuf::from("/"),
            kubelet_root: work.join("kubelet"),
            log_root: work.join("pods-logs"),
            seccomp_root: PathBuf::from("/var/lib/kubelet/seccomp"),
        })
    }

    /// `path` (absolute, as a manifest names it on the host) under [`Node::host_root`].
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.host_root.join(path.trim_start_matches('/'))
    }
}

/// Who the pod is: what the DaemonSet controller and the API server give it.
#[derive(Clone, Debug)]
pub struct PodIdentity {
    /// The 5 characters after `<daemonset name>-`.
    pub suffix: String,
    pub uid: String,
}

impl PodIdentity {
    pub fn random() -> Self {
        let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("random uuid").trim().to_string();
        // The controller's suffix alphabet (no vowels, no look-alikes), from the uid's bytes.
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix = uid.bytes().filter(u8::is_ascii_hexdigit).take(5).map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect();
        Self { suffix, uid }
    }
}

/// The pod as kubelet asks the runtime for it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox: cri::PodSandboxConfig,
    pub containers: Vec<Container>,
    /// Every volume, for [`Pod::prepare`].
    pub volumes: Vec<Volume>,
    /// `terminationGracePeriodSeconds` (default 30): StopContainer's timeout.
    pub termination_grace: Duration,
    /// Where kubelet keeps this pod's files.
    pub pod_dir: PathBuf,
    pub qos: Qos,
}

#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    /// The image as the manifest names it (kubelet's ImageStatus/PullImage argument); the
    /// config's `image.image` is set to the image id by [`Container::config_for`].
    pub image: String,
    pub pull_policy: PullPolicy,
    pub config: cri::ContainerConfig,
    /// Named container ports.
    pub ports: BTreeMap<String, u16>,
    pub readiness: Option<HttpGet>,
    pub liveness: Option<HttpGet>,
    pub startup: Option<HttpGet>,
    /// The host file kubelet mounts at `terminationMessagePath`.
    pub termination_log: Option<PathBuf>,
}

impl Container {
    /// The config with the image kubelet resolved (`ImageStatus` id) in place.
    pub fn config_for(&self, image_id: &str) -> cri::ContainerConfig {
        let mut config = self.config.clone();
        config.image = Some(cri::ImageSpec { image: image_id.to_string(), user_specified_image: self.image.clone(), ..Default::default() });
        config
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// An httpGet probe, its port resolved to a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    pub path: String,
    pub port: u16,
    pub period: Duration,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Unset,
    Directory,
    DirectoryOrCreate,
    File,
    FileOrCreate,
    Socket,
    CharDevice,
    BlockDevice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    HostPath(HostPathType),
    /// A directory of kubelet's under the pod's directory (medium: the node's disk).
    EmptyDir,
}

#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    /// The path on this host: under [`Node::host_root`] for a hostPath, the pod's directory
    /// for an emptyDir.
    pub path: PathBuf,
    pub kind: VolumeKind,
}

/// Translates the DaemonSet `manifest` (parsed YAML, as JSON values) into the pod kubelet would
/// run on `node`. Fails on anything it does not understand.
pub fn translate(manifest: &Value, node: &Node, identity: &PodIdentity) -> Result<Pod> {
    let top = object(manifest, "DaemonSet", &["apiVersion", "kind", "metadata", "spec"])?;
    ensure!(str_of(top, "apiVersion", "DaemonSet")? == Some("apps/v1"), "apiVersion must be apps/v1");
    ensure!(str_of(top, "kind", "DaemonSet")? == Some("DaemonSet"), "kind must be DaemonSet");
    let meta = object(req(top, "metadata", "DaemonSet")?, "metadata", &["name", "namespace", "labels", "annotations"])?;
    let ds_name = str_of(meta, "name", "metadata")?.context("metadata.name")?;
    let namespace = str_of(meta, "namespace", "metadata")?.unwrap_or("default").to_string();
    let spec = object(
        req(top, "spec", "DaemonSet")?,
        "spec",
        &["selector", "updateStrategy", "minReadySeconds", "revisionHistoryLimit", "template"],
    )?;
    let template = object(req(spec, "template", "spec")?, "spec.template", &["metadata", "spec"])?;
    let template_meta = match template.get("metadata") {
        Some(m) => object(m, "spec.template.metadata", &["labels", "annotations"])?.clone(),
        None => Map::new(),
    };
    let labels = string_map(template_meta.get("labels"), "spec.template.metadata.labels")?;
    let annotations = string_map(template_meta.get("annotations"), "spec.template.metadata.annotations")?;
    // The API server rejects a DaemonSet whose selector does not select its own template.
    let selector = object(req(spec, "selector", "spec")?, "spec.selector", &["matchLabels"])?;
    for (k, v) in string_map(selector.get("matchLabels"), "spec.selector.matchLabels")? {
        ensure!(labels.get(&k) == Some(&v), "spec.selector.matchLabels {k}={v} does not select the template's labels");
    }
    if let Some(strategy) = spec.get("updateStrategy") {
        let s = object(strategy, "spec.updateStrategy", &["type", "rollingUpdate"])?;
        if let Some(r) = s.get("rollingUpdate") {
            object(r, "spec.updateStrategy.rollingUpdate", &["maxUnavailable", "maxSurge"])?;
        }
    }

    let pod_spec = object(
        req(template, "spec", "spec.template")?,
        "spec.template.spec",
        &[
            "containers",
            "volumes",
            "hostPID",
            "hostNetwork",
            "hostIPC",
            "automountServiceAccountToken",
            "enableServiceLinks",
            "priorityClassName",
            "terminationGracePeriodSeconds",
            "tolerations",
            "nodeSelector",
            "affinity",
            "serviceAccountName",
            "restartPolicy",
            "dnsPolicy",
            "securityContext",
        ],
    )?;
    let at = "spec.template.spec";
    let host_pid = bool_of(pod_spec, "hostPID", at)?.unwrap_or(false);
    let host_network = bool_of(pod_spec, "hostNetwork", at)?.unwrap_or(false);
    let host_ipc = bool_of(pod_spec, "hostIPC", at)?.unwrap_or(false);
    ensure!(
        bool_of(pod_spec, "automountServiceAccountToken", at)? == Some(false),
        "{at}.automountServiceAccountToken must be false: a projected token volume needs the API server"
    );
    ensure!(
        bool_of(pod_spec, "enableServiceLinks", at)? == Some(false),
        "{at}.enableServiceLinks must be false: service environment variables need the API server"
    );
    let restart = str_of(pod_spec, "restartPolicy", at)?.unwrap_or("Always");
    ensure!(restart == "Always", "{at}.restartPolicy: a DaemonSet's pods restart Always, not {restart}");
    let priority_class = str_of(pod_spec, "priorityClassName", at)?.unwrap_or("");
    let grace = match pod_spec.get("terminationGracePeriodSeconds") {
        Some(v) => v.as_u64().with_context(|| format!("{at}.terminationGracePeriodSeconds: {v}"))?,
        None => 30,
    };
    if let Some(t) = pod_spec.get("tolerations") {
        for (i, t) in list(t, &format!("{at}.tolerations"))?.iter().enumerate() {
            object(t, &format!("{at}.tolerations[{i}]"), &["key", "operator", "value", "effect", "tolerationSeconds"])?;
        }
    }
    string_map(pod_spec.get("nodeSelector"), &format!("{at}.nodeSelector"))?;
    let dns_policy = str_of(pod_spec, "dnsPolicy", at)?.unwrap_or("ClusterFirst");
    ensure!(
        ["ClusterFirst", "ClusterFirstWithHostNet", "Default"].contains(&dns_policy),
        "{at}.dnsPolicy {dns_policy} not supported"
    );
    let pod_sc = PodSecurity::read(pod_spec.get("securityContext"), &format!("{at}.securityContext"))?;

    let name = format!("{ds_name}-{}", identity.suffix);
    let uid = identity.uid.clone();
    let pod_dir = node.kubelet_root.join("pods").join(&uid);
    let log_directory = node.log_root.join(format!("{namespace}_{name}_{uid}"));

    // Volumes: hostPath and emptyDir.
    let mut volumes: HashMap<String, Volume> = HashMap::new();
    let mut all_volumes = Vec::new();
    if let Some(v) = pod_spec.get("volumes") {
        for (i, v) in list(v, &format!("{at}.volumes"))?.iter().enumerate() {
            let vat = format!("{at}.volumes[{i}]");
            let vol = object(v, &vat, &["name", "hostPath", "emptyDir"])?;
            let vname = str_of(vol, "name", &vat)?.with_context(|| format!("{vat}.name"))?.to_string();
            ensure!(vol.len() == 2, "{vat} ({vname}): one volume source expected");
            if let Some(empty) = vol.get("emptyDir") {
                let eat = format!("{vat}.emptyDir");
                let empty = object(empty, &eat, &["medium", "sizeLimit"])?;
                ensure!(
                    str_of(empty, "medium", &eat)?.unwrap_or("").is_empty(),
                    "{eat}.medium: only the node's disk (\"\") is supported, not a tmpfs"
                );
                // sizeLimit: enforced by kubelet's eviction manager, not the runtime.
                if let Some(limit) = empty.get("sizeLimit") {
                    Quantity::parse(&quantity_text(limit)?).with_context(|| format!("{eat}.sizeLimit"))?;
                }
                // kubelet: <pod dir>/volumes/kubernetes.io~empty-dir/<name>.
                let path = node.kubelet_root.join("pods").join(&identity.uid).join("volumes/kubernetes.io~empty-dir").join(&vname);
                let volume = Volume { name: vname.clone(), path, kind: VolumeKind::EmptyDir };
                ensure!(volumes.insert(vname.clone(), volume.clone()).is_none(), "{vat}: volume {vname} twice");
                all_volumes.push(volume);
                continue;
            }
            let hp = object(
                vol.get("hostPath").with_context(|| format!("{vat} ({vname}): only hostPath and emptyDir volumes are supported"))?,
                &format!("{vat}.hostPath"),
                &["path", "type"],
            )?;
            let path = str_of(hp, "path", &vat)?.with_context(|| format!("{vat}.hostPath.path"))?;
            ensure!(path.starts_with('/'), "{vat}.hostPath.path {path} is not absolute");
            let kind = match str_of(hp, "type", &vat)?.unwrap_or("") {
                "" => HostPathType::Unset,
                "Directory" => HostPathType::Directory,
                "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
                "File" => HostPathType::File,
                "FileOrCreate" => HostPathType::FileOrCreate,
                "Socket" => HostPathType::Socket,
                "CharDevice" => HostPathType::CharDevice,
                "BlockDevice" => HostPathType::BlockDevice,
                other => bail!("{vat}.hostPath.type {other} unknown"),
            };
            let volume = Volume { name: vname.clone(), path: node.host_path(path), kind: VolumeKind::HostPath(kind) };
            ensure!(volumes.insert(vname.clone(), volume.clone()).is_none(), "{vat}: volume {vname} twice");
            all_volumes.push(volume);
        }
    }

    // Containers, then what the pod as a whole gets from them.
    let containers_v = list(req(pod_spec, "containers", at)?, &format!("{at}.containers"))?;
    ensure!(!containers_v.is_empty(), "{at}.containers is empty");
    let mut parsed = Vec::new();
    for (i, c) in containers_v.iter().enumerate() {
        parsed.push(ContainerSpec::read(c, &format!("{at}.containers[{i}]"), &volumes)?);
    }
    let qos = qos_class(&parsed);
    // kubelet's IsNodeCriticalPod: a critical pod (the system classes' priority is) of this class.
    let node_critical = priority_class == "system-node-critical";
    let cgroup_parent = match qos {
        Qos::Guaranteed => format!("/kubepods/pod{uid}"),
        Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
        Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
    };
    let namespaces = cri::NamespaceOption {
        network: if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32,
        pid: if host_pid { cri::NamespaceMode::Node } else { cri::NamespaceMode::Container } as i32,
        ipc: if host_ipc { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32,
        ..Default::default()
    };

    let mut sandbox_labels: HashMap<String, String> = labels.clone().into_iter().collect();
    sandbox_labels.insert("io.kubernetes.pod.name".into(), name.clone());
    sandbox_labels.insert("io.kubernetes.pod.namespace".into(), namespace.clone());
    sandbox_labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
    let mut sandbox_annotations: HashMap<String, String> = annotations.clone().into_iter().collect();
    sandbox_annotations.insert("kubernetes.io/config.source".into(), "api".into());
    sandbox_annotations.insert("kubernetes.io/config.seen".into(), rfc3339_now());
    let port_mappings = parsed
        .iter()
        .flat_map(|c| c.ports.iter())
        .map(|p| cri::PortMapping {
            protocol: p.protocol as i32,
            container_port: i32::from(p.container_port),
            host_port: i32::from(p.host_port),
            host_ip: p.host_ip.clone(),
        })
        .collect();
    let pod_info = PodInfo {
        name: &name,
        namespace: &namespace,
        uid: &uid,
        labels: &labels,
        annotations: &annotations,
        service_account: str_of(pod_spec, "serviceAccountName", at)?.unwrap_or("default"),
        node,
    };
    let dns_config = dns_config(node, dns_policy, host_network)?;
    let sandbox_seccomp = pod_sc.seccomp.clone().unwrap_or(Seccomp::Unconfined);
    // `seccomp_profile_path` is deprecated in CRI but what runtimes before `seccomp` read.
    #[allow(deprecated)]
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.clone(), uid: uid.clone(), namespace: namespace.clone(), attempt: 0 }),
        // kubelet leaves the hostname to the runtime for pods on the host network.
        hostname: if host_network { String::new() } else { name.clone() },
        log_directory: log_directory.to_string_lossy().into_owned(),
        dns_config,
        port_mappings,
        labels: sandbox_labels,
        annotations: sandbox_annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                run_as_user: pod_sc.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: pod_sc.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: pod_sc.supplemental_groups(),
                privileged: parsed.iter().any(|c| c.security.privileged),
                seccomp: Some(sandbox_seccomp.profile(node)),
                seccomp_profile_path: sandbox_seccomp.path(node),
                ..Default::default()
            }),
            sysctls: pod_sc.sysctls.iter().cloned().collect(),
            resources: Some(pod_resources(&parsed)),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut containers = Vec::new();
    for c in parsed {
        containers.push(c.into_cri(&pod_info, &pod_sc, &namespaces, &pod_dir, qos, node_critical, grace)?);
    }
    Ok(Pod {
        namespace,
        name,
        uid,
        sandbox,
        containers,
        volumes: all_volumes,
        termination_grace: Duration::from_secs(grace),
        pod_dir,
        qos,
    })
}

impl Pod {
    /// What kubelet does on the host before it asks the runtime: checks each hostPath against
    /// its `type` (creating it for the `...OrCreate` types), creates emptyDirs, the pod's directories and
    /// termination-message files and the sandbox's log directory. What it created is removed
    /// when the returned guard is dropped (directories only if empty).
    pub fn prepare(&self) -> Result<Prepared> {
        let mut prepared = Prepared { created: Vec::new(), owned: vec![self.pod_dir.clone(), PathBuf::from(&self.sandbox.log_directory)] };
        use std::os::unix::fs::FileTypeExt as _;
        prepared.create_dir(&self.pod_dir, 0o750)?;
        for hp in &self.volumes {
            let meta = std::fs::metadata(&hp.path);
            let what = |ok: bool, want: &str| -> Result<()> {
                ensure!(ok, "hostPath volume {}: {} is not a {want}", hp.name, hp.path.display());
                Ok(())
            };
            let VolumeKind::HostPath(kind) = hp.kind else {
                // An emptyDir: world-writable, as kubelet makes it.
                prepared.create_dir(&hp.path, 0o777)?;
                continue;
            };
            match kind {
                HostPathType::Unset => {}
                HostPathType::Directory => what(meta.as_ref().is_ok_and(|m| m.is_dir()), "directory")?,
                HostPathType::File => what(meta.as_ref().is_ok_and(|m| m.is_file()), "file")?,
                HostPathType::Socket => what(meta.as_ref().is_ok_and(|m| m.file_type().is_socket()), "socket")?,
                HostPathType::CharDevice => what(meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()), "character device")?,
                HostPathType::BlockDevice => what(meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()), "block device")?,
                HostPathType::DirectoryOrCreate => match meta {
                    Ok(m) => what(m.is_dir(), "directory")?,
                    Err(_) => prepared.create_dir(&hp.path, 0o755)?,
                },
                HostPathType::FileOrCreate => match meta {
                    Ok(m) => what(m.is_file(), "file")?,
                    Err(_) => {
                        if let Some(parent) = hp.path.parent() {
                            prepared.create_dir(parent, 0o755)?;
                        }
                        prepared.create_file(&hp.path, 0o644)?;
                    }
                },
            }
        }
        if !self.sandbox.log_directory.is_empty() {
            prepared.create_dir(Path::new(&self.sandbox.log_directory), 0o755)?;
        }
        for c in &self.containers {
            if let Some(file) = &c.termination_log {
                prepared.create_dir(file.parent().context("termination log dir")?, 0o750)?;
                prepared.create_file(file, 0o666)?;
            }
        }
        Ok(prepared)
    }
}

/// What [`Pod::prepare`] created on the host; removed on drop, newest first: kubelet's own
/// directories of the pod (its pod and log directories) with everything in them, what it created
/// for hostPath volumes only if still empty.
#[derive(Debug)]
pub struct Prepared {
    pub created: Vec<PathBuf>,
    /// Removed whole.
    pub owned: Vec<PathBuf>,
}

impl Prepared {
    /// `mkdir -p`, remembering each directory it made.
    fn create_dir(&mut self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(p) = at.filter(|p| !p.exists()) {
            missing.push(p.to_path_buf());
            at = p.parent();
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
            self.created.push(dir);
        }
        Ok(())
    }

    fn create_file(&mut self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        if !path.exists() {
            std::fs::write(path, b"").with_context(|| format!("create {}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            self.created.push(path.to_path_buf());
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for tree in &self.owned {
            if tree.is_dir() {
                let _ = std::fs::remove_dir_all(tree);
            }
        }
        for path in self.created.iter().rev() {
            if path.is_dir() {
                // Only if empty: whatever else put files there keeps them.
                let _ = std::fs::remove_dir(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What a container's env and field references can name.
struct PodInfo<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    service_account: &'a str,
    node: &'a Node,
}

#[derive(Clone, Debug)]
enum Seccomp {
    Unconfined,
    RuntimeDefault,
    Localhost(String),
}

impl Seccomp {
    fn read(v: &Value, at: &str) -> Result<Self> {
        let o = object(v, at, &["type", "localhostProfile"])?;
        Ok(match str_of(o, "type", at)? {
            Some("Unconfined") => Self::Unconfined,
            Some("RuntimeDefault") => Self::RuntimeDefault,
            Some("Localhost") => Self::Localhost(str_of(o, "localhostProfile", at)?.with_context(|| format!("{at}.localhostProfile"))?.to_string()),
            other => bail!("{at}.type {other:?} unknown"),
        })
    }

    fn profile(&self, node: &Node) -> cri::SecurityProfile {
        use cri::security_profile::ProfileType;
        match self {
            Self::Unconfined => cri::SecurityProfile { profile_type: ProfileType::Unconfined as i32, localhost_ref: String::new() },
            Self::RuntimeDefault => cri::SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() },
            Self::Localhost(p) => cri::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: node.seccomp_root.join(p).to_string_lossy().into_owned(),
            },
        }
    }

    /// The deprecated `seccomp_profile_path` kubelet sent until 1.26 (runtimes of that time
    /// read only it).
    fn path(&self, node: &Node) -> String {
        match self {
            Self::Unconfined => "unconfined".into(),
            Self::RuntimeDefault => "runtime/default".into(),
            Self::Localhost(p) => format!("localhost/{}", node.seccomp_root.join(p).display()),
        }
    }
}

/// The pod's securityContext.
#[derive(Default)]
struct PodSecurity {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    groups: Vec<i64>,
    fs_group: Option<i64>,
    seccomp: Option<Seccomp>,
    sysctls: Vec<(String, String)>,
}

impl PodSecurity {
    fn read(v: Option<&Value>, at: &str) -> Result<Self> {
        let Some(v) = v else { return Ok(Self::default()) };
        let o = object(v, at, &["runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups", "fsGroup", "seccompProfile", "sysctls"])?;
        let mut sysctls = Vec::new();
        if let Some(s) = o.get("sysctls") {
            for (i, s) in list(s, &format!("{at}.sysctls"))?.iter().enumerate() {
                let sat = format!("{at}.sysctls[{i}]");
                let s = object(s, &sat, &["name", "value"])?;
                sysctls.push((
                    str_of(s, "name", &sat)?.context("sysctl name")?.to_string(),
                    str_of(s, "value", &sat)?.context("sysctl value")?.to_string(),
                ));
            }
        }
        let groups = match o.get("supplementalGroups") {
            Some(g) => list(g, &format!("{at}.supplementalGroups"))?.iter().map(|g| g.as_i64().context("supplemental group")).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Self {
            run_as_user: i64_of(o, "runAsUser", at)?,
            run_as_group: i64_of(o, "runAsGroup", at)?,
            run_as_non_root: bool_of(o, "runAsNonRoot", at)?,
            groups,
            fs_group: i64_of(o, "fsGroup", at)?,
            seccomp: o.get("seccompProfile").map(|s| Seccomp::read(s, &format!("{at}.seccompProfile"))).transpose()?,
            sysctls,
        })
    }

    /// kubelet adds fsGroup to the supplemental groups.
    fn supplemental_groups(&self) -> Vec<i64> {
        let mut groups = self.groups.clone();
        if let Some(g) = self.fs_group
            && !groups.contains(&g)
        {
            groups.push(g);
        }
        groups
    }
}

/// A container's securityContext.
#[derive(Default)]
struct ContainerSecurity {
    privileged: bool,
    allow_privilege_escalation: Option<bool>,
    read_only_root: bool,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    add: Vec<String>,
    drop: Vec<String>,
    seccomp: Option<Seccomp>,
    unmasked_proc: bool,
}

impl ContainerSecurity {
    fn read(v: Option<&Value>, at: &str) -> Result<Self> {
        let Some(v) = v else { return Ok(Self::default()) };
        let o = object(
            v,
            at,
            &[
                "privileged",
                "allowPrivilegeEscalation",
                "readOnlyRootFilesystem",
                "runAsUser",
                "runAsGroup",
                "runAsNonRoot",
                "capabilities",
                "seccompProfile",
                "procMount",
            ],
        )?;
        let (mut add, mut drop) = (Vec::new(), Vec::new());
        if let Some(c) = o.get("capabilities") {
            let cat = format!("{at}.capabilities");
            let c = object(c, &cat, &["add", "drop"])?;
            for (key, into) in [("add", &mut add), ("drop", &mut drop)] {
                if let Some(l) = c.get(key) {
                    for cap in list(l, &format!("{cat}.{key}"))? {
                        into.push(cap.as_str().with_context(|| format!("{cat}.{key}: {cap}"))?.to_string());
                    }
                }
            }
        }
        let unmasked_proc = match str_of(o, "procMount", at)? {
            None | Some("Default") => false,
            Some("Unmasked") => true,
            Some(other) => bail!("{at}.procMount {other} unknown"),
        };
        let sc = Self {
            privileged: bool_of(o, "privileged", at)?.unwrap_or(false),
            allow_privilege_escalation: bool_of(o, "allowPrivilegeEscalation", at)?,
            read_only_root: bool_of(o, "readOnlyRootFilesystem", at)?.unwrap_or(false),
            run_as_user: i64_of(o, "runAsUser", at)?,
            run_as_group: i64_of(o, "runAsGroup", at)?,
            run_as_non_root: bool_of(o, "runAsNonRoot", at)?,
            add,
            drop,
            seccomp: o.get("seccompProfile").map(|s| Seccomp::read(s, &format!("{at}.seccompProfile"))).transpose()?,
            unmasked_proc,
        };
        // The API server's validation (ValidateSecurityContext).
        if sc.allow_privilege_escalation == Some(false) {
            ensure!(!sc.privileged, "{at}: allowPrivilegeEscalation false with privileged true is invalid");
            ensure!(
                !sc.add.iter().any(|c| c.eq_ignore_ascii_case("SYS_ADMIN") || c.eq_ignore_ascii_case("CAP_SYS_ADMIN")),
                "{at}: allowPrivilegeEscalation false with SYS_ADMIN is invalid"
            );
        }
        Ok(sc)
    }
}

#[derive(Clone, Debug)]
struct Port {
    name: Option<String>,
    container_port: u16,
    host_port: u16,
    host_ip: String,
    protocol: cri::Protocol,
}

enum EnvSource {
    Value(String),
    Field(String),
    Resource { resource: String, divisor: Option<String> },
}

/// A container of the template, read but not yet given its pod.
struct ContainerSpec {
    at: String,
    name: String,
    image: String,
    pull_policy: PullPolicy,
    command: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    env: Vec<(String, EnvSource)>,
    ports: Vec<Port>,
    probes: [Option<Value>; 3],
    requests: Resources,
    limits: Resources,
    security: ContainerSecurity,
    mounts: Vec<cri::Mount>,
    termination_message_path: String,
    termination_message_policy: String,
    stdin: bool,
    tty: bool,
}

/// cpu (milliCPU) and memory (bytes) of requests or limits; zero when not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Resources {
    milli_cpu: i64,
    memory: i64,
}

impl ContainerSpec {
    fn read(v: &Value, at: &str, volumes: &HashMap<String, Volume>) -> Result<Self> {
        let o = object(
            v,
            at,
            &[
                "name",
                "image",
                "imagePullPolicy",
                "command",
                "args",
                "workingDir",
                "env",
                "ports",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
                "resources",
                "securityContext",
                "volumeMounts",
                "terminationMessagePath",
                "terminationMessagePolicy",
                "stdin",
                "tty",
            ],
        )?;
        let name = str_of(o, "name", at)?.with_context(|| format!("{at}.name"))?.to_string();
        let at = format!("{at} ({name})");
        let image = str_of(o, "image", &at)?.with_context(|| format!("{at}.image"))?.to_string();
        let tagged = image.rsplit('/').next().is_some_and(|last| last.contains(':')) || image.contains('@');
        let latest = !tagged || image.ends_with(":latest");
        let pull_policy = match str_of(o, "imagePullPolicy", &at)? {
            Some("Always") => PullPolicy::Always,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            Some("Never") => PullPolicy::Never,
            None if latest => PullPolicy::Always,
            None => PullPolicy::IfNotPresent,
            Some(other) => bail!("{at}.imagePullPolicy {other} unknown"),
        };
        let strings = |key: &str| -> Result<Vec<String>> {
            match o.get(key) {
                None => Ok(Vec::new()),
                Some(l) => list(l, &format!("{at}.{key}"))?
                    .iter()
                    .map(|s| s.as_str().map(str::to_string).with_context(|| format!("{at}.{key}: {s} is not a string")))
                    .collect(),
            }
        };
        let command = strings("command")?;
        let args = strings("args")?;

        let mut env = Vec::new();
        if let Some(e) = o.get("env") {
            for (i, e) in list(e, &format!("{at}.env"))?.iter().enumerate() {
                let eat = format!("{at}.env[{i}]");
                let e = object(e, &eat, &["name", "value", "valueFrom"])?;
                let ename = str_of(e, "name", &eat)?.with_context(|| format!("{eat}.name"))?.to_string();
                let source = match (e.get("value"), e.get("valueFrom")) {
                    (Some(_), Some(_)) => bail!("{eat}: value and valueFrom"),
                    (Some(v), None) => EnvSource::Value(v.as_str().with_context(|| format!("{eat}.value: {v} is not a string"))?.to_string()),
                    (None, None) => EnvSource::Value(String::new()),
                    (None, Some(from)) => {
                        let fat = format!("{eat}.valueFrom");
                        let from = object(from, &fat, &["fieldRef", "resourceFieldRef"])?;
                        if let Some(f) = from.get("fieldRef") {
                            let f = object(f, &format!("{fat}.fieldRef"), &["fieldPath", "apiVersion"])?;
                            EnvSource::Field(str_of(f, "fieldPath", &fat)?.context("fieldRef.fieldPath")?.to_string())
                        } else if let Some(r) = from.get("resourceFieldRef") {
                            let r = object(r, &format!("{fat}.resourceFieldRef"), &["resource", "divisor", "containerName"])?;
                            if let Some(c) = str_of(r, "containerName", &fat)? {
                                ensure!(c == name, "{fat}: resourceFieldRef of another container ({c}) not supported");
                            }
                            EnvSource::Resource {
                                resource: str_of(r, "resource", &fat)?.context("resourceFieldRef.resource")?.to_string(),
                                divisor: r.get("divisor").map(quantity_text).transpose()?,
                            }
                        } else {
                            bail!("{fat}: empty")
                        }
                    }
                };
                env.push((ename, source));
            }
        }

        let mut ports = Vec::new();
        if let Some(p) = o.get("ports") {
            for (i, p) in list(p, &format!("{at}.ports"))?.iter().enumerate() {
                let pat = format!("{at}.ports[{i}]");
                let p = object(p, &pat, &["name", "containerPort", "protocol", "hostPort", "hostIP"])?;
                let port = |key: &str| -> Result<u16> {
                    match p.get(key) {
                        None => Ok(0),
                        Some(v) => v.as_u64().and_then(|n| u16::try_from(n).ok()).with_context(|| format!("{pat}.{key}: {v}")),
                    }
                };
                let protocol = match str_of(p, "protocol", &pat)?.unwrap_or("TCP") {
                    "TCP" => cri::Protocol::Tcp,
                    "UDP" => cri::Protocol::Udp,
                    "SCTP" => cri::Protocol::Sctp,
                    other => bail!("{pat}.protocol {other} unknown"),
                };
                let container_port = port("containerPort")?;
                ensure!(container_port > 0, "{pat}.containerPort is required");
                ports.push(Port {
                    name: str_of(p, "name", &pat)?.map(str::to_string),
                    container_port,
                    host_port: port("hostPort")?,
                    host_ip: str_of(p, "hostIP", &pat)?.unwrap_or("").to_string(),
                    protocol,
                });
            }
        }

        let (mut requests, mut limits) = (Resources::default(), Resources::default());
        if let Some(r) = o.get("resources") {
            let rat = format!("{at}.resources");
            let r = object(r, &rat, &["requests", "limits"])?;
            for (key, into) in [("requests", &mut requests), ("limits", &mut limits)] {
                let Some(list) = r.get(key) else { continue };
                let kat = format!("{rat}.{key}");
                let list = object(list, &kat, &["cpu", "memory", "ephemeral-storage"])?;
                if let Some(cpu) = list.get("cpu") {
                    into.milli_cpu = Quantity::parse(&quantity_text(cpu)?)?.ceil_scaled(1000).with_context(|| format!("{kat}.cpu"))?;
                }
                if let Some(mem) = list.get("memory") {
                    into.memory = Quantity::parse(&quantity_text(mem)?)?.ceil_scaled(1).with_context(|| format!("{kat}.memory"))?;
                }
                // ephemeral-storage: enforced by kubelet's eviction manager, no CRI field.
                if let Some(es) = list.get("ephemeral-storage") {
                    Quantity::parse(&quantity_text(es)?).with_context(|| format!("{kat}.ephemeral-storage"))?;
                }
            }
            // The API server defaults each request to its limit.
            if !r.get("requests").is_some_and(|q| q.get("cpu").is_some()) {
                requests.milli_cpu = limits.milli_cpu;
            }
            if !r.get("requests").is_some_and(|q| q.get("memory").is_some()) {
                requests.memory = limits.memory;
            }
            for (what, req, lim) in [("cpu", requests.milli_cpu, limits.milli_cpu), ("memory", requests.memory, limits.memory)] {
                ensure!(lim == 0 || req <= lim, "{rat}: {what} request above its limit");
            }
        }

        let security = ContainerSecurity::read(o.get("securityContext"), &format!("{at}.securityContext"))?;

        let mut mounts = Vec::new();
        if let Some(m) = o.get("volumeMounts") {
            for (i, m) in list(m, &format!("{at}.volumeMounts"))?.iter().enumerate() {
                let mat = format!("{at}.volumeMounts[{i}]");
                let m = object(m, &mat, &["name", "mountPath", "readOnly", "mountPropagation", "subPath"])?;
                let vname = str_of(m, "name", &mat)?.with_context(|| format!("{mat}.name"))?;
                let volume = volumes.get(vname).with_context(|| format!("{mat}: no volume {vname}"))?;
                let container_path = str_of(m, "mountPath", &mat)?.with_context(|| format!("{mat}.mountPath"))?;
                ensure!(container_path.starts_with('/'), "{mat}.mountPath {container_path} is not absolute");
                ensure!(
                    !mounts.iter().any(|x: &cri::Mount| x.container_path == container_path),
                    "{mat}: mountPath {container_path} twice"
                );
                let mut host_path = volume.path.clone();
                if let Some(sub) = str_of(m, "subPath", &mat)?.filter(|s| !s.is_empty()) {
                    ensure!(!sub.starts_with('/') && !sub.split('/').any(|c| c == ".."), "{mat}.subPath {sub} must be relative, without ..");
                    host_path = host_path.join(sub);
                }
                let propagation = match str_of(m, "mountPropagation", &mat)? {
                    None | Some("None") => cri::MountPropagation::PropagationPrivate,
                    Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                    Some("Bidirectional") => {
                        ensure!(security.privileged, "{mat}: Bidirectional mount propagation is for privileged containers only");
                        cri::MountPropagation::PropagationBidirectional
                    }
                    Some(other) => bail!("{mat}.mountPropagation {other} unknown"),
                };
                mounts.push(cri::Mount {
                    container_path: container_path.to_string(),
                    host_path: host_path.to_string_lossy().into_owned(),
                    readonly: bool_of(m, "readOnly", &mat)?.unwrap_or(false),
                    selinux_relabel: false,
                    propagation: propagation as i32,
                    ..Default::default()
                });
            }
        }

        let probes = ["readinessProbe", "livenessProbe", "startupProbe"].map(|k| o.get(k).cloned());
        let termination_message_policy = str_of(o, "terminationMessagePolicy", &at)?.unwrap_or("File").to_string();
        ensure!(
            ["File", "FallbackToLogsOnError"].contains(&termination_message_policy.as_str()),
            "{at}.terminationMessagePolicy {termination_message_policy} unknown"
        );
        Ok(Self {
            name,
            image,
            pull_policy,
            command,
            args,
            working_dir: str_of(o, "workingDir", &at)?.unwrap_or("").to_string(),
            env,
            ports,
            probes,
            requests,
            limits,
            security,
            mounts,
            termination_message_path: str_of(o, "terminationMessagePath", &at)?.unwrap_or("/dev/termination-log").to_string(),
            termination_message_policy,
            stdin: bool_of(o, "stdin", &at)?.unwrap_or(false),
            tty: bool_of(o, "tty", &at)?.unwrap_or(false),
            at,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn into_cri(
        self,
        pod: &PodInfo<'_>,
        pod_sc: &PodSecurity,
        namespaces: &cri::NamespaceOption,
        pod_dir: &Path,
        qos: Qos,
        node_critical: bool,
        grace: u64,
    ) -> Result<Container> {
        let at = &self.at;
        let node = pod.node;
        // Environment, in order; `$(VAR)` names a variable defined before it.
        let mut env: Vec<(String, String)> = Vec::new();
        for (name, source) in &self.env {
            let value = match source {
                EnvSource::Value(v) => expand(v, &env),
                EnvSource::Field(path) => field_value(pod, path).with_context(|| format!("{at}: env {name}"))?,
                EnvSource::Resource { resource, divisor } => {
                    resource_value(resource, divisor.as_deref(), self.requests, self.limits, node).with_context(|| format!("{at}: env {name}"))?
                }
            };
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value));
        }
        let command: Vec<String> = self.command.iter().map(|c| expand(c, &env)).collect();
        let args: Vec<String> = self.args.iter().map(|a| expand(a, &env)).collect();

        let run_as_user = self.security.run_as_user.or(pod_sc.run_as_user);
        let run_as_group = self.security.run_as_group.or(pod_sc.run_as_group);
        if self.security.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) {
            // The image's user is not known here: only an explicit non-zero uid passes.
            ensure!(run_as_user.is_some_and(|u| u != 0), "{at}: runAsNonRoot needs runAsUser non-zero here");
        }
        let seccomp = self.security.seccomp.as_ref().or(pod_sc.seccomp.as_ref()).cloned().unwrap_or(Seccomp::Unconfined);
        let privileged = self.security.privileged;
        let no_masks = privileged || self.security.unmasked_proc;

        let mut mounts = self.mounts.clone();
        let termination_log = (!self.termination_message_path.is_empty()).then(|| {
            // kubelet: <pod dir>/containers/<name>/<random>, mounted read-write.
            pod_dir.join("containers").join(&self.name).join(&pod.uid[..8])
        });
        if let Some(file) = &termination_log
            && !mounts.iter().any(|m| m.container_path == self.termination_message_path)
        {
            mounts.push(cri::Mount {
                container_path: self.termination_message_path.clone(),
                host_path: file.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }

        // Resources: kubelet's calculateLinuxResources and qos.GetContainerOOMScoreAdjust.
        let oom_score_adj = if node_critical {
            GUARANTEED_OOM_SCORE_ADJ
        } else {
            match qos {
                Qos::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
                Qos::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
                Qos::Burstable => {
                    let adj = 1000 - (1000 * self.requests.memory) / i64::try_from(node.memory_capacity.max(1)).unwrap_or(i64::MAX);
                    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                        1000 + GUARANTEED_OOM_SCORE_ADJ
                    } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                        adj - 1
                    } else {
                        adj
                    }
                }
            }
        };
        let resources = cri::LinuxContainerResources {
            cpu_period: CPU_PERIOD,
            cpu_quota: milli_cpu_to_quota(self.limits.milli_cpu, CPU_PERIOD),
            cpu_shares: milli_cpu_to_shares(if self.requests.milli_cpu == 0 { self.limits.milli_cpu } else { self.requests.milli_cpu }),
            memory_limit_in_bytes: self.limits.memory,
            // No swap for containers: the swap limit is the memory limit.
            memory_swap_limit_in_bytes: self.limits.memory,
            oom_score_adj,
            ..Default::default()
        };

        let named_ports: BTreeMap<String, u16> = self.ports.iter().filter_map(|p| Some((p.name.clone()?, p.container_port))).collect();
        let [readiness, liveness, startup] = [0, 1, 2].map(|i| {
            self.probes[i].as_ref().map(|p| http_probe(p, &named_ports, &format!("{at}.{}", ["readinessProbe", "livenessProbe", "startupProbe"][i])))
        });
        let readiness = readiness.transpose()?;
        let liveness = liveness.transpose()?;
        let startup = startup.transpose()?;

        let labels = HashMap::from([
            ("io.kubernetes.container.name".to_string(), self.name.clone()),
            ("io.kubernetes.pod.name".to_string(), pod.name.to_string()),
            ("io.kubernetes.pod.namespace".to_string(), pod.namespace.to_string()),
            ("io.kubernetes.pod.uid".to_string(), pod.uid.to_string()),
        ]);
        let ports_json: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let protocol = ["TCP", "UDP", "SCTP"][p.protocol as usize];
                let mut v = json!({ "containerPort": p.container_port, "protocol": protocol });
                if let Some(n) = &p.name {
                    v["name"] = json!(n);
                }
                v
            })
            .collect();
        let mut annotations = HashMap::from([
            ("io.kubernetes.container.restartCount".to_string(), "0".to_string()),
            ("io.kubernetes.container.terminationMessagePath".to_string(), self.termination_message_path.clone()),
            ("io.kubernetes.container.terminationMessagePolicy".to_string(), self.termination_message_policy.clone()),
            ("io.kubernetes.pod.terminationGracePeriod".to_string(), grace.to_string()),
        ]);
        if !ports_json.is_empty() {
            annotations.insert("io.kubernetes.container.ports".into(), Value::Array(ports_json).to_string());
        }
        annotations.insert("io.kubernetes.container.hash".into(), format!("{:x}", fnv1a(format!("{:?}{:?}{:?}{}", command, args, env, self.image).as_bytes())));

        #[allow(deprecated)]
        let security_context = cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: self.security.add.clone(),
                drop_capabilities: self.security.drop.clone(),
                ..Default::default()
            }),
            privileged,
            namespace_options: Some(namespaces.clone()),
            run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
            run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
            readonly_rootfs: self.security.read_only_root,
            supplemental_groups: pod_sc.supplemental_groups(),
            no_new_privs: self.security.allow_privilege_escalation == Some(false),
            masked_paths: if no_masks { Vec::new() } else { DEFAULT_MASKED_PATHS.map(String::from).to_vec() },
            readonly_paths: if no_masks { Vec::new() } else { DEFAULT_READONLY_PATHS.map(String::from).to_vec() },
            seccomp: Some(seccomp.profile(node)),
            seccomp_profile_path: seccomp.path(node),
            ..Default::default()
        };
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: self.name.clone(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: self.image.clone(), user_specified_image: self.image.clone(), ..Default::default() }),
            command,
            args,
            working_dir: self.working_dir.clone(),
            envs: env.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect(),
            mounts,
            labels,
            annotations,
            log_path: format!("{}/0.log", self.name),
            stdin: self.stdin,
            stdin_once: false,
            tty: self.tty,
            linux: Some(cri::LinuxContainerConfig { resources: Some(resources), security_context: Some(security_context) }),
            ..Default::default()
        };
        Ok(Container {
            name: self.name,
            image: self.image,
            pull_policy: self.pull_policy,
            config,
            ports: named_ports,
            readiness,
            liveness,
            startup,
            termination_log,
        })
    }
}

/// kubelet's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    const MIN_SHARES: i64 = 2;
    const MAX_SHARES: i64 = 262_144;
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// kubelet's `MilliCPUToQuota`: no limit -> 0 (unlimited); at least 1000 µs.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu * period / 1000).max(1000)
}

/// The pod-level resources kubelet reports to the runtime (sum of its containers').
fn pod_resources(containers: &[ContainerSpec]) -> cri::LinuxContainerResources {
    let milli_request: i64 = containers.iter().map(|c| c.requests.milli_cpu).sum();
    let all_cpu_limited = containers.iter().all(|c| c.limits.milli_cpu > 0);
    let all_memory_limited = containers.iter().all(|c| c.limits.memory > 0);
    cri::LinuxContainerResources {
        cpu_period: CPU_PERIOD,
        cpu_quota: if all_cpu_limited { milli_cpu_to_quota(containers.iter().map(|c| c.limits.milli_cpu).sum(), CPU_PERIOD) } else { 0 },
        cpu_shares: milli_cpu_to_shares(milli_request),
        memory_limit_in_bytes: if all_memory_limited { containers.iter().map(|c| c.limits.memory).sum() } else { 0 },
        ..Default::default()
    }
}

/// The pod's QoS class (`v1qos.GetPodQOS`, cpu and memory).
fn qos_class(containers: &[ContainerSpec]) -> Qos {
    let any = containers.iter().any(|c| c.requests != Resources::default() || c.limits != Resources::default());
    if !any {
        return Qos::BestEffort;
    }
    let guaranteed =
        containers.iter().all(|c| c.limits.milli_cpu > 0 && c.limits.memory > 0 && c.requests == c.limits);
    if guaranteed { Qos::Guaranteed } else { Qos::Burstable }
}

fn http_probe(v: &Value, ports: &BTreeMap<String, u16>, at: &str) -> Result<HttpGet> {
    let o = object(
        v,
        at,
        &["httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold", "terminationGracePeriodSeconds"],
    )?;
    let get = object(o.get("httpGet").with_context(|| format!("{at}: only httpGet probes are supported"))?, &format!("{at}.httpGet"), &["path", "port", "scheme"])?;
    ensure!(str_of(get, "scheme", at)?.unwrap_or("HTTP") == "HTTP", "{at}.httpGet.scheme: HTTP only");
    let port = match get.get("port").with_context(|| format!("{at}.httpGet.port"))? {
        Value::String(name) => *ports.get(name).with_context(|| format!("{at}.httpGet.port: no container port named {name}"))?,
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()).with_context(|| format!("{at}.httpGet.port {n}"))?,
        other => bail!("{at}.httpGet.port: {other}"),
    };
    let number = |key: &str, default: u64| -> Result<u64> {
        match o.get(key) {
            Some(v) => v.as_u64().with_context(|| format!("{at}.{key}: {v}")),
            None => Ok(default),
        }
    };
    let secs = |key: &str, default: u64| number(key, default).map(Duration::from_secs);
    for key in ["initialDelaySeconds", "failureThreshold", "successThreshold", "terminationGracePeriodSeconds"] {
        number(key, 0)?;
    }
    Ok(HttpGet { path: str_of(get, "path", at)?.unwrap_or("/").to_string(), port, period: secs("periodSeconds", 10)?, timeout: secs("timeoutSeconds", 1)? })
}

/// The downward API's `fieldRef` values kubelet fills.
fn field_value(pod: &PodInfo<'_>, path: &str) -> Result<String> {
    let host_ip = || pod.node.host_ip.map(|ip| ip.to_string()).context("the host's IP is not known");
    if let Some(key) = path.strip_prefix("metadata.labels['").and_then(|k| k.strip_suffix("']")) {
        return Ok(pod.labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = path.strip_prefix("metadata.annotations['").and_then(|k| k.strip_suffix("']")) {
        return Ok(pod.annotations.get(key).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => pod.name.to_string(),
        "metadata.namespace" => pod.namespace.to_string(),
        "metadata.uid" => pod.uid.to_string(),
        "spec.nodeName" => pod.node.name.clone(),
        "spec.serviceAccountName" => pod.service_account.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip()?,
        // The pod runs on the host network here (see the test's deviation), so its IP is the host's.
        "status.podIP" | "status.podIPs" => host_ip()?,
        other => bail!("fieldRef {other} not supported"),
    })
}

/// The downward API's `resourceFieldRef`: limits default to the node's capacity.
fn resource_value(resource: &str, divisor: Option<&str>, requests: Resources, limits: Resources, node: &Node) -> Result<String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    let (value, unit_milli) = match resource {
        "limits.cpu" => (if limits.milli_cpu > 0 { limits.milli_cpu } else { cpus * 1000 }, true),
        "requests.cpu" => (requests.milli_cpu, true),
        "limits.memory" => (if limits.memory > 0 { limits.memory } else { i64::try_from(node.memory_capacity)? }, false),
        "requests.memory" => (requests.memory, false),
        other => bail!("resourceFieldRef {other} not supported"),
    };
    let divisor = Quantity::parse(divisor.unwrap_or("1"))?;
    // ceil(value / divisor), value in milli-units for cpu.
    let (num, den) = if unit_milli { (value as i128 * divisor.den, divisor.num * 1000) } else { (value as i128 * divisor.den, divisor.num) };
    ensure!(den > 0, "divisor must be positive");
    Ok(((num + den - 1) / den).to_string())
}

/// kubelet's `$(VAR)` expansion: a defined variable is replaced, `$$` is a `$`, anything else
/// is kept as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes resource quantity, exactly, as `num / den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    pub num: i128,
    pub den: i128,
}

impl Quantity {
    /// `50m`, `0.5`, `2`, `64Mi`, `1G`, `1e3`, `1.5Gi`.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(t.len());
        let (number, suffix) = t.split_at(digits_end);
        ensure!(!number.is_empty(), "quantity {text:?}: no number");
        let negative = number.starts_with('-');
        let number = number.trim_start_matches(['+', '-']);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        ensure!(
            !(int.is_empty() && frac.is_empty()) && int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()),
            "quantity {text:?}: bad number"
        );
        let mut num: i128 = format!("{int}{frac}").parse().with_context(|| format!("quantity {text:?}"))?;
        let mut den: i128 = 10i128.pow(u32::try_from(frac.len())?);
        if negative {
            num = -num;
        }
        let pow10 = |e: i32| -> (i128, i128) { if e >= 0 { (10i128.pow(e as u32), 1) } else { (1, 10i128.pow((-e) as u32)) } };
        let (mul, div) = match suffix {
            "" => (1, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            "n" => pow10(-9),
            "u" => pow10(-6),
            "m" => pow10(-3),
            "k" => pow10(3),
            "M" => pow10(6),
            "G" => pow10(9),
            "T" => pow10(12),
            "P" => pow10(15),
            "E" => pow10(18),
            s if s.starts_with(['e', 'E']) => pow10(s[1..].parse::<i32>().with_context(|| format!("quantity {text:?}: exponent"))?),
            s => bail!("quantity {text:?}: unknown suffix {s:?}"),
        };
        num *= mul;
        den *= div;
        Ok(Self { num, den })
    }

    /// `ceil(value * scale)` (kubelet's `MilliValue()` with 1000, `Value()` with 1).
    pub fn ceil_scaled(&self, scale: i128) -> Result<i64> {
        let n = self.num * scale;
        let v = if n >= 0 { (n + self.den - 1) / self.den } else { n / self.den };
        Ok(i64::try_from(v)?)
    }
}

/// A quantity as YAML gives it: a string, or a plain number.
fn quantity_text(v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => bail!("quantity {other}"),
    }
}

/// kubelet's DNS for the pod: without a cluster DNS server (none here), ClusterFirst falls back
/// to the node's resolv.conf, which is also what Default and host-network pods get.
fn dns_config(node: &Node, _policy: &str, _host_network: bool) -> Result<Option<cri::DnsConfig>> {
    let Ok(text) = std::fs::read_to_string(node.host_path("/etc/resolv.conf")) else { return Ok(None) };
    let mut dns = cri::DnsConfig::default();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with(';')) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search" | "domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    Ok(Some(dns))
}

fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Days to civil date (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// `v` as an object whose keys are all in `known`; any other key is an error naming it.
fn object<'a>(v: &'a Value, at: &str, known: &[&str]) -> Result<&'a Map<String, Value>> {
    let map = v.as_object().with_context(|| format!("{at}: not an object"))?;
    let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    ensure!(unknown.is_empty(), "{at}: field(s) the translator does not understand: {}", unknown.join(", "));
    Ok(map)
}

fn req<'a>(map: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a Value> {
    map.get(key).with_context(|| format!("{at}.{key} is missing"))
}

fn list<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
    v.as_array().with_context(|| format!("{at}: not a list"))
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str, at: &str) -> Result<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => bail!("{at}.{key}: {other} is not a string"),
    }
}

fn bool_of(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => bail!("{at}.{key}: {other} is not a boolean"),
    }
}

fn i64_of(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(v.as_i64().with_context(|| format!("{at}.{key}: {v} is not an integer"))?)),
    }
}

fn string_map(v: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>> {
    let Some(v) = v else { return Ok(BTreeMap::new()) };
    v.as_object()
        .with_context(|| format!("{at}: not a map"))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().with_context(|| format!("{at}.{k}: {v} is not a string"))?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "node-a".into(),
            host_ip: Some("10.0.0.7".parse().unwrap()),
            memory_capacity: 8 << 30,
            host_root: PathBuf::from("/srv/root"),
            kubelet_root: PathBuf::from("/tmp/k"),
            log_root: PathBuf::from("/tmp/logs"),
            seccomp_root: PathBuf::from("/var/lib/kubelet/seccomp"),
        }
    }

    fn identity() -> PodIdentity {
        PodIdentity { suffix: "x7k2q".into(), uid: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".into() }
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).expect("yaml")
    }

    const MINIMAL: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: agent, namespace: mon }
spec:
  selector: { matchLabels: { app: agent } }
  template:
    metadata: { labels: { app: agent } }
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      containers:
        - name: c
          image: agent:1
"#;

    #[test]
    fn quantities_as_kubelet_reads_them() {
        let milli = |s: &str| Quantity::parse(s).unwrap().ceil_scaled(1000).unwrap();
        let bytes = |s: &str| Quantity::parse(s).unwrap().ceil_scaled(1).unwrap();
        assert_eq!([milli("50m"), milli("0.5"), milli("2"), milli("1.0001"), milli("100u")], [50, 500, 2000, 1001, 1]);
        assert_eq!([bytes("64Mi"), bytes("1G"), bytes("1e3"), bytes("1.5Gi"), bytes("128974848")], [64 << 20, 1_000_000_000, 1000, 3 << 29, 128_974_848]);
        assert!(Quantity::parse("12 parsecs").is_err());
        assert!(Quantity::parse("Mi").is_err());
    }

    #[test]
    fn cpu_as_kubelet_converts_it() {
        assert_eq!([milli_cpu_to_shares(0), milli_cpu_to_shares(1), milli_cpu_to_shares(50), milli_cpu_to_shares(1000)], [2, 2, 51, 1024]);
        assert_eq!([milli_cpu_to_quota(0, CPU_PERIOD), milli_cpu_to_quota(5, CPU_PERIOD), milli_cpu_to_quota(500, CPU_PERIOD)], [0, 1000, 50_000]);
    }

    #[test]
    fn variables_expand_as_in_kubelet() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("--a=$(A) $(B) $$(A) $ $(", &env), "--a=x $(B) $(A) $ $(");
    }

    #[test]
    fn the_repository_daemonset_translates() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/daemonset.yaml")).unwrap();
        let pod = translate(&yaml(&text), &node(), &identity()).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("node-runtime-monitor", "node-runtime-monitor-x7k2q"));
        let sc = pod.sandbox.linux.as_ref().unwrap().security_context.as_ref().unwrap();
        assert_eq!(sc.namespace_options.as_ref().unwrap().pid, cri::NamespaceMode::Node as i32);
        let c = &pod.containers[0];
        let linux = c.config.linux.as_ref().unwrap();
        let sec = linux.security_context.as_ref().unwrap();
        assert_eq!(sec.capabilities.as_ref().unwrap().add_capabilities, ["BPF", "PERFMON"]);
        assert_eq!(sec.capabilities.as_ref().unwrap().drop_capabilities, ["ALL"]);
        assert!(sec.readonly_rootfs && sec.no_new_privs && !sec.privileged);
        assert_eq!(sec.run_as_user, Some(cri::Int64Value { value: 0 }));
        assert_eq!(sec.seccomp.as_ref().unwrap().profile_type, cri::security_profile::ProfileType::Unconfined as i32);
        let res = linux.resources.as_ref().unwrap();
        assert_eq!((res.cpu_shares, res.cpu_quota, res.cpu_period, res.memory_limit_in_bytes), (51, 50_000, 100_000, 128 << 20));
        // system-node-critical: kubelet's guaranteed score whatever the QoS class.
        assert_eq!(res.oom_score_adj, -997);
        assert_eq!(pod.qos, Qos::Burstable);
        let parent = &pod.sandbox.linux.as_ref().unwrap().cgroup_parent;
        assert_eq!(parent, &format!("/kubepods/burstable/pod{}", identity().uid));
        let host = c.config.mounts.iter().find(|m| m.container_path == "/host").unwrap();
        assert_eq!((host.host_path.as_str(), host.readonly, host.propagation), ("/srv/root/", true, cri::MountPropagation::PropagationPrivate as i32));
        assert!(c.config.mounts.iter().any(|m| m.container_path == "/sys/fs/cgroup" && m.host_path == "/srv/root/sys/fs/cgroup"));
        let state = c.config.mounts.iter().find(|m| m.container_path == "/run/node-runtime-monitor").unwrap();
        let empty_dir = format!("/tmp/k/pods/{}/volumes/kubernetes.io~empty-dir/state", identity().uid);
        assert_eq!((state.host_path.as_str(), state.readonly), (empty_dir.as_str(), false));
        assert_eq!(c.config.args, ["--host-root=/host", "--listen=0.0.0.0:9750", "--log-format=json"]);
        assert!(c.config.envs.iter().any(|e| e.key == "NRM_LOG" && e.value == "info"));
        assert_eq!(c.readiness.as_ref().map(|p| (p.path.as_str(), p.port)), Some(("/healthz", 9750)));
        assert_eq!(pod.termination_grace, Duration::from_secs(30));
    }

    #[test]
    fn an_unknown_field_anywhere_is_an_error() {
        for (from, to) in [
            ("image: agent:1", "image: agent:1\n          lifecycle: {}"),
            ("image: agent:1", "image: agent:1\n          securityContext: { windowsOptions: {} }"),
            ("enableServiceLinks: false", "enableServiceLinks: false\n      initContainers: []"),
            ("enableServiceLinks: false", "enableServiceLinks: false\n      volumes: [{ name: v, configMap: { name: c } }]"),
            ("enableServiceLinks: false", "enableServiceLinks: false\n      volumes: [{ name: v, emptyDir: { medium: Memory } }]"),
            ("metadata: { labels: { app: agent } }", "metadata: { labels: { app: agent }, finalizers: [] }"),
        ] {
            let text = MINIMAL.replacen(from, to, 1);
            assert_ne!(text, MINIMAL);
            let err = translate(&yaml(&text), &node(), &identity()).expect_err(&text);
            let shown = format!("{err:#}");
            assert!(shown.contains("does not understand") || shown.contains("not a tmpfs"), "{shown}");
        }
    }

    #[test]
    fn mounts_propagation_env_and_qos() {
        let text = MINIMAL.replace(
            "image: agent:1",
            r#"image: agent:1
          env:
            - { name: NODE, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
            - { name: GREETING, value: "on $(NODE)" }
            - { name: MEM, valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: 1Mi } } }
          args: ["--node=$(NODE)"]
          resources: { limits: { cpu: "1", memory: 256Mi } }
          volumeMounts:
            - { name: data, mountPath: /data, mountPropagation: HostToContainer, subPath: sub }
      volumes:
        - { name: data, hostPath: { path: /var/data } }"#,
        );
        let pod = translate(&yaml(&text), &node(), &identity()).unwrap_or_else(|e| panic!("{e:#}"));
        let c = &pod.containers[0].config;
        let env: Vec<(&str, &str)> = c.envs.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
        assert_eq!(env, [("NODE", "node-a"), ("GREETING", "on node-a"), ("MEM", "256")]);
        assert_eq!(c.args, ["--node=node-a"]);
        let m = c.mounts.iter().find(|m| m.container_path == "/data").unwrap();
        assert_eq!((m.host_path.as_str(), m.propagation, m.readonly), ("/srv/root/var/data/sub", cri::MountPropagation::PropagationHostToContainer as i32, false));
        // Limits only: requests default to them -> guaranteed.
        assert_eq!(pod.qos, Qos::Guaranteed);
        let r = c.linux.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!((r.cpu_shares, r.cpu_quota, r.oom_score_adj), (1024, 100_000, -997));
        // Bidirectional needs privileged.
        let bidi = text.replace("HostToContainer", "Bidirectional");
        assert!(format!("{:#}", translate(&yaml(&bidi), &node(), &identity()).unwrap_err()).contains("privileged"));
    }
}
