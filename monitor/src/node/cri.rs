//! A minimal CRI client over the runtime's unix socket (gRPC, `runtime.v1` with a
//! `runtime.v1alpha2` fallback), for two users:
//!
//! - the configuration audit asks what each socket serves ([`probe_socket`]: a `Version` call
//!   per API version, telling "not a gRPC server / nobody there" apart from "answers, but not
//!   this API" ([`CriError::Unimplemented`])), the images in the store ([`list_images`]) and the
//!   runtime's effective CRI config ([`runtime_status_config`]) and the cgroup driver it tells
//!   kubelet to use ([`runtime_config_cgroup_driver`], the `RuntimeConfig` call of KEP-4033);
//! - attribution maps container ids to pods ([`list_workloads`]: every sandbox and container
//!   with the labels and annotations kubelet set on them).
//!
//! Every call is bounded by a timeout and returns a typed [`CriError`]; nothing here retries,
//! caches or changes the runtime's state (the end-to-end tests drive the runtime with the raw
//! clients on a channel from [`connect`]).

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use serde::Serialize;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI API versions a runtime may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum CriApi {
    /// `runtime.v1` (kubelet >= 1.26 requires it).
    V1,
    /// `runtime.v1alpha2` (containerd <= 1.7, dockershim).
    V1Alpha2,
}

impl CriApi {
    /// The gRPC package name, as runtimes print it in errors.
    pub fn package(self) -> &'static str {
        match self {
            CriApi::V1 => "runtime.v1",
            CriApi::V1Alpha2 => "runtime.v1alpha2",
        }
    }
}

/// What went wrong talking to a CRI socket.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CriError {
    /// Nothing to connect to, connection refused, or not an HTTP/2 server.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: PathBuf, message: String },
    /// The socket answers gRPC but does not serve this service (`unknown service
    /// runtime.v1.RuntimeService`).
    #[error("{endpoint} does not implement {api}: {message}")]
    Unimplemented { endpoint: PathBuf, api: &'static str, message: String },
    /// Any other gRPC status.
    #[error("{endpoint}: {call} failed: {code}: {message}")]
    Status { endpoint: PathBuf, call: &'static str, code: String, message: String },
    /// No answer within the timeout.
    #[error("{endpoint}: {call} timed out after {after:?}")]
    Timeout { endpoint: PathBuf, call: &'static str, after: Duration },
    /// An answer that does not say what it should (e.g. a `Status` config that is not JSON).
    #[error("{endpoint}: unexpected answer to {call}: {message}")]
    Malformed { endpoint: PathBuf, call: &'static str, message: String },
}

impl CriError {
    /// True for gRPC `Unimplemented`: the runtime answers, but not this API version.
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, CriError::Unimplemented { .. })
    }

    /// True when nobody answered at the gRPC level (connect failure or timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CriError::Connect { .. } | CriError::Timeout { .. })
    }
}

/// The runtime's answer to `Version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeVersion {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// What one socket answered to a `Version` call on each API version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketProbe {
    pub endpoint: PathBuf,
    /// A socket file exists at `endpoint`.
    pub exists: bool,
    pub v1: Result<RuntimeVersion, CriError>,
    pub v1alpha2: Result<RuntimeVersion, CriError>,
}

impl SocketProbe {
    /// The API to use for further calls: v1 when served, else v1alpha2 when served.
    pub fn preferred_api(&self) -> Option<CriApi> {
        if self.v1.is_ok() {
            Some(CriApi::V1)
        } else if self.v1alpha2.is_ok() {
            Some(CriApi::V1Alpha2)
        } else {
            None
        }
    }
}

/// An image in the runtime's store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
}

/// A pod sandbox as the runtime knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// A container as the runtime knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    /// CRI metadata name (kubelet uses the pod spec's container name).
    pub name: String,
    pub attempt: u32,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// Every sandbox and container the runtime has (running or not).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workloads {
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Container>,
}

/// Opens a gRPC channel on the unix socket `path` (connecting within `timeout`).
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, CriError> {
    let socket = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://[::1]:50051").connect_timeout(timeout);
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
    }));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(CriError::Connect { endpoint: path.to_path_buf(), message: error_chain(&err) }),
        Err(_) => Err(CriError::Timeout { endpoint: path.to_path_buf(), call: "connect", after: timeout }),
    }
}

/// Asks `path` for its `Version` on both API versions.
pub async fn probe_socket(path: &Path, timeout: Duration) -> SocketProbe {
    let exists = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false);
    let (v1, v1alpha2) = tokio::join!(version(path, CriApi::V1, timeout), version(path, CriApi::V1Alpha2, timeout));
    SocketProbe { endpoint: path.to_path_buf(), exists, v1, v1alpha2 }
}

