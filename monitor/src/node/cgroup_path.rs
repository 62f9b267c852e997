//! What a cgroup path says about its owner: a container (runtime, id, pod uid and QoS class),
//! a pod-level cgroup, a host systemd unit, or the host itself.
//!
//! Covers cgroup v1 and v2 paths written by both cgroup drivers: cgroupfs
//! (`/kubepods/burstable/pod<uid>/<id>`, containerd's namespace paths `/k8s.io/<id>`,
//! `/docker/<id>`) and systemd (`kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `docker-<id>.scope`, the unconverted `slice:prefix:id` form, units of
//! `system.slice`). It is a pure function of the path text: it never reads the filesystem and
//! never asks the runtime; pod names and container names come from the CRI (see `attribution`).

use std::{fmt, sync::Arc};

/// A container id as runtimes write it in cgroup paths (64 hex digits for containerd, CRI-O and
/// Docker; `ctr` allows any name in containerd namespace paths).
/// Shared: every event of the container carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(Arc<str>);

impl serde::Serialize for ContainerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl ContainerId {
    /// A 64-digit lower-case hex id, as runtimes generate them.
    pub fn parse_hex(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(text.into()))
    }

    /// Any id a client may have chosen (`ctr run ... my-id`): letters, digits, `_.-`.
    fn parse_named(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        ok.then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, shared rather than copied.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// The 12-digit short form runtimes print.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The runtime that created a container, as far as the path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Containerd,
    CriO,
    /// Docker engine, also behind cri-dockerd / dockershim.
    Docker,
    Podman,
    /// A bare id under a pod cgroup (cgroupfs driver): containerd or Docker; the CRI knows.
    Unknown,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Unknown => "unknown",
        }
    }
}

/// Kubernetes QoS class of a pod, from the level of the hierarchy it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// Which cgroup driver wrote the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// A pod's cgroup: its uid and QoS class.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PodCgroup {
    /// The pod uid with dashes (`6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e`), or kubelet's
    /// 32-digit config hash for pods from a file or URL source.
    pub uid: String,
    pub qos: QosClass,
    pub driver: CgroupDriver,
}

impl PodCgroup {
    /// kubelet gives pods from manifests (static pods) a uid that is a 32-digit hash of the
    /// manifest, not a UUID: a strong hint, not proof (a manifest may set `metadata.uid`).
    pub fn uid_is_config_hash(&self) -> bool {
        self.uid.len() == 32 && self.uid.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// A container's cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ContainerCgroup {
    pub runtime: Runtime,
    pub id: ContainerId,
    /// The pod it belongs to, when it sits in kubelet's hierarchy.
    pub pod: Option<PodCgroup>,
    /// containerd namespace of a `/<namespace>/<id>` path (`k8s.io`, `moby`, `default`).
    pub containerd_namespace: Option<String>,
    /// The runtime's per-container monitor (CRI-O / Podman `conmon`), not the container.
    pub monitor: bool,
}

/// What a cgroup path says about its owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "owner", rename_all = "snake_case")]
pub enum CgroupOwner {
    Container(ContainerCgroup),
    /// A pod's own cgroup (no container below it in the path).
    Pod(PodCgroup),
    /// A systemd unit: `kubelet.service`, `containerd.service`, `postgresql@14-main.service`.
    HostService {
        unit: String,
        /// The unit name without instance and suffix: `kubelet`, `postgresql`.
        service: String,
    },
    /// Anything else on the host: the root, `init.scope`, user sessions, slices.
    Host { path: String },
}

/// Reads the owner of cgroup `path` (as in `/proc/<pid>/cgroup` or relative to a hierarchy's
/// mount point).
pub fn parse(path: &str) -> CgroupOwner {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let mut qos = None;
    let mut in_kubepods = false;
    let mut pod: Option<(usize, PodCgroup)> = None;
    let mut containers: Vec<(usize, ContainerCgroup)> = Vec::new();

    for (i, part) in parts.iter().enumerate() {
        // Unconverted systemd form: `kubepods-burstable-pod<uid>.slice:cri-containerd:<id>`.
        if let Some((slice, prefix, id)) = split_systemd_triple(part) {
            for slice_part in slice_chain(slice) {
                classify_kube(&slice_part, &mut in_kubepods, &mut qos, &mut pod, i);
            }
            if let (Some(runtime), Some(id)) = (runtime_of_prefix(prefix), ContainerId::parse_hex(id)) {
                containers.push((i, ContainerCgroup { runtime, id, pod: None, containerd_namespace: None, monitor: false }));
            }
            continue;
        }
        if classify_kube(part, &mut in_kubepods, &mut qos, &mut pod, i) {
            continue;
        }
        if let Some(container) = container_component(part, parts.get(i.wrapping_sub(1)).copied(), i, parts.len()) {
            containers.push((i, container));
        }
    }

    let pod = pod.map(|(i, mut p)| {
        p.qos = qos.unwrap_or(QosClass::Guaranteed);
        (i, p)
    });
    // The container of a pod is the first one below the pod; otherwise the innermost one
    // (`/docker/<outer>/docker/<inner>`).
    let container = match &pod {
        Some((pod_index, _)) => containers.into_iter().find(|(i, _)| i >= pod_index),
        None => containers.pop(),
    };
    match (container, pod) {
        (Some((_, mut container)), pod) => {
            container.pod = pod.map(|(_, p)| p);
            CgroupOwner::Container(container)
        }
        (None, Some((_, pod))) => CgroupOwner::Pod(pod),
        (None, None) => host_owner(&parts),
    }
}

/// Whether `path` is kubelet's pods root or a QoS class below it (`/kubepods`,
/// `/kubepods/burstable`, `/kubepods.slice/kubepods-besteffort.slice`): a cgroup whose limit
/// is the node's memory allocatable to pods, not one pod's or container's.
pub fn is_pods_root(path: &str) -> bool {
    if !matches!(parse(path), CgroupOwner::Host { .. }) {
        return false;
    }
    let (mut in_kubepods, mut qos, mut pod) = (false, None, None);
    for (i, part) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
        classify_kube(part, &mut in_kubepods, &mut qos, &mut pod, i);
    }
    in_kubepods && pod.is_none()
}

