//! Process exit from `sched:sched_process_exit` (its BTF tracepoint where there is BTF). Only
//! the last thread of a thread group (`group_dead`) is reported: thread exits are filtered in
//! the kernel. The exit code is the task's `exit_code` (wait status), read through BTF offsets.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
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
    // The record's `group_dead` only where the kernel has it: reading past a record's end makes
    // the program unattachable there. Else the leader's exit stands for the process's.
    let group_dead = || {
        if exit_has_group_dead() {
            field::<u8>(&ctx, EXIT_GROUP_DEAD) != 0
        } else {
            let pid_tgid = bpf_get_current_pid_tgid();
            pid_tgid as u32 == (pid_tgid >> 32) as u32
        }
    };
    exit(group_dead)
}

/// The same where there is BTF and the tracepoint passes `group_dead` (`sched_process_exit(struct
/// task_struct *p, bool group_dead)` in recent kernels; where it has one argument the verifier
/// refuses this program and the classic tracepoint is used).
#[btf_tracepoint(function = "sched_process_exit")]
pub fn tp_btf_sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    exit(|| ctx.arg::<u64>(1) & 0xff != 0)
}

#[inline(always)]
fn exit(group_dead: impl FnOnce() -> bool) -> u32 {
    let program = ProgramId::Exit;
    if !group_dead() || is_self((bpf_get_current_pid_tgid() >> 32) as u32) {
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
