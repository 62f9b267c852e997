//! Joins each OOM kill (`mark_victim`) with the kernel's report of it (the "Killed process"
//! line the OOM killer logs right after, from the same task), which says whether a memory
//! cgroup's limit or the node's memory ran out.
//!
//! An OOM kill is held back until its report arrives or `WAIT` has passed (then its constraint
//! stays `Unknown`: the report probe is down, or the kernel marked a task that was already
//! exiting, which it does not report). The wait is judged only between drains of the ring buffer
//! ([`OomJoin::release`]), never in the middle of one ([`OomJoin::release_ready`]): a reader kept
//! from running for longer than `WAIT` finds the report later in the same drain, and must still
//! join it. While one is held, every later record queues behind it, so what follows keeps kernel
//! order (the victim's exit never overtakes its OOM kill). Nothing is held when no OOM kill is
//! pending: the common path costs one check.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{Event, OomKillRecounted, OomReport, Record, Task};

/// How long an OOM kill waits for its report. The report is logged microseconds after the
/// kill; this only bounds the wait when it never comes.
pub const WAIT: Duration = Duration::from_millis(100);

/// Most records queued behind a pending OOM kill; past it the oldest are released unjoined.
pub const MAX_HELD: usize = 8192;

struct Held {
    record: Record,
    since: Instant,
    /// An OOM kill still waiting for its report.
    waiting: bool,
}

#[derive(Default)]
pub struct OomJoin {
    held: VecDeque<Held>,
    unmatched_reports: u64,
    /// The latest joins, (trigger pid, victim pid) and the victim: a report of the same kill
    /// again is the kernel killing a `memory.oom.group` cgroup's victim a second time with its
    /// group ([`OomKillRecounted`]), not a kill whose event was lost.
    joined: VecDeque<((u32, u32), Task)>,
}

/// Joins remembered for telling a group kill's second report of its victim: the group's other
/// processes are killed (and joined) in between, the victim among them in cgroup order.
const JOINED_KEPT: usize = 4096;

impl OomJoin {
    /// Takes one record. Returns it right back when it need not wait; otherwise it is held (or,
    /// for a report, consumed) and comes out of [`OomJoin::release`].
    pub fn push(&mut self, record: Record, now: Instant) -> Option<Record> {
        match &record.event {
            Event::OomReport(report) => {
                if self.join(report) {
                    return None;
                }
                let key = (report.task.pid, report.victim_pid);
                let Some((_, victim)) = self.joined.iter().find(|(joined, _)| *joined == key) else {
                    // Its kill was not seen (mark_victim down, or its event lost): nothing to add to.
                    self.unmatched_reports += 1;
                    return None;
                };
                let recount = Record { cpu: record.cpu, event: Event::OomKillRecounted(OomKillRecounted { task: victim.clone() }) };
                self.pass(recount, now)
            }
            Event::OomKill(_) => {
                self.held.push_back(Held { record, since: now, waiting: true });
                None
            }
            _ => self.pass(record, now),
        }
    }

    /// A record that waits for no report: on at once, unless kills ahead of it wait.
    fn pass(&mut self, record: Record, now: Instant) -> Option<Record> {
        if self.held.is_empty() {
            return Some(record);
        }
        self.held.push_back(Held { record, since: now, waiting: false });
        None
    }

    /// The next record that may go on once a drain is over (the ring buffer was empty, so no
    /// report is left unread): the oldest held one, once it is not an OOM kill still within its
    /// wait (or too many records queue behind it).
    pub fn release(&mut self, now: Instant) -> Option<Record> {
        let front = self.held.front()?;
        if front.waiting && now.duration_since(front.since) < WAIT && self.held.len() <= MAX_HELD {
            return None;
        }
        self.held.pop_front().map(|held| held.record)
    }

    /// The next record that may go on in the middle of a drain: the oldest held one, once it is
    /// not an OOM kill still waiting for its report (or too many records queue behind it). A
    /// kill whose wait is over stays: its report may be further on in the same drain (the
    /// reader ran late), and only [`OomJoin::release`], after the drain, gives up on it.
    pub fn release_ready(&mut self) -> Option<Record> {
        let front = self.held.front()?;
        if front.waiting && self.held.len() <= MAX_HELD {
            return None;
        }
        self.held.pop_front().map(|held| held.record)
    }

    /// Records held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Reports that matched no held OOM kill.
    pub fn unmatched_reports(&self) -> u64 {
        self.unmatched_reports
    }

