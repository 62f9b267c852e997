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
//! Counted as lost (for the program that finds it out): a connect whose state was evicted from
//! its table before it could be reported (see each map for how that is told), and a connect
//! whose sockaddr or unix path the caller's memory no longer holds (a read that fails although
//! the kernel read it: the caller unmapped it meanwhile). A read that fails because the call
//! itself failed with EFAULT loses nothing: the connect is reported, with no address.
//!
//! Filtered in the kernel (counted as filtered): successful loopback TCP/UDP connects (unless
//! configured), successful unix connects to sockets not in `WATCHED_SOCKETS` (user space fills
//! it with the runtime sockets; most are told by their first bytes, `WATCHED_PREFIXES`),
//! AF_UNSPEC disconnects, and the daemon's own connects.
//! Every failed connect is reported.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes},
    macros::{btf_tracepoint, fexit, map, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};
use monitor_common::{
    AF_INET, AF_INET6, AF_UNIX, CONNECT_ASYNC, CONNECT_TABLE_ENTRIES, CONNECT_UNIX_ABSTRACT, ConnectEvent,
    EventKind, ProgramId, UNIX_PATH_LEN, WatchedSocket, unix_sockaddr_prefix,
};

use crate::{
    batched, connect_table_entries,
    count_emitted, count_filtered, count_lost, is_self,
    kernel::{current_header, current_regs, field, in_connect, offset, read, sock_destination, sock_protocol, syscall_arg},
    report_loopback_success, reserve,
};

const EINPROGRESS: i32 = 115;
const EFAULT: i32 = 14;
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
///
/// LRU: entries are cleared, never deleted (see `complete`), so every thread that ever
/// connected keeps one until evicted; a plain hash map would fill with dead threads' entries.
/// An eviction (or a failed insert) of a call's entry is told at the call's return, which
/// finds none: a blocking connect is then reported all the same, its address read from user
/// memory; a non-blocking one that returned EINPROGRESS has no socket to wait on, so its
/// outcome cannot be told: it is reported with the call's own EINPROGRESS, which user space
/// takes for neither a success nor a failure.
#[map]
static PENDING_CONNECTS: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(16384, 0);

/// A non-blocking connect waiting for its outcome: its event, and its place in
/// `TCP_CONNECTS_ORDER`.
#[repr(C)]
#[derive(Clone, Copy)]
struct WaitingConnect {
    seq: u64,
    event: ConnectEvent,
}

/// Extra room in `TCP_CONNECTS` over `TCP_CONNECTS_ORDER`'s slots: for inserts running at once
/// on several CPUs, each of which evicts before it inserts.
const CONNECT_TABLE_SLACK: u32 = 512;

/// Non-blocking TCP connects that returned EINPROGRESS, by socket: their event, waiting for the
/// outcome. Only those: a blocking connect's result is the syscall's, so the common case costs
/// no insert here.
///
/// Not LRU: a kernel LRU map evicts silently, and neither the outcome (which finds no entry)
/// nor anything else could tell an evicted connect from a socket no connect() waits on. Not a
/// plain hash map left to fill either: an unprivileged process can hold thousands of sockets in
/// SYN_SENT for minutes, and a full map would stop every new non-blocking connect (every Go
/// client) from being reported. So the programs evict themselves, oldest first, and count it:
/// each insert takes the next slot of `TCP_CONNECTS_ORDER` (a ring of `connect_table_entries`
/// slots) and first removes the connect that slot held if it is still waiting, counting it
/// lost. The table thus never holds more than the ring's slots (plus the slack), an insert
/// never fails for room, and an entry whose outcome was missed (a stale one) goes within a turn
/// of the ring, counted lost too.
#[map]
static TCP_CONNECTS: HashMap<u64, WaitingConnect> =
    HashMap::with_max_entries(CONNECT_TABLE_ENTRIES + CONNECT_TABLE_SLACK, 0);

