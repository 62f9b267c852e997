//! Naming pods without a runtime socket: kubelet's log layout on the node says which pod and
//! container a container id or pod uid belongs to.
//!
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` (a link kubelet
//!   makes per container);
//! - `/var/log/pods/<namespace>_<pod>_<uid>/` (a directory per pod).
//!
//! Pod names and namespaces are DNS labels (no `_`), so the names split unambiguously. This is
//! the fallback when no CRI socket answers; it only lists directories, through the host root
//! ([`HostRoot`]: a `/var/log` that is a symlink on the node is followed inside the root). It
//! never opens or reads the logs themselves.

use std::path::Path;

use crate::node::host_root::HostRoot;

/// What a log file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedContainer {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Parses `<pod>_<namespace>_<container>-<id>.log` for container `id`.
pub fn parse_container_log(name: &str, id: &str) -> Option<LoggedContainer> {
    let stem = name
        .strip_suffix(".log")?
        .strip_suffix(id)?
        .strip_suffix('-')?;
    let mut parts = stem.splitn(3, '_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    (!pod.is_empty() && !namespace.is_empty() && !container.is_empty()).then(|| LoggedContainer {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
    })
}

/// Parses `<namespace>_<pod>_<uid>` for pod `uid`: (namespace, pod).
pub fn parse_pod_dir(name: &str, uid: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(uid)?.strip_suffix('_')?;
    let (namespace, pod) = stem.split_once('_')?;
    (!namespace.is_empty() && !pod.is_empty()).then(|| (namespace.into(), pod.into()))
}

/// Finds container `id` in the host's `/var/log/containers`.
pub fn find_container(root: &HostRoot, id: &str) -> Option<LoggedContainer> {
    find_in(root, "/var/log/containers", |name| {
        parse_container_log(name, id)
    })
}

/// Finds pod `uid` in the host's `/var/log/pods`: (namespace, pod).
pub fn find_pod(root: &HostRoot, uid: &str) -> Option<(String, String)> {
    find_in(root, "/var/log/pods", |name| parse_pod_dir(name, uid))
}

/// The first entry of the host directory `dir` whose name `parse` accepts.
fn find_in<T>(root: &HostRoot, dir: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    root.list_dir(Path::new(dir))
        .iter()
        .find_map(|entry| parse(&entry.file_name()?.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";

    #[test]
    fn kubelet_log_names() {
        let name = format!("kube-apiserver-node1_kube-system_kube-apiserver-{ID}.log");
        assert_eq!(
            parse_container_log(&name, ID),
            Some(LoggedContainer {
                namespace: "kube-system".into(),
                pod: "kube-apiserver-node1".into(),
                container: "kube-apiserver".into()
            })
        );
        assert_eq!(parse_container_log(&name, &ID.replace('4', "5")), None);
        assert_eq!(parse_container_log(&format!("_x_y-{ID}.log"), ID), None);
        assert_eq!(parse_container_log("garbage", ID), None);
        assert_eq!(
            parse_pod_dir(
                "kube-system_etcd-node1_9729a196c4723b60ab401eaff722982d",
                "9729a196c4723b60ab401eaff722982d"
            ),
            Some(("kube-system".into(), "etcd-node1".into()))
        );
        assert_eq!(
            parse_pod_dir(
                "kube-system_etcd-node1_other",
                "9729a196c4723b60ab401eaff722982d"
            ),
            None
        );
    }

    /// On a node whose `/var/log` is a symlink (`/var/log -> /data/log`), the files are found
    /// where it points inside the host root, not at that path in this process's own view.
    #[test]
    fn a_symlinked_var_log_is_followed_inside_the_root() {
        const UID: &str = "9729a196c4723b60ab401eaff722982d";
        let dir = std::env::temp_dir().join(format!("nrm-kubelet-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data/log/containers")).expect("mkdir");
        std::fs::create_dir_all(dir.join(format!("data/log/pods/kube-system_etcd-node1_{UID}")))
            .expect("mkdir");
        std::fs::write(
            dir.join(format!(
                "data/log/containers/etcd-node1_kube-system_etcd-{ID}.log"
            )),
            "",
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("var")).expect("mkdir");
        std::os::unix::fs::symlink("/data/log", dir.join("var/log")).expect("symlink");
        let root = HostRoot::new(&dir);
        assert_eq!(
            find_container(&root, ID),
            Some(LoggedContainer {
                namespace: "kube-system".into(),
                pod: "etcd-node1".into(),
                container: "etcd".into()
            })
        );
        assert_eq!(
            find_pod(&root, UID),
            Some(("kube-system".into(), "etcd-node1".into()))
        );
        assert_eq!(find_container(&root, &ID.replace('4', "5")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
