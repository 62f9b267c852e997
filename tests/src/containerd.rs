//! A real containerd for tests: Debian's `containerd` started with a temporary config, root,
//! state and socket (CRI plugin on, cgroupfs driver, `native` snapshotter, no CNI: pods use the
//! host network), in the cgroup systemd gives `containerd.service` (there is no systemd here),
//! and a local image built from `/bin/busybox` (busybox-static) imported with `ctr`, which is
//! also the sandbox (pause) image, so nothing is ever pulled.
//!
//! [`Containerd::cri`] gives a CRI v1 client to create pods and containers the way kubelet does
//! ([`PodSpec`], [`ContainerSpec`] set kubelet's labels and annotations). The process is killed
//! and its directories removed on drop; containers are removed first so no shim is left.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_cri::v1::{self as cri, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

/// The image every test pod uses (also the sandbox image).
pub const IMAGE: &str = "nrm.local/busybox:1";

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Child,
    channel: Channel,
    runtime: tokio::runtime::Runtime,
}

impl Containerd {
    /// Starts containerd and imports the image; panics with containerd's log on failure.
    pub fn start() -> Self {
        let dir = PathBuf::from(format!("/tmp/nrm-ctd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir, &socket)).expect("write config");
        let log = fs::File::create(dir.join("containerd.log")).expect("log file");
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config).stdout(Stdio::null()).stderr(log);
        // In containerd's unit cgroup, as systemd runs it: its shims and runc stay there.
        crate::cgroups::join_before_exec(&mut command, &crate::cgroups::unit_cgroup("containerd.service"));
        let child = command.spawn().expect("spawn containerd (apt-get install containerd)");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio");
        // Seconds here; under QEMU's emulation (tests/tests/v2_node_vm.rs) it takes longer.
        let deadline = Instant::now() + Duration::from_secs(90);
        let channel = loop {
            if socket.exists()
                && let Ok(channel) = runtime.block_on(monitor::node::cri::connect(&socket, Duration::from_secs(2)))
            {
                let mut client = RuntimeServiceClient::new(channel.clone());
                if runtime.block_on(client.version(cri::VersionRequest::default())).is_ok() {
                    break channel;
                }
            }
            if Instant::now() > deadline {
                panic!("containerd did not serve CRI on {} within 90s:\n{}", socket.display(), fs::read_to_string(dir.join("containerd.log")).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let me = Self { dir, socket, child, channel, runtime };
        me.import_image();
        me
    }

    /// A CRI v1 runtime client.
    pub fn cri(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// Runs a future on the harness's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Builds an OCI image layout tarball from /bin/busybox and imports it into `k8s.io`.
    fn import_image(&self) {
        let work = self.dir.join("image");
        let rootfs = work.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        fs::create_dir_all(rootfs.join("tmp")).expect("mkdir");
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox (apt-get install busybox-static)");
        for applet in ["sh", "sleep", "head", "tail", "cat", "true", "false", "ls", "dd"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
        }
        let layout = work.join("layout");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).expect("mkdir");
        let layer = work.join("layer.tar");
        run(Command::new("tar").args(["--owner=0", "--group=0", "--numeric-owner", "-C"]).arg(&rootfs).arg("-cf").arg(&layer).arg("."));
        let layer_digest = put_blob(&blobs, &fs::read(&layer).expect("read layer"));
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": { "Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        });
        let config_bytes = serde_json::to_vec(&config).expect("json");
        let config_digest = put_blob(&blobs, &config_bytes);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config_bytes.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": fs::metadata(&layer).expect("stat").len() }],
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
        let manifest_digest = put_blob(&blobs, &manifest_bytes);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_digest}"),
                "size": manifest_bytes.len(), "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": { "io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "1" },
            }],
        });
        fs::write(layout.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write");
        fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
        let tarball = work.join("image.tar");
        run(Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&tarball).arg("."));
        run(Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", "native"])
            .arg(&tarball));
        // The CRI plugin learns about imported images from containerd's events.
        let mut images = k8s_cri::v1::image_service_client::ImageServiceClient::new(self.channel.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .block_on(images.image_status(cri::ImageStatusRequest { image: Some(image_spec()), verbose: false }))
                .is_ok_and(|r| r.into_inner().image.is_some());
            if found {
                return;
            }
            assert!(Instant::now() < deadline, "CRI does not see {IMAGE} after import:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// RunPodSandbox as kubelet would call it for `pod` (host network, cgroupfs parent).
    pub fn run_pod(&self, pod: &PodSpec) -> String {
        let config = pod.sandbox_config(&self.dir);
        let mut client = self.cri();
        let answer = self
            .block_on(client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }))
            .unwrap_or_else(|e| panic!("RunPodSandbox {}: {e}\n{}", pod.name, self.log()));
        answer.into_inner().pod_sandbox_id
    }

    /// CreateContainer + StartContainer; returns the container id.
    pub fn run_container(&self, sandbox_id: &str, pod: &PodSpec, container: &ContainerSpec) -> String {
        let id = self.create_container(sandbox_id, pod, container);
        let mut client = self.cri();
        self.block_on(client.start_container(cri::StartContainerRequest { container_id: id.clone() }))
            .unwrap_or_else(|e| panic!("StartContainer {}: {e}\n{}", container.name, self.log()));
        id
    }

    pub fn create_container(&self, sandbox_id: &str, pod: &PodSpec, container: &ContainerSpec) -> String {
        let mut client = self.cri();
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(container.config(pod)),
            sandbox_config: Some(pod.sandbox_config(&self.dir)),
        };
        self.block_on(client.create_container(request))
            .unwrap_or_else(|e| panic!("CreateContainer {}: {e}\n{}", container.name, self.log()))
            .into_inner()
            .container_id
    }

    /// StopContainer with no grace period, as kubelet when it tears a container down: the shim
    /// has runc send SIGKILL. The container stays listed, as kubelet keeps it until its garbage
    /// collection.
    pub fn stop_container(&self, id: &str) {
        let mut client = self.cri();
        let _ = self.block_on(client.stop_container(cri::StopContainerRequest { container_id: id.to_string(), timeout: 0 }));
    }

    pub fn remove_container(&self, id: &str) {
        self.stop_container(id);
        let mut client = self.cri();
        let _ = self.block_on(client.remove_container(cri::RemoveContainerRequest { container_id: id.to_string() }));
    }

    /// The container's state and exit code.
    pub fn container_status(&self, id: &str) -> Option<cri::ContainerStatus> {
        let mut client = self.cri();
        self.block_on(client.container_status(cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false }))
            .ok()?
            .into_inner()
            .status
    }

    /// The pid of container `id`'s process on the host (ContainerStatus's verbose info), once
    /// its task exists.
    pub fn container_pid(&self, id: &str) -> Option<u32> {
        let mut client = self.cri();
        let answer = self
            .block_on(client.container_status(cri::ContainerStatusRequest { container_id: id.to_string(), verbose: true }))
            .ok()?
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(answer.info.get("info")?).ok()?;
        info["pid"].as_u64().filter(|pid| *pid > 0).and_then(|pid| u32::try_from(pid).ok())
    }

    /// Waits (at most 10 s) until container `id`'s process has exec'd its command: its
    /// `/proc/PID/comm` is `comm` (before, it is runc's `runc:[2:INIT]`). Returns the pid.
    /// StartContainer returning says the task was started, not that the command runs yet.
    pub fn wait_running(&self, id: &str, comm: &str) -> u32 {
        let limit = Duration::from_secs(10);
        let deadline = Instant::now() + limit;
        let mut seen = None;
        loop {
            if let Some(pid) = self.container_pid(id) {
                let now = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if now.trim_end() == comm {
                    return pid;
                }
                seen = Some((pid, now.trim_end().to_string()));
            }
            assert!(
                Instant::now() < deadline,
                "container {id} does not run {comm} after {limit:?} (pid and comm: {seen:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until container `id` exited; returns its exit code.
    pub fn wait_exit(&self, id: &str, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.container_status(id)
                && status.state == cri::ContainerState::ContainerExited as i32
            {
                return status.exit_code;
            }
            assert!(Instant::now() < deadline, "container {id} did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ExecSync in a container; returns the exit code (an exec that cannot start is an error
    /// from the runtime, returned as `Err`).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<i32, tonic::Status> {
        let mut client = self.cri();
        let request = cri::ExecSyncRequest { container_id: id.to_string(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 };
        self.block_on(client.exec_sync(request)).map(|r| r.into_inner().exit_code)
    }

    fn cleanup(&mut self) {
        let mut client = self.cri();
        if let Ok(pods) = self.block_on(client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })) {
            for pod in pods.into_inner().items {
                let _ = self.block_on(client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }));
                let _ = self.block_on(client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id }));
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts of the native snapshotter are plain directories; shims are gone with the
        // containers. Keep the directory when the test failed, for its log.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A pod as kubelet describes it to the runtime.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// A static pod: kubelet's `kubernetes.io/config.source: file`.
    pub static_source: bool,
    /// `burstable`, `besteffort` or `` (guaranteed): the cgroup parent's QoS level.
    pub qos: &'static str,
}

impl PodSpec {
    /// The cgroup parent kubelet's cgroupfs driver uses.
    pub fn cgroup_parent(&self) -> String {
        match self.qos {
            "" => format!("/kubepods/pod{}", self.uid),
            qos => format!("/kubepods/{qos}/pod{}", self.uid),
        }
    }

    fn sandbox_config(&self, dir: &Path) -> cri::PodSandboxConfig {
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), self.name.clone()),
            ("io.kubernetes.pod.namespace".to_string(), self.namespace.clone()),
            ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
        ]);
        let mut annotations = HashMap::from([
            ("kubernetes.io/config.seen".to_string(), "2026-05-07T10:00:00Z".to_string()),
            ("kubernetes.io/config.source".to_string(), if self.static_source { "file" } else { "api" }.to_string()),
        ]);
        if self.static_source {
            annotations.insert("kubernetes.io/config.hash".into(), self.uid.clone());
        }
        let logs = dir.join("pods").join(format!("{}_{}_{}", self.namespace, self.name, self.uid));
        let _ = fs::create_dir_all(&logs);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: self.name.clone(), uid: self.uid.clone(), namespace: self.namespace.clone(), attempt: 0 }),
            hostname: String::new(),
            log_directory: logs.to_string_lossy().into_owned(),
            labels,
            annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A container as kubelet describes it.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub memory_limit_bytes: i64,
    pub attempt: u32,
}

