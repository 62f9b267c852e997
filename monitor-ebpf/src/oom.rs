//! OOM kills from the BTF tracepoint `mark_victim(struct task_struct *victim, uid_t uid)`:
//! the victim's task pointer gives its cgroups, which the classic tracepoint (pid only) does
//! not. The current task is the one whose allocation ran the OOM killer. RSS figures are the
//! mm's counters (as the kernel's own OOM report), in pages.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::{EventKind, OFFSET_UNKNOWN, OomKillEvent, ProgramId};

use crate::{
    URGENT,
    count_emitted,
    kernel::{current_task, memcg_id, offset, read, task_header},
    reserve,
};

// enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES }
const MM_FILEPAGES: u32 = 0;
const MM_ANONPAGES: u32 = 1;
const MM_SHMEMPAGES: u32 = 3;

#[inline(always)]
fn rss(mm: u64, counter: u32) -> u64 {
    let base = offset!(mm_rss_stat);
    let size = offset!(percpu_counter_size);
    let count = offset!(percpu_counter_count);
    if base == OFFSET_UNKNOWN || size == OFFSET_UNKNOWN || count == OFFSET_UNKNOWN {
        return 0;
    }
    let value: i64 = read(mm, base + counter * size + count).unwrap_or(0);
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
    event.trigger_cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    event.trigger_memcg_id = memcg_id(current_task());
    event.trigger_comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let mm: u64 = read(victim, offset!(task_mm)).unwrap_or(0);
    event.total_vm_pages = read(mm, offset!(mm_total_vm)).unwrap_or(0);
    event.anon_rss_pages = rss(mm, MM_ANONPAGES);
    event.file_rss_pages = rss(mm, MM_FILEPAGES);
    event.shmem_rss_pages = rss(mm, MM_SHMEMPAGES);
    let signal: u64 = read(victim, offset!(task_signal)).unwrap_or(0);
    event.oom_score_adj = read::<i16>(signal, offset!(signal_oom_score_adj)).unwrap_or(0) as i32;
    event._pad = 0;
    entry.submit(URGENT);
    count_emitted(program);
    0
}
