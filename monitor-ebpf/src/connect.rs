//! Socket connects, seen where the connect syscall returns (fexit on the arch's syscall function
//! where the kernel allows it, else `sys_exit_connect`): the caller, the address and a
//! synchronous result. There is no hook on the way in: an attached syscall tracepoint costs
//! every syscall on the node, so one per syscall, not two.
//!
//! `inet_sock_set_state` (a BTF tracepoint where the kernel has BTF) notes, per thread, the
//! socket a connect() puts in SYN_SENT and its destination. So a TCP connect's return reads
//! nothing from user memory; any other connect's address is read there, through the arguments
//! in the caller's saved registers. A non-blocking TCP connect (every Go client, so kubelet,
//! kubectl, crictl) returns EINPROGRESS and fails or succeeds later, out of the caller's
//! context: its event is built when the call returns and sent with the outcome, attributed to
//! the caller. A blocking TCP connect (the common case) costs two writes to its thread's map
//! entry and no map insert.
//!
//! Filtered in the kernel (counted as filtered): successful loopback TCP/UDP connects (unless
//! configured), successful unix connects to sockets not in `WATCHED_SOCKETS` (user space fills
//! it with the runtime sockets; most are told by their first bytes, `WATCHED_PREFIXES`),
//! AF_UNSPEC disconnects, and the daemon's own connects.
//! Every failed connect is reported.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes},
    macros::{btf_tracepoint, fexit, map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};
use monitor_common::{
    AF_INET, AF_INET6, AF_UNIX, CONNECT_ASYNC, CONNECT_UNIX_ABSTRACT, ConnectEvent, EventKind,
    ProgramId, UNIX_PATH_LEN, WatchedSocket, unix_sockaddr_prefix,
};

use crate::{
    batched,
    count_emitted, count_filtered, count_lost, is_self,
    kernel::{current_header, current_regs, field, in_connect, offset, read, sock_destination, sock_protocol, syscall_arg},
    report_loopback_success, reserve,
};

const EINPROGRESS: i32 = 115;
const ECONNABORTED: i32 = 103;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;

// Field offsets in the tracepoint records.
const EXIT_RET: usize = 16;
const STATE_SKADDR: usize = 8;
const STATE_OLD: usize = 16;
const STATE_NEW: usize = 20;
const STATE_DPORT: usize = 26;
const STATE_FAMILY: usize = 28;
const STATE_PROTOCOL: usize = 30;
const STATE_DADDR: usize = 36;
const STATE_DADDR_V6: usize = 56;

/// A TCP connect in progress: the socket the calling thread put in SYN_SENT, and where to.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    skaddr: u64,
    /// 1 when the outcome came before the call returned (`outcome` holds it).
    done: u32,
    /// 0 (established) or -errno.
    outcome: i32,
    family: u16,
    port: u16,
    _pad: u32,
    addr: [u8; 16],
}

impl PendingConnect {
    const NONE: Self = Self { skaddr: 0, done: 0, outcome: 0, family: 0, port: 0, _pad: 0, addr: [0; 16] };
}

/// TCP connects in progress, by calling thread; `skaddr` 0 when none is. Only SYN_SENTs inside
/// connect() are noted, and the call's return clears the entry: an entry found there is that
/// call's own, so its destination need not be read from user memory.
#[map]
static PENDING_CONNECTS: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(16384, 0);

/// Non-blocking TCP connects that returned EINPROGRESS, by socket: their event, waiting for the
/// outcome. Only those: a blocking connect's result is the syscall's, so the common case costs
/// no insert here.
#[map]
static TCP_CONNECTS: LruHashMap<u64, ConnectEvent> = LruHashMap::with_max_entries(16384, 0);

/// Outcomes seen out of the caller's context while its connect() was still running (a remote
/// peer's answer or a timer's refusal, in softirq): kept by socket for the connect's return,
/// which takes them away.
#[map]
static EARLY_OUTCOMES: LruHashMap<u64, i32> = LruHashMap::with_max_entries(1024, 0);

#[map]
static SCRATCH_EVENT: PerCpuArray<ConnectEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SCRATCH_PATH: PerCpuArray<WatchedSocket> = PerCpuArray::with_max_entries(1, 0);

/// Unix socket paths whose successful connects are reported.
#[map]
static WATCHED_SOCKETS: HashMap<WatchedSocket, u8> = HashMap::with_max_entries(256, 0);

