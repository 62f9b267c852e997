//! Types shared by the kernel programs (`monitor-ebpf`) and user space (`monitor`).
//!
//! Every struct here is `#[repr(C)]`, made only of fixed-size integers and byte arrays, and
//! padded by hand so both sides agree on the layout without hidden padding. Flags are `u32`
//! bit sets rather than `bool`. Nothing here decodes or interprets: user space does that in
//! `monitor::events`.
#![no_std]

/// Length of a task's `comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;
/// Bytes of an exec'd filename carried in an event; longer names are cut and flagged.
pub const FILENAME_LEN: usize = 512;
/// Bytes of `sockaddr_un.sun_path`.
pub const UNIX_PATH_LEN: usize = 108;
/// Bytes of the kernel's OOM kill report line carried in an event.
pub const OOM_REPORT_LEN: usize = 128;
/// Bytes kept of an executable's file name (`mm->exe_file`'s dentry name): the longest
/// runtime binary name (`containerd-shim-runc-v2`) fits.
pub const EXE_NAME_LEN: usize = 32;
/// Bytes of a created cgroup's path carried in an event (a systemd container scope under
/// kubelet's slices takes about 200); longer paths are cut and flagged.
pub const CGROUP_PATH_LEN: usize = 512;

/// Stable ids of the event kinds; the first `u32` of every event.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    ExecFailed = 2,
    Exit = 3,
    OomKill = 4,
    Connect = 5,
    Signal = 6,
    OomReport = 7,
    CgroupMkdir = 8,
}

impl EventKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Exec,
            2 => Self::ExecFailed,
            3 => Self::Exit,
            4 => Self::OomKill,
            5 => Self::Connect,
            6 => Self::Signal,
            7 => Self::OomReport,
            8 => Self::CgroupMkdir,
            _ => return None,
        })
    }
}

/// The kernel programs, used as the index of the per-program statistics map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramId {
    /// `sched:sched_process_exec` (successful exec).
    Exec = 0,
    /// execve returns (emits failed execs; reads the filename through the saved registers).
    ExecveExit = 1,
    /// execveat returns.
    ExecveatExit = 2,
    /// `sched:sched_process_exit` (whole-process exits only).
    Exit = 3,
    /// `oom:mark_victim` (BTF tracepoint: needs the victim task).
    OomVictim = 4,
    /// connect returns (reads the address through the saved registers).
    ConnectExit = 5,
    /// `sock:inet_sock_set_state` (which socket a connect put in SYN_SENT, and the outcome of
    /// non-blocking TCP connects).
    TcpState = 6,
    /// `signal:signal_generate` (BTF tracepoint: needs the target task).
    Signal = 7,
    /// `printk:console` (the OOM killer's own "Killed process" line: the kill's constraint).
    OomReport = 8,
    /// `cgroup:cgroup_mkdir` (a cgroup's path when it is created, before any process is in it).
    CgroupMkdir = 9,
}

pub const PROGRAM_COUNT: usize = 10;

impl ProgramId {
    pub const ALL: [ProgramId; PROGRAM_COUNT] = [
        Self::Exec,
        Self::ExecveExit,
        Self::ExecveatExit,
        Self::Exit,
        Self::OomVictim,
        Self::ConnectExit,
        Self::TcpState,
        Self::Signal,
        Self::OomReport,
        Self::CgroupMkdir,
    ];
}

/// Per-program counters, kept in a per-CPU array indexed by [`ProgramId`] and summed by user
/// space at scrape time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramStats {
    /// Events written to the ring buffer.
    pub emitted: u64,
    /// Events the program should have reported and did not: ring buffer full, the state of a
    /// connect in progress evicted from its table (or the table full), or memory the event
    /// needed (a filename, a sockaddr, a kernel struct) unreadable. Each hook invocation ends
    /// in at most one of emitted, lost and filtered.
    pub lost: u64,
    /// Invocations dropped on purpose by an in-kernel filter.
    pub filtered: u64,
}

