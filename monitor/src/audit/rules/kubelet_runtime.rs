//! Rules about what kubelet and the runtime it really uses must agree on: the cgroup driver and
//! the sandbox (pause) image, judged against the runtime behind kubelet's endpoint (containerd,
//! CRI-O, or dockerd through cri-dockerd or dockershim) and never against a runtime kubelet does
//! not use (Docker's own containerd on a cri-dockerd node); and CRI-O's `conmon_cgroup`, which
//! crio refuses to start with when it does not fit its cgroup manager.
//!
//! Kubelet's cgroup driver is its own setting unless it takes the runtime's (KEP-4033,
//! `KubeletCgroupDriverFromCRI`: alpha and off in 1.28-1.30, on by default from 1.31, locked on
//! from 1.34; kubernetes `pkg/features/kube_features.go`): at start-up kubelet calls the CRI
//! `RuntimeConfig` and uses `linux.cgroup_driver`; on `Unimplemented`, or an answer without
//! `linux`, it keeps its own (`cmd/kubelet/app/server.go` `getCgroupDriverFromCRI`: "Falling
//! back to using cgroupDriver from kubelet config"). When kubelet takes the runtime's driver
//! the two cannot disagree, whatever kubelet's file says.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{containerd_config::Release, runtimes, snapshot::NodeSnapshot},
};

use super::containerd;

rule!(CGROUP_DRIVER_MISMATCH, "cgroup-driver-mismatch", Critical, "runtime and kubelet use different cgroup drivers",
    "Kubelet and the runtime disagree about pod cgroups; sandboxes are killed and re-created (exit 137) in a loop.");

rule!(SANDBOX_IMAGE_MISMATCH, "sandbox-image-mismatch", Info, "the runtime's sandbox (pause) image is not the one kubelet expects",
    "kubelet (>= 1.27 uses --pod-infra-container-image only to keep that image from its image GC) and the runtime name different pause images; kubeadm's preflight warns of the same. A runtime that does not pin its sandbox image may lose it to kubelet's GC; on an air-gapped node the image must be in the store (image-not-present-pull-forbidden says when it is not).");

rule!(CRIO_CONMON_CGROUP_INVALID, "crio-conmon-cgroup-invalid", Critical, "CRI-O's conmon_cgroup does not fit its cgroup manager",
    "crio refuses to start (`conmon cgroup should be 'pod' or a systemd slice`, or 'pod' or empty with cgroupfs): no pod can run.");

/// kubelet's default `cgroupDriver` (kubernetes `pkg/kubelet/apis/config/v1beta1/defaults.go`:
/// `if obj.CgroupDriver == "" { obj.CgroupDriver = "cgroupfs" }`).
pub const KUBELET_DEFAULT_CGROUP_DRIVER: &str = "cgroupfs";

/// The feature gate of KEP-4033.
const DRIVER_FROM_CRI_GATE: &str = "KubeletCgroupDriverFromCRI";

/// The runtime behind kubelet's endpoint, for the settings the two must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeletRuntime {
    Containerd,
    CriO,
    /// dockerd, through the named CRI adapter (`cri-dockerd`, or kubelet's own `dockershim`).
    Docker { adapter: &'static str },
}

impl KubeletRuntime {
    fn subject(self) -> &'static str {
        match self {
            KubeletRuntime::Containerd => "kubelet/containerd",
            KubeletRuntime::CriO => "kubelet/cri-o",
            KubeletRuntime::Docker { .. } => "kubelet/docker",
        }
    }

    /// The first release that answers `RuntimeConfig` (containerd 2.0, CRI-O 1.28: cri-o
    /// `server/runtime_config.go` since v1.28.0, cri-dockerd 0.3.17: `core/docker_service.go`
    /// `RuntimeConfig`); dockershim never does.
    fn answers_runtime_config(self, release: Release) -> bool {
        let at = |major, minor, patch| Release { major, minor, patch };
        match self {
            KubeletRuntime::Containerd => release >= at(2, 0, 0),
            KubeletRuntime::CriO => release >= at(1, 28, 0),
            KubeletRuntime::Docker { adapter: "cri-dockerd" } => release >= at(0, 3, 17),
            KubeletRuntime::Docker { .. } => false,
        }
    }
}

/// The runtime kubelet uses: named by its socket's CRI answer, else by the table of runtimes,
/// else by the socket's name; `None` when nothing says, or the runtime is not on the node.
pub fn kubelet_runtime(facts: &NodeSnapshot) -> Option<KubeletRuntime> {
    let socket = facts.kubelet_socket();
    let path = socket.to_string_lossy();
    let table = runtimes::runtime_of_socket(&path);
    let answered = facts.cri.socket(&socket).and_then(|s| s.runtime()).map(|r| r.runtime_name.as_str());
    let name = answered.or(table.map(|r| r.cri_name)).or_else(|| {
        [("containerd", "containerd"), ("crio", "cri-o"), ("docker", "docker")].into_iter().find(|(part, _)| path.contains(part)).map(|(_, n)| n)
    })?;
    let runs = |cri_name: &str| facts.cri.sockets.iter().any(|s| s.runtime().is_some_and(|r| r.runtime_name == cri_name));
    match name {
        "containerd" => containerd::uses_containerd(facts).then_some(KubeletRuntime::Containerd),
        "cri-o" => (facts.crio_config.is_present() || !facts.installed("crio").is_empty() || runs("cri-o")).then_some(KubeletRuntime::CriO),
        "docker" => {
            let adapter = if table.is_some_and(|r| r.name == "dockershim") { "dockershim" } else { "cri-dockerd" };
            let present = facts.docker_config.is_present() || !facts.installed("dockerd").is_empty() || runs("docker");
            present.then_some(KubeletRuntime::Docker { adapter })
        }
        _ => None,
    }
}

