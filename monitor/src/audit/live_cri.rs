//! The live path of [`CriFacts`]: asks each CRI socket present under the host root (a
//! `Version` call per API version, then `ListImages` and verbose `Status` on the API it
//! serves) through `node::cri`, every call bounded by a timeout. Sockets are asked one after
//! another: they are a handful of known paths, and absent ones cost nothing.

use std::{path::PathBuf, time::Duration};

use super::cri_facts::{ApiAnswer, CriFacts, RuntimeIdentity, SocketFacts};
use crate::node::{
    cri::{self, CriError, RuntimeVersion},
    host_root::HostRoot,
};

fn answer(result: Result<RuntimeVersion, CriError>) -> ApiAnswer {
    match result {
        Ok(v) => ApiAnswer::Served(RuntimeIdentity {
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        }),
        Err(err) if err.is_unimplemented() => ApiAnswer::Unimplemented { message: err.to_string() },
        Err(err) => ApiAnswer::NoAnswer { message: err.to_string() },
    }
}

async fn probe_one(root: &HostRoot, endpoint: PathBuf, timeout: Duration) -> SocketFacts {
    let in_root = root.resolve(&endpoint);
    let is_socket = std::fs::metadata(&in_root)
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false);
    if !is_socket {
        return SocketFacts::absent(endpoint);
    }
    let probe = cri::probe_socket(&in_root, timeout).await;
    let api = probe.preferred_api();
    let (v1, v1alpha2) = (answer(probe.v1), answer(probe.v1alpha2));
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
    SocketFacts { endpoint, exists: true, v1, v1alpha2, images, runtime_config }
}

/// Asks every candidate socket that exists; absent ones are recorded as absent.
pub(crate) async fn probe(root: &HostRoot, candidates: &[PathBuf], timeout: Duration) -> CriFacts {
    let mut sockets = Vec::with_capacity(candidates.len());
    for endpoint in candidates {
        sockets.push(probe_one(root, endpoint.clone(), timeout).await);
    }
    CriFacts { sockets }
}
