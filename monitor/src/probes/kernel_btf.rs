//! Kernel struct layouts from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The kernel programs read a few task, cgroup, mm and sock fields. Rust eBPF has no CO-RE
//! field relocations, so user space resolves each field's byte offset here and hands the
//! table (`KernelOffsets`) to the programs before load. This is a small reader of the BTF
//! type and string sections: enough to find struct members (through anonymous structs and
//! unions), struct sizes and enumerators. It does not validate or interpret anything else.
//! (aya parses BTF too, but does not expose type lookups.)

use std::{collections::HashMap, path::Path};

use monitor_common::{KernelOffsets, OFFSET_UNKNOWN};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not BTF: {0}")]
    Format(&'static str),
}

const BTF_MAGIC: u16 = 0xeb9f;
/// Structs one member lookup may visit (real kernels nest a few anonymous members, not 1,000).
const MEMBER_SEARCH_BUDGET: u32 = 1000;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Struct { size: u32, members: Vec<Member> },
    Array,
    /// typedef, const, volatile, restrict, type tag: all refer to another type.
    Alias(u32),
    Enum { values: Vec<(u32, i64)> },
    Int,
    Ptr,
    Other,
}

/// Parsed BTF: types by id and the string section.
pub struct KernelBtf {
    types: Vec<(u32, Type)>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Format("truncated"))
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    /// Parses little-endian BTF (the only kind this x86_64/arm64 agent meets).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(BTF_MAGIC) {
            return Err(BtfError::Format("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_start = hdr_len.checked_add(type_off).ok_or(BtfError::Format("offsets"))?;
        let types_end = types_start.checked_add(type_len).ok_or(BtfError::Format("offsets"))?;
        let strs_start = hdr_len.checked_add(str_off).ok_or(BtfError::Format("offsets"))?;
        let strs_end = strs_start.checked_add(str_len).ok_or(BtfError::Format("offsets"))?;
        let type_data = data.get(types_start..types_end).ok_or(BtfError::Format("type section"))?;
        let strings = data.get(strs_start..strs_end).ok_or(BtfError::Format("string section"))?.to_vec();

        // Type ids start at 1; id 0 is void.
        let mut types = vec![(0, Type::Other)];
        let mut at = 0;
        while at < type_data.len() {
            let name = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                KIND_INT => {
                    at += 4;
                    Type::Int
                }
                KIND_PTR => Type::Ptr,
                KIND_ARRAY => {
                    at += 12;
                    Type::Array
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let offset = u32_at(type_data, at + 8)?;
                        members.push(Member {
                            name: u32_at(type_data, at)?,
                            type_id: u32_at(type_data, at + 4)?,
                            bit_offset: if kind_flag { offset & 0xff_ffff } else { offset },
                        });
                        at += 12;
                    }
                    Type::Struct { size: size_or_type, members }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        values.push((u32_at(type_data, at)?, u32_at(type_data, at + 4)? as i32 as i64));
                        at += 8;
                    }
                    Type::Enum { values }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let lo = u32_at(type_data, at + 4)? as u64;
                        let hi = u32_at(type_data, at + 8)? as u64;
                        values.push((u32_at(type_data, at)?, (hi << 32 | lo) as i64));
                        at += 12;
                    }
                    Type::Enum { values }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_FUNC_PROTO => {
                    at += 8 * vlen;
                    Type::Other
                }
                KIND_VAR | KIND_DECL_TAG => {
                    at += 4;
                    Type::Other
                }
                KIND_DATASEC => {
                    at += 12 * vlen;
                    Type::Other
                }
                // FWD, FUNC, FLOAT: no trailing data.
                7 | 12 | 16 => Type::Other,
                _ => return Err(BtfError::Format("unknown type kind")),
            };
            types.push((name, ty));
        }
        let mut btf = Self { types, strings, by_name: HashMap::new() };
        for id in 1..btf.types.len() {
            let (name, ty) = &btf.types[id];
            if matches!(ty, Type::Struct { .. }) && *name != 0 {
                let name = btf.string(*name).to_string();
                btf.by_name.entry(name).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let Some(rest) = self.strings.get(offset as usize..) else { return "" };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize).map(|(_, t)| t)
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Some(Type::Alias(next)) => id = *next,
                _ => break,
            }
        }
        id
    }

    /// The struct (or union) named `name` that has members (not a forward declaration).
    fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name)?.iter().copied().find(
            |id| matches!(self.ty(*id), Some(Type::Struct { members, .. }) if !members.is_empty()),
        )
    }

    /// Size in bytes of the struct `name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        match self.ty(self.struct_id(name)?) {
            Some(Type::Struct { size, .. }) => Some(*size),
            _ => None,
        }
    }

    /// Byte offset and type id of member `member` of struct type `id`, looking inside
    /// anonymous structs and unions.
    /// `budget` bounds the structs visited (a crafted BTF can nest anonymous members in a cycle).
    fn member_in(&self, id: u32, member: &str, depth: u32, budget: &mut u32) -> Option<(u32, u32)> {
        *budget = budget.checked_sub(1)?;
        let Some(Type::Struct { members, .. }) = self.ty(self.resolve(id)) else { return None };
        for m in members {
            if m.name != 0 && self.string(m.name) == member {
                return Some((m.bit_offset / 8, m.type_id));
            }
        }
        if depth > 8 {
            return None;
        }
        members.iter().filter(|m| m.name == 0).find_map(|m| {
            let (off, ty) = self.member_in(m.type_id, member, depth + 1, budget)?;
            Some(((m.bit_offset / 8).checked_add(off)?, ty))
        })
    }

    /// Byte offset of `member` in struct `name`, e.g. `member_offset("task_struct", "tgid")`.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let mut budget = MEMBER_SEARCH_BUDGET;
        self.member_in(self.struct_id(name)?, member, 0, &mut budget).map(|(off, _)| off)
    }

    fn member_type(&self, name: &str, member: &str) -> Option<&Type> {
        let mut budget = MEMBER_SEARCH_BUDGET;
        let (_, ty) = self.member_in(self.struct_id(name)?, member, 0, &mut budget)?;
        self.ty(self.resolve(ty))
    }

    /// Value of the enumerator `name` in any enum.
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        self.types.iter().find_map(|(_, ty)| match ty {
            Type::Enum { values } => {
                values.iter().find(|(n, _)| self.string(*n) == name).map(|(_, v)| *v)
            }
            _ => None,
        })
    }

    /// Offsets the kernel programs need. Fields this kernel lacks stay `OFFSET_UNKNOWN`.
    pub fn kernel_offsets(&self, memcg_v1: bool) -> KernelOffsets {
        let off = |s: &str, m: &str| self.member_offset(s, m).unwrap_or(OFFSET_UNKNOWN);
        let mut o = KernelOffsets::UNKNOWN;
        o.task_pid = off("task_struct", "pid");
        o.task_tgid = off("task_struct", "tgid");
        o.task_real_parent = off("task_struct", "real_parent");
        o.task_group_leader = off("task_struct", "group_leader");
        o.task_start_time = off("task_struct", "start_time");
        o.task_comm = off("task_struct", "comm");
        o.task_cred = off("task_struct", "cred");
        o.task_cgroups = off("task_struct", "cgroups");
        o.task_exit_code = off("task_struct", "exit_code");
        o.task_signal = off("task_struct", "signal");
        o.task_mm = off("task_struct", "mm");
        o.cred_uid = off("cred", "uid");
        o.css_set_dfl_cgrp = off("css_set", "dfl_cgrp");
        o.css_set_subsys = off("css_set", "subsys");
        o.css_cgroup = off("cgroup_subsys_state", "cgroup");
        o.cgroup_kn = off("cgroup", "kn");
        o.kernfs_node_id = off("kernfs_node", "id");
        o.memory_cgrp_id = self
            .enumerator("memory_cgrp_id")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(OFFSET_UNKNOWN);
        o.signal_oom_score_adj = off("signal_struct", "oom_score_adj");
        o.mm_total_vm = off("mm_struct", "total_vm");
        o.mm_rss_stat = off("mm_struct", "rss_stat");
        match self.member_type("mm_struct", "rss_stat") {
            // Linux >= 6.2: struct percpu_counter rss_stat[NR_MM_COUNTERS].
            Some(Type::Array) => {
                o.percpu_counter_size = self.struct_size("percpu_counter").unwrap_or(OFFSET_UNKNOWN);
                o.percpu_counter_count = off("percpu_counter", "count");
            }
            // Older: struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }.
            Some(Type::Struct { .. }) => {
                let count = off("mm_rss_stat", "count");
                let sum = o.mm_rss_stat.checked_add(count).filter(|s| *s != OFFSET_UNKNOWN);
                if let Some(sum) = sum.filter(|_| count != OFFSET_UNKNOWN && o.mm_rss_stat != OFFSET_UNKNOWN) {
                    o.mm_rss_stat = sum;
                    o.percpu_counter_size = 8;
                    o.percpu_counter_count = 0;
                }
            }
            _ => {}
        }
        o.sock_sk_err = off("sock", "sk_err");
        o.sock_sk_protocol = off("sock", "sk_protocol");
        let common = |m: &str| {
            let base = self.member_offset("sock", "__sk_common")?;
            base.checked_add(self.member_offset("sock_common", m)?)
        };
        o.sock_family = common("skc_family").unwrap_or(OFFSET_UNKNOWN);
        o.sock_dport = common("skc_dport").unwrap_or(OFFSET_UNKNOWN);
        o.sock_daddr = common("skc_daddr").unwrap_or(OFFSET_UNKNOWN);
        o.sock_v6_daddr = common("skc_v6_daddr").unwrap_or(OFFSET_UNKNOWN);
        o.binprm_filename = off("linux_binprm", "filename");
        // Nested members, as one offset each: unknown when any part is.
        let nested = |parts: &[(&str, &str)]| {
            parts.iter().try_fold(0u32, |sum, (s, m)| sum.checked_add(self.member_offset(s, m)?)).unwrap_or(OFFSET_UNKNOWN)
        };
        o.mm_exe_file = off("mm_struct", "exe_file");
        o.file_dentry = nested(&[("file", "f_path"), ("path", "dentry")]);
        o.dentry_name = nested(&[("dentry", "d_name"), ("qstr", "name")]);
        o.css_parent = off("cgroup_subsys_state", "parent");
        o.memcg_usage = nested(&[("mem_cgroup", "memory"), ("page_counter", "usage")]);
        o.memcg_max = nested(&[("mem_cgroup", "memory"), ("page_counter", "max")]);
        o.memcg_v1 = memcg_v1 as u32;
        o
    }

    /// Names of the fields `offsets` could not resolve, for the start-up log.
    pub fn missing(offsets: &KernelOffsets) -> Vec<&'static str> {
        let fields = [
            ("task_struct.pid", offsets.task_pid),
            ("task_struct.tgid", offsets.task_tgid),
            ("task_struct.real_parent", offsets.task_real_parent),
            ("task_struct.group_leader", offsets.task_group_leader),
            ("task_struct.start_time", offsets.task_start_time),
            ("task_struct.comm", offsets.task_comm),
            ("task_struct.cred", offsets.task_cred),
            ("task_struct.cgroups", offsets.task_cgroups),
            ("task_struct.exit_code", offsets.task_exit_code),
            ("task_struct.signal", offsets.task_signal),
            ("task_struct.mm", offsets.task_mm),
            ("cred.uid", offsets.cred_uid),
            ("css_set.dfl_cgrp", offsets.css_set_dfl_cgrp),
            ("css_set.subsys", offsets.css_set_subsys),
            ("cgroup_subsys_state.cgroup", offsets.css_cgroup),
            ("cgroup.kn", offsets.cgroup_kn),
            ("kernfs_node.id", offsets.kernfs_node_id),
            ("memory_cgrp_id", offsets.memory_cgrp_id),
            ("signal_struct.oom_score_adj", offsets.signal_oom_score_adj),
            ("mm_struct.total_vm", offsets.mm_total_vm),
            ("mm_struct.rss_stat", offsets.mm_rss_stat),
            ("percpu_counter.count", offsets.percpu_counter_count),
            ("sock.sk_err", offsets.sock_sk_err),
            ("sock.sk_protocol", offsets.sock_sk_protocol),
            ("sock_common.skc_family", offsets.sock_family),
            ("sock_common.skc_dport", offsets.sock_dport),
            ("sock_common.skc_daddr", offsets.sock_daddr),
            ("sock_common.skc_v6_daddr", offsets.sock_v6_daddr),
            ("linux_binprm.filename", offsets.binprm_filename),
            ("mm_struct.exe_file", offsets.mm_exe_file),
            ("file.f_path.dentry", offsets.file_dentry),
            ("dentry.d_name.name", offsets.dentry_name),
            ("cgroup_subsys_state.parent", offsets.css_parent),
            ("mem_cgroup.memory.usage", offsets.memcg_usage),
            ("mem_cgroup.memory.max", offsets.memcg_max),
        ];
        fields.iter().filter(|(_, v)| *v == OFFSET_UNKNOWN).map(|(n, _)| *n).collect()
    }
}

