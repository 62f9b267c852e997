//! The consumer of attributed events: detectors, then findings and their metrics. One task,
//! one event at a time; `cargo bench --bench pipeline` drives this same code. What the latest
//! audit says of the node reaches the detectors here, taken when it changed, between batches.

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    attribution::{Attributed, Owner, OwnerKind},
    detectors::{Actor, Detectors, AuditContext, metrics::DetectorMetrics},
    events::Event,
    audit::Reports,
    findings::{Origin, store::FindingStore},
};

/// Most events taken from the queue at once.
pub const BATCH: usize = 256;

pub struct Pipeline {
    detectors: Detectors,
    /// The audit's reports, and what the detectors need of the latest.
    audits: Reports,
    facts: AuditContext,
    findings: FindingStore,
    detector_metrics: DetectorMetrics,
    log_events: bool,
}

impl Pipeline {
    pub fn new(
        detectors: Detectors,
        audits: Reports,
        findings: FindingStore,
        detector_metrics: DetectorMetrics,
        log_events: bool,
    ) -> Self {
        Self {
            detectors,
            audits,
            facts: AuditContext::default(),
            findings,
            detector_metrics,
            log_events,
        }
    }

    /// Handles every batch of events until the stream ends; `stage` is busy during each.
    pub async fn run(mut self, mut events: mpsc::Receiver<Attributed>, stage: crate::progress::Stage) {
        // As many events as wait (up to BATCH) per wake-up.
        let mut batch = Vec::with_capacity(BATCH);
        while events.recv_many(&mut batch, BATCH).await > 0 {
            let _busy = stage.busy();
            self.handle_batch(&mut batch);
        }
    }

    /// Events that arrived together (emptied here), all seen at one clock read.
    pub fn handle_batch(&mut self, batch: &mut Vec<Attributed>) {
        if self.audits.has_changed().unwrap_or(false)
            && let Some(report) = self.audits.borrow_and_update().as_deref()
        {
            self.facts = AuditContext::from_audit(report);
        }
        let now = Instant::now();
        for attributed in batch.drain(..) {
            self.handle(attributed, now);
        }
    }

    /// One event, seen by the detectors at `now`: how its process died, the findings it opens
    /// or refreshes, their metrics.
    fn handle(&mut self, Attributed { record, owner, other }: Attributed, now: Instant) {
        if self.log_events {
            log_event(&record.event, &owner);
        }
        let actor = Actor::of(&owner, &record.event);
        let (death, found) = self.detectors.observe(&record.event, &actor, other.as_deref(), &self.facts, now);
        if let Some(death) = &death {
            let mut labels = owner.labels();
            if matches!(owner.kind, OwnerKind::Host | OwnerKind::Unknown { .. }) {
                // A host process outside any unit: name it by its command (series capped).
                labels.service = format!("process:{}", death.exit.task.comm);
            }
            let static_pod = owner.pod().is_some_and(|p| p.static_pod);
            self.detector_metrics.record(death, &labels, static_pod);
        }
        if !found.is_empty() {
            let now = std::time::SystemTime::now();
            for finding in found {
                self.findings.record(Origin::Detectors, finding, now);
            }
        }
    }
}

fn log_event(event: &Event, owner: &Owner) {
    match serde_json::to_string(event) {
        Ok(json) => info!(target: "monitor::events", owner = %owner.display(), "{json}"),
        Err(err) => warn!("cannot serialise event: {err}"),
    }
}