/// A setting of the runtime as the audit shows it: the value, and evidence lines.
struct RuntimeSetting {
    value: String,
    evidence: Vec<(String, String)>,
}

/// `(release, "cri-o 1.30.4")` for a runtime's release, for "default (...)" evidence.
fn release_of(facts: &NodeSnapshot, cri_name: &str, binary: &str) -> (Option<Release>, String) {
    match facts.runtime_release(cri_name, binary) {
        Some(k) => (Some(k.release), format!("{binary} {}", k.release)),
        None => (None, format!("{binary}, release unknown")),
    }
}

/// The evidence source of a setting: its `file:line`, or `default (<component> <release>)`.
fn source_or_default(source: &Option<String>, component: &str) -> String {
    source.clone().unwrap_or_else(|| format!("default ({component})"))
}

/// The cgroup driver the runtime uses, from its files and defaults (`None`: not judged, e.g. a
/// containerd config its release refuses, which another rule reports).
fn runtime_cgroup_driver(facts: &NodeSnapshot, runtime: KubeletRuntime) -> Option<RuntimeSetting> {
    match runtime {
        KubeletRuntime::Containerd => {
            let (release, _) = containerd::release_text(facts);
            let eff = facts.containerd_config.effective(release);
            if eff.read_as.is_err() {
                return None;
            }
            let socket = facts.cri.socket(&facts.kubelet_socket());
            let live = socket.and_then(|s| s.systemd_cgroup());
            let systemd = live.unwrap_or(eff.systemd_cgroup.value);
            let mut evidence = vec![match &eff.systemd_cgroup.source {
                Some(src) => (src.clone(), format!("SystemdCgroup = {}", eff.systemd_cgroup.value)),
                None => (
                    facts.containerd_config_path.display().to_string(),
                    format!(
                        "SystemdCgroup not set in the tables containerd {} reads: default false (cgroupfs)",
                        release.map(|r| r.to_string()).unwrap_or_else(|| "(release unknown)".into())
                    ),
                ),
            }];
            if let (Some(s), Some(v)) = (socket, live) {
                evidence.push((format!("unix://{} (CRI Status config)", s.endpoint.display()), format!("runtime reports SystemdCgroup = {v}")));
            }
            Some(RuntimeSetting { value: if systemd { "systemd" } else { "cgroupfs" }.into(), evidence })
        }
        KubeletRuntime::CriO => {
            let (release, component) = release_of(facts, "cri-o", "crio");
            let manager = facts.crio_config.effective(release).cgroup_manager;
            let detail = match &manager.source {
                Some(_) => format!("cgroup_manager = {}", manager.value),
                None => format!("cgroup_manager not set: default {}", manager.value),
            };
            Some(RuntimeSetting { value: manager.value.clone(), evidence: vec![(source_or_default(&manager.source, &component), detail)] })
        }
        KubeletRuntime::Docker { .. } => {
            let (release, component) = release_of(facts, "docker", "dockerd");
            let host = facts.host_cgroups;
            let driver = facts.docker_config.cgroup_driver(release, host);
            let detail = match &driver.source {
                Some(_) => format!("native.cgroupdriver={}", driver.value),
                None => {
                    let hierarchy = match host.unified {
                        Some(true) => "cgroup v2",
                        Some(false) => "cgroup v1",
                        None => "cgroup hierarchy unknown (taken as v1)",
                    };
                    let init = if host.systemd_booted { "systemd" } else { "not systemd" };
                    format!("native.cgroupdriver not set: default {} ({hierarchy}, init {init})", driver.value)
                }
            };
            Some(RuntimeSetting { value: driver.value.clone(), evidence: vec![(source_or_default(&driver.source, &component), detail)] })
        }
    }
}

/// Where kubelet's cgroup driver comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletDriverSource {
    /// Kubelet takes the runtime's `RuntimeConfig` answer; `why` says how that is known.
    Runtime { why: String },
    /// Kubelet uses its own setting; `why` says why it does not ask the runtime.
    Own { why: String },
}

