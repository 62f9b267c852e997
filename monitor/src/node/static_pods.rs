//! kubelet's static pods, read from its manifest directory (`staticPodPath`, usually
//! `/etc/kubernetes/manifests`): which pods the node runs on its own, with their containers'
//! images and memory requests/limits.
//!
//! Attribution uses it to recognise a static pod when no runtime socket answers (kubelet names
//! the pod `<metadata.name>-<nodeName>`); the audit reads images, pull policies and requests.
//! This module only parses: it never watches the directory and never talks to kubelet. A file
//! it cannot read or parse is a [`ManifestError`], never a panic; files are read up to
//! [`MAX_MANIFEST_BYTES`].

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::{
    parse_error::scrub,
    host_root::{FileError, HostRoot, MAX_DIR_ENTRIES},
};

/// Manifests larger than this are refused (kubelet's own pods are a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Files looked at per directory, at most.
pub const MAX_MANIFESTS: usize = 512;

/// One static pod, as its manifest declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticPod {
    /// The manifest file.
    pub path: PathBuf,
    /// `metadata.name` (the pod's name in the cluster is `<name>-<nodeName>`).
    pub name: String,
    /// `metadata.namespace`, `default` when absent (as kubelet does).
    pub namespace: String,
    /// `metadata.uid`, when the manifest sets one (kubelet otherwise derives it).
    pub uid: Option<String>,
    pub containers: Vec<StaticContainer>,
    pub priority_class_name: Option<String>,
}

impl StaticPod {
    /// The pod's name on node `node_name`, as kubelet names it.
    pub fn pod_name_on(&self, node_name: &str) -> String {
        format!("{}-{}", self.name, node_name)
    }

    /// A control-plane component (kubeadm's names, or `system-node-critical`).
    pub fn is_control_plane(&self) -> bool {
        super::runtimes::is_control_plane_static_pod(&self.name)
            || self.priority_class_name.as_deref() == Some("system-node-critical")
    }
}

/// One container of a static pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticContainer {
    pub name: String,
    pub image: String,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
    pub image_pull_policy: Option<String>,
    /// Where its `image:` is: `file:line`, or the file when the line is not found.
    pub image_source: String,
}

/// Why one manifest (or the directory) was not read.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}:{line}: not a pod manifest: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    #[error("{path}: more than {MAX_MANIFESTS} files (or {MAX_DIR_ENTRIES} entries), the rest were not read", path = path.display())]
    TooMany { path: PathBuf },
}

impl ManifestError {
    /// The file (or directory) it is about, as a host path.
    pub fn path(&self) -> &Path {
        match self {
            Self::File(e) => e.path(),
            Self::Parse { path, .. } | Self::TooMany { path } => path,
        }
    }
}

/// Whether kubelet reads a file of its manifest directory by this name: any but dot files.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
}

/// Reads every manifest in the host directory `dir` the way kubelet picks them: every entry
/// whose name does not start with a dot, in name order, at most [`MAX_MANIFESTS`]; kubelet
/// does not recurse into subdirectories. A directory that does not exist holds no pods (a node
/// without static pods); one that cannot be listed, or an entry that is not a regular file (a
/// FIFO, a socket, a link to nothing), is an error: kubelet skips what it cannot read, and
/// the operator must hear of it. Pods and errors name host paths.
pub fn load_dir(root: &HostRoot, dir: &Path) -> (Vec<StaticPod>, Vec<ManifestError>) {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    let listing = match root.read_dir(dir) {
        Ok(listing) => listing,
        Err(err) if err.is_not_found() => return (pods, errors),
        Err(err) => return (pods, vec![err.into()]),
    };
    let mut paths: Vec<PathBuf> = listing
        .paths
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| is_manifest_name(&n.to_string_lossy())))
        .filter(|p| !root.metadata(p).is_ok_and(|m| m.is_dir()))
        .collect();
    if listing.truncated || paths.len() > MAX_MANIFESTS {
        errors.push(ManifestError::TooMany { path: dir.to_path_buf() });
        paths.truncate(MAX_MANIFESTS);
    }
    for path in paths {
        // A non-regular file is refused here, unread and unblocked ("is not a regular file").
        match root.read_text_limited(&path, MAX_MANIFEST_BYTES) {
            Ok(text) => match parse(&text, &path) {
                Ok(mut found) => pods.append(&mut found),
                Err(err) => errors.push(err),
            },
            Err(err) => errors.push(err.into()),
        }
    }
    (pods, errors)
}

