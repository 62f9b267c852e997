//! What the monitor knows of the node's machinery, one table per kind of thing: the container
//! runtimes (their sockets, binaries, systemd units and shims), the control-plane components
//! (binaries, units, ports) and the installers that bootstrap a node. Every other module
//! derives its lists from these tables (the sockets the probes watch, the sockets attribution
//! and the audit ask, the units and binaries the detectors follow), so a runtime added here is
//! known everywhere at once.
//!
//! Paths are host paths as the runtimes create them under `/run`; a client may name them
//! through `/var/run` (a symlink to `/run` on every current distribution), and the kernel
//! reports the path as the client wrote it, so [`socket_paths_as_clients_write_them`] gives
//! both spellings.

/// The protocol a runtime socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketApi {
    /// The Kubernetes Container Runtime Interface (gRPC `runtime.v1` / `runtime.v1alpha2`).
    Cri,
    /// Docker's engine API (HTTP), which kubelet reached through dockershim or cri-dockerd.
    DockerEngine,
}

/// One socket of a runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeSocket {
    /// Host path under `/run`.
    pub path: &'static str,
    pub api: SocketApi,
}

/// A container runtime (or a distribution's embedded copy of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownRuntime {
    /// What operators call it.
    pub name: &'static str,
    pub sockets: &'static [RuntimeSocket],
    /// Its daemons' binary names.
    pub binaries: &'static [&'static str],
    /// Its command-line tools.
    pub tools: &'static [&'static str],
    /// Its systemd units.
    pub units: &'static [&'static str],
    /// The per-container processes it starts (shims, monitors).
    pub shims: &'static [&'static str],
    /// The runtime name its CRI `Version` call answers with (`containerd`, `cri-o`, `docker`).
    pub cri_name: &'static str,
    /// For a CRI adapter (a shim between kubelet and another runtime, running no container
    /// itself): the daemons of the runtime it drives. Unused when kubelet talks to a runtime
    /// directly.
    pub fronts: &'static [&'static str],
}

const fn cri(path: &'static str) -> RuntimeSocket {
    RuntimeSocket { path, api: SocketApi::Cri }
}

const CONTAINERD_SHIMS: &[&str] = &["containerd-shim-runc-v2", "containerd-shim-runc-v1", "containerd-shim"];

/// The container runtimes, in the order their sockets are tried when nothing says which one
/// kubelet uses.
pub const RUNTIMES: &[KnownRuntime] = &[
    KnownRuntime {
        name: "containerd",
        // The second is cri-containerd's, the CRI plugin's socket before containerd 1.1.
        sockets: &[cri("/run/containerd/containerd.sock"), cri("/run/cri-containerd/cri-containerd.sock")],
        binaries: &["containerd"],
        tools: &["ctr"],
        units: &["containerd.service"],
        shims: CONTAINERD_SHIMS,
        cri_name: "containerd",
        fronts: &[],
    },
    KnownRuntime {
        name: "cri-o",
        sockets: &[cri("/run/crio/crio.sock")],
        binaries: &["crio"],
        tools: &[],
        units: &["crio.service"],
        shims: &["conmon", "conmonrs"],
        cri_name: "cri-o",
        fronts: &[],
    },
    KnownRuntime {
        name: "k3s",
        // k3s's and RKE2's embedded containerd.
        sockets: &[cri("/run/k3s/containerd/containerd.sock")],
        binaries: &["k3s", "rke2"],
        tools: &[],
        units: &["k3s.service", "k3s-agent.service", "rke2-server.service", "rke2-agent.service"],
        shims: CONTAINERD_SHIMS,
        cri_name: "containerd",
        fronts: &[],
    },
    KnownRuntime {
        name: "k0s",
        // k0s's embedded containerd.
        sockets: &[cri("/run/k0s/containerd.sock")],
        binaries: &["k0s"],
        tools: &[],
        units: &["k0sworker.service", "k0scontroller.service"],
        shims: CONTAINERD_SHIMS,
        cri_name: "containerd",
        fronts: &[],
    },
    KnownRuntime {
        name: "cri-dockerd",
        sockets: &[cri("/run/cri-dockerd.sock"), cri("/run/cri-docker/cri-dockerd.sock")],
        binaries: &["cri-dockerd"],
        tools: &[],
        units: &["cri-docker.service", "cri-docker.socket"],
        shims: &[],
        cri_name: "docker",
        fronts: &["dockerd"],
    },
    KnownRuntime {
        name: "dockershim",
        // kubelet's built-in Docker adapter, removed in Kubernetes 1.24.
        sockets: &[cri("/run/dockershim.sock")],
        binaries: &[],
        tools: &[],
        units: &[],
        shims: &[],
        cri_name: "docker",
        fronts: &["dockerd"],
    },
    KnownRuntime {
        name: "docker",
        // dockerd's engine socket, and the containerd dockerd starts for itself (its CRI
        // plugin disabled).
        sockets: &[
            RuntimeSocket { path: "/run/docker.sock", api: SocketApi::DockerEngine },
            cri("/run/docker/containerd/containerd.sock"),
        ],
        binaries: &["dockerd"],
        tools: &["docker"],
        units: &["docker.service", "docker.socket"],
        shims: CONTAINERD_SHIMS,
        cri_name: "docker",
        fronts: &[],
    },
];