/// Whether kubelet takes its cgroup driver from the runtime (KEP-4033), and why.
pub fn kubelet_driver_source(facts: &NodeSnapshot, runtime: KubeletRuntime) -> KubeletDriverSource {
    let kubelet = facts.binary_release("kubelet");
    let at = |minor| Release { major: 1, minor, patch: 0 };
    let gate = facts.kubelet.feature_gate(DRIVER_FROM_CRI_GATE);
    let version = kubelet.as_ref().map(|k| format!("kubelet {}", k.release)).unwrap_or_else(|| "kubelet (release unknown)".into());
    let gate_on = match (kubelet.as_ref().map(|k| k.release), &gate) {
        (Some(r), _) if r >= at(34) => Ok(format!("{version}: {DRIVER_FROM_CRI_GATE} is GA and always on")),
        (Some(r), _) if r < at(28) => Err(format!("{version} predates {DRIVER_FROM_CRI_GATE} (1.28)")),
        (_, Some(g)) if g.value.eq_ignore_ascii_case("false") => {
            Err(format!("{DRIVER_FROM_CRI_GATE}=false at {}", g.origin))
        }
        (_, Some(g)) if g.value.eq_ignore_ascii_case("true") => {
            Ok(format!("{DRIVER_FROM_CRI_GATE}=true at {}", g.origin))
        }
        (Some(r), _) if r < at(31) => Err(format!("{version}: {DRIVER_FROM_CRI_GATE} is off by default before 1.31")),
        (Some(_), _) => Ok(format!("{version}: {DRIVER_FROM_CRI_GATE} is on by default since 1.31")),
        // Every supported Kubernetes release has the gate on; a kubelet binary built with
        // `-trimpath` carries no version to read.
        (None, _) => Ok(format!("{version}: {DRIVER_FROM_CRI_GATE} assumed on (the default since 1.31)")),
    };
    let gate_on = match gate_on {
        Ok(why) => why,
        Err(why) => return KubeletDriverSource::Own { why },
    };
    let socket = facts.cri.socket(&facts.kubelet_socket());
    let endpoint = format!("unix://{}", facts.kubelet_socket().display());
    use crate::node::cri_facts::RuntimeConfigAnswer as Answer;
    match socket.and_then(|s| s.cri_runtime_config.as_ref()) {
        Some(Answer::CgroupDriver { cgroup_driver }) => {
            KubeletDriverSource::Runtime { why: format!("{gate_on}; {endpoint} answers RuntimeConfig: {cgroup_driver}") }
        }
        Some(Answer::Unimplemented { .. }) => {
            KubeletDriverSource::Own { why: format!("{gate_on}, but {endpoint} answers RuntimeConfig Unimplemented: kubelet falls back to its own setting") }
        }
        Some(Answer::NoLinuxConfig) => {
            KubeletDriverSource::Own { why: format!("{gate_on}, but {endpoint} answers RuntimeConfig without a Linux config: kubelet keeps its own setting") }
        }
        // Not asked, or no answer now: what the runtime's release does.
        Some(Answer::Failed { .. }) | None => {
            let release = match runtime {
                KubeletRuntime::Containerd => containerd::release_text(facts).0.map(|r| (r, format!("containerd {r}"))),
                KubeletRuntime::CriO => facts.runtime_release("cri-o", "crio").map(|k| (k.release, format!("cri-o {}", k.release))),
                KubeletRuntime::Docker { adapter } => facts.binary_release(adapter).map(|k| (k.release, format!("{adapter} {}", k.release))),
            };
            match release {
                Some((r, name)) if runtime.answers_runtime_config(r) => {
                    KubeletDriverSource::Runtime { why: format!("{gate_on}; {name} answers RuntimeConfig") }
                }
                Some((_, name)) => KubeletDriverSource::Own { why: format!("{gate_on}, but {name} predates RuntimeConfig: kubelet keeps its own setting") },
                None => KubeletDriverSource::Own { why: format!("{gate_on}, but the runtime's release is unknown: kubelet's own setting assumed") },
            }
        }
    }
}