/// `slice:prefix:id` as runc's systemd driver receives it (seen under `containerd.service`).
fn split_systemd_triple(part: &str) -> Option<(&str, &str, &str)> {
    let mut it = part.splitn(3, ':');
    let (slice, prefix, id) = (it.next()?, it.next()?, it.next()?);
    slice.ends_with(".slice").then_some((slice, prefix, id))
}

/// `kubepods-burstable-pod<uid>.slice` stands for its ancestors too: `kubepods.slice`,
/// `kubepods-burstable.slice`, itself.
fn slice_chain(slice: &str) -> Vec<String> {
    let name = slice.trim_end_matches(".slice");
    let mut chain = Vec::new();
    let mut end = 0;
    for (i, c) in name.char_indices() {
        if c == '-' {
            chain.push(format!("{}.slice", &name[..i]));
        }
        end = i + c.len_utf8();
    }
    chain.push(format!("{}.slice", &name[..end]));
    chain
}

/// Recognises kubelet's levels: the root, QoS classes and pods. Returns true when `part` is one.
fn classify_kube(
    part: &str,
    in_kubepods: &mut bool,
    qos: &mut Option<QosClass>,
    pod: &mut Option<(usize, PodCgroup)>,
    index: usize,
) -> bool {
    // systemd driver: kubepods.slice, kubepods-besteffort.slice, kubepods-besteffort-pod<uid>.slice;
    // kind and others prefix the root (`kubelet-kubepods-...`).
    if let Some(name) = part.strip_suffix(".slice") {
        let Some(at) = name.find("kubepods") else {
            return false;
        };
        let rest = &name[at + "kubepods".len()..];
        *in_kubepods = true;
        let rest = if let Some(r) = rest.strip_prefix("-burstable") {
            *qos = Some(QosClass::Burstable);
            r
        } else if let Some(r) = rest.strip_prefix("-besteffort") {
            *qos = Some(QosClass::BestEffort);
            r
        } else {
            rest
        };
        if let Some(uid) = rest.strip_prefix("-pod")
            && let Some(uid) = pod_uid(&uid.replace('_', "-")) {
                *pod = Some((index, PodCgroup { uid, qos: QosClass::Guaranteed, driver: CgroupDriver::Systemd }));
            }
        return true;
    }
    // cgroupfs driver: kubepods/, burstable/, besteffort/, pod<uid>/.
    match part {
        "kubepods" => {
            *in_kubepods = true;
            true
        }
        "burstable" if *in_kubepods => {
            *qos = Some(QosClass::Burstable);
            true
        }
        "besteffort" if *in_kubepods => {
            *qos = Some(QosClass::BestEffort);
            true
        }
        _ => {
            if *in_kubepods && pod.is_none()
                && let Some(uid) = part.strip_prefix("pod").and_then(pod_uid) {
                    *pod = Some((index, PodCgroup { uid, qos: QosClass::Guaranteed, driver: CgroupDriver::Cgroupfs }));
                    return true;
                }
            false
        }
    }
}

