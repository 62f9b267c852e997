//! Socket connects. The syscall pair `sys_enter_connect`/`sys_exit_connect` gives the caller,
//! the address and a synchronous result. A non-blocking TCP connect (every Go client, so
//! kubelet, kubectl, crictl) returns EINPROGRESS and fails or succeeds later, out of the
//! caller's context: `sock:inet_sock_set_state` follows such sockets from SYN_SENT to their
//! outcome and reports that instead, attributed to the task that called connect.
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
const STATE_DPORT: usize = 26;
const STATE_FAMILY: usize = 28;
const STATE_PROTOCOL: usize = 30;
const STATE_DADDR: usize = 36;
const STATE_DADDR_V6: usize = 56;

#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    /// User pointer to the sockaddr.
    addr: u64,
    /// The TCP socket, once it entered SYN_SENT inside this call.
    skaddr: u64,
    addrlen: u32,
    _pad: u32,
}

const TCP_IN_SYSCALL: u32 = 0;
const TCP_ASYNC: u32 = 1;
const TCP_DONE: u32 = 2;

/// A TCP connect followed from SYN_SENT, with the event prepared in the caller's context.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpConnect {
    event: ConnectEvent,
    /// `TCP_IN_SYSCALL`, `TCP_ASYNC` (the call returned EINPROGRESS) or `TCP_DONE` (the outcome
    /// came before the call returned).
    status: u32,
    _pad: u32,
}

#[map]
static PENDING_CONNECTS: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(16384, 0);

#[map]
static TCP_CONNECTS: LruHashMap<u64, TcpConnect> = LruHashMap::with_max_entries(16384, 0);

#[map]
static SCRATCH_TCP: PerCpuArray<TcpConnect> = PerCpuArray::with_max_entries(1, 0);

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

#[inline(always)]
fn emit_tcp(program: ProgramId, tcp: &TcpConnect) {
    let event = &tcp.event;
    if event.result == 0 && !report_loopback_success() && is_loopback(event.family, &event.addr) {
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
        // In the caller's context, inside connect(): prepare the event now.
        let pid_tgid = bpf_get_current_pid_tgid();
        let Some(pending) = PENDING_CONNECTS.get_ptr_mut(&pid_tgid) else {
            return 0;
        };
        let Some(tcp) = SCRATCH_TCP.get_ptr_mut(0) else {
            return 0;
        };
        let tcp = unsafe { &mut *tcp };
        current_header(&mut tcp.event.header, EventKind::Connect as u32);
        let family = unsafe { ctx.read_at::<u16>(STATE_FAMILY) }.unwrap_or(0);
        tcp.event.family = family;
        tcp.event.port = unsafe { ctx.read_at::<u16>(STATE_DPORT) }.unwrap_or(0);
        tcp.event.result = 0;
        tcp.event.flags = 0;
        tcp.event.path_len = 0;
        tcp.event.addr = [0; 16];
        tcp.event.unix_path = [0; UNIX_PATH_LEN];
        tcp.event._pad = 0;
        if family == AF_INET {
            let v4 = unsafe { ctx.read_at::<[u8; 4]>(STATE_DADDR) }.unwrap_or([0; 4]);
            tcp.event.addr[..4].copy_from_slice(&v4);
        } else {
            tcp.event.addr = unsafe { ctx.read_at::<[u8; 16]>(STATE_DADDR_V6) }.unwrap_or([0; 16]);
        }
        tcp.status = TCP_IN_SYSCALL;
        tcp._pad = 0;
        if TCP_CONNECTS.insert(&skaddr, tcp, 0).is_err() {
            count_lost(program);
            return 0;
        }
        unsafe { (*pending).skaddr = skaddr };
        return 0;
    }
    if old != TCP_SYN_SENT || (new != TCP_ESTABLISHED && new != TCP_CLOSE) {
        return 0;
    }
    let Some(tcp) = TCP_CONNECTS.get_ptr_mut(&skaddr) else {
        return 0;
    };
    let tcp = unsafe { &mut *tcp };
    tcp.event.result = if new == TCP_ESTABLISHED {
        0
    } else {
        let err: i32 = read(skaddr, offset!(sock_sk_err)).unwrap_or(0);
        -(if err > 0 { err } else { ECONNABORTED })
    };
    if tcp.status == TCP_ASYNC {
        emit_tcp(program, tcp);
        let _ = TCP_CONNECTS.remove(&skaddr);
    } else {
        tcp.status = TCP_DONE;
    }
    0
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

    if pending.skaddr != 0 {
        if ret == -EINPROGRESS {
            if let Some(tcp) = TCP_CONNECTS.get_ptr_mut(&pending.skaddr) {
                let tcp = unsafe { &mut *tcp };
                if tcp.status == TCP_DONE {
                    tcp.event.flags |= CONNECT_ASYNC;
                    emit_tcp(program, tcp);
                    let _ = TCP_CONNECTS.remove(&pending.skaddr);
                } else {
                    tcp.event.flags |= CONNECT_ASYNC;
                    tcp.status = TCP_ASYNC;
                }
                return 0;
            }
        } else {
            // Blocking connect: the syscall's result is final, reported below.
            let _ = TCP_CONNECTS.remove(&pending.skaddr);
        }
    }

    let family: u16 = unsafe { bpf_probe_read_user(pending.addr as *const u16) }.unwrap_or(0);
    let mut port = 0u16;
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            port = u16::from_be(unsafe { bpf_probe_read_user((pending.addr + 2) as *const u16) }.unwrap_or(0));
            let v4: [u8; 4] = unsafe { bpf_probe_read_user((pending.addr + 4) as *const [u8; 4]) }.unwrap_or([0; 4]);
            addr[..4].copy_from_slice(&v4);
        }
        AF_INET6 => {
            port = u16::from_be(unsafe { bpf_probe_read_user((pending.addr + 2) as *const u16) }.unwrap_or(0));
            addr = unsafe { bpf_probe_read_user((pending.addr + 8) as *const [u8; 16]) }.unwrap_or([0; 16]);
        }
        AF_UNIX => return unix_connect(program, &pending, ret),
        0 => {
            count_filtered(program);
            return 0;
        }
        _ => {}
    }
    if ret == 0 && !report_loopback_success() && is_loopback(family, &addr) {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<ConnectEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::Connect as u32);
    event.result = ret;
    event.flags = 0;
    event.family = family;
    event.port = port;
    event.path_len = 0;
    event.addr = addr;
    event.unix_path = [0; UNIX_PATH_LEN];
    event._pad = 0;
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
