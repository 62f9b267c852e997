//! The audit's rules: the catalogue ([`RULES`], data that can be printed and tested) and the
//! checks that turn [`NodeFacts`] into findings. Each check looks at facts only; none reads a
//! file or a socket. Evidence never carries a setting's value unless the rule interprets it
//! (cgroup driver, images, endpoints, memory sizes): secrets live next to these settings.

use std::path::Path;

use super::facts::{NodeFacts, endpoint_path};
use crate::{
    findings::{Finding, Rule, Severity},
    node::{
        binaries::Location,
        containerd_config::{ConfigProblem, Release},
        kubelet::{EvictionHardMemory, KubeletProblem, Reservation},
        memory::{self, Quantity},
        static_pods::ManifestError,
    },
};

macro_rules! rule {
    ($name:ident, $id:literal, $sev:ident, $title:literal, $desc:literal) => {
        pub const $name: Rule = Rule { id: $id, severity: Severity::$sev, title: $title, description: $desc };
    };
}

rule!(CONFIG_UNREADABLE, "config-unreadable", Warning, "a runtime configuration file cannot be read",
    "The audit cannot see this file (permissions, too large, not text); whatever it configures is unknown.");
rule!(CONFIG_UNPARSABLE, "config-unparsable", Critical, "a runtime configuration file does not parse",
    "The component that reads this file (containerd, kubelet) refuses it at start-up or ignores it.");
rule!(CONTAINERD_VERSION_UNSUPPORTED, "containerd-config-version-unsupported", Critical,
    "containerd config schema version not supported by the installed containerd",
    "containerd refuses to start with this file (`unsupported config version`); systemd restarts it in a loop.");
rule!(CONTAINERD_TABLES_IGNORED, "containerd-config-tables-ignored", Critical,
    "containerd config has plugin tables the installed release ignores",
    "Settings under these tables (cgroup driver, sandbox image, registries) are silently dropped: containerd runs on defaults.");
rule!(CGROUP_DRIVER_MISMATCH, "cgroup-driver-mismatch", Critical, "runtime and kubelet use different cgroup drivers",
    "Kubelet and the runtime disagree about pod cgroups; sandboxes are killed and re-created (exit 137) in a loop.");
rule!(SANDBOX_IMAGE_MISMATCH, "sandbox-image-mismatch", Warning, "the runtime's sandbox (pause) image is not the one kubelet expects",
    "Kubelet's image GC may remove the runtime's sandbox image, and air-gapped nodes cannot create pods without it.");
rule!(MEMORY_RESERVATION_MISSING, "memory-reservation-missing", Warning, "no memory reserved for the system or Kubernetes daemons",
    "Pods may take all memory: under pressure the kernel OOM-kills system daemons, kubelet or control-plane processes.");
rule!(MEMORY_RESERVATION_IMPLAUSIBLE, "memory-reservation-implausible", Warning, "memory reservations implausible for the node's capacity",
    "Reservations that exceed half the node or cannot be parsed leave too little for pods or none for daemons.");
rule!(EVICTION_HARD_MISSING, "eviction-hard-memory-missing", Warning, "no hard eviction threshold for memory",
    "Without memory.available in evictionHard kubelet never evicts before the kernel OOM killer acts.");
rule!(STATIC_POD_NO_MEMORY_REQUEST, "static-pod-memory-request-missing", Warning,
    "control-plane static pod without a memory request on a node with no memory reservation",
    "Nothing protects this control-plane component's memory; under pressure it is among the first OOM victims.");
rule!(RUNTIME_ENDPOINT_MISSING, "runtime-endpoint-missing", Critical, "kubelet's runtime endpoint does not exist",
    "Kubelet cannot reach a runtime: the node never becomes Ready.");
rule!(RUNTIME_ENDPOINT_UNRESPONSIVE, "runtime-endpoint-unresponsive", Critical, "kubelet's runtime endpoint does not answer",
    "The socket exists but no CRI server answers on it (runtime hung, stale socket).");
rule!(RUNTIME_ENDPOINT_NOT_INSTALLED, "runtime-endpoint-not-installed-runtime", Critical, "kubelet's runtime endpoint is not the runtime installed",
    "Kubelet talks to a runtime other than the one this node installs and configures.");
