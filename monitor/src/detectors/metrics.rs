//! Deaths by cause, per owner: how many processes of each container or host service were
//! killed, and by what (`oom` with whose memory ran out, `signal` with the sender folded to a
//! bounded set, `fault`).
//!
//! Series are capped (`MAX_SERIES`) and expire like `events_by_owner_total` (one
//! [`CappedSeries`]): owners past the cap fold into `namespace="_other"` and the folding is
//! counted; a series that did not move for [`DEFAULT_SERIES_TTL`] is removed (swept when a
//! kill is counted or a scrape comes, at most once a
//! [`sweep_interval`](crate::attribution::owner_series::sweep_interval)), so a churn of pods
//! does not fold every new one until a restart. It does not decide what a kill is (that is
//! [`kills`](super::kills)) nor name owners (attribution).
//!
//! The memory cgroups' ([`memory_cgroups`](super::memory_cgroups)):
//! `oom_kills_missed_total{namespace,pod,container,service}` (capped and expiring the same way)
//! and `memory_pressure_stalled_seconds_total{kind,scope,namespace,pod,service}`, the kernel's
//! PSI totals of the node and of the pods and units followed (at most
//! [`MemoryWatchConfig::max_cgroups`](super::memory_cgroups::MemoryWatchConfig) of them, each
//! gone with its cgroup), as read at the latest read.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::counter::{ConstCounter, Counter},
    registry::Registry,
};

use super::{
    kills::Death,
    memory_cgroups::{MissedIn, MissedKills, PressureScope},
};
use crate::node::memory_pressure::MemoryPressure;
use crate::attribution::{
    OwnerLabelValues,
    owner_series::{CappedSeries, DEFAULT_SERIES_TTL, FoldLabels, OTHER_NAMESPACE},
};

/// Most distinct owner/cause series kept.
pub const MAX_SERIES: usize = 2000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KillLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Host unit or process, for deaths outside containers.
    pub service: String,
    /// `true` for a static pod's container (kubelet runs it from a manifest: the control
    /// plane on kubeadm nodes), else `false`.
    pub static_pod: &'static str,
    /// `oom`, `signal`, `fault`, `unknown_signal`.
    pub cause: &'static str,
    /// `kubelet`, `containerd_shim`, `containerd`, `runc`, `crio`, `dockerd`, `systemd`, `other`,
    /// `kernel`, `none`.
    pub sender: &'static str,
    /// OOM kills: `memory_cgroup`, `global`, `unknown`; empty for other causes.
    pub constraint: &'static str,
}

impl FoldLabels for KillLabels {
    /// `namespace="_other"`; static_pod, cause, sender and constraint kept.
    fn fold(self) -> Self {
        Self {
            namespace: OTHER_NAMESPACE.into(),
            pod: String::new(),
            container: String::new(),
            service: String::new(),
            ..self
        }
    }
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MissedLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub service: String,
}