    fn join(&mut self, report: &OomReport) -> bool {
        for held in self.held.iter_mut().filter(|h| h.waiting) {
            if let Event::OomKill(kill) = &mut held.record.event
                && kill.trigger_pid == report.task.pid
                && kill.task.pid == report.victim_pid
            {
                kill.constraint = report.constraint;
                held.waiting = false;
                if self.joined.len() == JOINED_KEPT {
                    self.joined.pop_front();
                }
                self.joined.push_back(((report.task.pid, report.victim_pid), kill.task.clone()));
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Exit, ExitStatus, OomConstraint, OomKill, Task};

    fn task(pid: u32) -> Task {
        Task { pid, tgid: pid, ppid: 1, uid: 0, cgroup_id: 1, memcg_id: 1, start_ns: 0, comm: "t".into() }
    }

    fn record(event: Event) -> Record {
        Record { cpu: 0, event }
    }

    fn kill(victim: u32, trigger: u32) -> Record {
        record(Event::OomKill(Box::new(OomKill {
            task: task(victim),
            constraint: OomConstraint::Unknown,
            trigger_pid: trigger,
            trigger_tgid: trigger,
            trigger_comm: "hog".into(),
            trigger_cgroup_id: 1,
            trigger_memcg_id: 1,
            total_vm_pages: 0,
            anon_rss_pages: 0,
            file_rss_pages: 0,
            shmem_rss_pages: 0,
            oom_score_adj: 0,
            limit: None,
        })))
    }

    fn report(line: &str, trigger: u32) -> Record {
        let (constraint, victim_pid) = OomReport::parse_line(line).expect("a report line");
        record(Event::OomReport(OomReport { task: task(trigger), victim_pid, constraint }))
    }

    fn exit(pid: u32) -> Record {
        record(Event::Exit(Exit {
            task: task(pid),
            status: ExitStatus::Signaled { signal: 9, core_dumped: false },
            lifetime: Duration::from_secs(1),
        }))
    }

    fn drain(join: &mut OomJoin, now: Instant) -> Vec<Record> {
        std::iter::from_fn(|| join.release(now)).collect()
    }

    fn constraint(record: &Record) -> OomConstraint {
        match &record.event {
            Event::OomKill(kill) => kill.constraint,
            other => panic!("not an OOM kill: {other:?}"),
        }
    }

    // The kernel's own lines (mm/oom_kill.c, __oom_kill_process), as printk:console passes them.
    const MEMCG_LINE: &str = "Memory cgroup out of memory: Killed process 27194 (python3) total-vm:221368kB, anon-rss:48512kB, file-rss:6272kB, shmem-rss:0kB, UID:0 pgtables:156kB oom_score_adj:0";
    const GLOBAL_LINE: &str = "Out of memory: Killed process 812 (kube-apiserver) total-vm:1592568kB, anon-rss:901232kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:2284kB oom_score_adj:-997";
    const ALLOCATING_LINE: &str = "Out of memory (oom_kill_allocating_task): Killed process 4242 (java) total-vm:10kB";

    #[test]
    fn reads_the_kernels_report_lines() {
        assert_eq!(OomReport::parse_line(MEMCG_LINE), Some((OomConstraint::MemoryCgroup, 27194)));
        assert_eq!(OomReport::parse_line(GLOBAL_LINE), Some((OomConstraint::Global, 812)));
        assert_eq!(OomReport::parse_line(ALLOCATING_LINE), Some((OomConstraint::Global, 4242)));
        // Older kernels named the process first, then maybe killed a child instead.
        assert_eq!(
            OomReport::parse_line("Memory cgroup out of memory: Kill process 915 (java) score 1004 or sacrifice child"),
            Some((OomConstraint::MemoryCgroup, 915))
        );
        // Same prefixes, not a kill.
        assert_eq!(OomReport::parse_line("Out of memory and no killable processes..."), None);
        assert_eq!(OomReport::parse_line("Memory cgroup out of memory: Killed process (x)"), None);
        // A line cut inside the pid (the kernel program copies at most 128 bytes) still parses.
        assert_eq!(OomReport::parse_line("Out of memory: Killed process 81"), Some((OomConstraint::Global, 81)));
    }

    #[test]
    fn a_kill_waits_for_its_report_and_keeps_what_follows_in_order() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        assert!(join.push(exit(1), t0).is_some(), "nothing pending: records pass straight through");
        assert!(join.push(kill(27194, 27194), t0).is_none());
        assert!(join.push(exit(5), t0).is_none(), "queued behind the pending kill");
        assert!(drain(&mut join, t0).is_empty());
        assert!(join.push(report(MEMCG_LINE, 27194), t0).is_none());
        let out = drain(&mut join, t0);
        assert_eq!(out.len(), 2);
        assert_eq!(constraint(&out[0]), OomConstraint::MemoryCgroup);
        assert!(matches!(&out[1].event, Event::Exit(e) if e.task.pid == 5));
        assert_eq!(join.held(), 0);
    }

    #[test]
    fn a_report_joins_only_the_kill_of_its_victim_by_its_trigger() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        join.push(kill(812, 700), t0);
        join.push(kill(813, 701), t0);
        // Global report for 813 by 701; 812's report is still to come.
        join.push(report(&GLOBAL_LINE.replace("812", "813"), 701), t0);
        assert!(drain(&mut join, t0).is_empty(), "the oldest kill still waits");
        // A report naming 812 but from another task does not match.
        join.push(report(GLOBAL_LINE, 999), t0);
        assert_eq!(join.unmatched_reports(), 1);
        join.push(report(MEMCG_LINE.replace("27194", "812").as_str(), 700), t0);
        let out = drain(&mut join, t0);
        assert_eq!(
            out.iter().map(constraint).collect::<Vec<_>>(),
            [OomConstraint::MemoryCgroup, OomConstraint::Global]
        );
    }

