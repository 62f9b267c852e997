//! User-space pipeline benchmark: ring buffer record -> `events::decode` -> subject ->
//! `Detectors::observe`, on one core (the daemon's pipeline is one task).
//!
//! Records are the kernel's `#[repr(C)]` structs as the programs write them, with realistic
//! content: execs of runtime binaries, exits (clean, killed), failed execs, connects to the
//! runtime socket and the API server (failed), OOM kills and the kernel's SIGKILL.
//!
//! - `pipeline/decode_subject_detect`: the subject is a host process keyed by its command (what
//!   the daemon computes for an owner attribution could not name).
//! - `pipeline/decode_attribute_detect`: the daemon's chain: the real attribution stage
//!   (`attribution::spawn_with_metrics`, on a one-thread tokio runtime) on a fake node (a
//!   cgroup2 tree and kubelet's log files in a temporary directory: a pod's container, the
//!   kubelet and containerd units, the host), owners cached as in steady state, then the
//!   daemon's consumer (`daemon::pipeline::Pipeline`: subject, detectors, findings store,
//!   kill and finding metrics).
//!
//! `cargo +1.98.0 bench -p monitor --bench pipeline` (throughput in elements/s = events/s).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitor::{
    attribution::{self, Attributed, AttributionConfig, AttributionMetrics, Owner, OwnerKind},
    daemon::pipeline::{self, Pipeline},
    detectors::{Actor, Detectors, AuditContext, loops::LoopConfig, metrics::DetectorMetrics},
    events::{Event, decode},
    findings::{self, store::FindingStore},
    node::cgroupfs::Mounts,
};
use monitor_common as raw;
use prometheus_client::registry::Registry;

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: T is a repr(C) monitor-common type made of integers and byte arrays.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N - 1);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

thread_local! {
    /// cgroup ids given to the records made on this thread (round-robin by pid).
    static CGROUPS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn cgroup_of(pid: u32) -> u64 {
    CGROUPS.with(|c| {
        let c = c.borrow();
        if c.is_empty() { 4242 } else { c[pid as usize % c.len()] }
    })
}

/// The header of an event at time `t` (ns). Records carry no timestamp; the task's start, 1 ms
/// before `t`, keeps it (see `decode_subject_detect`).
fn header(kind: raw::EventKind, pid: u32, comm: &str, t: u64) -> raw::EventHeader {
    raw::EventHeader {
        kind: kind as u32,
        cpu: pid % 2,
        task: raw::TaskInfo {
            pid,
            tgid: pid,
            ppid: 1200,
            uid: 0,
            cgroup_id: cgroup_of(pid),
            memcg_id: 5151,
            start_ns: t.saturating_sub(1_000_000),
            comm: fixed(comm),
        },
    }
}

fn exec(pid: u32, comm: &str, filename: &str, t: u64) -> Vec<u8> {
    bytes_of(&raw::ExecEvent {
        header: header(raw::EventKind::Exec, pid, comm, t),
        old_pid: pid,
        flags: 0,
        filename_len: filename.len() as u32,
        _pad: 0,
        filename: fixed(filename),
    })
}

fn exec_failed(pid: u32, comm: &str, filename: &str, t: u64) -> Vec<u8> {
    bytes_of(&raw::ExecFailedEvent {
        header: header(raw::EventKind::ExecFailed, pid, comm, t),
        errno: 2,
        syscall: raw::SYSCALL_EXECVE,
        flags: 0,
        filename_len: filename.len() as u32,
        filename: fixed(filename),
    })
}

fn exit(pid: u32, comm: &str, wait_status: u32, t: u64) -> Vec<u8> {
    bytes_of(&raw::ExitEvent {
        header: header(raw::EventKind::Exit, pid, comm, t),
        exit_code: wait_status,
        _pad: 0,
        lifetime_ns: 1_000_000,
    })
}

fn connect_unix(pid: u32, comm: &str, path: &str, errno: i32, t: u64) -> Vec<u8> {
    bytes_of(&raw::ConnectEvent {
        header: header(raw::EventKind::Connect, pid, comm, t),
        result: -errno,
        flags: 0,
        family: raw::AF_UNIX,
        port: 0,
        path_len: path.len() as u32,
        addr: [0; 16],
        unix_path: fixed(path),
        _pad: 0,
    })
}

fn connect_inet(pid: u32, comm: &str, ip: [u8; 4], port: u16, errno: i32, t: u64) -> Vec<u8> {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip);
    bytes_of(&raw::ConnectEvent {
        header: header(raw::EventKind::Connect, pid, comm, t),
        result: -errno,
        flags: raw::CONNECT_ASYNC,
        family: raw::AF_INET,
        port,
        path_len: 0,
        addr,
        unix_path: [0; raw::UNIX_PATH_LEN],
        _pad: 0,
    })
}

