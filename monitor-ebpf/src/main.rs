//! Kernel programs of node-runtime-monitor.
//!
//! Each program turns one kernel hook into a typed event (`monitor-common`) in the one shared
//! ring buffer `EVENTS`, and counts what it emitted, lost and filtered in `STATS`. Lost is any
//! event the program should have reported and did not: the ring buffer was full, the state of
//! a connect in progress was evicted from its table, or memory the event needed could not be
//! read (never counted as filtered: a hostile process must not hide its activity as noise). The programs
//! read kernel structs only through offsets that user space resolved from the running kernel's
//! BTF (`OFFSETS`). What is filtered here, and why, is said in each module.
#![no_std]
#![no_main]
// Inline assembly, for the one atomic fetch-and-add (connect.rs): the eBPF crate is built with
// RUSTC_BOOTSTRAP (build-std), as aya-ebpf's own assembly needs.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod cgroup;
mod connect;
mod exec;
mod exit;
mod kernel;
mod oom;
mod signal;

use aya_ebpf::{
    Global,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use monitor_common::{KernelOffsets, PROGRAM_COUNT, ProbeConfig, ProgramId, ProgramStats};

/// Resolved by user space from BTF before load.
#[unsafe(no_mangle)]
static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::UNKNOWN);

/// Set by user space before load.
#[unsafe(no_mangle)]
static CONFIG: Global<ProbeConfig> = Global::new(ProbeConfig::DEFAULT);

/// All events, in order of submission. User space sizes it at load (`--ring-buffer-bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

#[map]
static STATS: PerCpuArray<ProgramStats> = PerCpuArray::with_max_entries(PROGRAM_COUNT as u32, 0);

#[inline(always)]
fn stats(program: ProgramId) -> Option<&'static mut ProgramStats> {
    STATS.get_ptr_mut(program as u32).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub(crate) fn count_emitted(program: ProgramId) {
    if let Some(s) = stats(program) {
        s.emitted += 1;
    }
}

#[inline(always)]
pub(crate) fn count_lost(program: ProgramId) {
    if let Some(s) = stats(program) {
        s.lost += 1;
    }
}

#[inline(always)]
pub(crate) fn count_filtered(program: ProgramId) {
    if let Some(s) = stats(program) {
        s.filtered += 1;
    }
}

/// The daemon's own activity is not reported.
#[inline(always)]
pub(crate) fn is_self(tgid: u32) -> bool {
    let config = CONFIG.load();
    config.self_tgid != 0 && config.self_tgid == tgid
}

#[inline(always)]
pub(crate) fn report_loopback_success() -> bool {
    CONFIG.load().report_loopback_success != 0
}

#[inline(always)]
pub(crate) fn connect_syscall_nr() -> u32 {
    CONFIG.load().connect_syscall_nr
}

/// How many non-blocking TCP connects may wait for their outcome at once (at least 1).
#[inline(always)]
pub(crate) fn connect_table_entries() -> u32 {
    let entries = CONFIG.load().connect_table_entries;
    if entries == 0 { 1 } else { entries }
}

/// The v1 hierarchy of the memory controller (0: memory is on the unified one).
#[inline(always)]
pub(crate) fn memory_hierarchy() -> u32 {
    CONFIG.load().memory_hierarchy
}

#[inline(always)]
pub(crate) fn exit_has_group_dead() -> bool {
    CONFIG.load().exit_has_group_dead != 0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Wake the reader once this much data waits; below it, submissions don't wake it and the
/// reader drains on its own short timer. Waking user space on every event would cost each
/// traced process an interrupt and a context switch on its own CPU.
const WAKEUP_BYTES: u64 = 256 * 1024;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Flags for submitting an ordinary event: wake the reader only when enough data waits.
#[inline(always)]
pub(crate) fn batched() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
}

/// Flags for submitting an urgent event (OOM kills, fatal signals): wake the reader now.
pub(crate) const URGENT: u64 = BPF_RB_FORCE_WAKEUP;

/// Reserves a `T` in `EVENTS`, counting a loss for `program` when the buffer is full.
#[inline(always)]
pub(crate) fn reserve<T: 'static>(
    program: ProgramId,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost(program);
    }
    entry
}
