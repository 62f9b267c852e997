//! Health of the probes: per-program state and counters, events per kind, losses at every
//! stage. A user can tell "nothing happened" from "we missed it": the kernel counts per program
//! the events it lost (ring buffer full, a connect in progress evicted from its table, memory
//! it needed unreadable), user space counts records it could not decode and events
//! it dropped because the pipeline was full.
//!
//! The kernel counters live in a per-CPU map and are read at scrape time by
//! [`KernelStatsCollector`], not copied on a timer.

use std::sync::{
    Mutex,
    atomic::{AtomicI64, AtomicU64},
};

use aya::maps::{MapData, PerCpuArray};
use monitor_common::{ProgramId, ProgramStats};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        info::Info,
    },
    registry::Registry,
};

use super::{PROGRAMS, ProgramStatus};
use crate::events::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabels {
    pub program: &'static str,
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full` (the pipeline did not keep up) or `decode_error`.
    pub reason: &'static str,
}

/// Metrics of the probes and the reader.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    pub events: Family<KindLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pub probe_up: Family<ProgramLabels, Gauge<i64, AtomicI64>>,
    pub ring_buffer_bytes: Gauge<i64, AtomicI64>,
    pub oom_reports_unmatched: Counter,
}

impl ProbeMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            events: Family::default(),
            dropped: Family::default(),
            probe_up: Family::default(),
            ring_buffer_bytes: Gauge::default(),
            oom_reports_unmatched: Counter::default(),
        };
        registry.register("events", "Kernel events received by user space, by kind", metrics.events.clone());
        registry.register(
            "events_dropped",
            "Events dropped in user space: queue_full (pipeline behind) or decode_error",
            metrics.dropped.clone(),
        );
        registry.register("probe_up", "1 when the kernel program is attached, 0 when it is not", metrics.probe_up.clone());
        registry.register(
            "oom_reports_unmatched",
            "Kernel reports of OOM kills whose kill event was not seen (mark_victim down, or its event lost)",
            metrics.oom_reports_unmatched.clone(),
        );
        registry.register_with_unit(
            "ring_buffer_size",
            "Size of the kernel-to-user ring buffer",
            prometheus_client::registry::Unit::Bytes,
            metrics.ring_buffer_bytes.clone(),
        );
        for kind in Kind::ALL {
            let _ = metrics.events.get_or_create(&KindLabels { kind: kind.as_str() });
        }
        for reason in ["queue_full", "decode_error"] {
            let _ = metrics.dropped.get_or_create(&DropLabels { reason });
        }
        metrics
    }

    pub fn set_status(&self, status: &[ProgramStatus]) {
        for s in status {
            let labels = ProgramLabels { program: s.spec.name, hook: s.hook.to_string() };
            self.probe_up.get_or_create(&labels).set(s.is_up() as i64);
        }
    }

    /// Marks every program down (e.g. the object could not be loaded at all).
    pub fn set_all_down(&self) {
        for spec in PROGRAMS {
            let labels = ProgramLabels { program: spec.name, hook: spec.preferred_hook().to_string() };
            self.probe_up.get_or_create(&labels).set(0);
        }
    }
}

/// Registers `build_info` (version, kernel release).
pub fn register_build_info(registry: &mut Registry) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let info = Info::new(vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("kernel".to_string(), kernel),
    ]);
    registry.register("build", "Version of the monitor and release of the kernel it runs on", info);
}

/// Reads the kernel-side per-program counters at scrape time. Registered whether the programs
/// loaded or not: without them ([`KernelStatsCollector::unloaded`]) every program's counters
/// are 0 (nothing was emitted, lost or filtered; `probe_up` says they are down), so the
/// families are always there and the alerts over them see values, not "no data".
pub struct KernelStatsCollector {
    stats: Option<Mutex<PerCpuArray<MapData, ProgramStats>>>,
    /// Scrapes that could not read the map (exported too, so a broken read is visible).
    read_errors: AtomicU64,
}

impl std::fmt::Debug for KernelStatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelStatsCollector").field("loaded", &self.stats.is_some()).finish_non_exhaustive()
    }
}

impl KernelStatsCollector {
    pub fn new(stats: PerCpuArray<MapData, ProgramStats>) -> Self {
        Self { stats: Some(Mutex::new(stats)), read_errors: AtomicU64::new(0) }
    }

    /// The counters of programs that were never loaded: 0 for each.
    pub fn unloaded() -> Self {
        Self { stats: None, read_errors: AtomicU64::new(0) }
    }

    /// Sum over CPUs of each program's counters, in [`PROGRAMS`] order.
    pub fn read(&self) -> Vec<(ProgramId, &'static str, ProgramStats)> {
        let Some(stats) = &self.stats else {
            return PROGRAMS.iter().map(|spec| (spec.id, spec.name, ProgramStats::default())).collect();
        };
        let Ok(stats) = stats.lock() else { return Vec::new() };
        PROGRAMS
            .iter()
            .filter_map(|spec| {
                let values = match stats.get(&(spec.id as u32), 0) {
                    Ok(values) => values,
                    Err(_) => {
                        self.read_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return None;
                    }
                };
                let sum = values.iter().fold(ProgramStats::default(), |acc, v| ProgramStats {
                    emitted: acc.emitted + v.emitted,
                    lost: acc.lost + v.lost,
                    filtered: acc.filtered + v.filtered,
                });
                Some((spec.id, spec.name, sum))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramOnly {
    program: &'static str,
}

impl Collector for KernelStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.read();
        type Count = fn(&ProgramStats) -> u64;
        let families: [(&str, &str, Count); 3] = [
            ("kernel_events_emitted", "Events a kernel program wrote to the ring buffer", |s| s.emitted),
            (
                "kernel_events_lost",
                "Events a kernel program should have reported and did not: ring buffer full, a connect in progress evicted from its table, or memory it needed unreadable",
                |s| s.lost,
            ),
            ("kernel_events_filtered", "Hook invocations a kernel program dropped on purpose (in-kernel filters)", |s| {
                s.filtered
            }),
        ];
        for (name, help, value) in families {
            let counter_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, counter_type)?;
            for (_, program, stats) in &rows {
                let counter = ConstCounter::new(value(stats));
                counter.encode(family.encode_family(&ProgramOnly { program })?)?;
            }
        }
        let errors = ConstCounter::new(self.read_errors.load(std::sync::atomic::Ordering::Relaxed));
        let family = encoder.encode_descriptor(
            "kernel_stats_read_errors",
            "Scrapes that could not read a program's kernel counters",
            None,
            errors.metric_type(),
        )?;
        errors.encode(family)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs that never loaded still have their families, at 0 for each program.
    #[test]
    fn unloaded_programs_export_zero_counters() {
        let mut registry = Registry::with_prefix("node_runtime_monitor");
        registry.register_collector(Box::new(KernelStatsCollector::unloaded()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for family in ["kernel_events_emitted", "kernel_events_lost", "kernel_events_filtered"] {
            for spec in PROGRAMS {
                let series = format!("node_runtime_monitor_{family}_total{{program=\"{}\"}} 0", spec.name);
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        assert!(text.contains("node_runtime_monitor_kernel_stats_read_errors_total 0"), "{text}");
    }
}
