//! Fatal signals from the BTF tracepoint `signal_generate(int sig, struct kernel_siginfo *info,
//! struct task_struct *task, int group, int result)`. Only signals whose default action ends a
//! process (`FATAL_SIGNAL_MASK`) and that were delivered (result 0) leave the kernel; SIGCHLD
//! and the like are filtered here. The sender is the current task; `SEND_SIG_PRIV`, SI_KERNEL
//! and fault codes mark the kernel itself as the sender (OOM killer, page faults). A signal whose
//! `si_code` cannot be read (the kernel's own siginfo: never seen) is counted lost, not reported
//! with a guessed sender. The sender's executable's file name (`mm->exe_file`) goes with its
//! comm: read here, because the sender is often gone by the time user space handles the
//! event (`runc kill` exits at once), and it costs four reads on a rare event (fatal signals
//! only).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::{
    EventKind, FATAL_SIGNAL_MASK, ProgramId, SIGNAL_FROM_KERNEL, SIGNAL_GROUP, SignalEvent,
};

use crate::{
    URGENT,
    count_emitted, count_filtered, count_lost,
    kernel::{current_cgroup_id, current_comm, current_task, exe_name, memcg_id, read, task_header},
    reserve,
};

/// `SEND_SIG_PRIV`: `(struct kernel_siginfo *)1`.
const SEND_SIG_PRIV: u64 = 1;
const SI_KERNEL: i32 = 0x80;
/// `si_code` in `struct kernel_siginfo` (after si_signo and si_errno).
const SIGINFO_CODE: u32 = 8;

#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> u32 {
    let program = ProgramId::Signal;
    let sig: i32 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let target: u64 = ctx.arg(2);
    let group: i32 = ctx.arg(3);
    let result: i32 = ctx.arg(4);
    if !(1..64).contains(&sig) || FATAL_SIGNAL_MASK & (1u64 << sig) == 0 || result != 0 {
        count_filtered(program);
        return 0;
    }
    let code: i32 = if info > SEND_SIG_PRIV {
        let Some(code) = read(info, SIGINFO_CODE) else {
            count_lost(program);
            return 0;
        };
        code
    } else {
        0
    };
    let from_kernel = info == SEND_SIG_PRIV || code == SI_KERNEL || code > 0;
    let Some(mut entry) = reserve::<SignalEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    task_header(&mut event.header, EventKind::Signal as u32, target);
    event.signal = sig as u32;
    event.code = if info == SEND_SIG_PRIV { SI_KERNEL } else { code };
    event.result = result;
    event.flags = if from_kernel { SIGNAL_FROM_KERNEL } else { 0 } | if group != 0 { SIGNAL_GROUP } else { 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    event.sender_pid = pid_tgid as u32;
    event.sender_tgid = (pid_tgid >> 32) as u32;
    event.sender_cgroup_id = current_cgroup_id();
    event.sender_memcg_id = memcg_id(current_task());
    event.sender_comm = current_comm();
    // The executable, not the comm: a process may call itself anything (prctl, argv[0]).
    event.sender_exe = exe_name(current_task());
    entry.submit(URGENT);
    count_emitted(program);
    0
}
