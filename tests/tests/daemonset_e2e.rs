//! The DaemonSet run the way kubelet runs it: `deploy/daemonset.yaml` is read, its pod
//! template turned into the CRI requests kubelet would send (tests/src/pod_template.rs: host
//! PID namespace, securityContext with its capabilities, read-only root filesystem and seccomp
//! profile, every hostPath mount with its propagation, args, env, resources), and those are sent
//! to a real containerd (Debian's 1.6, runc) running the image `cargo xtask image` builds. Then,
//! each one a check of its own:
//! - the container's process runs as the manifest says (capabilities, no_new_privs, seccomp,
//!   namespaces, read-only root, every mount with its propagation, cgroup limits: read from
//!   /proc and the cgroup files, not from the runtime's answer);
//! - `/healthz` answers on the address of `--listen`, at the readiness probe's path and port;
//! - every kernel program is attached (`probe_up` 1 for each of `monitor::probes::PROGRAMS`);
//! - real events on the host (failed execs and a SIGKILL of a shell, in a cgroup named like a
//!   systemd unit) are counted under that unit in `events_by_owner_total` and `kills_total`;
//! - `/metrics` is scraped whole (OpenMetrics, ends with `# EOF`, every always-exported family);
//! - `check --host-root /host --output json` runs inside the container (CRI ExecSync) and its
//!   report parses;
//! - StopContainer with the manifest's `terminationGracePeriodSeconds` (kubelet's SIGTERM)
//!   stops it with exit code 0 and every program its process held is freed (5 s).
//!
//! The one deviation from kubelet: no CNI is configured here, so the pod uses the host's network
//! namespace even though the manifest says `hostNetwork: false`. The daemon then listens on the
//! host: the port `--listen` names must be free, which the test checks first (this test runs
//! alone, .config/nextest.toml).
//!
//! The second test changes the manifest (drops `BPF` from the capabilities; removes the tracefs
//! mount) and shows the same checks fail, so the first cannot pass whatever the manifest says.
//! (Removing the `/sys/fs/cgroup` or the BTF mount would not fail here: the daemon finds the
//! host's cgroup2 hierarchy at `/host/sys/fs/cgroup/...`, the first one in its mountinfo, through
//! the recursive bind of `/` at `/host`, and sysfs shows the kernel's BTF in any container.)
//!
//! The image: `<target dir>/image/node-runtime-monitor-<version>-amd64.oci.tar`. When it is
//! missing the test builds it with `cargo run -q -p xtask -- image --arch x86_64` into this test
//! run's target dir (a static release build: minutes); an archive that is there is used as it
//! is, so rebuild it (`cargo xtask image --arch x86_64`) after changing the daemon.
//!
//! Needs root, kernel BTF, tracefs, `containerd`, `runc`, `ctr`, busybox-static and bpftool.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use k8s_cri::v1 as cri;
use monitor::probes::PROGRAMS;
use monitor_tests::{
    bpf_objects::{programs_held_by, still_loaded_after},
    cgroups::{TestCgroup, cgroup2_mount, spawn_in},
    containerd::Containerd,
    daemon::{http_get, metric_value},
    pod_template::{self, Node, PodIdentity, PullPolicy},
    prometheus,
};
use serde_json::Value;

const MANIFEST: &str = "deploy/daemonset.yaml";
/// How long the daemon may take to serve `/healthz` after its container started.
const HEALTHZ_LIMIT: Duration = Duration::from_secs(30);
/// How long events may take to appear under their owner in `/metrics`.
const OWNER_LIMIT: Duration = Duration::from_secs(10);
/// Programs the container's process held must be freed within this after it exited.
const RELEASE_LIMIT: Duration = Duration::from_secs(5);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The image archive under this test run's target dir (`<target>/debug/deps/<test>`), built
/// when missing (see the module doc).
fn image_archive() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let archive = target.join("image").join(format!("node-runtime-monitor-{}-amd64.oci.tar", env!("CARGO_PKG_VERSION")));
    if !archive.exists() {
        eprintln!("{} is missing: building it (cargo run -q -p xtask -- image --arch x86_64)", archive.display());
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "-q", "-p", "xtask", "--", "image", "--arch", "x86_64"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(root())
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo xtask image failed ({status})");
        assert!(archive.exists(), "cargo xtask image did not write {}", archive.display());
    }
    archive
}

