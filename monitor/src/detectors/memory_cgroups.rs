//! The memory cgroups of the node's workloads as the kernel counts them: OOM kills the probes
//! missed (the kernel's `oom_kill` count of a cgroup against the kills the probes delivered for
//! it) and memory pressure (PSI) of pods, node daemons and the node, with a finding when a
//! control-plane static pod, kubelet or the runtime is stalled on memory, before any OOM kill.
//!
//! [`MemoryWatch`] is fed the attributed events ([`MemoryWatch::note`]: which cgroups own
//! workloads, which OOM kills the probes saw) and, every read interval, what the node reader
//! read of the cgroups it asked for ([`MemoryWatch::targets`], [`MemoryWatch::observe`]); it
//! does no I/O. Kernel counts are cumulative since each cgroup was created. A cgroup created
//! after the monitor started (its kernfs id above [`MemoryWatchConfig::born_after`]: the kernel
//! hands out cgroup ids in increasing order) is compared from zero, so a kill in its first
//! seconds, before the monitor heard of the cgroup, is not lost; an older cgroup's first read is
//! its baseline (less the kills the probes already saw in it). Later reads compare deltas; a
//! kill the kernel counted and the probes did not is reported once it is still missing at the
//! next read (an event may be in flight during one read). Cgroups are dropped when they are
//! gone, and capped ([`MemoryWatchConfig::max_cgroups`], oldest first).
//!
//! Only cgroups heard of through events are followed: when every event of a cgroup is lost (a
//! ring buffer overflowing), its kills would go unseen. The node-wide check covers them: the
//! kernel's count of every OOM kill on the node (`/proc/vmstat` `oom_kill`, since the first read)
//! against every OOM kill event the probes delivered, of any owner, and the kills the cgroups'
//! checks already account for (reported, or missing once and due at the next read). What is left
//! was missed in cgroups the watch did not follow, and is reported the same way, owner unknown.
//! So every missed kill is reported once: by its cgroup's check, else by the node's.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

use crate::{
    attribution::{Owner, OwnerKind},
    findings::{Finding, Rule, Severity},
    node::{memory_pressure::MemoryPressure, runtimes},
};

pub const CONTROL_PLANE_MEMORY_PRESSURE: Rule = Rule {
    id: "control-plane-memory-pressure",
    severity: Severity::Warning,
    title: "A control-plane static pod, kubelet or the container runtime is stalled on memory",
    description: "The kernel's memory pressure (PSI `full`: every task of the cgroup stalled on memory at once) of a static pod (the control plane's, or a node's apiserver proxy), kubelet's or the runtime's unit added up to at least a share of a whole window (by default 10% of 60 s: `--memory-pressure-percent`, `--memory-pressure-window-seconds`): it is reclaiming at its memory.high or memory.max, or the node is, and an OOM kill is next. Evidence: avg10/avg60 and the seconds stalled in the window.",
};

/// Settings of [`MemoryWatch`].
#[derive(Clone, Debug)]
pub struct MemoryWatchConfig {
    /// Most cgroups followed (each: one series per PSI kind, one missed-kill check).
    pub max_cgroups: usize,
    /// Pressure must hold over this long to be a finding.
    pub window: Duration,
    /// Share of the window (percent) a cgroup must be fully stalled.
    pub full_percent: f64,
    /// A cgroup of a workload that is not part of the control plane is forgotten after this
    /// long without an event.
    pub ttl: Duration,
    /// The newest cgroup id of the memory hierarchy when the monitor started: a cgroup with a
    /// higher id was created since, and every kill the kernel counted in it is the monitor's
    /// to account for. `None`: unknown, every cgroup's first read is its baseline.
    pub born_after: Option<u64>,
}

impl Default for MemoryWatchConfig {
    fn default() -> Self {
        Self {
            max_cgroups: 512,
            window: Duration::from_secs(60),
            full_percent: 10.0,
            ttl: crate::attribution::owner_series::DEFAULT_SERIES_TTL,
            born_after: None,
        }
    }
}

/// What a pressure series is of: `node`, a `pod` (its cgroup), a host `service` (its unit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PressureScope {
    pub scope: &'static str,
    pub namespace: String,
    pub pod: String,
    pub service: String,
}

impl PressureScope {
    pub fn node() -> Self {
        Self { scope: "node", namespace: String::new(), pod: String::new(), service: String::new() }
    }
}

/// A cgroup the node reader is asked to read: its path in the hierarchy (`/kubepods/...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: Arc<str>,
    /// Read its OOM kill count.
    pub oom_kills: bool,
    /// Read its memory pressure.
    pub pressure: bool,
}

/// What was read of a target; both counts `None` when the cgroup is gone.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub path: Arc<str>,
    /// The kernfs id (inode number) of its memory cgroup directory.
    pub id: Option<u64>,
    pub oom_kills: Option<u64>,
    pub pressure: Option<MemoryPressure>,
}

