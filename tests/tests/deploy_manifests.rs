//! The cluster manifests (`deploy/`), the Prometheus rules and the image's build pins, checked
//! with real tools, offline:
//! - Kubernetes objects of the core API (Namespace, DaemonSet) with `kubernetes-validate`
//!   (PyPI, pinned in xtask/src/setup.rs, installed with pip when missing), which ships the
//!   OpenAPI schemas of each Kubernetes release and validates without a cluster. It runs in a
//!   new network namespace (`unshare -n`) so that it provably needs no network; a broken
//!   DaemonSet must be rejected, so the validator cannot pass by accepting everything.
//! - PodMonitor and PrometheusRule (Prometheus Operator CRDs, not in kubernetes-validate's
//!   schemas) structurally: the fields the operator reads, and that they match the DaemonSet
//!   and the rule file; the rules themselves with `promtool check rules`.
//! - The rule file with `promtool test rules` (dashboards/prometheus-rules.test.yaml), and that
//!   every alert has a test in which it fires and one in which it does not.
//! - deploy/Dockerfile's pins against xtask's constants (no Docker engine here to build it).
//! - README's Configuration reference and the DaemonSet's arguments against the options the
//!   binary's `run --help` and `check --help` list.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every YAML document of `text`, as JSON (PyYAML: kubernetes-validate's own dependency).
fn yaml_documents(text: &str) -> Vec<Value> {
    ensure_kubernetes_validate();
    let dir = tempdir("yaml");
    let file = dir.join("in.yaml");
    std::fs::write(&file, text).unwrap();
    let (ok, out) = run(Command::new("python3").arg("-c").arg(
        "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
    ).arg(&file));
    assert!(ok, "YAML does not parse: {out}");
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_str::<Vec<Value>>(&out).expect("json")
}

fn manifest(path: &str) -> Value {
    let mut docs = yaml_documents(&read(path));
    assert_eq!(docs.len(), 1, "{path}: one object per file");
    docs.remove(0)
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrm-deploy-{tag}-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `NAME: &str = "VALUE"` in a Rust source file.
fn rust_const(path: &str, name: &str) -> String {
    let text = read(path);
    let line = text
        .lines()
        .find(|l| l.contains(&format!("const {name}: &str")))
        .unwrap_or_else(|| panic!("no const {name} in {path}"));
    line.split('"').nth(1).unwrap_or_else(|| panic!("{path}: {line}")).to_string()
}

fn ensure_kubernetes_validate() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let pin = rust_const("xtask/src/setup.rs", "KUBERNETES_VALIDATE");
        let version = pin.split("==").nth(1).expect("pinned as name==version");
        let (ok, installed) = run(Command::new("python3").args(["-m", "kubernetes_validate", "--version"]));
        if ok && installed.trim() == version {
            return;
        }
        let (ok, out) = run(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &pin])
                .env("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        );
        assert!(ok, "pip install {pin} failed (python3 with pip and the PyPI registry needed): {out}");
    });
}

/// kubernetes-validate on `files`, with no network at all.
fn kubernetes_validate(files: &[PathBuf], kubernetes: &str) -> (bool, String) {
    ensure_kubernetes_validate();
    run(Command::new("unshare")
        .args(["--net", "python3", "-m", "kubernetes_validate", "--strict", "-k", kubernetes])
        .args(files))
}

/// Oldest and newest releases the manifests must be valid for (CAP_BPF needs kernel 5.8; every
/// field used exists since 1.25, when PodSecurityPolicy left).
const KUBERNETES: [&str; 2] = ["1.27", "1.34"];

#[test]
fn kubernetes_validate_accepts_the_namespace_and_the_daemonset_offline() {
    let files = [root().join("deploy/namespace.yaml"), root().join("deploy/daemonset.yaml")];
    for version in KUBERNETES {
        let (ok, out) = kubernetes_validate(&files, version);
        assert!(ok, "kubernetes-validate {version}: {out}");
        for kind in ["daemonset/node-runtime-monitor", "namespace/node-runtime-monitor"] {
            assert!(out.contains(&format!("passed for resource {kind}")), "{kind} not validated against {version}: {out}");
        }
    }
}

