//! Drains the kernel ring buffer into the pipeline. The reader wakes on readiness
//! (`AsyncFd`), drains every record, decodes it and hands it on with `try_send`: it never waits
//! for slow work downstream. A full queue drops the event and counts it
//! (`events_dropped_total{reason="queue_full"}`); nothing is lost silently.

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};
use tracing::{debug, warn};

use super::metrics::{DropLabels, KindLabels, ProbeMetrics};
use crate::events::{Kind, Record, decode};

/// Reads until `shutdown` turns true. Returns the number of records read.
pub async fn run(
    ring: RingBuf<MapData>,
    out: mpsc::Sender<Record>,
    metrics: ProbeMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    // SAFETY: the ring buffer owns its map fd, which stays open and the same for as long as
    // the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    let queue_full = metrics.dropped.get_or_create(&DropLabels { reason: "queue_full" }).clone();
    let decode_error = metrics.dropped.get_or_create(&DropLabels { reason: "decode_error" }).clone();
    // One counter handle per kind, so the hot loop takes no lock.
    let per_kind: Vec<_> = Kind::ALL
        .iter()
        .map(|kind| metrics.events.get_or_create(&KindLabels { kind: kind.as_str() }).clone())
        .collect();
    let mut read = 0u64;
    loop {
        let mut guard = tokio::select! {
            guard = ring.readable_mut() => guard?,
            _ = shutdown.changed() => break,
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            read += 1;
            match decode(&item) {
                Ok(record) => {
                    if let Some(counter) = per_kind.get(record.event.kind() as usize) {
                        counter.inc();
                    }
                    if let Err(err) = out.try_send(record) {
                        queue_full.inc();
                        if matches!(err, mpsc::error::TrySendError::Closed(_)) {
                            debug!("pipeline closed; reader stops");
                            return Ok(read);
                        }
                    }
                }
                Err(err) => {
                    decode_error.inc();
                    warn!("undecodable kernel record: {err}");
                }
            }
        }
        guard.clear_ready();
        if *shutdown.borrow() {
            break;
        }
    }
    Ok(read)
}