pub(super) fn cgroup_driver(facts: &NodeSnapshot, runtime: KubeletRuntime, out: &mut Vec<Finding>) {
    let Some(mut runtime_driver) = runtime_cgroup_driver(facts, runtime) else { return };
    // What the runtime itself says (`RuntimeConfig`) is the driver it runs with.
    let socket = facts.cri.socket(&facts.kubelet_socket());
    if let Some((s, answered)) = socket.and_then(|s| s.runtime_config_driver().map(|d| (s, d))) {
        runtime_driver.value = answered.to_string();
        runtime_driver.evidence.push((format!("unix://{} (CRI RuntimeConfig)", s.endpoint.display()), format!("runtime answers cgroup driver {answered}")));
    }
    let why = match kubelet_driver_source(facts, runtime) {
        KubeletDriverSource::Runtime { .. } => return,
        KubeletDriverSource::Own { why } => why,
    };
    let kubelet = facts.kubelet.cgroup_driver();
    if kubelet.value == runtime_driver.value {
        return;
    }
    let name = match runtime {
        KubeletRuntime::Containerd => "containerd",
        KubeletRuntime::CriO => "CRI-O",
        KubeletRuntime::Docker { .. } => "dockerd",
    };
    let kubelet_source = kubelet.origin.to_string();
    let decided = if kubelet.origin.is_default() {
        format!("kubelet default {KUBELET_DEFAULT_CGROUP_DRIVER}")
    } else {
        format!("kubelet's {}", kubelet.origin)
    };
    let mut f = Finding::new(&CGROUP_DRIVER_MISMATCH, runtime.subject(), format!(
        "{name} uses the {} cgroup driver, kubelet uses {}",
        runtime_driver.value, kubelet.value
    ))
    .evidence(kubelet_source, format!("cgroupDriver: {}", kubelet.value))
    .evidence("kubelet's cgroup driver", format!("decided by {decided}: {why}"));
    for (source, detail) in runtime_driver.evidence {
        f = f.evidence(source, detail);
    }
    let fix = match (runtime, kubelet.value.as_str()) {
        (KubeletRuntime::Containerd, "systemd") => "Set SystemdCgroup = true for the default runc runtime in the table this containerd reads, restart containerd, then restart kubelet.",
        (KubeletRuntime::CriO, "systemd") => "Set `[crio.runtime] cgroup_manager = \"systemd\"` (and `conmon_cgroup = \"pod\"`) in a crio.conf.d drop-in, restart crio, then restart kubelet.",
        (KubeletRuntime::CriO, _) => "Make both agree: set kubelet `cgroupDriver: systemd` (CRI-O's default), or `[crio.runtime] cgroup_manager = \"cgroupfs\"` with `conmon_cgroup = \"pod\"`; restart both.",
        (KubeletRuntime::Docker { .. }, "systemd") => "Set `\"exec-opts\": [\"native.cgroupdriver=systemd\"]` in /etc/docker/daemon.json, restart docker and cri-dockerd, then restart kubelet.",
        _ => "Make both agree: set kubelet `cgroupDriver` to the runtime's driver (systemd is recommended on systemd hosts), then restart kubelet.",
    };
    out.push(f.remediation(fix));
}

/// The sandbox image kubelet expects (`--pod-infra-container-image`) against the runtime's.
pub(super) fn sandbox_image(facts: &NodeSnapshot, runtime: KubeletRuntime, out: &mut Vec<Finding>) {
    let Some(expected) = facts.kubelet.pod_infra_image() else { return };
    let socket = facts.cri.socket(&facts.kubelet_socket());
    let (name, actual) = match runtime {
        KubeletRuntime::Containerd => {
            let (release, release_src) = containerd::release_text(facts);
            let eff = facts.containerd_config.effective(release);
            if eff.read_as.is_err() {
                return;
            }
            let configured = match &eff.sandbox_image.source {
                Some(src) => (src.clone(), format!("sandbox image {}", eff.sandbox_image.value)),
                None => (release_src, format!("no sandbox image in the tables this release reads: default {}", eff.sandbox_image.value)),
            };
            let mut evidence = vec![configured];
            let live = socket.and_then(|s| s.sandbox_image());
            if let (Some(s), Some(v)) = (socket, live) {
                evidence.push((format!("unix://{} (CRI Status config)", s.endpoint.display()), format!("runtime reports sandboxImage {v}")));
            }
            ("containerd", RuntimeSetting { value: live.unwrap_or(&eff.sandbox_image.value).to_string(), evidence })
        }
        KubeletRuntime::CriO => {
            let (release, component) = release_of(facts, "cri-o", "crio");
            let image = facts.crio_config.effective(release).pause_image;
            let detail = match &image.source {
                Some(_) => format!("pause_image = {}", image.value),
                None => format!("pause_image not set: default {}", image.value),
            };
            ("CRI-O", RuntimeSetting { value: image.value.clone(), evidence: vec![(source_or_default(&image.source, &component), detail)] })
        }
        // dockershim is kubelet itself: its sandbox image is kubelet's flag.
        KubeletRuntime::Docker { adapter: "dockershim" } => return,
        KubeletRuntime::Docker { adapter } => {
            let (release, component) = match facts.binary_release(adapter) {
                Some(k) => (Some(k.release), format!("{adapter} {}", k.release)),
                None => (None, format!("{adapter}, release unknown")),
            };
            let image = facts.docker_config.cri_dockerd_sandbox_image(release);
            let detail = match &image.source {
                Some(_) => format!("--pod-infra-container-image={}", image.value),
                None => format!("--pod-infra-container-image not set: default {}", image.value),
            };
            ("cri-dockerd", RuntimeSetting { value: image.value.clone(), evidence: vec![(source_or_default(&image.source, &component), detail)] })
        }
    };
    if actual.value == expected.value {
        return;
    }
    let mut f = Finding::new(&SANDBOX_IMAGE_MISMATCH, runtime.subject(), format!(
        "{name} uses sandbox image {}, kubelet expects {}",
        actual.value, expected.value
    ))
    .evidence(expected.origin.to_string(), format!("--pod-infra-container-image={}", expected.value));
    for (source, detail) in actual.evidence {
        f = f.evidence(source, detail);
    }
    let fix = match runtime {
        KubeletRuntime::CriO => "Set the same image in `[crio.image] pause_image` (a crio.conf.d drop-in) and kubelet's --pod-infra-container-image, and make sure it is in the node's store.",
        KubeletRuntime::Docker { .. } => "Give cri-dockerd the same --pod-infra-container-image as kubelet (its systemd unit), and make sure it is in the node's store.",
        KubeletRuntime::Containerd => "Set the same image in containerd's sandbox image setting and kubelet's --pod-infra-container-image, and make sure it is in the node's store.",
    };
    out.push(f.remediation(fix));
}