/// One check: what it found when it passed, why not when it failed.
#[derive(Debug)]
struct Check {
    name: &'static str,
    result: Result<String, String>,
}

#[derive(Debug, Default)]
struct Report {
    checks: Vec<Check>,
    /// The container's log (CRI format), for failures.
    log: String,
}

impl Report {
    fn record(&mut self, name: &'static str, result: Result<String, String>) {
        eprintln!("[{}] {name}: {}", if result.is_ok() { "pass" } else { "FAIL" }, result.as_ref().unwrap_or_else(|e| e));
        self.checks.push(Check { name, result });
    }

    fn passed(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.name == name && c.result.is_ok())
    }

    fn failed(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.name == name && c.result.is_err())
    }

    fn all_passed(&self) -> bool {
        self.checks.len() == CHECKS.len() && self.checks.iter().all(|c| c.result.is_ok())
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            match &c.result {
                Ok(evidence) => out.push_str(&format!("  pass  {}: {evidence}\n", c.name)),
                Err(why) => out.push_str(&format!("  FAIL  {}: {why}\n", c.name)),
            }
        }
        for name in CHECKS.iter().filter(|n| !self.checks.iter().any(|c| c.name == **n)) {
            out.push_str(&format!("  ----  {name}: not run\n"));
        }
        let tail: Vec<&str> = self.log.lines().rev().take(40).collect();
        out.push_str(&format!("container log (last {} lines):\n", tail.len()));
        for line in tail.into_iter().rev() {
            out.push_str(&format!("    {line}\n"));
        }
        out
    }
}

const APPLIED: &str = "the container runs as the manifest says";
const HEALTHZ: &str = "/healthz answers";
const PROBES: &str = "every program attached";
const OWNER: &str = "host events attributed to their owner";
const METRICS: &str = "/metrics scraped";
const CHECK: &str = "check runs in the container";
const SIGTERM: &str = "SIGTERM leaves no program behind";
const CHECKS: [&str; 7] = [APPLIED, HEALTHZ, PROBES, OWNER, METRICS, CHECK, SIGTERM];

/// A directory removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The sandbox: stopped and removed on drop (its containers with it), then the pod's cgroups.
struct SandboxGuard<'a> {
    containerd: &'a Containerd,
    id: String,
    cgroup_parent: String,
}

impl Drop for SandboxGuard<'_> {
    fn drop(&mut self) {
        let mut client = self.containerd.cri();
        let _ = self.containerd.block_on(client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: self.id.clone() }));
        let _ = self.containerd.block_on(client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: self.id.clone() }));
        // The pod's own cgroup in every hierarchy (kubelet's QoS manager would remove it).
        for mount in cgroup_mounts() {
            let _ = fs::remove_dir(mount.join(self.cgroup_parent.trim_start_matches('/')));
        }
    }
}

/// The container: stopped at once and removed on drop.
struct ContainerGuard<'a> {
    containerd: &'a Containerd,
    id: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        self.containerd.remove_container(&self.id);
    }
}

/// Mount points of every cgroup hierarchy (v1 controllers and v2).
fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// Mount point of the cgroup v1 hierarchy holding `controller`.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let mount = left.split_whitespace().nth(4)?;
        (right.next() == Some("cgroup") && right.nth(1)?.split(',').any(|o| o == controller)).then(|| PathBuf::from(mount))
    })
}

/// The address `--listen` gives the daemon (argument, else `NRM_LISTEN`, else its default).
fn listen_address(config: &cri::ContainerConfig) -> SocketAddr {
    let mut args = config.command.iter().chain(config.args.iter());
    let mut value = None;
    while let Some(arg) = args.next() {
        if let Some(v) = arg.strip_prefix("--listen=") {
            value = Some(v.to_string());
        } else if arg == "--listen" {
            value = args.next().cloned();
        }
    }
    let value = value
        .or_else(|| config.envs.iter().find(|e| e.key == "NRM_LISTEN").map(|e| e.value.clone()))
        .unwrap_or_else(|| "0.0.0.0:9750".into());
    value.parse().unwrap_or_else(|e| panic!("--listen {value}: {e}"))
}

