//! Writes the binary seeds of `events_decode` (one valid record of each kind, built from
//! monitor-common's `#[repr(C)]` structs, so they follow any layout change) and `kernel_btf`
//! (small BTF blobs holding every struct and member the loader looks up, in the shapes of old
//! and new kernels). `cargo xtask fuzz` runs it before fuzzing: `write_seeds <dir>` fills
//! `<dir>/events_decode/` and `<dir>/kernel_btf/`.

use std::path::Path;

use monitor_common as raw;

#[path = "../shared/record_bytes.rs"]
mod record_bytes;
use record_bytes::{bytes_of, fill, zeroed};

fn header(kind: raw::EventKind, comm: &[u8]) -> raw::EventHeader {
    let mut task: raw::TaskInfo = zeroed();
    task.pid = 4242;
    task.tgid = 4242;
    task.ppid = 1;
    task.cgroup_id = 9812;
    task.memcg_id = 311;
    task.start_ns = 4_000_000_000;
    fill(&mut task.comm, comm);
    raw::EventHeader { kind: kind as u32, cpu: 1, task }
}

fn events() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let mut exec: raw::ExecEvent = zeroed();
    exec.header = header(raw::EventKind::Exec, b"containerd-shim");
    exec.filename_len = fill(&mut exec.filename, b"/usr/bin/containerd-shim-runc-v2");
    out.push(("exec", bytes_of(&exec)));
    exec.filename = [b'a'; raw::FILENAME_LEN];
    exec.filename_len = raw::FILENAME_LEN as u32;
    exec.flags = raw::FILENAME_TRUNCATED;
    out.push(("exec-truncated", bytes_of(&exec)));

    let mut failed: raw::ExecFailedEvent = zeroed();
    failed.header = header(raw::EventKind::ExecFailed, b"kubelet");
    failed.errno = 2;
    failed.syscall = raw::SYSCALL_EXECVEAT;
    failed.filename_len = fill(&mut failed.filename, b"/usr/local/bin/runc");
    out.push(("exec-failed", bytes_of(&failed)));

    for (name, code) in [("exit-code", 1 << 8), ("exit-signal", 9 | 0x80)] {
        let exit = raw::ExitEvent { header: header(raw::EventKind::Exit, b"etcd"), exit_code: code, _pad: 0, lifetime_ns: 1_000_000_000 };
        out.push((name, bytes_of(&exit)));
    }

    let mut oom: raw::OomKillEvent = zeroed();
    oom.header = header(raw::EventKind::OomKill, b"kube-apiserver");
    oom.trigger_pid = 77;
    oom.trigger_tgid = 77;
    fill(&mut oom.trigger_comm, b"stress-ng");
    oom.anon_rss_pages = 262_144;
    oom.oom_score_adj = -997;
    out.push(("oom-kill", bytes_of(&oom)));

    let mut connect: raw::ConnectEvent = zeroed();
    connect.header = header(raw::EventKind::Connect, b"crictl");
    connect.family = raw::AF_UNIX;
    connect.result = -111;
    connect.path_len = fill(&mut connect.unix_path, b"/run/containerd/containerd.sock");
    out.push(("connect-unix", bytes_of(&connect)));
    connect.flags = raw::CONNECT_UNIX_ABSTRACT;
    connect.unix_path = [0; raw::UNIX_PATH_LEN];
    connect.path_len = fill(&mut connect.unix_path[1..], b"containerd-shim/k8s.io/abc.sock") + 1;
    out.push(("connect-abstract", bytes_of(&connect)));
    let mut inet: raw::ConnectEvent = zeroed();
    inet.header = header(raw::EventKind::Connect, b"kubelet");
    inet.family = raw::AF_INET;
    inet.port = 6443;
    inet.addr[..4].copy_from_slice(&[10, 0, 0, 10]);
    inet.result = -110;
    inet.flags = raw::CONNECT_ASYNC;
    out.push(("connect-inet", bytes_of(&inet)));
    inet.family = raw::AF_INET6;
    inet.addr = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    out.push(("connect-inet6", bytes_of(&inet)));

    let mut signal: raw::SignalEvent = zeroed();
    signal.header = header(raw::EventKind::Signal, b"kube-scheduler");
    signal.signal = 9;
    signal.code = 0x80;
    signal.flags = raw::SIGNAL_FROM_KERNEL | raw::SIGNAL_GROUP;
    fill(&mut signal.sender_comm, b"systemd");
    fill(&mut signal.sender_exe, b"systemd");
    out.push(("signal", bytes_of(&signal)));

    // Records the decoder must refuse: a bare header, an unknown kind.
    out.push(("short", bytes_of(&header(raw::EventKind::Exec, b"sh"))));
    out.push(("unknown-kind", bytes_of(&raw::EventHeader { kind: 99, ..header(raw::EventKind::Exit, b"sh") })));
    out
}

