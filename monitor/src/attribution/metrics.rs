//! Attribution's own metrics, and events counted per owner.
//!
//! - `attribution_misses_total{reason}`: events that left without a named owner, or late.
//! - `attribution_cri_errors_total{call}`: CRI calls that failed.
//! - `attribution_cached_owners`: cgroups whose owner is cached.
//! - `events_by_owner_total{kind,namespace,pod,container,service}`: events per owner.
//!   Cardinality is bounded ([`CappedSeries`]): at most `max_series` (default
//!   [`DEFAULT_MAX_OWNER_SERIES`]) series; past it, new owners fold into `namespace="_other"`
//!   and each fold is counted in `events_by_owner_folded_total`. Series of owners not seen for
//!   the configured TTL (default [`DEFAULT_SERIES_TTL`](super::owner_series::DEFAULT_SERIES_TTL),
//!   15 minutes) are removed, so pods that are gone stop being exported.
//!
//! It only counts: the stage decides when (and with whose owner), and the sweep is driven by
//! the stage's timer ([`AttributionMetrics::expire_owner_series`]).

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{
    Owner, OwnerKind,
    owner_series::{CappedSeries, FoldLabels, OTHER_NAMESPACE, SeriesHandle},
};
use crate::events::Kind;

/// Default cap on `events_by_owner_total` series (6 event kinds x ~300 containers).
pub const DEFAULT_MAX_OWNER_SERIES: usize = 2000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OwnerEventLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Host systemd unit, `host` or `unknown` for events outside containers.
    pub service: String,
}

