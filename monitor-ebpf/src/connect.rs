//! Socket connects. The syscall pair `sys_enter_connect`/`sys_exit_connect` gives the caller,
//! the address and a synchronous result. A non-blocking TCP connect (every Go client, so
//! kubelet, kubectl, crictl) returns EINPROGRESS and fails or succeeds later, out of the
//! caller's context: `sock:inet_sock_set_state` follows such sockets from SYN_SENT to their
//! outcome and reports that instead, attributed to the task that called connect. The event of
//! such a connect is built when the call returns EINPROGRESS, not at SYN_SENT: a blocking
//! connect (the common case) costs a socket pointer in the pending entry, no event.
//!
//! Filtered in the kernel (counted as filtered): successful loopback TCP/UDP connects (unless
//! configured), successful unix connects to sockets not in `WATCHED_SOCKETS` (user space fills
//! it with the runtime sockets), AF_UNSPEC disconnects, and the daemon's own connects.
//! Every failed connect is reported.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use monitor_common::{
    AF_INET, AF_INET6, AF_UNIX, CONNECT_ASYNC, CONNECT_UNIX_ABSTRACT, ConnectEvent, EventKind,
    ProgramId, UNIX_PATH_LEN, WatchedSocket,
};

use crate::{
    batched,
    count_emitted, count_filtered, count_lost, is_self,
    kernel::{current_header, offset, read},
    report_loopback_success, reserve,
};

const EINPROGRESS: i32 = 115;
const ECONNABORTED: i32 = 103;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;

// Field offsets in the tracepoint records.
const ENTER_ADDR: usize = 24;
const ENTER_ADDRLEN: usize = 32;
const EXIT_RET: usize = 16;
const STATE_SKADDR: usize = 8;
const STATE_OLD: usize = 16;
const STATE_NEW: usize = 20;
const STATE_PROTOCOL: usize = 30;

#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    /// User pointer to the sockaddr.
    addr: u64,
    /// The TCP socket, once it entered SYN_SENT inside this call.
    skaddr: u64,
    addrlen: u32,
    /// 1 when the TCP outcome came before the call returned (`outcome` holds it).
    done: u32,
    /// 0 (established) or -errno.
    outcome: i32,
    _pad: u32,
}

#[map]
static PENDING_CONNECTS: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(16384, 0);

/// Non-blocking TCP connects that returned EINPROGRESS, by socket: their event, waiting for the
/// outcome. Only those: a blocking connect's result is the syscall's, so the common case costs
/// no insert here.
#[map]
static TCP_CONNECTS: LruHashMap<u64, ConnectEvent> = LruHashMap::with_max_entries(16384, 0);

/// Outcomes seen out of the caller's context while its connect() was still running (softirq
/// work deferred to ksoftirqd): rare, kept by socket for `sys_exit_connect`.
#[map]
static EARLY_OUTCOMES: LruHashMap<u64, i32> = LruHashMap::with_max_entries(1024, 0);

#[map]
static SCRATCH_EVENT: PerCpuArray<ConnectEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SCRATCH_PATH: PerCpuArray<WatchedSocket> = PerCpuArray::with_max_entries(1, 0);

/// Unix socket paths whose successful connects are reported.
#[map]
static WATCHED_SOCKETS: HashMap<WatchedSocket, u8> = HashMap::with_max_entries(256, 0);

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let program = ProgramId::ConnectEnter;
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_self((pid_tgid >> 32) as u32) {
        count_filtered(program);
        return 0;
    }
    let pending = PendingConnect {
        addr: unsafe { ctx.read_at::<u64>(ENTER_ADDR) }.unwrap_or(0),
        skaddr: 0,
        addrlen: unsafe { ctx.read_at::<u64>(ENTER_ADDRLEN) }.unwrap_or(0) as u32,
        done: 0,
        outcome: 0,
        _pad: 0,
    };
    if PENDING_CONNECTS.insert(&pid_tgid, &pending, 0).is_err() {
        count_lost(program);
    }
    0
}

