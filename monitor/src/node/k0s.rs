//! k0s's `ClusterConfig` (`/etc/k0s/k0s.yaml`): the images a k0s worker runs (its
//! `spec.images`, for the components the configuration enables) and the pull policy that
//! applies to them. It only parses; the audit judges whether the images can be had.

use std::path::Path;

use super::static_pods::ManifestError;
use super::parse_error::scrub;

fn yaml_error(path: &Path, err: &serde_yaml::Error) -> ManifestError {
    ManifestError::Parse {
        path: path.to_path_buf(),
        line: err.location().map(|l| l.line()),
        message: scrub(err.to_string().split(" at line ").next().unwrap_or("invalid YAML")),
    }
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
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

pub const CONFIG: &str = "/etc/k0s/k0s.yaml";

/// Reads the images of a k0s `ClusterConfig` that a worker runs: kube-proxy (unless disabled),
/// coredns, pause, the CNI of the configured provider, konnectivity and the node-local load
/// balancer's envoy when enabled.
pub fn parse(path: &Path, text: &str) -> Result<K0sImages, ManifestError> {
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
