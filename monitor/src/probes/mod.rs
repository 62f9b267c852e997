//! Kernel probes: loading the eBPF programs (`monitor-ebpf`), attaching each to its hook, and
//! reading their events. One program failing to load or attach is logged and reported as a
//! probe that is down (`probe_up` 0); the others keep working.
//!
//! The programs (and their hooks) are listed once, in [`PROGRAMS`]. Kernel struct offsets come
//! from the running kernel's BTF ([`kernel_btf`]); tracefs is found or mounted ([`tracefs`]);
//! [`reader`] drains the ring buffer into a bounded channel; [`metrics`] exports what the
//! kernel side counted.

pub mod kernel_btf;
pub mod metrics;
pub mod reader;
pub mod tracefs;

use std::path::{Path, PathBuf};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FExit, TracePoint},
};
use monitor_common::{CONNECT_TABLE_ENTRIES, ProbeConfig, ProgramId, ProgramStats, UNIX_PATH_LEN, WatchedSocket};
use thiserror::Error;
use tracing::{debug, info, warn};

use self::kernel_btf::KernelBtf;
use crate::{health::SourceHealth, node::runtimes};

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A classic tracepoint: category and name under tracefs `events/`.
    TracePoint(&'static str, &'static str),
    /// A BTF-enabled tracepoint (needs kernel BTF): typed arguments, e.g. the task pointer.
    BtfTracePoint(&'static str),
    /// fexit on this architecture's function of a syscall (`__x64_sys_connect` for
    /// `"connect"`; needs kernel BTF and BPF trampolines). Unlike a `syscalls:*` tracepoint it
    /// sends no other syscall through the kernel's slow path.
    SyscallReturn(&'static str),
}

impl Hook {
    /// The kernel function a `SyscallReturn` hook attaches to, where we know the architecture.
    pub fn syscall_function(&self) -> Option<String> {
        match self {
            Hook::SyscallReturn(syscall) => SYSCALL_ABI.map(|abi| format!("{}{syscall}", abi.prefix)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TracePoint(category, name) => write!(f, "tracepoint/{category}/{name}"),
            Hook::BtfTracePoint(name) => write!(f, "tp_btf/{name}"),
            Hook::SyscallReturn(syscall) => match self.syscall_function() {
                Some(function) => write!(f, "fexit/{function}"),
                None => write!(f, "fexit/sys_{syscall}"),
            },
        }
    }
}

/// One kernel program: its id (index of its counters), its name (its ELF name, metrics,
/// `--disable-probe`) and its hook.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub id: ProgramId,
    pub name: &'static str,
    pub hook: Hook,
    /// A twin on a cheaper hook, tried first: its ELF name and hook. fexit on a syscall's
    /// function sends no other syscall through the kernel's slow path; a BTF tracepoint skips
    /// building the classic tracepoint's record. Both twins run the same code on the same maps.
    pub fast: Option<(&'static str, Hook)>,
    /// What it observes, for logs and `--help`-like listings.
    pub observes: &'static str,
    /// The fields its classic tracepoint's record must have where the program reads them, as
    /// the tracepoint's `format` file writes them; checked before attaching.
    pub record: &'static [&'static str],
}

impl ProgramSpec {
    /// The hook it attaches to when nothing stands in the way.
    pub fn preferred_hook(&self) -> Hook {
        match self.fast {
            Some((_, Hook::SyscallReturn(_))) if SYSCALL_ABI.is_none() => self.hook,
            Some((_, hook)) => hook,
            None => self.hook,
        }
    }
}

/// Every kernel program, in the order they are attached. The syscalls are hooked only where
/// they return, with their arguments read from the caller's saved registers: each attached
/// syscall tracepoint costs every syscall on the node, so there is one per syscall, not two,
/// and fexit (which costs no other syscall anything) is used where the kernel allows it. A hook
/// that fires often (every exec, every exit, every TCP state change) is a BTF tracepoint where
/// there is BTF: the kernel then builds no tracepoint record for it.
pub const PROGRAMS: [ProgramSpec; 10] = [
    ProgramSpec { id: ProgramId::Exec, name: "sched_process_exec", hook: Hook::TracePoint("sched", "sched_process_exec"), fast: Some(("tp_btf_sched_process_exec", Hook::BtfTracePoint("sched_process_exec"))), observes: "successful execs", record: &[] },
    ProgramSpec { id: ProgramId::ExecveExit, name: "sys_exit_execve", hook: Hook::TracePoint("syscalls", "sys_exit_execve"), fast: Some(("fexit_sys_execve", Hook::SyscallReturn("execve"))), observes: "failed execves", record: &[] },
    ProgramSpec { id: ProgramId::ExecveatExit, name: "sys_exit_execveat", hook: Hook::TracePoint("syscalls", "sys_exit_execveat"), fast: Some(("fexit_sys_execveat", Hook::SyscallReturn("execveat"))), observes: "failed execveats", record: &[] },
    ProgramSpec { id: ProgramId::Exit, name: "sched_process_exit", hook: Hook::TracePoint("sched", "sched_process_exit"), fast: Some(("tp_btf_sched_process_exit", Hook::BtfTracePoint("sched_process_exit"))), observes: "process exits", record: &[] },
    ProgramSpec { id: ProgramId::OomVictim, name: "mark_victim", hook: Hook::BtfTracePoint("mark_victim"), fast: None, observes: "OOM kills", record: &[] },
    ProgramSpec { id: ProgramId::OomReport, name: "printk_console", hook: Hook::TracePoint("printk", "console"), fast: None, observes: "whether an OOM kill was at a memory cgroup's limit or the node's", record: &["field:__data_loc char[] msg;\toffset:8;"] },
    ProgramSpec { id: ProgramId::ConnectExit, name: "sys_exit_connect", hook: Hook::TracePoint("syscalls", "sys_exit_connect"), fast: Some(("fexit_sys_connect", Hook::SyscallReturn("connect"))), observes: "connects and their results", record: &[] },
    ProgramSpec { id: ProgramId::TcpState, name: "inet_sock_set_state", hook: Hook::TracePoint("sock", "inet_sock_set_state"), fast: Some(("tp_btf_inet_sock_set_state", Hook::BtfTracePoint("inet_sock_set_state"))), observes: "non-blocking TCP connect outcomes", record: &[] },
    ProgramSpec { id: ProgramId::Signal, name: "signal_generate", hook: Hook::BtfTracePoint("signal_generate"), fast: None, observes: "fatal signals and their senders", record: &[] },
    ProgramSpec { id: ProgramId::CgroupMkdir, name: "cgroup_mkdir", hook: Hook::TracePoint("cgroup", "cgroup_mkdir"), fast: None, observes: "cgroups created and their paths (who owns a process whose cgroup is gone when it is looked up)", record: &["field:int root;\toffset:8;", "field:u64 id;\toffset:16;", "field:__data_loc char[] path;\toffset:24;"] },
];

/// How this architecture passes syscalls their arguments: its syscall functions are
/// `<prefix><name>` and take the caller's saved registers (`struct pt_regs`, user ABI:
/// `asm/ptrace.h`), where the first three arguments stay at these byte offsets until the call
/// returns. On arm64 the first argument's register holds the return value by then; `orig_x0`
/// keeps the argument.
#[derive(Clone, Copy, Debug)]
pub struct SyscallAbi {
    pub prefix: &'static str,
    pub args: [u32; 3],
    /// Where the number of the syscall the task is in is kept.
    pub nr: u32,
    /// The number of connect(2).
    pub connect: u32,
}

/// x86_64: `di`, `si`, `dx`; `orig_ax`.
#[cfg(target_arch = "x86_64")]
pub const SYSCALL_ABI: Option<SyscallAbi> = Some(SyscallAbi { prefix: "__x64_sys_", args: [14 * 8, 13 * 8, 12 * 8], nr: 15 * 8, connect: 42 });
/// arm64: `orig_x0`, `regs[1]`, `regs[2]`; `syscallno`.
#[cfg(target_arch = "aarch64")]
pub const SYSCALL_ABI: Option<SyscallAbi> = Some(SyscallAbi { prefix: "__arm64_sys_", args: [34 * 8, 8, 16], nr: 35 * 8, connect: 203 });
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const SYSCALL_ABI: Option<SyscallAbi> = None;

/// Room in the table of waiting connects over its ring's slots (as `CONNECT_TABLE_SLACK` in
/// monitor-ebpf's connect.rs).
const CONNECT_TABLE_SLACK: u32 = 512;

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Report successful loopback TCP connects too (off: they are most of a node's connects).
    pub report_loopback_success: bool,
    /// Unix sockets whose successful connects are reported.
    pub watched_sockets: Vec<PathBuf>,
    /// Programs not to attach, by name (see [`PROGRAMS`]).
    pub disabled: Vec<String>,
    /// BTF file to read kernel struct layouts from (default `/sys/kernel/btf/vmlinux`).
    pub btf_path: Option<PathBuf>,
    /// Non-blocking TCP connects that may wait for their outcome at once (default
    /// [`CONNECT_TABLE_ENTRIES`], 16384; at least 1). Past it the oldest waiting connect is
    /// evicted and counted in `kernel_events_lost_total{program="sys_exit_connect"}`. A smaller
    /// table costs less kernel memory (about 250 bytes a connect) and lets a test overflow it
    /// with few connects.
    pub connect_table_entries: u32,
    /// The memory controller's v1 hierarchy id (`/proc/cgroups`), 0 when memory is on the
    /// unified hierarchy: created cgroups are reported in these two hierarchies.
    pub memory_hierarchy: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 8 << 20,
            report_loopback_success: false,
            // Every runtime's sockets, as clients write them (`/run/...`, `/var/run/...`).
            watched_sockets: runtimes::socket_paths_as_clients_write_them().map(PathBuf::from).collect(),
            disabled: Vec::new(),
            btf_path: None,
            connect_table_entries: CONNECT_TABLE_ENTRIES,
            memory_hierarchy: 0,
        }
    }
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("this build has no kernel programs (built with AYA_BUILD_SKIP)")]
    NoObject,
    #[error("cannot load the eBPF object (are we root with CAP_BPF and CAP_PERFMON?): {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