    /// `memory.oom.group`: the OOM killer kills its victim, then the group, the victim again
    /// (the kernel counts and logs it a second time; `mark_victim` fired once): the second
    /// report is the victim's recount. Only a report of a kill never joined is unmatched.
    #[test]
    fn a_group_kills_second_report_of_its_victim_is_not_unmatched() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        let victim = MEMCG_LINE.replace("27194", "812");
        join.push(kill(812, 700), t0);
        join.push(report(&victim, 700), t0);
        assert_eq!(drain(&mut join, t0).len(), 1);
        let recount = join.push(report(&victim, 700), t0).expect("the victim's second count, at once");
        assert_eq!(recount.event, Event::OomKillRecounted(OomKillRecounted { task: task(812) }));
        assert_eq!(join.unmatched_reports(), 0);
        join.push(report(&MEMCG_LINE.replace("27194", "813"), 700), t0);
        assert_eq!(join.unmatched_reports(), 1, "a kill whose event never came");
    }

    #[test]
    fn a_kill_without_report_goes_on_as_unknown_after_the_wait() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        join.push(kill(1, 1), t0);
        join.push(exit(1), t0);
        assert!(drain(&mut join, t0 + WAIT / 2).is_empty());
        let out = drain(&mut join, t0 + WAIT);
        assert_eq!(out.len(), 2);
        assert_eq!(constraint(&out[0]), OomConstraint::Unknown);
    }

    /// The reader ran late: the kill was read, then more than `WAIT` passed before the next
    /// drain, which holds its report behind other records. The report is still joined, because
    /// nothing is given up on before the drain is over.
    #[test]
    fn a_report_read_late_in_the_same_drain_is_still_joined() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        join.push(kill(27194, 27194), t0);
        assert!(drain(&mut join, t0).is_empty(), "first drain over: the kill waits");
        // The next drain, long after the wait: records before the report, released as the
        // drain goes (as the reader does after each record).
        let late = t0 + WAIT * 3;
        let mut out = Vec::new();
        for record in [exit(5), exit(6), report(MEMCG_LINE, 27194), exit(27194)] {
            out.extend(join.push(record, late));
            out.extend(std::iter::from_fn(|| join.release_ready()));
        }
        // The drain is over: whatever waits past its deadline goes now.
        out.extend(drain(&mut join, late));
        assert_eq!(out.len(), 4, "the kill and the three exits");
        assert_eq!(constraint(&out[0]), OomConstraint::MemoryCgroup, "joined with the report read in the same drain");
        let exits: Vec<u32> = out[1..]
            .iter()
            .map(|r| match &r.event {
                Event::Exit(e) => e.task.pid,
                other => panic!("not an exit: {other:?}"),
            })
            .collect();
        assert_eq!(exits, [5, 6, 27194], "kernel order kept");
        assert_eq!(join.unmatched_reports(), 0);
        assert_eq!(join.held(), 0);
    }

    #[test]
    fn in_a_drain_a_kill_past_its_wait_still_waits_but_a_storm_behind_it_is_bounded() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        join.push(kill(1, 1), t0);
        let late = t0 + WAIT * 3;
        join.push(exit(2), late);
        assert!(join.release_ready().is_none(), "its report may still be in this drain");
        for pid in 0..MAX_HELD as u32 {
            join.push(exit(pid + 10), late);
        }
        let out: Vec<Record> = std::iter::from_fn(|| join.release_ready()).collect();
        assert_eq!(out.len(), MAX_HELD + 2, "a full queue releases the kill unjoined, and all behind it");
        assert_eq!(constraint(&out[0]), OomConstraint::Unknown);
    }

    #[test]
    fn a_storm_behind_a_pending_kill_is_bounded() {
        let mut join = OomJoin::default();
        let t0 = Instant::now();
        join.push(kill(1, 1), t0);
        for pid in 0..MAX_HELD as u32 {
            join.push(exit(pid + 10), t0);
        }
        assert_eq!(join.held(), MAX_HELD + 1);
        let out = drain(&mut join, t0);
        assert_eq!(out.len(), MAX_HELD + 1, "the kill goes on unjoined once the queue is full, and all behind it");
        assert_eq!(constraint(&out[0]), OomConstraint::Unknown);
        assert_eq!(join.held(), 0);
    }
}
