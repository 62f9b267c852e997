//! The consumer of attributed events: detectors, then findings and their metrics. One task,
//! one event at a time; `cargo bench --bench pipeline` drives this same code.

use std::{
    sync::{Arc, RwLock},
    time::Instant,
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    attribution::{Attributed, Owner, OwnerKind},
    detectors::{Detectors, NodeFacts, Subject, metrics::DetectorMetrics},
    events::Event,
    findings::{metrics::FindingMetrics, store::FindingStore},
};

/// Most events taken from the queue at once.
pub const BATCH: usize = 256;

/// What the audit tells the detectors, replaced after each audit.
pub type SharedFacts = Arc<RwLock<NodeFacts>>;

pub struct Pipeline {
    detectors: Detectors,
    facts: SharedFacts,
    findings: FindingStore,
    finding_metrics: FindingMetrics,
    detector_metrics: DetectorMetrics,
    log_events: bool,
    own_pid: u32,
}

impl Pipeline {
    pub fn new(
        detectors: Detectors,
        facts: SharedFacts,
        findings: FindingStore,
        finding_metrics: FindingMetrics,
        detector_metrics: DetectorMetrics,
        log_events: bool,
    ) -> Self {
        Self { detectors, facts, findings, finding_metrics, detector_metrics, log_events, own_pid: std::process::id() }
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Attributed>) {
        // As many events as wait (up to BATCH) per wake-up.
        let mut batch = Vec::with_capacity(BATCH);
        while events.recv_many(&mut batch, BATCH).await > 0 {
            self.handle_batch(&mut batch);
        }
    }

    /// Events that arrived together (emptied here), all seen at one clock read.
    pub fn handle_batch(&mut self, batch: &mut Vec<Attributed>) {
        let now = Instant::now();
        for attributed in batch.drain(..) {
            self.handle(attributed, now);
        }
    }

    /// One event, seen by the detectors at `now`: how its process died, the findings it opens
    /// or refreshes, their metrics.
    fn handle(&mut self, Attributed { record, owner, .. }: Attributed, now: Instant) {
        // The kernel drops the daemon's own events; its children (the audit's `--version`
        // runs of runtime binaries) are dropped here.
        if record.event.task().ppid == self.own_pid {
            return;
        }
        if self.log_events {
            log_event(&record.event, &owner);
        }
        let subject = Subject::of(&owner, &record.event);
        // Read, not copied: the audit replaces the facts rarely, events come all the time.
        let (death, found) = match self.facts.read() {
            Ok(facts) => self.detectors.observe(&record.event, &subject, &facts, now),
            Err(_) => self.detectors.observe(&record.event, &subject, &NodeFacts::default(), now),
        };
        if let Some(death) = &death {
            let mut labels = owner.labels();
            if matches!(owner.kind, OwnerKind::Host | OwnerKind::Unknown { .. }) {
                // A host process outside any unit: name it by its command (series capped).
                labels.service = format!("process:{}", death.exit.task.comm);
            }
            self.detector_metrics.record(death, &labels);
        }
        if !found.is_empty() {
            let now = std::time::SystemTime::now();
            for finding in found {
                let changes = self.findings.record("detectors", finding, now);
                self.finding_metrics.record(&changes);
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
