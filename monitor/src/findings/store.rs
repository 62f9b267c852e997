//! The open findings, as `/findings` and the findings metrics show them: each with when it was
//! first and last seen and how often. Producers either replace their whole set (the audit: a
//! finding not in the new set has closed) or report occurrences (detectors: a finding closes
//! after a quiet period, [`FindingStore::close_quiet`]). Opening and closing are logged once
//! each, and openings counted (`findings_opened_total`).
//!
//! What a workload can write reaches findings (a path it execs, a socket it connects to), so
//! the store is bounded: every text is cut and stripped of control characters
//! ([`Finding::bounded`]), and at most [`MAX_OPEN_PER_RULE`] findings of one rule from the
//! detectors are open at once; the rest fold into one finding of that rule (subject
//! `_folded`) that counts them, and `findings_folded_total{rule}` counts each fold.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use prometheus_client::metrics::{counter::Counter, family::Family};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    Finding, Origin, Severity,
    metrics::{FoldedLabels, OpenedLabels},
};

/// Most findings of one rule open at once from the detectors (whose subjects come from what
/// processes do); past it, new subjects fold into the rule's `_folded` finding.
pub const MAX_OPEN_PER_RULE: usize = 64;
/// The subject of a rule's folded finding.
pub const FOLDED_SUBJECT: &str = "_folded";

/// A finding that is open, with its history.
#[derive(Clone, Debug, Serialize)]
pub struct OpenFinding {
    /// Stable id: `rule/subject`.
    pub id: String,
    /// Who produced it (`source` on the wire: `audit` or `detectors`).
    #[serde(rename = "source")]
    pub origin: Origin,
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(with = "unix_seconds")]
    pub first_seen: SystemTime,
    #[serde(with = "unix_seconds")]
    pub last_seen: SystemTime,
    pub count: u64,
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0))
    }
}

/// What changed in an update, for metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub opened: Vec<(String, &'static str, Severity, String)>,
    pub closed: Vec<(String, &'static str, Severity, String)>,
    /// Rules of findings folded past the cap.
    pub folded: Vec<&'static str>,
}

#[derive(Debug, Default)]
struct Inner {
    open: HashMap<String, OpenFinding>,
    /// Open findings per rule (for the cap).
    per_rule: HashMap<&'static str, usize>,
    /// Bumped by every change, so an encoding of the store can be reused until the next.
    generation: u64,
}

impl Inner {
    /// Opens the finding, or refreshes it (content, last seen, count) when already open.
    fn upsert(&mut self, id: String, origin: Origin, finding: Finding, now: SystemTime, changes: &mut Changes) {
        self.generation += 1;
        // A detector's own fold (a caller past its cap of subjects) is counted as a fold like
        // the store's.
        if origin != Origin::Audit && finding.folded {
            changes.folded.push(finding.rule);
        }
        match self.open.get_mut(&id) {
            Some(open) => {
                open.finding = finding;
                open.last_seen = now;
                open.count += 1;
            }
            None if origin != Origin::Audit && self.per_rule.get(finding.rule).copied().unwrap_or(0) >= MAX_OPEN_PER_RULE => {
                self.fold(origin, finding, now, changes);
            }
            None => {
                log_opened(&id, &finding);
                *self.per_rule.entry(finding.rule).or_default() += 1;
                let open = OpenFinding { id: id.clone(), origin, finding, first_seen: now, last_seen: now, count: 1 };
                changes.opened.push(entry(&open));
                self.open.insert(id, open);
            }
        }
    }

    /// Counts `finding` in its rule's folded finding (opened at the first fold).
    fn fold(&mut self, origin: Origin, finding: Finding, now: SystemTime, changes: &mut Changes) {
        let id = format!("{}/{FOLDED_SUBJECT}", finding.rule);
        changes.folded.push(finding.rule);
        let latest = finding.subject.clone();
        match self.open.get_mut(&id) {
            Some(open) => {
                open.count += 1;
                open.last_seen = now;
                open.finding.title = folded_title(finding.rule, open.count);
                open.finding.evidence = vec![super::Evidence::new("latest folded subject", latest)];
            }
            None => {
                let mut folded = finding;
                folded.subject = FOLDED_SUBJECT.into();
                folded.title = folded_title(folded.rule, 1);
                folded.evidence = vec![super::Evidence::new("latest folded subject", latest)];
                folded.remediation = format!("More than {MAX_OPEN_PER_RULE} subjects of this rule at once: look at the open ones first; the folded ones are counted, not listed (a flood of distinct paths or sockets is itself a sign of a misbehaving workload).");
                log_opened(&id, &folded);
                let open = OpenFinding { id: id.clone(), origin, finding: folded, first_seen: now, last_seen: now, count: 1 };
                changes.opened.push(entry(&open));
                self.open.insert(id, open);
            }
        }
    }