rule!(RUNTIME_SHIM_UNUSED, "runtime-shim-unused", Warning, "a runtime shim is installed that nothing uses",
    "Leftover or half-installed shim (e.g. cri-dockerd on a containerd node): installers and agents drive the wrong runtime.");
rule!(CRI_V1_UNAVAILABLE, "cri-v1-unavailable", Critical, "a runtime socket serves no CRI v1",
    "Every CRI v1 client (kubelet >= 1.26, crictl, node agents such as kruise-daemon 1.6) fails with Unimplemented.");
rule!(CRI_TOOL_MISSING, "cri-tool-missing", Warning, "crictl is not on the PATH",
    "Operators and installers that need crictl fail; installers may be stuck choosing between candidate copies.");
rule!(CRI_TOOL_DUPLICATE, "cri-tool-duplicate", Warning, "several copies of crictl on the PATH",
    "Which crictl runs depends on PATH order; versions may not match the runtime.");
rule!(INSTALLER_ASSET_CONFLICT, "installer-asset-conflict", Critical, "several candidate copies of a tool in an installer cache",
    "Installers that look an asset up by name (kOps nodeup) stop with `found multiple matching assets` and retry forever.");
rule!(KUBELET_NOT_RUNNING, "kubelet-not-running", Critical, "kubelet is expected but not running",
    "The node is being bootstrapped or configured for Kubernetes but kubelet never started.");
rule!(IMAGE_NOT_PRESENT_NO_PULL, "image-not-present-pull-forbidden", Critical,
    "an image the node must run is not in the runtime's store and cannot be pulled",
    "Kubelet reports ErrImageNeverPull; the component never starts.");

/// The catalogue, in report order.
pub const RULES: &[Rule] = &[
    CONFIG_UNREADABLE, CONFIG_UNPARSABLE, CONTAINERD_VERSION_UNSUPPORTED, CONTAINERD_TABLES_IGNORED,
    CGROUP_DRIVER_MISMATCH, SANDBOX_IMAGE_MISMATCH, MEMORY_RESERVATION_MISSING, MEMORY_RESERVATION_IMPLAUSIBLE,
    EVICTION_HARD_MISSING, STATIC_POD_NO_MEMORY_REQUEST, RUNTIME_ENDPOINT_MISSING, RUNTIME_ENDPOINT_UNRESPONSIVE,
    RUNTIME_ENDPOINT_NOT_INSTALLED, RUNTIME_SHIM_UNUSED, CRI_V1_UNAVAILABLE, CRI_TOOL_MISSING, CRI_TOOL_DUPLICATE,
    INSTALLER_ASSET_CONFLICT, KUBELET_NOT_RUNNING, IMAGE_NOT_PRESENT_NO_PULL,
];


/// Runs every check.
pub fn evaluate(facts: &NodeFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    unreadable_files(facts, &mut out);
    if uses_containerd(facts) {
        containerd_schema(facts, &mut out);
        if kubelet_uses_containerd(facts) {
            cgroup_driver(facts, &mut out);
            sandbox_image(facts, &mut out);
        }
    }
    if facts.kubelet.config.is_some() || !facts.kubelet.flags.is_empty() {
        memory_reservations(facts, &mut out);
        runtime_endpoint(facts, &mut out);
    }
    runtime_shims(facts, &mut out);
    cri_versions(facts, &mut out);
    cri_tools(facts, &mut out);
    kubelet_running(facts, &mut out);
    images(facts, &mut out);
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(b.rule)).then(a.subject.cmp(&b.subject)));
    out
}

fn uses_containerd(facts: &NodeFacts) -> bool {
    !facts.containerd_config.files.is_empty()
        || !facts.installed("containerd").is_empty()
        || facts.cri.sockets.iter().any(|s| s.runtime().is_some_and(|r| r.runtime_name == "containerd"))
}

/// Whether kubelet's runtime is containerd: its socket answers as containerd, or (unanswered)
/// its path is containerd's.
fn kubelet_uses_containerd(facts: &NodeFacts) -> bool {
    let socket = facts.kubelet_socket();
    match facts.cri.socket(&socket).and_then(|s| s.runtime()) {
        Some(r) => r.runtime_name == "containerd",
        None => socket.to_string_lossy().contains("containerd"),
    }
}