/// Who and where: the task an event is about (the exec'ing or exiting task, the OOM victim,
/// the signal's target).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo {
    /// Thread id (kernel `pid`).
    pub pid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    /// Process id of the real parent.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// cgroup v2 (default hierarchy) id: the inode number of its directory in cgroup2fs.
    pub cgroup_id: u64,
    /// cgroup v1 memory controller cgroup: the inode number of its directory in the v1 memory
    /// hierarchy; 0 when the memory controller is not mounted on v1.
    pub memcg_id: u64,
    /// Process start, CLOCK_MONOTONIC ns (the group leader's `start_time`).
    pub start_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// First part of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// [`EventKind`] as `u32`.
    pub kind: u32,
    /// CPU the event was produced on.
    pub cpu: u32,
    pub task: TaskInfo,
}

pub const FILENAME_TRUNCATED: u32 = 1;

/// A successful exec (`sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Thread id before exec (differs when a non-leader thread exec'd).
    pub old_pid: u32,
    /// `FILENAME_TRUNCATED`.
    pub flags: u32,
    /// Bytes of `filename` in use (without the NUL).
    pub filename_len: u32,
    pub _pad: u32,
    pub filename: [u8; FILENAME_LEN],
}

pub const SYSCALL_EXECVE: u32 = 0;
pub const SYSCALL_EXECVEAT: u32 = 1;

/// An execve/execveat that returned an error.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecFailedEvent {
    pub header: EventHeader,
    /// Positive errno (ENOENT, EACCES, ...).
    pub errno: i32,
    /// `SYSCALL_EXECVE` or `SYSCALL_EXECVEAT`.
    pub syscall: u32,
    pub flags: u32,
    pub filename_len: u32,
    pub filename: [u8; FILENAME_LEN],
}

/// A whole process exited (the last thread of its thread group).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// Wait status as the kernel keeps it: `(code << 8) | signal | 0x80 if core dumped`.
    pub exit_code: u32,
    pub _pad: u32,
    /// From the process's start to its exit (CLOCK_MONOTONIC). The only event that reads the
    /// clock: a clock-source read costs about 200 ns per event in a VM.
    pub lifetime_ns: u64,
}

/// The OOM killer chose a victim (`oom:mark_victim`). `header.task` is the victim.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomKillEvent {
    pub header: EventHeader,
    /// The task that ran the OOM killer (its allocation failed).
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    pub trigger_cgroup_id: u64,
    pub trigger_memcg_id: u64,
    pub trigger_comm: [u8; COMM_LEN],
    /// Victim memory in pages (from its mm; 0 when it had none).
    pub total_vm_pages: u64,
    pub anon_rss_pages: u64,
    pub file_rss_pages: u64,
    pub shmem_rss_pages: u64,
    pub oom_score_adj: i32,
    pub _pad: u32,
    /// The memory cgroup whose limit the kill was at, as the kernel's counters said at
    /// `mark_victim`: the nearest of the victim's memory cgroup and its ancestors whose usage
    /// is within [`OOM_LIMIT_SLACK_PAGES`] of its limit. Its kernfs id in the memory
    /// controller's hierarchy (v1 memory inode, or the v2 cgroup id), 0 when none was (the
    /// node ran out) or it could not be read.
    pub limit_cgroup_id: u64,
    /// That cgroup's limit and usage at the kill, in pages.
    pub limit_max_pages: u64,
    pub limit_usage_pages: u64,
}

/// How far below its limit (in pages) a memory cgroup's usage may be and still be the limit
/// the OOM killer ran at: a charge fails when usage plus the charge exceeds the limit, and the
/// largest charge that ends in the OOM killer is a huge page (512 pages of 4 KiB).
pub const OOM_LIMIT_SLACK_PAGES: u64 = 512;

/// Ancestors of a memory cgroup the OOM program looks at (a container in a pod in a QoS class
/// in kubepods is 4 deep, systemd's slices one more).
pub const OOM_LIMIT_MAX_DEPTH: u32 = 8;

