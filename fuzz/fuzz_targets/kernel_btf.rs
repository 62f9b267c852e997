//! Kernel BTF: `KernelBtf::parse` on any bytes, then every lookup the loader does at start-up
//! (`kernel_offsets`, `missing`). Properties: no panic, no hang (bounded lookups through
//! aliases and anonymous members), no allocation beyond the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::probes::kernel_btf::KernelBtf;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = KernelBtf::parse(data) else { return };
    for memcg_v1 in [false, true] {
        let offsets = btf.kernel_offsets(memcg_v1);
        let _ = KernelBtf::missing(&offsets);
    }
    let _ = (btf.struct_size("task_struct"), btf.member_offset("task_struct", "comm"), btf.enumerator("memory_cgrp_id"));
});
