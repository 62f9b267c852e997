//! Whether each stage is still making progress, as `/healthz` judges it. A stage marks itself
//! busy while it works on an input (a read of the node, a judgement, a batch of events) and a
//! periodic stage beats on every round; busy past its limit, or no beat within it, is a stall.
//! An idle stage waiting for input is healthy: waiting is not a stall.
//!
//! A leaf: every stage may take a [`Stage`] handle; only the wiring and `/healthz` see the
//! [`Watchdog`].

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Marks `busy_since` and `last_beat` hold when unset.
const NEVER: u64 = u64::MAX;

#[derive(Debug)]
struct StageState {
    name: &'static str,
    limit: Duration,
    /// Milliseconds since the watchdog's epoch when the current work began; [`NEVER`] when idle.
    busy_since: AtomicU64,
    /// Milliseconds since the epoch of the last beat; [`NEVER`] before the first.
    last_beat: AtomicU64,
}

/// Every stage's progress.
#[derive(Clone, Debug)]
pub struct Watchdog {
    epoch: Instant,
    stages: Arc<Mutex<Vec<Arc<StageState>>>>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self { epoch: Instant::now(), stages: Arc::default() }
    }
}

impl Watchdog {
    /// A stage that stalls when busy (or silent, once it beats) for longer than `limit`.
    pub fn stage(&self, name: &'static str, limit: Duration) -> Stage {
        let state = Arc::new(StageState { name, limit, busy_since: AtomicU64::new(NEVER), last_beat: AtomicU64::new(NEVER) });
        self.stages.lock().unwrap_or_else(|e| e.into_inner()).push(state.clone());
        Stage { state, epoch: self.epoch }
    }

    /// The stalled stages, each with what is wrong: `node reader: busy for 75s (limit 60s)`.
    pub fn stalled(&self) -> Vec<String> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for s in stages.iter() {
            let limit = s.limit.as_millis() as u64;
            let busy = s.busy_since.load(Ordering::Relaxed);
            if busy != NEVER && now.saturating_sub(busy) > limit {
                out.push(format!("{}: busy for {}s (limit {}s)", s.name, now.saturating_sub(busy) / 1000, limit / 1000));
            }
            let beat = s.last_beat.load(Ordering::Relaxed);
            if beat != NEVER && now.saturating_sub(beat) > limit {
                out.push(format!("{}: no progress for {}s (limit {}s)", s.name, now.saturating_sub(beat) / 1000, limit / 1000));
            }
        }
        out
    }
}

/// One stage's handle.
#[derive(Clone, Debug)]
pub struct Stage {
    state: Arc<StageState>,
    epoch: Instant,
}

impl Stage {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Marks the stage busy until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.state.busy_since.store(self.now(), Ordering::Relaxed);
        Busy(self)
    }

    /// A round of a periodic stage is done.
    pub fn beat(&self) {
        self.state.last_beat.store(self.now(), Ordering::Relaxed);
    }
}

/// Work in progress; idle again on drop.
#[must_use = "the stage is busy only while this guard lives"]
pub struct Busy<'a>(&'a Stage);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.state.busy_since.store(NEVER, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_past_the_limit_or_silent_past_it_is_a_stall_idle_is_not() {
        let watchdog = Watchdog::default();
        let reader = watchdog.stage("node reader", Duration::from_millis(30));
        let ring = watchdog.stage("ring reader", Duration::from_millis(30));
        let _idle = watchdog.stage("pipeline", Duration::from_millis(30));
        assert!(watchdog.stalled().is_empty());
        ring.beat();
        {
            let _busy = reader.busy();
            std::thread::sleep(Duration::from_millis(60));
            let stalled = watchdog.stalled();
            assert_eq!(stalled.len(), 2, "{stalled:?}");
            assert!(stalled[0].starts_with("node reader: busy for"), "{stalled:?}");
            assert!(stalled[1].starts_with("ring reader: no progress for"), "{stalled:?}");
        }
        ring.beat();
        assert!(watchdog.stalled().is_empty(), "work done, beat again: {:?}", watchdog.stalled());
    }
}
