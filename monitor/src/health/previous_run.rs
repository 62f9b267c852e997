//! How the monitor's previous run ended, as an agent's users expect to be told: each start
//! is recorded in a small state file of the monitor's own (`--state-dir`: an `emptyDir` in the
//! DaemonSet, which outlives the container's restarts), with the kernel's OOM kill count of
//! its memory cgroup at that moment; a clean stop marks the file. At the next start a missing
//! mark means the previous run died, and a higher OOM kill count of the same cgroup (or of
//! the pod's, for a restarted container) means the kernel OOM-killed it.
//!
//! It writes only under the state directory, never to the host; a state file it cannot
//! read or parse is treated as a first start. The file is replaced whole (a temporary file of a
//! name no one else uses, synced, renamed over it): another monitor sharing the directory, or
//! a link planted there, can make a write fail, never make it write elsewhere.

use std::{
    io::{Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
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
/// A state file is a few hundred bytes; anything larger is not one.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What the state file keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Starts recorded in this state directory.
    starts: u64,
    /// The last run stopped on its own (SIGTERM/SIGINT, or an error it logged), every program
    /// detached.
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

/// Opens a file of the state directory without following a link at its name, nor blocking on
/// a FIFO put there.
fn open_state_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

fn read_state(dir: &Path) -> Option<State> {
    let file = open_state_file(&dir.join(STATE_FILE)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_STATE_BYTES).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the state file whole: a new temporary file (its name unique to this process and
/// write, created exclusively, so a link or file already there is never followed nor shared),
/// synced, then renamed over the state file, and the directory synced.
fn write_state(dir: &Path, state: &State) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(
        ".{STATE_FILE}.{}.{}.{nanos:08x}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    // create_new is O_CREAT|O_EXCL: it fails on anything at that name, a link included.
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(serde_json::to_string(state).map_err(std::io::Error::other)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(STATE_FILE))
    };
    let written = write();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself outlives a crash only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
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

    /// Marks the run as stopped on its own (called after every program is detached): on a stop
    /// signal, or on an error the daemon logs and exits with (it was neither killed nor did it
    /// crash: there is nothing to report at the next start).
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

    /// Links planted in the state directory (at the name a temporary file had, or at the state
    /// file itself) are never written through, and a FIFO at the state file does not block.
    #[test]
    fn planted_links_and_fifos_are_not_followed() {
        let base = std::env::temp_dir().join(format!("nrm-previous-run-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (dir, victim) = (base.join("state"), base.join("victim"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(&victim, "untouched").expect("victim");
        // The fixed temporary name earlier versions used, and the state file: both links.
        std::os::unix::fs::symlink(&victim, dir.join(format!("{STATE_FILE}.tmp"))).expect("symlink");
        let first = PreviousRun::record_start(&dir, None, None);
        assert_eq!(first.end, PreviousEnd::FirstStart);
        first.record_clean_stop();
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "untouched");
        assert_eq!(PreviousRun::record_start(&dir, None, None).end, PreviousEnd::Clean, "the state was written");
        // A link at the state file is not read through (it is replaced, the victim kept).
        std::fs::write(&victim, serde_json::to_string(&State { clean_stop: true, starts: 9, ..State::default() }).expect("json"))
            .expect("victim");
        std::fs::remove_file(dir.join(STATE_FILE)).expect("rm");
        std::os::unix::fs::symlink(&victim, dir.join(STATE_FILE)).expect("symlink");
        assert_eq!(PreviousRun::record_start(&dir, None, None).restarts, 0, "the link was not read");
        assert!(std::fs::symlink_metadata(&victim).is_ok_and(|m| m.is_file()));
        assert!(std::fs::read_to_string(&victim).expect("victim").contains("\"starts\":9"));
        // A FIFO at the state file: a first start, at once.
        std::fs::remove_file(dir.join(STATE_FILE)).expect("rm");
        let fifo = std::ffi::CString::new(dir.join(STATE_FILE).as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(PreviousRun::record_start(&dir, None, None).end, PreviousEnd::FirstStart);
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp") || n == format!("{STATE_FILE}.tmp").as_str()), "{left:?}");
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Writers sharing the directory (two monitors) never mix their files: every write lands
    /// whole.
    #[test]
    fn concurrent_writers_each_write_whole_files() {
        let dir = std::env::temp_dir().join(format!("nrm-previous-run-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let threads: Vec<_> = (0..8u64)
            .map(|n| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let state = State { starts: n * 1000 + i, started_at: u64::MAX - i, ..State::default() };
                        write_state(&dir, &state).expect("every write succeeds");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        assert!(read_state(&dir).is_some(), "the state file parses");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
