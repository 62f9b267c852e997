//! Rules about containerd's configuration: the schema version its release reads and the plugin
//! tables it ignores (its cgroup driver and sandbox image against kubelet's are judged with the
//! other runtimes' in `kubelet_runtime`).

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

pub(super) fn uses_containerd(facts: &NodeSnapshot) -> bool {
    !facts.containerd_config.files.is_empty()
        || !facts.installed("containerd").is_empty()
        || facts.cri.sockets.iter().any(|s| s.runtime().is_some_and(|r| r.runtime_name == "containerd"))
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
