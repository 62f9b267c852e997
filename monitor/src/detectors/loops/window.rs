//! The machinery every loop detector shares: occurrence times kept within a sliding window,
//! when an open loop's finding is due again (`refresh`), a keyed map that forgets its oldest
//! keys past a capacity, and the texts of counts and windows in titles. It decides nothing
//! about what a loop is: thresholds, keys and findings are each detector's.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

/// Occurrences of a repeated failure within a window.
#[derive(Debug, Default)]
pub(super) struct Occurrences {
    times: VecDeque<Instant>,
    pub(super) reported: Reported,
}

impl Occurrences {
    pub(super) fn push(&mut self, now: Instant, window: Duration) -> usize {
        self.times.push_back(now);
        while self.times.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.times.pop_front();
        }
        self.times.truncate_front_to(MAX_OCCURRENCES);
        self.times.len()
    }
}

/// Occurrence times kept per loop key (memory stays bounded under a storm).
const MAX_OCCURRENCES: usize = 64;

/// A count of occurrences as the titles say it: past the times kept, a lower bound.
pub(super) fn occurrences_text(count: usize) -> String {
    if count >= MAX_OCCURRENCES { format!("at least {count}") } else { count.to_string() }
}

/// When a loop's finding was last reported.
#[derive(Debug, Default)]
pub(super) struct Reported(Option<Instant>);

impl Reported {
    /// Whether to report now (the first time, or `refresh` after the last); if so, notes it.
    pub(super) fn due(&mut self, now: Instant, refresh: Duration) -> bool {
        let due = self.0.is_none_or(|at| now.saturating_duration_since(at) >= refresh);
        if due {
            self.0 = Some(now);
        }
        due
    }
}

pub(super) trait TruncateFront {
    fn truncate_front_to(&mut self, len: usize);
}

impl<T> TruncateFront for VecDeque<T> {
    fn truncate_front_to(&mut self, len: usize) {
        while self.len() > len {
            self.pop_front();
        }
    }
}

/// A map that forgets its oldest keys past a capacity.
#[derive(Debug)]
pub(super) struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    capacity: usize,
    /// Keys forgotten to make room.
    evicted: u64,
}

impl<V: Default> Bounded<V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), evicted: 0 }
    }

    pub(super) fn entry(&mut self, key: &str) -> &mut V {
        if !self.map.contains_key(key) {
            while self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                    self.evicted += 1;
                }
            }
            self.order.push_back(key.to_string());
            self.map.insert(key.to_string(), V::default());
        }
        self.map.get_mut(key).expect("inserted above")
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// Keys forgotten so far to make room for new ones.
    pub(super) fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Distinct subjects one caller may have findings about at once (within the window): a
/// caller that fails on a new path each time (a workload choosing them) gets one finding per
/// path up to this, then one finding about itself that counts the rest.
pub(super) const MAX_SUBJECTS_PER_CALLER: usize = 8;

/// The subjects each caller has findings about, within the window.
#[derive(Debug, Default)]
pub(super) struct CallerSubjects {
    by_caller: Bounded<VecDeque<(String, Instant)>>,
}

impl CallerSubjects {
    pub(super) fn new(callers: usize) -> Self {
        Self { by_caller: Bounded::new(callers) }
    }

    /// Whether `subject` may have a finding of its own for `caller` (it has one already, or
    /// the caller is under the cap); `false`: fold it into the caller's finding.
    pub(super) fn admit(&mut self, caller: &str, subject: &str, now: Instant, window: Duration) -> bool {
        let seen = self.by_caller.entry(caller);
        seen.retain(|(_, at)| now.saturating_duration_since(*at) <= window);
        if let Some(entry) = seen.iter_mut().find(|(s, _)| s == subject) {
            entry.1 = now;
            return true;
        }
        if seen.len() < MAX_SUBJECTS_PER_CALLER {
            seen.push_back((subject.to_string(), now));
            return true;
        }
        false
    }

    /// Callers forgotten so far to make room for new ones.
    pub(super) fn evicted(&self) -> u64 {
        self.by_caller.evicted()
    }
}

impl<V: Default> Default for Bounded<V> {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// A duration as the titles and evidence say it: `5m`, `2.5s`, `900ms`.
pub(in crate::detectors) fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(120) {
        format!("{}m", d.as_secs() / 60)
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{
        detectors::{
            AuditContext,
            loops::{LoopConfig, LoopDetector, test_support::*},
        },
        events::{Connect, Event, SocketAddress},
    };

    /// A failure storm: the finding opens at the threshold, then is reported at most once per
    /// `refresh` with the count of the moment, however many failures come in between.
    #[test]
    fn an_open_loop_is_reported_again_at_most_once_per_refresh() {
        let mut detector = LoopDetector::new(LoopConfig { refresh: Duration::from_secs(1), ..LoopConfig::default() });
        let facts = AuditContext::default();
        let t0 = Instant::now();
        let refused = |tgid| {
            Event::Connect(Connect {
                task: task(tgid, "kubelet"),
                address: SocketAddress::Inet { ip: "127.0.0.1".parse().expect("ip"), port: 6443 },
                errno: libc::ECONNREFUSED,
                asynchronous: true,
            })
        };
        let mut reports = Vec::new();
        for i in 0..250u64 {
            // Every 10 ms for 2.5 s.
            let at = t0 + Duration::from_millis(10 * i);
            for finding in detector.observe(&refused(i as u32), None, &host(), &facts, at) {
                reports.push((i, finding.title));
            }
        }
        let at: Vec<u64> = reports.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, [2, 102, 202], "opened at the third failure, then once a second");
        assert!(reports[0].1.contains(": 3 failed connects in 5m"), "{}", reports[0].1);
        assert!(
            reports[1].1.contains(": at least 64 failed connects in 5m"),
            "past the times kept, a bound: {}",
            reports[1].1
        );
    }
}