fn problem_finding(path: &Path, unreadable: bool, what: &str, detail: String, source: String) -> Finding {
    let rule = if unreadable { &CONFIG_UNREADABLE } else { &CONFIG_UNPARSABLE };
    let verb = if unreadable { "cannot be read" } else { "does not parse" };
    Finding::new(rule, path.display().to_string(), format!("{what} {} {verb}", path.display()))
        .evidence(source, detail)
        .remediation(if unreadable {
            "Make the file readable by the monitor (it runs as root with the host mounted read-only) or check it by hand."
        } else {
            "Fix the syntax at the line shown; `containerd config dump` / `kubelet --config` validate it."
        })
}

fn unreadable_files(facts: &NodeFacts, out: &mut Vec<Finding>) {
    for p in &facts.containerd_config.problems {
        match p {
            ConfigProblem::File(e) => out.push(problem_finding(e.path(), true, "containerd config", e.to_string(), e.path().display().to_string())),
            ConfigProblem::Syntax(e) => out.push(problem_finding(
                &e.path,
                false,
                "containerd config",
                e.message.clone(),
                format!("{}:{}", e.path.display(), e.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())),
            )),
        }
    }
    for p in &facts.kubelet.problems {
        match p {
            KubeletProblem::File(e) => out.push(problem_finding(e.path(), true, "kubelet configuration", e.to_string(), e.path().display().to_string())),
            KubeletProblem::Syntax { path, line, message } => out.push(problem_finding(
                path,
                false,
                "kubelet configuration",
                message.clone(),
                format!("{}:{}", path.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())),
            )),
        }
    }
    for p in &facts.manifest_problems {
        match p {
            super::manifests::ManifestProblem::File(e) => {
                out.push(problem_finding(e.path(), true, "manifest", e.to_string(), e.path().display().to_string()))
            }
            super::manifests::ManifestProblem::Syntax { path, line, message }
            | super::manifests::ManifestProblem::Manifest(ManifestError::Parse { path, line, message }) => {
                out.push(problem_finding(
                    path,
                    false,
                    "manifest",
                    message.clone(),
                    format!("{}:{}", path.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())),
                ))
            }
            super::manifests::ManifestProblem::Manifest(e) => {
                out.push(problem_finding(e.path(), true, "manifest", e.to_string(), e.path().display().to_string()))
            }
        }
    }
    if let (Some(problem), true) = (&facts.memory_problem, facts.processes.is_some()) {
        out.push(
            Finding::new(&CONFIG_UNREADABLE, "/proc/meminfo", "node memory capacity cannot be read from /proc/meminfo")
                .evidence("/proc/meminfo", problem.clone())
                .remediation("Mount the host's /proc (or the host root with its /proc) into the monitor."),
        );
    }
}

fn release_text(facts: &NodeFacts) -> (Option<Release>, String) {
    match &facts.containerd_release {
        Some(k) => (Some(k.release), k.source.clone()),
        None => (None, "containerd release unknown (assumed 1.7)".into()),
    }
}

