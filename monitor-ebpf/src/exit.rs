//! Process exit from `sched:sched_process_exit`. Only the last thread of a thread group
//! (`group_dead`) is reported: thread exits are filtered in the kernel. The exit code is the
//! task's `exit_code` (wait status), read through BTF offsets.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{EventKind, ExitEvent, ProgramId};

use crate::{
    batched,
    count_emitted, count_filtered, exit_has_group_dead, is_self,
    kernel::{current_header, current_task, field, load, offset},
    reserve,
};

const EXIT_GROUP_DEAD: usize = 32;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let program = ProgramId::Exit;
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // The record's `group_dead` only where the kernel has it: reading past a record's end makes
    // the program unattachable there. Else the leader's exit stands for the process's.
    let group_dead = if exit_has_group_dead() { field::<u8>(&ctx, EXIT_GROUP_DEAD) != 0 } else { pid_tgid as u32 == tgid };
    if !group_dead || is_self(tgid) {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ExitEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::Exit as u32);
    event.exit_code = load(current_task(), offset!(task_exit_code));
    event._pad = 0;
    event.lifetime_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(event.header.task.start_ns);
    entry.submit(batched());
    count_emitted(program);
    0
}