/// The OOM killer's report of a kill, as it logged it (`printk:console`): "Memory cgroup out
/// of memory: Killed process <pid> (<comm>) ..." or "Out of memory: Killed process ...". Only
/// lines with those two prefixes leave the kernel. `header.task` is the task that ran the OOM
/// killer, the same as the `trigger_*` task of the `OomKillEvent` it follows.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OomReportEvent {
    pub header: EventHeader,
    /// Bytes of `line` in use (without the NUL).
    pub line_len: u32,
    pub _pad: u32,
    pub line: [u8; OOM_REPORT_LEN],
}

/// A cgroup created (`cgroup:cgroup_mkdir`) in the unified hierarchy or in the v1 hierarchy of
/// the memory controller: its id (the kernfs id of its directory, as events carry it) and its
/// path from the hierarchy's root. A process moved into it and gone within milliseconds (a
/// container that fails at once) is then still named by its path, which user space could not
/// read any more. `header.task` is the task that created it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupMkdirEvent {
    pub header: EventHeader,
    /// The hierarchy's id (`/proc/cgroups`): 0 for the unified (v2) one.
    pub hierarchy: u32,
    /// `CGROUP_PATH_TRUNCATED`.
    pub flags: u32,
    pub id: u64,
    /// Bytes of `path` in use (without the NUL).
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}

/// The path did not fit in `CgroupMkdirEvent::path`.
pub const CGROUP_PATH_TRUNCATED: u32 = 1;

pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The connect was non-blocking and its TCP outcome came later from the socket state machine.
pub const CONNECT_ASYNC: u32 = 1;
/// `sun_path` starts with a NUL: an abstract unix socket.
pub const CONNECT_UNIX_ABSTRACT: u32 = 2;

/// A connect call and its result.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// 0 on success, else a negative errno.
    pub result: i32,
    pub flags: u32,
    pub family: u16,
    /// Port in host byte order (inet families).
    pub port: u16,
    pub path_len: u32,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
    pub unix_path: [u8; UNIX_PATH_LEN],
    pub _pad: u32,
}

/// Signal raised by the kernel itself (fault, OOM killer, `SEND_SIG_PRIV`).
pub const SIGNAL_FROM_KERNEL: u32 = 1;
/// Signal raised for the whole thread group.
pub const SIGNAL_GROUP: u32 = 2;

/// A fatal signal generated for a task (`signal:signal_generate`). `header.task` is the target;
/// the sender is the task that was current when it was generated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalEvent {
    pub header: EventHeader,
    pub signal: u32,
    /// `si_code` (SI_USER 0, SI_KERNEL 0x80, SI_TKILL -6, > 0 for faults).
    pub code: i32,
    /// TRACE_SIGNAL_* result (0 delivered, 1 ignored, 2 already pending, ...).
    pub result: i32,
    pub flags: u32,
    pub sender_pid: u32,
    pub sender_tgid: u32,
    pub sender_cgroup_id: u64,
    pub sender_memcg_id: u64,
    pub sender_comm: [u8; COMM_LEN],
    /// The sender's executable's file name (`mm->exe_file`, not the comm a process can set
    /// itself); empty for kernel threads.
    pub sender_exe: [u8; EXE_NAME_LEN],
}

/// Signals worth reporting: the default action terminates the process.
pub const FATAL_SIGNAL_MASK: u64 = (1 << 1) // SIGHUP
    | (1 << 2) // SIGINT
    | (1 << 3) // SIGQUIT
    | (1 << 4) // SIGILL
    | (1 << 6) // SIGABRT
    | (1 << 7) // SIGBUS
    | (1 << 8) // SIGFPE
    | (1 << 9) // SIGKILL
    | (1 << 11) // SIGSEGV
    | (1 << 15); // SIGTERM