fn containerd_schema(facts: &NodeFacts, out: &mut Vec<Finding>) {
    let Some(main) = facts.containerd_config.main() else { return };
    let (release, release_src) = release_text(facts);
    let Some(release) = release else { return };
    let eff = facts.containerd_config.effective(Some(release));
    let version_line = main.text.lines().position(|l| {
        l.trim_start().strip_prefix("version").is_some_and(|r| r.trim_start().starts_with('='))
    });
    let version_src = match version_line {
        Some(l) => format!("{}:{}", main.path.display(), l + 1),
        None => main.path.display().to_string(),
    };
    let subject = main.path.display().to_string();
    if let Err(refusal) = &eff.read_as {
        out.push(
            Finding::new(&CONTAINERD_VERSION_UNSUPPORTED, &subject, format!(
                "config declares version {} but containerd {release} reads at most version {}",
                eff.declared, refusal.max_supported
            ))
            .evidence(version_src.clone(), format!("version = {}", eff.declared))
            .evidence(release_src.clone(), format!("containerd {release}"))
            .remediation(format!(
                "Write the file in schema version {} (`containerd config default` of this release prints one), or install the containerd release the file was written for.",
                refusal.max_supported
            )),
        );
        return;
    }
    if eff.ignored.is_empty() {
        return;
    }
    let read_as = eff.read_as.clone().unwrap_or(eff.declared);
    let how = if read_as == eff.declared { String::new() } else { format!(" (read as version {read_as})") };
    let mut f = Finding::new(&CONTAINERD_TABLES_IGNORED, &subject, format!(
        "containerd {release} ignores {} plugin table(s) of this version {} file{how}",
        eff.ignored.len(),
        eff.declared,
    ))
    .evidence(version_src, format!("version = {} (read as {read_as})", eff.declared))
    .evidence(release_src, format!("containerd {release}"));
    for t in &eff.ignored {
        // The settings that break nodes first, then the rest.
        let mut keys: Vec<&str> = t.keys.iter().map(String::as_str).collect();
        keys.sort_by_key(|k| !["systemdcgroup", "sandbox_image", "config_path", "snapshotter"].contains(&k.to_ascii_lowercase().as_str()));
        keys.truncate(8);
        f = f.evidence(t.source.clone(), format!("[{}] ignored: {}{}", t.table, keys.join(", "), if t.keys.len() > 8 { ", ..." } else { "" }));
    }
    let fix = if release.major >= 2 {
        "Rewrite the CRI settings for version 3: `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options] SystemdCgroup = true` and `[plugins.'io.containerd.cri.v1.images'.pinned_images] sandbox = ...` (or declare `version = 2` to let containerd migrate the v2 tables); check with `containerd config dump`."
    } else {
        "Use version 2 tables (`[plugins.\"io.containerd.grpc.v1.cri\"...]`) for containerd 1.x, or upgrade containerd to 2.x before using version 3 tables; check with `containerd config dump`."
    };
    out.push(f.remediation(fix));
}

fn cgroup_driver(facts: &NodeFacts, out: &mut Vec<Finding>) {
    if facts.kubelet.config.is_none() && facts.kubelet.flags.is_empty() {
        return;
    }
    let kubelet = facts.kubelet.cgroup_driver();
    let (release, _) = release_text(facts);
    let eff = facts.containerd_config.effective(release);
    if eff.read_as.is_err() {
        return;
    }
    let socket = facts.cri.socket(&facts.kubelet_socket());
    let live = socket.and_then(|s| s.systemd_cgroup());
    let runtime_systemd = live.unwrap_or(eff.systemd_cgroup.value);
    let runtime_driver = if runtime_systemd { "systemd" } else { "cgroupfs" };
    if runtime_driver == kubelet.value {
        return;
    }
    let config_path = facts.containerd_config_path.display().to_string();
    let mut f = Finding::new(&CGROUP_DRIVER_MISMATCH, "kubelet/containerd", format!(
        "containerd uses the {runtime_driver} cgroup driver, kubelet uses {}",
        kubelet.value
    ))
    .evidence(kubelet.source.clone().unwrap_or_else(|| "kubelet default".into()), format!("cgroupDriver: {}", kubelet.value));
    f = match &eff.systemd_cgroup.source {
        Some(src) => f.evidence(src.clone(), format!("SystemdCgroup = {}", eff.systemd_cgroup.value)),
        None => f.evidence(config_path, format!(
            "SystemdCgroup not set in the tables containerd {} reads: default false (cgroupfs)",
            release.map(|r| r.to_string()).unwrap_or_else(|| "(release unknown)".into())
        )),
    };
    if let (Some(s), Some(v)) = (socket, live) {
        f = f.evidence(format!("unix://{} (CRI Status config)", s.endpoint.display()), format!("runtime reports SystemdCgroup = {v}"));
    }
    let fix = if kubelet.value == "systemd" {
        "Set SystemdCgroup = true for the default runc runtime in the table this containerd reads, restart containerd, then restart kubelet."
    } else {
        "Make both agree: set kubelet `cgroupDriver` to the runtime's driver (systemd is recommended on systemd hosts), then restart kubelet."
    };
    out.push(f.remediation(fix));
}

