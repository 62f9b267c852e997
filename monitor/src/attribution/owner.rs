//! Who owns an event: the [`Owner`] of a cgroup (a container with its pod, a pod's own cgroup,
//! a host systemd unit, the host, or unknown and why), the [`CgroupKey`] it is cached under, and
//! the names made of it once per cgroup: its stable key, the text an operator reads, and its
//! metric labels.
//!
//! These are plain values. Nothing here reads the node or finds an owner (that is the
//! [`resolver`](super::resolver)), holds events (the stage in [`attribution`](super)) or counts
//! anything (the [`metrics`](super::metrics)).

use std::{path::PathBuf, sync::Arc};

use serde::Serialize;

use crate::node::cgroup_path::{ContainerId, Runtime};

/// Where an event's task lives: the kernel's cgroup v2 id and v1 memory cgroup id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupKey {
    pub cgroup_id: u64,
    pub memcg_id: u64,
}

impl CgroupKey {
    pub fn of(task: &crate::events::Task) -> Self {
        Self {
            cgroup_id: task.cgroup_id,
            memcg_id: task.memcg_id,
        }
    }
}

/// Whose an event is. Built once per cgroup and shared by its events, so the names the
/// detectors use per event are made here, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub kind: OwnerKind,
    /// The cgroup path the owner was read from (v2 path, else the v1 memory path).
    pub cgroup_path: Option<String>,
    #[serde(skip)]
    key: Arc<str>,
    #[serde(skip)]
    display: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OwnerKind {
    Container(ContainerOwner),
    /// A process in a pod's own cgroup, not in one of its containers.
    Pod(PodRef),
    /// A process of a systemd unit (`kubelet.service`, `containerd.service`).
    HostService {
        unit: String,
        service: String,
    },
    /// Any other host process.
    Host,
    /// Not known: the cgroup was gone before it could be read, or nothing answered in time.
    Unknown {
        reason: UnknownReason,
    },
}

/// Why an event's owner is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReason {
    /// The cgroup was removed before it was read (a short-lived process).
    CgroupGone,
    /// Nothing named it within the hold time.
    NotResolved,
}

impl UnknownReason {
    /// The `reason` label of `attribution_misses_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CgroupGone => "cgroup_gone",
            Self::NotResolved => "not_resolved",
        }
    }
}

impl std::fmt::Display for UnknownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CgroupGone => "cgroup gone before it was read",
            Self::NotResolved => "not resolved in time",
        })
    }
}

/// A container and, when known, its pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerOwner {
    pub runtime: Runtime,
    pub id: ContainerId,
    /// The Kubernetes container name (`io.kubernetes.container.name`); `POD` for a sandbox.
    pub name: Option<String>,
    pub pod: Option<PodRef>,
    /// The pod's sandbox (pause) itself rather than one of its containers.
    pub sandbox: bool,
    /// Restart count as kubelet keeps it (CRI metadata attempt).
    pub attempt: Option<u32>,
}

/// A pod as kubelet names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// A static pod (kubelet's `kubernetes.io/config.source` is `file` or `http`).
    pub static_pod: bool,
    /// The manifest of a static pod, when found in the static pod directory.
    pub manifest: Option<PathBuf>,
}

impl Owner {
    pub fn new(kind: OwnerKind, cgroup_path: Option<String>) -> Self {
        let key = stable_key(&kind).into();
        let display = display(&kind).into();
        Self {
            kind,
            cgroup_path,
            key,
            display,
        }
    }

    pub fn unknown(reason: UnknownReason) -> Self {
        Self::new(OwnerKind::Unknown { reason }, None)
    }

    pub fn container(&self) -> Option<&ContainerOwner> {
        match &self.kind {
            OwnerKind::Container(c) => Some(c),
            _ => None,
        }
    }

    pub fn pod(&self) -> Option<&PodRef> {
        match &self.kind {
            OwnerKind::Container(c) => c.pod.as_ref(),
            OwnerKind::Pod(p) => Some(p),
            _ => None,
        }
    }

    /// Fully named: a container with its pod and name, or a host owner.
    pub fn is_complete(&self) -> bool {
        match &self.kind {
            OwnerKind::Container(c) => {
                c.pod.as_ref().is_some_and(|p| !p.name.is_empty()) && c.name.is_some()
            }
            OwnerKind::Pod(p) => !p.name.is_empty(),
            OwnerKind::HostService { .. } | OwnerKind::Host => true,
            OwnerKind::Unknown { .. } => false,
        }
    }

    /// A key stable across container re-creations and process restarts:
    /// `pod:<ns>/<pod>/<container>`, `container:<id>`, `service:<unit>`, `host`, `unknown`.
    pub fn stable_key(&self) -> &Arc<str> {
        &self.key
    }

    /// What an operator calls it: `kube-system/kube-apiserver-node1 (container kube-apiserver,
    /// static pod)`, `host service kubelet.service`.
    pub fn display(&self) -> &Arc<str> {
        &self.display
    }

    /// Metric labels: namespace, pod, container, service (empty when not applicable).
    pub fn labels(&self) -> OwnerLabelValues {
        match &self.kind {
            OwnerKind::Container(c) => OwnerLabelValues {
                namespace: c
                    .pod
                    .as_ref()
                    .map(|p| p.namespace.clone())
                    .unwrap_or_default(),
                pod: c.pod.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                container: c.name.clone().unwrap_or_else(|| c.id.short().to_string()),
                service: String::new(),
            },
            OwnerKind::Pod(p) => OwnerLabelValues {
                namespace: p.namespace.clone(),
                pod: p.name.clone(),
                ..Default::default()
            },
            OwnerKind::HostService { unit, .. } => OwnerLabelValues {
                service: unit.clone(),
                ..Default::default()
            },
            OwnerKind::Host => OwnerLabelValues {
                service: "host".into(),
                ..Default::default()
            },
            OwnerKind::Unknown { .. } => OwnerLabelValues {
                service: "unknown".into(),
                ..Default::default()
            },
        }
    }
}

/// See [`Owner::stable_key`].
fn stable_key(kind: &OwnerKind) -> String {
    match kind {
        OwnerKind::Container(c) => match (&c.pod, &c.name) {
            (Some(p), Some(name)) => format!("pod:{}/{}/{}", p.namespace, p.name, name),
            _ => format!("container:{}", c.id),
        },
        OwnerKind::Pod(p) => format!("pod:{}/{}", p.namespace, p.name),
        OwnerKind::HostService { unit, .. } => format!("service:{unit}"),
        OwnerKind::Host => "host".into(),
        OwnerKind::Unknown { .. } => "unknown".into(),
    }
}

/// See [`Owner::display`].
fn display(kind: &OwnerKind) -> String {
    match kind {
        OwnerKind::Container(c) => {
            let name = c.name.as_deref().unwrap_or("?");
            match &c.pod {
                Some(p) if !p.name.is_empty() => format!(
                    "{}/{} (container {name}{})",
                    p.namespace,
                    p.name,
                    if p.static_pod { ", static pod" } else { "" }
                ),
                _ => format!("{} container {} ({name})", c.runtime.as_str(), c.id.short()),
            }
        }
        OwnerKind::Pod(p) => format!("{}/{} (pod cgroup)", p.namespace, p.name),
        OwnerKind::HostService { unit, .. } => format!("host service {unit}"),
        OwnerKind::Host => "host".into(),
        OwnerKind::Unknown { reason } => format!("unknown ({reason})"),
    }
}

/// The label values of an owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OwnerLabelValues {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub service: String,
}
