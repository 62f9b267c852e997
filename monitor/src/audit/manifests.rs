//! What the node is asked to run from its own files: static pod manifests (read as
//! `node::static_pods` parses them, through the host root) and a distribution's image list
//! (k0s `ClusterConfig` `spec.images`, `/etc/k0s/k0s.yaml`), with the pull policy that applies.

use std::path::{Path, PathBuf};

use crate::node::{
    containerd_config::scrub,
    host_root::{FileError, HostRoot},
    static_pods::{self, ManifestError, StaticPod},
};

/// A file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}:{line}: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
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

/// Loads the static pods of a host directory, the files kubelet would read (any but dot files).
pub fn load_dir(root: &HostRoot, dir: &Path) -> (Vec<StaticPod>, Vec<ManifestProblem>) {
    let mut pods = Vec::new();
    let mut problems = Vec::new();
    for path in root.list_dir(dir) {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if !static_pods::is_manifest_name(&name) || !root.resolve(&path).is_file() {
            continue;
        }
        match root.read_text_limited(&path, static_pods::MAX_MANIFEST_BYTES) {
            Ok(text) => match static_pods::parse(&text, &path) {
                Ok(mut found) => pods.append(&mut found),
                Err(e) => problems.push(e.into()),
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

    #[test]
    fn a_directory_as_kubelet_reads_it() {
        let root = std::env::temp_dir().join(format!("nrm-audit-manifests-{}", std::process::id()));
        let dir = root.join("etc/kubernetes/manifests");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pod = "kind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.12-0\n";
        // kubelet reads every file but dot files, whatever its extension.
        std::fs::write(dir.join("etcd.manifest"), pod).expect("write");
        std::fs::write(dir.join(".etcd.yaml.swp"), "garbage").expect("write");
        std::fs::write(dir.join("broken.yaml"), "kind: Pod\nmetadata: [").expect("write");
        let (pods, problems) = load_dir(&HostRoot::new(&root), Path::new("/etc/kubernetes/manifests"));
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["etcd"]);
        assert_eq!(pods[0].containers[0].image_source, "/etc/kubernetes/manifests/etcd.manifest:6");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].to_string().starts_with("/etc/kubernetes/manifests/broken.yaml:"), "{}", problems[0]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
