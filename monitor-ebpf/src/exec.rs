//! Process exec: successful execs from `sched:sched_process_exec`; failed ones by pairing
//! `sys_enter_execve(at)` with `sys_exit_execve(at)`. On enter only the user pointer to the
//! filename is kept (no copy for the common, successful case); the string is read on a failed
//! exit, when the caller's memory is still intact. Nothing is filtered but the daemon itself.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes},
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use monitor_common::{
    EventKind, ExecEvent, ExecFailedEvent, FILENAME_LEN, FILENAME_TRUNCATED, ProgramId,
    SYSCALL_EXECVE, SYSCALL_EXECVEAT,
};

use crate::{
    batched,count_emitted, count_filtered, count_lost, is_self, kernel::current_header, reserve};

/// execve(at) calls in flight: thread -> user pointer of the filename.
#[map]
static PENDING_EXECS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

// Field offsets in the tracepoint records (see events/*/format).
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;
const EXECVE_FILENAME: usize = 16;
const EXECVEAT_FILENAME: usize = 24;
const SYS_EXIT_RET: usize = 16;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
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
    event.old_pid = unsafe { ctx.read_at::<u32>(EXEC_OLD_PID) }.unwrap_or(0);
    event._pad = 0;
    // __data_loc: low 16 bits offset of the string in the record, high 16 its length.
    let loc = unsafe { ctx.read_at::<u32>(EXEC_FILENAME_LOC) }.unwrap_or(0);
    let src = (ctx.as_ptr() as usize + (loc & 0xffff) as usize) as *const u8;
    let len = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut event.filename) }
        .map(|s| s.len())
        .unwrap_or(0);
    event.filename_len = len as u32;
    event.flags = if len + 1 >= FILENAME_LEN { FILENAME_TRUNCATED } else { 0 };
    entry.submit(batched());
    count_emitted(program);
    0
}

#[inline(always)]
fn remember(ctx: &TracePointContext, program: ProgramId, filename_field: usize) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_self((pid_tgid >> 32) as u32) {
        count_filtered(program);
        return 0;
    }
    let filename = unsafe { ctx.read_at::<u64>(filename_field) }.unwrap_or(0);
    if PENDING_EXECS.insert(&pid_tgid, &filename, 0).is_err() {
        count_lost(program);
    }
    0
}

#[inline(always)]
fn complete(ctx: &TracePointContext, program: ProgramId, syscall: u32) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(&filename) = (unsafe { PENDING_EXECS.get(&pid_tgid) }) else {
        return 0;
    };
    let _ = PENDING_EXECS.remove(&pid_tgid);
    let ret = unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }.unwrap_or(0);
    if ret >= 0 {
        // Success: sched_process_exec already reported it.
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
    let len = unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.filename) }
        .map(|s| s.len())
        .unwrap_or(0);
    event.filename_len = len as u32;
    event.flags = if len + 1 >= FILENAME_LEN { FILENAME_TRUNCATED } else { 0 };
    entry.submit(batched());
    count_emitted(program);
    0
}

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    remember(&ctx, ProgramId::ExecveEnter, EXECVE_FILENAME)
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    complete(&ctx, ProgramId::ExecveExit, SYSCALL_EXECVE)
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    remember(&ctx, ProgramId::ExecveatEnter, EXECVEAT_FILENAME)
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    complete(&ctx, ProgramId::ExecveatExit, SYSCALL_EXECVEAT)
}