/// Byte offsets of the kernel struct fields the programs read, resolved by user space from
/// the running kernel's BTF and written into the program's read-only data before load. This
/// is our CO-RE: the programs never assume a struct layout. `OFFSET_UNKNOWN` marks a field
/// the kernel does not have; the programs then leave the value zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_time: u32,
    pub task_comm: u32,
    pub task_cred: u32,
    pub task_cgroups: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub cred_uid: u32,
    pub css_set_dfl_cgrp: u32,
    pub css_set_subsys: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// Index of the memory controller in `css_set.subsys` (`memory_cgrp_id`).
    pub memory_cgrp_id: u32,
    pub signal_oom_score_adj: u32,
    pub mm_total_vm: u32,
    pub mm_rss_stat: u32,
    pub percpu_counter_count: u32,
    pub percpu_counter_size: u32,
    pub sock_sk_err: u32,
    pub sock_sk_protocol: u32,
    /// `sock.__sk_common`'s `skc_family`, `skc_dport`, `skc_daddr` and `skc_v6_daddr`: a TCP
    /// socket's destination, set before it enters SYN_SENT.
    pub sock_family: u32,
    pub sock_dport: u32,
    pub sock_daddr: u32,
    pub sock_v6_daddr: u32,
    /// `linux_binprm.filename`: the path an exec was given (the BTF `sched_process_exec`).
    pub binprm_filename: u32,
    /// `mm_struct.exe_file`, `file.f_path.dentry` and `dentry.d_name.name` (each a sum of the
    /// nested members' offsets): the file name of a task's executable.
    pub mm_exe_file: u32,
    pub file_dentry: u32,
    pub dentry_name: u32,
    /// `cgroup_subsys_state.parent`, and `mem_cgroup.memory`'s `usage` and `max` (a
    /// `page_counter`): which memory cgroup's limit an OOM kill was at.
    pub css_parent: u32,
    pub memcg_usage: u32,
    pub memcg_max: u32,
    /// 1 when the v1 memory hierarchy is mounted (so `memcg_id` means something).
    pub memcg_v1: u32,
    /// Where the caller's saved `struct pt_regs` holds a syscall's first three arguments (an
    /// arch ABI, not read from BTF).
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    /// Where the saved registers hold the number of the syscall the task is in.
    pub regs_syscall_nr: u32,
}

pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl KernelOffsets {
    pub const UNKNOWN: Self = Self {
        task_pid: OFFSET_UNKNOWN,
        task_tgid: OFFSET_UNKNOWN,
        task_real_parent: OFFSET_UNKNOWN,
        task_group_leader: OFFSET_UNKNOWN,
        task_start_time: OFFSET_UNKNOWN,
        task_comm: OFFSET_UNKNOWN,
        task_cred: OFFSET_UNKNOWN,
        task_cgroups: OFFSET_UNKNOWN,
        task_exit_code: OFFSET_UNKNOWN,
        task_signal: OFFSET_UNKNOWN,
        task_mm: OFFSET_UNKNOWN,
        cred_uid: OFFSET_UNKNOWN,
        css_set_dfl_cgrp: OFFSET_UNKNOWN,
        css_set_subsys: OFFSET_UNKNOWN,
        css_cgroup: OFFSET_UNKNOWN,
        cgroup_kn: OFFSET_UNKNOWN,
        kernfs_node_id: OFFSET_UNKNOWN,
        memory_cgrp_id: OFFSET_UNKNOWN,
        signal_oom_score_adj: OFFSET_UNKNOWN,
        mm_total_vm: OFFSET_UNKNOWN,
        mm_rss_stat: OFFSET_UNKNOWN,
        percpu_counter_count: OFFSET_UNKNOWN,
        percpu_counter_size: OFFSET_UNKNOWN,
        sock_sk_err: OFFSET_UNKNOWN,
        sock_sk_protocol: OFFSET_UNKNOWN,
        sock_family: OFFSET_UNKNOWN,
        sock_dport: OFFSET_UNKNOWN,
        sock_daddr: OFFSET_UNKNOWN,
        sock_v6_daddr: OFFSET_UNKNOWN,
        binprm_filename: OFFSET_UNKNOWN,
        mm_exe_file: OFFSET_UNKNOWN,
        file_dentry: OFFSET_UNKNOWN,
        dentry_name: OFFSET_UNKNOWN,
        css_parent: OFFSET_UNKNOWN,
        memcg_usage: OFFSET_UNKNOWN,
        memcg_max: OFFSET_UNKNOWN,
        memcg_v1: 0,
        regs_arg0: OFFSET_UNKNOWN,
        regs_arg1: OFFSET_UNKNOWN,
        regs_arg2: OFFSET_UNKNOWN,
        regs_syscall_nr: OFFSET_UNKNOWN,
    };
}