/// A component of the Kubernetes control plane or node agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: &'static str,
    pub binaries: &'static [&'static str],
    pub units: &'static [&'static str],
    /// TCP ports it serves that its clients connect to.
    pub ports: &'static [u16],
    /// Run as a static pod of that name by kubeadm and most installers on control-plane nodes.
    pub static_pod: bool,
}

/// The control plane and the node agent.
pub const CONTROL_PLANE: &[Component] = &[
    Component { name: "kubelet", binaries: &["kubelet"], units: &["kubelet.service"], ports: &[10250], static_pod: false },
    Component { name: "kube-apiserver", binaries: &["kube-apiserver"], units: &[], ports: &[6443], static_pod: true },
    Component { name: "etcd", binaries: &["etcd"], units: &["etcd.service"], ports: &[2379], static_pod: true },
    Component { name: "kube-controller-manager", binaries: &["kube-controller-manager"], units: &[], ports: &[10257], static_pod: true },
    Component { name: "kube-scheduler", binaries: &["kube-scheduler"], units: &[], ports: &[10259], static_pod: true },
    Component { name: "kube-proxy", binaries: &["kube-proxy"], units: &[], ports: &[], static_pod: false },
];

/// Node installers and bootstrap agents: while one runs, kubelet is expected to come.
pub const INSTALLERS: &[&str] = &["nodeup", "kubeadm", "k0s", "kk", "kubekey"];

/// The low-level container runners the runtimes above drive.
pub const OCI_RUNTIMES: &[&str] = &["runc", "crun"];

/// The CRI command-line client.
pub const CRI_TOOL: &str = "crictl";

/// The runtime a socket belongs to, by its host path (`/run/...` or `/var/run/...`).
pub fn runtime_of_socket(path: &str) -> Option<&'static KnownRuntime> {
    let path = path.strip_prefix("/var").filter(|p| p.starts_with("/run/")).unwrap_or(path);
    RUNTIMES.iter().find(|r| r.sockets.iter().any(|s| s.path == path))
}

/// The daemons of every runtime whose CRI `Version` answers as `cri_name`, with the
/// daemons a CRI adapter answering so drives (`docker`: cri-dockerd and dockerd).
pub fn daemons_answering_as(cri_name: &str) -> Vec<&'static str> {
    RUNTIMES.iter().filter(|r| r.cri_name == cri_name).flat_map(|r| r.binaries.iter().chain(r.fronts)).copied().collect()
}

/// Every runtime's daemon binaries, in table order.
pub fn runtime_daemons() -> impl Iterator<Item = &'static str> {
    RUNTIMES.iter().flat_map(|r| r.binaries).copied()
}