/// One slot of the ring of waiting connects: the socket, and the insert's sequence number (an
/// entry of the same socket inserted later is not this one).
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    skaddr: u64,
    seq: u64,
}

/// The ring of waiting connects, in insert order (user space may load it smaller; its size is
/// `connect_table_entries`).
#[map]
static TCP_CONNECTS_ORDER: Array<Slot> = Array::with_max_entries(CONNECT_TABLE_ENTRIES, 0);

/// Inserts into `TCP_CONNECTS` so far: the next slot of the ring.
#[map]
static TCP_CONNECTS_SEQ: Array<u64> = Array::with_max_entries(1, 0);

/// Outcomes seen out of the caller's context while its connect() was still running (a remote
/// peer's answer or a timer's refusal, in softirq): kept by socket for the connect's return,
/// which takes them away.
///
/// LRU: outcomes of SYN_SENTs no connect() waits on (TCP Fast Open's sendto, kernel sockets,
/// sockets that connected before the programs were loaded, a connect evicted from
/// `TCP_CONNECTS`) land here too and are never taken, so only eviction bounds it. Such an
/// outcome belongs to an attempt that is over: every new SYN_SENT of a socket removes its
/// entry, so a socket later carved from the same memory is never given it. An evicted outcome
/// that a non-blocking connect's return needed makes that connect wait in `TCP_CONNECTS` for an
/// outcome already past: it is evicted from there in its turn, and counted lost then.
///
/// The connect's return and its outcome may run at once on two CPUs: the return looks here,
/// finds nothing and files the connect in `TCP_CONNECTS`, while the outcome looks there, finds
/// nothing and files itself here. So each side files first, then (past a full barrier) looks
/// at the other's table again: at least one of them sees the other, and `take_outcome` makes
/// sure the connect is reported once.
#[map]
static EARLY_OUTCOMES: LruHashMap<u64, i32> = LruHashMap::with_max_entries(1024, 0);

#[map]
static SCRATCH_EVENT: PerCpuArray<WaitingConnect> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SCRATCH_PATH: PerCpuArray<WatchedSocket> = PerCpuArray::with_max_entries(1, 0);