/// The sandbox image kubelet expects: `--pod-infra-container-image`.
fn sandbox_image(facts: &NodeFacts, out: &mut Vec<Finding>) {
    let Some(expected) = facts.kubelet.pod_infra_image() else { return };
    let (release, release_src) = release_text(facts);
    let eff = facts.containerd_config.effective(release);
    if eff.read_as.is_err() {
        return;
    }
    let socket = facts.cri.socket(&facts.kubelet_socket());
    let live = socket.and_then(|s| s.sandbox_image()).map(str::to_string);
    let actual = live.clone().unwrap_or_else(|| eff.sandbox_image.value.clone());
    if actual == expected.value {
        return;
    }
    let mut f = Finding::new(&SANDBOX_IMAGE_MISMATCH, "kubelet/containerd", format!(
        "containerd uses sandbox image {actual}, kubelet expects {}",
        expected.value
    ))
    .evidence(expected.source.clone().unwrap_or_default(), format!("--pod-infra-container-image={}", expected.value));
    f = match &eff.sandbox_image.source {
        Some(src) => f.evidence(src.clone(), format!("sandbox image {}", eff.sandbox_image.value)),
        None => f.evidence(release_src, format!("no sandbox image in the tables this release reads: default {}", eff.sandbox_image.value)),
    };
    if let (Some(s), Some(v)) = (socket, live) {
        f = f.evidence(format!("unix://{} (CRI Status config)", s.endpoint.display()), format!("runtime reports sandboxImage {v}"));
    }
    out.push(f.remediation("Set the same image in containerd's sandbox image setting and kubelet's --pod-infra-container-image, and make sure it is in the node's store."));
}

fn memory_reservations(facts: &NodeFacts, out: &mut Vec<Finding>) {
    let k = &facts.kubelet;
    let subject = k.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "kubelet".into());
    let system = k.reserved_memory(Reservation::System);
    let kube = k.reserved_memory(Reservation::Kube);
    if system.is_none() && kube.is_none() {
        let mut f = Finding::new(&MEMORY_RESERVATION_MISSING, &subject, "neither systemReserved nor kubeReserved reserves memory")
            .evidence(subject.clone(), "systemReserved.memory and kubeReserved.memory unset (no --system-reserved/--kube-reserved memory)");
        if let Some(total) = facts.memory_total {
            f = f.evidence("/proc/meminfo", format!("MemTotal {}", memory::human_bytes(total)));
        }
        out.push(f.remediation("Reserve memory for daemons, e.g. `systemReserved: {memory: 512Mi}` and `kubeReserved: {memory: 512Mi}` (more on large nodes), and restart kubelet."));
        for pod in facts.static_pods.iter().filter(|p| p.is_control_plane()) {
            let missing: Vec<&str> = pod.containers.iter().filter(|c| c.memory_request.is_none()).map(|c| c.name.as_str()).collect();
            if missing.is_empty() {
                continue;
            }
            out.push(
                Finding::new(&STATIC_POD_NO_MEMORY_REQUEST, format!("{}/{}", pod.namespace, pod.name), format!(
                    "static pod {} has no memory request ({}) and the node reserves none",
                    pod.name,
                    missing.join(", ")
                ))
                .evidence(pod.path.display().to_string(), format!("containers without resources.requests.memory: {}", missing.join(", ")))
                .evidence(subject.clone(), "no systemReserved/kubeReserved memory")
                .remediation("Give control-plane containers a memory request (kubeadm: patches for the component) and reserve memory for daemons."),
            );
        }
    }
    let mut reserved = 0u64;
    for (name, v) in [("systemReserved", &system), ("kubeReserved", &kube)] {
        let Some(v) = v else { continue };
        match memory::parse_quantity(&v.value) {
            Ok(Quantity::Bytes(b)) => reserved += b,
            _ => out.push(
                Finding::new(&MEMORY_RESERVATION_IMPLAUSIBLE, &subject, format!("{name}.memory is not a memory quantity"))
                    .evidence(v.source.clone().unwrap_or_default(), format!("{name}.memory: {}", v.value.chars().take(40).collect::<String>()))
                    .remediation("Use a quantity such as 512Mi or 1Gi."),
            ),
        }
    }
    if let (Some(total), true) = (facts.memory_total, reserved > 0)
        && reserved > total / 2 {
            let mut f = Finding::new(&MEMORY_RESERVATION_IMPLAUSIBLE, &subject, format!(
                "{} reserved for daemons on a node with {}",
                memory::human_bytes(reserved),
                memory::human_bytes(total)
            ));
            for (name, v) in [("systemReserved", &system), ("kubeReserved", &kube)] {
                if let Some(v) = v {
                    f = f.evidence(v.source.clone().unwrap_or_default(), format!("{name}.memory: {}", v.value));
                }
            }
            out.push(f.evidence("/proc/meminfo", format!("MemTotal {}", memory::human_bytes(total)))
                .remediation("Reserve a fraction of the node (typically 5-15% of memory) for system and Kubernetes daemons."));
        }
    match k.eviction_hard_memory() {
        EvictionHardMemory::Missing => out.push(
            Finding::new(&EVICTION_HARD_MISSING, &subject, "evictionHard is set without memory.available")
                .evidence(k.flag("eviction-hard").map(|f| f.source.clone()).or_else(|| k.config.as_ref().map(|c| c.locate(&["evictionHard"]))).unwrap_or_default(), "evictionHard has no memory.available threshold")
                .remediation("Add `memory.available: 100Mi` (or a percentage) to evictionHard."),
        ),
        EvictionHardMemory::Set(v) => {
            let zero = matches!(memory::parse_quantity(&v.value), Ok(Quantity::Bytes(0)) | Ok(Quantity::Percent(0.0)));
            if zero {
                out.push(
                    Finding::new(&EVICTION_HARD_MISSING, &subject, "the hard eviction threshold for memory is zero")
                        .evidence(v.source.clone().unwrap_or_default(), format!("memory.available: {}", v.value))
                        .remediation("Set memory.available to at least 100Mi."),
                );
            }
        }
        EvictionHardMemory::Default => {}
    }
}