/// Whether one program is attached, and if not, why.
#[derive(Clone, Debug)]
pub struct ProgramStatus {
    pub spec: ProgramSpec,
    /// The hook it is attached to; when down, its preferred hook.
    pub hook: Hook,
    pub error: Option<String>,
}

impl ProgramStatus {
    pub fn is_up(&self) -> bool {
        self.error.is_none()
    }
}

/// The loaded programs. Dropping it detaches and unloads every program.
pub struct Probes {
    ebpf: Ebpf,
    pub status: Vec<ProgramStatus>,
    pub tracefs: Result<tracefs::Tracefs, String>,
    /// Kernel fields the programs could not find (their values read as zero).
    pub missing_offsets: Vec<&'static str>,
}

#[cfg(not(ebpf_object_missing))]
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));
#[cfg(ebpf_object_missing)]
static EBPF_OBJECT: &[u8] = &[];

fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Kernels >= 5.11 charge BPF memory to the memory cgroup: the rlimit doesn't matter.
        debug!("cannot raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11", std::io::Error::last_os_error());
    }
}

fn watched_key(path: &Path) -> Option<WatchedSocket> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() || bytes.len() >= UNIX_PATH_LEN {
        return None;
    }
    let mut key = WatchedSocket { path: [0; UNIX_PATH_LEN] };
    key.path[..bytes.len()].copy_from_slice(bytes);
    Some(key)
}

