//! Findings as metrics: one gauge series per open finding (read from the store at scrape
//! time, so a closed finding's series disappears with it) and the store's counter of findings
//! opened.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::gauge::ConstGauge,
    registry::Registry,
};

use super::store::FindingStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FoldedLabels {
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenedLabels {
    pub rule: &'static str,
    pub severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    rule: &'static str,
    severity: &'static str,
    subject: String,
    source: &'static str,
}

/// Registers the store's metrics: `findings_opened_total` and `findings_open`. Once.
pub fn register(registry: &mut Registry, store: &FindingStore) {
    registry.register("findings_opened", "Findings opened, by rule and severity", store.opened.clone());
    registry.register(
        "findings_folded",
        "Findings of the detectors folded past a cap: of open findings per rule (into the rule's _folded finding), or of subjects per caller (into the caller's)",
        store.folded.clone(),
    );
    registry.register_collector(Box::new(OpenFindings { store: store.clone() }));
}

#[derive(Debug)]
struct OpenFindings {
    store: FindingStore,
}

impl Collector for OpenFindings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge_type = ConstGauge::new(1i64).metric_type();
        let mut family = encoder.encode_descriptor(
            "findings_open",
            "1 for each open finding (rule, severity, subject); the series disappears when the finding closes",
            None,
            gauge_type,
        )?;
        self.store.with_open(|open| {
            for f in open {
                let labels = OpenLabels {
                    rule: f.finding.rule,
                    severity: f.finding.severity.as_str(),
                    subject: f.finding.subject.clone(),
                    source: f.origin.as_str(),
                };
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
            Ok::<(), std::fmt::Error>(())
        })?;
        Ok(())
    }
}
