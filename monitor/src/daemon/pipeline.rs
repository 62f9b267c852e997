//! The consumer of attributed events: detectors, then findings and their metrics. One task,
//! one event at a time; `cargo bench --bench pipeline` drives this same code. What the latest
//! audit says of the node reaches the detectors here, taken when it changed, between batches.
//! Every [`MemoryReads::interval`] the memory cgroups of the workloads seen are read off the
//! event path (a blocking task) and their counts go to the detectors' [`MemoryWatch`].

use std::{path::Path, time::{Duration, Instant}};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    attribution::{Attributed, Owner, OwnerKind},
    detectors::{
        Actor, AuditContext, Detectors,
        memory_cgroups::{MemoryWatch, MissedIn, NodeReading, Reading, Target},
        metrics::DetectorMetrics,
    },
    events::Event,
    audit::Reports,
    findings::{Origin, store::FindingStore},
    node::{cgroupfs::Mounts, host_root::HostRoot, memory_pressure},
};

/// Most events taken from the queue at once.
pub const BATCH: usize = 256;

/// The periodic read of the workloads' memory cgroups and of the node's memory pressure and
/// OOM kill count.
pub struct MemoryReads {
    pub watch: MemoryWatch,
    pub interval: Duration,
    /// Where the hierarchies are mounted (the monitor's view).
    pub mounts: Mounts,
    /// The node's `/proc/pressure/memory` is read inside it.
    pub host: HostRoot,
}

type ReadTask = JoinHandle<(Vec<Reading>, NodeReading)>;

pub struct Pipeline {
    detectors: Detectors,
    memory: Option<MemoryReads>,
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
            memory: None,
            audits,
            facts: AuditContext::default(),
            findings,
            detector_metrics,
            log_events,
        }
    }

    /// Also reads the memory cgroups of the workloads seen, periodically.
    pub fn with_memory_reads(mut self, reads: MemoryReads) -> Self {
        self.memory = Some(reads);
        self
    }

    /// Handles every batch of events until the stream ends; `stage` is busy during each.
    pub async fn run(mut self, mut events: mpsc::Receiver<Attributed>, stage: crate::progress::Stage) {
        // As many events as wait (up to BATCH) per wake-up.
        let mut batch = Vec::with_capacity(BATCH);
        let period = self.memory.as_ref().map_or(Duration::from_secs(3600), |m| m.interval.max(Duration::from_millis(100)));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reading: Option<ReadTask> = None;
        loop {
            tokio::select! {
                taken = events.recv_many(&mut batch, BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    let _busy = stage.busy();
                    self.handle_batch(&mut batch);
                }
                _ = tick.tick(), if self.memory.is_some() && reading.is_none() => {
                    reading = self.memory.as_ref().map(start_read);
                }
                done = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                    reading = None;
                    if let Ok((readings, node)) = done {
                        self.memory_read(&readings, node);
                    }
                }
            }
        }
    }

    /// What a read of the memory cgroups and the node found: missed kills counted and logged,
    /// pressure series, findings.
    fn memory_read(&mut self, readings: &[Reading], node: NodeReading) {
        let Some(memory) = self.memory.as_mut() else { return };
        let observed = memory.watch.observe(readings, node, Instant::now());
        for missed in &observed.missed {
            match &missed.missed_in {
                MissedIn::Cgroup { owner, path } => warn!(
                    owner = %owner.display(),
                    cgroup = %path,
                    kernel = missed.kernel,
                    probes = missed.probes,
                    "the kernel counted {} OOM kill(s) the probes did not deliver",
                    missed.missed
                ),
                MissedIn::UnfollowedCgroups { in_followed_cgroups } => warn!(
                    kernel = missed.kernel,
                    probes = missed.probes,
                    in_followed_cgroups,
                    "the kernel's node-wide count ({} oom_kill) has {} OOM kill(s) the probes did not deliver, whose cgroups the monitor did not follow",
                    memory_pressure::VMSTAT,
                    missed.missed
                ),
            }
            self.detector_metrics.record_missed(missed);
        }
        self.detector_metrics.set_pressure(observed.pressure);
        let now = std::time::SystemTime::now();
        for finding in observed.findings {
            self.findings.record(Origin::Detectors, finding, now);
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
        self.detector_metrics.set_forgotten(self.detectors.forgotten());
    }

    /// One event, seen by the detectors at `now`: how its process died, the findings it opens
    /// or refreshes, their metrics.
    fn handle(&mut self, Attributed { record, owner, other }: Attributed, now: Instant) {
        if self.log_events {
            log_event(&record.event, &owner);
        }
        if let Some(memory) = self.memory.as_mut() {
            // What the kernel counts as OOM kills: each kill, and a group's victim again.
            memory.watch.note(&owner, matches!(record.event, Event::OomKill(_) | Event::OomKillRecounted(_)), now);
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

/// Reads the node's OOM kill count, the targets' files and the node's pressure on a blocking
/// thread.
fn start_read(memory: &MemoryReads) -> ReadTask {
    let targets = memory.watch.targets();
    let (mounts, host) = (memory.mounts.clone(), memory.host.clone());
    tokio::task::spawn_blocking(move || {
        // Before the targets: see MemoryWatch::observe.
        let oom_kills = memory_pressure::read_node_oom_kills();
        let readings = targets.iter().map(|target| read_target(target, &mounts)).collect();
        (readings, NodeReading { pressure: memory_pressure::read_node(&host), oom_kills })
    })
}

/// A target's OOM kill count (the memory controller's hierarchy: v1's when memory is on v1)
/// and its pressure (the unified hierarchy's).
fn read_target(target: &Target, mounts: &Mounts) -> Reading {
    let relative = Path::new(target.path.trim_start_matches('/'));
    let memory = mounts.memory_v1.as_ref().or(mounts.v2.as_ref());
    Reading {
        path: target.path.clone(),
        id: memory.filter(|_| target.oom_kills).and_then(|m| memory_pressure::cgroup_id(&m.join(relative))),
        oom_kills: memory.filter(|_| target.oom_kills).and_then(|m| memory_pressure::oom_kills(&m.join(relative))),
        pressure: mounts.v2.as_ref().filter(|_| target.pressure).and_then(|m| memory_pressure::read_cgroup(&m.join(relative))),
    }
}

fn log_event(event: &Event, owner: &Owner) {
    match serde_json::to_string(event) {
        Ok(json) => info!(target: "monitor::events", owner = %owner.display(), "{json}"),
        Err(err) => warn!("cannot serialise event: {err}"),
    }
}