    /// Removes an open finding, keeping the per-rule count.
    fn remove(&mut self, id: &str) -> Option<OpenFinding> {
        let removed = self.open.remove(id)?;
        self.generation += 1;
        if removed.finding.subject != FOLDED_SUBJECT
            && let Some(n) = self.per_rule.get_mut(removed.finding.rule)
        {
            *n = n.saturating_sub(1);
        }
        Some(removed)
    }
}

/// Shared store of open findings.
#[derive(Clone, Debug, Default)]
pub struct FindingStore {
    inner: Arc<RwLock<Inner>>,
    /// `findings_opened_total` and `findings_folded_total`, registered by
    /// `findings::metrics::register`.
    pub(super) opened: Family<OpenedLabels, Counter>,
    pub(super) folded: Family<FoldedLabels, Counter>,
}

fn folded_title(rule: &str, count: u64) -> String {
    format!("{count} more {rule} findings folded: at most {MAX_OPEN_PER_RULE} of one rule are open at once")
}

fn id_of(finding: &Finding) -> String {
    format!("{}/{}", finding.rule, finding.subject)
}

fn entry(f: &OpenFinding) -> (String, &'static str, Severity, String) {
    (f.id.clone(), f.finding.rule, f.finding.severity, f.finding.subject.clone())
}

impl FindingStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every finding of `origin` with `findings`: new ones open, missing ones close.
    pub fn replace(&self, origin: Origin, findings: Vec<Finding>, now: SystemTime) -> Changes {
        let Ok(mut inner) = self.inner.write() else { return Changes::default() };
        let mut changes = Changes::default();
        let mut current: HashMap<String, Finding> = HashMap::new();
        for finding in findings {
            let finding = finding.bounded();
            current.insert(id_of(&finding), finding);
        }
        let stale: Vec<String> = inner
            .open
            .iter()
            .filter(|(id, f)| f.origin == origin && !current.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(closed) = inner.remove(&id) {
                info!(finding = %id, rule = closed.finding.rule, "finding closed: {}", closed.finding.title);
                changes.closed.push(entry(&closed));
            }
        }
        for (id, finding) in current {
            inner.upsert(id, origin, finding, now, &mut changes);
        }
        drop(inner);
        self.count(&changes);
        changes
    }

    /// Records one occurrence of a detector's finding (opens it or refreshes it).
    pub fn record(&self, origin: Origin, finding: Finding, now: SystemTime) -> Changes {
        let Ok(mut inner) = self.inner.write() else { return Changes::default() };
        let mut changes = Changes::default();
        let finding = finding.bounded();
        inner.upsert(id_of(&finding), origin, finding, now, &mut changes);
        drop(inner);
        self.count(&changes);
        changes
    }

    fn count(&self, changes: &Changes) {
        for (_, rule, severity, _) in &changes.opened {
            self.opened.get_or_create(&OpenedLabels { rule, severity: severity.as_str() }).inc();
        }
        for rule in &changes.folded {
            self.folded.get_or_create(&FoldedLabels { rule }).inc();
        }
    }

    /// Closes `origin`'s findings not seen for `quiet`.
    pub fn expire(&self, origin: Origin, quiet: Duration, now: SystemTime) -> Changes {
        let Ok(mut inner) = self.inner.write() else { return Changes::default() };
        let quiet_ones: Vec<String> = inner
            .open
            .values()
            .filter(|f| f.origin == origin && now.duration_since(f.last_seen).unwrap_or_default() >= quiet)
            .map(|f| f.id.clone())
            .collect();
        let mut changes = Changes::default();
        for id in quiet_ones {
            if let Some(closed) = inner.remove(&id) {
                info!(finding = %id, "finding closed after {}s without recurrence", quiet.as_secs());
                changes.closed.push(entry(&closed));
            }
        }
        changes
    }

    /// Open findings, most severe first, then by id.
    pub fn snapshot(&self) -> Vec<OpenFinding> {
        self.with_open(|open| open.iter().map(|f| (*f).clone()).collect())
    }

    /// Calls `f` with the open findings, most severe first, then by id, under the store's read
    /// lock: nothing is copied (exporters encode them as they are).
    pub fn with_open<T>(&self, f: impl FnOnce(&[&OpenFinding]) -> T) -> T {
        let Ok(inner) = self.inner.read() else { return f(&[]) };
        let mut all: Vec<&OpenFinding> = inner.open.values().collect();
        all.sort_by(|a, b| b.finding.severity.cmp(&a.finding.severity).then_with(|| a.id.cmp(&b.id)));
        f(&all)
    }

    /// Changes with every opening, refresh and closing.
    pub fn generation(&self) -> u64 {
        self.inner.read().map(|inner| inner.generation).unwrap_or(0)
    }

    /// `/findings`' body: `{"findings": [...]}`, the open findings in [`Self::with_open`]'s order.
    pub fn encode_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            findings: &'a [&'a OpenFinding],
        }
        self.with_open(|open| serde_json::to_vec(&Body { findings: open }).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes()))
    }

    /// Closes `origin`'s findings once they did not recur for `quiet` (checked every 5 s, or
    /// every `quiet` when shorter), until `shutdown` turns true.
    pub async fn close_quiet(self, origin: Origin, quiet: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5).min(quiet));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.expire(origin, quiet, SystemTime::now());
                }
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
            }
        }
    }
}