/// What was read of the node.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeReading {
    /// Its memory pressure; `None`: no PSI.
    pub pressure: Option<MemoryPressure>,
    /// The kernel's count of OOM kills on the node (`/proc/vmstat` `oom_kill`); `None`: a
    /// kernel before 4.13 has none, and there is no node-wide check.
    pub oom_kills: Option<u64>,
}

/// Where OOM kills were missed.
#[derive(Clone, Debug)]
pub enum MissedIn {
    /// A followed memory cgroup, by its own count.
    Cgroup { owner: Arc<Owner>, path: Arc<str> },
    /// Cgroups the watch did not follow (whose, unknown), by the kernel's node-wide count.
    /// `in_followed_cgroups`: the kills the cgroups' checks account for, left out of it.
    UnfollowedCgroups { in_followed_cgroups: u64 },
}

/// OOM kills the kernel counted and the probes did not deliver.
#[derive(Clone, Debug)]
pub struct MissedKills {
    pub missed_in: MissedIn,
    /// Newly missed.
    pub missed: u64,
    /// The kernel's count since the baseline, and the probes'.
    pub kernel: u64,
    pub probes: u64,
}

/// What a read brings: missed kills, the pressure series now, findings.
#[derive(Debug, Default)]
pub struct Observed {
    pub missed: Vec<MissedKills>,
    pub pressure: Vec<(PressureScope, MemoryPressure)>,
    pub findings: Vec<Finding>,
}

/// The kills a check reported missed, and those missing at the previous read: a kill still
/// missing at the next read is missed; one missing at a single read may have had its event in
/// flight.
#[derive(Debug, Default)]
struct MissTally {
    reported: u64,
    /// Missing at the previous read, not yet reported.
    pending: u64,
}

impl MissTally {
    /// `unaccounted`: the kills the kernel counted and the probes did not deliver, now (those
    /// reported included). The newly missed: missing now and at the previous read.
    fn settle(&mut self, unaccounted: u64) -> u64 {
        let excess = unaccounted.saturating_sub(self.reported);
        let missed = excess.min(self.pending);
        self.pending = excess - missed;
        self.reported += missed;
        missed
    }
}

#[derive(Debug)]
struct KillCheck {
    owner: Arc<Owner>,
    probes: u64,
    /// The kernel's count at the first read, less the kills the probes had seen then (zero
    /// for a cgroup born after the monitor started).
    baseline: Option<u64>,
    /// The cgroup's kernfs id, once read.
    id: Option<u64>,
    /// Also counts the kills the node-wide check reported before this check's first read
    /// ([`NodeKillCheck::claim`]).
    tally: MissTally,
    last_event: Instant,
}

/// The node-wide check: the kernel's count of every OOM kill on the node against the OOM kill
/// events the probes delivered and the kills the cgroups' checks account for.
#[derive(Debug, Default)]
struct NodeKillCheck {
    /// The kernel's count at the first read. A kill in flight then is counted by the kernel
    /// before it and by the probes after: it can only hide a miss, never make one up.
    baseline: Option<u64>,
    /// OOM kill events delivered since the baseline, of any owner.
    probes: u64,
    /// What the cgroups' checks accounted for at the baseline (see
    /// [`MemoryWatch::accounted_in_cgroups`]): only what they account for since is left out.
    in_cgroups_at_baseline: u64,
    /// Reported here and not yet claimed by a cgroup's check.
    unclaimed: u64,
    tally: MissTally,
}

impl NodeKillCheck {
    /// The kernel's node-wide `count` now, and what the cgroups' checks account for now.
    fn compare(&mut self, count: u64, accounted_in_cgroups: u64) -> Option<MissedKills> {
        let Some(baseline) = self.baseline else {
            self.baseline = Some(count);
            self.probes = 0;
            self.in_cgroups_at_baseline = accounted_in_cgroups;
            return None;
        };
        let kernel = count.saturating_sub(baseline);
        let in_followed_cgroups = accounted_in_cgroups.saturating_sub(self.in_cgroups_at_baseline);
        let missed = self.tally.settle(kernel.saturating_sub(self.probes).saturating_sub(in_followed_cgroups));
        if missed == 0 {
            return None;
        }
        self.unclaimed += missed;
        Some(MissedKills { missed_in: MissedIn::UnfollowedCgroups { in_followed_cgroups }, missed, kernel, probes: self.probes })
    }

    /// A cgroup born after the start, first read with `kills` the probes did not deliver: some
    /// may be kills this check already reported, before the cgroup was followed. As many as
    /// were reported and not claimed are taken as those (counted once, here), the rest are the
    /// cgroup's to report.
    fn claim(&mut self, kills: u64) -> u64 {
        let claimed = kills.min(self.unclaimed);
        self.unclaimed -= claimed;
        claimed
    }
}