/// Whether the memory controller is mounted on a cgroup v1 hierarchy (`/proc/cgroups`:
/// hierarchy id 0 means v2 or unmounted).
pub fn memcg_on_v1(proc_cgroups: &str) -> bool {
    proc_cgroups.lines().any(|line| {
        let mut cols = line.split_whitespace();
        cols.next() == Some("memory") && cols.next().is_some_and(|h| h != "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: `struct inner { int a; int b; }`,
    /// `struct outer { int x; struct { int hidden; }; struct inner in; }`, `enum e { one = 1 }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0hidden\0in\0e\0one\0".to_vec();
        let s = |name: &str| -> u32 {
            let needle = [name.as_bytes(), b"\0"].concat();
            strings.windows(needle.len()).position(|w| w == needle.as_slice()).unwrap() as u32
        };
        let mut t = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| t.extend_from_slice(&w.to_le_bytes()));
        // 1: int
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { a @0, b @32 bits }
        push(&[s("inner"), KIND_STRUCT << 24 | 2, 8, s("a"), 1, 0, s("b"), 1, 32]);
        // 3: anonymous struct { hidden @0 }
        push(&[0, KIND_STRUCT << 24 | 1, 4, s("hidden"), 1, 0]);
        // 4: struct outer { x @0, <anon> @32, in @64 }
        push(&[s("outer"), KIND_STRUCT << 24 | 3, 16, s("x"), 1, 0, 0, 3, 32, s("in"), 2, 64]);
        // 5: enum e { one = 1 }
        push(&[s("e"), KIND_ENUM << 24 | 1, 4, s("one"), 1]);
        let mut blob = Vec::new();
        for w in [BTF_MAGIC as u32 | 1 << 16, 24, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&t);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn finds_members_through_anonymous_structs() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "x"), Some(0));
        assert_eq!(btf.member_offset("outer", "hidden"), Some(4));
        assert_eq!(btf.member_offset("outer", "in"), Some(8));
        assert_eq!(btf.member_offset("inner", "b"), Some(4));
        assert_eq!(btf.member_offset("outer", "nope"), None);
        assert_eq!(btf.struct_size("outer"), Some(16));
        assert_eq!(btf.enumerator("one"), Some(1));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(KernelBtf::parse(b"").is_err());
        assert!(KernelBtf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut blob = sample();
        blob.truncate(60);
        assert!(KernelBtf::parse(&blob).is_err());
    }

    /// BTF of `struct task_struct` whose only members are anonymous structs `types` (words).
    fn crafted(types: &[u32]) -> Vec<u8> {
        let strings = b"\0task_struct\0pid\0";
        let t: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut blob = Vec::new();
        for w in [BTF_MAGIC as u32 | 1 << 16, 24, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&t);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn anonymous_member_cycles_and_huge_offsets_are_bounded() {
        // Found with the kernel_btf fuzz target (fuzz/). A struct made of 12 anonymous
        // members of its own type took 12^9 lookups (a hang).
        let mut types = vec![1, KIND_STRUCT << 24 | 12, 8];
        (0..12).for_each(|_| types.extend([0, 1, 0]));
        let btf = KernelBtf::parse(&crafted(&types)).unwrap();
        assert_eq!(btf.member_offset("task_struct", "pid"), None);
        // Nine nested anonymous structs at byte offset 0x1fffffff each overflowed u32.
        let mut types = Vec::new();
        for id in 1..10 {
            types.extend([if id == 1 { 1 } else { 0 }, KIND_STRUCT << 24 | 1, 8, 0, id + 1, 0xffff_fff8]);
        }
        types.extend([0, KIND_STRUCT << 24 | 1, 8, 13, 0, 0]);
        let btf = KernelBtf::parse(&crafted(&types)).unwrap();
        assert_eq!(btf.member_offset("task_struct", "pid"), None);
        assert_eq!(btf.kernel_offsets(false).task_pid, OFFSET_UNKNOWN);
    }

    #[test]
    fn running_kernel_has_every_offset() {
        // The real thing: this machine's kernel BTF must resolve every field we read.
        let btf = KernelBtf::from_sys_fs().expect("this kernel must expose /sys/kernel/btf/vmlinux");
        let offsets = btf.kernel_offsets(true);
        assert_eq!(KernelBtf::missing(&offsets), Vec::<&str>::new());
        assert_eq!(offsets.task_comm, btf.member_offset("task_struct", "comm").unwrap());
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn syscall_argument_registers_match_the_running_kernel() {
        let btf = KernelBtf::from_sys_fs().expect("this kernel must expose /sys/kernel/btf/vmlinux");
        let in_btf = ["di", "si", "dx"].map(|r| btf.member_offset("pt_regs", r).expect("pt_regs member"));
        let abi = super::super::SYSCALL_ABI.expect("x86_64 has an ABI");
        assert_eq!(abi.args, in_btf);
        assert_eq!(Some(abi.nr), btf.member_offset("pt_regs", "orig_ax"));
        assert_eq!(abi.connect, libc::SYS_connect as u32);
    }

    #[test]
    fn reads_memory_controller_placement() {
        let v1 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t1\t1\nmemory\t5\t3\t1\n";
        let v2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t80\t1\n";
        assert!(memcg_on_v1(v1));
        assert!(!memcg_on_v1(v2));
        assert!(!memcg_on_v1(""));
    }
}
