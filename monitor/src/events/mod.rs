//! Typed events, decoded from the kernel's `#[repr(C)]` records (`monitor-common`).
//!
//! Decoding checks the kind and the length of every record and never trusts a length field
//! from the kernel beyond its buffer; a bad record is a `DecodeError`, never a panic.
//! [`oom_join`] joins each OOM kill with the kernel's report of it.

pub mod oom_join;

use std::{fmt, net::IpAddr, time::Duration};

use monitor_common as raw;
use serde::Serialize;
use thiserror::Error;

/// The task an event is about, as the kernel saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Task {
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// cgroup v2 (default hierarchy) id: inode of the cgroup's directory in cgroup2fs.
    pub cgroup_id: u64,
    /// cgroup v1 memory cgroup id (inode in the v1 memory hierarchy), 0 when not on v1.
    pub memcg_id: u64,
    /// Process start, CLOCK_MONOTONIC.
    pub start_ns: u64,
    pub comm: String,
}

impl Task {
    fn from_raw(task: &raw::TaskInfo) -> Self {
        Self {
            pid: task.pid,
            tgid: task.tgid,
            ppid: task.ppid,
            uid: task.uid,
            cgroup_id: task.cgroup_id,
            memcg_id: task.memcg_id,
            start_ns: task.start_ns,
            comm: c_string(&task.comm),
        }
    }
}

/// How a process ended, from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum ExitStatus {
    Exited { code: u8 },
    Signaled { signal: u8, core_dumped: bool },
}

impl ExitStatus {
    pub fn from_wait_status(status: u32) -> Self {
        let signal = (status & 0x7f) as u8;
        if signal == 0 {
            ExitStatus::Exited { code: ((status >> 8) & 0xff) as u8 }
        } else {
            ExitStatus::Signaled { signal, core_dumped: status & 0x80 != 0 }
        }
    }

