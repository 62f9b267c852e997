//! Reading kernel structs through BTF-resolved offsets (see `KernelOffsets`), and filling the
//! `TaskInfo` of a task. A field whose offset is unknown reads as zero.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    generated::{bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_task_pt_regs},
};
use aya_ebpf::{EbpfContext as _, programs::TracePointContext};
use monitor_common::{EXE_NAME_LEN, EventHeader, OFFSET_UNKNOWN, OOM_LIMIT_MAX_DEPTH, OOM_LIMIT_SLACK_PAGES, TaskInfo};


/// One offset, read without letting the compiler fold the loader-written value.
macro_rules! offset {
    ($field:ident) => {
        unsafe {
            core::ptr::read_volatile(
                &(*(&raw const crate::OFFSETS).cast::<monitor_common::KernelOffsets>()).$field as *const u32,
            )
        }
    };
}
pub(crate) use offset;

/// Reads a `T` at `base + off`; `None` when the offset is unknown or the read faults.
#[inline(always)]
pub(crate) fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == OFFSET_UNKNOWN {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Reads a `T` at `base + off`: zero when there is nothing to read (the offset is unknown, the
/// kernel lacking the field, or `base` is null), and `failed` set when the read faults.
#[inline(always)]
pub(crate) fn read_or_fail<T: Default>(base: u64, off: u32, failed: &mut bool) -> T {
    if base == 0 || off == OFFSET_UNKNOWN {
        return T::default();
    }
    match unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) } {
        Ok(value) => value,
        Err(_) => {
            *failed = true;
            T::default()
        }
    }
}

/// Reads a `T` at `base + off` where the verifier knows `base`'s kernel type: a pointer from
/// `bpf_get_current_task_btf`, `bpf_task_pt_regs` or a BTF tracepoint's arguments, or a pointer
/// field loaded through one. A direct load, checked against the kernel's BTF at load time
/// (`off` comes from read-only data, so the verifier sees a constant) and made fault-safe by the
/// kernel: no helper call, unlike [`read`]. Zero when the offset is unknown or `base` is null.
#[inline(always)]
pub(crate) fn load<T: Default>(base: u64, off: u32) -> T {
    if base == 0 || off == OFFSET_UNKNOWN {
        return T::default();
    }
    unsafe { ((base + off as u64) as *const T).read() }
}

/// A field of a tracepoint's record at `offset`. A direct load, which the verifier checks is
/// inside the record and aligned: no helper call (`TracePointContext::read_at` makes one).
#[inline(always)]
pub(crate) fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { (ctx.as_ptr() as *const u8).add(offset).cast::<T>().read() }
}

