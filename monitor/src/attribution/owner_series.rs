//! Owner-labelled counter series with bounded cardinality: one [`CappedSeries`] type for every
//! metric family labelled by owner (`events_by_owner_total`, `kills_total`).
//!
//! A label set gets its own series until `max_series` series are live; past that, new label
//! sets are counted under the label set the caller folds them into ([`FoldLabels`], by
//! convention `namespace="_other"`) and every count so folded is counted again in a fold
//! counter. A series whose count did not move for a TTL (default [`DEFAULT_SERIES_TTL`]) is
//! removed, which makes room under the cap again, so pods that are gone stop being exported
//! and a churn of owners does not fold every new one until a restart.
//!
//! Expiry only happens when something sweeps: [`CappedSeries::expire`] (the attribution stage
//! calls it every [`sweep_interval`]) or [`CappedSeries::expire_if_due`] (at most once a
//! [`sweep_interval`], from the counting path or, through [`CappedSeries::expiring_on_scrape`],
//! from each scrape). This module does not pick labels, decide what an owner is, or register
//! anything itself; the folded series themselves never expire (as before).

use std::{
    collections::HashMap,
    fmt::Debug,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{MetricType, counter::Counter, family::Family},
};

/// The counters of an owner-labelled family.
pub type SeriesCounter = Counter<u64, AtomicU64>;

/// Series not moved for this long are removed, unless configured otherwise
/// (`AttributionConfig::owner_series_ttl`).
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(15 * 60);

/// The `namespace` label of series folded past the cap.
pub const OTHER_NAMESPACE: &str = "_other";

/// How often series with time to live `ttl` are swept: every 30 s, or every `ttl` when shorter
/// (but not more than once a second). A series is seen when its count moved between two sweeps,
/// so this is also the granularity of the TTL.
pub fn sweep_interval(ttl: Duration) -> Duration {
    Duration::from_secs(30).min(ttl.max(Duration::from_secs(1)))
}

/// A label set of an owner-labelled family, and the one it is counted under past the cap.
pub trait FoldLabels: Clone + Debug + Hash + Eq + EncodeLabelSet + Send + Sync + 'static {
    /// The label set to count under when the cap is reached: the owner's labels replaced by
    /// `namespace="_other"` (and the other owner labels empty), the others kept.
    fn fold(self) -> Self;
}

/// A `Family<L, Counter>` whose live series are capped and expire. Cloning it clones handles
/// on the same series.
#[derive(Clone, Debug)]
pub struct CappedSeries<L> {
    family: Family<L, SeriesCounter>,
    folded: SeriesCounter,
    live: Arc<Mutex<Live<L>>>,
    /// Bumped whenever series are removed, so cached [`SeriesHandle`]s are dropped.
    generation: Arc<AtomicU64>,
    max_series: usize,
}

/// The series counted toward the cap, and when they were last swept.
#[derive(Debug)]
struct Live<L> {
    series: HashMap<L, SeriesState>,
    last_sweep: Option<Instant>,
}

/// A live series and when its count last moved.
#[derive(Debug)]
struct SeriesState {
    counter: SeriesCounter,
    last_value: u64,
    last_change: Instant,
}

/// The counter a label set is counted with: its own series, or the folded one (then each count
/// is also a fold). Valid while [`CappedSeries::generation`] does not change.
#[derive(Clone, Debug)]
pub struct SeriesHandle {
    counter: SeriesCounter,
    /// Past the cap: the fold counter.
    fold: Option<SeriesCounter>,
}

impl SeriesHandle {
    /// Counts one.
    #[inline]
    pub fn inc(&self) {
        self.counter.inc();
        if let Some(fold) = &self.fold {
            fold.inc();
        }
    }

    /// Counted under the folded label set.
    pub fn is_folded(&self) -> bool {
        self.fold.is_some()
    }
}

impl<L: FoldLabels> CappedSeries<L> {
    /// At most `max_series` live series (the folded ones not counted).
    pub fn new(max_series: usize) -> Self {
        Self {
            family: Family::default(),
            folded: SeriesCounter::default(),
            live: Arc::new(Mutex::new(Live {
                series: HashMap::new(),
                last_sweep: None,
            })),
            generation: Arc::default(),
            max_series,
        }
    }

    /// The family, to register it (see also [`Self::expiring_on_scrape`]) or read it back.
    pub fn family(&self) -> &Family<L, SeriesCounter> {
        &self.family
    }

    /// Counts made under a folded label set because the cap was reached.
    pub fn folded(&self) -> &SeriesCounter {
        &self.folded
    }

    /// Changes whenever series are removed: handles taken before are stale.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The counter of `labels`: its own series (made if there is room), or the folded one past
    /// the cap. For callers that keep handles (checking [`Self::generation`]); a handle
    /// counted after a sweep removed its series counts nothing visible, so sweep from the
    /// same task that counts, or use [`Self::inc`].
    pub fn handle(&self, labels: L) -> SeriesHandle {
        match self.live.lock() {
            Ok(mut live) => self.handle_locked(&mut live, labels),
            Err(_) => SeriesHandle {
                counter: self.family.get_or_create_owned(&labels),
                fold: None,
            },
        }
    }

    /// Counts one under `labels` (or their folded set past the cap). The count is made under
    /// the same lock as the sweeps, so a concurrent sweep cannot lose it.
    pub fn inc(&self, labels: L) {
        match self.live.lock() {
            Ok(mut live) => self.handle_locked(&mut live, labels).inc(),
            Err(_) => {
                self.family.get_or_create(&labels).inc();
            }
        }
    }

