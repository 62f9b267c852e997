//! Exec-failure loops: the same caller failing to execute the same path (ENOENT, EACCES,
//! ENOEXEC...) N times within a window; the finding names the binary, why the kernel refused
//! it and who asked. A PATH search (execvp) fails with ENOENT in every directory before the one
//! that has the binary: such misses are held per process and dropped when it then execs a file
//! of the same name, so a search that succeeds is no failure. It does not look at whether the
//! binary later appears, nor at execs that succeed.

use std::time::Instant;

use super::{
    LoopDetector,
    window::{occurrences_text, secs},
};
use crate::{
    detectors::Actor,
    events::{ExecFailed, errno_name},
    findings::{Finding, Rule, Severity},
};

pub const EXEC_FAILURE_LOOP: Rule = Rule {
    id: "exec-failure-loop",
    severity: Severity::Warning,
    title: "A binary keeps failing to execute",
    description: "The same caller tried to execute the same path several times and the kernel refused each time (missing binary, no permission, bad format).",
};

impl LoopDetector {
    /// Holds an ENOENT failure of `failed`'s process until it execs again or exits (see
    /// `settle_tentative`).
    pub(super) fn hold_tentative(&mut self, failed: &ExecFailed, actor: &Actor) {
        if self.tentative.len() >= self.config.max_tracked {
            self.dropped += self.tentative.len() as u64;
            self.tentative.clear();
        }
        let pending = self.tentative.entry(failed.task.tgid).or_default();
        if pending.len() < 64 {
            pending.push((failed.clone(), actor.clone()));
        }
    }

    /// Counts or drops the tentative ENOENT failures of `tgid`: dropped when it now execs a
    /// file of the same name (a PATH search that found it), counted otherwise.
    pub(super) fn settle_tentative(&mut self, tgid: u32, exec: Option<&str>, now: Instant) -> Vec<Finding> {
        let Some(pending) = self.tentative.remove(&tgid) else {
            return Vec::new();
        };
        let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
        let found = exec.map(base);
        pending
            .into_iter()
            .filter(|(failed, _)| found.as_deref() != Some(base(&failed.filename).as_str()))
            .filter_map(|(failed, actor)| self.exec_failure(&failed, &actor, now))
            .collect()
    }

    pub(super) fn exec_failure(&mut self, failed: &ExecFailed, actor: &Actor, now: Instant) -> Option<Finding> {
        let key = format!("{}|{}|{}", actor.key, failed.filename, failed.errno);
        let occurrences = self.exec_failures.entry(&key);
        let count = occurrences.push(now, self.config.exec_window);
        if count < self.config.exec_failures || !occurrences.reported.due(now, self.config.refresh) {
            return None;
        }
        let caller = format!("{} (pid {}, parent pid {})", failed.task.comm, failed.task.tgid, failed.task.ppid);
        let errno = errno_name(failed.errno);
        let path = if failed.filename.is_empty() { "(an fd, execveat)".to_string() } else { failed.filename.clone() };
        if !self.failing_subjects.admit(&actor.key, &path, now, self.config.exec_window) {
            return Some(folded_caller_finding(&EXEC_FAILURE_LOOP, actor, "binaries", &path, self.config.exec_window));
        }
        let why = match failed.errno {
            libc::ENOENT => "does not exist",
            libc::EACCES => "is not executable (permission denied)",
            libc::ENOEXEC => "is not a valid executable",
            _ => "cannot be executed",
        };
        let mut finding = Finding::new(
            &EXEC_FAILURE_LOOP,
            path.clone(),
            format!(
                "{path} {why} ({errno}): {} tried {} times in {}",
                actor.display,
                occurrences_text(count),
                secs(self.config.exec_window)
            ),
        )
        .evidence(
            "kernel: syscalls:sys_exit_execve",
            format!("{}: {} returned {errno}; last caller {caller}", failed.syscall, path),
        )
        .evidence("caller", actor.display.to_string());
        finding = finding.remediation(match failed.errno {
            libc::ENOENT => format!(
                "Install {path} where the caller expects it (check the installer's asset cache and the runtime bundle), or fix the caller's configuration."
            ),
            _ => format!("Fix the file mode or format of {path}."),
        });
        Some(finding)
    }
}

/// The one finding about a caller past [`super::window::MAX_SUBJECTS_PER_CALLER`] subjects of
/// a failure loop: keyed by the caller, not by what it chose, with the latest subject as
/// evidence.
pub(super) fn folded_caller_finding(rule: &crate::findings::Rule, actor: &Actor, what: &str, latest: &str, window: std::time::Duration) -> Finding {
    Finding::new(
        rule,
        format!("{}|_folded", actor.key),
        format!(
            "{} keeps failing on more than {} different {what} in {}: the rest are counted here",
            actor.display,
            super::window::MAX_SUBJECTS_PER_CALLER,
            secs(window)
        ),
    )
    .evidence("latest", latest.to_string())
    .evidence("caller", actor.display.to_string())
    .remediation("One caller failing on ever new paths or addresses is a misconfigured or hostile process: look at the caller itself (its command line and its logs).")
    .folded()
}