impl FoldLabels for MissedLabels {
    fn fold(self) -> Self {
        Self { namespace: OTHER_NAMESPACE.into(), pod: String::new(), container: String::new(), service: String::new() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PressureLabels {
    /// `some` or `full`.
    kind: &'static str,
    /// `node`, `pod`, `service`.
    scope: &'static str,
    namespace: String,
    pod: String,
    service: String,
}

/// The PSI totals of the latest read, encoded at scrape time.
#[derive(Clone, Debug, Default)]
struct PressureTotals(Arc<Mutex<Vec<(PressureScope, MemoryPressure)>>>);

impl Collector for PressureTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(totals) = self.0.lock() else { return Ok(()) };
        if totals.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "memory_pressure_stalled_seconds",
            "Time stalled on memory as the kernel's PSI counts it (some: at least one task, full: all at once), of the node and of the pods and node daemons followed",
            None,
            ConstCounter::new(0.0f64).metric_type(),
        )?;
        for (scope, pressure) in totals.iter() {
            for (kind, line) in [("some", &pressure.some), ("full", &pressure.full)] {
                let labels = PressureLabels {
                    kind,
                    scope: scope.scope,
                    namespace: scope.namespace.clone(),
                    pod: scope.pod.clone(),
                    service: scope.service.clone(),
                };
                ConstCounter::new(line.total_us as f64 / 1e6).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct DetectorMetrics {
    kills: CappedSeries<KillLabels>,
    oom_kills_missed: CappedSeries<MissedLabels>,
    pressure: PressureTotals,
    forgotten: Counter,
    /// Kill series not moved for this long are removed.
    ttl: Duration,
}

impl DetectorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        Self::with_limits(registry, MAX_SERIES, DEFAULT_SERIES_TTL)
    }

    fn with_limits(registry: &mut Registry, max_series: usize, ttl: Duration) -> Self {
        let metrics = Self {
            kills: CappedSeries::new(max_series),
            oom_kills_missed: CappedSeries::new(max_series),
            pressure: PressureTotals::default(),
            forgotten: Counter::default(),
            ttl,
        };
        registry.register(
            "kills",
            "Processes killed (not exiting by themselves), by owner and cause; an OOM kill only with the kernel's OOM event",
            metrics.kills.expiring_on_scrape(ttl),
        );
        registry.register(
            "kills_series_folded",
            "Kill counts folded into namespace=\"_other\" because the series cap was reached",
            metrics.kills.folded().clone(),
        );
        registry.register(
            "oom_kills_missed",
            "OOM kills the kernel counted in a workload's memory cgroup (memory.events, memory.oom_control), or on the node (/proc/vmstat) in cgroups not followed (all labels empty), that the probes did not deliver",
            metrics.oom_kills_missed.expiring_on_scrape(ttl),
        );
        registry.register_collector(Box::new(metrics.pressure.clone()));
        registry.register(
            "detector_entries_forgotten",
            "Entries the loop detectors forgot to make room (a run history, a path's or address's failures, a caller, a process), each table keeping 4096",
            metrics.forgotten.clone(),
        );
        metrics
    }

    /// The detectors' count of forgotten entries, `total` so far.
    pub fn set_forgotten(&self, total: u64) {
        let served = self.forgotten.get();
        if total > served {
            self.forgotten.inc_by(total - served);
        }
    }

    /// Counts kills the kernel saw and the probes did not: under their cgroup's owner, or with
    /// every label empty when found by the node-wide count (owner unknown).
    pub fn record_missed(&self, missed: &MissedKills) {
        let labels = match &missed.missed_in {
            MissedIn::Cgroup { owner, .. } => {
                let owner = owner.labels();
                MissedLabels { namespace: owner.namespace, pod: owner.pod, container: owner.container, service: owner.service }
            }
            MissedIn::UnfollowedCgroups { .. } => MissedLabels::default(),
        };
        self.oom_kills_missed.expire_if_due(self.ttl);
        for _ in 0..missed.missed.min(1 << 16) {
            self.oom_kills_missed.inc(labels.clone());
        }
    }

    /// The PSI totals read now: the series exported until the next read.
    pub fn set_pressure(&self, pressure: Vec<(PressureScope, MemoryPressure)>) {
        if let Ok(mut totals) = self.pressure.0.lock() {
            *totals = pressure;
        }
    }

    /// Counts `death` if it was a kill; `static_pod` when its owner is a static pod's container.
    pub fn record(&self, death: &Death, owner: &OwnerLabelValues, static_pod: bool) {
        let cause = death.cause.label();
        if cause == "exit" {
            return;
        }
        let labels = KillLabels {
            namespace: owner.namespace.clone(),
            pod: owner.pod.clone(),
            container: owner.container.clone(),
            service: owner.service.clone(),
            static_pod: if static_pod { "true" } else { "false" },
            cause,
            sender: death.cause.sender_label(),
            constraint: death.cause.constraint_label(),
        };
        // Sweeping first makes room for this owner when series of gone ones expired.
        self.kills.expire_if_due(self.ttl);
        self.kills.inc(labels);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::{
        detectors::kills::DeathCause,
        events::{Exit, ExitStatus, Task},
    };

    fn fault() -> Death {
        let task = Task {
            pid: 7,
            tgid: 7,
            ppid: 1,
            uid: 0,
            cgroup_id: 1,
            memcg_id: 0,
            start_ns: 0,
            comm: "app".into(),
        };
        Death {
            exit: Exit {
                task,
                status: ExitStatus::Signaled {
                    signal: 11,
                    core_dumped: false,
                },
                lifetime: Duration::ZERO,
            },
            cause: DeathCause::Fault { signal: 11 },
        }
    }

    fn pod(name: &str) -> OwnerLabelValues {
        OwnerLabelValues {
            namespace: "ns".into(),
            pod: name.into(),
            container: "app".into(),
            service: String::new(),
        }
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encode");
        text
    }

    fn series(pod: &str, value: u64) -> String {
        format!(
            r#"node_runtime_monitor_kills_total{{namespace="ns",pod="{pod}",container="app",service="",static_pod="false",cause="fault",sender="kernel",constraint=""}} {value}"#
        )
    }

    #[test]
    fn kills_past_the_cap_fold_into_other_and_are_counted() {
        let mut registry = Registry::with_prefix("node_runtime_monitor");
        let metrics = DetectorMetrics::with_limits(&mut registry, 2, DEFAULT_SERIES_TTL);
        for name in ["a", "b", "c", "d", "a"] {
            metrics.record(&fault(), &pod(name), false);
        }
        let text = scrape(&registry);
        assert!(text.contains(&series("a", 2)), "{text}");
        assert!(text.contains(&series("b", 1)), "{text}");
        assert!(
            !text.contains(r#"pod="c""#) && !text.contains(r#"pod="d""#),
            "{text}"
        );
        assert!(
            text.contains(r#"node_runtime_monitor_kills_total{namespace="_other",pod="",container="",service="",static_pod="false",cause="fault",sender="kernel",constraint=""} 2"#),
            "{text}"
        );
        assert!(
            text.contains("node_runtime_monitor_kills_series_folded_total 2"),
            "{text}"
        );
    }

    #[test]
    fn a_kill_series_not_moved_for_the_ttl_expires_and_a_fresh_one_stays() {
        let mut registry = Registry::with_prefix("node_runtime_monitor");
        let metrics = DetectorMetrics::new(&mut registry);
        assert_eq!(metrics.ttl, DEFAULT_SERIES_TTL);
        metrics.record(&fault(), &pod("gone"), false);
        metrics.record(&fault(), &pod("alive"), false);
        let t0 = Instant::now();
        metrics.kills.expire_at(metrics.ttl, t0);
        metrics.record(&fault(), &pod("alive"), false);
        metrics.kills.expire_at(metrics.ttl, t0 + metrics.ttl);
        let text = scrape(&registry);
        assert!(
            !text.contains(r#"pod="gone""#),
            "expired series still exported: {text}"
        );
        assert!(text.contains(&series("alive", 2)), "{text}");
        // The expired series made room: with a cap of one, a new owner now has its own series.
        let metrics = DetectorMetrics::with_limits(&mut Registry::default(), 1, metrics.ttl);
        metrics.record(&fault(), &pod("gone"), false);
        let t0 = Instant::now();
        metrics.kills.expire_at(metrics.ttl, t0);
        metrics.kills.expire_at(metrics.ttl, t0 + metrics.ttl);
        metrics.record(&fault(), &pod("new"), false);
        assert_eq!((metrics.kills.len(), metrics.kills.folded().get()), (1, 0));
    }
}
