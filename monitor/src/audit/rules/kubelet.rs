//! Rules about kubelet and the runtime it talks to: its runtime endpoint (missing, silent, not
//! the installed runtime), shims nothing uses, and kubelet not running where it is expected.


use crate::{
    findings::{Finding, Rule, Severity},
    node::{binaries::Location, snapshot::{NodeSnapshot, endpoint_path}},
};

rule!(RUNTIME_ENDPOINT_MISSING, "runtime-endpoint-missing", Critical, "kubelet's runtime endpoint does not exist",
    "Kubelet cannot reach a runtime: the node never becomes Ready.");

rule!(RUNTIME_ENDPOINT_UNRESPONSIVE, "runtime-endpoint-unresponsive", Critical, "kubelet's runtime endpoint does not answer",
    "The socket exists but no CRI server answers on it (runtime hung, stale socket).");

rule!(RUNTIME_ENDPOINT_NOT_INSTALLED, "runtime-endpoint-not-installed-runtime", Critical, "kubelet's runtime endpoint is not the runtime installed",
    "Kubelet talks to a runtime other than the one this node installs and configures.");

rule!(RUNTIME_SHIM_UNUSED, "runtime-shim-unused", Warning, "a runtime shim is installed that nothing uses",
    "Leftover or half-installed shim (e.g. cri-dockerd on a containerd node): installers and agents drive the wrong runtime.");

rule!(KUBELET_NOT_RUNNING, "kubelet-not-running", Critical, "kubelet is expected but not running",
    "The node is being bootstrapped or configured for Kubernetes but kubelet never started.");

pub(super) fn runtime_endpoint(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let endpoint = facts.kubelet_endpoint();
    let socket_path = facts.kubelet_socket();
    let source = endpoint.source.clone().unwrap_or_else(|| "kubelet default".into());
    let installed_runtimes: Vec<String> = ["containerd", "crio", "cri-dockerd", "dockerd"]
        .iter()
        .filter(|n| !facts.installed(n).is_empty())
        .map(|n| n.to_string())
        .collect();
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
    if let Some(r) = s.runtime() {
        // dockershim and cri-dockerd answer as "docker"; CRI-O as "cri-o".
        let names: &[&str] = match r.runtime_name.as_str() {
            "docker" => &["dockerd", "cri-dockerd"],
            "cri-o" => &["crio"],
            other => &[other][..],
        };
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
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
    let copies = facts.installed("cri-dockerd");
    let units: Vec<_> = facts.units.iter().filter(|u| u.to_string_lossy().contains("cri-docker")).collect();
    if copies.is_empty() && units.is_empty() {
        return;
    }
    let kubelet_uses = endpoint_path(&facts.kubelet_endpoint().value).contains("cri-docker");
    let dockerd = facts.installed("dockerd");
    if kubelet_uses && !dockerd.is_empty() {
        return;
    }
    let title = if dockerd.is_empty() {
        "cri-dockerd is installed but dockerd, the runtime it fronts, is not"
    } else {
        "cri-dockerd is installed but kubelet does not use it"
    };
    let mut f = Finding::new(&RUNTIME_SHIM_UNUSED, "cri-dockerd", title);
    for b in &copies {
        f = f.evidence(b.path.display().to_string(), b.version_source.clone().unwrap_or_else(|| "binary".into()));
    }
    for u in &units {
        f = f.evidence(u.display().to_string(), "systemd unit");
    }
    let ep = facts.kubelet_endpoint();
    f = f.evidence(ep.source.unwrap_or_else(|| "kubelet default".into()), format!("kubelet runtime endpoint {}", ep.value));
    if dockerd.is_empty() {
        f = f.evidence("PATH", "no dockerd");
    }
    out.push(f.remediation("Remove the cri-dockerd binary and its cri-docker units (or finish installing Docker if it is the intended runtime); make the installer's runtime choice (e.g. KubeKey containerManager) consistent."));
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