#[derive(Debug)]
struct PressureCgroup {
    scope: PressureScope,
    /// The finding's subject: `namespace/pod` or the unit.
    subject: String,
    display: String,
    control_plane: bool,
    samples: VecDeque<(Instant, MemoryPressure)>,
    last_event: Instant,
}

#[derive(Debug, Default)]
pub struct MemoryWatch {
    config: MemoryWatchConfig,
    kills: HashMap<Arc<str>, KillCheck>,
    /// Kills the cgroups' checks reported missed, those of checks since dropped included.
    reported_in_cgroups: u64,
    node_kills: NodeKillCheck,
    pressure: HashMap<Arc<str>, PressureCgroup>,
}

impl MemoryWatch {
    pub fn new(config: MemoryWatchConfig) -> Self {
        Self { config, kills: HashMap::new(), reported_in_cgroups: 0, node_kills: NodeKillCheck::default(), pressure: HashMap::new() }
    }

    /// One attributed event of `owner`; `oom_kill` when it is an OOM kill of its process.
    pub fn note(&mut self, owner: &Arc<Owner>, oom_kill: bool, now: Instant) {
        // Every kill the probes delivered, whoever the owner: the node-wide check's count.
        self.node_kills.probes += u64::from(oom_kill);
        let Some(path) = owner.cgroup_path.as_deref().filter(|p| safe_path(p)) else { return };
        let (kills, pressure) = match &owner.kind {
            OwnerKind::Container(c) => (true, c.pod.as_ref().filter(|p| !p.name.is_empty()).map(|pod| (parent(path), pod))),
            OwnerKind::Pod(pod) if !pod.name.is_empty() => (true, Some((path, pod))),
            OwnerKind::HostService { unit, .. } => {
                self.follow_pressure(path, now, || PressureCgroup {
                    scope: PressureScope { scope: "service", namespace: String::new(), pod: String::new(), service: unit.clone() },
                    subject: unit.clone(),
                    display: format!("host service {unit}"),
                    control_plane: runtimes::is_node_unit(unit),
                    samples: VecDeque::new(),
                    last_event: now,
                });
                (true, None)
            }
            _ => (false, None),
        };
        if let Some((pod_path, pod)) = pressure {
            self.follow_pressure(pod_path, now, || PressureCgroup {
                scope: PressureScope { scope: "pod", namespace: pod.namespace.clone(), pod: pod.name.clone(), service: String::new() },
                subject: format!("{}/{}", pod.namespace, pod.name),
                display: format!("{}/{}{}", pod.namespace, pod.name, if pod.static_pod { " (static pod)" } else { "" }),
                control_plane: pod.static_pod,
                samples: VecDeque::new(),
                last_event: now,
            });
        }
        if !kills {
            return;
        }
        if let Some(check) = self.kills.get_mut(path) {
            check.last_event = now;
            check.probes += u64::from(oom_kill);
            return;
        }
        if self.kills.len() >= self.config.max_cgroups
            && let Some(evicted) = evict_oldest(&mut self.kills, |c| (control_plane_owner(&c.owner), c.last_event))
        {
            self.forget(&evicted);
        }
        self.kills.insert(
            path.into(),
            KillCheck { owner: owner.clone(), probes: u64::from(oom_kill), baseline: None, id: None, tally: MissTally::default(), last_event: now },
        );
    }

    fn follow_pressure(&mut self, path: &str, now: Instant, make: impl FnOnce() -> PressureCgroup) {
        if let Some(followed) = self.pressure.get_mut(path) {
            followed.last_event = now;
            return;
        }
        if self.pressure.len() >= self.config.max_cgroups {
            evict_oldest(&mut self.pressure, |p| (p.control_plane, p.last_event));
        }
        self.pressure.insert(path.into(), make());
    }

