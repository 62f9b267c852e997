//! Process exec: successful execs from `sched:sched_process_exec` (its BTF tracepoint where
//! there is BTF); failed ones where execve(at)
//! returns an error (fexit on the arch's syscall functions where the kernel allows it, else
//! `sys_exit_execve(at)`). There is no hook on the way in: on a failed return
//! the caller's memory and saved registers are intact, so the filename is read then, through
//! the pointer the call was given. Nothing is filtered but the daemon itself.
//!
//! Counted as lost: an exec whose filename cannot be read (a failed exec's, when the call did not
//! fail with EFAULT itself: the caller unmapped it after the kernel read it). A failed exec given
//! a bad pointer (EFAULT) is reported with an empty filename: the kernel had none either.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes},
    macros::{btf_tracepoint, fexit, tracepoint},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};
use monitor_common::{
    EventKind, ExecEvent, ExecFailedEvent, FILENAME_LEN, FILENAME_TRUNCATED, ProgramId,
    SYSCALL_EXECVE, SYSCALL_EXECVEAT,
};

use crate::{
    batched, count_emitted, count_filtered, count_lost, is_self,
    kernel::{current_header, current_regs, field, load, offset, syscall_arg},
    reserve,
};

// Field offsets in the tracepoint records (see events/*/format).
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;
const SYS_EXIT_RET: usize = 16;
const EFAULT: i64 = 14;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    // __data_loc: low 16 bits offset of the string in the record, high 16 its length.
    let filename = || ctx.as_ptr() as u64 + (field::<u32>(&ctx, EXEC_FILENAME_LOC) & 0xffff) as u64;
    exec(field::<u32>(&ctx, EXEC_OLD_PID), filename)
}

/// The same where there is BTF: `sched_process_exec(struct task_struct *p, pid_t old_pid,
/// struct linux_binprm *bprm)`, the path from `bprm->filename`.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn tp_btf_sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let bprm: u64 = ctx.arg(2);
    exec(ctx.arg(1), || load(bprm, offset!(binprm_filename)))
}

/// The current task exec'd `filename` (a kernel string), as thread `old_pid` before.
#[inline(always)]
fn exec(old_pid: u32, filename: impl FnOnce() -> u64) -> u32 {
    let program = ProgramId::Exec;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_self(tgid) {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ExecEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::Exec as u32);
    event.old_pid = old_pid;
    event._pad = 0;
    let Ok(len) = (unsafe { bpf_probe_read_kernel_str_bytes(filename() as *const u8, &mut event.filename) }).map(|s| s.len())
    else {
        entry.discard(0);
        count_lost(program);
        return 0;
    };
    event.filename_len = len as u32;
    event.flags = if len + 1 >= FILENAME_LEN { FILENAME_TRUNCATED } else { 0 };
    entry.submit(batched());
    count_emitted(program);
    0
}

/// An execve(at) returned `ret`; its filename pointer is argument `filename_arg` in the
/// caller's registers (found only for a failed call).
#[inline(always)]
fn complete(program: ProgramId, syscall: u32, regs: impl FnOnce() -> u64, filename_arg: usize, ret: i64) -> u32 {
    if ret >= 0 || is_self((bpf_get_current_pid_tgid() >> 32) as u32) {
        // A success (sched_process_exec reported it), or the daemon itself.
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ExecFailedEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::ExecFailed as u32);
    event.errno = (-ret) as i32;
    event.syscall = syscall;
    let filename = syscall_arg(regs(), filename_arg);
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.filename) } {
        Ok(name) => name.len(),
        // A null or bad pointer: the kernel could not read the name either (EFAULT).
        Err(_) if filename == 0 || ret == -EFAULT => 0,
        Err(_) => {
            entry.discard(0);
            count_lost(program);
            return 0;
        }
    };
    event.filename_len = len as u32;
    event.flags = if len + 1 >= FILENAME_LEN { FILENAME_TRUNCATED } else { 0 };
    entry.submit(batched());
    count_emitted(program);
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    let ret = field::<i64>(&ctx, SYS_EXIT_RET);
    complete(ProgramId::ExecveExit, SYSCALL_EXECVE, current_regs, 0, ret)
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    let ret = field::<i64>(&ctx, SYS_EXIT_RET);
    complete(ProgramId::ExecveatExit, SYSCALL_EXECVEAT, current_regs, 1, ret)
}

// The same, where the kernel allows fexit on the arch's syscall functions: their one argument
// is the caller's registers, their return value follows.

#[fexit]
pub fn fexit_sys_execve(ctx: FExitContext) -> u32 {
    complete(ProgramId::ExecveExit, SYSCALL_EXECVE, || ctx.arg(0), 0, ctx.arg(1))
}

#[fexit]
pub fn fexit_sys_execveat(ctx: FExitContext) -> u32 {
    complete(ProgramId::ExecveatExit, SYSCALL_EXECVEAT, || ctx.arg(0), 1, ctx.arg(1))
}