/// Runs the DaemonSet of `manifest_text` as kubelet would on this host and checks it.
fn run_daemonset(manifest_text: &str) -> Report {
    let mut report = Report::default();
    let manifest: Value = serde_yaml::from_str(manifest_text).expect("the manifest is YAML");
    let work = WorkDir(std::env::temp_dir().join(format!("nrm-ds-e2e-{}-{}", std::process::id(), report_sequence())));
    let _ = fs::remove_dir_all(&work.0);
    fs::create_dir_all(&work.0).expect("work dir");
    let node = Node::this_host(&work.0).expect("this host as kubelet sees it");
    let pod = pod_template::translate(&manifest, &node, &PodIdentity::random()).unwrap_or_else(|e| panic!("{MANIFEST} does not translate: {e:#}"));
    assert_eq!(pod.containers.len(), 1, "one container expected");
    let container = &pod.containers[0];

    // The deviation: the host network, since no CNI is configured here.
    let mut sandbox_config = pod.sandbox.clone();
    let mut container_config = container.config.clone();
    for options in [
        sandbox_config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|s| s.namespace_options.as_mut()),
        container_config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|s| s.namespace_options.as_mut()),
    ] {
        options.expect("namespace options").network = cri::NamespaceMode::Node as i32;
    }
    sandbox_config.hostname = String::new();
    let listen = listen_address(&container_config);
    let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, listen.port()));
    let readiness = container.readiness.clone().expect("the manifest has a readiness probe");
    assert_eq!(readiness.port, listen.port(), "the readiness probe's port is not the one --listen names");
    if let Err(e) = TcpListener::bind(listen) {
        panic!("{listen} (the manifest's --listen) is taken on this host, and the pod uses the host network here: {e}");
    }

    let archive = image_archive();
    let containerd = Containerd::start();
    containerd.import_archive(&archive, &container.image);
    // kubelet: ImageStatus, then pull unless present (IfNotPresent) — nothing is pulled here.
    assert_ne!(container.pull_policy, PullPolicy::Always, "imagePullPolicy Always would pull from a registry");
    let image_id = containerd.image_id(&container.image).unwrap_or_else(|| panic!("{} is not in the runtime", container.image));
    let container_config = {
        let mut c = container_config;
        c.image = container.config_for(&image_id).image;
        c
    };
    let image_config = containerd.image_config(&container.image).unwrap_or_default();
    let _prepared = pod.prepare().expect("kubelet's host-side preparation (hostPath types)");

    let mut client = containerd.cri();
    let sandbox_id = containerd
        .block_on(client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: String::new() }))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log()))
        .into_inner()
        .pod_sandbox_id;
    let cgroup_parent = sandbox_config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default();
    let _sandbox = SandboxGuard { containerd: &containerd, id: sandbox_id.clone(), cgroup_parent: cgroup_parent.clone() };
    let id = containerd
        .block_on(client.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id,
            config: Some(container_config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        }))
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", containerd.log()))
        .into_inner()
        .container_id;
    let _container = ContainerGuard { containerd: &containerd, id: id.clone() };
    containerd
        .block_on(client.start_container(cri::StartContainerRequest { container_id: id.clone() }))
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", containerd.log()));
    let log_file = Path::new(&sandbox_config.log_directory).join(&container_config.log_path);
    let container_log = || fs::read_to_string(&log_file).unwrap_or_default();

    // How the container ended, once it has.
    let exited = || {
        let status = containerd.container_status(&id).filter(|s| s.state == cri::ContainerState::ContainerExited as i32)?;
        Some(format!(
            "the container exited with code {} ({}); it ran {:?} (image {}: Entrypoint {}, Cmd {})",
            status.exit_code,
            status.reason,
            effective_command(&container_config, &image_config),
            container.image,
            image_config["Entrypoint"],
            image_config["Cmd"],
        ))
    };
    let ended = |mut report: Report, why: String| {
        report.log = container_log();
        report.record(APPLIED, Err(why.clone()));
        report.record(HEALTHZ, Err(why));
        report
    };

    // The daemon's pid on the host, once runc's init has exec'd it.
    let started = Instant::now();
    let pid = loop {
        if let Some(why) = exited() {
            return ended(report, why);
        }
        if let Some(pid) = containerd.container_pid(&id)
            && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| !c.starts_with("runc"))
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the container's process did not start:\n{}", containerd.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let applied = applied(pid, &container_config, &sandbox_config);
    // A process that exits at once may have been read on its way out.
    std::thread::sleep(Duration::from_millis(200));
    if let Some(why) = exited() {
        return ended(report, why);
    }
    report.record(APPLIED, applied);

    // /healthz, as the readiness probe asks it.
    let healthz = loop {
        if let Some(why) = exited() {
            break Err(why);
        }
        match http_get(local, &readiness.path) {
            Some((200, body)) => break Ok(format!("{local}{}: 200 {:?} {:?} after start", readiness.path, body.trim(), started.elapsed())),
            _ if started.elapsed() > HEALTHZ_LIMIT => break Err(format!("no 200 from {local}{} within {HEALTHZ_LIMIT:?}", readiness.path)),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let serving = healthz.is_ok();
    report.record(HEALTHZ, healthz);
    if !serving {
        report.log = container_log();
        return report;
    }

    report.record(PROBES, probes_attached(local));
    report.record(OWNER, owner_named(local));
    report.record(METRICS, metrics_scraped(local));
    report.record(CHECK, check_in_container(&containerd, &id));
    report.record(SIGTERM, sigterm(&containerd, &id, pid, pod.termination_grace));
    report.log = container_log();
    report
}

/// What the runtime runs: Kubernetes' `command` replaces the image's Entrypoint, and `args`
/// its Cmd (containerd's rule, as Docker's).
fn effective_command(config: &cri::ContainerConfig, image: &Value) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> { v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default() };
    let mut argv = if config.command.is_empty() { strings(&image["Entrypoint"]) } else { config.command.clone() };
    if config.command.is_empty() && config.args.is_empty() {
        argv.extend(strings(&image["Cmd"]));
    } else {
        argv.extend(config.args.iter().cloned());
    }
    argv
}