/// The `Version` call on one API version.
pub async fn version(path: &Path, api: CriApi, timeout: Duration) -> Result<RuntimeVersion, CriError> {
    let channel = connect(path, timeout).await?;
    match api {
        CriApi::V1 => call(path, api, "Version", timeout, v1_calls::version(channel)).await,
        CriApi::V1Alpha2 => call(path, api, "Version", timeout, v1alpha2_calls::version(channel)).await,
    }
}

/// The images in the runtime's store (`ImageService.ListImages`).
pub async fn list_images(path: &Path, api: CriApi, timeout: Duration) -> Result<Vec<Image>, CriError> {
    let channel = connect(path, timeout).await?;
    match api {
        CriApi::V1 => call(path, api, "ListImages", timeout, v1_calls::list_images(channel)).await,
        CriApi::V1Alpha2 => call(path, api, "ListImages", timeout, v1alpha2_calls::list_images(channel)).await,
    }
}

/// The runtime's effective CRI configuration: `Status` with `verbose=true`, `info["config"]`
/// parsed as JSON (containerd reports it there; a runtime that reports no config gives
/// `Value::Null`).
pub async fn runtime_status_config(path: &Path, api: CriApi, timeout: Duration) -> Result<serde_json::Value, CriError> {
    let channel = connect(path, timeout).await?;
    let info = match api {
        CriApi::V1 => call(path, api, "Status", timeout, v1_calls::status_info(channel)).await?,
        CriApi::V1Alpha2 => call(path, api, "Status", timeout, v1alpha2_calls::status_info(channel)).await?,
    };
    match info.get("config") {
        None => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(text).map_err(|err| CriError::Malformed {
            endpoint: path.to_path_buf(),
            call: "Status",
            message: format!("info[\"config\"] is not JSON: {err}"),
        }),
    }
}

/// The cgroup driver the runtime tells kubelet to use: `RuntimeService.RuntimeConfig`
/// (`runtime.v1` only; KEP-4033), `linux.cgroup_driver` as `systemd` or `cgroupfs`. `Ok(None)`:
/// the answer has no `linux` part (kubelet then keeps its own setting). Runtimes that predate
/// the call (containerd < 2.0, CRI-O < 1.28, cri-dockerd < 0.3.17) answer
/// [`CriError::Unimplemented`].
pub async fn runtime_config_cgroup_driver(path: &Path, timeout: Duration) -> Result<Option<&'static str>, CriError> {
    let channel = connect(path, timeout).await?;
    let answer = call(path, CriApi::V1, "RuntimeConfig", timeout, async move {
        let mut client = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel);
        Ok(client.runtime_config(k8s_cri::v1::RuntimeConfigRequest {}).await?.into_inner())
    })
    .await?;
    let Some(linux) = answer.linux else { return Ok(None) };
    match k8s_cri::v1::CgroupDriver::try_from(linux.cgroup_driver) {
        Ok(k8s_cri::v1::CgroupDriver::Systemd) => Ok(Some("systemd")),
        Ok(k8s_cri::v1::CgroupDriver::Cgroupfs) => Ok(Some("cgroupfs")),
        Err(_) => Err(CriError::Malformed {
            endpoint: path.to_path_buf(),
            call: "RuntimeConfig",
            message: format!("unknown cgroup driver {}", linux.cgroup_driver),
        }),
    }
}

/// Every pod sandbox and container (`ListPodSandbox` + `ListContainers`, no filter).
pub async fn list_workloads(path: &Path, api: CriApi, timeout: Duration) -> Result<Workloads, CriError> {
    let channel = connect(path, timeout).await?;
    match api {
        CriApi::V1 => call(path, api, "ListPodSandbox/ListContainers", timeout, v1_calls::workloads(channel)).await,
        CriApi::V1Alpha2 => {
            call(path, api, "ListPodSandbox/ListContainers", timeout, v1alpha2_calls::workloads(channel)).await
        }
    }
}

/// Runs one call under `timeout`, mapping its status to a [`CriError`].
async fn call<T>(
    path: &Path,
    api: CriApi,
    name: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, CriError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) => Err(status_error(path, api, name, &status)),
        Err(_) => Err(CriError::Timeout { endpoint: path.to_path_buf(), call: name, after: timeout }),
    }
}