/// A word of this CPU's own for [`full_barrier`]'s atomic operation.
#[map]
static BARRIER: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A full memory barrier: an atomic fetch-and-add (fully ordered, as the kernel's BPF atomics
/// with a fetch are), on a word no other CPU touches. Between filing an entry in one table and
/// looking at the other: without it a CPU may look before its own insert is seen by the other.
#[inline(always)]
fn full_barrier() {
    let Some(word) = BARRIER.get_ptr_mut(0) else { return };
    let mut zero: u64 = 0;
    unsafe {
        core::arch::asm!(
            "{zero} = atomic_fetch_add((u64 *)({word} + 0), {zero})",
            zero = inout(reg) zero,
            word = in(reg) word,
            options(nostack),
        );
    }
    let _ = zero;
}

/// The outcome of the connect of `skaddr` filed early, taken away (`None` when there is none).
#[inline(always)]
fn take_early_outcome(skaddr: u64) -> Option<i32> {
    let early = unsafe { EARLY_OUTCOMES.get(&skaddr) }.copied()?;
    // Taken by whoever removes it: the return and the outcome may both find it.
    EARLY_OUTCOMES.remove(&skaddr).ok().map(|_| early)
}

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

/// The outcome `result` of the waiting connect `waiting` (in `TCP_CONNECTS` under `skaddr`):
/// reports it, unless it is a successful loopback connect (filtered). Exactly once: the one that
/// removes the entry (this, or an eviction at the same time) counts it.
#[inline(always)]
fn take_outcome(program: ProgramId, skaddr: u64, waiting: *mut WaitingConnect, result: i32) {
    let event = unsafe { &mut (*waiting).event };
    event.result = result;
    if filtered_loopback(event.result, event.family, &event.addr) {
        if TCP_CONNECTS.remove(&skaddr).is_ok() {
            count_filtered(program);
        }
        return;
    }
    let Some(mut entry) = reserve::<ConnectEvent>(program) else {
        // Counted lost by `reserve`.
        let _ = TCP_CONNECTS.remove(&skaddr);
        return;
    };
    unsafe { entry.as_mut_ptr().write(*event) };
    if TCP_CONNECTS.remove(&skaddr).is_ok() {
        entry.submit(batched());
        count_emitted(program);
    } else {
        entry.discard(0);
    }
}

/// Puts the waiting connect in `SCRATCH_EVENT` into `TCP_CONNECTS` under `skaddr`, evicting the
/// oldest waiting one if the ring is full round (see `TCP_CONNECTS`). Every connect it removes
/// without reporting is counted lost for `program`.
#[inline(always)]
fn wait_for_outcome(program: ProgramId, skaddr: u64, waiting: &mut WaitingConnect) {
    let Some(next) = TCP_CONNECTS_SEQ.get_ptr_mut(0) else {
        count_lost(program);
        return;
    };
    // One counter for all CPUs, taken with an atomic fetch-and-add (Rust has no atomic
    // read-modify-write for this target): two inserts never take the same slot.
    let mut seq: u64 = 1;
    unsafe {
        core::arch::asm!(
            "{seq} = atomic_fetch_add((u64 *)({next} + 0), {seq})",
            seq = inout(reg) seq,
            next = in(reg) next,
            options(nostack),
        );
    }
    let Some(slot) = TCP_CONNECTS_ORDER.get_ptr_mut((seq % connect_table_entries() as u64) as u32) else {
        count_lost(program);
        return;
    };
    let slot = unsafe { &mut *slot };
    let (oldest, oldest_seq) = (slot.skaddr, slot.seq);
    if oldest != 0
        && TCP_CONNECTS.get_ptr(&oldest).is_some_and(|w| unsafe { (*w).seq } == oldest_seq)
        && TCP_CONNECTS.remove(&oldest).is_ok()
    {
        // Still waiting a whole turn of the ring later: evicted.
        count_lost(program);
    }
    // An entry of this same socket is one whose outcome was missed (the socket's memory was
    // freed and taken again): it will never be reported.
    if TCP_CONNECTS.get_ptr(&skaddr).is_some() && TCP_CONNECTS.remove(&skaddr).is_ok() {
        count_lost(program);
    }
    slot.skaddr = skaddr;
    slot.seq = seq;
    waiting.seq = seq;
    if TCP_CONNECTS.insert(&skaddr, waiting, 0).is_err() {
        count_lost(program);
    }
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
        // A new attempt of this socket: an outcome filed for it earlier is an older attempt's
        // (of a socket whose memory this one took), never this one's, which comes later.
        if unsafe { EARLY_OUTCOMES.get(&skaddr) }.is_some() {
            let _ = EARLY_OUTCOMES.remove(&skaddr);
        }
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
                // A failed insert is told (and counted, once) at the call's return, which
                // finds no entry, as an eviction is.
                let _ = PENDING_CONNECTS.insert(&thread, &pending, 0);
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
    if let Some(waiting) = TCP_CONNECTS.get_ptr_mut(&skaddr) {
        // The call returned EINPROGRESS earlier: this is its outcome.
        take_outcome(program, skaddr, waiting, result);
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
    if EARLY_OUTCOMES.insert(&skaddr, &result, 0).is_err() {
        return 0;
    }
    // The connect's return may have filed it meanwhile, on another CPU (see EARLY_OUTCOMES).
    full_barrier();
    if let Some(waiting) = TCP_CONNECTS.get_ptr_mut(&skaddr)
        && let Some(result) = take_early_outcome(skaddr)
    {
        take_outcome(program, skaddr, waiting, result);
    }
    0
}

/// The peer of an AF_INET/AF_INET6 sockaddr in user memory whose first 8 bytes are `head`:
/// (port, address). An IPv4 peer is all in `head`; `None` when an IPv6 one cannot be read.
#[inline(always)]
fn read_inet(family: u16, sockaddr: u64, head: [u8; 8]) -> Option<(u16, [u8; 16])> {
    let mut addr = [0u8; 16];
    let port = u16::from_be_bytes([head[2], head[3]]);
    if family == AF_INET {
        addr[..4].copy_from_slice(&head[4..]);
    } else {
        addr = unsafe { bpf_probe_read_user((sockaddr + 8) as *const [u8; 16]) }.ok()?;
    }
    Some((port, addr))
}

/// A connect returned `ret` and its sockaddr (or part of it) cannot be read. When the call
/// failed with EFAULT the kernel could not read it either: nothing is lost, the failure is
/// reported with what is known (`family` 0: no address). Otherwise the caller changed its memory
/// since: the connect is counted lost.
#[inline(always)]
fn unreadable(program: ProgramId, ret: i32) -> u32 {
    if ret == -EFAULT {
        return report_inet(program, 0, 0, [0; 16], ret, 0);
    }
    count_lost(program);
    0
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
    let addrlen = syscall_arg(regs, 2) as u32;
    // One read for the family and what follows it: an IPv4 peer, a unix path's first bytes.
    let Ok(head) = (unsafe { bpf_probe_read_user(addr as *const [u8; 8]) }) else {
        if addrlen < 2 {
            // No address given (the call fails with EINVAL): nothing to read, nothing lost.
            return report_inet(program, 0, 0, [0; 16], ret, 0);
        }
        return unreadable(program, ret);
    };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    match family {
        AF_UNIX => unix_connect(program, addr, addrlen, head, ret),
        0 => {
            count_filtered(program);
            0
        }
        // UDP, a TCP connect that failed before sending its SYN, or one whose SYN_SENT was not
        // noted (the TCP state program down, see probe_up; or, past 16384 threads in connect at
        // once, its thread's entry evicted): its result is the call's own, EINPROGRESS for a
        // non-blocking one whose outcome is then not known.
        AF_INET | AF_INET6 => match read_inet(family, addr, head) {
            Some((port, peer)) => report_inet(program, family, port, peer, ret, 0),
            None => unreadable(program, ret),
        },
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
    let early = if pending.done != 0 { Some(pending.outcome) } else { take_early_outcome(pending.skaddr) };
    match early {
        Some(result) => report_inet(program, family, port, peer, result, CONNECT_ASYNC),
        None => {
            let Some(waiting) = SCRATCH_EVENT.get_ptr_mut(0) else {
                count_lost(program);
                return 0;
            };
            let waiting = unsafe { &mut *waiting };
            fill_inet(&mut waiting.event, family, port, peer, 0, CONNECT_ASYNC);
            wait_for_outcome(program, pending.skaddr, waiting);
            // The outcome may have been filed meanwhile, on another CPU (see EARLY_OUTCOMES).
            full_barrier();
            if let Some(filed) = TCP_CONNECTS.get_ptr_mut(&pending.skaddr)
                && let Some(result) = take_early_outcome(pending.skaddr)
            {
                take_outcome(program, pending.skaddr, filed, result);
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
        count_lost(program);
        return 0;
    };
    let scratch = unsafe { &mut *scratch };
    scratch.path = [0; UNIX_PATH_LEN];
    let (flags, path_len) = if first == 0 {
        // Abstract: a name of addrlen - 3 bytes after the leading NUL, NULs allowed. Only those
        // bytes are read: the caller's buffer may end right after them.
        let len = addrlen.saturating_sub(3).min(UNIX_PATH_LEN as u32 - 1);
        let read = unsafe { bpf_probe_read_user_buf((addr + 3) as *const u8, &mut scratch.path[..len as usize]) };
        if read.is_err() {
            return unreadable(program, ret);
        }
        (CONNECT_UNIX_ABSTRACT, len)
    } else {
        match unsafe { bpf_probe_read_user_str_bytes((addr + 2) as *const u8, &mut scratch.path) } {
            Ok(path) => (0, path.len() as u32),
            Err(_) => return unreadable(program, ret),
        }
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