fn oom_kill(pid: u32, comm: &str, t: u64) -> Vec<u8> {
    bytes_of(&raw::OomKillEvent {
        header: header(raw::EventKind::OomKill, pid, comm, t),
        trigger_pid: pid,
        trigger_tgid: pid,
        trigger_cgroup_id: 4242,
        trigger_memcg_id: 5151,
        trigger_comm: fixed(comm),
        total_vm_pages: 300_000,
        anon_rss_pages: 250_000,
        file_rss_pages: 2_000,
        shmem_rss_pages: 0,
        oom_score_adj: 999,
        _pad: 0,
        limit_cgroup_id: 5151,
        limit_max_pages: 262_144,
        limit_usage_pages: 262_100,
    })
}

fn signal(pid: u32, comm: &str, sig: u32, t: u64) -> Vec<u8> {
    bytes_of(&raw::SignalEvent {
        header: header(raw::EventKind::Signal, pid, comm, t),
        signal: sig,
        code: 0x80,
        result: 0,
        flags: raw::SIGNAL_FROM_KERNEL | raw::SIGNAL_GROUP,
        sender_pid: pid,
        sender_tgid: pid,
        sender_cgroup_id: 4242,
        sender_memcg_id: 5151,
        sender_comm: fixed(comm),
        sender_exe: fixed(comm),
    })
}

/// One record of each kind (the per-kind decode benches).
fn one_of_each() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("exec", exec(100, "containerd-shim", "/usr/bin/containerd-shim-runc-v2", 1_000)),
        ("exec_failed", exec_failed(101, "kubelet", "/usr/local/bin/nvidia-container-runtime", 2_000)),
        ("exit", exit(100, "containerd-shim", 0, 3_000)),
        ("connect_unix", connect_unix(102, "crictl", "/run/containerd/containerd.sock", 2, 4_000)),
        ("connect_inet", connect_inet(103, "kubelet", [10, 0, 0, 1], 6443, 111, 5_000)),
        ("oom_kill", oom_kill(104, "java", 6_000)),
        ("signal", signal(104, "java", 9, 7_000)),
    ]
}

/// A realistic stream of `processes` process lives: exec, a connect (a third of them fail),
/// exit; one in 20 fails to exec first; one in 100 is OOM-killed (OOM kill, SIGKILL, exit 9).
fn stream(processes: u32) -> Vec<Vec<u8>> {
    const COMMS: [(&str, &str); 6] = [
        ("runc", "/usr/bin/runc"),
        ("containerd-shim", "/usr/bin/containerd-shim-runc-v2"),
        ("crictl", "/usr/local/bin/crictl"),
        ("sh", "/bin/sh"),
        ("pause", "/pause"),
        ("kubectl", "/usr/local/bin/kubectl"),
    ];
    let mut out = Vec::new();
    let mut t = 1_000_000_000u64;
    for i in 0..processes {
        let pid = 20_000 + i;
        let (comm, file) = COMMS[(i as usize) % COMMS.len()];
        t += 50_000;
        if i % 20 == 0 {
            out.push(exec_failed(pid, "kubelet", "/opt/cni/bin/missing-plugin", t));
        }
        out.push(exec(pid, comm, file, t));
        t += 10_000;
        match i % 3 {
            0 => out.push(connect_unix(pid, comm, "/run/containerd/containerd.sock", 2, t)),
            1 => out.push(connect_inet(pid, comm, [127, 0, 0, 1], 6443, 111, t)),
            _ => out.push(connect_unix(pid, comm, "/var/run/crio/crio.sock", 0, t)),
        }
        t += 10_000;
        if i % 100 == 0 {
            out.push(oom_kill(pid, comm, t));
            out.push(signal(pid, comm, 9, t));
            out.push(exit(pid, comm, 9, t + 1_000));
        } else {
            out.push(exit(pid, comm, if i % 7 == 0 { 1 << 8 } else { 0 }, t));
        }
    }
    out
}

