//! Rules about kubelet and the runtime it talks to: its runtime endpoint (missing, silent, not
//! the installed runtime), shims nothing uses, and kubelet not running where it is expected.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{binaries::Location, containerd_config::Release, runtimes, snapshot::NodeSnapshot},
};

rule!(RUNTIME_ENDPOINT_MISSING, "runtime-endpoint-missing", Critical, "kubelet's runtime endpoint does not exist",
    "Kubelet cannot reach a runtime: the node never becomes Ready.");

rule!(RUNTIME_ENDPOINT_UNRESPONSIVE, "runtime-endpoint-unresponsive", Critical, "kubelet's runtime endpoint does not answer",
    "The socket exists but no CRI server answers on it (runtime hung, stale socket), or not in the CRI API version kubelet speaks (v1 since kubelet 1.26).");

rule!(RUNTIME_ENDPOINT_NOT_INSTALLED, "runtime-endpoint-not-installed-runtime", Critical, "kubelet's runtime endpoint is not the runtime installed",
    "Kubelet talks to a runtime other than the one this node installs and configures.");

rule!(RUNTIME_SHIM_UNUSED, "runtime-shim-unused", Warning, "a runtime shim is installed that nothing uses",
    "Leftover or half-installed shim (e.g. cri-dockerd on a containerd node): installers and agents drive the wrong runtime.");

rule!(KUBELET_NOT_RUNNING, "kubelet-not-running", Critical, "kubelet is expected but not running",
    "The node is being bootstrapped or configured for Kubernetes but kubelet never started.");

pub(super) fn runtime_endpoint(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let endpoint = facts.kubelet_endpoint();
    let socket_path = facts.kubelet_socket();
    let source = endpoint.origin.to_string();
    let mut installed_runtimes: Vec<String> =
        runtimes::runtime_daemons().filter(|n| !facts.installed(n).is_empty()).map(str::to_string).collect();
    installed_runtimes.dedup();
    let answering: Vec<String> = facts
        .cri
        .sockets
        .iter()
        .filter(|s| s.endpoint != socket_path)
        .filter_map(|s| s.runtime().map(|r| format!("unix://{} answers as {} {}", s.endpoint.display(), r.runtime_name, r.runtime_version)))
        .collect();
    let subject = endpoint.value.clone();
    let facts_socket = facts.cri.socket(&socket_path);
    let exists = facts_socket.is_some_and(|s| s.exists);
    if !exists {
        let mut f = Finding::new(&RUNTIME_ENDPOINT_MISSING, &subject, format!("kubelet's runtime endpoint {} does not exist", endpoint.value))
            .evidence(source, format!("container-runtime-endpoint: {}", endpoint.value))
            .evidence(socket_path.display().to_string(), "no such socket");
        for a in &answering {
            f = f.evidence("CRI Version", a.clone());
        }
        if !installed_runtimes.is_empty() {
            f = f.evidence("PATH", format!("runtimes installed: {}", installed_runtimes.join(", ")));
        }
        out.push(f.remediation("Point kubelet's containerRuntimeEndpoint (or --container-runtime-endpoint) at the socket of the runtime this node runs, or start that runtime."));
        return;
    }
    let Some(s) = facts_socket else { return };
    if !s.answers() {
        let why = match &s.v1 {
            crate::node::cri_facts::ApiAnswer::NoAnswer { message } => message.clone(),
            _ => "no answer".into(),
        };
        out.push(
            Finding::new(&RUNTIME_ENDPOINT_UNRESPONSIVE, &subject, format!("kubelet's runtime endpoint {} does not answer", endpoint.value))
                .evidence(source, format!("container-runtime-endpoint: {}", endpoint.value))
                .evidence(format!("unix://{} (CRI Version)", socket_path.display()), why)
                .remediation("Check the runtime's service (`systemctl status containerd`), its logs, and whether the socket is stale."),
        );
        return;
    }
    // kubelet 1.26 and later speak CRI v1 only (KEP-2040).
    let kubelet_release = facts.installed("kubelet").iter().find_map(|b| {
        let v = b.version()?;
        Some((Release::parse(&v)?, format!("{}: {v}", b.path.display())))
    });
    if let (crate::node::cri_facts::ApiAnswer::Unimplemented { message }, Some((release, version_source))) = (&s.v1, &kubelet_release)
        && (release.major, release.minor) >= (1, 26)
    {
        out.push(
            Finding::new(&RUNTIME_ENDPOINT_UNRESPONSIVE, &subject, format!(
                "kubelet {release} speaks CRI v1 only but its runtime endpoint {} does not serve it",
                endpoint.value
            ))
            .evidence(source, format!("container-runtime-endpoint: {}", endpoint.value))
            .evidence(version_source.clone(), "kubelet >= 1.26: CRI v1 only")
            .evidence(format!("unix://{} (runtime.v1 Version)", socket_path.display()), message.clone())
            .remediation("Upgrade the runtime to one serving CRI v1 (containerd >= 1.5 with the CRI plugin enabled, cri-dockerd >= 0.3.0), or point kubelet at the runtime that serves it."),
        );
        return;
    }
    if let Some(r) = s.runtime() {
        // dockershim and cri-dockerd answer as "docker" (for dockerd); CRI-O as "cri-o"; k3s's
        // and k0s's embedded containerd as "containerd".
        let names: Vec<String> = runtimes::daemons_answering_as(&r.runtime_name).into_iter().map(str::to_string).collect();
        if !installed_runtimes.is_empty() && !installed_runtimes.iter().any(|i| names.contains(i)) && facts.binaries.iter().any(|b| b.location == Location::Path) {
            out.push(
                Finding::new(&RUNTIME_ENDPOINT_NOT_INSTALLED, &subject, format!(
                    "kubelet's runtime endpoint answers as {} but the node installs {}",
                    r.runtime_name,
                    installed_runtimes.join(", ")
                ))
                .evidence(source, format!("container-runtime-endpoint: {}", endpoint.value))
                .evidence(format!("unix://{} (CRI Version)", socket_path.display()), format!("{} {}", r.runtime_name, r.runtime_version))
                .remediation("Point kubelet at the runtime this node is configured for."),
            );
        }
    }
}