/// A pod uid: a UUID (36 chars with dashes) or a 32-digit hash.
fn pod_uid(text: &str) -> Option<String> {
    let hex_or_dash = text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let shape = (text.len() == 36 && text.bytes().filter(|b| *b == b'-').count() == 4) || (text.len() == 32 && !text.contains('-'));
    (hex_or_dash && shape).then(|| text.to_ascii_lowercase())
}

fn runtime_of_prefix(prefix: &str) -> Option<Runtime> {
    match prefix {
        "cri-containerd" | "containerd" => Some(Runtime::Containerd),
        "crio" => Some(Runtime::CriO),
        "docker" => Some(Runtime::Docker),
        "libpod" => Some(Runtime::Podman),
        _ => None,
    }
}

/// Containerd namespaces whose `/<namespace>/<id>` paths we recognise at the top level.
const CONTAINERD_NAMESPACES: [&str; 4] = ["k8s.io", "moby", "default", "buildkit"];

fn container_component(part: &str, parent: Option<&str>, index: usize, depth: usize) -> Option<ContainerCgroup> {
    let container = |runtime, id, monitor| ContainerCgroup { runtime, id, pod: None, containerd_namespace: None, monitor };
    // systemd scopes: <prefix>-<id>.scope (CRI-O also writes them without the suffix).
    let name = part.strip_suffix(".scope").unwrap_or(part);
    for (prefix, runtime) in [
        ("cri-containerd-", Runtime::Containerd),
        ("containerd-", Runtime::Containerd),
        ("crio-conmon-", Runtime::CriO),
        ("crio-", Runtime::CriO),
        ("docker-", Runtime::Docker),
        ("libpod-conmon-", Runtime::Podman),
        ("libpod-", Runtime::Podman),
    ] {
        if let Some(id) = name.strip_prefix(prefix).and_then(ContainerId::parse_hex) {
            return Some(container(runtime, id, prefix.ends_with("conmon-")));
        }
    }
    // cgroupfs: a bare id; the parent names the runtime when it can.
    if let Some(id) = ContainerId::parse_hex(part) {
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            Some(ns) if index == 1 && CONTAINERD_NAMESPACES.contains(&ns) => {
                let mut c = container(Runtime::Containerd, id, false);
                c.containerd_namespace = Some(ns.to_string());
                return Some(c);
            }
            _ => Runtime::Unknown,
        };
        return Some(container(runtime, id, false));
    }
    // containerd's own namespace paths with client-chosen ids: exactly `/<namespace>/<id>`.
    if index == 1 && depth == 2
        && let Some(ns) = parent.filter(|ns| CONTAINERD_NAMESPACES.contains(ns)) {
            let id = ContainerId::parse_named(part)?;
            let mut c = container(Runtime::Containerd, id, false);
            c.containerd_namespace = Some(ns.to_string());
            return Some(c);
        }
    None
}

fn host_owner(parts: &[&str]) -> CgroupOwner {
    // The innermost service unit (a service may create sub-cgroups of its own).
    if let Some(unit) = parts.iter().rev().find(|p| p.ends_with(".service")) {
        let unit = unescape_unit(unit);
        let stem = unit.trim_end_matches(".service");
        let service = stem.split_once('@').map_or(stem, |(name, _)| name).to_string();
        return CgroupOwner::HostService { unit, service };
    }
    CgroupOwner::Host { path: format!("/{}", parts.iter().map(|p| unescape_unit(p)).collect::<Vec<_>>().join("/")) }
}