/// CRI-O's `conmon_cgroup` against its cgroup manager (crio exits at start-up on a mismatch).
pub(super) fn crio_conmon_cgroup(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    if !facts.crio_config.is_present() {
        return;
    }
    let (release, component) = release_of(facts, "cri-o", "crio");
    let eff = facts.crio_config.effective(release);
    let Some(why) = eff.conmon_cgroup_refused(release) else { return };
    let conmon_source = source_or_default(&eff.conmon_cgroup.source, &component);
    out.push(
        Finding::new(&CRIO_CONMON_CGROUP_INVALID, "cri-o", format!("crio refuses conmon_cgroup \"{}\" with the {} cgroup manager", eff.conmon_cgroup.value, eff.cgroup_manager.value))
            .evidence(conmon_source, format!("conmon_cgroup = \"{}\": {why}", eff.conmon_cgroup.value))
            .evidence(source_or_default(&eff.cgroup_manager.source, &component), format!("cgroup_manager = {}", eff.cgroup_manager.value))
            .remediation(if eff.cgroup_manager.value == "cgroupfs" {
                "With cgroup_manager = \"cgroupfs\" set conmon_cgroup = \"pod\" (or remove it), then restart crio."
            } else {
                "Set conmon_cgroup = \"pod\" or a systemd slice (\"system.slice\"), then restart crio."
            }),
    );
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::node::{
        binaries::{Binary, Location},
        containerd_config::{ConfigFile as TomlFile, ContainerdConfig},
        cri_facts::{ApiAnswer, CriFacts, RuntimeConfigAnswer, RuntimeIdentity, SocketFacts},
        crio_config::CrioConfig,
        docker_config::{DaemonJson, DockerConfig, HostCgroups},
        kubelet::{ConfigFile as KubeletFile, Kubelet, parse_args},
    };

    /// A node as the audit sees it, built by hand.
    struct Node(NodeSnapshot);

    impl Node {
        /// kubelet `version` with this `config.yaml` (and no flags).
        fn kubelet(version: &str, config: &str) -> Self {
            let file = KubeletFile::parse(Path::new("/var/lib/kubelet/config.yaml"), config.to_string()).unwrap();
            let kubelet = Kubelet { config_path: Some(file.path.clone()), config: Some(file), ..Default::default() };
            Node(NodeSnapshot { kubelet, ..Default::default() }).binary("kubelet", version)
        }

        fn flags(mut self, args: &[&str]) -> Self {
            self.0.kubelet.flags = parse_args(args, "/var/lib/kubelet/kubeadm-flags.env:1");
            self
        }

        fn binary(mut self, name: &str, version: &str) -> Self {
            self.0.binaries.push(Binary {
                name: name.into(),
                path: PathBuf::from("/usr/bin").join(name),
                location: Location::Path,
                version: Some(version.into()),
                version_source: Some(format!("{name} {version} (Go build info)")),
            });
            self
        }

        /// A socket answering `Version` as `name version`, and `RuntimeConfig` with `answer`.
        fn socket(mut self, path: &str, name: &str, version: &str, answer: Option<RuntimeConfigAnswer>) -> Self {
            let identity = RuntimeIdentity { runtime_name: name.into(), runtime_version: version.into(), runtime_api_version: "v1".into() };
            let mut s = SocketFacts::absent(path.into());
            s.exists = true;
            s.v1 = ApiAnswer::Served(identity);
            s.cri_runtime_config = answer;
            self.0.cri.sockets.push(s);
            self
        }

        fn crio_file(mut self, path: &str, text: &str) -> Self {
            self.0.crio_config.files.push(TomlFile::parse(Path::new(path), text.into()).unwrap());
            self
        }

        fn daemon_json(mut self, text: &str) -> Self {
            let value = serde_json::from_str(text).unwrap();
            self.0.docker_config.daemon_json = Some(DaemonJson { path: "/etc/docker/daemon.json".into(), text: text.into(), value });
            self
        }

        fn findings(&self) -> Vec<Finding> {
            super::super::evaluate(&self.0)
                .into_iter()
                .filter(|f| [CGROUP_DRIVER_MISMATCH.id, SANDBOX_IMAGE_MISMATCH.id, CRIO_CONMON_CGROUP_INVALID.id].contains(&f.rule))
                .collect()
        }
    }

    fn keys(findings: &[Finding]) -> Vec<(&str, &str)> {
        findings.iter().map(|f| (f.rule, f.subject.as_str())).collect()
    }

    fn evidence(findings: &[Finding]) -> String {
        findings.iter().flat_map(|f| &f.evidence).map(|e| format!("{} | {}\n", e.source, e.detail)).collect()
    }

    const CRIO_SOCK: &str = "/var/run/crio/crio.sock";
    const CRIO_KUBELET: &str = "cgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n";

    fn unimplemented() -> Option<RuntimeConfigAnswer> {
        Some(RuntimeConfigAnswer::Unimplemented { message: "unknown method RuntimeConfig for service runtime.v1.RuntimeService".into() })
    }

    fn answers(driver: &str) -> Option<RuntimeConfigAnswer> {
        Some(RuntimeConfigAnswer::CgroupDriver { cgroup_driver: driver.into() })
    }

    #[test]
    fn crio_cgroupfs_drop_in_against_kubelet_systemd_on_kubelet_1_30() {
        let node = Node::kubelet("v1.30.2", CRIO_KUBELET)
            .binary("crio", "1.30.4")
            .socket(CRIO_SOCK, "cri-o", "1.30.4", answers("cgroupfs"))
            .crio_file("/etc/crio/crio.conf.d/10-crio.conf", "[crio.runtime]\ndefault_runtime = \"crun\"\n")
            .crio_file("/etc/crio/crio.conf.d/20-cgroupfs.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nconmon_cgroup = \"pod\"\n");
        let found = node.findings();
        assert_eq!(keys(&found), [("cgroup-driver-mismatch", "kubelet/cri-o")]);
        let ev = evidence(&found);
        assert!(ev.contains("/var/lib/kubelet/config.yaml:1 | cgroupDriver: systemd"), "{ev}");
        assert!(ev.contains("decided by kubelet's /var/lib/kubelet/config.yaml:1: kubelet 1.30.2: KubeletCgroupDriverFromCRI is off by default before 1.31"), "{ev}");
        assert!(ev.contains("/etc/crio/crio.conf.d/20-cgroupfs.conf:2 | cgroup_manager = cgroupfs"), "{ev}");
        assert!(ev.contains("unix:///var/run/crio/crio.sock (CRI RuntimeConfig) | runtime answers cgroup driver cgroupfs"), "{ev}");
        assert!(found[0].remediation.contains("cgroup_manager = \\\"systemd\\\"") || found[0].remediation.contains("cgroup_manager = \"systemd\""));

        // Healthy variant: the packaged drop-in alone, crio's default systemd (since 1.18).
        let healthy = Node::kubelet("v1.30.2", CRIO_KUBELET)
            .binary("crio", "1.30.4")
            .socket(CRIO_SOCK, "cri-o", "1.30.4", answers("systemd"))
            .crio_file("/etc/crio/crio.conf.d/10-crio.conf", "[crio.runtime]\ndefault_runtime = \"crun\"\n");
        assert_eq!(keys(&healthy.findings()), []);
    }

    #[test]
    fn kubelet_defaults_to_cgroupfs_and_crio_to_systemd() {
        // Neither file sets a driver: kubelet's default cgroupfs against CRI-O's default systemd.
        let node = Node::kubelet("v1.29.3", "containerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n")
            .binary("crio", "1.29.1")
            .socket(CRIO_SOCK, "cri-o", "1.29.1", None);
        let found = node.findings();
        assert_eq!(keys(&found), [("cgroup-driver-mismatch", "kubelet/cri-o")]);
        let ev = evidence(&found);
        assert!(ev.contains("default (kubelet SetDefaults_KubeletConfiguration, pkg/kubelet/apis/config/v1beta1/defaults.go) | cgroupDriver: cgroupfs"), "{ev}");
        assert!(ev.contains("decided by kubelet default cgroupfs"), "{ev}");
        assert!(ev.contains("default (crio 1.29.1) | cgroup_manager not set: default systemd"), "{ev}");
    }

    #[test]
    fn kubelet_1_31_takes_the_driver_crio_answers_whatever_its_file_says() {
        // kubelet's file says cgroupfs, CRI-O runs systemd and answers RuntimeConfig: kubelet
        // 1.31 asks and uses systemd, so nothing disagrees.
        let config = "cgroupDriver: cgroupfs\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n";
        let node = Node::kubelet("v1.31.1", config).binary("crio", "1.31.0").socket(CRIO_SOCK, "cri-o", "1.31.0", answers("systemd"));
        assert_eq!(keys(&node.findings()), []);
        assert!(matches!(kubelet_driver_source(&node.0, KubeletRuntime::CriO), KubeletDriverSource::Runtime { why } if why.contains("answers RuntimeConfig: systemd")));

        // The gate turned off in kubelet's file: its own cgroupfs decides.
        let off = Node::kubelet("v1.31.1", &format!("{config}featureGates:\n  KubeletCgroupDriverFromCRI: false\n"))
            .binary("crio", "1.31.0")
            .socket(CRIO_SOCK, "cri-o", "1.31.0", answers("systemd"));
        let ev = evidence(&off.findings());
        assert!(ev.contains("KubeletCgroupDriverFromCRI=false at /var/lib/kubelet/config.yaml:4"), "{ev}");
        // ... but not from 1.34, where the gate is GA and locked on.
        let locked = Node::kubelet("v1.34.0", &format!("{config}featureGates:\n  KubeletCgroupDriverFromCRI: false\n"))
            .binary("crio", "1.34.1")
            .socket(CRIO_SOCK, "cri-o", "1.34.1", answers("systemd"));
        assert_eq!(keys(&locked.findings()), []);
        // Turned on by flag on 1.29 (alpha).
        let alpha = Node::kubelet("v1.29.0", config)
            .flags(&["--feature-gates=KubeletCgroupDriverFromCRI=true"])
            .binary("crio", "1.29.1")
            .socket(CRIO_SOCK, "cri-o", "1.29.1", answers("systemd"));
        assert_eq!(keys(&alpha.findings()), []);
    }

    #[test]
    fn without_a_recorded_answer_the_runtime_release_says_whether_it_answers() {
        let config = "cgroupDriver: cgroupfs\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n";
        // CRI-O 1.28 implements RuntimeConfig (cri-o server/runtime_config.go since v1.28.0).
        let new = Node::kubelet("v1.31.1", config).binary("crio", "1.28.0").socket(CRIO_SOCK, "cri-o", "1.28.0", None);
        assert_eq!(keys(&new.findings()), []);
        let old = Node::kubelet("v1.31.1", config).binary("crio", "1.27.3").socket(CRIO_SOCK, "cri-o", "1.27.3", None);
        let ev = evidence(&old.findings());
        assert!(ev.contains("cri-o 1.27.3 predates RuntimeConfig"), "{ev}");
        // An Unimplemented answer is what kubelet gets: its own setting decides.
        let unimpl = Node::kubelet("v1.31.1", config).binary("crio", "1.27.3").socket(CRIO_SOCK, "cri-o", "1.27.3", unimplemented());
        assert!(evidence(&unimpl.findings()).contains("answers RuntimeConfig Unimplemented: kubelet falls back to its own setting"));
    }

    #[test]
    fn containerd_2_answers_for_kubelet_1_31_but_not_for_1_30() {
        let config = "cgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";
        let node = |kubelet: &str| {
            let mut n = Node::kubelet(kubelet, config)
                .binary("containerd", "v2.0.2")
                .socket("/run/containerd/containerd.sock", "containerd", "v2.0.2", answers("cgroupfs"));
            n.0.containerd_config = ContainerdConfig {
                files: vec![TomlFile::parse(Path::new("/etc/containerd/config.toml"), "version = 3\n".into()).unwrap()],
                problems: Vec::new(),
            };
            n.0.containerd_release = n.0.runtime_release("containerd", "containerd");
            n
        };
        assert_eq!(keys(&node("v1.31.1").findings()), []);
        let found = node("v1.30.4").findings();
        assert_eq!(keys(&found), [("cgroup-driver-mismatch", "kubelet/containerd")]);
        assert!(evidence(&found).contains("SystemdCgroup not set in the tables containerd 2.0.2 reads"), "{}", evidence(&found));
    }

    const CRI_DOCKERD_SOCK: &str = "/var/run/cri-dockerd.sock";
    const DOCKER_KUBELET: &str = "cgroupDriver: cgroupfs\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n";

    #[test]
    fn dockerd_through_cri_dockerd_defaults_to_systemd_on_cgroup_v2() {
        let node = |host: HostCgroups| {
            let mut n = Node::kubelet("v1.31.1", DOCKER_KUBELET)
                .binary("dockerd", "24.0.7")
                .binary("cri-dockerd", "0.3.9")
                .socket(CRI_DOCKERD_SOCK, "docker", "24.0.7", None);
            n.0.host_cgroups = host;
            n
        };
        let found = node(HostCgroups { unified: Some(true), systemd_booted: true }).findings();
        assert_eq!(keys(&found), [("cgroup-driver-mismatch", "kubelet/docker")]);
        let ev = evidence(&found);
        assert!(ev.contains("default (dockerd 24.0.7) | native.cgroupdriver not set: default systemd (cgroup v2, init systemd)"), "{ev}");
        assert!(ev.contains("cri-dockerd 0.3.9 predates RuntimeConfig"), "{ev}");
        // Healthy: the same node on cgroup v1, where dockerd's default is cgroupfs.
        assert_eq!(keys(&node(HostCgroups { unified: Some(false), systemd_booted: true }).findings()), []);
    }

    #[test]
    fn docker_own_containerd_is_not_judged_on_a_cri_dockerd_node() {
        // dockerd's containerd (CRI plugin disabled, SystemdCgroup unset: cgroupfs) is not
        // what kubelet uses; dockerd is, and it agrees with kubelet.
        let mut node = Node::kubelet("v1.30.2", "cgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n")
            .binary("containerd", "1.7.13")
            .binary("dockerd", "24.0.7")
            .binary("cri-dockerd", "0.3.9")
            .socket(CRI_DOCKERD_SOCK, "docker", "24.0.7", None)
            .daemon_json("{\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"]\n}\n");
        node.0.containerd_config = ContainerdConfig {
            files: vec![TomlFile::parse(Path::new("/etc/containerd/config.toml"), "disabled_plugins = [\"cri\"]\n".into()).unwrap()],
            problems: Vec::new(),
        };
        assert_eq!(keys(&node.findings()), []);
        // daemon.json set to cgroupfs: now dockerd disagrees, and the evidence has its line.
        let node = node.daemon_json("{\n  \"exec-opts\": [\"native.cgroupdriver=cgroupfs\"]\n}\n");
        let found = node.findings();
        assert_eq!(keys(&found), [("cgroup-driver-mismatch", "kubelet/docker")]);
        assert!(evidence(&found).contains("/etc/docker/daemon.json:2 | native.cgroupdriver=cgroupfs"));
    }

    #[test]
    fn sandbox_image_of_cri_dockerd_and_crio_defaults() {
        let pause = ["--pod-infra-container-image=registry.k8s.io/pause:3.9"];
        let docker = |cri_dockerd: &str| {
            Node::kubelet("v1.30.2", "cgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n")
                .flags(&pause)
                .binary("dockerd", "24.0.7")
                .binary("cri-dockerd", cri_dockerd)
                .socket(CRI_DOCKERD_SOCK, "docker", "24.0.7", None)
                .daemon_json("{\"exec-opts\": [\"native.cgroupdriver=systemd\"]}")
        };
        // cri-dockerd 0.3.16's default is pause:3.9 (healthy); 0.3.17's is pause:3.10.
        assert_eq!(keys(&docker("0.3.16").findings()), []);
        let found = docker("0.3.17").findings();
        assert_eq!(keys(&found), [("sandbox-image-mismatch", "kubelet/docker")]);
        assert!(evidence(&found).contains("default (cri-dockerd 0.3.17) | --pod-infra-container-image not set: default registry.k8s.io/pause:3.10"), "{}", evidence(&found));

        let crio = |version: &str| {
            Node::kubelet("v1.30.2", CRIO_KUBELET).flags(&pause).binary("crio", version).socket(CRIO_SOCK, "cri-o", version, None)
        };
        assert_eq!(keys(&crio("1.30.4").findings()), []);
        let found = crio("1.31.2").findings();
        assert_eq!(keys(&found), [("sandbox-image-mismatch", "kubelet/cri-o")]);
        assert!(evidence(&found).contains("default (crio 1.31.2) | pause_image not set: default registry.k8s.io/pause:3.10"), "{}", evidence(&found));
        let pinned = crio("1.31.2").crio_file("/etc/crio/crio.conf.d/30-pause.conf", "[crio.image]\npause_image = \"registry.k8s.io/pause:3.9\"\n");
        assert_eq!(keys(&pinned.findings()), []);
    }

    #[test]
    fn crio_refuses_a_conmon_cgroup_that_does_not_fit() {
        let node = |version: &str| {
            Node::kubelet("v1.30.2", "cgroupDriver: cgroupfs\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n")
                .binary("crio", version)
                .crio_file("/etc/crio/crio.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nconmon_cgroup = \"system.slice\"\n")
        };
        let found = node("1.30.4").findings();
        assert_eq!(keys(&found), [("crio-conmon-cgroup-invalid", "cri-o")]);
        assert!(evidence(&found).contains("/etc/crio/crio.conf:3 | conmon_cgroup"), "{}", evidence(&found));
        assert!(evidence(&found).contains("/etc/crio/crio.conf:2 | cgroup_manager = cgroupfs"));
        // 1.33 takes the systemd default `system.slice` as empty under cgroupfs.
        assert_eq!(keys(&node("1.33.0").findings()), []);
        // Healthy: `pod`.
        let pod = Node::kubelet("v1.30.2", "cgroupDriver: cgroupfs\n")
            .binary("crio", "1.30.4")
            .crio_file("/etc/crio/crio.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nconmon_cgroup = \"pod\"\n");
        assert_eq!(keys(&pod.findings()), []);
    }

    #[test]
    fn old_recordings_without_runtime_config_still_parse() {
        let old = r#"{"sockets": [{"endpoint": "/run/containerd/containerd.sock", "exists": true,
            "v1": {"answer": "served", "runtime_name": "containerd", "runtime_version": "v1.7.13", "runtime_api_version": "v1"},
            "v1alpha2": {"answer": "not-asked"}}]}"#;
        let facts = CriFacts::from_json(old).unwrap();
        assert_eq!(facts.sockets[0].cri_runtime_config, None);
        let new = r#"{"sockets": [{"endpoint": "/var/run/crio/crio.sock", "exists": true,
            "v1": {"answer": "served", "runtime_name": "cri-o", "runtime_version": "1.31.0", "runtime_api_version": "v1"},
            "v1alpha2": {"answer": "unimplemented", "message": "unknown service runtime.v1alpha2.RuntimeService"},
            "cri_runtime_config": {"answer": "cgroup-driver", "cgroup_driver": "systemd"}}]}"#;
        let facts = CriFacts::from_json(new).unwrap();
        assert_eq!(facts.sockets[0].reported_cgroup_driver(), Some(("systemd", "CRI RuntimeConfig")));
        let round = serde_json::to_string(&facts).unwrap();
        assert!(round.contains("\"cri_runtime_config\":{\"answer\":\"cgroup-driver\",\"cgroup_driver\":\"systemd\"}"), "{round}");
        let _ = CrioConfig::default();
        let _ = DockerConfig::default();
    }
}