/// Fills the maps of watched sockets: their paths, and their sockaddrs' prefixes.
fn watch_sockets(ebpf: &mut Ebpf, paths: &[PathBuf]) -> Result<(), ProbeError> {
    let mut prefixes = Vec::new();
    {
        let map = ebpf.map_mut("WATCHED_SOCKETS").ok_or(ProbeError::MissingMap("WATCHED_SOCKETS"))?;
        let mut watched: aya::maps::HashMap<_, WatchedSocket, u8> =
            aya::maps::HashMap::try_from(map).map_err(|source| ProbeError::Map { name: "WATCHED_SOCKETS", source })?;
        for path in paths {
            match watched_key(path) {
                Some(key) => match watched.insert(&key, &1, 0) {
                    Ok(()) => prefixes.push(key.prefix()),
                    Err(err) => warn!(socket = %path.display(), "cannot watch socket: {err}"),
                },
                None => warn!(socket = %path.display(), "socket path too long to watch"),
            }
        }
    }
    let map = ebpf.map_mut("WATCHED_PREFIXES").ok_or(ProbeError::MissingMap("WATCHED_PREFIXES"))?;
    let mut watched: aya::maps::HashMap<_, u64, u8> =
        aya::maps::HashMap::try_from(map).map_err(|source| ProbeError::Map { name: "WATCHED_PREFIXES", source })?;
    for prefix in prefixes {
        // Without its prefix a watched socket's connects would be filtered: say so.
        if let Err(err) = watched.insert(&prefix, &1, 0) {
            warn!("cannot watch a socket prefix, successful connects to some watched sockets will be missed: {err}");
        }
    }
    Ok(())
}

