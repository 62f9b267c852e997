//! Rules about the CRI: the API versions each runtime socket serves, and the `crictl` copies
//! operators and installers pick from.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{binaries::Location, snapshot::NodeSnapshot},
};

rule!(CRI_V1_UNAVAILABLE, "cri-v1-unavailable", Warning, "a socket used as CRI serves no CRI v1",
    "A CRI client is configured on this socket (kubelet, crictl) but it serves no CRI v1: every v1 client (kubelet >= 1.26, crictl >= 1.26, node agents such as kruise-daemon 1.6) fails with Unimplemented.");

rule!(CRI_TOOL_MISSING, "cri-tool-missing", Info, "crictl is not on the PATH",
    "Operators and installers that need crictl fail; installers may be stuck choosing between candidate copies.");

rule!(CRI_TOOL_DUPLICATE, "cri-tool-duplicate", Info, "several copies of crictl on the PATH",
    "Which crictl runs depends on PATH order; versions may not match the runtime.");

rule!(INSTALLER_ASSET_CONFLICT, "installer-asset-conflict", Critical, "several candidate copies of a tool in an installer cache",
    "Installers that look an asset up by name (kOps nodeup) stop with `found multiple matching assets` and retry forever.");

/// Sockets that configured CRI clients use and that serve no CRI v1. A socket nothing uses as
/// CRI is not judged: Docker's own containerd disables the CRI plugin on purpose.
pub(super) fn cri_versions(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    use crate::node::cri_facts::ApiAnswer::*;
    for s in facts.cri.sockets.iter().filter(|s| s.exists) {
        let clients = facts.cri_clients_of(&s.endpoint);
        if clients.is_empty() || !matches!(s.v1, Unimplemented { .. }) {
            continue;
        }
        let endpoint = format!("unix://{}", s.endpoint.display());
        let title = match &s.v1alpha2 {
            Served(r) => format!("{endpoint} serves CRI v1alpha2 only ({} {})", r.runtime_name, r.runtime_version),
            _ => format!("{endpoint} serves no CRI API (CRI plugin disabled or not a CRI runtime)"),
        };
        let detail = |a: &crate::node::cri_facts::ApiAnswer| match a {
            Served(r) => format!("served: {} {} (API {})", r.runtime_name, r.runtime_version, r.runtime_api_version),
            Unimplemented { message } | NoAnswer { message } => message.clone(),
            NotAsked => "not asked".into(),
        };
        let mut f = Finding::new(&CRI_V1_UNAVAILABLE, &endpoint, title);
        for c in &clients {
            f = f.evidence(c.source.clone(), format!("{} uses {endpoint}", c.client));
        }
        out.push(
            f.evidence(format!("{endpoint} (runtime.v1 Version)"), detail(&s.v1))
                .evidence(format!("{endpoint} (runtime.v1alpha2 Version)"), detail(&s.v1alpha2))
                .remediation("Run a CRI v1 runtime (containerd >= 1.5 with the CRI plugin enabled, cri-dockerd >= 0.3.0 instead of dockershim), or keep v1-only clients (kubelet >= 1.26, kruise-daemon >= 1.6) off this socket."),
        );
    }
}

pub(super) fn cri_tools(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let on_path = facts.installed("crictl");
    let cached: Vec<_> = facts.binaries.iter().filter(|b| b.location == Location::InstallerCache).collect();
    // Duplicates in installer caches, by tool name.
    let mut names: Vec<&str> = cached.iter().map(|b| b.name.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let copies: Vec<_> = cached.iter().filter(|b| b.name == name).collect();
        if copies.len() < 2 {
            continue;
        }
        let mut f = Finding::new(&INSTALLER_ASSET_CONFLICT, name, format!("{} candidate copies of {name} in the installer cache", copies.len()));
        for b in &copies {
            let bundle = b.path.components().nth(4).map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
            f = f.evidence(b.path.display().to_string(), format!("from asset {bundle}"));
        }
        out.push(f.remediation(format!(
            "Keep one source of {name}: drop it from the extra package (e.g. kOps `containerd.packages` bundles such as cri-containerd-cni ship crictl) or from the installer's own assets, clear the cache and re-run the installer."
        )));
    }
    // k0s nodes use the CLI k0s bundles (`k0s ctr`); no crictl is expected there.
    if !facts.expects_kubelet() || !facts.installed("k0s").is_empty() {
        return;
    }
    if on_path.is_empty() {
        let mut f = Finding::new(&CRI_TOOL_MISSING, "crictl", "crictl is not on the PATH");
        f = f.evidence("PATH", "no crictl in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin, /opt/bin");
        for b in cached.iter().filter(|b| b.name == "crictl") {
            f = f.evidence(b.path.display().to_string(), "candidate copy in the installer cache (not installed)");
        }
        out.push(f.remediation("Install crictl (cri-tools) matching the Kubernetes minor version, or let the installer finish installing it."));
    } else if on_path.len() > 1 {
        let mut f = Finding::new(&CRI_TOOL_DUPLICATE, "crictl", format!("{} copies of crictl on the PATH", on_path.len()));
        for b in &on_path {
            f = f.evidence(b.path.display().to_string(), b.version_source.clone().unwrap_or_else(|| "version unknown".into()));
        }
        out.push(f.remediation("Keep one crictl (the one matching the Kubernetes minor version) and remove the others."));
    }
}