/// Parses manifest text; `path` is recorded in the pods and errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<StaticPod>, ManifestError> {
    let parse_error = |line: Option<usize>, message: String| ManifestError::Parse { path: path.to_path_buf(), line, message };
    // serde_yaml's messages may quote the file's values (secrets among them): quotes are scrubbed.
    let doc: Manifest = serde_yaml::from_str(text).map_err(|e| {
        let message = scrub(e.to_string().split(" at line ").next().unwrap_or("invalid YAML"));
        parse_error(e.location().map(|l| l.line()), message)
    })?;
    let kind = doc.kind.as_deref().unwrap_or("");
    let pods = match kind {
        "Pod" => vec![doc],
        "List" | "PodList" => doc.items,
        // Not echoed either: what stands in `kind` is the file's to choose.
        other => return Err(parse_error(Some(1), format!("kind {}, not Pod", scrub(&format!("{other:?}"))))),
    };
    pods.into_iter()
        .map(|pod| {
            if pod.kind.as_deref().is_some_and(|k| k != "Pod") {
                return Err(parse_error(None, format!("list item of kind {}, not Pod", scrub(&format!("{:?}", pod.kind.unwrap_or_default())))));
            }
            let name = pod.metadata.name.filter(|n| !n.is_empty()).ok_or_else(|| parse_error(None, "no metadata.name".into()))?;
            Ok(StaticPod {
                path: path.to_path_buf(),
                name,
                namespace: pod.metadata.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into()),
                uid: pod.metadata.uid.filter(|u| !u.is_empty()),
                priority_class_name: pod.spec.priority_class_name,
                containers: pod
                    .spec
                    .containers
                    .into_iter()
                    .map(|c| StaticContainer {
                        image_source: source_of(path, text, &c.image),
                        name: c.name,
                        image: c.image,
                        memory_request: c.resources.requests.memory.map(quantity),
                        memory_limit: c.resources.limits.memory.map(quantity),
                        image_pull_policy: c.image_pull_policy,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// `file:line` of the first line holding `value`, or the file when no line does.
fn source_of(path: &Path, text: &str, value: &str) -> String {
    match text.lines().position(|l| !value.is_empty() && l.contains(value)) {
        Some(i) => format!("{}:{}", path.display(), i + 1),
        None => path.display().to_string(),
    }
}

/// Finds the static pod whose cluster name is `pod_name` in `namespace` on `node_name`.
pub fn find<'a>(pods: &'a [StaticPod], namespace: &str, pod_name: &str, node_name: &str) -> Option<&'a StaticPod> {
    pods.iter().find(|p| p.namespace == namespace && p.pod_name_on(node_name) == pod_name)
}

/// Quantities may be written as strings (`"512Mi"`) or bare numbers (`1073741824`).
fn quantity(value: serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s,
        serde_yaml::Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
    }
}

#[derive(Deserialize)]
struct Manifest {
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    items: Vec<Manifest>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    containers: Vec<ContainerSpec>,
    priority_class_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    image_pull_policy: Option<String>,
    #[serde(default)]
    resources: Resources,
}

#[derive(Default, Deserialize)]
struct Resources {
    #[serde(default)]
    requests: ResourceList,
    #[serde(default)]
    limits: ResourceList,
}

#[derive(Default, Deserialize)]
struct ResourceList {
    memory: Option<serde_yaml::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const APISERVER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443
  creationTimestamp: null
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.10
    image: registry.k8s.io/kube-apiserver:v1.30.2
    imagePullPolicy: IfNotPresent
    name: kube-apiserver
    resources:
      requests:
        cpu: 250m
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
status: {}
"#;

    #[test]
    fn a_kubeadm_manifest() {
        let pods = parse(APISERVER, Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml")).expect("parses");
        assert_eq!(pods.len(), 1);
        let pod = &pods[0];
        assert_eq!((pod.name.as_str(), pod.namespace.as_str()), ("kube-apiserver", "kube-system"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        assert_eq!(c.image, "registry.k8s.io/kube-apiserver:v1.30.2");
        assert_eq!(c.memory_request, None);
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.image_source, "/etc/kubernetes/manifests/kube-apiserver.yaml:17");
        assert!(pod.is_control_plane());
        assert_eq!(pod.pod_name_on("node1"), "kube-apiserver-node1");
        assert!(find(&pods, "kube-system", "kube-apiserver-node1", "node1").is_some());
        assert!(find(&pods, "default", "kube-apiserver-node1", "node1").is_none());
        assert!(find(&pods, "kube-system", "kube-apiserver-node2", "node1").is_none());
    }

    #[test]
    fn json_lists_numbers_and_default_namespace() {
        let text = r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"etcd","uid":"abc"},
            "spec":{"containers":[{"name":"etcd","image":"etcd:3.5","resources":{"requests":{"memory":104857600},"limits":{"memory":"1Gi"}}}]}}]}"#;
        let pods = parse(text, Path::new("etcd.json")).expect("parses");
        assert_eq!(pods[0].namespace, "default");
        assert_eq!(pods[0].uid.as_deref(), Some("abc"));
        assert_eq!(pods[0].containers[0].memory_request.as_deref(), Some("104857600"));
        assert_eq!(pods[0].containers[0].memory_limit.as_deref(), Some("1Gi"));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for text in ["", "{", "kind: Deployment\nmetadata: {name: x}", "kind: Pod\nmetadata: {}", "\u{0}\u{1}\u{2}", "- a\n- b", "kind: Pod\nspec: 7"] {
            assert!(parse(text, Path::new("x")).is_err(), "{text:?} should not parse");
        }
        // A syntax error says where, and does not echo the file's values.
        let text = "kind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: x, resources: \"secret-xyz\"}]\n";
        assert!(serde_yaml::from_str::<Manifest>(text).err().expect("an error").to_string().contains("secret-xyz"));
        let err = parse(text, Path::new("/m/p.yaml")).unwrap_err();
        let ManifestError::Parse { line, .. } = &err else { panic!("{err}") };
        assert!(line.is_some(), "{err}");
        assert!(!err.to_string().contains("secret-xyz") && err.to_string().starts_with("/m/p.yaml:"), "{err}");
        // Found by the `redaction` fuzz target: nor does a kind that is not Pod.
        let err = parse("kind: 'hAWWPWAK'\n", Path::new("/m/p.yaml")).unwrap_err().to_string();
        assert_eq!(err, "/m/p.yaml:1: not a pod manifest: kind \"…\", not Pod");
        // Nor a list item's.
        let err = parse("kind: List\nitems:\n- kind: 'hAWWPWAK'\n  metadata: {name: x}\n", Path::new("/m/p.yaml")).unwrap_err().to_string();
        assert_eq!(err, "/m/p.yaml:?: not a pod manifest: list item of kind \"…\", not Pod");
    }

    #[test]
    fn a_directory_like_kubelet_reads_it() {
        let root = std::env::temp_dir().join(format!("nrm-static-pods-{}", std::process::id()));
        let dir = root.join("etc/kubernetes/manifests");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("kube-apiserver.yaml"), APISERVER).expect("write");
        // kubelet reads every file but dot files, whatever its extension.
        std::fs::write(dir.join("etcd.manifest"), APISERVER.replace("name: kube-apiserver\n  namespace", "name: etcd\n  namespace")).expect("write");
        std::fs::write(dir.join(".kube-apiserver.yaml.swp"), "garbage").expect("write");
        std::fs::write(dir.join("broken.yaml"), "kind: [").expect("write");
        let huge = std::fs::File::create(dir.join("huge.yaml")).expect("create");
        huge.set_len(MAX_MANIFEST_BYTES + 10).expect("grow");
        let host = HostRoot::new(&root);
        let (pods, errors) = load_dir(&host, Path::new("/etc/kubernetes/manifests"));
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["etcd", "kube-apiserver"]);
        assert_eq!(pods[0].path, Path::new("/etc/kubernetes/manifests/etcd.manifest"), "host paths");
        assert_eq!(pods[0].containers[0].image_source, "/etc/kubernetes/manifests/etcd.manifest:17");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| matches!(e, ManifestError::File(FileError::TooLarge { .. }))));
        assert!(errors.iter().any(|e| matches!(e, ManifestError::Parse { .. })));
        assert!(errors.iter().any(|e| e.to_string().starts_with("/etc/kubernetes/manifests/broken.yaml:")), "{errors:?}");
        // A node without static pods has no manifest directory: nothing to report.
        let (pods, errors) = load_dir(&host, Path::new("/etc/kubernetes/absent"));
        assert!(pods.is_empty() && errors.is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// What a workload or a mistake can put in the directory, or make of it, is reported,
    /// never dropped: a FIFO (not read, not blocked on), a link to nothing, a manifest path that
    /// is not a directory or loops, more entries than are listed. Subdirectories are skipped,
    /// as kubelet skips them.
    #[test]
    fn what_cannot_be_read_is_an_error_never_dropped() {
        let root = std::env::temp_dir().join(format!("nrm-static-pods-hostile-{}", std::process::id()));
        let dir = root.join("etc/kubernetes/manifests");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(dir.join("subdir")).expect("temp dir");
        std::fs::write(dir.join("kube-apiserver.yaml"), APISERVER).expect("write");
        let fifo = std::ffi::CString::new(dir.join("etcd.yaml").as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/srv/gone.yaml", dir.join("scheduler.yaml")).expect("symlink");
        let host = HostRoot::new(&root);
        let (pods, errors) = load_dir(&host, Path::new("/etc/kubernetes/manifests"));
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["kube-apiserver"]);
        let paths: Vec<_> = errors.iter().map(|e| e.path().display().to_string()).collect();
        assert_eq!(paths, ["/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/manifests/scheduler.yaml"], "{errors:?}");
        assert!(errors[0].to_string().contains("not a regular file"), "{}", errors[0]);

        // kubelet's staticPodPath is a file, or a link loop: the directory cannot be listed.
        std::fs::write(root.join("etc/kubernetes/file"), "").expect("write");
        std::os::unix::fs::symlink("/etc/kubernetes/loop", root.join("etc/kubernetes/loop")).expect("symlink");
        for unlisted in ["/etc/kubernetes/file", "/etc/kubernetes/loop"] {
            let (pods, errors) = load_dir(&host, Path::new(unlisted));
            assert!(pods.is_empty(), "{pods:?}");
            assert_eq!(errors.len(), 1, "{unlisted}: {errors:?}");
            assert!(matches!(&errors[0], ManifestError::File(FileError::Unreadable { path, .. }) if path == Path::new(unlisted)), "{errors:?}");
        }

        // More entries than are listed (dot files kubelet skips): the manifests past the cap
        // may be among those not listed, which is said.
        let crowded = root.join("etc/kubernetes/crowded");
        std::fs::create_dir_all(&crowded).expect("mkdir");
        for i in 0..MAX_DIR_ENTRIES + 1 {
            std::fs::write(crowded.join(format!(".{i}")), "").expect("write");
        }
        std::fs::write(crowded.join("kube-apiserver.yaml"), APISERVER).expect("write");
        let (_, errors) = load_dir(&host, Path::new("/etc/kubernetes/crowded"));
        assert!(errors.iter().any(|e| matches!(e, ManifestError::TooMany { .. })), "{errors:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