impl Probes {
    /// Loads the programs and attaches each one; failures of single programs are recorded in
    /// `status`, not returned.
    pub fn load(options: &ProbeOptions) -> Result<Self, ProbeError> {
        if EBPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        raise_memlock_limit();
        let tracefs = tracefs::find_or_mount().map_err(|e| e.to_string());
        match &tracefs {
            Ok(t) if t.mounted_by_us => info!(path = %t.path.display(), "mounted tracefs"),
            Ok(t) => debug!(path = %t.path.display(), "tracefs found"),
            Err(err) => warn!("{err}; tracepoint probes will fail"),
        }

        let memcg_v1 = std::fs::read_to_string("/proc/cgroups").is_ok_and(|s| kernel_btf::memcg_on_v1(&s));
        let btf_path = options.btf_path.clone().unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"));
        let (mut offsets, missing_offsets) = match KernelBtf::from_file(&btf_path) {
            Ok(btf) => {
                let offsets = btf.kernel_offsets(memcg_v1);
                let missing = KernelBtf::missing(&offsets);
                if !missing.is_empty() {
                    warn!(fields = ?missing, "kernel fields not found in BTF; they will read as zero");
                }
                (offsets, missing)
            }
            Err(err) => {
                warn!("no kernel BTF ({err}): parents, cgroups of OOM victims and signal targets, exit codes will read as zero");
                (monitor_common::KernelOffsets::UNKNOWN, KernelBtf::missing(&monitor_common::KernelOffsets::UNKNOWN))
            }
        };
        match SYSCALL_ABI {
            Some(abi) => {
                [offsets.regs_arg0, offsets.regs_arg1, offsets.regs_arg2] = abi.args;
                offsets.regs_syscall_nr = abi.nr;
            }
            None => warn!("syscall arguments cannot be read on this architecture: failed exec filenames and connect addresses will be empty"),
        }
        let exit_format = tracefs.as_ref().ok().map(|t| t.path.join("events/sched/sched_process_exit/format"));
        let exit_has_group_dead = exit_format.and_then(|f| std::fs::read_to_string(f).ok()).is_some_and(|f| f.contains(" group_dead;"));
        let config = ProbeConfig {
            self_tgid: std::process::id(),
            report_loopback_success: options.report_loopback_success as u32,
            exit_has_group_dead: exit_has_group_dead as u32,
            connect_syscall_nr: SYSCALL_ABI.map_or(0, |abi| abi.connect),
            connect_table_entries: options.connect_table_entries.max(1),
            memory_hierarchy: options.memory_hierarchy,
        };
        let aya_btf = Btf::parse_file(&btf_path, aya::Endianness::default()).ok();

        let mut loader = EbpfLoader::new();
        if let Some(btf) = &aya_btf {
            loader.btf(btf);
        }
        let mut ebpf = loader
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", options.ring_buffer_bytes)
            // The ring of waiting connects and their table, which has room for the inserts
            // running at once (see `TCP_CONNECTS` in monitor-ebpf's connect.rs).
            .map_max_entries("TCP_CONNECTS_ORDER", config.connect_table_entries)
            .map_max_entries("TCP_CONNECTS", config.connect_table_entries.saturating_add(CONNECT_TABLE_SLACK))
            .load(EBPF_OBJECT)
            .map_err(ProbeError::Load)?;

        watch_sockets(&mut ebpf, &options.watched_sockets)?;

        let mut status = Vec::with_capacity(PROGRAMS.len());
        for spec in PROGRAMS {
            let (hook, error) = if options.disabled.iter().any(|d| d == spec.name) {
                (spec.preferred_hook(), Some("disabled by configuration".to_string()))
            } else if let Some(why) = tracefs.as_ref().ok().and_then(|t| record_mismatch(&spec, &t.path)) {
                (spec.hook, Some(why))
            } else {
                attach_best(&mut ebpf, &spec, aya_btf.as_ref())
            };
            match &error {
                None => info!(program = spec.name, %hook, "attached: {}", spec.observes),
                Some(err) => warn!(program = spec.name, %hook, "not attached, {} will be missed: {err}", spec.observes),
            }
            status.push(ProgramStatus { spec, hook, error });
        }
        Ok(Self { ebpf, status, tracefs, missing_offsets })
    }