/// A little BTF writer: types are numbered from 1 in the order they are added.
#[derive(Default)]
struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const TYPEDEF: u32 = 8;
const ENUM64: u32 = 19;

impl Btf {
    fn name(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        if self.strings.is_empty() {
            self.strings.push(0);
        }
        let at = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        at
    }

    fn words(&mut self, words: &[u32]) {
        words.iter().for_each(|w| self.types.extend_from_slice(&w.to_le_bytes()));
    }

    fn add(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]) -> u32 {
        let name = self.name(name);
        self.words(&[name, kind << 24 | vlen, size_or_type]);
        self.words(extra);
        self.count += 1;
        self.count
    }

    /// A struct (or union) of `(name, type, byte offset)` members.
    fn record(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let mut extra = Vec::new();
        for (member, ty, offset) in members {
            extra.extend([self.name(member), *ty, offset * 8]);
        }
        self.add(name, kind, members.len() as u32, size, &extra)
    }

    fn blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let header = [0xeb9f | 1 << 16, 24, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32];
        header.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Every struct the loader reads; `new_kernel`: `rss_stat` is an array of `percpu_counter`
/// (Linux >= 6.2), members behind anonymous unions and a typedef, 64-bit enums.
fn btf(new_kernel: bool) -> Vec<u8> {
    let mut b = Btf::default();
    let int = b.add("int", INT, 0, 4, &[32]);
    let long = b.add("long", INT, 0, 8, &[64]);
    let ptr = b.add("", PTR, 0, 0, &[]);
    let char_ty = b.add("char", INT, 0, 1, &[8]);
    let comm = b.add("", ARRAY, 0, 0, &[char_ty, int, 16]);
    let anon = b.record(UNION, "", 8, &[("real_parent", ptr, 0), ("spare", long, 0)]);
    b.record(STRUCT, "task_struct", 1024, &[
        ("pid", int, 8),
        ("tgid", int, 12),
        ("", anon, 16),
        ("group_leader", ptr, 24),
        ("start_time", long, 32),
        ("comm", comm, 40),
        ("cred", ptr, 56),
        ("cgroups", ptr, 64),
        ("exit_code", int, 72),
        ("signal", ptr, 80),
        ("mm", ptr, 88),
    ]);
    b.record(STRUCT, "cred", 64, &[("uid", int, 4)]);
    b.record(STRUCT, "css_set", 128, &[("subsys", ptr, 0), ("dfl_cgrp", ptr, 104)]);
    b.record(STRUCT, "cgroup_subsys_state", 64, &[("cgroup", ptr, 0)]);
    b.record(STRUCT, "cgroup", 512, &[("kn", ptr, 256)]);
    b.record(STRUCT, "kernfs_node", 128, &[("id", long, 96)]);
    b.record(STRUCT, "signal_struct", 1024, &[("oom_score_adj", int, 700)]);
    b.record(STRUCT, "sock", 768, &[("sk_err", int, 360)]);
    let memory = b.name("memory_cgrp_id");
    let cpu = b.name("cpu_cgrp_id");
    if new_kernel {
        let counter = b.record(STRUCT, "percpu_counter", 40, &[("count", long, 8)]);
        let alias = b.add("percpu_counter_t", TYPEDEF, 0, counter, &[]);
        let rss = b.add("", ARRAY, 0, 0, &[alias, int, 4]);
        b.record(STRUCT, "mm_struct", 1024, &[("total_vm", long, 200), ("rss_stat", rss, 720)]);
        b.add("cgroup_subsys_id", ENUM64, 2, 8, &[cpu, 1, 0, memory, 4, 0]);
    } else {
        let count = b.add("", ARRAY, 0, 0, &[long, int, 4]);
        let stat = b.record(STRUCT, "mm_rss_stat", 32, &[("count", count, 0)]);
        b.record(STRUCT, "mm_struct", 1024, &[("total_vm", long, 200), ("rss_stat", stat, 720)]);
        b.add("cgroup_subsys_id", ENUM, 2, 4, &[cpu, 1, memory, 4]);
    }
    b.blob()
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: write_seeds <seed dir>");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let sub = dir.join(target);
        std::fs::create_dir_all(&sub).and_then(|_| std::fs::write(sub.join(name), bytes)).unwrap_or_else(|e| {
            eprintln!("write_seeds: {}: {e}", sub.display());
            std::process::exit(1);
        });
    };
    for (name, bytes) in events() {
        write("events_decode", &format!("{name}.bin"), &bytes);
    }
    write("kernel_btf", "linux-6.x.btf", &btf(true));
    write("kernel_btf", "linux-5.x.btf", &btf(false));
}