fn log_opened(id: &str, finding: &Finding) {
    match finding.severity {
        Severity::Critical | Severity::Warning => {
            warn!(finding = %id, rule = finding.rule, severity = %finding.severity, "finding opened: {}", finding.title)
        }
        Severity::Info => info!(finding = %id, rule = finding.rule, "finding opened: {}", finding.title),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Rule;

    const RULE: Rule = Rule { id: "r", severity: Severity::Warning, title: "t", description: "d" };

    #[test]
    fn replace_opens_refreshes_and_closes() {
        let store = FindingStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let changes = store.replace(Origin::Audit, vec![Finding::new(&RULE, "a", "A"), Finding::new(&RULE, "b", "B")], t0);
        assert_eq!(changes.opened.len(), 2);
        let t1 = t0 + Duration::from_secs(60);
        let changes = store.replace(Origin::Audit, vec![Finding::new(&RULE, "a", "A")], t1);
        assert_eq!(changes.closed.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["r/b"]);
        let open = store.snapshot();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].count, open[0].first_seen, open[0].last_seen), (2, t0, t1));
    }

    #[test]
    fn a_flood_of_subjects_folds_past_the_cap_and_is_counted() {
        let store = FindingStore::new();
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..MAX_OPEN_PER_RULE + 500 {
            store.record(Origin::Detectors, Finding::new(&RULE, format!("/tmp/x{i}\n"), "X"), t0);
        }
        let open = store.snapshot();
        assert_eq!(open.len(), MAX_OPEN_PER_RULE + 1, "the cap, and the folded finding");
        let folded = open.iter().find(|f| f.finding.subject == FOLDED_SUBJECT).expect("folded");
        assert_eq!(folded.count, 500);
        assert!(folded.finding.title.starts_with("500 more r findings folded"), "{}", folded.finding.title);
        assert!(open.iter().all(|f| !f.finding.subject.contains('\n')), "control characters stripped");
        let folds = store.folded.get_or_create(&FoldedLabels { rule: "r" }).get();
        assert_eq!(folds, 500);
        // A subject shaped like a fold is not one: a workload chooses its paths.
        store.record(Origin::Detectors, Finding::new(&RULE, "/tmp/x|_folded", "X"), t0);
        assert_eq!(store.folded.get_or_create(&FoldedLabels { rule: "r" }).get(), 501, "folded by the store's cap, once");
        let caller = FindingStore::new();
        caller.record(Origin::Detectors, Finding::new(&RULE, "/tmp/y|_folded", "X"), t0);
        assert_eq!(caller.folded.get_or_create(&FoldedLabels { rule: "r" }).get(), 0, "a path named like a fold");
        caller.record(Origin::Detectors, Finding::new(&RULE, "pid:1|_folded", "X").folded(), t0);
        assert_eq!(caller.folded.get_or_create(&FoldedLabels { rule: "r" }).get(), 1, "a detector's fold");
        // Closing frees room for new subjects.
        store.expire(Origin::Detectors, Duration::from_secs(1), t0 + Duration::from_secs(10));
        store.record(Origin::Detectors, Finding::new(&RULE, "/tmp/new", "X"), t0 + Duration::from_secs(10));
        assert!(store.snapshot().iter().any(|f| f.finding.subject == "/tmp/new"));
    }

    #[test]
    fn detector_findings_close_after_quiet_period() {
        let store = FindingStore::new();
        let t0 = SystemTime::UNIX_EPOCH;
        store.record(Origin::Detectors, Finding::new(&RULE, "x", "X"), t0);
        store.record(Origin::Detectors, Finding::new(&RULE, "x", "X"), t0 + Duration::from_secs(10));
        assert!(store.expire(Origin::Detectors, Duration::from_secs(60), t0 + Duration::from_secs(30)).closed.is_empty());
        assert_eq!(store.expire(Origin::Detectors, Duration::from_secs(60), t0 + Duration::from_secs(70)).closed.len(), 1);
        assert!(store.snapshot().is_empty());
    }
}