/// The prefixes of `WATCHED_SOCKETS`' sockaddrs (`unix_sockaddr_prefix`): most successful unix
/// connects are filtered on them, before their path is read.
#[map]
static WATCHED_PREFIXES: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

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
    let destination = || {
        // Whole words: the verifier refuses a copy loop over the record.
        let family = field::<u16>(&ctx, STATE_FAMILY);
        let mut addr = [0u8; 16];
        if family == AF_INET6 {
            addr[..8].copy_from_slice(&field::<u64>(&ctx, STATE_DADDR_V6).to_ne_bytes());
            addr[8..].copy_from_slice(&field::<u64>(&ctx, STATE_DADDR_V6 + 8).to_ne_bytes());
        } else {
            addr[..4].copy_from_slice(&field::<u32>(&ctx, STATE_DADDR).to_ne_bytes());
        }
        (family, field::<u16>(&ctx, STATE_DPORT), addr)
    };
    tcp_state_change(
        field::<u64>(&ctx, STATE_SKADDR),
        || Some(field::<u16>(&ctx, STATE_PROTOCOL)),
        destination,
        field::<i32>(&ctx, STATE_OLD),
        field::<i32>(&ctx, STATE_NEW),
    )
}

/// The same, where the kernel has BTF: the hook's arguments come as they are, with no record
/// built for them first (most of a classic tracepoint's cost here, since it fires on every
/// state change of every TCP socket).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tp_btf_inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    tcp_state_change(sk, || sock_protocol(sk), || sock_destination(sk), ctx.arg(1), ctx.arg(2))
}