    /// Takes the events ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(|source| ProbeError::Map { name: "EVENTS", source })
    }

    /// Takes the per-program counters map (once), for [`metrics::KernelStatsCollector`].
    pub fn take_stats(&mut self) -> Result<PerCpuArray<MapData, ProgramStats>, ProbeError> {
        let map = self.ebpf.take_map("STATS").ok_or(ProbeError::MissingMap("STATS"))?;
        PerCpuArray::try_from(map).map_err(|source| ProbeError::Map { name: "STATS", source })
    }

    pub fn attached(&self) -> usize {
        self.status.iter().filter(|s| s.is_up()).count()
    }

    /// Reports the probes' sources of node context: tracefs and the kernel's BTF.
    pub fn report_sources(&self, sources: &SourceHealth) {
        sources.set("tracefs", self.tracefs.is_ok(), "tracepoint programs cannot attach");
        sources.set("kernel_btf", self.missing_offsets.is_empty(), "kernel struct fields read as zero");
    }

    /// Reports both sources down, when the probes could not load at all.
    pub fn report_no_sources(sources: &SourceHealth) {
        sources.set("tracefs", false, "no kernel programs");
        sources.set("kernel_btf", false, "no kernel programs");
    }
}

/// Why `spec`'s program must not read its classic tracepoint's record: a field it reads at a
/// fixed offset is not there (an older kernel's layout). `None` when the format cannot be read
/// (attaching then fails on its own).
fn record_mismatch(spec: &ProgramSpec, tracefs: &std::path::Path) -> Option<String> {
    let Hook::TracePoint(category, name) = spec.hook else { return None };
    if spec.record.is_empty() {
        return None;
    }
    let path = tracefs.join("events").join(category).join(name).join("format");
    let format = std::fs::read_to_string(&path).ok()?;
    let missing = spec.record.iter().find(|field| !format.contains(*field))?;
    Some(format!("{} has no `{}`: this kernel's record differs from what the program reads", path.display(), missing.replace('\t', " ")))
}