#[inline(always)]
fn is_loopback(family: u16, addr: &[u8; 16]) -> bool {
    match family {
        AF_INET => addr[0] == 127,
        AF_INET6 => {
            let v4_mapped = addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff;
            (addr[..15].iter().all(|b| *b == 0) && addr[15] == 1) || (v4_mapped && addr[12] == 127)
        }
        _ => false,
    }
}

/// A successful loopback connect, not reported unless configured.
#[inline(always)]
fn filtered_loopback(result: i32, family: u16, addr: &[u8; 16]) -> bool {
    result == 0 && !report_loopback_success() && is_loopback(family, addr)
}

/// Reports a connect event, unless it is a successful loopback connect (filtered).
#[inline(always)]
fn emit(program: ProgramId, event: &ConnectEvent) {
    if filtered_loopback(event.result, event.family, &event.addr) {
        count_filtered(program);
        return;
    }
    let Some(mut entry) = reserve::<ConnectEvent>(program) else {
        return;
    };
    unsafe { entry.as_mut_ptr().write(*event) };
    entry.submit(batched());
    count_emitted(program);
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let program = ProgramId::TcpState;
    let protocol = unsafe { ctx.read_at::<u16>(STATE_PROTOCOL) }.unwrap_or(0);
    let old = unsafe { ctx.read_at::<i32>(STATE_OLD) }.unwrap_or(0);
    let new = unsafe { ctx.read_at::<i32>(STATE_NEW) }.unwrap_or(0);
    let skaddr = unsafe { ctx.read_at::<u64>(STATE_SKADDR) }.unwrap_or(0);
    if protocol != IPPROTO_TCP || skaddr == 0 {
        return 0;
    }
    if old == TCP_CLOSE && new == TCP_SYN_SENT {
        // In the caller's context, inside connect(): remember which socket it is.
        if let Some(pending) = PENDING_CONNECTS.get_ptr_mut(&bpf_get_current_pid_tgid()) {
            unsafe { (*pending).skaddr = skaddr };
        }
        return 0;
    }
    if old != TCP_SYN_SENT || (new != TCP_ESTABLISHED && new != TCP_CLOSE) {
        return 0;
    }
    let result = if new == TCP_ESTABLISHED {
        0
    } else {
        let err: i32 = read(skaddr, offset!(sock_sk_err)).unwrap_or(0);
        -(if err > 0 { err } else { ECONNABORTED })
    };
    if let Some(event) = TCP_CONNECTS.get_ptr_mut(&skaddr) {
        // The call returned EINPROGRESS earlier: this is its outcome.
        let event = unsafe { &mut *event };
        event.result = result;
        emit(program, event);
        let _ = TCP_CONNECTS.remove(&skaddr);
        return 0;
    }
    // Still inside connect() (loopback answers at once, in the caller's context): note the
    // outcome; `sys_exit_connect` reports it if the call returns EINPROGRESS.
    if let Some(pending) = PENDING_CONNECTS.get_ptr_mut(&bpf_get_current_pid_tgid()) {
        let pending = unsafe { &mut *pending };
        if pending.skaddr == skaddr {
            pending.outcome = result;
            pending.done = 1;
            return 0;
        }
    }
    let _ = EARLY_OUTCOMES.insert(&skaddr, &result, 0);
    0
}