fn runtime_endpoint(facts: &NodeFacts, out: &mut Vec<Finding>) {
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
            super::cri_facts::ApiAnswer::NoAnswer { message } => message.clone(),
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

fn runtime_shims(facts: &NodeFacts, out: &mut Vec<Finding>) {
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
        f = f.evidence(b.path.display().to_string(), b.version_output.clone().unwrap_or_else(|| "binary".into()));
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

fn cri_versions(facts: &NodeFacts, out: &mut Vec<Finding>) {
    use super::cri_facts::ApiAnswer::*;
    for s in facts.cri.sockets.iter().filter(|s| s.exists) {
        let (v1_ok, alpha) = (matches!(s.v1, Served(_)), &s.v1alpha2);
        if v1_ok || !matches!(s.v1, Unimplemented { .. }) {
            continue;
        }
        let title = match alpha {
            Served(r) => format!("{} serves CRI v1alpha2 only ({} {})", s.endpoint.display(), r.runtime_name, r.runtime_version),
            _ => format!("{} serves no CRI API (CRI plugin disabled or not a CRI runtime)", s.endpoint.display()),
        };
        let detail = |a: &super::cri_facts::ApiAnswer| match a {
            Served(r) => format!("served: {} {} (API {})", r.runtime_name, r.runtime_version, r.runtime_api_version),
            Unimplemented { message } | NoAnswer { message } => message.clone(),
            NotAsked => "not asked".into(),
        };
        out.push(
            Finding::new(&CRI_V1_UNAVAILABLE, format!("unix://{}", s.endpoint.display()), title)
                .evidence(format!("unix://{} (runtime.v1 Version)", s.endpoint.display()), detail(&s.v1))
                .evidence(format!("unix://{} (runtime.v1alpha2 Version)", s.endpoint.display()), detail(alpha))
                .remediation("Run a CRI v1 runtime (containerd >= 1.5 with the CRI plugin enabled, cri-dockerd >= 0.3.0 instead of dockershim), or keep v1-only clients (kubelet >= 1.26, kruise-daemon >= 1.6) off this socket."),
        );
    }
}

fn cri_tools(facts: &NodeFacts, out: &mut Vec<Finding>) {
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
            f = f.evidence(b.path.display().to_string(), b.version_output.clone().unwrap_or_else(|| "version unknown".into()));
        }
        out.push(f.remediation("Keep one crictl (the one matching the Kubernetes minor version) and remove the others."));
    }
}