fn status_error(path: &Path, api: CriApi, call: &'static str, status: &tonic::Status) -> CriError {
    let endpoint = path.to_path_buf();
    let message = status.message().to_string();
    match status.code() {
        tonic::Code::Unimplemented => CriError::Unimplemented { endpoint, api: api.package(), message },
        // tonic reports transport failures of a lazily dialled channel as Unavailable/Unknown
        // with the io error as source; keep the whole chain so "connection refused" shows.
        tonic::Code::Unavailable if std::error::Error::source(status).is_some() => {
            CriError::Connect { endpoint, message: error_chain(status) }
        }
        code => CriError::Status { endpoint, call, code: format!("{code:?}"), message },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The same calls for each API version: the generated types differ only by module.
macro_rules! api_calls {
    ($name:ident, $proto:path) => {
        mod $name {
            use std::collections::HashMap;

            use tonic::transport::Channel;
            use $proto as proto;

            use super::{Container, Image, RuntimeVersion, Sandbox, Workloads};

            pub(super) async fn version(channel: Channel) -> Result<RuntimeVersion, tonic::Status> {
                let mut client = proto::runtime_service_client::RuntimeServiceClient::new(channel);
                let answer = client.version(proto::VersionRequest { version: String::new() }).await?.into_inner();
                Ok(RuntimeVersion {
                    runtime_name: answer.runtime_name,
                    runtime_version: answer.runtime_version,
                    runtime_api_version: answer.runtime_api_version,
                })
            }

            pub(super) async fn list_images(channel: Channel) -> Result<Vec<Image>, tonic::Status> {
                let mut client = proto::image_service_client::ImageServiceClient::new(channel);
                let answer = client.list_images(proto::ListImagesRequest { filter: None }).await?.into_inner();
                Ok(answer.images.into_iter().map(|i| Image { id: i.id, repo_tags: i.repo_tags }).collect())
            }

            pub(super) async fn status_info(channel: Channel) -> Result<HashMap<String, String>, tonic::Status> {
                let mut client = proto::runtime_service_client::RuntimeServiceClient::new(channel);
                Ok(client.status(proto::StatusRequest { verbose: true }).await?.into_inner().info)
            }

            pub(super) async fn workloads(channel: Channel) -> Result<Workloads, tonic::Status> {
                let mut client = proto::runtime_service_client::RuntimeServiceClient::new(channel);
                let sandboxes = client.list_pod_sandbox(proto::ListPodSandboxRequest { filter: None }).await?.into_inner();
                let containers = client.list_containers(proto::ListContainersRequest { filter: None }).await?.into_inner();
                Ok(Workloads {
                    sandboxes: sandboxes
                        .items
                        .into_iter()
                        .map(|s| {
                            let meta = s.metadata.unwrap_or_default();
                            Sandbox {
                                id: s.id,
                                name: meta.name,
                                namespace: meta.namespace,
                                uid: meta.uid,
                                labels: s.labels,
                                annotations: s.annotations,
                            }
                        })
                        .collect(),
                    containers: containers
                        .containers
                        .into_iter()
                        .map(|c| {
                            let meta = c.metadata.unwrap_or_default();
                            Container {
                                id: c.id,
                                sandbox_id: c.pod_sandbox_id,
                                name: meta.name,
                                attempt: meta.attempt,
                                labels: c.labels,
                                annotations: c.annotations,
                            }
                        })
                        .collect(),
                })
            }
        }
    };
}

api_calls!(v1_calls, k8s_cri::v1);
api_calls!(v1alpha2_calls, k8s_cri::v1alpha2);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_on_both_apis() {
        let dir = std::env::temp_dir().join(format!("nrm-cri-missing-{}", std::process::id()));
        let probe = probe_socket(&dir.join("nothing.sock"), Duration::from_millis(500)).await;
        assert!(!probe.exists);
        for answer in [&probe.v1, &probe.v1alpha2] {
            let err = answer.as_ref().expect_err("nothing listens there");
            assert!(err.is_unreachable(), "{err:?}");
            assert!(!err.is_unimplemented());
        }
        assert_eq!(probe.preferred_api(), None);
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out() {
        let dir = std::env::temp_dir().join(format!("nrm-cri-silent-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("silent.sock");
        let _ = std::fs::remove_file(&path);
        // Accepts connections (the kernel's backlog) but never speaks HTTP/2.
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind a test socket");
        let probe = probe_socket(&path, Duration::from_millis(300)).await;
        assert!(probe.exists);
        let err = probe.v1.expect_err("nobody speaks gRPC there");
        assert!(err.is_unreachable(), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unimplemented_is_told_apart_from_other_statuses() {
        let path = Path::new("/run/dockershim.sock");
        let status = tonic::Status::unimplemented("unknown service runtime.v1.RuntimeService");
        let err = status_error(path, CriApi::V1, "Version", &status);
        assert!(err.is_unimplemented());
        assert!(err.to_string().contains("unknown service runtime.v1.RuntimeService"), "{err}");
        assert!(err.to_string().contains("runtime.v1"), "{err}");
        let other = status_error(path, CriApi::V1, "Version", &tonic::Status::internal("boom"));
        assert!(!other.is_unimplemented() && !other.is_unreachable(), "{other:?}");
    }
}
