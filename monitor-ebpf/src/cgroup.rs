//! Cgroups as they are created (`cgroup:cgroup_mkdir`), with their paths: a container that
//! fails at once has its cgroup removed within milliseconds, before user space could look its
//! id up in the cgroup filesystem. Only the unified hierarchy and the memory controller's v1
//! hierarchy are reported (the two whose ids events carry); the other v1 hierarchies, which get
//! the same directories, are filtered.

use aya_ebpf::{EbpfContext as _, helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint, programs::TracePointContext};
use monitor_common::{CGROUP_PATH_LEN, CGROUP_PATH_TRUNCATED, CgroupMkdirEvent, EventKind, ProgramId};

use crate::{batched, count_emitted, count_filtered, count_lost, kernel::{current_header, field}, memory_hierarchy, reserve};

// cgroup:cgroup_mkdir (include/trace/events/cgroup.h, `cgroup` class, Linux >= 5.5): `int root`
// at 8, `int level` at 12, `u64 id` at 16, `__data_loc char[] path` at 24. User space checks
// the format before attaching.
const ROOT: usize = 8;
const ID: usize = 16;
const PATH_LOC: usize = 24;

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let program = ProgramId::CgroupMkdir;
    let hierarchy = field::<i32>(&ctx, ROOT) as u32;
    if hierarchy != 0 && hierarchy != memory_hierarchy() {
        count_filtered(program);
        return 0;
    }
    let Some(mut entry) = reserve::<CgroupMkdirEvent>(program) else {
        return 0;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    current_header(&mut event.header, EventKind::CgroupMkdir as u32);
    event.hierarchy = hierarchy;
    event.id = field::<u64>(&ctx, ID);
    event._pad = 0;
    // __data_loc: low 16 bits offset of the string in the record, high 16 its length (with NUL).
    let loc = field::<u32>(&ctx, PATH_LOC);
    let src = (ctx.as_ptr() as usize + (loc & 0xffff) as usize) as *const u8;
    let Ok(len) = (unsafe { bpf_probe_read_kernel_str_bytes(src, &mut event.path) }).map(|s| s.len()) else {
        entry.discard(0);
        count_lost(program);
        return 0;
    };
    event.path_len = len.min(CGROUP_PATH_LEN) as u32;
    event.flags = if (loc >> 16) as usize > CGROUP_PATH_LEN { CGROUP_PATH_TRUNCATED } else { 0 };
    entry.submit(batched());
    count_emitted(program);
    0
}
