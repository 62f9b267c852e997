//! Who is configured to talk CRI to which socket: kubelet (its runtime and image endpoints)
//! and crictl (`/etc/crictl.yaml`). A runtime socket that no CRI client uses may serve no CRI
//! at all on purpose: Docker's own containerd runs with the CRI plugin disabled.
//!
//! It only reads; the audit decides which sockets matter.

use std::path::{Path, PathBuf};

use super::{host_root::HostRoot, kubelet::Kubelet, snapshot::endpoint_path};

/// crictl's configuration file (cri-tools' `--config` default).
pub const CRICTL_CONFIG: &str = "/etc/crictl.yaml";

/// One configured CRI client of one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriClient {
    /// The socket it talks to (host path, `unix://` stripped, `/var/run` folded to `/run`).
    pub socket: PathBuf,
    /// `kubelet`, `kubelet (images)` or `crictl`.
    pub client: &'static str,
    /// Where the endpoint is set (`file:line`), or the component's default.
    pub source: String,
}

/// `/var/run/x.sock` and `/run/x.sock` are one socket on every distribution (`/var/run` is a
/// link to `/run`); compare sockets in this form.
pub fn canonical_socket(path: &Path) -> PathBuf {
    match path.strip_prefix("/var/run") {
        Ok(rest) => Path::new("/run").join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// kubelet's clients: its runtime endpoint (`kubelet_endpoint`, with its default applied by the
/// caller) and its image endpoint when set apart.
pub fn kubelet_clients(kubelet: &Kubelet, runtime_endpoint: &super::kubelet::Value) -> Vec<CriClient> {
    let mut out = Vec::new();
    let mut push = |client, value: &super::kubelet::Value| {
        let path = endpoint_path(&value.value);
        if path.starts_with('/') {
            out.push(CriClient { socket: canonical_socket(Path::new(path)), client, source: value.origin.to_string() });
        }
    };
    push("kubelet", runtime_endpoint);
    if let Some(images) = kubelet.image_endpoint() {
        push("kubelet (images)", &images);
    }
    out
}

/// crictl's endpoints from its configuration file, when the file exists and parses. crictl
/// without a file tries containerd's, CRI-O's and cri-dockerd's sockets in turn: that is no
/// configured use of any one of them.
pub fn crictl_clients(root: &HostRoot) -> Vec<CriClient> {
    let path = Path::new(CRICTL_CONFIG);
    let Ok(text) = root.read_text_limited(path, 64 * 1024) else { return Vec::new() };
    let Ok(serde_yaml::Value::Mapping(map)) = serde_yaml::from_str::<serde_yaml::Value>(&text) else { return Vec::new() };
    let mut out = Vec::new();
    for key in ["runtime-endpoint", "image-endpoint"] {
        let Some(value) = map.get(key).and_then(|v| v.as_str()) else { continue };
        let socket = endpoint_path(value);
        if !socket.starts_with('/') {
            continue;
        }
        let line = text.lines().position(|l| l.trim_start().starts_with(key)).map(|i| i + 1).unwrap_or(1);
        out.push(CriClient { socket: canonical_socket(Path::new(socket)), client: "crictl", source: format!("{CRICTL_CONFIG}:{line}") });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_run_is_run() {
        assert_eq!(canonical_socket(Path::new("/var/run/crio/crio.sock")), PathBuf::from("/run/crio/crio.sock"));
        assert_eq!(canonical_socket(Path::new("/run/containerd/containerd.sock")), PathBuf::from("/run/containerd/containerd.sock"));
        assert_eq!(canonical_socket(Path::new("/var/runx/a.sock")), PathBuf::from("/var/runx/a.sock"));
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nrm-cri-clients-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).expect("etc");
        dir
    }

    #[test]
    fn crictl_yaml_names_its_endpoints() {
        let dir = scratch("named");
        // What kubeadm's install guide and Kubespray write (cri-tools' documented keys).
        std::fs::write(
            dir.join("etc/crictl.yaml"),
            "runtime-endpoint: unix:///var/run/crio/crio.sock\nimage-endpoint: unix:///var/run/crio/crio.sock\ntimeout: 10\n",
        )
        .expect("write");
        let root = HostRoot::new(&dir);
        let clients = crictl_clients(&root);
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].socket, PathBuf::from("/run/crio/crio.sock"));
        assert_eq!(clients[0].source, "/etc/crictl.yaml:1");
        assert_eq!(clients[1].source, "/etc/crictl.yaml:2");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_or_bad_crictl_yaml_is_no_client() {
        let dir = scratch("bad");
        let root = HostRoot::new(&dir);
        assert!(crictl_clients(&root).is_empty());
        std::fs::write(dir.join("etc/crictl.yaml"), "runtime-endpoint: [unclosed").expect("write");
        assert!(crictl_clients(&root).is_empty());
        std::fs::write(dir.join("etc/crictl.yaml"), "runtime-endpoint: tcp://10.0.0.1:1234\n").expect("write");
        assert!(crictl_clients(&root).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