    /// The code a shell or kubelet shows: the exit code, or 128 + signal.
    pub fn shell_code(self) -> u16 {
        match self {
            ExitStatus::Exited { code } => code as u16,
            ExitStatus::Signaled { signal, .. } => 128 + signal as u16,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited { code } => write!(f, "exit code {code}"),
            ExitStatus::Signaled { signal, core_dumped } => {
                write!(f, "signal {}", signal_name(*signal as u32))?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exec {
    pub task: Task,
    pub filename: String,
    pub filename_truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecFailed {
    pub task: Task,
    pub filename: String,
    pub filename_truncated: bool,
    pub errno: i32,
    pub syscall: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exit {
    pub task: Task,
    pub status: ExitStatus,
    /// How long the process lived (exit time minus its start).
    pub lifetime: Duration,
}

/// Whose limit ran out when the OOM killer ran, as the kernel said it ([`OomReport`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OomConstraint {
    /// A memory cgroup reached its limit (a container's, a pod's, a service's).
    MemoryCgroup,
    /// The node ran out of memory (or a cpuset or memory policy's nodes did: the kernel's
    /// "Out of memory" covers those too).
    Global,
    /// The kernel's report of the kill was not seen (probe down, or the kill was of a task
    /// already exiting, which the kernel does not report).
    Unknown,
}

impl OomConstraint {
    /// Bounded label for metrics: `memory_cgroup`, `global`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryCgroup => "memory_cgroup",
            Self::Global => "global",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for OomConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MemoryCgroup => "its memory cgroup's limit was reached",
            Self::Global => "the node ran out of memory",
            Self::Unknown => "constraint not reported by the kernel",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OomKill {
    /// The victim.
    pub task: Task,
    /// From the kernel's report of this kill, joined by [`oom_join::OomJoin`].
    pub constraint: OomConstraint,
    /// The task whose allocation ran the OOM killer.
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    pub trigger_comm: String,
    pub trigger_cgroup_id: u64,
    pub trigger_memcg_id: u64,
    pub total_vm_pages: u64,
    pub anon_rss_pages: u64,
    pub file_rss_pages: u64,
    pub shmem_rss_pages: u64,
    pub oom_score_adj: i32,
    /// The memory cgroup whose limit the kill was at, as the kernel's counters said at the
    /// kill; `None` when no cgroup of the victim was at its limit (the node ran out).
    pub limit: Option<OomLimit>,
}

/// A memory cgroup at its limit when the OOM killer ran, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OomLimit {
    /// Its id in the memory controller's hierarchy: the v1 memory cgroup's inode when the
    /// victim's `memcg_id` is set (memory on v1), else its cgroup v2 id.
    pub cgroup_id: u64,
    pub max_pages: u64,
    pub usage_pages: u64,
}

impl OomKill {
    /// Resident memory of the victim (anonymous, file and shared), in pages.
    pub fn rss_pages(&self) -> u64 {
        self.anon_rss_pages.saturating_add(self.file_rss_pages).saturating_add(self.shmem_rss_pages)
    }
}

/// The OOM killer's log line for a kill ("Memory cgroup out of memory: Killed process 4242
/// (python3) ..."). [`oom_join::OomJoin`] folds it into the [`OomKill`] it reports on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OomReport {
    /// The task that ran the OOM killer.
    pub task: Task,
    pub victim_pid: u32,
    pub constraint: OomConstraint,
}

/// An OOM kill the kernel counted a second time: the OOM killer of a cgroup with
/// `memory.oom.group` set (kubelet sets it on every container on cgroup v2 since 1.28) kills its
/// victim, then every process of the group, the victim again among them. The kernel counts that
/// victim twice (`oom_kill` of `memory.events` and `/proc/vmstat`) and logs it twice, while
/// `oom:mark_victim`, once per task, reports it once. Made by the OOM join from the second log
/// line, so the missed-kill checks count what the kernel counted; no detector sees a kill in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OomKillRecounted {
    /// The victim, as its OOM kill event named it.
    pub task: Task,
}

/// A cgroup created, as the kernel named it then: attribution learns the paths of cgroups
/// that may be gone by the time their processes' events are looked up. Or one that was there
/// when the monitor started (`existing`), reported once so that the detectors follow it even
/// if it never makes an event (a quiet static pod's container).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupCreated {
    /// The task that created it (none for an existing one).
    pub task: Task,
    /// The hierarchy's id: 0 for the unified (v2) one, else the memory controller's v1 one.
    pub hierarchy: u32,
    /// Its id, as events carry it (`cgroup_id`, `memcg_id`).
    pub id: u64,
    /// From the hierarchy's root: `/kubepods/burstable/pod<uid>/<id>`.
    pub path: String,
    pub path_truncated: bool,
    /// Found at the monitor's start, not reported by the kernel.
    pub existing: bool,
}

impl OomReport {
    /// Reads "<prefix>: Killed process <pid> (..." (older kernels said "Kill process <pid>
    /// (...) score ... or sacrifice child"). `None` for other lines of those prefixes (e.g.
    /// "Out of memory and no killable processes...").
    pub fn parse_line(line: &str) -> Option<(OomConstraint, u32)> {
        let (prefix, rest) =
            line.split_once(": Killed process ").or_else(|| line.split_once(": Kill process "))?;
        let constraint = match prefix {
            "Memory cgroup out of memory" => OomConstraint::MemoryCgroup,
            // The global killer; with vm.oom_kill_allocating_task it says so in parentheses.
            p if p == "Out of memory" || p.starts_with("Out of memory (") => OomConstraint::Global,
            _ => return None,
        };
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        Some((constraint, digits.parse().ok()?))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SocketAddress {
    Unix { path: String, is_abstract: bool },
    Inet { ip: IpAddr, port: u16 },
    Other { family: u16 },
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Unix { path, is_abstract: false } => write!(f, "unix:{path}"),
            SocketAddress::Unix { path, is_abstract: true } => write!(f, "unix:@{path}"),
            SocketAddress::Inet { ip: IpAddr::V6(ip), port } => write!(f, "[{ip}]:{port}"),
            SocketAddress::Inet { ip, port } => write!(f, "{ip}:{port}"),
            SocketAddress::Other { family } => write!(f, "family {family}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connect {
    pub task: Task,
    pub address: SocketAddress,
    /// 0 on success, else a positive errno.
    pub errno: i32,
    /// The result came from the TCP state machine after a non-blocking connect.
    pub asynchronous: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// The target.
    pub task: Task,
    pub signal: u32,
    pub code: i32,
    /// Raised by the kernel itself (OOM killer, fault), not by a process's kill().
    pub from_kernel: bool,
    pub group: bool,
    pub sender_pid: u32,
    pub sender_tgid: u32,
    pub sender_comm: String,
    /// The file name of the sender's executable (empty for a kernel thread): unlike the comm,
    /// not the process's to choose.
    pub sender_exe: String,
    pub sender_cgroup_id: u64,
    pub sender_memcg_id: u64,
}

/// One decoded kernel event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Exec(Exec),
    ExecFailed(ExecFailed),
    Exit(Exit),
    // The two largest, and rare: boxed, so every event moves fewer bytes through the queues.
    OomKill(Box<OomKill>),
    Connect(Connect),
    Signal(Box<Signal>),
    OomReport(OomReport),
    OomKillRecounted(OomKillRecounted),
    CgroupCreated(CgroupCreated),
}

/// The kinds of events, for metrics labels and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Exec,
    ExecFailed,
    Exit,
    OomKill,
    Connect,
    Signal,
    OomReport,
    CgroupMkdir,
}

impl Kind {
    pub const ALL: [Kind; 8] =
        [Kind::Exec, Kind::ExecFailed, Kind::Exit, Kind::OomKill, Kind::Connect, Kind::Signal, Kind::OomReport, Kind::CgroupMkdir];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::ExecFailed => "exec_failed",
            Kind::Exit => "exit",
            Kind::OomKill => "oom_kill",
            Kind::Connect => "connect",
            Kind::Signal => "signal",
            Kind::OomReport => "oom_report",
            Kind::CgroupMkdir => "cgroup_mkdir",
        }
    }
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::Exec(_) => Kind::Exec,
            Event::ExecFailed(_) => Kind::ExecFailed,
            Event::Exit(_) => Kind::Exit,
            Event::OomKill(_) => Kind::OomKill,
            Event::Connect(_) => Kind::Connect,
            Event::Signal(_) => Kind::Signal,
            // From the kernel's second report of the kill.
            Event::OomReport(_) | Event::OomKillRecounted(_) => Kind::OomReport,
            Event::CgroupCreated(_) => Kind::CgroupMkdir,
        }
    }

    /// The task the event is about (the victim or target for OOM kills and signals).
    pub fn task(&self) -> &Task {
        match self {
            Event::Exec(e) => &e.task,
            Event::ExecFailed(e) => &e.task,
            Event::Exit(e) => &e.task,
            Event::OomKill(e) => &e.task,
            Event::Connect(e) => &e.task,
            Event::Signal(e) => &e.task,
            Event::OomReport(e) => &e.task,
            Event::OomKillRecounted(e) => &e.task,
            Event::CgroupCreated(e) => &e.task,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes of a {what}")]
    Short { what: &'static str, len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("not an OOM kill report: {0:?}")]
    NotAnOomReport(String),
}

/// A decoded event and the CPU it was produced on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub cpu: u32,
    pub event: Event,
}

fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short { what, len: bytes.len(), need });
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data type from monitor-common, and
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes up to the first NUL (or all of them), lossily as UTF-8.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn bounded_string(bytes: &[u8], len: u32) -> String {
    let len = (len as usize).min(bytes.len());
    c_string(&bytes[..len])
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: raw::EventHeader = read(bytes, "event header")?;
    let kind = raw::EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let task = Task::from_raw(&header.task);
    let event = match kind {
        raw::EventKind::Exec => {
            let e: raw::ExecEvent = read(bytes, "exec event")?;
            Event::Exec(Exec {
                task,
                filename: bounded_string(&e.filename, e.filename_len),
                filename_truncated: e.flags & raw::FILENAME_TRUNCATED != 0,
            })
        }
        raw::EventKind::ExecFailed => {
            let e: raw::ExecFailedEvent = read(bytes, "failed exec event")?;
            Event::ExecFailed(ExecFailed {
                task,
                filename: bounded_string(&e.filename, e.filename_len),
                filename_truncated: e.flags & raw::FILENAME_TRUNCATED != 0,
                errno: e.errno,
                syscall: if e.syscall == raw::SYSCALL_EXECVEAT { "execveat" } else { "execve" },
            })
        }
        raw::EventKind::Exit => {
            let e: raw::ExitEvent = read(bytes, "exit event")?;
            let lifetime = Duration::from_nanos(e.lifetime_ns);
            Event::Exit(Exit { task, status: ExitStatus::from_wait_status(e.exit_code), lifetime })
        }
        raw::EventKind::OomKill => {
            let e: raw::OomKillEvent = read(bytes, "OOM kill event")?;
            Event::OomKill(Box::new(OomKill {
                task,
                trigger_pid: e.trigger_pid,
                trigger_tgid: e.trigger_tgid,
                trigger_comm: c_string(&e.trigger_comm),
                trigger_cgroup_id: e.trigger_cgroup_id,
                trigger_memcg_id: e.trigger_memcg_id,
                total_vm_pages: e.total_vm_pages,
                anon_rss_pages: e.anon_rss_pages,
                file_rss_pages: e.file_rss_pages,
                shmem_rss_pages: e.shmem_rss_pages,
                oom_score_adj: e.oom_score_adj,
                constraint: OomConstraint::Unknown,
                limit: (e.limit_cgroup_id != 0).then_some(OomLimit {
                    cgroup_id: e.limit_cgroup_id,
                    max_pages: e.limit_max_pages,
                    usage_pages: e.limit_usage_pages,
                }),
            }))
        }
        raw::EventKind::OomReport => {
            let e: raw::OomReportEvent = read(bytes, "OOM report event")?;
            let line = bounded_string(&e.line, e.line_len);
            let (constraint, victim_pid) = OomReport::parse_line(&line).ok_or(DecodeError::NotAnOomReport(line))?;
            Event::OomReport(OomReport { task, victim_pid, constraint })
        }
        raw::EventKind::CgroupMkdir => {
            let e: raw::CgroupMkdirEvent = read(bytes, "cgroup creation event")?;
            Event::CgroupCreated(CgroupCreated {
                task,
                hierarchy: e.hierarchy,
                id: e.id,
                path: bounded_string(&e.path, e.path_len),
                path_truncated: e.flags & raw::CGROUP_PATH_TRUNCATED != 0,
                existing: false,
            })
        }
        raw::EventKind::Connect => {
            let e: raw::ConnectEvent = read(bytes, "connect event")?;
            let address = match e.family {
                raw::AF_UNIX => {
                    let is_abstract = e.flags & raw::CONNECT_UNIX_ABSTRACT != 0;
                    let len = (e.path_len as usize).min(e.unix_path.len());
                    let path = if is_abstract {
                        String::from_utf8_lossy(&e.unix_path[..len]).into_owned()
                    } else {
                        c_string(&e.unix_path[..len])
                    };
                    SocketAddress::Unix { path, is_abstract }
                }
                raw::AF_INET => {
                    let ip = [e.addr[0], e.addr[1], e.addr[2], e.addr[3]];
                    SocketAddress::Inet { ip: IpAddr::from(ip), port: e.port }
                }
                raw::AF_INET6 => SocketAddress::Inet { ip: IpAddr::from(e.addr), port: e.port },
                family => SocketAddress::Other { family },
            };
            Event::Connect(Connect {
                task,
                address,
                errno: if e.result < 0 { e.result.saturating_neg() } else { 0 },
                asynchronous: e.flags & raw::CONNECT_ASYNC != 0,
            })
        }
        raw::EventKind::Signal => {
            let e: raw::SignalEvent = read(bytes, "signal event")?;
            Event::Signal(Box::new(Signal {
                task,
                signal: e.signal,
                code: e.code,
                from_kernel: e.flags & raw::SIGNAL_FROM_KERNEL != 0,
                group: e.flags & raw::SIGNAL_GROUP != 0,
                sender_pid: e.sender_pid,
                sender_tgid: e.sender_tgid,
                sender_comm: c_string(&e.sender_comm),
                sender_exe: c_string(&e.sender_exe),
                sender_cgroup_id: e.sender_cgroup_id,
                sender_memcg_id: e.sender_memcg_id,
            }))
        }
    };
    Ok(Record { cpu: header.cpu, event })
}

