//! OOM kills from the BTF tracepoint `mark_victim(struct task_struct *victim, uid_t uid)`:
//! the victim's task pointer gives its cgroups, which the classic tracepoint (pid only) does
//! not. The current task is the one whose allocation ran the OOM killer. RSS figures are the
//! mm's counters (as the kernel's own OOM report), in pages.
//!
//! Which limit ran out (a memory cgroup's, or the node's) is not an argument of `mark_victim`.
//! The OOM killer says it in the line it logs right after marking the victim, from the same
//! task: "Memory cgroup out of memory: Killed process <pid> ..." or "Out of memory: Killed
//! process ...". `printk:console` passes those lines on (without CAP_SYSLOG, and unlike the
//! header before them, they are not rate limited); every other kernel log line stays here.
//!
//! Which memory cgroup's limit it was is not said either (the kernel's summary line that names
//! it is rate limited): the program reads it from the kernel's counters at the kill, the
//! nearest of the victim's memory cgroup and its ancestors whose usage is at its limit
//! (`limit_cgroup_id`, with that limit and usage). The printk line says whether a limit or
//! the node ran out; this says whose limit.
//!
//! Counted as lost: a kill whose victim's mm or signal struct cannot be read (a field the kernel
//! lacks reads as zero; a read that faults is a loss, not a zero: the report then comes with no
//! kill, `oom_reports_unmatched`), and a console line that cannot be read.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use monitor_common::{EventKind, OFFSET_UNKNOWN, OOM_REPORT_LEN, OomKillEvent, OomReportEvent, ProgramId};

use crate::{
    URGENT,
    count_emitted, count_lost,
    kernel::{current_cgroup_id, current_comm, current_header, current_task, field, memcg_at_limit, memcg_id, offset, read_or_fail, task_header},
    reserve,
};

// enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES }
const MM_FILEPAGES: u32 = 0;
const MM_ANONPAGES: u32 = 1;
const MM_SHMEMPAGES: u32 = 3;

#[inline(always)]
fn rss(mm: u64, counter: u32, failed: &mut bool) -> u64 {
    let base = offset!(mm_rss_stat);
    let size = offset!(percpu_counter_size);
    let count = offset!(percpu_counter_count);
    if base == OFFSET_UNKNOWN || size == OFFSET_UNKNOWN || count == OFFSET_UNKNOWN {
        return 0;
    }
    let value: i64 = read_or_fail(mm, base + counter * size + count, failed);
    if value < 0 { 0 } else { value as u64 }
}

#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> u32 {
    let program = ProgramId::OomVictim;
    let victim: u64 = ctx.arg(0);
    let Some(mut entry) = reserve::<OomKillEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    task_header(&mut event.header, EventKind::OomKill as u32, victim);
    let pid_tgid = bpf_get_current_pid_tgid();
    event.trigger_pid = pid_tgid as u32;
    event.trigger_tgid = (pid_tgid >> 32) as u32;
    event.trigger_cgroup_id = current_cgroup_id();
    event.trigger_memcg_id = memcg_id(current_task());
    event.trigger_comm = current_comm();
    let mut failed = false;
    let mm: u64 = read_or_fail(victim, offset!(task_mm), &mut failed);
    event.total_vm_pages = read_or_fail(mm, offset!(mm_total_vm), &mut failed);
    event.anon_rss_pages = rss(mm, MM_ANONPAGES, &mut failed);
    event.file_rss_pages = rss(mm, MM_FILEPAGES, &mut failed);
    event.shmem_rss_pages = rss(mm, MM_SHMEMPAGES, &mut failed);
    let signal: u64 = read_or_fail(victim, offset!(task_signal), &mut failed);
    event.oom_score_adj = read_or_fail::<i16>(signal, offset!(signal_oom_score_adj), &mut failed) as i32;
    event._pad = 0;
    // Whose limit: read now, before the kill frees the victim's memory.
    (event.limit_cgroup_id, event.limit_max_pages, event.limit_usage_pages) = memcg_at_limit(victim);
    if failed {
        entry.discard(0);
        count_lost(program);
        return 0;
    }
    entry.submit(URGENT);
    count_emitted(program);
    0
}

// printk:console: `__data_loc char[] msg` at offset 8.
const CONSOLE_MSG_LOC: usize = 8;
const GLOBAL_OOM: &[u8; 13] = b"Out of memory";
const MEMCG_OOM: &[u8; 27] = b"Memory cgroup out of memory";

#[inline(always)]
fn starts_with<const N: usize>(line: &[u8; 32], prefix: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N && i < line.len() {
        if line[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[tracepoint]
pub fn printk_console(ctx: TracePointContext) -> u32 {
    let program = ProgramId::OomReport;
    // __data_loc: low 16 bits offset of the string in the record, high 16 its length.
    let loc = field::<u32>(&ctx, CONSOLE_MSG_LOC);
    let src = (ctx.as_ptr() as usize + (loc & 0xffff) as usize) as *const u8;
    let Ok(head) = (unsafe { bpf_probe_read_kernel(src as *const [u8; 32]) }) else {
        // Perhaps the OOM killer's line: not told, so lost.
        count_lost(program);
        return 0;
    };
    if !starts_with(&head, MEMCG_OOM) && !starts_with(&head, GLOBAL_OOM) {
        return 0;
    }
    let Some(mut entry) = reserve::<OomReportEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::OomReport as u32);
    let Ok(len) = (unsafe { bpf_probe_read_kernel_str_bytes(src, &mut event.line) }).map(|s| s.len()) else {
        entry.discard(0);
        count_lost(program);
        return 0;
    };
    event.line_len = len.min(OOM_REPORT_LEN) as u32;
    event._pad = 0;
    entry.submit(URGENT);
    count_emitted(program);
    0
}