/// Attaches `spec`'s faster twin where it has one and the kernel allows it, else `spec` to its
/// own hook. Returns the hook it is attached to (its preferred one when down) and the error.
fn attach_best(ebpf: &mut Ebpf, spec: &ProgramSpec, btf: Option<&Btf>) -> (Hook, Option<String>) {
    let preferred = spec.preferred_hook();
    let fast_error = match spec.fast {
        Some((program, hook)) if hook == preferred => match attach(ebpf, program, hook, btf) {
            Ok(()) => return (preferred, None),
            Err(err) => Some(format!("{preferred}: {err}")),
        },
        _ => None,
    };
    match (attach(ebpf, spec.name, spec.hook, btf), fast_error) {
        (Ok(()), None) => (spec.hook, None),
        (Ok(()), Some(why)) => {
            let cost = if matches!(preferred, Hook::SyscallReturn(_)) { " (every syscall on the node pays for it)" } else { "" };
            info!(program = spec.name, "{why}; using {} instead{cost}", spec.hook);
            (spec.hook, None)
        }
        (Err(err), None) => (spec.hook, Some(err)),
        (Err(err), Some(why)) => (preferred, Some(format!("{why}; {}: {err}", spec.hook))),
    }
}

/// Loads `program` and attaches it to `hook`. A program that loaded but cannot attach is
/// unloaded again: only attached programs should stay in the kernel (a twin may be tried next).
fn attach(ebpf: &mut Ebpf, program: &str, hook: Hook, btf: Option<&Btf>) -> Result<(), String> {
    let program = ebpf.program_mut(program).ok_or_else(|| format!("program {program} not in the object"))?;
    match hook {
        Hook::TracePoint(category, name) => {
            let program: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            program.load().map_err(|e| format!("load: {e}"))?;
            if let Err(e) = program.attach(category, name) {
                let _ = program.unload();
                return Err(format!("attach: {e}"));
            }
        }
        Hook::BtfTracePoint(name) => {
            let btf = btf.ok_or("kernel BTF not available")?;
            let program: &mut BtfTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            program.load(name, btf).map_err(|e| format!("load: {e}"))?;
            if let Err(e) = program.attach() {
                let _ = program.unload();
                return Err(format!("attach: {e}"));
            }
        }
        Hook::SyscallReturn(_) => {
            let btf = btf.ok_or("kernel BTF not available")?;
            let function = hook.syscall_function().ok_or("no syscall functions known on this architecture")?;
            let program: &mut FExit = program.try_into().map_err(|e| format!("{e}"))?;
            program.load(&function, btf).map_err(|e| format!("load: {e}"))?;
            if let Err(e) = program.attach() {
                let _ = program.unload();
                return Err(format!("attach: {e}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux 5.4's `cgroup_mkdir` record had `int id` at 12: the program, which reads a u64 id at
    /// 16 and the path at 24, is not attached there.
    #[test]
    fn a_tracepoint_record_laid_out_otherwise_keeps_its_program_detached() {
        let tracefs = std::env::temp_dir().join(format!("nrm-tracefs-{}", std::process::id()));
        let dir = tracefs.join("events/cgroup/cgroup_mkdir");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let spec = PROGRAMS.iter().find(|p| p.name == "cgroup_mkdir").expect("cgroup_mkdir");
        let current = "\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int level;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;\n";
        std::fs::write(dir.join("format"), current).expect("write");
        assert_eq!(record_mismatch(spec, &tracefs), None);
        let linux_5_4 = "\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int id;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:int level;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] path;\toffset:20;\tsize:4;\tsigned:0;\n";
        std::fs::write(dir.join("format"), linux_5_4).expect("write");
        let why = record_mismatch(spec, &tracefs).expect("refused");
        assert!(why.contains("field:u64 id; offset:16;"), "{why}");
        // Unreadable: left to the attach, which reports its own error.
        std::fs::remove_file(dir.join("format")).expect("rm");
        assert_eq!(record_mismatch(spec, &tracefs), None);
        let _ = std::fs::remove_dir_all(&tracefs);
    }
}