/// Every CRI socket of the table, in table order.
pub fn cri_sockets() -> impl Iterator<Item = &'static str> {
    RUNTIMES.iter().flat_map(|r| r.sockets).filter(|s| s.api == SocketApi::Cri).map(|s| s.path)
}

/// Every runtime socket as clients write its path: under `/run` and under `/var/run`.
pub fn socket_paths_as_clients_write_them() -> impl Iterator<Item = String> {
    RUNTIMES.iter().flat_map(|r| r.sockets).flat_map(|s| [s.path.to_string(), format!("/var{}", s.path)])
}

/// Whether a unix socket path a process connected to is a runtime's socket. The path may be
/// seen through a mount of the host's `/run` elsewhere (a pod's `/host/run/...`,
/// `/hostvarrun/dockershim.sock`), so it is told by the socket's file name.
pub fn is_runtime_socket_path(path: &str) -> bool {
    let name = file_name(path);
    RUNTIMES.iter().flat_map(|r| r.sockets).any(|s| file_name(s.path) == name)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The runtime one of whose systemd units is `unit`.
pub fn runtime_of_unit(unit: &str) -> Option<&'static KnownRuntime> {
    RUNTIMES.iter().find(|r| r.units.contains(&unit))
}

/// What a binary is to the node's runtimes, by its file name: a runtime's daemon, one of its
/// per-container shims, or an OCI runtime they drive (with the runtime that lists it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeBinary {
    Daemon(&'static KnownRuntime),
    Shim(&'static KnownRuntime),
    Oci,
}

/// What `name` (an executable's file name) is to the runtimes of the table, if anything.
pub fn runtime_binary(name: &str) -> Option<RuntimeBinary> {
    if OCI_RUNTIMES.contains(&name) {
        return Some(RuntimeBinary::Oci);
    }
    RUNTIMES.iter().find_map(|r| {
        if r.binaries.contains(&name) {
            Some(RuntimeBinary::Daemon(r))
        } else if r.shims.contains(&name) {
            Some(RuntimeBinary::Shim(r))
        } else {
            None
        }
    })
}

/// The node agent (kubelet) of the control-plane table.
pub fn kubelet() -> &'static Component {
    CONTROL_PLANE.iter().find(|c| c.name == "kubelet").unwrap_or(&CONTROL_PLANE[0])
}

/// Whether a systemd unit is the node's runtime or control plane (its failure is the node's).
pub fn is_node_unit(unit: &str) -> bool {
    RUNTIMES.iter().flat_map(|r| r.units).chain(CONTROL_PLANE.iter().flat_map(|c| c.units)).any(|u| *u == unit)
}

/// Whether a binary's base name is one of the node's runtime, control plane or installers
/// (followed for restart loops even when no systemd unit runs it).
pub fn is_node_daemon(name: &str) -> bool {
    RUNTIMES.iter().flat_map(|r| r.binaries.iter().chain(r.shims))
        .chain(CONTROL_PLANE.iter().flat_map(|c| c.binaries))
        .chain(INSTALLERS)
        .chain(OCI_RUNTIMES)
        .any(|b| *b == name)
}

/// Whether a static pod of this name is a control-plane component (kubeadm's names).
pub fn is_control_plane_static_pod(name: &str) -> bool {
    CONTROL_PLANE.iter().any(|c| c.static_pod && c.name == name)
}