#[test]
fn kubernetes_validate_rejects_a_broken_daemonset() {
    let good = read("deploy/daemonset.yaml");
    let dir = tempdir("broken");
    let cases = [
        // A misspelt field (strict: unknown properties are errors).
        ("typo", "'hostPid' was unexpected", good.replacen("hostPID: true", "hostPid: true", 1)),
        // A wrong type.
        ("type", "is not of type 'integer'", good.replacen("containerPort: 9750", "containerPort: \"9750\"", 1)),
        // A required field missing.
        ("selector", "'selector' is a required property", good.replacen("  selector:\n    matchLabels:\n      app.kubernetes.io/name: node-runtime-monitor\n", "", 1)),
    ];
    for (name, reason, text) in cases {
        assert_ne!(text, good, "{name}: the mutation must change the manifest");
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let (ok, out) = kubernetes_validate(&[file], KUBERNETES[1]);
        assert!(!ok, "kubernetes-validate accepted the broken DaemonSet ({name}): {out}");
        assert!(out.contains("did not validate") && out.contains(reason), "{name}: expected \"{reason}\": {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_daemonset_has_exactly_the_privileges_the_daemon_needs() {
    let ds = manifest("deploy/daemonset.yaml");
    assert_eq!(ds["metadata"]["namespace"], "node-runtime-monitor");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "kernel events carry host pids");
    assert_eq!(pod["hostNetwork"], false);
    assert_eq!(pod["automountServiceAccountToken"], false, "the daemon never calls the API server");
    assert!(pod["serviceAccountName"].is_null());
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // The capabilities are the ones tests/tests/daemon.rs proves enough (least_privilege_...).
    let proven = read("tests/tests/daemon.rs")
        .lines()
        .find_map(|l| l.strip_prefix("const DAEMONSET_CAPS: &str = \"").map(|r| r.trim_end_matches("\";").to_string()))
        .expect("DAEMONSET_CAPS in tests/tests/daemon.rs");
    let mut proven: Vec<String> =
        proven.split(',').filter_map(|c| c.strip_prefix('+')).map(|c| c.to_ascii_uppercase()).collect();
    let mut added: Vec<String> =
        sc["capabilities"]["add"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    proven.sort();
    added.sort();
    assert_eq!(added, proven, "DaemonSet capabilities vs the ones the least-privilege test runs with");
    assert_eq!(added, ["BPF", "PERFMON"]);

    // Host paths: what each is mounted for, all read-only.
    let volumes: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v["hostPath"]["path"].as_str().expect("hostPath only").to_string()))
        .collect();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mut mounted = Vec::new();
    for m in mounts {
        assert_eq!(m["readOnly"], true, "{m}: every host mount is read-only");
        let (_, host) = volumes.iter().find(|(n, _)| m["name"] == n.as_str()).expect("mount of a declared volume");
        mounted.push((host.clone(), m["mountPath"].as_str().unwrap().to_string()));
    }
    for (host, at) in [
        ("/", "/host"),
        ("/sys/kernel/tracing", "/sys/kernel/tracing"),
        ("/sys/kernel/btf", "/sys/kernel/btf"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/run/containerd", "/host/run/containerd"),
    ] {
        assert!(mounted.contains(&(host.to_string(), at.to_string())), "{host} at {at}: {mounted:?}");
    }
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--host-root=/host"), "{args:?}");
    // The daemon accepts these arguments.
    let (ok, out) = run(Command::new(monitor_tests::daemon::binary()).arg("run").args(&args).arg("--help"));
    assert!(ok, "the daemon rejects the DaemonSet's arguments {args:?}: {out}");

    let port = &c["ports"][0];
    assert_eq!((port["name"].as_str(), port["containerPort"].as_u64()), (Some("metrics"), Some(9750)));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let res = &c["resources"];
    for (k, v) in [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")] {
        assert!(res[k][v].is_string(), "resources.{k}.{v}");
    }
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(tolerations.iter().any(|t| t["key"] == "node-role.kubernetes.io/control-plane" && t["effect"] == "NoSchedule"));
    assert!(tolerations.iter().any(|t| t["key"].is_null() && t["operator"] == "Exists"), "tolerates every taint");
}

#[test]
fn the_podmonitor_scrapes_the_daemonsets_metrics_port_as_the_job_the_rules_watch() {
    let ds = manifest("deploy/daemonset.yaml");
    let pm = manifest("deploy/podmonitor.yaml");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["kind"], "PodMonitor");
    assert_eq!(pm["metadata"]["namespace"], "node-runtime-monitor");
    let labels = ds["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "selector {k}={v} matches the DaemonSet's pods");
    }
    assert_eq!(pm["spec"]["namespaceSelector"]["matchNames"], serde_json::json!(["node-runtime-monitor"]));
    let job_label = pm["spec"]["jobLabel"].as_str().expect("jobLabel");
    let job = labels[job_label].as_str().unwrap();
    assert!(read("dashboards/prometheus-rules.yaml").contains(&format!("up{{job=\"{job}\"}}")), "MonitorDown watches job {job}");
    let endpoints = pm["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]);
    assert_eq!(endpoints[0]["path"], "/metrics");
    // Only the fields the CRD defines for an endpoint.
    for key in endpoints[0].as_object().unwrap().keys() {
        assert!(["port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme"].contains(&key.as_str()), "{key}");
    }
}

#[test]
fn the_prometheusrule_holds_the_rule_files_groups_and_promtool_accepts_them() {
    let rule = manifest("deploy/prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "node-runtime-monitor");
    assert_eq!(rule["spec"].as_object().unwrap().keys().collect::<Vec<_>>(), ["groups"]);
    let plain = manifest("dashboards/prometheus-rules.yaml");
    assert_eq!(rule["spec"], plain, "deploy/prometheusrule.yaml is stale: run `cargo xtask package`");
    // The spec as a rule file (JSON is YAML) for promtool.
    let dir = tempdir("rules");
    let file = dir.join("spec.yaml");
    std::fs::write(&file, rule["spec"].to_string()).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    assert!(ok, "promtool check rules on the PrometheusRule's spec: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn promtool_unit_tests_of_the_rules_pass_and_cover_every_alert_both_ways() {
    let (ok, out) = run(Command::new("promtool").args(["test", "rules", "prometheus-rules.test.yaml"]).current_dir(root().join("dashboards")));
    assert!(ok && out.contains("SUCCESS"), "promtool test rules: {out}");

    let rules = manifest("dashboards/prometheus-rules.yaml");
    let alerts: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    for required in [
        "NodeRuntimeMonitorFindingCritical",
        "NodeRuntimeMonitorFindingWarning",
        "NodeRuntimeMonitorStaticPodOOMKilled",
        "NodeRuntimeMonitorContainerKilledByRuntime",
        "NodeRuntimeMonitorProbeDown",
        "NodeRuntimeMonitorEventsLost",
        "NodeRuntimeMonitorAttributionMisses",
        "NodeRuntimeMonitorDown",
    ] {
        assert!(alerts.iter().any(|a| a == required), "{required} missing from the rules");
    }
    let tests = manifest("dashboards/prometheus-rules.test.yaml");
    let cases: Vec<&Value> =
        tests["tests"].as_array().unwrap().iter().flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten()).collect();
    for alert in &alerts {
        let of: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == alert.as_str()).collect();
        let fires = of.iter().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let silent = of.iter().any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(fires && silent, "{alert}: needs a promtool test where it fires ({fires}) and one where it does not ({silent})");
    }
    // The unit tests can fail: a rule file whose alerts never fire makes them fail.
    let dir = tempdir("mutant");
    std::fs::write(dir.join("prometheus-rules.yaml"), read("dashboards/prometheus-rules.yaml").replace("> 0\n", "> 1e9\n")).unwrap();
    std::fs::write(dir.join("prometheus-rules.test.yaml"), read("dashboards/prometheus-rules.test.yaml")).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["test", "rules", "prometheus-rules.test.yaml"]).current_dir(&dir));
    assert!(!ok && out.contains("FAILED"), "promtool tests pass on rules that never fire: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_dockerfile_pins_are_xtasks() {
    let dockerfile = read("deploy/Dockerfile");
    let arg = |name: &str| {
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("ARG {name}= in deploy/Dockerfile"))
            .trim()
            .to_string()
    };
    assert_eq!(arg("RUST_TOOLCHAIN"), rust_const("xtask/src/main.rs", "TOOLCHAIN"));
    assert_eq!(arg("BPF_LINKER_VERSION"), rust_const("xtask/src/setup.rs", "BPF_LINKER_VERSION"));
    let llvm_prefix = rust_const("xtask/src/setup.rs", "LLVM_PREFIX");
    assert_eq!(arg("LLVM_PREFIX"), llvm_prefix);
    let llvm_major = llvm_prefix.rsplit('-').next().unwrap();
    assert!(dockerfile.contains(&format!("--features llvm-{llvm_major}")), "bpf-linker built for LLVM {llvm_major}");
    // Every Debian build package xtask installs is installed in the build stage.
    let setup = read("xtask/src/setup.rs");
    let start = setup.find("const BUILD_PACKAGES").expect("BUILD_PACKAGES");
    let list = &setup[start..start + setup[start..].find(';').unwrap()];
    let packages: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    assert!(packages.len() >= 5, "{packages:?}");
    let install = dockerfile.split("apt-get install").nth(1).expect("apt-get install in the build stage");
    let install = &install[..install.find("rm -rf").unwrap_or(install.len())];
    for p in &packages {
        assert!(install.split_whitespace().any(|w| w == *p), "{p} not installed by deploy/Dockerfile");
    }
    assert!(dockerfile.contains("--component rust-src"));
    assert!(dockerfile.contains("build --release --locked -p monitor --bin node-runtime-monitor"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/node-runtime-monitor","run"]"#));
    let image = manifest("deploy/daemonset.yaml")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    let version = read("Cargo.toml").lines().find_map(|l| l.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string())).unwrap();
    assert_eq!(image, format!("node-runtime-monitor:{version}"), "the DaemonSet runs the image of this version");
}