fn kubelet_running(facts: &NodeFacts, out: &mut Vec<Finding>) {
    let Some(procs) = &facts.processes else { return };
    if facts.kubelet.running.is_some() || !facts.expects_kubelet() {
        return;
    }
    let mut f = Finding::new(&KUBELET_NOT_RUNNING, "kubelet", "kubelet is not running");
    for p in procs.iter().filter(|p| super::facts::is_bootstrap_agent(p)) {
        let args: Vec<String> = p.argv.iter().take(4).map(|a| redact_arg(a)).collect();
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

/// A command-line word with a secret value hidden (`--token=x` -> `--token=[REDACTED]`).
pub fn redact_arg(arg: &str) -> String {
    if let Some((name, _)) = arg.trim_start_matches('-').split_once('=')
        && crate::node::kubelet::is_sensitive_flag(name) {
            return format!("--{name}=[REDACTED]");
        }
    arg.to_string()
}

fn images(facts: &NodeFacts, out: &mut Vec<Finding>) {
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
    let mut report = |reference: &str, source: &str, policy: (&str, &str), who: &str| {
        if in_store(reference) {
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
        if let (Some((v, src)), Some(tag)) = (&node_release, image_tag(reference))
            && minor_of(v).is_some() && minor_of(tag).is_some() && minor_of(v) != minor_of(tag) && repo.contains("kube") {
                f = f.evidence(src.clone(), format!("node release {v}, image tag {tag}: version skew"));
            }
        out.push(f.remediation("Import the image into the node's store (`ctr -n k8s.io images import`) or fix the reference to the node's release (k0s: remove the stale spec.images entries stored in the dynamic ClusterConfig); allow pulls if the node can reach the registry."));
    };
    for pod in &facts.static_pods {
        for c in &pod.containers {
            if c.image_pull_policy.as_deref() == Some("Never") {
                report(&c.image, &c.image_source, ("Never", &c.image_source), &format!("static pod {}", pod.name));
            }
        }
    }
    if let Some(k0s) = &facts.k0s
        && let Some((policy, src)) = &k0s.pull_policy
            && policy == "Never" {
                for img in &k0s.images {
                    report(&img.reference, &img.source, (policy, src), &img.component);
                }
            }
}

/// `registry.k8s.io/pause:3.9` stays; `nginx:1` -> `docker.io/library/nginx:1`.
fn normalize_image(reference: &str) -> String {
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

fn image_repo(reference: &str) -> String {
    let n = normalize_image(reference);
    let (head, last) = n.rsplit_once('/').unwrap_or(("", &n));
    let name = last.split(['@', ':']).next().unwrap_or(last);
    format!("{head}/{name}")
}

fn image_tag(reference: &str) -> Option<&str> {
    let last = reference.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t)
}

/// `v1.30.2+k0s.0` -> (1, 30).
fn minor_of(version: &str) -> Option<(u32, u32)> {
    let r = Release::parse(version)?;
    Some((r.major, r.minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn image_names() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("quay.io/k0sproject/kube-proxy:v1.29.6"), "quay.io/k0sproject/kube-proxy:v1.29.6");
        assert_eq!(image_repo("quay.io/k0sproject/kube-proxy:v1.29.6"), "quay.io/k0sproject/kube-proxy");
        assert_eq!(image_repo("localhost:5000/pause:3.9"), "localhost:5000/pause");
        assert_eq!(image_tag("registry.k8s.io/pause:3.9"), Some("3.9"));
        assert_eq!(minor_of("v1.30.2+k0s.0"), Some((1, 30)));
        assert_eq!(redact_arg("--token=abc"), "--token=[REDACTED]");
        assert_eq!(redact_arg("--v=8"), "--v=8");
    }
}
