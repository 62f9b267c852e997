//! What the node's CRI sockets answered: per socket, whether it exists, the answer to a
//! `Version` call on `runtime.v1` and on `runtime.v1alpha2`, the images in the runtime's store
//! and the runtime's effective CRI config (containerd's `Status` verbose `info["config"]`), and
//! its answer to `RuntimeConfig` (the cgroup driver it tells kubelet to use, KEP-4033).
//!
//! This is the seam between the audit and the sockets: [`ask`] asks them through
//! `node::cri` (a `Version` call per API version, then `ListImages` and verbose `Status` on the
//! API it serves, and `RuntimeConfig` when it serves `runtime.v1`), every call bounded by a timeout; tests and `check --cri-replay FILE` supply
//! a recorded answer (JSON of [`CriFacts`]) instead. Rules only ever see this type. Sockets are
//! asked one after another: they are a handful of known paths, and absent ones cost nothing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    cri::{self, CriApi, CriError, RuntimeVersion},
    host_root::HostRoot,
};

/// Answers of every socket looked at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CriFacts {
    pub sockets: Vec<SocketFacts>,
}

impl CriFacts {
    pub fn socket(&self, endpoint: &Path) -> Option<&SocketFacts> {
        self.sockets.iter().find(|s| s.endpoint == endpoint)
    }

    /// Reads a recorded answer (`--cri-replay`).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// One socket and what it answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SocketFacts {
    /// Host path, e.g. `/run/containerd/containerd.sock`.
    pub endpoint: PathBuf,
    pub exists: bool,
    pub v1: ApiAnswer,
    pub v1alpha2: ApiAnswer,
    /// Image references (repo tags and digests) in the runtime's store, if listed.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// The runtime's effective CRI config (containerd: `Status` verbose `info["config"]`).
    #[serde(default)]
    pub runtime_config: Option<serde_json::Value>,
    /// The answer to `RuntimeConfig` (absent in recordings made before it was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_runtime_config: Option<RuntimeConfigAnswer>,
}

/// What a runtime answered to `RuntimeConfig`, the call kubelet makes at start-up to take its
/// cgroup driver from the runtime (`KubeletCgroupDriverFromCRI`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum RuntimeConfigAnswer {
    /// `linux.cgroup_driver`: `systemd` or `cgroupfs`.
    CgroupDriver { cgroup_driver: String },
    /// An answer without a `linux` part: kubelet keeps its own setting.
    NoLinuxConfig,
    /// gRPC Unimplemented: the runtime predates the call; kubelet keeps its own setting.
    Unimplemented { message: String },
    /// Any other failure (kubelet retries, then fails to start on it).
    Failed { message: String },
}

impl SocketFacts {
    pub fn absent(endpoint: PathBuf) -> Self {
        Self {
            endpoint,
            exists: false,
            v1: ApiAnswer::NotAsked,
            v1alpha2: ApiAnswer::NotAsked,
            images: None,
            runtime_config: None,
            cri_runtime_config: None,
        }
    }

    /// The cgroup driver the runtime tells kubelet to use (its `RuntimeConfig` answer).
    pub fn runtime_config_driver(&self) -> Option<&str> {
        match &self.cri_runtime_config {
            Some(RuntimeConfigAnswer::CgroupDriver { cgroup_driver }) => Some(cgroup_driver),
            _ => None,
        }
    }

    /// The cgroup driver the runtime reports using, and which call said so: its
    /// `RuntimeConfig` answer, else containerd's `SystemdCgroup` in its `Status` config.
    pub fn reported_cgroup_driver(&self) -> Option<(&str, &'static str)> {
        if let Some(driver) = self.runtime_config_driver() {
            return Some((driver, "CRI RuntimeConfig"));
        }
        self.systemd_cgroup().map(|systemd| (if systemd { "systemd" } else { "cgroupfs" }, "CRI Status config"))
    }

    /// The runtime's own answer from whichever API it serves (v1 first).
    pub fn runtime(&self) -> Option<&RuntimeIdentity> {
        match (&self.v1, &self.v1alpha2) {
            (ApiAnswer::Served(r), _) | (_, ApiAnswer::Served(r)) => Some(r),
            _ => None,
        }
    }

