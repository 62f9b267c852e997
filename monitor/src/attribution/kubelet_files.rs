//! Naming pods without a runtime socket: kubelet's log layout on the node says which pod and
//! container a container id or pod uid belongs to.
//!
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` (a link kubelet
//!   makes per container);
//! - `/var/log/pods/<namespace>_<pod>_<uid>/` (a directory per pod).
//!
//! Pod names and namespaces are DNS labels (no `_`), so the names split unambiguously. This is
//! the fallback when no CRI socket answers; it only lists directories.

use std::{fs, path::Path};

/// What a log file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedContainer {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Parses `<pod>_<namespace>_<container>-<id>.log` for container `id`.
pub fn parse_container_log(name: &str, id: &str) -> Option<LoggedContainer> {
    let stem = name.strip_suffix(".log")?.strip_suffix(id)?.strip_suffix('-')?;
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

/// Finds container `id` under `<root>/var/log/containers`.
pub fn find_container(root: &Path, id: &str) -> Option<LoggedContainer> {
    let dir = fs::read_dir(root.join("var/log/containers")).ok()?;
    dir.flatten().find_map(|e| parse_container_log(&e.file_name().to_string_lossy(), id))
}

/// Finds pod `uid` under `<root>/var/log/pods`: (namespace, pod).
pub fn find_pod(root: &Path, uid: &str) -> Option<(String, String)> {
    let dir = fs::read_dir(root.join("var/log/pods")).ok()?;
    dir.flatten().find_map(|e| parse_pod_dir(&e.file_name().to_string_lossy(), uid))
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
            Some(LoggedContainer { namespace: "kube-system".into(), pod: "kube-apiserver-node1".into(), container: "kube-apiserver".into() })
        );
        assert_eq!(parse_container_log(&name, &ID.replace('4', "5")), None);
        assert_eq!(parse_container_log(&format!("_x_y-{ID}.log"), ID), None);
        assert_eq!(parse_container_log("garbage", ID), None);
        assert_eq!(
            parse_pod_dir("kube-system_etcd-node1_9729a196c4723b60ab401eaff722982d", "9729a196c4723b60ab401eaff722982d"),
            Some(("kube-system".into(), "etcd-node1".into()))
        );
        assert_eq!(parse_pod_dir("kube-system_etcd-node1_other", "9729a196c4723b60ab401eaff722982d"), None);
    }
}