/// `SIGKILL`, `SIGTERM`... for a signal number.
pub fn signal_name(signal: u32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// `ENOENT`, `EACCES`... for an errno, or the number.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        0 => "OK",
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        8 => "ENOEXEC",
        11 => "EAGAIN",
        13 => "EACCES",
        20 => "ENOTDIR",
        21 => "EISDIR",
        40 => "ELOOP",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        115 => "EINPROGRESS",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: raw::EventKind) -> raw::EventHeader {
        raw::EventHeader {
            kind: kind as u32,
            cpu: 1,
            task: raw::TaskInfo {
                pid: 42,
                tgid: 41,
                ppid: 1,
                uid: 0,
                cgroup_id: 7,
                memcg_id: 8,
                start_ns: 4_000_000_000,
                comm: *b"crictl\0\0\0\0\0\0\0\0\0\0",
            },
        }
    }

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) monitor-common type.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_exit_with_signal_and_lifetime() {
        let raw = raw::ExitEvent { header: header(raw::EventKind::Exit), exit_code: 9, _pad: 0, lifetime_ns: 1_000_000_000 };
        let record = decode(&bytes_of(&raw)).unwrap();
        let Event::Exit(exit) = record.event else { panic!("not an exit: {record:?}") };
        assert_eq!(exit.status, ExitStatus::Signaled { signal: 9, core_dumped: false });
        assert_eq!(exit.status.shell_code(), 137);
        assert_eq!(exit.lifetime, Duration::from_secs(1));
        assert_eq!(exit.task.comm, "crictl");
        assert_eq!(exit.task.tgid, 41);
    }

    #[test]
    fn decodes_a_created_cgroup_and_bounds_its_path() {
        let mut raw = raw::CgroupMkdirEvent {
            header: header(raw::EventKind::CgroupMkdir),
            hierarchy: 4,
            flags: 0,
            id: 60062,
            path_len: 24,
            _pad: 0,
            path: [0; raw::CGROUP_PATH_LEN],
        };
        raw.path[..24].copy_from_slice(b"/kubepods/besteffort/pod");
        let Event::CgroupCreated(created) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert_eq!((created.hierarchy, created.id, created.path.as_str()), (4, 60062, "/kubepods/besteffort/pod"));
        assert!(!created.path_truncated);
        raw.path_len = 100_000;
        raw.flags = raw::CGROUP_PATH_TRUNCATED;
        let Event::CgroupCreated(created) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert!(created.path_truncated && created.path.len() <= raw::CGROUP_PATH_LEN);
    }

    #[test]
    fn decodes_exit_code() {
        let raw = raw::ExitEvent { header: header(raw::EventKind::Exit), exit_code: 3 << 8, _pad: 0, lifetime_ns: 0 };
        let Event::Exit(exit) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert_eq!(exit.status, ExitStatus::Exited { code: 3 });
    }

    #[test]
    fn decodes_failed_exec_and_bounds_the_length() {
        let mut raw = raw::ExecFailedEvent {
            header: header(raw::EventKind::ExecFailed),
            errno: 2,
            syscall: raw::SYSCALL_EXECVE,
            flags: 0,
            filename_len: 10_000, // corrupt length: must be bounded by the buffer
            filename: [b'a'; raw::FILENAME_LEN],
        };
        raw.filename[..14].copy_from_slice(b"/usr/bin/nope\0");
        let Event::ExecFailed(e) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert_eq!(e.filename, "/usr/bin/nope");
        assert_eq!(e.errno, 2);
        assert_eq!(errno_name(e.errno), "ENOENT");
    }

    #[test]
    fn decodes_unix_and_inet_connects() {
        let mut raw = raw::ConnectEvent {
            header: header(raw::EventKind::Connect),
            result: -2,
            flags: 0,
            family: raw::AF_UNIX,
            port: 0,
            path_len: 27,
            addr: [0; 16],
            unix_path: [0; raw::UNIX_PATH_LEN],
            _pad: 0,
        };
        raw.unix_path[..27].copy_from_slice(b"/var/run/cri-dockerd.sock\0\0");
        let Event::Connect(c) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert_eq!(c.address.to_string(), "unix:/var/run/cri-dockerd.sock");
        assert_eq!(c.errno, 2);

        raw.family = raw::AF_INET;
        raw.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.port = 6443;
        raw.result = -111;
        raw.flags = raw::CONNECT_ASYNC;
        let Event::Connect(c) = decode(&bytes_of(&raw)).unwrap().event else { panic!() };
        assert_eq!(c.address.to_string(), "127.0.0.1:6443");
        assert!(c.asynchronous);
        assert_eq!(errno_name(c.errno), "ECONNREFUSED");
    }

    #[test]
    fn connect_result_of_i32_min_does_not_overflow() {
        // Found by fuzzing (fuzz/fuzz_targets/events_decode.rs): `-i32::MIN` overflowed.
        // SAFETY: ConnectEvent is plain old data; all-zero is valid.
        let mut raw: raw::ConnectEvent = unsafe { std::mem::zeroed() };
        raw.header = header(raw::EventKind::Connect);
        raw.result = i32::MIN;
        let Event::Connect(c) = decode(&bytes_of(&raw)).unwrap().event else { panic!("not a connect") };
        assert_eq!(c.errno, i32::MAX);
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(matches!(decode(&[0u8; 10]), Err(DecodeError::Short { .. })));
        let mut h = header(raw::EventKind::Exec);
        h.kind = 99;
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(99)));
        // A header of the right kind but cut before its payload.
        let h = header(raw::EventKind::OomKill);
        assert!(matches!(decode(&bytes_of(&h)), Err(DecodeError::Short { what: "OOM kill event", .. })));
    }
}
