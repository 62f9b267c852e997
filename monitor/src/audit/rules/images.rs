//! Rules about the images the node must run (static pods, a distribution's image list): present
//! in the runtime's store, or pullable under the pull policy in force.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{containerd_config::Release, snapshot::NodeSnapshot},
};

rule!(IMAGE_NOT_PRESENT_NO_PULL, "image-not-present-pull-forbidden", Critical,
    "an image the node must run is not in the runtime's store and cannot be pulled",
    "Pull policy Never (kubelet reports ErrImageNeverPull), or IfNotPresent on an air-gapped node whose images come from its distribution's offline bundle (ErrImagePull): the component never starts.");

pub(super) fn images(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let socket = facts.cri.socket(&facts.kubelet_socket());
    let Some(store) = socket.and_then(|s| s.images.as_ref()) else { return };
    let in_store = |reference: &str| {
        let full = normalize_image(reference);
        store.iter().any(|s| normalize_image(s) == full)
    };
    let node_release = facts
        .installed("k0s")
        .into_iter()
        .chain(facts.installed("kubelet"))
        .find_map(|b| b.version().map(|v| (v, b.path.display().to_string())));
    // An offline bundle says the node's images come from it, not from a registry, unless a
    // registry mirror is configured that may serve them.
    let air_gapped = !facts.offline_bundles.is_empty() && facts.registry_host_files.is_empty();
    let cannot_pull = |policy: &str| policy == "Never" || (air_gapped && policy == "IfNotPresent");
    let mut report = |reference: &str, source: &str, policy: (&str, &str), who: &str| {
        if !cannot_pull(policy.0) || in_store(reference) {
            return;
        }
        let repo = image_repo(reference);
        let same_repo: Vec<&String> = store.iter().filter(|s| image_repo(s) == repo).collect();
        let mut f = Finding::new(&IMAGE_NOT_PRESENT_NO_PULL, reference, format!("{reference} ({who}) is not in the runtime's store and pull policy is {}", policy.0))
            .evidence(source, format!("image {reference}"))
            .evidence(policy.1, format!("pull policy {}", policy.0))
            .evidence(format!("unix://{} (CRI ListImages)", facts.kubelet_socket().display()), if same_repo.is_empty() {
                format!("no {repo} image among {} images", store.len())
            } else {
                format!("store has {}", same_repo.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            });
        if policy.0 != "Never" {
            for b in &facts.offline_bundles {
                let names: Vec<String> = b.archives.iter().filter_map(|a| a.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
                f = f.evidence(b.dir.display().to_string(), format!("air-gapped: {} imports its images from {}", b.distribution, names.join(", ")));
            }
        }
        if let (Some((v, src)), Some(tag)) = (&node_release, image_tag(reference))
            && minor_of(v).is_some() && minor_of(tag).is_some() && minor_of(v) != minor_of(tag) && repo.contains("kube") {
                f = f.evidence(src.clone(), format!("node release {v}, image tag {tag}: version skew"));
            }
        out.push(f.remediation("Import the image into the node's store (`ctr -n k8s.io images import`) or fix the reference to the node's release (k0s: remove the stale spec.images entries stored in the dynamic ClusterConfig); allow pulls if the node can reach the registry."));
    };
    for pod in &facts.static_pods {
        for c in &pod.containers {
            let (policy, source) = match &c.image_pull_policy {
                Some(p) => (p.as_str(), c.image_source.clone()),
                None => (default_pull_policy(&c.image), format!("{} (kubelet default for this tag)", c.image_source)),
            };
            report(&c.image, &c.image_source, (policy, &source), &format!("static pod {}", pod.name));
        }
    }
    // The runtime pulls its sandbox image when it is missing (as IfNotPresent would).
    if let Some((endpoint, image)) = socket.and_then(|s| s.sandbox_image().map(|i| (s.endpoint.display().to_string(), i.to_string()))) {
        let source = format!("unix://{endpoint} (CRI Status config)");
        report(&image, &source, ("IfNotPresent", &format!("{source} (the runtime pulls a missing sandbox image)")), "the runtime's sandbox image");
    }
    if let Some(k0s) = &facts.k0s {
        // k0s' `spec.images.default_pull_policy` defaults to IfNotPresent (docs/configuration.md).
        let (policy, src) = k0s.pull_policy.clone().unwrap_or_else(|| ("IfNotPresent".into(), format!("{} (k0s default)", crate::node::k0s::CONFIG)));
        for img in &k0s.images {
            report(&img.reference, &img.source, (&policy, &src), &img.component);
        }
    }
}

/// kubelet's pull policy for a container that sets none: Always for `:latest` or no tag,
/// IfNotPresent otherwise (Kubernetes API defaulting of `imagePullPolicy`).
fn default_pull_policy(reference: &str) -> &'static str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains('@') || image_tag(reference).is_some_and(|t| t != "latest") { "IfNotPresent" } else { "Always" }
}

/// `registry.k8s.io/pause:3.9` stays; `nginx:1` -> `docker.io/library/nginx:1`.
pub(super) fn normalize_image(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    let has_registry = reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let with_registry = if has_registry {
        reference.to_string()
    } else if reference.contains('/') {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    };
    let last = with_registry.rsplit('/').next().unwrap_or("");
    if last.contains(':') || last.contains('@') { with_registry } else { format!("{with_registry}:latest") }
}

pub(super) fn image_repo(reference: &str) -> String {
    let n = normalize_image(reference);
    let (head, last) = n.rsplit_once('/').unwrap_or(("", &n));
    let name = last.split(['@', ':']).next().unwrap_or(last);
    format!("{head}/{name}")
}

pub(super) fn image_tag(reference: &str) -> Option<&str> {
    let last = reference.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t)
}

/// `v1.30.2+k0s.0` -> (1, 30).
pub(super) fn minor_of(version: &str) -> Option<(u32, u32)> {
    let r = Release::parse(version)?;
    Some((r.major, r.minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("quay.io/k0sproject/kube-proxy:v1.29.6"), "quay.io/k0sproject/kube-proxy:v1.29.6");
        assert_eq!(image_repo("quay.io/k0sproject/kube-proxy:v1.29.6"), "quay.io/k0sproject/kube-proxy");
        assert_eq!(image_repo("localhost:5000/pause:3.9"), "localhost:5000/pause");
        assert_eq!(image_tag("registry.k8s.io/pause:3.9"), Some("3.9"));
        assert_eq!(minor_of("v1.30.2+k0s.0"), Some((1, 30)));
    }

    #[test]
    fn kubelets_default_pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("registry.k8s.io/kube-apiserver:v1.30.2"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/etcd@sha256:0123"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
    }
}
