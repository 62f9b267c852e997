//! Rules about containerd's configuration: the schema version its release reads, plugin tables
//! it ignores, and the cgroup driver and sandbox image it really uses against kubelet's.

use crate::{
    findings::{Finding, Rule, Severity},
    node::{containerd_config::Release, snapshot::NodeSnapshot},
};

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

pub(super) fn uses_containerd(facts: &NodeSnapshot) -> bool {
    !facts.containerd_config.files.is_empty()
        || !facts.installed("containerd").is_empty()
        || facts.cri.sockets.iter().any(|s| s.runtime().is_some_and(|r| r.runtime_name == "containerd"))
}

/// Whether kubelet's runtime is containerd: its socket answers as containerd, or (unanswered)
/// it is a containerd socket of the table of runtimes (a path the table does not know: by its
/// name).
pub(super) fn kubelet_uses_containerd(facts: &NodeSnapshot) -> bool {
    let socket = facts.kubelet_socket();
    match facts.cri.socket(&socket).and_then(|s| s.runtime()) {
        Some(r) => r.runtime_name == "containerd",
        None => {
            let path = socket.to_string_lossy();
            match crate::node::runtimes::runtime_of_socket(&path) {
                Some(runtime) => runtime.cri_name == "containerd",
                None => path.contains("containerd"),
            }
        }
    }
}

pub(super) fn release_text(facts: &NodeSnapshot) -> (Option<Release>, String) {
    match &facts.containerd_release {
        Some(k) => (Some(k.release), k.source.clone()),
        None => (None, "containerd release unknown (assumed 1.7)".into()),
    }
}

pub(super) fn containerd_schema(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
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

pub(super) fn cgroup_driver(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    // Unknown, not defaulted, when its file is unreadable (that is a finding of its own).
    let unknown = facts.kubelet.config_unread() && facts.kubelet.flag("cgroup-driver").is_none();
    if unknown || (facts.kubelet.config.is_none() && facts.kubelet.flags.is_empty()) {
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
    .evidence(kubelet.origin.to_string(), format!("cgroupDriver: {}", kubelet.value));
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
pub(super) fn sandbox_image(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
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
    .evidence(expected.origin.to_string(), format!("--pod-infra-container-image={}", expected.value));
    f = match &eff.sandbox_image.source {
        Some(src) => f.evidence(src.clone(), format!("sandbox image {}", eff.sandbox_image.value)),
        None => f.evidence(release_src, format!("no sandbox image in the tables this release reads: default {}", eff.sandbox_image.value)),
    };
    if let (Some(s), Some(v)) = (socket, live) {
        f = f.evidence(format!("unix://{} (CRI Status config)", s.endpoint.display()), format!("runtime reports sandboxImage {v}"));
    }
    out.push(f.remediation("Set the same image in containerd's sandbox image setting and kubelet's --pod-infra-container-image, and make sure it is in the node's store."));
}
