//! What the node is asked to run from its own files: static pod manifests (their images, pull
//! policies and memory requests) and a distribution's image list (k0s `ClusterConfig`
//! `spec.images`, `/etc/k0s/k0s.yaml`), with the pull policy that applies.
//!
//! Only the fields the audit's rules need are read; attribution has its own view of static pods.

use std::path::{Path, PathBuf};

use crate::node::{
    containerd_config::scrub,
    host_root::{FileError, HostRoot},
};

/// A container of a static pod, as far as the audit cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestContainer {
    pub name: String,
    pub image: String,
    pub memory_request: Option<String>,
    pub image_pull_policy: Option<String>,
    /// `file:line` of its `image:`.
    pub image_source: String,
}

#[derive(Debug, Clone)]
pub struct StaticPodManifest {
    pub path: PathBuf,
    pub name: String,
    pub namespace: String,
    pub priority_class_name: Option<String>,
    pub containers: Vec<ManifestContainer>,
}

impl StaticPodManifest {
    /// A control-plane component (kubeadm's names, or `system-node-critical`).
    pub fn is_control_plane(&self) -> bool {
        ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"].contains(&self.name.as_str())
            || self.priority_class_name.as_deref() == Some("system-node-critical")
    }
}

/// A file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}:{line}: not a pod manifest: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
}

