//! Deaths by cause, per owner: how many processes of each container or host service were
//! killed, and by what (`oom` with whose memory ran out, `signal` with the sender folded to a
//! bounded set, `fault`).
//! Series are capped (`MAX_SERIES`); owners past the cap fold into `namespace="_other"` and
//! the folding is counted.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::kills::Death;
use crate::attribution::OwnerLabelValues;

/// Most distinct owner/cause series kept.
pub const MAX_SERIES: usize = 2000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KillLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Host unit or process, for deaths outside containers.
    pub service: String,
    /// `oom`, `signal`, `fault`, `unknown_signal`.
    pub cause: &'static str,
    /// `kubelet`, `containerd_shim`, `runc`, `systemd`, `other`, `kernel`, `none`.
    pub sender: &'static str,
    /// OOM kills: `memory_cgroup`, `global`, `unknown`; empty for other causes.
    pub constraint: &'static str,
}

#[derive(Clone, Debug)]
pub struct DetectorMetrics {
    kills: Family<KillLabels, Counter<u64, AtomicU64>>,
    folded: Counter<u64, AtomicU64>,
    series: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<KillLabels>>>,
}

impl DetectorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self { kills: Family::default(), folded: Counter::default(), series: Default::default() };
        registry.register(
            "kills",
            "Processes killed (not exiting by themselves), by owner and cause; an OOM kill only with the kernel's OOM event",
            metrics.kills.clone(),
        );
        registry.register(
            "kills_series_folded",
            "Kill counts folded into namespace=\"_other\" because the series cap was reached",
            metrics.folded.clone(),
        );
        metrics
    }

    /// Counts `death` if it was a kill.
    pub fn record(&self, death: &Death, owner: &OwnerLabelValues) {
        let cause = death.cause.label();
        if cause == "exit" {
            return;
        }
        let mut labels = KillLabels {
            namespace: owner.namespace.clone(),
            pod: owner.pod.clone(),
            container: owner.container.clone(),
            service: owner.service.clone(),
            cause,
            sender: death.cause.sender_label(),
            constraint: death.cause.constraint_label(),
        };
        if let Ok(mut series) = self.series.lock()
            && !series.contains(&labels) {
                if series.len() >= MAX_SERIES {
                    self.folded.inc();
                    labels = KillLabels {
                        namespace: "_other".into(),
                        pod: String::new(),
                        container: String::new(),
                        service: String::new(),
                        ..labels
                    };
                } else {
                    series.insert(labels.clone());
                }
            }
        self.kills.get_or_create(&labels).inc();
    }
}