/// The registers the current task entered the kernel with; a syscall's arguments are there
/// until it returns (`bpf_task_pt_regs`, Linux >= 5.15).
#[inline(always)]
pub(crate) fn current_regs() -> u64 {
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// Argument `n` (0 to 2) of the syscall whose caller's registers are `regs`.
#[inline(always)]
pub(crate) fn syscall_arg(regs: u64, n: usize) -> u64 {
    let off = match n {
        0 => offset!(regs_arg0),
        1 => offset!(regs_arg1),
        _ => offset!(regs_arg2),
    };
    load(regs, off)
}

/// Whether the current task is in connect(2), by the syscall number in its saved registers;
/// true where that cannot be told.
#[inline(always)]
pub(crate) fn in_connect() -> bool {
    let off = offset!(regs_syscall_nr);
    off == OFFSET_UNKNOWN || load::<u32>(current_regs(), off) == crate::connect_syscall_nr()
}

/// The destination (family, port, address) of the socket at `sk`, a BTF-typed pointer.
#[inline(always)]
pub(crate) fn sock_destination(sk: u64) -> (u16, u16, [u8; 16]) {
    let family: u16 = load(sk, offset!(sock_family));
    let port = u16::from_be(load(sk, offset!(sock_dport)));
    let mut addr = [0u8; 16];
    if family == monitor_common::AF_INET6 {
        let off = offset!(sock_v6_daddr);
        if off != OFFSET_UNKNOWN {
            addr[..8].copy_from_slice(&load::<u64>(sk, off).to_ne_bytes());
            addr[8..].copy_from_slice(&load::<u64>(sk, off + 8).to_ne_bytes());
        }
    } else {
        addr[..4].copy_from_slice(&load::<u32>(sk, offset!(sock_daddr)).to_ne_bytes());
    }
    (family, port, addr)
}

/// The protocol (`IPPROTO_*`) of the socket at `sk`, a BTF-typed pointer; `None` when this
/// kernel's BTF does not say where it is. Read as one byte: before Linux 5.6 it is an 8-bit
/// bitfield that starts on a byte.
#[inline(always)]
pub(crate) fn sock_protocol(sk: u64) -> Option<u16> {
    let off = offset!(sock_sk_protocol);
    if off == OFFSET_UNKNOWN { None } else { Some(load::<u8>(sk, off) as u16) }
}

/// The current task, typed for the verifier (see [`load`]).
pub(crate) fn current_task() -> u64 {
    unsafe { bpf_get_current_task_btf() as u64 }
}

/// kernfs id of `cgroup` (the inode number user space sees).
#[inline(always)]
fn cgroup_id(cgroup: u64) -> u64 {
    let kn: u64 = load(cgroup, offset!(cgroup_kn));
    load(kn, offset!(kernfs_node_id))
}

/// cgroup v1 memory controller cgroup of `task`, 0 when the controller is not on v1.
#[inline(always)]
pub(crate) fn memcg_id(task: u64) -> u64 {
    if offset!(memcg_v1) == 0 {
        return 0;
    }
    let css = memcg_css(task);
    let cgroup: u64 = load(css, offset!(css_cgroup));
    cgroup_id(cgroup)
}

/// The memory controller's css of `task` (a `struct mem_cgroup`, whose first member it is),
/// on v1 or v2; 0 when it cannot be told.
#[inline(always)]
fn memcg_css(task: u64) -> u64 {
    let index = offset!(memory_cgrp_id);
    let subsys = offset!(css_set_subsys);
    if index == OFFSET_UNKNOWN || subsys == OFFSET_UNKNOWN || index >= 16 {
        return 0;
    }
    let css_set: u64 = load(task, offset!(task_cgroups));
    load(css_set, subsys + index * 8)
}

/// The memory cgroup whose limit an OOM kill of `task` is at: the nearest of `task`'s memory
/// cgroup and its ancestors whose usage is within `OOM_LIMIT_SLACK_PAGES` of its limit, as
/// (kernfs id, limit, usage), limits and usage in pages. `(0, 0, 0)` when none is (the node
/// ran out) or the kernel's BTF does not say where the counters are. Reads through the helper:
/// `mem_cgroup`'s counters lie past the `cgroup_subsys_state` the verifier knows the pointer as.
#[inline(always)]
pub(crate) fn memcg_at_limit(task: u64) -> (u64, u64, u64) {
    let (usage_off, max_off, parent_off) = (offset!(memcg_usage), offset!(memcg_max), offset!(css_parent));
    if usage_off == OFFSET_UNKNOWN || max_off == OFFSET_UNKNOWN || parent_off == OFFSET_UNKNOWN {
        return (0, 0, 0);
    }
    let mut css = memcg_css(task);
    let mut depth = 0;
    while depth < OOM_LIMIT_MAX_DEPTH && css != 0 {
        let parent: u64 = read(css, parent_off).unwrap_or(0);
        // The root memory cgroup has no limit of its own: reaching it is the node's.
        if parent == 0 {
            break;
        }
        let usage: i64 = read(css, usage_off).unwrap_or(0);
        let max: u64 = read(css, max_off).unwrap_or(u64::MAX);
        if usage > 0 && (usage as u64).saturating_add(OOM_LIMIT_SLACK_PAGES) >= max {
            let cgroup: u64 = read(css, offset!(css_cgroup)).unwrap_or(0);
            let kn: u64 = read(cgroup, offset!(cgroup_kn)).unwrap_or(0);
            let id: u64 = read(kn, offset!(kernfs_node_id)).unwrap_or(0);
            return (id, max, usage as u64);
        }
        css = parent;
        depth += 1;
    }
    (0, 0, 0)
}

/// The file name of `task`'s executable (`mm->exe_file`), NUL-padded; empty for kernel
/// threads or where the kernel's BTF does not say where it is.
#[inline(always)]
pub(crate) fn exe_name(task: u64) -> [u8; EXE_NAME_LEN] {
    let mut name = [0u8; EXE_NAME_LEN];
    let mm: u64 = load(task, offset!(task_mm));
    let file: u64 = read(mm, offset!(mm_exe_file)).unwrap_or(0);
    let dentry: u64 = read(file, offset!(file_dentry)).unwrap_or(0);
    let text: u64 = read(dentry, offset!(dentry_name)).unwrap_or(0);
    if text != 0 {
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(text as *const u8, &mut name) };
    }
    name
}