/// The actor of a host process outside any unit (what the daemon uses for an owner it
/// could not name), through `Actor::of` as the daemon does.
fn host_actor(event: &Event) -> Actor {
    thread_local! {
        static HOST: Owner = Owner::new(OwnerKind::Host, None);
    }
    HOST.with(|host| Actor::of(host, event))
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, record) in one_of_each() {
        assert!(decode(&record).is_ok(), "{name} decodes");
        group.bench_function(name, |b| b.iter(|| decode(black_box(&record))));
    }
    group.finish();
}

fn bench_pipeline(c: &mut Criterion) {
    let records = stream(10_000);
    let facts = AuditContext::default();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(decode(black_box(r)).ok());
            }
        })
    });
    group.bench_function("decode_subject_detect", |b| {
        // Fresh detectors per pass would measure their set-up; one long-lived set, as in the
        // daemon, whose state stays bounded (exits close process state; loop keys are capped).
        let mut detectors = Detectors::new(LoopConfig::default());
        let start = Instant::now();
        b.iter(|| {
            for r in &records {
                let Ok(record) = decode(black_box(r)) else {
                    continue;
                };
                let actor = host_actor(&record.event);
                let now = start + Duration::from_nanos(record.event.task().start_ns + 1_000_000);
                black_box(detectors.observe(&record.event, &actor, None, &facts, now));
            }
        })
    });
    group.finish();
}

/// Where the time of decode -> detect goes: each stage alone, on decoded events.
fn bench_stages(c: &mut Criterion) {
    let events: Vec<Event> = stream(10_000).iter().filter_map(|r| decode(r).ok()).map(|r| r.event).collect();
    let actors: Vec<Actor> = events.iter().map(host_actor).collect();
    let facts = AuditContext::default();
    let start = Instant::now();
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("subject", |b| {
        b.iter(|| {
            for e in &events {
                black_box(host_actor(black_box(e)));
            }
        })
    });
    group.bench_function("kills", |b| {
        let mut detectors = Detectors::new(LoopConfig::default());
        b.iter(|| {
            for e in &events {
                black_box(detectors.kills.observe(black_box(e), None));
            }
        })
    });
    group.bench_function("kills_loops", |b| {
        let mut detectors = Detectors::new(LoopConfig::default());
        b.iter(|| {
            for (i, (e, a)) in events.iter().zip(&actors).enumerate() {
                let now = start + Duration::from_micros(i as u64 * 20);
                let death = detectors.kills.observe(e, None);
                black_box(detectors.loops.observe(e, death.as_ref(), a, &facts, now));
            }
        })
    });
    group.bench_function("memory", |b| {
        let mut detectors = Detectors::new(LoopConfig::default());
        b.iter(|| {
            for (e, a) in events.iter().zip(&actors) {
                black_box(detectors.control_plane_oom.observe(e, a, None, &facts, start));
            }
        })
    });
    group.finish();
}

const POD_UID: &str = "9729a196c4723b60ab401eaff722982d";
const CONTAINER_ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";