/// The socket at `skaddr` went from state `old` to `new`; `protocol` says which protocol it
/// is (`None`: not known, taken as TCP, the only other caller being DCCP, whose states match),
/// `destination` where it connects to (family, port, address).
#[inline(always)]
fn tcp_state_change(
    skaddr: u64,
    protocol: impl FnOnce() -> Option<u16>,
    destination: impl FnOnce() -> (u16, u16, [u8; 16]),
    old: i32,
    new: i32,
) -> u32 {
    let program = ProgramId::TcpState;
    let connecting = old == TCP_CLOSE && new == TCP_SYN_SENT;
    let connected = old == TCP_SYN_SENT && (new == TCP_ESTABLISHED || new == TCP_CLOSE);
    // The states first: they filter most calls (every other state change) with no read.
    if !(connecting || connected) || skaddr == 0 || protocol().is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    if connecting {
        // In the caller's context: remember which socket it is, and where to, if the caller
        // is in connect() (not in TCP Fast Open's sendto, not a kernel socket's worker).
        if !in_connect() {
            return 0;
        }
        let (family, port, addr) = destination();
        let pending = PendingConnect { skaddr, done: 0, outcome: 0, family, port, _pad: 0, addr };
        let thread = bpf_get_current_pid_tgid();
        match PENDING_CONNECTS.get_ptr_mut(&thread) {
            Some(entry) => unsafe { *entry = pending },
            None => {
                if PENDING_CONNECTS.insert(&thread, &pending, 0).is_err() {
                    count_lost(program);
                }
            }
        }
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
    // outcome; the connect's return reports it if the call returns EINPROGRESS.
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

/// The peer of an AF_INET/AF_INET6 sockaddr in user memory whose first 8 bytes are `head`:
/// (port, address). An IPv4 peer is all in `head`.
#[inline(always)]
fn read_inet(family: u16, sockaddr: u64, head: [u8; 8]) -> (u16, [u8; 16]) {
    let mut addr = [0u8; 16];
    let port = u16::from_be_bytes([head[2], head[3]]);
    if family == AF_INET {
        addr[..4].copy_from_slice(&head[4..]);
    } else {
        addr = unsafe { bpf_probe_read_user((sockaddr + 8) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    (port, addr)
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    complete(current_regs, field::<i64>(&ctx, EXIT_RET))
}

/// The same, where the kernel allows fexit on the arch's connect syscall function: its one
/// argument is the caller's registers, its return value follows.
#[fexit]
pub fn fexit_sys_connect(ctx: FExitContext) -> u32 {
    complete(|| ctx.arg(0), ctx.arg(1))
}

/// A connect returned `ret`; `regs` gives its arguments (fd, sockaddr, addrlen).
#[inline(always)]
fn complete(regs: impl FnOnce() -> u64, ret: i64) -> u32 {
    let program = ProgramId::ConnectExit;
    let pid_tgid = bpf_get_current_pid_tgid();
    // A TCP connect that sent its SYN in this call: `inet_sock_set_state` noted the socket and
    // its destination, so nothing is read from user memory (whose first touch here costs more
    // than the rest of this program). Every return clears its thread's entry, the daemon's
    // too, so no entry outlives its call. It is kept and cleared, not deleted: an LRU map's
    // delete and insert take locks, a write through the pointer does not. Plain values, not an
    // Option: the verifier must see every register it reads written on every path.
    let pending = match PENDING_CONNECTS.get_ptr_mut(&pid_tgid) {
        Some(entry) => unsafe {
            let pending = *entry;
            (*entry).skaddr = 0;
            pending
        },
        None => PendingConnect::NONE,
    };
    if is_self((pid_tgid >> 32) as u32) {
        count_filtered(program);
        return 0;
    }
    let ret = ret as i32;
    if pending.skaddr != 0 {
        return tcp_connect(program, &pending, ret);
    }
    let regs = regs();
    let addr = syscall_arg(regs, 1);
    // One read for the family and what follows it: an IPv4 peer, a unix path's first bytes.
    let head: [u8; 8] = unsafe { bpf_probe_read_user(addr as *const [u8; 8]) }.unwrap_or([0; 8]);
    let family = u16::from_ne_bytes([head[0], head[1]]);
    match family {
        AF_UNIX => unix_connect(program, addr, syscall_arg(regs, 2) as u32, head, ret),
        0 => {
            count_filtered(program);
            0
        }
        // UDP, or a TCP connect that failed before sending its SYN.
        AF_INET | AF_INET6 => {
            let (port, peer) = read_inet(family, addr, head);
            report_inet(program, family, port, peer, ret, 0)
        }
        // Another family (netlink, packet...): its result, no address.
        _ => report_inet(program, family, 0, [0; 16], ret, 0),
    }
}

/// A TCP connect that put its socket in SYN_SENT (`pending`) returned `ret`.
#[inline(always)]
fn tcp_connect(program: ProgramId, pending: &PendingConnect, ret: i32) -> u32 {
    let (family, port, peer) = (pending.family, pending.port, pending.addr);
    if ret != -EINPROGRESS {
        if pending.done == 0 {
            // The outcome came out of this context while the call slept (a remote peer's
            // answer, a timer's refusal) and was kept by socket for a non-blocking return.
            // This call returns it itself: drop it, or the next socket carved from the same
            // memory would be given it.
            let _ = EARLY_OUTCOMES.remove(&pending.skaddr);
        }
        return report_inet(program, family, port, peer, ret, 0);
    }
    // Non-blocking: the outcome, if it came already, else wait for it.
    let early = if pending.done != 0 {
        Some(pending.outcome)
    } else {
        let early = unsafe { EARLY_OUTCOMES.get(&pending.skaddr) }.copied();
        if early.is_some() {
            let _ = EARLY_OUTCOMES.remove(&pending.skaddr);
        }
        early
    };
    match early {
        Some(result) => report_inet(program, family, port, peer, result, CONNECT_ASYNC),
        None => {
            let Some(event) = SCRATCH_EVENT.get_ptr_mut(0) else {
                return 0;
            };
            let event = unsafe { &mut *event };
            fill_inet(event, family, port, peer, 0, CONNECT_ASYNC);
            if TCP_CONNECTS.insert(&pending.skaddr, event, 0).is_err() {
                count_lost(program);
            }
            0
        }
    }
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

/// A unix connect to the sockaddr at `addr` of `addrlen` bytes, which starts with `head`,
/// returned `ret`.
#[inline(always)]
fn unix_connect(program: ProgramId, addr: u64, addrlen: u32, head: [u8; 8], ret: i32) -> u32 {
    let first = head[2];
    // A successful connect to an abstract name (never watched) or to a path that does not start
    // as a watched one does: filtered, nothing more to read.
    if ret == 0 && (first == 0 || unsafe { WATCHED_PREFIXES.get(&unix_sockaddr_prefix(head)) }.is_none()) {
        count_filtered(program);
        return 0;
    }
    let Some(scratch) = SCRATCH_PATH.get_ptr_mut(0) else {
        return 0;
    };
    let scratch = unsafe { &mut *scratch };
    scratch.path = [0; UNIX_PATH_LEN];
    let (flags, path_len) = if first == 0 {
        // Abstract: a name of addrlen - 3 bytes after the leading NUL, NULs allowed.
        let _ = unsafe { bpf_probe_read_user_buf((addr + 3) as *const u8, &mut scratch.path[..UNIX_PATH_LEN - 1]) };
        let len = addrlen.saturating_sub(3).min(UNIX_PATH_LEN as u32 - 1);
        (CONNECT_UNIX_ABSTRACT, len)
    } else {
        let len = unsafe { bpf_probe_read_user_str_bytes((addr + 2) as *const u8, &mut scratch.path) }
            .map(|s| s.len())
            .unwrap_or(0);
        (0, len as u32)
    };
    if ret == 0 && unsafe { WATCHED_SOCKETS.get(scratch) }.is_none() {
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