    /// The cgroups to read now (each once).
    pub fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> =
            self.kills.keys().map(|path| Target { path: path.clone(), oom_kills: true, pressure: false }).collect();
        for path in self.pressure.keys() {
            match targets.iter_mut().find(|t| t.path == *path) {
                Some(target) => target.pressure = true,
                None => targets.push(Target { path: path.clone(), oom_kills: false, pressure: true }),
            }
        }
        targets
    }

    /// What was read at `now` of the [`Self::targets`] and of the node. The node's OOM kill
    /// count must have been read before the targets': a kill it counts is then in the counts
    /// of the cgroups read after, and their checks account for it no later than the node's.
    pub fn observe(&mut self, readings: &[Reading], node: NodeReading, now: Instant) -> Observed {
        let mut observed = Observed::default();
        if let Some(pressure) = node.pressure {
            observed.pressure.push((PressureScope::node(), pressure));
        }
        for reading in readings {
            let gone = reading.oom_kills.is_none() && reading.pressure.is_none();
            if let Some(check) = self.kills.get_mut(&reading.path) {
                match reading.oom_kills {
                    Some(count) => {
                        let born = matches!((reading.id, self.config.born_after), (Some(id), Some(after)) if id > after);
                        check.id = check.id.or(reading.id);
                        let missed = check.compare(&reading.path, count, born, &mut self.node_kills);
                        self.reported_in_cgroups += missed.as_ref().map_or(0, |m| m.missed);
                        observed.missed.extend(missed);
                    }
                    None if gone => {
                        self.kills.remove(&reading.path);
                    }
                    None => {}
                }
            }
            if let Some(followed) = self.pressure.get_mut(&reading.path) {
                match reading.pressure {
                    Some(pressure) => {
                        followed.samples.push_back((now, pressure));
                        observed.pressure.push((followed.scope.clone(), pressure));
                        observed.findings.extend(followed.judge(&self.config, now));
                    }
                    None if gone => {
                        self.pressure.remove(&reading.path);
                    }
                    None => {}
                }
            }
        }
        // Workloads outside the control plane are forgotten when quiet; the control plane's
        // are followed while their cgroups exist.
        let ttl = self.config.ttl;
        let forgotten: Vec<KillCheck> = self
            .kills
            .extract_if(|_, c| now.saturating_duration_since(c.last_event) >= ttl && !control_plane_owner(&c.owner))
            .map(|(_, check)| check)
            .collect();
        for check in forgotten {
            self.forget(&check);
        }
        self.pressure.retain(|_, p| now.saturating_duration_since(p.last_event) < ttl || p.control_plane);
        // After the cgroups' checks: a kill one of them reports or found missing now is theirs.
        if let Some(count) = node.oom_kills {
            let accounted = self.accounted_in_cgroups();
            observed.missed.extend(self.node_kills.compare(count, accounted));
        }
        observed
    }

    /// The kills the cgroups' checks account for: reported, or missing at this read and due at
    /// the next. A check dropped with one pending (its cgroup gone) no longer accounts for it,
    /// and the node-wide check reports it.
    fn accounted_in_cgroups(&self) -> u64 {
        self.reported_in_cgroups + self.kills.values().map(|c| c.tally.pending).sum::<u64>()
    }

    /// A kill check dropped while its cgroup lives: what the probes saw of it is forgotten, so
    /// were it followed again it must not count from zero (its delivered kills would look
    /// missed). Cgroups up to its id are no longer taken as new; one never read leaves no id,
    /// and then no cgroup is.
    fn forget(&mut self, check: &KillCheck) {
        self.config.born_after = match (self.config.born_after, check.id) {
            (Some(after), Some(id)) => Some(after.max(id)),
            _ => None,
        };
    }

    /// Cgroups followed (kill checks, pressure), for tests and the daemon's logs.
    pub fn followed(&self) -> (usize, usize) {
        (self.kills.len(), self.pressure.len())
    }
}

/// A static pod's container or pod, or a node daemon's unit.
fn control_plane_owner(owner: &Owner) -> bool {
    match &owner.kind {
        OwnerKind::HostService { unit, .. } => runtimes::is_node_unit(unit),
        _ => owner.pod().is_some_and(|p| p.static_pod),
    }
}

impl KillCheck {
    /// The kernel's `count` now; `born`: the cgroup was created after the monitor started.
    fn compare(&mut self, path: &Arc<str>, count: u64, born: bool, node_kills: &mut NodeKillCheck) -> Option<MissedKills> {
        let baseline = match self.baseline {
            Some(baseline) => baseline,
            None if born => {
                // Its kills before it was followed may be the node-wide check's already.
                self.tally.reported = node_kills.claim(count.saturating_sub(self.probes));
                *self.baseline.insert(0)
            }
            None => {
                self.baseline = Some(count.saturating_sub(self.probes));
                return None;
            }
        };
        let kernel = count.saturating_sub(baseline);
        let missed = self.tally.settle(kernel.saturating_sub(self.probes));
        if missed == 0 {
            return None;
        }
        let missed_in = MissedIn::Cgroup { owner: self.owner.clone(), path: path.clone() };
        Some(MissedKills { missed_in, missed, kernel, probes: self.probes })
    }
}