    /// Whether anything answered at the gRPC level (Served or Unimplemented).
    pub fn answers(&self) -> bool {
        !matches!(self.v1, ApiAnswer::NoAnswer { .. } | ApiAnswer::NotAsked)
            || !matches!(self.v1alpha2, ApiAnswer::NoAnswer { .. } | ApiAnswer::NotAsked)
    }

    /// `SystemdCgroup` of the default runtime, as the runtime itself reports it.
    pub fn systemd_cgroup(&self) -> Option<bool> {
        let config = self.runtime_config.as_ref()?;
        let containerd = config.get("containerd")?;
        let name = containerd.get("defaultRuntimeName").and_then(|v| v.as_str()).unwrap_or("runc");
        let options = containerd.get("runtimes")?.get(name)?.get("options")?;
        options.get("SystemdCgroup").and_then(|v| v.as_bool()).or(Some(false))
    }

    /// The sandbox image the runtime reports using.
    pub fn sandbox_image(&self) -> Option<&str> {
        let config = self.runtime_config.as_ref()?;
        config.get("sandboxImage").and_then(|v| v.as_str())
    }
}

/// The runtime's answer to `Version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeIdentity {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// What one API version's `Version` call gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum ApiAnswer {
    Served(RuntimeIdentity),
    /// gRPC Unimplemented: the socket answers but not this API (`unknown service runtime.v1...`).
    Unimplemented { message: String },
    /// No gRPC answer: refused, timed out, not a gRPC server.
    NoAnswer { message: String },
    NotAsked,
}

/// The answer, its message naming the socket by its host path (it was dialled through the
/// descriptor held open, `/proc/self/fd/N`).
fn answer(result: Result<RuntimeVersion, CriError>, dialled: &Path, endpoint: &Path) -> ApiAnswer {
    let message = |err: CriError| err.to_string().replace(&dialled.display().to_string(), &endpoint.display().to_string());
    match result {
        Ok(v) => ApiAnswer::Served(RuntimeIdentity {
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        }),
        Err(err) if err.is_unimplemented() => ApiAnswer::Unimplemented { message: message(err) },
        Err(err) => ApiAnswer::NoAnswer { message: message(err) },
    }
}

async fn probe_one(root: &HostRoot, endpoint: PathBuf, timeout: Duration) -> SocketFacts {
    // The socket found inside the root, held while it is asked.
    let Some(socket) = root.socket(&endpoint) else {
        return SocketFacts::absent(endpoint);
    };
    let in_root = socket.path();
    let probe = cri::probe_socket(&in_root, timeout).await;
    let api = probe.preferred_api();
    let (v1, v1alpha2) = (answer(probe.v1, &in_root, &endpoint), answer(probe.v1alpha2, &in_root, &endpoint));
    let (images, runtime_config) = match api {
        Some(api) => {
            let images = cri::list_images(&in_root, api, timeout).await.ok().map(|images| {
                images.into_iter().flat_map(|i| i.repo_tags).collect::<Vec<String>>()
            });
            let config = cri::runtime_status_config(&in_root, api, timeout).await.ok();
            (images, config)
        }
        None => (None, None),
    };
    // Kubelet asks on runtime.v1 only (the call does not exist in v1alpha2).
    let cri_runtime_config = match api {
        Some(CriApi::V1) => Some(match cri::runtime_config_cgroup_driver(&in_root, timeout).await {
            Ok(Some(driver)) => RuntimeConfigAnswer::CgroupDriver { cgroup_driver: driver.to_string() },
            Ok(None) => RuntimeConfigAnswer::NoLinuxConfig,
            Err(err) if err.is_unimplemented() => RuntimeConfigAnswer::Unimplemented { message: err.to_string() },
            Err(err) => RuntimeConfigAnswer::Failed { message: err.to_string() },
        }),
        _ => None,
    };
    SocketFacts { endpoint, exists: true, v1, v1alpha2, images, runtime_config, cri_runtime_config }
}

/// Asks every candidate socket that exists; absent ones are recorded as absent.
pub async fn ask(root: &HostRoot, candidates: &[PathBuf], timeout: Duration) -> CriFacts {
    let mut sockets = Vec::with_capacity(candidates.len());
    for endpoint in candidates {
        sockets.push(probe_one(root, endpoint.clone(), timeout).await);
    }
    CriFacts { sockets }
}