impl ContainerSpec {
    pub fn new(name: &str, command: &[&str]) -> Self {
        Self { name: name.into(), command: command.iter().map(|s| s.to_string()).collect(), memory_limit_bytes: 0, attempt: 0 }
    }

    fn config(&self, pod: &PodSpec) -> cri::ContainerConfig {
        // kubelet's container labels (containerd does not copy the sandbox's onto containers).
        let labels = HashMap::from([
            ("io.kubernetes.container.name".to_string(), self.name.clone()),
            ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
            ("io.kubernetes.pod.namespace".to_string(), pod.namespace.clone()),
            ("io.kubernetes.pod.uid".to_string(), pod.uid.clone()),
        ]);
        let annotations = HashMap::from([
            ("io.kubernetes.container.restartCount".to_string(), self.attempt.to_string()),
            ("io.kubernetes.container.terminationMessagePath".to_string(), "/dev/termination-log".to_string()),
        ]);
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: self.name.clone(), attempt: self.attempt }),
            image: Some(image_spec()),
            command: self.command.clone(),
            labels,
            annotations,
            log_path: format!("{}/{}.log", self.name, self.attempt),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: self.memory_limit_bytes,
                    memory_swap_limit_in_bytes: self.memory_limit_bytes,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn image_spec() -> cri::ImageSpec {
    cri::ImageSpec { image: IMAGE.to_string(), ..Default::default() }
}

fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (test machines, some CI) a sandbox cannot lower its oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#,
        socket = socket.display()
    )
}

fn put_blob(blobs: &Path, bytes: &[u8]) -> String {
    let digest = sha256_hex(bytes);
    fs::write(blobs.join(&digest), bytes).expect("write blob");
    digest
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(bytes).expect("pipe to sha256sum");
    }
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("sha256sum output").to_string()
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// For tests that bring their own image (an OCI archive) and their own pod and container
/// configs (e.g. translated from a manifest by [`crate::pod_template`]).
impl Containerd {
    /// Imports the OCI image layout archive `archive` into `k8s.io` (`ctr images import`, the
    /// name from its `io.containerd.image.name` annotation) and waits until the CRI sees
    /// `image` (a name as a manifest writes it: the CRI normalises it).
    pub fn import_archive(&self, archive: &Path, image: &str) {
        run(Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", "native"])
            .arg(archive));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.image_id(image).is_none() {
            assert!(Instant::now() < deadline, "CRI does not see {image} after importing {}:\n{}", archive.display(), self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// ImageStatus of `image`: its id when the runtime has it (what kubelet checks before it
    /// would pull, and passes to CreateContainer).
    pub fn image_id(&self, image: &str) -> Option<String> {
        let mut images = k8s_cri::v1::image_service_client::ImageServiceClient::new(self.channel.clone());
        let spec = cri::ImageSpec { image: image.to_string(), ..Default::default() };
        self.block_on(images.image_status(cri::ImageStatusRequest { image: Some(spec), verbose: false }))
            .ok()?
            .into_inner()
            .image
            .map(|i| i.id)
    }

    /// ExecSync in container `id` with its output; `timeout` is the runtime's.
    pub fn exec_sync_output(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<cri::ExecSyncResponse, tonic::Status> {
        let mut client = self.cri();
        let request = cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        self.block_on(client.exec_sync(request)).map(|r| r.into_inner())
    }
}

impl Containerd {
    /// The image's OCI config (`Entrypoint`, `Cmd`, `Env`...) as ImageStatus's verbose info has
    /// it, when the runtime has the image.
    pub fn image_config(&self, image: &str) -> Option<serde_json::Value> {
        let mut images = k8s_cri::v1::image_service_client::ImageServiceClient::new(self.channel.clone());
        let spec = cri::ImageSpec { image: image.to_string(), ..Default::default() };
        let answer = self.block_on(images.image_status(cri::ImageStatusRequest { image: Some(spec), verbose: true })).ok()?.into_inner();
        let info: serde_json::Value = serde_json::from_str(answer.info.get("info")?).ok()?;
        Some(info["imageSpec"]["config"].clone())
    }
}