impl PressureCgroup {
    /// A finding when the cgroup of a control-plane owner was fully stalled for at least
    /// `full_percent` of a whole window.
    fn judge(&mut self, config: &MemoryWatchConfig, now: Instant) -> Option<Finding> {
        // Keep one sample at or before the window's start, none older.
        while self.samples.len() > 2 && self.samples[1].0 + config.window <= now {
            self.samples.pop_front();
        }
        if !self.control_plane {
            return None;
        }
        let (&(first_at, first), &(_, last)) = (self.samples.front()?, self.samples.back()?);
        let span = now.saturating_duration_since(first_at);
        if span < config.window || span.is_zero() {
            return None;
        }
        let stalled = Duration::from_micros(last.full.total_us.saturating_sub(first.full.total_us));
        let share = 100.0 * stalled.as_secs_f64() / span.as_secs_f64();
        if share < config.full_percent {
            return None;
        }
        let finding = Finding::new(
            &CONTROL_PLANE_MEMORY_PRESSURE,
            &self.subject,
            format!(
                "{} was fully stalled on memory {:.1} s of the last {:.0} s ({share:.0}%): it is reclaiming at its limit or the node is",
                self.display,
                stalled.as_secs_f64(),
                span.as_secs_f64()
            ),
        )
        .evidence(
            "kernel: memory.pressure (PSI)",
            format!(
                "full avg10={:.2} avg60={:.2} avg300={:.2} total={}us; some avg10={:.2} avg60={:.2} total={}us",
                last.full.avg10, last.full.avg60, last.full.avg300, last.full.total_us, last.some.avg10, last.some.avg60, last.some.total_us
            ),
        )
        .evidence(
            "kernel: memory.pressure (PSI) over the window",
            format!(
                "full: {:.1} s stalled in {:.1} s; some: {:.1} s stalled",
                stalled.as_secs_f64(),
                span.as_secs_f64(),
                Duration::from_micros(last.some.total_us.saturating_sub(first.some.total_us)).as_secs_f64()
            ),
        )
        .remediation(
            "Give it memory before the OOM killer does: raise the container's or unit's memory limit (memory.high/memory.max: the static pod's resources, the unit's MemoryHigh/MemoryMax), or reserve memory for the node's machinery (kubelet's systemReserved/kubeReserved) and find what else fills the node.",
        );
        Some(finding)
    }
}

/// The parent cgroup (a container's pod): `/a/b/c` -> `/a/b`.
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

/// A path in the hierarchy as the kernel names them: absolute, without `..`.
fn safe_path(path: &str) -> bool {
    path.starts_with('/') && path != "/" && !path.split('/').any(|part| part == "..")
}