/// Whether a TCP port is one the control plane serves.
pub fn is_control_plane_port(port: u16) -> bool {
    CONTROL_PLANE.iter().any(|c| c.ports.contains(&port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_socket_belongs_to_one_runtime() {
        for (socket, runtime) in [
            ("/run/containerd/containerd.sock", "containerd"),
            ("/var/run/containerd/containerd.sock", "containerd"),
            ("/run/crio/crio.sock", "cri-o"),
            ("/var/run/crio/crio.sock", "cri-o"),
            ("/run/k3s/containerd/containerd.sock", "k3s"),
            ("/run/k0s/containerd.sock", "k0s"),
            ("/run/cri-dockerd.sock", "cri-dockerd"),
            ("/var/run/cri-dockerd.sock", "cri-dockerd"),
            ("/run/cri-docker/cri-dockerd.sock", "cri-dockerd"),
            ("/var/run/dockershim.sock", "dockershim"),
            ("/var/run/docker.sock", "docker"),
            ("/run/docker/containerd/containerd.sock", "docker"),
        ] {
            assert_eq!(runtime_of_socket(socket).map(|r| r.name), Some(runtime), "{socket}");
        }
        assert_eq!(runtime_of_socket("/run/user/1000/bus"), None);
        let mut all: Vec<&str> = RUNTIMES.iter().flat_map(|r| r.sockets).map(|s| s.path).collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a socket is listed under two runtimes");
    }

    #[test]
    fn runtime_socket_paths_are_told_wherever_the_host_run_is_mounted() {
        for path in [
            "/run/containerd/containerd.sock",
            "/host/run/k3s/containerd/containerd.sock",
            "/hostvarrun/dockershim.sock",
            "/var/run/docker.sock",
            "/run/cri-containerd/cri-containerd.sock",
        ] {
            assert!(is_runtime_socket_path(path), "{path}");
        }
        for path in ["/run/user/1000/bus", "/var/run/nscd/socket", "/tmp/containerd.sock.bak"] {
            assert!(!is_runtime_socket_path(path), "{path}");
        }
    }

    #[test]
    fn the_docker_engine_socket_is_not_asked_as_cri() {
        assert!(!cri_sockets().any(|s| s == "/run/docker.sock"));
        assert!(cri_sockets().any(|s| s == "/run/k3s/containerd/containerd.sock"));
        let watched: Vec<String> = socket_paths_as_clients_write_them().collect();
        assert!(watched.contains(&"/var/run/docker.sock".to_string()));
        assert!(watched.contains(&"/run/docker.sock".to_string()));
    }

    #[test]
    fn runtime_binaries_and_units() {
        assert_eq!(runtime_binary("containerd"), Some(RuntimeBinary::Daemon(&RUNTIMES[0])));
        assert!(matches!(runtime_binary("containerd-shim-runc-v2"), Some(RuntimeBinary::Shim(r)) if r.name == "containerd"));
        assert!(matches!(runtime_binary("conmon"), Some(RuntimeBinary::Shim(r)) if r.name == "cri-o"));
        assert!(matches!(runtime_binary("cri-dockerd"), Some(RuntimeBinary::Daemon(r)) if r.name == "cri-dockerd"));
        assert_eq!(runtime_binary("runc"), Some(RuntimeBinary::Oci));
        assert_eq!(runtime_binary("python3"), None);
        assert_eq!(runtime_of_unit("crio.service").map(|r| r.name), Some("cri-o"));
        assert_eq!(runtime_of_unit("kubelet.service"), None);
        assert_eq!(kubelet().units, ["kubelet.service"]);
    }

    #[test]
    fn units_binaries_and_ports() {
        for unit in ["kubelet.service", "containerd.service", "crio.service", "docker.service", "cri-docker.service", "etcd.service", "k0sworker.service"] {
            assert!(is_node_unit(unit), "{unit}");
        }
        assert!(!is_node_unit("cron.service"));
        for name in ["kubelet", "containerd", "dockerd", "cri-dockerd", "crio", "conmon", "etcd", "kube-apiserver", "k3s", "rke2", "nodeup", "kubeadm", "kk", "runc", "containerd-shim-runc-v2"] {
            assert!(is_node_daemon(name), "{name}");
        }
        assert!(!is_node_daemon("bash"));
        for port in [6443, 2379, 10250, 10257, 10259] {
            assert!(is_control_plane_port(port), "{port}");
        }
        assert!(!is_control_plane_port(443));
    }
}