fn report_sequence() -> u32 {
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Linux capability numbers (`linux/capability.h`) by the name a manifest uses.
fn capability_bit(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let name = name.to_ascii_uppercase();
    let name = name.strip_prefix("CAP_").unwrap_or(&name);
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

fn status_field(status: &str, field: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(field)).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// The container's process as the kernel has it, against the CRI configs sent.
fn applied(pid: u32, config: &cri::ContainerConfig, sandbox: &cri::PodSandboxConfig) -> Result<String, String> {
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    let linux = config.linux.as_ref().ok_or("no linux config")?;
    let sc = linux.security_context.as_ref().ok_or("no security context")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;

    // Capabilities: with `drop: [ALL]` exactly the added ones, in every set that bounds them.
    let caps = sc.capabilities.clone().unwrap_or_default();
    if caps.drop_capabilities.iter().any(|c| c.eq_ignore_ascii_case("ALL")) && !sc.privileged {
        let mut want = 0u64;
        for cap in &caps.add_capabilities {
            match capability_bit(cap) {
                Some(bit) => want |= 1 << bit,
                None => wrong.push(format!("capability {cap} unknown")),
            }
        }
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let got = u64::from_str_radix(&status_field(&status, set), 16).unwrap_or(u64::MAX);
            if got != want {
                wrong.push(format!("{set} {got:016x}, manifest {want:016x}"));
            }
        }
        seen.push(format!("CapEff {want:016x} ({})", caps.add_capabilities.join("+")));
    }
    let nnp = status_field(&status, "NoNewPrivs:");
    if nnp != if sc.no_new_privs { "1" } else { "0" } {
        wrong.push(format!("NoNewPrivs {nnp}, no_new_privs {}", sc.no_new_privs));
    }
    let seccomp = status_field(&status, "Seccomp:");
    let unconfined = sc.seccomp.as_ref().is_some_and(|s| s.profile_type == cri::security_profile::ProfileType::Unconfined as i32);
    if (seccomp == "0") != (unconfined || sc.privileged) {
        wrong.push(format!("Seccomp {seccomp} (0 = none), profile {:?}", sc.seccomp));
    }
    seen.push(format!("NoNewPrivs {nnp}, Seccomp {seccomp}"));
    let uid = status_field(&status, "Uid:");
    if let Some(user) = &sc.run_as_user
        && uid.split_whitespace().next() != Some(user.value.to_string().as_str())
    {
        wrong.push(format!("Uid {uid}, runAsUser {}", user.value));
    }

    // Namespaces: NODE shares the host's (this process's).
    let ns = sc.namespace_options.clone().unwrap_or_default();
    for (kind, mode) in [("pid", ns.pid), ("net", ns.network), ("ipc", ns.ipc)] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{kind}")).map_err(|e| e.to_string())?;
        let ours = fs::read_link(format!("/proc/self/ns/{kind}")).map_err(|e| e.to_string())?;
        if (theirs == ours) != (mode == cri::NamespaceMode::Node as i32) {
            wrong.push(format!("{kind} namespace {theirs:?} (host {ours:?}), mode {mode}"));
        }
    }
    seen.push(format!("host pid namespace {}", ns.pid == cri::NamespaceMode::Node as i32));

    // Mounts: the root read-only as asked, each CRI mount there with its flags and propagation.
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| e.to_string())?;
    // The last mount at a point is the one seen there.
    let mut mounts: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((left, _)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let read_only = fields[5].split(',').any(|o| o == "ro");
        let optional = fields[6..].join(" ");
        mounts.insert(unescape(fields[4]), (read_only, optional));
    }
    match mounts.get("/") {
        Some((ro, _)) if *ro == sc.readonly_rootfs => {}
        other => wrong.push(format!("root mount {other:?}, readonly_rootfs {}", sc.readonly_rootfs)),
    }
    for m in &config.mounts {
        let Some((ro, optional)) = mounts.get(&m.container_path) else {
            wrong.push(format!("{} is not mounted", m.container_path));
            continue;
        };
        if *ro != m.readonly {
            wrong.push(format!("{} read-only {ro}, manifest {}", m.container_path, m.readonly));
        }
        // rprivate: neither tag; rslave: master:N; rshared: shared:N.
        let (shared, slave) = (optional.contains("shared:"), optional.contains("master:"));
        let ok = match m.propagation {
            p if p == cri::MountPropagation::PropagationPrivate as i32 => !shared && !slave,
            p if p == cri::MountPropagation::PropagationHostToContainer as i32 => slave && !shared,
            _ => shared,
        };
        if !ok {
            wrong.push(format!("{} propagation {optional:?}, CRI {}", m.container_path, m.propagation));
        }
    }
    seen.push(format!("{} mounts with their read-only flag and propagation, root read-only {}", config.mounts.len(), sc.readonly_rootfs));

    // Resources, from the container's cgroups.
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| e.to_string())?;
    let parent = sandbox.linux.as_ref().map(|l| l.cgroup_parent.as_str()).unwrap_or("");
    let path_of = |controller: &str| {
        cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            list.split(',').any(|c| c == controller).then(|| path.to_string())
        })
    };
    let res = linux.resources.clone().unwrap_or_default();
    let read = |p: PathBuf| fs::read_to_string(&p).map(|s| s.trim().to_string()).unwrap_or_else(|e| format!("{}: {e}", p.display()));
    if let (Some(memory), Some(cpu)) = (path_of("memory"), path_of("cpu")) {
        // cgroup v1.
        if !memory.starts_with(parent) {
            wrong.push(format!("memory cgroup {memory} not under {parent}"));
        }
        let (Some(mem_mount), Some(cpu_mount)) = (v1_mount("memory"), v1_mount("cpu")) else {
            return Err("cgroup v1 memory or cpu controller not mounted".into());
        };
        let mem_dir = mem_mount.join(memory.trim_start_matches('/'));
        let cpu_dir = cpu_mount.join(cpu.trim_start_matches('/'));
        let got = [
            ("memory.limit_in_bytes", read(mem_dir.join("memory.limit_in_bytes")), res.memory_limit_in_bytes.to_string()),
            ("cpu.shares", read(cpu_dir.join("cpu.shares")), res.cpu_shares.to_string()),
            ("cpu.cfs_quota_us", read(cpu_dir.join("cpu.cfs_quota_us")), if res.cpu_quota > 0 { res.cpu_quota.to_string() } else { "-1".into() }),
            ("cpu.cfs_period_us", read(cpu_dir.join("cpu.cfs_period_us")), res.cpu_period.to_string()),
        ];
        for (file, got, want) in &got {
            if got != want {
                wrong.push(format!("{file} {got}, manifest {want}"));
            }
        }
        seen.push(format!("cgroup {memory}: {}", got.iter().map(|(f, g, _)| format!("{f}={g}")).collect::<Vec<_>>().join(" ")));
    } else if let Some(path) = path_of("") {
        // cgroup v2: memory.max and cpu.max.
        let dir = cgroup2_mount().join(path.trim_start_matches('/'));
        let max = read(dir.join("memory.max"));
        if max != res.memory_limit_in_bytes.to_string() {
            wrong.push(format!("memory.max {max}, manifest {}", res.memory_limit_in_bytes));
        }
        let cpu_max = read(dir.join("cpu.max"));
        if cpu_max != format!("{} {}", res.cpu_quota, res.cpu_period) {
            wrong.push(format!("cpu.max {cpu_max}, manifest {} {}", res.cpu_quota, res.cpu_period));
        }
        seen.push(format!("cgroup {path}: memory.max={max} cpu.max={cpu_max}"));
    }
    let oom = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap_or_default();
    seen.push(format!("oom_score_adj {} (CRI {}; containerd restricts it to its own)", oom.trim(), res.oom_score_adj));

    if wrong.is_empty() { Ok(seen.join("; ")) } else { Err(wrong.join("; ")) }
}