impl FoldLabels for OwnerEventLabels {
    /// `namespace="_other"` with the event kind kept.
    fn fold(self) -> Self {
        Self {
            kind: self.kind,
            namespace: OTHER_NAMESPACE.into(),
            pod: String::new(),
            container: String::new(),
            service: String::new(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MissLabels {
    /// `late` (owner named after the hold), or an [`UnknownReason`](super::UnknownReason)'s
    /// label.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: &'static str,
}

#[derive(Clone, Debug)]
pub struct AttributionMetrics {
    pub misses: Family<MissLabels, Counter<u64, AtomicU64>>,
    pub cri_errors: Family<CallLabels, Counter<u64, AtomicU64>>,
    pub cached_owners: Gauge,
    /// The family of `series` (the same counters).
    pub by_owner: Family<OwnerEventLabels, Counter<u64, AtomicU64>>,
    /// The fold counter of `series` (the same counter).
    pub folded: Counter<u64, AtomicU64>,
    series: CappedSeries<OwnerEventLabels>,
}

/// One owner's handles on its `events_by_owner_total` series, one per event kind, valid for a
/// generation of the series (see [`CappedSeries::generation`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnerHandles {
    generation: u64,
    handles: [Option<SeriesHandle>; Kind::ALL.len()],
}

impl AttributionMetrics {
    pub fn new(registry: &mut Registry, max_series: usize) -> Self {
        let metrics = Self::unregistered(max_series);
        registry.register(
            "attribution_misses",
            "Events whose owner was not named within the hold time, or not at all, by reason",
            metrics.misses.clone(),
        );
        registry.register(
            "attribution_cri_errors",
            "CRI calls of the attribution that failed",
            metrics.cri_errors.clone(),
        );
        registry.register(
            "attribution_cached_owners",
            "cgroups whose owner is cached",
            metrics.cached_owners.clone(),
        );
        registry.register(
            "events_by_owner",
            "Kernel events by owner (container of a pod, or host service); series are capped and expire",
            metrics.by_owner.clone(),
        );
        registry.register(
            "events_by_owner_folded",
            "Events counted under namespace=\"_other\" because the events_by_owner series cap was reached",
            metrics.folded.clone(),
        );
        metrics
    }

    /// Metrics not in any registry (tests).
    pub fn unregistered(max_series: usize) -> Self {
        let series = CappedSeries::new(max_series);
        Self {
            misses: Family::default(),
            cri_errors: Family::default(),
            cached_owners: Gauge::default(),
            by_owner: series.family().clone(),
            folded: series.folded().clone(),
            series,
        }
    }

    pub(crate) fn count_miss(&self, owner: &Owner, late: bool) {
        let reason = match &owner.kind {
            OwnerKind::Unknown { reason } => reason.label(),
            _ if late => "late",
            _ => return,
        };
        self.misses.get_or_create(&MissLabels { reason }).inc();
    }

    /// Counts one event of `owner` (looks its series up: the stage uses [`OwnerHandles`]).
    pub(crate) fn count_event(&self, kind: Kind, owner: &Owner) {
        self.count_event_cached(kind, owner, &mut OwnerHandles::default());
    }

    /// Counts one event of `owner` through `cache`, the owner's handles on its series: the
    /// labels are built and looked up once per owner and kind, not per event.
    pub(crate) fn count_event_cached(&self, kind: Kind, owner: &Owner, cache: &mut OwnerHandles) {
        let generation = self.series.generation();
        if cache.generation != generation {
            // Series were removed since these handles were taken: one may be among them.
            *cache = OwnerHandles {
                generation,
                ..OwnerHandles::default()
            };
        }
        cache.handles[kind as usize]
            .get_or_insert_with(|| self.series.handle(labels(kind, owner)))
            .inc();
    }

    /// Removes the series of owners not seen for `ttl`. A series is seen when its count moved
    /// since the previous call, so this is as fine-grained as it is frequent. Call it from the
    /// task that counts (cached handles are checked against the series' generation there).
    pub fn expire_owner_series(&self, ttl: Duration) {
        self.series.expire(ttl);
    }

    /// Live series (tests).
    pub fn owner_series(&self) -> usize {
        self.series.len()
    }
}

/// The `events_by_owner_total` labels of `owner`'s events of `kind`.
fn labels(kind: Kind, owner: &Owner) -> OwnerEventLabels {
    let values = owner.labels();
    OwnerEventLabels {
        kind: kind.as_str(),
        namespace: values.namespace,
        pod: values.pod,
        container: values.container,
        service: values.service,
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::{
        attribution::{ContainerOwner, PodRef},
        node::cgroup_path::{ContainerId, Runtime},
    };

    fn pod_owner(pod: &str) -> Owner {
        Owner::new(
            OwnerKind::Container(ContainerOwner {
                runtime: Runtime::Containerd,
                id: ContainerId::parse_hex(&"a".repeat(64)).expect("id"),
                name: Some("app".into()),
                pod: Some(PodRef {
                    namespace: "ns".into(),
                    name: pod.into(),
                    uid: "u".into(),
                    ..Default::default()
                }),
                sandbox: false,
                attempt: Some(0),
            }),
            None,
        )
    }

    #[test]
    fn series_are_capped_folded_and_expire() {
        let mut registry = Registry::with_prefix("node_runtime_monitor");
        let metrics = AttributionMetrics::new(&mut registry, 3);
        for pod in ["a", "b", "c", "d", "e"] {
            metrics.count_event(Kind::Exec, &pod_owner(pod));
        }
        metrics.count_event(Kind::Exec, &pod_owner("a"));
        assert_eq!(metrics.owner_series(), 3);
        assert_eq!(metrics.folded.get(), 2);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(text.contains(r#"node_runtime_monitor_events_by_owner_total{kind="exec",namespace="ns",pod="a",container="app",service=""} 2"#), "{text}");
        assert!(text.contains(r#"namespace="_other""#), "{text}");
        assert!(!text.contains(r#"pod="d""#), "{text}");
        metrics.expire_owner_series(Duration::ZERO);
        assert_eq!(metrics.owner_series(), 0);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            !text.contains(r#"pod="a""#),
            "expired series still exported: {text}"
        );
        // Room again after expiry.
        metrics.count_event(Kind::Exit, &pod_owner("f"));
        assert_eq!(metrics.owner_series(), 1);
    }
}