/// The peer of an AF_INET/AF_INET6 sockaddr in user memory: (port, address).
#[inline(always)]
fn read_inet(family: u16, sockaddr: u64) -> (u16, [u8; 16]) {
    let mut addr = [0u8; 16];
    let port = u16::from_be(unsafe { bpf_probe_read_user((sockaddr + 2) as *const u16) }.unwrap_or(0));
    if family == AF_INET {
        let v4: [u8; 4] = unsafe { bpf_probe_read_user((sockaddr + 4) as *const [u8; 4]) }.unwrap_or([0; 4]);
        addr[..4].copy_from_slice(&v4);
    } else {
        addr = unsafe { bpf_probe_read_user((sockaddr + 8) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    (port, addr)
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let program = ProgramId::ConnectExit;
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(&pending) = (unsafe { PENDING_CONNECTS.get(&pid_tgid) }) else {
        return 0;
    };
    let _ = PENDING_CONNECTS.remove(&pid_tgid);
    let ret = unsafe { ctx.read_at::<i64>(EXIT_RET) }.unwrap_or(0) as i32;

    let family: u16 = unsafe { bpf_probe_read_user(pending.addr as *const u16) }.unwrap_or(0);
    match family {
        AF_UNIX => return unix_connect(program, &pending, ret),
        0 => {
            count_filtered(program);
            return 0;
        }
        AF_INET | AF_INET6 => {}
        // Another family (netlink, packet...): its result, no address.
        _ => return report_inet(program, family, 0, [0; 16], ret, 0),
    }
    let (port, addr) = read_inet(family, pending.addr);
    if pending.skaddr != 0 && ret == -EINPROGRESS {
        // Non-blocking TCP: the outcome, if it came already, else wait for it.
        let early = if pending.done != 0 {
            Some(pending.outcome)
        } else {
            let early = unsafe { EARLY_OUTCOMES.get(&pending.skaddr) }.copied();
            if early.is_some() {
                let _ = EARLY_OUTCOMES.remove(&pending.skaddr);
            }
            early
        };
        return match early {
            Some(result) => report_inet(program, family, port, addr, result, CONNECT_ASYNC),
            None => {
                let Some(event) = SCRATCH_EVENT.get_ptr_mut(0) else {
                    return 0;
                };
                let event = unsafe { &mut *event };
                fill_inet(event, family, port, addr, 0, CONNECT_ASYNC);
                if TCP_CONNECTS.insert(&pending.skaddr, event, 0).is_err() {
                    count_lost(program);
                }
                0
            }
        };
    }
    report_inet(program, family, port, addr, ret, 0)
}

#[inline(always)]
fn fill_inet(event: &mut ConnectEvent, family: u16, port: u16, addr: [u8; 16], result: i32, flags: u32) {
    current_header(&mut event.header, EventKind::Connect as u32);
    event.result = result;
    event.flags = flags;
    event.family = family;
    event.port = port;
    event.path_len = 0;
    event.addr = addr;
    event.unix_path = [0; UNIX_PATH_LEN];
    event._pad = 0;
}

/// Reports an inet connect's result (a successful loopback one is filtered).
#[inline(always)]
fn report_inet(program: ProgramId, family: u16, port: u16, addr: [u8; 16], result: i32, flags: u32) -> u32 {
    if filtered_loopback(result, family, &addr) {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ConnectEvent>(program) else {
        return 0;
    };
    fill_inet(unsafe { &mut *entry.as_mut_ptr() }, family, port, addr, result, flags);
    entry.submit(batched());
    count_emitted(program);
    0
}

#[inline(always)]
fn unix_connect(program: ProgramId, pending: &PendingConnect, ret: i32) -> u32 {
    let Some(scratch) = SCRATCH_PATH.get_ptr_mut(0) else {
        return 0;
    };
    let scratch = unsafe { &mut *scratch };
    scratch.path = [0; UNIX_PATH_LEN];
    let first: u8 = unsafe { bpf_probe_read_user((pending.addr + 2) as *const u8) }.unwrap_or(0);
    let (flags, path_len) = if first == 0 {
        // Abstract: a name of addrlen - 3 bytes after the leading NUL, NULs allowed.
        let _ = unsafe { bpf_probe_read_user_buf((pending.addr + 3) as *const u8, &mut scratch.path[..UNIX_PATH_LEN - 1]) };
        let len = pending.addrlen.saturating_sub(3).min(UNIX_PATH_LEN as u32 - 1);
        (CONNECT_UNIX_ABSTRACT, len)
    } else {
        let len = unsafe { bpf_probe_read_user_str_bytes((pending.addr + 2) as *const u8, &mut scratch.path) }
            .map(|s| s.len())
            .unwrap_or(0);
        (0, len as u32)
    };
    if ret == 0 && (flags != 0 || unsafe { WATCHED_SOCKETS.get(scratch) }.is_none()) {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ConnectEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::Connect as u32);
    event.result = ret;
    event.flags = flags;
    event.family = AF_UNIX;
    event.port = 0;
    event.path_len = path_len;
    event.addr = [0; 16];
    event.unix_path = scratch.path;
    event._pad = 0;
    entry.submit(batched());
    count_emitted(program);
    0
}
