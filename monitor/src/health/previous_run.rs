//! How the monitor's previous run ended, as an agent's users expect to be told: each start
//! is recorded in a small state file of the monitor's own (`--state-dir`: an `emptyDir` in the
//! DaemonSet, which outlives the container's restarts), with the kernel's OOM kill count of
//! its memory cgroup at that moment; a clean stop marks the file. At the next start a missing
//! mark means the previous run died, and a higher OOM kill count of the same cgroup (or of
//! the pod's, for a restarted container) means the kernel OOM-killed it.
//!
//! It writes only under the state directory, never to the host; a state file it cannot
//! read or parse is treated as a first start.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{
    findings::{Finding, Rule, Severity},
    node::cgroupfs::OomKillCount,
};

pub const MONITOR_RESTARTED: Rule = Rule {
    id: "monitor-restarted",
    severity: Severity::Warning,
    title: "The monitor's previous run did not stop cleanly",
    description: "The monitor was OOM-killed, killed or crashed and started again: what happened on the node in between was not observed.",
};

/// The state file's name in the state directory.
const STATE_FILE: &str = "previous-run.json";

/// What the state file keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Starts recorded in this state directory.
    starts: u64,
    /// The last run stopped cleanly (SIGTERM/SIGINT, every program detached).
    clean_stop: bool,
    /// Unix seconds of the last start.
    started_at: u64,
    /// OOM kill counts at the last start: the monitor's memory cgroup, and its parent's.
    own: Option<(String, u64)>,
    parent: Option<(String, u64)>,
}

/// How the previous run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviousEnd {
    /// No previous run in this state directory.
    FirstStart,
    Clean,
    /// The kernel OOM-killed it: this many kills in `cgroup` since it started.
    OomKilled { cgroup: String, kills: u64 },
    /// It ended without stopping cleanly, and no OOM kill was counted where it could be.
    Died,
}