/// cgroup v2 (default hierarchy) id of `task`.
#[inline(always)]
fn dfl_cgroup_id(task: u64) -> u64 {
    let css_set: u64 = load(task, offset!(task_cgroups));
    let cgroup: u64 = load(css_set, offset!(css_set_dfl_cgrp));
    cgroup_id(cgroup)
}

#[inline(always)]
fn parent_tgid(task: u64) -> u32 {
    let parent: u64 = load(task, offset!(task_real_parent));
    load(parent, offset!(task_tgid))
}

#[inline(always)]
fn start_ns(task: u64) -> u64 {
    let leader: u64 = load(task, offset!(task_group_leader));
    load(leader, offset!(task_start_time))
}

/// Fills `info` for the current task: direct loads where BTF gave the offsets (a helper call
/// costs more: `bpf_get_current_comm` alone measured about 150 ns per event in a VM whose
/// kernel returns through a mitigation thunk), else what the helpers tell.
#[inline(always)]
pub(crate) fn current_info(info: &mut TaskInfo) {
    if offset!(task_pid) != OFFSET_UNKNOWN {
        task_info(current_task(), info);
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    info.pid = pid_tgid as u32;
    info.tgid = (pid_tgid >> 32) as u32;
    info.ppid = 0;
    info.uid = bpf_get_current_uid_gid() as u32;
    info.cgroup_id = current_cgroup_id();
    info.memcg_id = 0;
    info.start_ns = 0;
    info.comm = current_comm();
}

/// The current task's `comm` (see [`current_info`] for why loads first).
#[inline(always)]
pub(crate) fn current_comm() -> [u8; 16] {
    if offset!(task_comm) != OFFSET_UNKNOWN { comm(current_task()) } else { bpf_get_current_comm().unwrap_or([0; 16]) }
}

/// The current task's cgroup v2 id (see [`current_info`] for why loads first).
#[inline(always)]
pub(crate) fn current_cgroup_id() -> u64 {
    if offset!(kernfs_node_id) != OFFSET_UNKNOWN {
        dfl_cgroup_id(current_task())
    } else {
        unsafe { bpf_get_current_cgroup_id() }
    }
}

/// Fills `info` for `task`, a BTF-typed pointer: direct loads only.
#[inline(always)]
pub(crate) fn task_info(task: u64, info: &mut TaskInfo) {
    info.pid = load(task, offset!(task_pid));
    info.tgid = load(task, offset!(task_tgid));
    info.ppid = parent_tgid(task);
    let cred: u64 = load(task, offset!(task_cred));
    info.uid = load(cred, offset!(cred_uid));
    info.cgroup_id = dfl_cgroup_id(task);
    info.memcg_id = memcg_id(task);
    info.start_ns = start_ns(task);
    info.comm = comm(task);
}

/// The `comm` of `task`, a BTF-typed pointer, as two word loads (the kernel keeps it
/// NUL-terminated within its 16 bytes).
#[inline(always)]
fn comm(task: u64) -> [u8; 16] {
    let off = offset!(task_comm);
    let mut comm = [0u8; 16];
    if off != OFFSET_UNKNOWN {
        comm[..8].copy_from_slice(&load::<u64>(task, off).to_ne_bytes());
        comm[8..].copy_from_slice(&load::<u64>(task, off + 8).to_ne_bytes());
    }
    comm
}

/// Fills the header of an event about the current task.
#[inline(always)]
pub(crate) fn current_header(header: &mut EventHeader, kind: u32) {
    header.kind = kind;
    header.cpu = unsafe { bpf_get_smp_processor_id() };
    current_info(&mut header.task);
}

/// Fills the header of an event about `task`.
#[inline(always)]
pub(crate) fn task_header(header: &mut EventHeader, kind: u32, task: u64) {
    header.kind = kind;
    header.cpu = unsafe { bpf_get_smp_processor_id() };
    task_info(task, &mut header.task);
}