/// Non-blocking TCP connects that can wait for their outcome at once, by default (the size the
/// programs' tables are declared with; user space may load them with another).
pub const CONNECT_TABLE_ENTRIES: u32 = 16384;

/// Run-time settings of the programs, in read-only data set at load.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// The daemon's own tgid: its activity (CRI calls, file reads) is not reported.
    pub self_tgid: u32,
    /// 1: report successful loopback TCP connects too (off by default; they are the bulk).
    pub report_loopback_success: u32,
    /// 1: `sched_process_exit` records carry `group_dead` (recent kernels). Without it, a
    /// process's exit is its thread group leader's, as exitsnoop has it.
    pub exit_has_group_dead: u32,
    /// This architecture's number of connect(2).
    pub connect_syscall_nr: u32,
    /// Non-blocking TCP connects that may wait for their outcome at once (the size of the
    /// programs' `TCP_CONNECTS_ORDER`, which user space loads with that many entries; by default
    /// [`CONNECT_TABLE_ENTRIES`]). Past it, the oldest waiting one is evicted and counted lost.
    pub connect_table_entries: u32,
    /// The id of the v1 hierarchy of the memory controller (`/proc/cgroups`), 0 when memory is
    /// on the unified hierarchy: created cgroups are reported in these two only.
    pub memory_hierarchy: u32,
}

impl ProbeConfig {
    pub const DEFAULT: Self = Self {
        self_tgid: 0,
        report_loopback_success: 0,
        exit_has_group_dead: 0,
        connect_syscall_nr: 0,
        connect_table_entries: CONNECT_TABLE_ENTRIES,
        memory_hierarchy: 0,
    };
}

/// Key of the map of unix socket paths whose successful connects are reported (runtime
/// sockets); failed connects are always reported.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WatchedSocket {
    pub path: [u8; UNIX_PATH_LEN],
}

impl WatchedSocket {
    /// The key of its prefix in the map of watched prefixes (see [`unix_sockaddr_prefix`]).
    pub fn prefix(&self) -> u64 {
        let mut head = [0u8; 8];
        head[..2].copy_from_slice(&AF_UNIX.to_ne_bytes());
        head[2..].copy_from_slice(&self.path[..6]);
        unix_sockaddr_prefix(head)
    }
}

/// The first 8 bytes of a unix sockaddr (family, then the path's first 6 bytes), bytes after
/// the path's end zeroed (the caller's buffer holds anything there): the key of a map of the
/// watched sockets' prefixes, which lets the kernel program filter a successful connect to any
/// other socket with one small lookup, without reading its path.
#[inline(always)]
pub fn unix_sockaddr_prefix(head: [u8; 8]) -> u64 {
    let mut key = [0u8; 8];
    key[0] = head[0];
    key[1] = head[1];
    let mut ended = false;
    let mut i = 2;
    while i < 8 {
        ended |= head[i] == 0;
        if !ended {
            key[i] = head[i];
        }
        i += 1;
    }
    u64::from_ne_bytes(key)
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all of these are repr(C), made of integers and byte arrays, with explicit padding.
    unsafe impl aya::Pod for ProgramStats {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for ProbeConfig {}
    unsafe impl aya::Pod for WatchedSocket {}
}