/// mountinfo's octal escapes (`\040` is a space).
fn unescape(path: &str) -> String {
    let mut out = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&code, 8) {
                out.push(n as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

fn scrape(address: SocketAddr) -> Result<String, String> {
    match http_get(address, "/metrics") {
        Some((200, body)) => Ok(body),
        Some((status, _)) => Err(format!("/metrics answered {status}")),
        None => Err("/metrics did not answer".into()),
    }
}

fn probes_attached(address: SocketAddr) -> Result<String, String> {
    let metrics = scrape(address)?;
    let mut up = Vec::new();
    let mut down = Vec::new();
    for spec in PROGRAMS {
        let label = format!("program=\"{}\"", spec.name);
        let hook = metrics
            .lines()
            .find(|l| l.starts_with("node_runtime_monitor_probe_up{") && l.contains(&label))
            .and_then(|l| l.split("hook=\"").nth(1)?.split('"').next().map(str::to_string))
            .unwrap_or_default();
        match metric_value(&metrics, "node_runtime_monitor_probe_up", &[&label]) {
            Some(1.0) => up.push(format!("{} on {hook}", spec.name)),
            other => down.push(format!("{} {other:?}", spec.name)),
        }
    }
    if down.is_empty() {
        Ok(format!("{}/{} up: {}", up.len(), PROGRAMS.len(), up.join(", ")))
    } else {
        Err(format!("probe_up not 1 for {}/{}: {}", down.len(), PROGRAMS.len(), down.join(", ")))
    }
}

/// Failed execs and a SIGKILL in a cgroup named like a systemd unit, then the daemon's count of
/// them under that unit.
fn owner_named(address: SocketAddr) -> Result<String, String> {
    let unit = format!("nrm-daemonset-e2e-{}-{}.service", std::process::id(), report_sequence());
    let path = cgroup2_mount().join(&unit);
    fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    let cgroup = TestCgroup { path };
    let cgroup_id = fs::metadata(&cgroup.path).map(|m| m.ino()).unwrap_or(0);
    let missing = format!("/nonexistent/nrm-daemonset-e2e-{}", std::process::id());
    // Three failed execs (the shell's children), then the shell kills itself.
    let script = format!("{missing}; {missing}; {missing}; kill -KILL $$");
    let mut child = spawn_in(Command::new("/bin/sh").args(["-c", &script]), &[&cgroup]);
    let status = child.wait().map_err(|e| e.to_string())?;
    let service = format!("service=\"{unit}\"");
    let deadline = Instant::now() + OWNER_LIMIT;
    let started = Instant::now();
    loop {
        let metrics = scrape(address)?;
        let failed = metric_value(&metrics, "node_runtime_monitor_events_by_owner_total", &["kind=\"exec_failed\"", &service]).unwrap_or(0.0);
        let kills = metric_value(&metrics, "node_runtime_monitor_kills_total", &[&service, "cause=\"signal\""]).unwrap_or(0.0);
        if failed >= 3.0 && kills >= 1.0 {
            return Ok(format!(
                "{unit} (cgroup id {cgroup_id}): events_by_owner_total{{kind=\"exec_failed\"}} {failed}, kills_total{{cause=\"signal\"}} {kills} ({status}) within {:?}",
                started.elapsed()
            ));
        }
        if Instant::now() > deadline {
            let ours: Vec<&str> = metrics
                .lines()
                .filter(|l| l.contains("events_by_owner_total{") || l.contains("kills_total{") || l.contains("attribution_misses_total{"))
                .collect();
            return Err(format!(
                "after {OWNER_LIMIT:?}: exec_failed {failed} (want 3), kills {kills} (want 1) under {service}; owner series:\n      {}",
                ours.join("\n      ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics_scraped(address: SocketAddr) -> Result<String, String> {
    let body = scrape(address)?;
    if !body.ends_with("# EOF\n") {
        return Err(format!("does not end with `# EOF`: ...{:?}", &body[body.len().saturating_sub(80)..]));
    }
    let families = std::panic::catch_unwind(|| prometheus::families(&body)).map_err(|_| "malformed exposition".to_string())?;
    let catalogue = prometheus::catalogue();
    let missing: Vec<&String> = catalogue.iter().filter(|(name, e)| e.always && !families.contains_key(*name)).map(|(n, _)| n).collect();
    if !missing.is_empty() {
        return Err(format!("always-exported families missing: {missing:?}"));
    }
    let samples: usize = families.values().map(|f| f.samples).sum();
    let build = body.lines().find(|l| l.starts_with("node_runtime_monitor_build_info{")).unwrap_or("no build_info");
    Ok(format!("{} bytes, {} families ({} always-exported ones all there), {samples} samples, ends with # EOF; {build}", body.len(), families.len(), catalogue.values().filter(|e| e.always).count()))
}

fn check_in_container(containerd: &Containerd, id: &str) -> Result<String, String> {
    let started = Instant::now();
    let cmd = ["/node-runtime-monitor", "check", "--host-root", "/host", "--output", "json"];
    let answer = containerd.exec_sync_output(id, &cmd, Duration::from_secs(60)).map_err(|e| format!("ExecSync {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&answer.stdout);
    let stderr = String::from_utf8_lossy(&answer.stderr);
    let report: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("exit {}: stdout is not JSON ({e}): {stdout:?} stderr {stderr:?}", answer.exit_code))?;
    if !(0..=2).contains(&answer.exit_code) {
        return Err(format!("exit code {} (3: the check itself failed); stderr {stderr:?}", answer.exit_code));
    }
    if report["exit_code"] != answer.exit_code || report["host_root"] != "/host" {
        return Err(format!("exit {} but the report says {} for {}", answer.exit_code, report["exit_code"], report["host_root"]));
    }
    let findings: Vec<String> = report["findings"]
        .as_array()
        .map(|f| f.iter().map(|f| format!("{}:{}", f["rule"].as_str().unwrap_or("?"), f["subject"].as_str().unwrap_or("?"))).collect())
        .unwrap_or_default();
    Ok(format!(
        "exit {} in {:?}: status {}, summary {}, {} sockets, findings {findings:?}",
        answer.exit_code,
        started.elapsed(),
        report["status"],
        report["summary"],
        report["sockets"].as_array().map_or(0, Vec::len)
    ))
}

fn sigterm(containerd: &Containerd, id: &str, pid: u32, grace: Duration) -> Result<String, String> {
    let held = programs_held_by(pid);
    if held.len() < PROGRAMS.len() {
        return Err(format!("the daemon (pid {pid}) holds {} programs, fewer than the {} it attaches: {held:?}", held.len(), PROGRAMS.len()));
    }
    let started = Instant::now();
    let mut client = containerd.cri();
    let timeout = i64::try_from(grace.as_secs()).unwrap_or(30);
    containerd
        .block_on(client.stop_container(cri::StopContainerRequest { container_id: id.to_string(), timeout }))
        .map_err(|e| format!("StopContainer: {e}"))?;
    let stopped = started.elapsed();
    let status = containerd.container_status(id).ok_or("no status after StopContainer")?;
    if status.state != cri::ContainerState::ContainerExited as i32 || status.exit_code != 0 {
        return Err(format!("after StopContainer (timeout {timeout} s): state {} exit code {} ({})", status.state, status.exit_code, status.reason));
    }
    let left = still_loaded_after(&held, RELEASE_LIMIT);
    if !left.is_empty() {
        return Err(format!("{} of {} programs still loaded {RELEASE_LIMIT:?} after the daemon exited: {left:?}", left.len(), held.len()));
    }
    Ok(format!(
        "StopContainer (grace {timeout} s) returned in {stopped:?}, exit code 0; all {} program ids the daemon held ({}..={}) freed within {:?}",
        held.len(),
        held.first().copied().unwrap_or(0),
        held.last().copied().unwrap_or(0),
        started.elapsed() - stopped
    ))
}

fn manifest_text() -> String {
    fs::read_to_string(root().join(MANIFEST)).unwrap_or_else(|e| panic!("{MANIFEST}: {e}"))
}

/// `text` with `from` (which must be there, once) replaced by `to`.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{MANIFEST} no longer has {from:?} once: update this mutation");
    text.replacen(from, to, 1)
}

#[test]
fn the_daemonset_runs_under_containerd_as_kubelet_would_run_it() {
    let started = Instant::now();
    let report = run_daemonset(&manifest_text());
    eprintln!("{MANIFEST} under containerd in {:?}:\n{}", started.elapsed(), report.render());
    assert!(report.all_passed(), "{MANIFEST} does not run as a DaemonSet pod:\n{}", report.render());
}

#[test]
fn a_manifest_without_a_capability_or_a_mount_fails_these_checks() {
    let text = manifest_text();

    // Without CAP_BPF nothing can be loaded: the daemon runs degraded, its programs are down.
    let no_bpf = mutate(&text, "add: [BPF, PERFMON]", "add: [PERFMON]");
    let report = run_daemonset(&no_bpf);
    eprintln!("without BPF:\n{}", report.render());
    assert!(report.passed(HEALTHZ), "the daemon still serves without CAP_BPF:\n{}", report.render());
    assert!(report.failed(PROBES), "programs reported attached without CAP_BPF:\n{}", report.render());
    assert!(!report.all_passed());

    // Without the host's tracefs the tracepoints cannot be attached.
    let no_tracefs = mutate(&text, "            - name: tracefs\n              mountPath: /sys/kernel/tracing\n              readOnly: true\n", "");
    let report = run_daemonset(&no_tracefs);
    eprintln!("without /sys/kernel/tracing:\n{}", report.render());
    assert!(report.passed(HEALTHZ), "{}", report.render());
    assert!(report.failed(PROBES), "programs reported attached without tracefs:\n{}", report.render());
    assert!(!report.all_passed());
}