/// systemd escapes bytes in unit names as `\xNN` (`serial\x2dgetty`).
fn unescape_unit(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x')
            && let Some(byte) = name.get(i + 2..i + 4).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 4;
                continue;
            }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_roots_and_qos_levels_are_the_nodes_allocatable() {
        for path in ["/kubepods", "/kubepods/burstable", "/kubepods/besteffort", "/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice", "/kubelet.slice/kubelet-kubepods.slice"] {
            assert!(is_pods_root(path), "{path}");
        }
        for path in ["/", "/system.slice/containerd.service", "/kubepods/burstable/pod5b9c2a7e31d84f0c9a6e2b7d4c1f8e03", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podf9a04ecc_1875_491b_926c_d2f64757704e.slice", "/user.slice"] {
            assert!(!is_pods_root(path), "{path}");
        }
    }

    /// What a row of the table expects.
    #[derive(Debug)]
    enum Want {
        Container { runtime: Runtime, id: &'static str, pod: Option<(&'static str, QosClass, CgroupDriver)>, ns: Option<&'static str>, monitor: bool },
        Pod(&'static str, QosClass, CgroupDriver),
        Service(&'static str, &'static str),
        Host(&'static str),
    }

    use CgroupDriver::{Cgroupfs, Systemd};
    use QosClass::{BestEffort, Burstable, Guaranteed};
    use Runtime::*;

    const ID_A: &str = "17db96a24ae1e9dd57143e62b1cb0d2d35e693c65c774c7470e87b0572e07c1a";
    const ID_B: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
    const ID_C: &str = "49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59";
    const ID_D: &str = "73051af271105c07e1f493b34856a77e665e3b0b4fc72f76c807dfbffeb881bd";

    fn c(runtime: Runtime, id: &'static str, pod: Option<(&'static str, QosClass, CgroupDriver)>) -> Want {
        Want::Container { runtime, id, pod, ns: None, monitor: false }
    }

    /// Real path shapes: kubelet's cgroupfs and systemd layouts on v1 and v2, containerd, CRI-O,
    /// Docker/cri-dockerd, containerd namespace paths (`ctr`), kind's nested root, host units.
    fn table() -> Vec<(&'static str, String, Want)> {
        vec![
            ("v1 cgroupfs burstable (docker or containerd)",
             format!("/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/{ID_A}"),
             c(Unknown, ID_A, Some(("6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", Burstable, Cgroupfs)))),
            ("v1 cgroupfs besteffort",
             format!("/kubepods/besteffort/pod85adbef3-622f-4ef2-8f60-a8bdf3eb6c72/{ID_B}"),
             c(Unknown, ID_B, Some(("85adbef3-622f-4ef2-8f60-a8bdf3eb6c72", BestEffort, Cgroupfs)))),
            ("v1 cgroupfs guaranteed (no QoS level)",
             format!("/kubepods/poda38c12e8-255a-11e9-8cd9-0007cb0b2cc8/{ID_C}"),
             c(Unknown, ID_C, Some(("a38c12e8-255a-11e9-8cd9-0007cb0b2cc8", Guaranteed, Cgroupfs)))),
            ("cgroupfs static pod: uid is kubelet's config hash",
             format!("/kubepods/burstable/pod9729a196c4723b60ab401eaff722982d/{ID_D}"),
             c(Unknown, ID_D, Some(("9729a196c4723b60ab401eaff722982d", Burstable, Cgroupfs)))),
            ("sub-cgroup inside a container",
             format!("/kubepods/besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/{ID_A}/kube-proxy"),
             c(Unknown, ID_A, Some(("0d08203e-255a-11e9-8cd9-0007cb0b2cc8", BestEffort, Cgroupfs)))),
            ("cgroupfs CRI-O",
             format!("/kubepods/poda48c12e8-255a-11e9-8cd9-0007cb0b2cc8/crio-{ID_B}"),
             c(CriO, ID_B, Some(("a48c12e8-255a-11e9-8cd9-0007cb0b2cc8", Guaranteed, Cgroupfs)))),
            ("v2 systemd containerd burstable",
             format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podf9a04ecc_1875_491b_926c_d2f64757704e.slice/cri-containerd-{ID_B}.scope"),
             c(Containerd, ID_B, Some(("f9a04ecc-1875-491b-926c-d2f64757704e", Burstable, Systemd)))),
            ("systemd containerd guaranteed",
             format!("/kubepods.slice/kubepods-pod2f1a6e4c_9b3d_4a55_8c11_0a1b2c3d4e5f.slice/cri-containerd-{ID_C}.scope"),
             c(Containerd, ID_C, Some(("2f1a6e4c-9b3d-4a55-8c11-0a1b2c3d4e5f", Guaranteed, Systemd)))),
            ("systemd containerd static pod, scope suffix missing",
             format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3e61c214bc3ed9ff81e21474dd6cba17.slice/cri-containerd-{ID_D}"),
             c(Containerd, ID_D, Some(("3e61c214bc3ed9ff81e21474dd6cba17", Burstable, Systemd)))),
            ("systemd CRI-O",
             format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-{ID_C}.scope"),
             c(CriO, ID_C, Some(("2942c55e-c9cb-428a-93f4-eaf89c1f3ce0", Burstable, Systemd)))),
            ("systemd CRI-O on v2: the container's processes in a child",
             format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podea19ff5d_943a_4466_a07e_a71e9e50cc62.slice/crio-{ID_A}.scope/container"),
             c(CriO, ID_A, Some(("ea19ff5d-943a-4466-a07e-a71e9e50cc62", Burstable, Systemd)))),
            ("systemd CRI-O conmon",
             format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-conmon-{ID_B}.scope"),
             Want::Container { runtime: CriO, id: ID_B, pod: Some(("2942c55e-c9cb-428a-93f4-eaf89c1f3ce0", BestEffort, Systemd)), ns: None, monitor: true }),
            // CRI-O's names (cri-o internal/config/cgmgr): `crio-<id>` (`containerCgroupPath`,
            // `CrioPrefix = "crio"`) under the pod's cgroup with cgroupfs, a `crio-<id>.scope`
            // with systemd; conmon in `<parent>/crio-conmon-<id>` (cgroupfs_linux.go
            // `MoveConmonToCgroup`) or the unit `crio-conmon-<id>.scope` (systemd_linux.go), in
            // the pod (`conmon_cgroup = "pod"`) or a slice (`system.slice`, the systemd default).
            ("cgroupfs CRI-O burstable",
             format!("/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/crio-{ID_C}"),
             c(CriO, ID_C, Some(("6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", Burstable, Cgroupfs)))),
            ("cgroupfs CRI-O conmon in the pod",
             format!("/kubepods/besteffort/pod85adbef3-622f-4ef2-8f60-a8bdf3eb6c72/crio-conmon-{ID_D}"),
             Want::Container { runtime: CriO, id: ID_D, pod: Some(("85adbef3-622f-4ef2-8f60-a8bdf3eb6c72", BestEffort, Cgroupfs)), ns: None, monitor: true }),
            ("systemd CRI-O conmon in system.slice (no pod in the path)",
             format!("/system.slice/crio-conmon-{ID_A}.scope"),
             Want::Container { runtime: CriO, id: ID_A, pod: None, ns: None, monitor: true }),
            ("cgroupfs CRI-O outside kubelet's hierarchy (default parent /crio)",
             format!("/crio/crio-{ID_B}"),
             c(CriO, ID_B, None)),
            ("systemd cri-dockerd / dockershim",
             format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/docker-{ID_D}.scope"),
             c(Docker, ID_D, Some(("8712f785-1a3e-41ec-a00b-e2dcc77431cb", BestEffort, Systemd)))),
            ("kind: kubelet's root under kubelet.slice",
             format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod5c1b8bd2_0a4f_4c62_9d1e_7f3d1c2b9a10.slice/cri-containerd-{ID_A}.scope"),
             c(Containerd, ID_A, Some(("5c1b8bd2-0a4f-4c62-9d1e-7f3d1c2b9a10", BestEffort, Systemd)))),
            ("kind v1: cgroupfs kubepods inside the node's docker container",
             format!("/docker/{ID_D}/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/{ID_A}"),
             c(Unknown, ID_A, Some(("6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", Burstable, Cgroupfs)))),
            ("v1 unconverted systemd path under containerd.service",
             format!("/system.slice/containerd.service/kubepods-burstable-pod4ed02c0b_0df8_4d14_a30e_fd589ee4143a.slice:cri-containerd:{ID_B}"),
             c(Containerd, ID_B, Some(("4ed02c0b-0df8-4d14-a30e-fd589ee4143a", Burstable, Systemd)))),
            ("pod-level cgroup (systemd)",
             "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice".into(),
             Want::Pod("8712f785-1a3e-41ec-a00b-e2dcc77431cb", BestEffort, Systemd)),
            ("pod-level cgroup (cgroupfs)",
             "/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/".into(),
             Want::Pod("6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", Burstable, Cgroupfs)),
            ("containerd namespace path (ctr -n k8s.io run)",
             "/k8s.io/oom-test-1".into(),
             Want::Container { runtime: Containerd, id: "oom-test-1", pod: None, ns: Some("k8s.io"), monitor: false }),
            ("containerd namespace path with a generated id",
             format!("/default/{ID_C}"),
             Want::Container { runtime: Containerd, id: ID_C, pod: None, ns: Some("default"), monitor: false }),
            ("plain docker, cgroupfs", format!("/docker/{ID_A}"), c(Docker, ID_A, None)),
            ("plain docker, systemd", format!("/system.slice/docker-{ID_B}.scope"), c(Docker, ID_B, None)),
            ("podman", format!("/machine.slice/libpod-{ID_C}.scope"), c(Podman, ID_C, None)),
            ("kubelet", "/system.slice/kubelet.service".into(), Want::Service("kubelet.service", "kubelet")),
            ("containerd and its shims", "/system.slice/containerd.service".into(), Want::Service("containerd.service", "containerd")),
            ("k0s/Talos style runtime slice", "/runtime.slice/kubelet.service".into(), Want::Service("kubelet.service", "kubelet")),
            ("templated unit", "/system.slice/system-postgresql.slice/postgresql@9.4-main.service".into(), Want::Service("postgresql@9.4-main.service", "postgresql")),
            ("escaped unit name", "/system.slice/system-serial\\x2dgetty.slice/serial-getty@ttyS0.service".into(), Want::Service("serial-getty@ttyS0.service", "serial-getty")),
            ("kOps bootstrap unit", "/system.slice/kops-configuration.service".into(), Want::Service("kops-configuration.service", "kops-configuration")),
            ("user session", "/user.slice/user-1000.slice/session-3.scope".into(), Want::Host("/user.slice/user-1000.slice/session-3.scope")),
            ("systemd itself", "/init.scope".into(), Want::Host("/init.scope")),
            ("the root", "/".into(), Want::Host("/")),
            ("a test's own cgroup is not a container", "/nrm-test-1234-0".into(), Want::Host("/nrm-test-1234-0")),
            ("a word that looks like a namespace is not enough", "/k8s.io".into(), Want::Host("/k8s.io")),
            ("short hex is not a container id", "/docker/17db96a24ae1".into(), Want::Host("/docker/17db96a24ae1")),
        ]
    }

    #[test]
    fn real_cgroup_paths() {
        let rows = table();
        assert!(rows.len() >= 20);
        for (what, path, want) in rows {
            let got = parse(&path);
            let ok = match (&want, &got) {
                (Want::Container { runtime, id, pod, ns, monitor }, CgroupOwner::Container(c)) => {
                    c.runtime == *runtime
                        && c.id.as_str() == *id
                        && c.pod.as_ref().map(|p| (p.uid.as_str(), p.qos, p.driver)) == *pod
                        && c.containerd_namespace.as_deref() == *ns
                        && c.monitor == *monitor
                }
                (Want::Pod(uid, qos, driver), CgroupOwner::Pod(p)) => p.uid == *uid && p.qos == *qos && p.driver == *driver,
                (Want::Service(u, s), CgroupOwner::HostService { unit, service }) => unit == u && service == s,
                (Want::Host(p), CgroupOwner::Host { path }) => path == p,
                _ => false,
            };
            assert!(ok, "{what}: {path}\n  want {want:?}\n  got  {got:?}");
        }
    }

    #[test]
    fn static_pod_uid_hint() {
        let CgroupOwner::Container(c) = parse(&format!("/kubepods/burstable/pod9729a196c4723b60ab401eaff722982d/{ID_D}")) else {
            panic!("not a container")
        };
        assert!(c.pod.as_ref().is_some_and(PodCgroup::uid_is_config_hash));
        let CgroupOwner::Container(c) = parse(&format!("/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/{ID_A}")) else {
            panic!("not a container")
        };
        assert!(!c.pod.as_ref().is_some_and(PodCgroup::uid_is_config_hash));
    }

    #[test]
    fn garbage_never_panics() {
        for path in ["", "//", "\\x", "\\x2", "/a\\xzz", "/kubepods/pod", "/kubepods.slice/kubepods-pod.slice", ":::", "/x.slice:y:z", "/é\\xc3"] {
            let _ = parse(path);
        }
    }
}
