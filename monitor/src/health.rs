//! The monitor's own health, as the stages report it: whether each source of node context is
//! available (`source_up{source}`: tracefs and kernel BTF from the probes, a CRI socket that
//! answers and a configured kubelet from the node reader). A change is logged once. Any stage
//! may report here; nothing here reads the node or judges it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tracing::{info, warn};

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

    /// Not in any registry (tests, `check`).
    pub fn unregistered() -> Self {
        Self { up: Family::default(), last: Default::default() }
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