fn yaml_error(path: &Path, err: &serde_yaml::Error) -> ManifestProblem {
    ManifestProblem::Syntax {
        path: path.to_path_buf(),
        line: err.location().map(|l| l.line()),
        message: scrub(err.to_string().split(" at line ").next().unwrap_or("invalid YAML")),
    }
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Parses one static pod manifest.
pub fn parse_manifest(path: &Path, text: &str) -> Result<StaticPodManifest, ManifestProblem> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let str_at = |v: &serde_yaml::Value, keys: &[&str]| -> Option<String> {
        let mut cur = v;
        for k in keys {
            cur = cur.as_mapping()?.get(*k)?;
        }
        cur.as_str().map(str::to_string)
    };
    if str_at(&doc, &["kind"]).as_deref() != Some("Pod") {
        return Err(ManifestProblem::Syntax { path: path.to_path_buf(), line: Some(1), message: "kind is not Pod".into() });
    }
    let name = str_at(&doc, &["metadata", "name"]).unwrap_or_default();
    let namespace = str_at(&doc, &["metadata", "namespace"]).unwrap_or_else(|| "default".into());
    let spec = doc.get("spec");
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.as_sequence())
        .map(|seq| {
            seq.iter()
                .map(|c| {
                    let image = str_at(c, &["image"]).unwrap_or_default();
                    ManifestContainer {
                        name: str_at(c, &["name"]).unwrap_or_default(),
                        image_source: match line_of(text, &image).filter(|_| !image.is_empty()) {
                            Some(l) => format!("{}:{l}", path.display()),
                            None => path.display().to_string(),
                        },
                        image,
                        memory_request: c
                            .get("resources")
                            .and_then(|r| r.get("requests"))
                            .and_then(|r| r.get("memory"))
                            .and_then(|m| m.as_str().map(str::to_string).or_else(|| m.as_u64().map(|n| n.to_string()))),
                        image_pull_policy: str_at(c, &["imagePullPolicy"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(StaticPodManifest {
        path: path.to_path_buf(),
        name,
        namespace,
        priority_class_name: spec.and_then(|s| str_at(s, &["priorityClassName"])),
        containers,
    })
}

/// Loads every `*.yaml`, `*.yml`, `*.json` manifest in a host directory.
pub fn load_dir(root: &HostRoot, dir: &Path) -> (Vec<StaticPodManifest>, Vec<ManifestProblem>) {
    let mut pods = Vec::new();
    let mut problems = Vec::new();
    for path in root.list_dir(dir) {
        let is_manifest = path.extension().and_then(|e| e.to_str()).is_some_and(|e| ["yaml", "yml", "json"].contains(&e));
        if !is_manifest {
            continue;
        }
        match root.read_text(&path) {
            Ok(text) => match parse_manifest(&path, &text) {
                Ok(pod) => pods.push(pod),
                Err(p) => problems.push(p),
            },
            Err(e) => problems.push(e.into()),
        }
    }
    (pods, problems)
}

/// An image a distribution's config tells the node to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroImage {
    pub component: String,
    pub reference: String,
    pub source: String,
}

/// k0s `ClusterConfig`: its images and `spec.images.default_pull_policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K0sImages {
    pub pull_policy: Option<(String, String)>,
    pub images: Vec<DistroImage>,
}

pub const K0S_CONFIG: &str = "/etc/k0s/k0s.yaml";

/// Reads the images of a k0s `ClusterConfig` that a worker runs: kube-proxy (unless disabled),
/// coredns, pause, the CNI of the configured provider, konnectivity and the node-local load
/// balancer's envoy when enabled.
pub fn parse_k0s(path: &Path, text: &str) -> Result<K0sImages, ManifestProblem> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let get = |keys: &[&str]| -> Option<&serde_yaml::Value> {
        let mut cur = &doc;
        for k in keys {
            cur = cur.as_mapping()?.get(*k)?;
        }
        Some(cur)
    };
    let src = |needle: &str| match line_of(text, needle) {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    };
    let mut out = K0sImages::default();
    if let Some(p) = get(&["spec", "images", "default_pull_policy"]).and_then(|v| v.as_str()) {
        out.pull_policy = Some((p.to_string(), src("default_pull_policy")));
    }
    let provider = get(&["spec", "network", "provider"]).and_then(|v| v.as_str()).unwrap_or("kuberouter");
    let proxy_disabled = get(&["spec", "network", "kubeProxy", "disabled"]).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut components: Vec<(&str, Vec<&str>)> = vec![("coredns", vec!["coredns"]), ("pause", vec!["pause"]), ("konnectivity", vec!["konnectivity"])];
    if !proxy_disabled {
        components.push(("kube-proxy", vec!["kubeproxy"]));
    }
    match provider {
        "calico" => components.push(("calico", vec!["calico", "cni"])),
        "kuberouter" => components.push(("kube-router", vec!["kuberouter", "cni"])),
        _ => {}
    }
    for (component, keys) in components {
        let mut path = vec!["spec", "images"];
        path.extend(keys.iter().copied());
        if let Some(img) = get(&path).filter(|v| v.is_mapping()) {
            let image = img.get("image").and_then(|v| v.as_str());
            let version = img.get("version").and_then(|v| v.as_str());
            if let (Some(image), Some(version)) = (image, version) {
                out.images.push(DistroImage { component: component.into(), reference: format!("{image}:{version}"), source: src(version) });
            }
        }
    }
    let nllb = ["spec", "network", "nodeLocalLoadBalancing"];
    let enabled = get(&[nllb[0], nllb[1], nllb[2], "enabled"]).and_then(|v| v.as_bool()).unwrap_or(false);
    if enabled
        && let Some(envoy) = get(&[nllb[0], nllb[1], nllb[2], "envoyProxy", "image"]) {
            let image = envoy.get("image").and_then(|v| v.as_str());
            let version = envoy.get("version").and_then(|v| v.as_str());
            if let (Some(image), Some(version)) = (image, version) {
                out.images.push(DistroImage { component: "envoy".into(), reference: format!("{image}:{version}"), source: src(version) });
            }
        }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // kube-scheduler.yaml as kubeadm 1.30 writes it (abridged: probes and volumes kept short).
    const SCHEDULER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: kube-scheduler
    tier: control-plane
  name: kube-scheduler
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-scheduler
    - --kubeconfig=/etc/kubernetes/scheduler.conf
    image: registry.k8s.io/kube-scheduler:v1.30.2
    imagePullPolicy: IfNotPresent
    name: kube-scheduler
    resources:
      requests:
        cpu: 100m
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
status: {}
"#;

    #[test]
    fn kubeadm_manifest() {
        let pod = parse_manifest(Path::new("/etc/kubernetes/manifests/kube-scheduler.yaml"), SCHEDULER).unwrap();
        assert_eq!(pod.name, "kube-scheduler");
        assert!(pod.is_control_plane());
        assert_eq!(pod.containers[0].image, "registry.k8s.io/kube-scheduler:v1.30.2");
        assert_eq!(pod.containers[0].image_source, "/etc/kubernetes/manifests/kube-scheduler.yaml:15");
        assert_eq!(pod.containers[0].memory_request, None);
        assert!(parse_manifest(Path::new("/x"), "kind: Deployment").is_err());
        assert!(parse_manifest(Path::new("/x"), "{{{").is_err());
    }
}
