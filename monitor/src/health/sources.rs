//! Whether each source of node context is available (`source_up{source}`: tracefs and kernel
//! BTF from the probes, a CRI socket that answers and a configured kubelet from the node
//! reader). A change is logged once. Any stage may report here.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::node::watch::Snapshots;

/// Whether each source of node context is available.
#[derive(Clone, Debug)]
pub struct SourceHealth {
    up: Family<SourceLabels, Gauge>,
    last: Arc<Mutex<HashMap<&'static str, bool>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

impl SourceHealth {
    pub fn new(registry: &mut Registry) -> Self {
        let up = Family::default();
        registry.register(
            "source_up",
            "1 when a source of node context is available (tracefs, kernel_btf, cri, kubelet), 0 when not",
            up.clone(),
        );
        Self { up, last: Default::default() }
    }

    /// Follows the node reader's snapshots: is there a CRI socket that answers, a kubelet.
    pub fn follow_node(&self, mut snapshots: Snapshots) -> JoinHandle<()> {
        let sources = self.clone();
        tokio::spawn(async move {
            loop {
                let snapshot = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    let cri = snapshot.cri.sockets.iter().any(|s| s.answers());
                    sources.set("cri", cri, "no CRI socket answers: events are attributed from cgroup paths and kubelet's files only");
                    sources.set("kubelet", snapshot.runtime_endpoint().is_some(), "no kubelet configured on this node");
                }
                if snapshots.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// Records whether `source` is available; `consequence` says what its absence costs.
    pub fn set(&self, source: &'static str, available: bool, consequence: &str) {
        self.up.get_or_create(&SourceLabels { source }).set(available as i64);
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.insert(source, available) != Some(available) {
            if available {
                info!(source, "available");
            } else {
                warn!(source, "unavailable: {consequence}");
            }
        }
    }
}