    fn handle_locked(&self, live: &mut Live<L>, labels: L) -> SeriesHandle {
        if let Some(state) = live.series.get(&labels) {
            return SeriesHandle {
                counter: state.counter.clone(),
                fold: None,
            };
        }
        if live.series.len() >= self.max_series {
            return SeriesHandle {
                counter: self.family.get_or_create_owned(&labels.fold()),
                fold: Some(self.folded.clone()),
            };
        }
        let counter = self.family.get_or_create_owned(&labels);
        live.series.insert(
            labels,
            SeriesState {
                counter: counter.clone(),
                last_value: 0,
                last_change: Instant::now(),
            },
        );
        SeriesHandle {
            counter,
            fold: None,
        }
    }

    /// Removes the series not seen for `ttl`. A series is seen when its count moved since the
    /// previous sweep, so this is as fine-grained as it is frequent.
    pub fn expire(&self, ttl: Duration) {
        self.expire_at(ttl, Instant::now());
    }

    /// [`Self::expire`] unless the last sweep was less than [`sweep_interval`]`(ttl)` ago.
    pub fn expire_if_due(&self, ttl: Duration) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let now = Instant::now();
        if live
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < sweep_interval(ttl))
        {
            return;
        }
        self.sweep(&mut live, ttl, now);
    }

    /// [`Self::expire`] as if the time were `now` (tests).
    pub fn expire_at(&self, ttl: Duration, now: Instant) {
        if let Ok(mut live) = self.live.lock() {
            self.sweep(&mut live, ttl, now);
        }
    }

    fn sweep(&self, live: &mut Live<L>, ttl: Duration, now: Instant) {
        live.last_sweep = Some(now);
        let before = live.series.len();
        live.series.retain(|labels, state| {
            let value = state.counter.get();
            if value != state.last_value {
                state.last_value = value;
                state.last_change = now;
            }
            let keep = now.saturating_duration_since(state.last_change) < ttl;
            if !keep {
                self.family.remove(labels);
            }
            keep
        });
        if live.series.len() != before {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Live series (folded ones not counted).
    pub fn len(&self) -> usize {
        self.live.lock().map(|live| live.series.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The family as a metric to register that first sweeps, when due, at each scrape: series
    /// expire even when nothing is counted. For families counted through [`Self::inc`] (a
    /// scrape may sweep while a cached [`SeriesHandle`] is in use on another task).
    pub fn expiring_on_scrape(&self, ttl: Duration) -> ExpiringOnScrape<L> {
        ExpiringOnScrape {
            series: self.clone(),
            ttl,
        }
    }
}

/// A [`CappedSeries`] registered so that scrapes sweep it (see
/// [`CappedSeries::expiring_on_scrape`]). Encodes exactly as its family.
#[derive(Debug)]
pub struct ExpiringOnScrape<L> {
    series: CappedSeries<L>,
    ttl: Duration,
}

impl<L: FoldLabels> EncodeMetric for ExpiringOnScrape<L> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.series.expire_if_due(self.ttl);
        self.series.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        EncodeMetric::metric_type(&self.series.family)
    }

    // A scrape asks this first: sweeping here, an emptied family writes no descriptor.
    fn is_empty(&self) -> bool {
        self.series.expire_if_due(self.ttl);
        EncodeMetric::is_empty(&self.series.family)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        namespace: String,
        pod: String,
        cause: &'static str,
    }

    impl FoldLabels for Labels {
        fn fold(self) -> Self {
            Labels {
                namespace: OTHER_NAMESPACE.into(),
                pod: String::new(),
                ..self
            }
        }
    }

    fn labels(pod: &str) -> Labels {
        Labels {
            namespace: "ns".into(),
            pod: pod.into(),
            cause: "x",
        }
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn capped_folded_and_expired_with_handles_going_stale() {
        let series = CappedSeries::new(2);
        let a = series.handle(labels("a"));
        series.inc(labels("b"));
        let c = series.handle(labels("c"));
        assert!(!a.is_folded() && c.is_folded());
        a.inc();
        c.inc();
        c.inc();
        assert_eq!((series.len(), series.folded().get()), (2, 2));
        let other = Labels {
            namespace: "_other".into(),
            pod: String::new(),
            cause: "x",
        };
        assert_eq!(series.family().get(&other).map(|c| c.get()), Some(2));
        let generation = series.generation();
        let t0 = Instant::now();
        series.expire_at(Duration::from_secs(60), t0);
        assert_eq!(
            (series.len(), series.generation()),
            (2, generation),
            "all moved: kept"
        );
        a.inc();
        series.expire_at(Duration::from_secs(60), t0 + Duration::from_secs(60));
        assert_eq!(series.len(), 1, "b did not move for the TTL");
        assert_ne!(
            series.generation(),
            generation,
            "handles taken before are stale"
        );
        assert!(series.family().get(&labels("b")).is_none());
        assert!(!series.handle(labels("d")).is_folded(), "room again");
    }

    /// A scrape sweeps when a sweep is due: the first one at once.
    #[test]
    fn scrapes_sweep_when_due() {
        let mut registry = Registry::default();
        let series = CappedSeries::new(10);
        registry.register(
            "things",
            "Things",
            series.expiring_on_scrape(Duration::ZERO),
        );
        series.inc(labels("a"));
        let text = scrape(&registry);
        assert!(!text.contains("things"), "{text}");
        assert_eq!(series.len(), 0);
        series.inc(labels("b"));
        let text = scrape(&registry);
        assert!(
            text.contains(r#"things_total{namespace="ns",pod="b",cause="x"} 1"#),
            "not due yet: {text}"
        );
    }
}
