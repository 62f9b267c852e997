//! Runs inside the pure cgroup v2 VM (`tests/tests/v2_node_vm.rs`), with the daemon serving on
//! the address given as its argument: Debian's containerd (CRI plugin, runc's v2 shim, the
//! cgroupfs driver: runc's systemd driver needs a running systemd) runs a pod the way kubelet
//! asks for it, with the cgroup parent kubelet's cgroupfs driver gives it on v2
//! (`/kubepods/burstable/pod<uid>`); its container, limited to 32 MiB, is OOM-killed at the
//! `memory.max` runc wrote. The daemon must count the kill under the names only the CRI knows
//! (no kubelet log files exist for this pod). Prints `CRI OK ...` with the timings under QEMU;
//! panics (exit 101) otherwise.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use monitor_tests::{
    containerd::{ContainerSpec, Containerd, PodSpec},
    daemon::{http_get, metric_value},
};

fn main() {
    let daemon: SocketAddr = std::env::args().nth(1).expect("the daemon's address").parse().expect("an address");
    let started = Instant::now();
    let containerd = Containerd::start();
    let serving = started.elapsed();
    // kubeadm's runtime endpoint (kubeadm-flags.env): where the daemon asks the CRI.
    std::fs::create_dir_all("/run/containerd").expect("/run/containerd");
    std::os::unix::fs::symlink(&containerd.socket, "/run/containerd/containerd.sock").expect("the socket at kubelet's endpoint");

    let pod = PodSpec {
        namespace: "default".into(),
        name: "cri-pod".into(),
        uid: "6f1c9a52-3e0b-4d7a-9c85-2b4e7d1a0f36".into(),
        static_source: false,
        qos: "burstable",
    };
    let sandbox = containerd.run_pod(&pod);
    let sandbox_ready = started.elapsed();
    // It runs a moment before it allocates: long enough to read the cgroup runc made for it.
    let mut hog = ContainerSpec::new("hog", &["/bin/sh", "-c", "sleep 2; exec dd if=/dev/zero of=/dev/null bs=256M count=1"]);
    hog.memory_limit_bytes = 32 << 20;
    let id = containerd.run_container(&sandbox, &pod, &hog);
    let pid = containerd.wait_running(&id, "sh");
    // runc's cgroup for it: `<cgroup parent>/<id>` on the unified hierarchy.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    let path = own.trim().strip_prefix("0::").unwrap_or_else(|| panic!("not a pure v2 membership: {own}")).to_string();
    assert_eq!(path, format!("{}/{id}", pod.cgroup_parent()), "the cgroup kubelet's parent gives");
    let cgroup = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let memory_max = std::fs::read_to_string(cgroup.join("memory.max")).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
    assert_eq!(memory_max.trim(), (32u64 << 20).to_string(), "runc's memory.max from the CRI limit");
    let code = containerd.wait_exit(&id, Duration::from_secs(120));
    let container_done = started.elapsed();
    assert_eq!(code, 137, "the container was killed:\n{}", containerd.log());
    // The container's cgroup is gone with it; the pod's counts its descendants' kills (v2).
    let pod_cgroup = Path::new("/sys/fs/cgroup").join(pod.cgroup_parent().trim_start_matches('/'));
    let oom_kills = monitor::node::cgroupfs::oom_kills_in(&pod_cgroup).expect("the pod's memory.events");
    assert_eq!(oom_kills, 1, "the kernel's count in {}", pod_cgroup.display());

    let labels = [
        r#"namespace="default""#,
        r#"pod="cri-pod""#,
        r#"container="hog""#,
        r#"cause="oom""#,
        r#"constraint="memory_cgroup""#,
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let counted = loop {
        let metrics = http_get(daemon, "/metrics").map(|(_, body)| body).unwrap_or_default();
        if let Some(value) = metric_value(&metrics, "node_runtime_monitor_kills_total", &labels) {
            break value;
        }
        assert!(Instant::now() < deadline, "the daemon did not count the kill by the CRI's names:\n{metrics}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(counted, 1.0);
    println!(
        "CRI OK container={id} cgroup={path} memory.max={} oom_kill={oom_kills} kills_total={counted} containerd_serving_s={:.1} sandbox_ready_s={:.1} container_done_s={:.1}",
        memory_max.trim(),
        serving.as_secs_f64(),
        sandbox_ready.as_secs_f64(),
        container_done.as_secs_f64(),
    );
}
