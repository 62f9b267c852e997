//! Rules about the node's configuration files themselves: a file the audit cannot read, or one
//! that does not parse (containerd, CRI-O, dockerd, kubelet, static pod manifests,
//! `/proc/meminfo`).

use std::path::Path;

use crate::{
    findings::{Finding, Rule, Severity},
    node::{
        containerd_config::ConfigProblem, docker_config::DaemonJsonProblem, kubelet::KubeletProblem, snapshot::NodeSnapshot,
        static_pods::ManifestError,
    },
};

rule!(CONFIG_UNREADABLE, "config-unreadable", Warning, "a runtime configuration file cannot be read",
    "The audit cannot see this file (permissions, too large, not text); whatever it configures is unknown.");

rule!(CONFIG_UNPARSABLE, "config-unparsable", Critical, "a runtime configuration file does not parse",
    "The component that reads this file (containerd, CRI-O, dockerd, kubelet) refuses it at start-up or ignores it.");

pub(super) fn problem_finding(path: &Path, unreadable: bool, what: &str, detail: String, source: String) -> Finding {
    let rule = if unreadable { &CONFIG_UNREADABLE } else { &CONFIG_UNPARSABLE };
    let verb = if unreadable { "cannot be read" } else { "does not parse" };
    Finding::new(rule, path.display().to_string(), format!("{what} {} {verb}", path.display()))
        .evidence(source, detail)
        .remediation(if unreadable {
            "Make the file readable by the monitor (it runs as root with the host mounted read-only) or check it by hand."
        } else {
            "Fix the syntax at the line shown; `containerd config dump`, `crio config`, `dockerd --validate` and `kubelet --config` validate it."
        })
}

pub(super) fn unreadable_files(facts: &NodeSnapshot, out: &mut Vec<Finding>) {
    let toml_problems = [("containerd config", &facts.containerd_config.problems), ("CRI-O config", &facts.crio_config.problems)];
    for (what, problems) in toml_problems {
        for p in problems {
            match p {
                ConfigProblem::File(e) => out.push(problem_finding(e.path(), true, what, e.to_string(), e.path().display().to_string())),
                ConfigProblem::Syntax(e) => out.push(problem_finding(
                    &e.path,
                    false,
                    what,
                    e.message.clone(),
                    format!("{}:{}", e.path.display(), e.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())),
                )),
            }
        }
    }
    for p in &facts.docker_config.problems {
        match p {
            DaemonJsonProblem::File(e) => out.push(problem_finding(e.path(), true, "dockerd config", e.to_string(), e.path().display().to_string())),
            DaemonJsonProblem::Syntax { path, line, message } => {
                out.push(problem_finding(path, false, "dockerd config", message.clone(), format!("{}:{line}", path.display())))
            }
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
            ManifestError::File(e) => {
                out.push(problem_finding(e.path(), true, "manifest", e.to_string(), e.path().display().to_string()))
            }
            ManifestError::Parse { path, line, message } => {
                out.push(problem_finding(
                    path,
                    false,
                    "manifest",
                    message.clone(),
                    format!("{}:{}", path.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())),
                ))
            }
            e @ ManifestError::TooMany { .. } => {
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