#[cfg(test)]
mod tests {
    use crate::{
        detectors::loops::test_support::*,
        events::{Event, ExecFailed, ExitStatus},
    };

    #[test]
    fn failures_forgotten_to_make_room_are_counted() {
        // Tables of 4: ten distinct paths failing once each push six out; one path failing
        // again and again forgets nothing more.
        let mut h = Harness::new();
        h.detector = crate::detectors::loops::LoopDetector::new(crate::detectors::loops::LoopConfig { max_tracked: 4, ..Default::default() });
        let failed = |tgid: u32, path: &str| {
            Event::ExecFailed(ExecFailed { task: task(tgid, "sh"), filename: path.into(), filename_truncated: false, errno: libc::EACCES, syscall: "execve" })
        };
        assert_eq!(h.detector.forgotten(), 0);
        for i in 0..10u32 {
            h.feed(failed(i, &format!("/tmp/flood/{i}")), &host(), 0);
        }
        assert_eq!(h.detector.forgotten(), 6);
        for i in 10..20u32 {
            h.feed(failed(i, "/tmp/flood/9"), &host(), 0);
        }
        assert_eq!(h.detector.forgotten(), 6);
    }

    #[test]
    fn exec_failures_repeat_into_a_finding_naming_the_binary() {
        let mut h = Harness::new();
        let failed = |tgid| {
            Event::ExecFailed(ExecFailed {
                task: task(tgid, "nodeup"),
                filename: "/usr/local/bin/crictl".into(),
                filename_truncated: false,
                errno: libc::ENOENT,
                syscall: "execve",
            })
        };
        let gone = |tgid| exit(tgid, ExitStatus::Exited { code: 127 });
        assert!(h.feed(failed(1), &host(), 0).is_empty());
        assert!(h.feed(gone(1), &host(), 0).is_empty());
        assert!(h.feed(failed(2), &host(), 30).is_empty());
        assert!(h.feed(gone(2), &host(), 30).is_empty());
        assert!(h.feed(failed(3), &host(), 60).is_empty(), "counted once the process is gone");
        let findings = h.feed(gone(3), &host(), 60);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].subject, "/usr/local/bin/crictl");
        assert!(findings[0].title.contains("does not exist (ENOENT)"), "{}", findings[0].title);
        // Outside the window they do not add up.
        let mut h = Harness::new();
        for (i, at) in [0u64, 400, 800].into_iter().enumerate() {
            assert!(h.feed(failed(i as u32), &host(), at).is_empty());
            assert!(h.feed(gone(i as u32), &host(), at).is_empty());
        }
    }

    #[test]
    fn a_caller_choosing_new_paths_gets_a_few_findings_then_one_about_itself() {
        let mut h = Harness::new();
        let mut subjects = std::collections::BTreeSet::new();
        for path in 0..40u32 {
            for attempt in 0..3u32 {
                let failed = Event::ExecFailed(ExecFailed {
                    task: task(1000 + path * 3 + attempt, "attacker"),
                    filename: format!("/tmp/x/{path}"),
                    filename_truncated: false,
                    errno: libc::EACCES,
                    syscall: "execve",
                });
                for f in h.feed(failed, &host(), u64::from(path)) {
                    subjects.insert(f.subject);
                }
            }
        }
        assert_eq!(subjects.len(), super::super::window::MAX_SUBJECTS_PER_CALLER + 1, "{subjects:?}");
        assert!(subjects.iter().any(|s| s.ends_with("|_folded")), "{subjects:?}");
    }

    #[test]
    fn path_search_misses_are_not_failures() {
        // execvp("crictl") tries /usr/local/sbin/crictl, then finds /usr/bin/crictl: every run.
        let mut h = Harness::new();
        for tgid in 0..10u32 {
            let miss = Event::ExecFailed(ExecFailed {
                task: task(tgid, "cron"),
                filename: "/usr/local/sbin/crictl".into(),
                filename_truncated: false,
                errno: libc::ENOENT,
                syscall: "execve",
            });
            assert!(h.feed(miss, &host(), tgid as u64).is_empty());
            assert!(h.feed(exec(tgid, "/usr/bin/crictl"), &host(), tgid as u64).is_empty());
            assert!(h.feed(exit(tgid, ExitStatus::Exited { code: 0 }), &host(), tgid as u64).is_empty());
        }
    }
}
