//! Drains the kernel ring buffer into the pipeline. The kernel programs wake the reader only
//! for urgent events (OOM kills, fatal signals) or when a batch has built up; otherwise the
//! reader drains on a short timer (`DRAIN_INTERVAL`), so a storm of events costs the traced
//! processes no wake-up each. Every record is decoded and handed on with `try_send`: the
//! reader never waits for slow work downstream. A full queue drops the event and counts it
//! (`events_dropped_total{reason="queue_full"}`); nothing is lost silently. OOM kills go
//! through [`OomJoin`], which adds the kernel's report of each kill before passing it on; a
//! kill is given up on (passed on without its report) only once a drain has emptied the ring
//! buffer, so a report already in it is always joined however late the reader ran.

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use prometheus_client::metrics::counter::Counter;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};
use tracing::{debug, warn};

use super::metrics::{DropLabels, KindLabels, ProbeMetrics};
use crate::events::{Kind, Record, decode, oom_join::OomJoin};

/// Longest an ordinary event waits in the ring buffer when no wake-up comes.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

struct Drain {
    out: mpsc::Sender<Record>,
    per_kind: Vec<Counter>,
    queue_full: Counter,
    decode_error: Counter,
    oom: OomJoin,
    oom_unmatched: Counter,
    read: u64,
}

impl Drain {
    /// Reads every record available; false when the pipeline is gone.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        let now = Instant::now();
        while let Some(item) = ring.next() {
            self.read += 1;
            match decode(&item) {
                Ok(record) => {
                    if let Some(counter) = self.per_kind.get(record.event.kind() as usize) {
                        counter.inc();
                    }
                    if let Some(record) = self.oom.push(record, now)
                        && !self.send(record)
                    {
                        return false;
                    }
                }
                Err(err) => {
                    self.decode_error.inc();
                    warn!("undecodable kernel record: {err}");
                }
            }
            // After each record, so what a joined kill held goes on, and the queue behind a
            // waiting kill stays bounded in a long drain. A kill past its wait is not given up
            // on here: after a late wake-up its report may be further on in this drain.
            if !self.send_released(None) {
                return false;
            }
        }
        // Kills the kernel reported and no event of ours showed: the metric follows the join's
        // count (only this reader moves it).
        self.oom_unmatched.inc_by(self.oom.unmatched_reports() - self.oom_unmatched.get());
        // The ring buffer is empty: kills whose report never came go on once their wait is over
        // (checked on every tick).
        self.send_released(Some(now))
    }

    /// Hands on what the OOM join releases: with `now` (between drains) also kills whose wait
    /// is over, without (in a drain) only what no waiting kill holds. False when the pipeline
    /// is gone.
    fn send_released(&mut self, now: Option<Instant>) -> bool {
        while let Some(record) = match now {
            Some(now) => self.oom.release(now),
            None => self.oom.release_ready(),
        } {
            if !self.send(record) {
                return false;
            }
        }
        true
    }

    /// Hands a record to the pipeline; false when the pipeline is gone.
    fn send(&mut self, record: Record) -> bool {
        if let Err(err) = self.out.try_send(record) {
            self.queue_full.inc();
            if matches!(err, mpsc::error::TrySendError::Closed(_)) {
                debug!("pipeline closed; reader stops");
                return false;
            }
        }
        true
    }
}

/// Reads until `shutdown` turns true. Returns the number of records read.
pub async fn run(
    ring: RingBuf<MapData>,
    out: mpsc::Sender<Record>,
    metrics: ProbeMetrics,
    stage: crate::progress::Stage,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    // SAFETY: the ring buffer owns its map fd, which stays open and the same for as long as
    // the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    let mut drain = Drain {
        out,
        // One counter handle per kind, so the hot loop takes no lock.
        per_kind: Kind::ALL
            .iter()
            .map(|kind| metrics.events.get_or_create(&KindLabels { kind: kind.as_str() }).clone())
            .collect(),
        queue_full: metrics.dropped.get_or_create(&DropLabels { reason: "queue_full" }).clone(),
        decode_error: metrics.dropped.get_or_create(&DropLabels { reason: "decode_error" }).clone(),
        oom: OomJoin::default(),
        oom_unmatched: metrics.oom_reports_unmatched.clone(),
        read: 0,
    };
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let more = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let more = drain.drain(guard.get_inner_mut());
                guard.clear_ready();
                more
            }
            _ = tick.tick() => drain.drain(ring.get_mut()),
            _ = shutdown.changed() => break,
        };
        if !more || *shutdown.borrow() {
            break;
        }
        // Every round, events or not (the drain tick wakes it): silence means it is stuck.
        stage.beat();
    }
    Ok(drain.read)
}