pub(super) fn runtime_shims(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    // Each CRI adapter of the table (cri-dockerd) installed but unused or fronting nothing.
    for adapter in runtimes::RUNTIMES.iter().filter(|r| !r.fronts.is_empty()) {
        let Some(&name) = adapter.binaries.first() else { continue };
        let copies: Vec<_> = adapter.binaries.iter().flat_map(|b| facts.installed(b)).collect();
        let units: Vec<_> =
            facts.units.iter().filter(|u| u.file_name().is_some_and(|n| adapter.units.iter().any(|a| n == *a))).collect();
        if copies.is_empty() && units.is_empty() {
            continue;
        }
        let kubelet_socket = facts.kubelet_socket();
        let kubelet_uses = runtimes::runtime_of_socket(&kubelet_socket.to_string_lossy()).is_some_and(|r| r.name == adapter.name);
        let fronted: Vec<_> = adapter.fronts.iter().flat_map(|b| facts.installed(b)).collect();
        if kubelet_uses && !fronted.is_empty() {
            continue;
        }
        let runtime = adapter.fronts.join(", ");
        let title = if fronted.is_empty() {
            format!("{name} is installed but {runtime}, the runtime it fronts, is not")
        } else {
            format!("{name} is installed but kubelet does not use it")
        };
        let mut f = Finding::new(&RUNTIME_SHIM_UNUSED, name, title);
        for b in &copies {
            f = f.evidence(b.path.display().to_string(), b.version_source.clone().unwrap_or_else(|| "binary".into()));
        }
        for u in &units {
            f = f.evidence(u.display().to_string(), "systemd unit");
        }
        let ep = facts.kubelet_endpoint();
        f = f.evidence(ep.origin.to_string(), format!("kubelet runtime endpoint {}", ep.value));
        if fronted.is_empty() {
            f = f.evidence("PATH", format!("no {runtime}"));
        }
        out.push(f.remediation(format!("Remove the {name} binary and its units (or finish installing {runtime} if it is the intended runtime); make the installer's runtime choice (e.g. KubeKey containerManager) consistent.")));
    }
}

pub(super) fn kubelet_running(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let Some(procs) = &facts.processes else { return };
    if facts.kubelet.running.is_some() || !facts.expects_kubelet() {
        return;
    }
    let mut f = Finding::new(&KUBELET_NOT_RUNNING, "kubelet", "kubelet is not running");
    for p in procs.iter().filter(|p| crate::node::snapshot::is_bootstrap_agent(p)) {
        let args: Vec<String> = crate::audit::redact::argv_shown(&p.argv).into_iter().take(4).collect();
        f = f.evidence(format!("/proc/{}/cmdline", p.pid), format!("bootstrap agent running: {}", args.join(" ")));
    }
    if let Some(path) = &facts.kubelet.config_path {
        f = f.evidence(path.display().to_string(), "kubelet configuration present");
    } else {
        f = f.evidence("kubelet", "no kubelet configuration written yet (bootstrap did not get that far)");
    }
    for b in facts.installed("kubelet") {
        f = f.evidence(b.path.display().to_string(), "kubelet installed");
    }
    out.push(f.remediation("Look at the bootstrap agent's log (kOps: `journalctl -u kops-configuration`; kubeadm: `journalctl -u kubelet`) for the step it is stuck on; the other findings name likely causes."));
}