/// A fake node: a cgroup2 tree (a pod's container, two host units, the root) and kubelet's
/// container log file, in a temporary directory. Returns the root, the cgroup mount and the
/// cgroup ids (inode numbers) of the four cgroups.
fn fake_node() -> (std::path::PathBuf, std::path::PathBuf, Vec<u64>) {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::env::temp_dir().join(format!("nrm-bench-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cgroups = root.join("cgroup");
    let dirs = [
        cgroups.join(format!("kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}")),
        cgroups.join("system.slice/kubelet.service"),
        cgroups.join("system.slice/containerd.service"),
        cgroups.clone(),
    ];
    for d in &dirs {
        std::fs::create_dir_all(d).expect("mkdir fake cgroup");
    }
    std::fs::create_dir_all(root.join("var/log/containers")).expect("mkdir");
    std::fs::write(root.join(format!("var/log/containers/coredns-5d78c9869d-abcde_kube-system_coredns-{CONTAINER_ID}.log")), "")
        .expect("write");
    let ids = dirs.iter().map(|d| std::fs::metadata(d).expect("stat").ino()).collect();
    (root, cgroups, ids)
}

fn bench_attributed(c: &mut Criterion) {
    let (root, cgroups, ids) = fake_node();
    CGROUPS.with(|c| *c.borrow_mut() = ids.clone());
    let records = stream(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let config = AttributionConfig {
        cri_sockets: vec![root.join("no-such.sock")],
        static_pod_dir: None,
        node_name: Some("node1".into()),
        host_root: root.clone(),
        mounts: Some(Mounts { v2: Some(cgroups), memory_v1: None }),
        ..AttributionConfig::default()
    };
    let (tx, mut out) = runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(65536);
        let (out, _stage) = attribution::spawn_with_metrics(config, rx, AttributionMetrics::unregistered(2000));
        (tx, out)
    });
    // Warm-up: every cgroup resolved once and cached, as in steady state.
    runtime.block_on(async {
        for r in records.iter().take(64) {
            tx.send(decode(r).expect("decode")).await.expect("send");
        }
        for _ in 0..64 {
            let a = out.recv().await.expect("attributed");
            assert!(!matches!(a.owner.kind, OwnerKind::Unknown { .. }), "fake node resolves: {:?}", a.owner);
        }
    });
    // The daemon's consumer (detectors, findings store, kill and finding metrics), as `run`
    // builds it.
    let mut registry = Registry::default();
    let findings = FindingStore::new();
    findings::metrics::register(&mut registry, &findings);
    // No audit has run: the detectors see no node configuration, as in the daemon's first seconds.
    let (_audits_tx, audits) = tokio::sync::watch::channel(None);
    let mut consumer = Pipeline::new(
        Detectors::new(LoopConfig::default()),
        audits,
        findings,
        DetectorMetrics::new(&mut registry),
        false,
    );
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("decode_attribute_detect", |b| {
        let mut batch = Vec::with_capacity(pipeline::BATCH);
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let began = Instant::now();
                for _ in 0..iters {
                    for chunk in records.chunks(1024) {
                        for r in chunk {
                            tx.try_send(decode(black_box(r)).expect("decode")).expect("room in the queue");
                        }
                        // As `Pipeline::run` takes them: in batches.
                        let mut left = chunk.len();
                        while left > 0 {
                            left -= out.recv_many(&mut batch, pipeline::BATCH).await;
                            consumer.handle_batch(&mut batch);
                        }
                    }
                }
                began.elapsed()
            })
        })
    });
    group.finish();
    // Where that time goes: the attribution stage alone (decoded records in, owners out), and
    // the subject built from the owner.
    let decoded: Vec<_> = records.iter().map(|r| decode(r).expect("decode")).collect();
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("attribute", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let began = Instant::now();
                for _ in 0..iters {
                    for chunk in decoded.chunks(1024) {
                        for r in chunk {
                            tx.try_send(r.clone()).expect("room in the queue");
                        }
                        for _ in 0..chunk.len() {
                            black_box(out.recv().await.expect("attributed"));
                        }
                    }
                }
                began.elapsed()
            })
        })
    });
    let attributed: Vec<Attributed> = runtime.block_on(async {
        let mut v = Vec::new();
        for r in decoded.iter().take(1024) {
            tx.try_send(r.clone()).expect("room in the queue");
        }
        for _ in 0..1024 {
            v.push(out.recv().await.expect("attributed"));
        }
        v
    });
    group.throughput(Throughput::Elements(attributed.len() as u64));
    group.bench_function("subject_of_owner", |b| {
        b.iter(|| {
            for a in &attributed {
                black_box(Actor::of(black_box(&a.owner), &a.record.event));
            }
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, bench_decode, bench_pipeline, bench_attributed, bench_stages);
criterion_main!(benches);