/// The long options a subcommand's `--help` lists (`--help` itself left out).
fn options_of(subcommand: &str) -> Vec<String> {
    let (ok, help) = run(Command::new(monitor_tests::daemon::binary()).args([subcommand, "--help"]));
    assert!(ok, "{subcommand} --help: {help}");
    let mut options: Vec<String> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-h, ").map_or(Some(l.trim_start()), |_| None))
        .filter(|l| l.starts_with("--"))
        .map(|l| l.split([' ', '=']).next().unwrap().to_string())
        .collect();
    options.sort();
    options.dedup();
    assert!(options.len() > 3, "{subcommand} --help: {help}");
    options
}

#[test]
fn the_readme_configuration_and_the_daemonset_args_are_the_options_the_binary_accepts() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Configuration section");
    let mentioned = |option: &str| {
        section.contains(&format!("`{option}`")) || section.contains(&format!("`{option} ")) || section.contains(&format!("`{option}="))
    };
    // Every option of run and check is in the reference...
    for (subcommand, options) in [("run", options_of("run")), ("check", options_of("check"))] {
        let missing: Vec<&String> = options.iter().filter(|o| !mentioned(o)).collect();
        assert!(missing.is_empty(), "README Configuration lacks {subcommand} options {missing:?}");
    }
    // ...and nothing else: every option the reference names exists.
    let mut known = options_of("run");
    known.extend(options_of("check"));
    for word in section.split('`').skip(1).step_by(2) {
        if let Some(option) = word.strip_prefix("--").map(|o| format!("--{}", o.split([' ', '=']).next().unwrap())) {
            assert!(known.contains(&option), "README Configuration names {option}, which the binary does not accept");
        }
    }
    // The DaemonSet passes options `run` accepts.
    let ds = manifest("deploy/daemonset.yaml");
    let run_options = options_of("run");
    for arg in ds["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap() {
        let option = arg.as_str().unwrap().split('=').next().unwrap();
        assert!(run_options.iter().any(|o| o == option), "DaemonSet arg {arg} is not an option of run: {run_options:?}");
    }
}

#[test]
fn the_readme_lists_every_alert_of_the_rule_file_with_its_severity() {
    let readme = read("README.md");
    let rules = yaml_documents(&read("dashboards/prometheus-rules.yaml")).remove(0);
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap().iter().filter(|r| r["alert"].is_string()) {
            let (name, severity) = (rule["alert"].as_str().unwrap(), rule["labels"]["severity"].as_str().unwrap());
            assert!(readme.contains(&format!("| `{name}` | {severity} |")), "README's alert table lacks {name} ({severity})");
            alerts.push(name.to_string());
        }
    }
    let listed = readme.lines().filter(|l| l.starts_with("| `NodeRuntimeMonitor")).count();
    assert_eq!(listed, alerts.len(), "README lists alerts the rule file does not have: {alerts:?}");
}