/// Removes the entry whose `(control plane, last event)` is least: the oldest outside the
/// control plane, the control plane's only when nothing else is left (a node with more
/// workloads than the cap keeps following its control plane).
fn evict_oldest<V>(map: &mut HashMap<Arc<str>, V>, rank: impl Fn(&V) -> (bool, Instant)) -> Option<V> {
    let oldest = map.iter().min_by_key(|(_, v)| rank(v)).map(|(k, _)| k.clone())?;
    map.remove(&oldest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::{ContainerOwner, PodRef},
        node::{cgroup_path::ContainerId, memory_pressure::parse},
    };

    const POD: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2f7a5e1bd4c3089e6a1f0b7c5d9e8a41.slice";

    fn container(static_pod: bool, id: &str) -> Arc<Owner> {
        let pod = PodRef { namespace: "kube-system".into(), name: "kube-apiserver-cp1".into(), uid: "2f7a".into(), static_pod, manifest: None };
        let kind = OwnerKind::Container(ContainerOwner {
            runtime: crate::node::cgroup_path::Runtime::Containerd,
            id: ContainerId::parse_hex(id).expect("id"),
            name: Some("kube-apiserver".into()),
            pod: Some(pod),
            sandbox: false,
            attempt: None,
        });
        Arc::new(Owner::new(kind, Some(format!("{POD}/cri-containerd-{id}.scope"))))
    }

    fn id(n: char) -> String {
        std::iter::repeat_n(n, 64).collect()
    }

    fn psi(full_total_us: u64, full_avg10: f64) -> MemoryPressure {
        let text = format!(
            "some avg10={full_avg10:.2} avg60=1.00 avg300=0.50 total={}\nfull avg10={full_avg10:.2} avg60=1.00 avg300=0.50 total={full_total_us}\n",
            full_total_us + 1000
        );
        parse(&text).expect("psi")
    }

    fn reading(path: &str, kills: Option<u64>, pressure: Option<MemoryPressure>) -> Reading {
        Reading { path: path.into(), id: None, oom_kills: kills, pressure }
    }

    #[test]
    fn a_kill_the_probes_missed_is_counted_once_and_one_in_flight_is_not() {
        let t0 = Instant::now();
        let mut watch = MemoryWatch::new(MemoryWatchConfig::default());
        let owner = container(true, &id('a'));
        let path = owner.cgroup_path.clone().expect("path");
        // Its first event is an OOM kill the probes saw: the kernel's count already has it.
        watch.note(&owner, true, t0);
        let targets = watch.targets();
        assert!(targets.iter().any(|t| *t.path == *path && t.oom_kills && !t.pressure));
        assert!(targets.iter().any(|t| &*t.path == POD && t.pressure), "{targets:?}");
        let read = |kills| [reading(&path, Some(kills), None)];
        // Two kills before the monitor followed it, one it saw: the baseline.
        assert!(watch.observe(&read(3), NodeReading::default(), t0).missed.is_empty());
        // One more kill, its event in flight at this read: not missed yet.
        assert!(watch.observe(&read(4), NodeReading::default(), t0).missed.is_empty());
        watch.note(&owner, true, t0);
        assert!(watch.observe(&read(4), NodeReading::default(), t0).missed.is_empty(), "the event came");
        // A kill the probes never deliver: missing at two reads, counted once.
        assert!(watch.observe(&read(5), NodeReading::default(), t0).missed.is_empty());
        let missed = watch.observe(&read(5), NodeReading::default(), t0).missed;
        assert_eq!(missed.len(), 1);
        assert_eq!((missed[0].missed, missed[0].kernel, missed[0].probes), (1, 3, 2));
        assert!(watch.observe(&read(5), NodeReading::default(), t0).missed.is_empty(), "reported once");
        // The cgroup is gone: forgotten.
        watch.observe(&[reading(&path, None, None)], NodeReading::default(), t0);
        assert_eq!(watch.followed().0, 0);
    }

    #[test]
    fn a_cgroup_born_after_the_start_counts_from_zero_unless_it_was_forgotten() {
        let t0 = Instant::now();
        let config = MemoryWatchConfig { born_after: Some(100), ttl: Duration::from_secs(60), ..Default::default() };
        let owner = container(false, &id('d'));
        let path = owner.cgroup_path.clone().expect("path");
        let read = |id, kills| [Reading { path: path.as_str().into(), id: Some(id), oom_kills: Some(kills), pressure: None }];
        // Created after the start (id 101), killed before its first event reached the watch,
        // the kill never delivered: missed, at the second read.
        let mut watch = MemoryWatch::new(config.clone());
        watch.note(&owner, false, t0);
        assert!(watch.observe(&read(101, 1), NodeReading::default(), t0).missed.is_empty(), "may be in flight");
        let missed = watch.observe(&read(101, 1), NodeReading::default(), t0).missed;
        assert_eq!((missed.len(), missed[0].kernel, missed[0].probes), (1, 1, 0));
        // The same with the kill delivered: nothing missed.
        let mut watch = MemoryWatch::new(config.clone());
        watch.note(&owner, true, t0);
        for _ in 0..3 {
            assert!(watch.observe(&read(101, 1), NodeReading::default(), t0).missed.is_empty());
        }
        // Older than the start (id 99): its kills before the first read are history.
        let mut watch = MemoryWatch::new(config.clone());
        watch.note(&owner, false, t0);
        for _ in 0..3 {
            assert!(watch.observe(&read(99, 4), NodeReading::default(), t0).missed.is_empty());
        }
        // Followed, killed (delivered), forgotten when quiet, followed again: the delivered kill
        // is not taken for a missed one.
        let mut watch = MemoryWatch::new(config);
        watch.note(&owner, true, t0);
        assert!(watch.observe(&read(101, 1), NodeReading::default(), t0).missed.is_empty());
        let later = t0 + Duration::from_secs(120);
        watch.observe(&[], NodeReading::default(), later);
        assert_eq!(watch.followed().0, 0, "forgotten when quiet");
        watch.note(&owner, false, later);
        for _ in 0..3 {
            assert!(watch.observe(&read(101, 1), NodeReading::default(), later).missed.is_empty());
        }
    }

    /// The node's OOM kill count, read.
    fn node(kills: u64) -> NodeReading {
        NodeReading { pressure: None, oom_kills: Some(kills) }
    }

    /// The kills missed in `observed`: (at node level, in cgroups).
    fn missed(observed: &Observed) -> (u64, u64) {
        observed.missed.iter().fold((0, 0), |(node, cgroups), m| match m.missed_in {
            MissedIn::UnfollowedCgroups { .. } => (node + m.missed, cgroups),
            MissedIn::Cgroup { .. } => (node, cgroups + m.missed),
        })
    }

    #[test]
    fn a_kill_missed_in_a_cgroup_not_followed_is_counted_once_by_the_node_count() {
        let t0 = Instant::now();
        let mut watch = MemoryWatch::new(MemoryWatchConfig::default());
        // The first read is the baseline: the node's kills before it are history.
        assert!(watch.observe(&[], node(370), t0).missed.is_empty());
        // A kill whose every event was lost: missing at one read (may be in flight), then missed.
        assert!(watch.observe(&[], node(371), t0).missed.is_empty(), "may be in flight");
        let observed = watch.observe(&[], node(371), t0);
        assert_eq!(observed.missed.len(), 1);
        let missed = &observed.missed[0];
        assert!(matches!(missed.missed_in, MissedIn::UnfollowedCgroups { in_followed_cgroups: 0 }), "{missed:?}");
        assert_eq!((missed.missed, missed.kernel, missed.probes), (1, 1, 0));
        assert!(watch.observe(&[], node(371), t0).missed.is_empty(), "reported once");
        // No count (a kernel before 4.13): no node-wide check, nothing reported.
        assert!(watch.observe(&[], NodeReading::default(), t0).missed.is_empty());
    }

    #[test]
    fn kills_the_probes_delivered_are_not_missed_whoever_the_owner_and_one_in_flight_is_not() {
        let t0 = Instant::now();
        let mut watch = MemoryWatch::new(MemoryWatchConfig::default());
        // Delivered before the baseline, which counts it already: the probes' count restarts then.
        let host = Arc::new(Owner::new(OwnerKind::Host, None));
        watch.note(&host, true, t0);
        assert!(watch.observe(&[], node(10), t0).missed.is_empty());
        // Two kills delivered: one of a process outside any cgroup the watch knows (no path),
        // one of a container.
        watch.note(&host, true, t0);
        watch.note(&container(false, &id('e')), true, t0);
        for _ in 0..3 {
            assert_eq!(missed(&watch.observe(&[], node(12), t0)), (0, 0));
        }
        // A kill counted at one read whose event comes before the next: in flight, not missed.
        assert!(watch.observe(&[], node(13), t0).missed.is_empty());
        watch.note(&host, true, t0);
        for _ in 0..3 {
            assert_eq!(missed(&watch.observe(&[], node(13), t0)), (0, 0));
        }
    }

    #[test]
    fn a_kill_missed_in_a_followed_cgroup_is_counted_by_its_check_not_again_by_the_nodes() {
        let t0 = Instant::now();
        let owner = container(false, &id('f'));
        let path = owner.cgroup_path.clone().expect("path");
        let read = |kills| [reading(&path, Some(kills), None)];
        let mut watch = MemoryWatch::new(MemoryWatchConfig::default());
        watch.note(&owner, false, t0);
        assert!(watch.observe(&read(0), node(50), t0).missed.is_empty(), "both baselines");
        // One kill missed in it: the cgroup's check reports it, the node's does not.
        let mut total = (0, 0);
        for _ in 0..4 {
            let (node, cgroups) = missed(&watch.observe(&read(1), node(51), t0));
            total = (total.0 + node, total.1 + cgroups);
        }
        assert_eq!(total, (0, 1));
        // Another, and the cgroup is gone before its check reports it: the node's does.
        assert!(watch.observe(&read(2), node(52), t0).missed.is_empty());
        let mut total = missed(&watch.observe(&[reading(&path, None, None)], node(52), t0));
        assert_eq!(watch.followed().0, 0, "gone");
        for _ in 0..3 {
            let (node, cgroups) = missed(&watch.observe(&[], node(52), t0));
            total = (total.0 + node, total.1 + cgroups);
        }
        assert_eq!(total, (1, 0));
    }

    #[test]
    fn a_cgroup_followed_late_does_not_count_again_what_the_node_count_found() {
        let t0 = Instant::now();
        let config = MemoryWatchConfig { born_after: Some(100), ..Default::default() };
        let owner = container(false, &id('7'));
        let path = owner.cgroup_path.clone().expect("path");
        let read = |kills| [Reading { path: path.as_str().into(), id: Some(101), oom_kills: Some(kills), pressure: None }];
        // The kill's events lost; an event of its cgroup (created after the start) comes one
        // read later: its check takes the kill over from the node's, which had it pending.
        let mut watch = MemoryWatch::new(config.clone());
        assert!(watch.observe(&[], node(7), t0).missed.is_empty());
        assert!(watch.observe(&[], node(8), t0).missed.is_empty(), "pending");
        watch.note(&owner, false, t0);
        let mut total = (0, 0);
        for _ in 0..3 {
            let (node, cgroups) = missed(&watch.observe(&read(1), node(8), t0));
            total = (total.0 + node, total.1 + cgroups);
        }
        assert_eq!(total, (0, 1), "counted once, under its owner");
        // The event comes after the node's check reported the kill: it stays the node's.
        let mut watch = MemoryWatch::new(config);
        assert!(watch.observe(&[], node(7), t0).missed.is_empty());
        assert!(watch.observe(&[], node(8), t0).missed.is_empty());
        assert_eq!(missed(&watch.observe(&[], node(8), t0)), (1, 0));
        watch.note(&owner, false, t0);
        for _ in 0..3 {
            assert_eq!(missed(&watch.observe(&read(1), node(8), t0)), (0, 0), "counted once, by the node's");
        }
    }

    #[test]
    fn sustained_full_stall_of_a_static_pod_is_a_finding_and_a_short_one_or_a_pods_is_not() {
        let config = MemoryWatchConfig { window: Duration::from_secs(10), full_percent: 10.0, ..Default::default() };
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        for static_pod in [true, false] {
            let mut watch = MemoryWatch::new(config.clone());
            watch.note(&container(static_pod, &id('b')), false, t0);
            let mut found = Vec::new();
            // 5 s of 10 fully stalled, read every 5 s.
            for (s, total) in [(0, 0), (5, 2_500_000), (10, 5_000_000)] {
                let observed = watch.observe(&[reading(POD, None, Some(psi(total, 50.0)))], NodeReading { pressure: Some(psi(0, 0.0)), oom_kills: None }, at(s));
                assert_eq!(observed.pressure.len(), 2, "node and pod");
                found = observed.findings;
            }
            if !static_pod {
                assert!(found.is_empty(), "not the control plane: {found:?}");
                continue;
            }
            let finding = found.first().expect("a finding after a whole window");
            assert_eq!((finding.rule, finding.subject.as_str()), ("control-plane-memory-pressure", "kube-system/kube-apiserver-cp1"));
            assert!(finding.title.contains("5.0 s of the last 10 s (50%)"), "{}", finding.title);
            assert!(finding.evidence[0].detail.contains("full avg10=50.00 avg60=1.00"), "{:?}", finding.evidence);
        }
        // Stalled only briefly: below the share over the window.
        let mut watch = MemoryWatch::new(config);
        watch.note(&container(true, &id('c')), false, t0);
        for (s, total) in [(0, 0), (5, 500_000), (10, 600_000), (15, 700_000)] {
            let observed = watch.observe(&[reading(POD, None, Some(psi(total, 5.0)))], NodeReading::default(), at(s));
            assert!(observed.findings.is_empty(), "{:?}", observed.findings);
        }
    }

    #[test]
    fn sustained_full_stall_of_kubelet_or_the_runtime_is_a_finding_and_of_another_unit_is_not() {
        let config = MemoryWatchConfig { window: Duration::from_secs(10), full_percent: 10.0, ..Default::default() };
        let t0 = Instant::now();
        for (unit, expected) in [("kubelet.service", true), ("containerd.service", true), ("cron.service", false)] {
            let path = format!("/system.slice/{unit}");
            let owner = Arc::new(Owner::new(OwnerKind::HostService { unit: unit.into(), service: unit.trim_end_matches(".service").into() }, Some(path.clone())));
            let mut watch = MemoryWatch::new(config.clone());
            watch.note(&owner, false, t0);
            let mut found = Vec::new();
            for (s, total) in [(0, 0), (5, 2_000_000), (10, 4_000_000)] {
                let observed = watch.observe(&[reading(&path, None, Some(psi(total, 40.0)))], NodeReading::default(), t0 + Duration::from_secs(s));
                assert!(observed.pressure.iter().any(|(scope, _)| scope.scope == "service" && scope.service == unit), "{unit}: {:?}", observed.pressure);
                found = observed.findings;
            }
            assert_eq!(found.len(), usize::from(expected), "{unit}: {found:?}");
            if let Some(finding) = found.first() {
                assert_eq!((finding.rule, finding.subject.as_str()), ("control-plane-memory-pressure", unit));
                assert!(finding.title.starts_with(&format!("host service {unit} was fully stalled on memory 4.0 s of the last 10 s")), "{}", finding.title);
            }
        }
    }

    #[test]
    fn followed_cgroups_are_capped_and_paths_checked() {
        let t0 = Instant::now();
        let mut watch = MemoryWatch::new(MemoryWatchConfig { max_cgroups: 2, ..Default::default() });
        for n in ['1', '2', '3'] {
            watch.note(&container(false, &id(n)), false, t0);
        }
        assert_eq!(watch.followed(), (2, 1));
        // A static pod's container is followed past the cap: another's goes first.
        let control_plane = container(true, &id('4'));
        watch.note(&control_plane, false, t0 + Duration::from_secs(1));
        for n in ['5', '6'] {
            watch.note(&container(false, &id(n)), false, t0 + Duration::from_secs(2));
        }
        assert!(watch.targets().iter().any(|t| Some(t.path.as_ref()) == control_plane.cgroup_path.as_deref()), "{:?}", watch.targets());
        let hostile = Arc::new(Owner::new(OwnerKind::HostService { unit: "x.service".into(), service: "x".into() }, Some("/system.slice/../../etc".into())));
        watch.note(&hostile, false, t0);
        assert_eq!(watch.followed(), (2, 1), "a path with .. is not followed");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
    }
}