/// This start, as recorded.
#[derive(Clone, Debug)]
pub struct PreviousRun {
    state_dir: PathBuf,
    /// Starts before this one.
    pub restarts: u64,
    pub end: PreviousEnd,
    /// Unix seconds of the previous start.
    previous_start: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn read_state(dir: &Path) -> Option<State> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(dir: &Path, state: &State) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(serde_json::to_string(state).map_err(std::io::Error::other)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// How the previous run ended, from its state and the OOM kill counts now.
fn end_of(previous: &State, own: Option<&OomKillCount>, parent: Option<&OomKillCount>) -> PreviousEnd {
    if previous.clean_stop {
        return PreviousEnd::Clean;
    }
    // The same cgroup as before (a host service's, kept across restarts), else the same
    // parent (a restarted container's pod: v2 counts the pod's descendants' kills there).
    let grew = |before: &Option<(String, u64)>, now: Option<&OomKillCount>| match (before, now) {
        (Some((path, was)), Some(now)) if *path == now.cgroup && now.oom_kills > *was => {
            Some(PreviousEnd::OomKilled { cgroup: now.cgroup.clone(), kills: now.oom_kills - was })
        }
        _ => None,
    };
    grew(&previous.own, own).or_else(|| grew(&previous.parent, parent)).unwrap_or(PreviousEnd::Died)
}

impl PreviousRun {
    /// Records this start in `state_dir` and says how the previous run ended. `own` and
    /// `parent` are the kernel's OOM kill counts of the monitor's memory cgroup and its parent.
    pub fn record_start(state_dir: &Path, own: Option<OomKillCount>, parent: Option<OomKillCount>) -> Self {
        let previous = read_state(state_dir);
        let end = match &previous {
            None => PreviousEnd::FirstStart,
            Some(state) => end_of(state, own.as_ref(), parent.as_ref()),
        };
        let starts = previous.as_ref().map(|s| s.starts).unwrap_or(0);
        let state = State {
            starts: starts + 1,
            clean_stop: false,
            started_at: now_secs(),
            own: own.map(|c| (c.cgroup, c.oom_kills)),
            parent: parent.map(|c| (c.cgroup, c.oom_kills)),
        };
        if let Err(err) = write_state(state_dir, &state) {
            warn!(dir = %state_dir.display(), "cannot record this start, restarts will not be counted: {err}");
        }
        match &end {
            PreviousEnd::FirstStart | PreviousEnd::Clean => {}
            PreviousEnd::OomKilled { cgroup, kills } => warn!(cgroup, kills, "the previous run of the monitor was OOM-killed"),
            PreviousEnd::Died => warn!("the previous run of the monitor did not stop cleanly (killed or crashed)"),
        }
        Self {
            state_dir: state_dir.to_path_buf(),
            restarts: starts,
            end,
            previous_start: previous.map(|s| s.started_at).unwrap_or(0),
        }
    }

    /// Marks the run as stopped cleanly (called after every program is detached).
    pub fn record_clean_stop(&self) {
        let Some(mut state) = read_state(&self.state_dir) else { return };
        state.clean_stop = true;
        match write_state(&self.state_dir, &state) {
            Ok(()) => info!("clean stop recorded"),
            Err(err) => warn!(dir = %self.state_dir.display(), "cannot record the clean stop: {err}"),
        }
    }

    /// `self_restarts_total` and `self_oom_kills_total`, as of this start.
    pub fn register(&self, registry: &mut Registry) {
        let restarts: Counter = Counter::default();
        restarts.inc_by(self.restarts);
        registry.register("self_restarts", "Starts of the monitor before this one with the same state directory", restarts);
        let oom: Counter = Counter::default();
        if let PreviousEnd::OomKilled { kills, .. } = self.end {
            oom.inc_by(kills);
        }
        registry.register("self_oom_kills", "OOM kills of the monitor's previous run, counted by the kernel in its memory cgroup, seen at this start", oom);
    }

    /// The finding about the previous run, when it did not stop cleanly.
    pub fn finding(&self) -> Option<Finding> {
        let started = format!("previous start at unix time {}", self.previous_start);
        let state = self.state_dir.join(STATE_FILE).display().to_string();
        match &self.end {
            PreviousEnd::FirstStart | PreviousEnd::Clean => None,
            PreviousEnd::OomKilled { cgroup, kills } => Some(
                Finding::new(&MONITOR_RESTARTED, "node-runtime-monitor", "The monitor's previous run was OOM-killed")
                    .evidence(format!("kernel: oom_kill of memory cgroup {cgroup}"), format!("{kills} OOM kill(s) since the previous start"))
                    .evidence(state, format!("{started}, no clean stop recorded; {} restart(s) so far", self.restarts))
                    .remediation("Raise the monitor's memory limit (the DaemonSet's resources.limits.memory), or lower --ring-buffer-bytes (the ring buffer is mapped twice) and --event-queue."),
            ),
            PreviousEnd::Died => Some(
                Finding::new(&MONITOR_RESTARTED, "node-runtime-monitor", "The monitor's previous run was killed or crashed")
                    .evidence(state, format!("{started}, no clean stop recorded; {} restart(s) so far", self.restarts))
                    .remediation("Look at the previous container's log (kubectl logs --previous) and its exit reason; no OOM kill was counted in its memory cgroup."),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(cgroup: &str, oom_kills: u64) -> OomKillCount {
        OomKillCount { cgroup: cgroup.into(), oom_kills }
    }

    #[test]
    fn starts_clean_stops_and_deaths() {
        let dir = std::env::temp_dir().join(format!("nrm-previous-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = PreviousRun::record_start(&dir, Some(count("/system.slice/nrm.service", 0)), None);
        assert_eq!((first.restarts, &first.end), (0, &PreviousEnd::FirstStart));
        assert!(first.finding().is_none());
        first.record_clean_stop();
        let second = PreviousRun::record_start(&dir, Some(count("/system.slice/nrm.service", 0)), None);
        assert_eq!((second.restarts, &second.end), (1, &PreviousEnd::Clean));
        assert!(second.finding().is_none());
        // No clean stop, no OOM kill: it died.
        let third = PreviousRun::record_start(&dir, Some(count("/system.slice/nrm.service", 0)), None);
        assert_eq!(third.end, PreviousEnd::Died);
        assert!(third.finding().is_some_and(|f| f.title.contains("killed or crashed")));
        // The same cgroup counted two more OOM kills: OOM-killed.
        let fourth = PreviousRun::record_start(&dir, Some(count("/system.slice/nrm.service", 2)), None);
        assert_eq!(fourth.end, PreviousEnd::OomKilled { cgroup: "/system.slice/nrm.service".into(), kills: 2 });
        // A restarted container has a new cgroup: its pod's count tells.
        let pod = "/kubepods/burstable/podx";
        let fifth = PreviousRun::record_start(&dir, Some(count(&format!("{pod}/a"), 0)), Some(count(pod, 1)));
        assert_eq!(fifth.end, PreviousEnd::Died, "the pod's count was not known before");
        let sixth = PreviousRun::record_start(&dir, Some(count(&format!("{pod}/b"), 0)), Some(count(pod, 2)));
        assert_eq!(sixth.end, PreviousEnd::OomKilled { cgroup: pod.into(), kills: 1 });
        assert_eq!(sixth.restarts, 5);
        // A garbled state file is a first start, never a panic.
        std::fs::write(dir.join(STATE_FILE), "{not json").expect("write");
        assert_eq!(PreviousRun::record_start(&dir, None, None).end, PreviousEnd::FirstStart);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
