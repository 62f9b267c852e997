//! Findings as metrics: one gauge series per open finding (read from the store at scrape
//! time, so a closed finding's series disappears with it) and a counter of findings opened.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::ConstGauge},
    registry::Registry,
};

use super::store::{Changes, FindingStore};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenedLabels {
    pub rule: &'static str,
    pub severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    rule: String,
    severity: &'static str,
    subject: String,
    source: &'static str,
}

/// Counts openings; register once.
#[derive(Clone, Debug)]
pub struct FindingMetrics {
    opened: Family<OpenedLabels, Counter<u64, AtomicU64>>,
}

impl FindingMetrics {
    pub fn new(registry: &mut Registry, store: FindingStore) -> Self {
        let opened = Family::default();
        registry.register("findings_opened", "Findings opened, by rule and severity", opened.clone());
        registry.register_collector(Box::new(OpenFindings { store }));
        Self { opened }
    }

    pub fn record(&self, changes: &Changes) {
        for (_, rule, severity, _) in &changes.opened {
            self.opened.get_or_create(&OpenedLabels { rule, severity: severity.as_str() }).inc();
        }
    }
}

#[derive(Debug)]
struct OpenFindings {
    store: FindingStore,
}

impl Collector for OpenFindings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let open = self.store.snapshot();
        let gauge_type = ConstGauge::new(1i64).metric_type();
        let mut family = encoder.encode_descriptor(
            "findings_open",
            "1 for each open finding (rule, severity, subject); the series disappears when the finding closes",
            None,
            gauge_type,
        )?;
        for f in &open {
            let labels = OpenLabels {
                rule: f.finding.rule.to_string(),
                severity: f.finding.severity.as_str(),
                subject: f.finding.subject.clone(),
                source: f.source,
            };
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
