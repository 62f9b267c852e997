//! The daemon's event path on hostile event sequences: kernel records the input makes
//! (monitor-common's structs: execs, failed execs, exits, OOM kills and the kernel's reports of
//! them, connects, signals; pids, cgroups, names, paths and times chosen by the input) go
//! through `events::decode` and the OOM join as the probes' reader does, then the real
//! attribution stage (`attribution::spawn_with_metrics`) on a fake node (a cgroup2 tree, a
//! static pod's log file and manifest, no CRI socket), then what `daemon::pipeline` does with
//! each (`Actor::of`, `Detectors::observe`, the kill metrics, `FindingStore::record`, and the
//! store's closing of quiet findings), each event at a time the input chooses.
//! Properties: no panic; attribution keeps every event and their order; the findings store
//! keeps at most `MAX_OPEN_PER_RULE` subjects of a rule open; a caller has findings of its own
//! about at most 8 paths or addresses within a window; every open finding's texts are cut to
//! their documented lengths with no control characters; every counter of the registry (the
//! stages' metrics) and every open finding's count only grow.
#![no_main]

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant, SystemTime},
};

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use monitor::{
    attribution::{self, Attributed, AttributionConfig, AttributionMetrics, OwnerKind},
    audit::rules as audit_rules,
    detectors::{
        Actor, AuditContext, Detectors,
        loops::{CONNECT_FAILURE_LOOP, EXEC_FAILURE_LOOP, LoopConfig},
        metrics::DetectorMetrics,
    },
    events::{decode, oom_join::OomJoin},
    findings::{
        self, Finding, MAX_EVIDENCE, MAX_SUBJECT_CHARS, MAX_TEXT_CHARS, MAX_TITLE_CHARS, Origin,
        store::{FOLDED_SUBJECT, FindingStore, MAX_OPEN_PER_RULE},
    },
    node::cgroupfs::Mounts,
};
use monitor_common as raw;
use prometheus_client::registry::Registry;

/// `detectors::loops::window::MAX_SUBJECTS_PER_CALLER`: the subjects one caller may have
/// failure findings of its own about within the window.
const MAX_SUBJECTS_PER_CALLER: usize = 8;
/// The daemon's default `--finding-quiet-seconds`.
const QUIET: Duration = Duration::from_secs(600);

const POD_UID: &str = "9729a196c4723b60ab401eaff722982d";
const CONTAINER_ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
const OTHER_UID: &str = "5f1c0a31_4b2d_4e55_9b8c_7d7c2a9e1f00";
const OTHER_ID: &str = "cri-containerd-0b0e4ea5d6f39c4a5c8f3bd1b8c6e2a7b2d8f5e4c3a2b1c0d9e8f7a6b5c4d3e2.scope";

/// The fake node: its root, its cgroup2 mount, and the cgroup ids (inodes) of its cgroups.
struct Node {
    root: PathBuf,
    cgroups: PathBuf,
    ids: Vec<u64>,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let root = scratch::fresh("pipeline");
        let cgroups = root.join("cgroup");
        let dirs = [
            cgroups.join(format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID}.slice/cri-containerd-{CONTAINER_ID}.scope")),
            cgroups.join(format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID}.slice")),
            cgroups.join(format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{OTHER_UID}.slice/{OTHER_ID}")),
            cgroups.join("kubepods.slice"),
            cgroups.join("system.slice/kubelet.service"),
            cgroups.join("system.slice/containerd.service"),
            cgroups.join("system.slice/crio.service"),
            cgroups.join("user.slice/user-0.slice/session-1.scope"),
            cgroups.clone(),
        ];
        for d in &dirs {
            std::fs::create_dir_all(d).expect("fake cgroup");
        }
        std::fs::create_dir_all(root.join("var/log/containers")).expect("mkdir");
        std::fs::write(root.join(format!("var/log/containers/etcd-node1_kube-system_etcd-{CONTAINER_ID}.log")), "").expect("write");
        std::fs::create_dir_all(root.join("etc/kubernetes/manifests")).expect("mkdir");
        std::fs::write(
            root.join("etc/kubernetes/manifests/etcd.yaml"),
            "kind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec: {containers: [{name: etcd, image: registry.k8s.io/etcd:3.5.9-0}]}\n",
        )
        .expect("write");
        let ids = dirs.iter().map(|d| std::fs::metadata(d).expect("stat").ino()).collect();
        Node { root, cgroups, ids }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"))
}

#[path = "../shared/scratch.rs"]
mod scratch;
#[path = "../shared/record_bytes.rs"]
mod record_bytes;
use record_bytes::{bytes_of, fill, zeroed};

const COMMS: [&str; 10] =
    ["kubelet", "containerd", "containerd-shim", "runc", "etcd", "kube-apiserver", "crictl", "sh", "nodeup", "systemd"];
const FILES: [&str; 8] = [
    "/usr/bin/kubelet",
    "/usr/bin/containerd",
    "/usr/local/bin/etcd",
    "/usr/bin/runc",
    "/opt/cni/bin/missing-plugin",
    "/usr/bin/containerd-shim-runc-v2",
    "/bin/sh",
    "/usr/local/bin/crictl",
];
const SOCKETS: [&str; 5] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
    "/var/run/dockershim.sock",
    "/tmp/not-a-runtime.sock",
];

/// A name from the list, or bytes of the input (control characters, no NUL, any length).
fn text(u: &mut Unstructured, names: &[&str], max: usize) -> Result<Vec<u8>> {
    if u.ratio(7, 8)? {
        return Ok(u.choose(names)?.as_bytes().to_vec());
    }
    let len = u.int_in_range(0..=max)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let b: u8 = u.arbitrary()?;
        out.push(if b == 0 { b'/' } else { b });
    }
    Ok(out)
}

/// A cgroup id: one of the node's, none, or now and then one that is gone (two of them: each
/// lookup of an id the index does not know walks the tree, at most every 50 ms, by design).
fn cgroup(u: &mut Unstructured, ids: &[u64]) -> Result<u64> {
    Ok(match u.int_in_range(0..=31)? {
        0 | 1 => 0,
        2 => *u.choose(&[u64::MAX - 7, 4242])?,
        _ => ids[u.choose_index(ids.len())?],
    })
}

/// A memory cgroup id (cgroup v1's): mostly none, else one of the node's.
fn memcg(u: &mut Unstructured, ids: &[u64]) -> Result<u64> {
    Ok(if u.ratio(1, 4)? { ids[u.choose_index(ids.len())?] } else { 0 })
}

/// One kernel record, tagged with its index in `cpu` (attribution passes records on as they are).
fn record(u: &mut Unstructured, index: u32, ids: &[u64]) -> Result<Vec<u8>> {
    let kind = u.int_in_range(0..=6)?;
    let pid = u.int_in_range(1..=12u32)?;
    let mut task: raw::TaskInfo = zeroed();
    task.pid = pid;
    task.tgid = if u.ratio(7, 8)? { pid } else { u.int_in_range(1..=12)? };
    task.ppid = u.int_in_range(0..=12)?;
    task.uid = u.int_in_range(0..=1)?;
    task.cgroup_id = cgroup(u, ids)?;
    task.memcg_id = memcg(u, ids)?;
    task.start_ns = u.int_in_range(0..=1_000_000_000_000)?;
    fill(&mut task.comm[..raw::COMM_LEN - 1], &text(u, &COMMS, raw::COMM_LEN)?);
    let kinds = [
        raw::EventKind::Exec,
        raw::EventKind::ExecFailed,
        raw::EventKind::Exit,
        raw::EventKind::OomKill,
        raw::EventKind::OomReport,
        raw::EventKind::Connect,
        raw::EventKind::Signal,
    ];
    let header = raw::EventHeader { kind: kinds[kind] as u32, cpu: index, task };
    Ok(match kind {
        0 => {
            let mut e: raw::ExecEvent = zeroed();
            e.header = header;
            e.old_pid = pid;
            e.filename_len = fill(&mut e.filename, &text(u, &FILES, raw::FILENAME_LEN)?);
            if e.filename_len as usize == raw::FILENAME_LEN {
                e.flags = raw::FILENAME_TRUNCATED;
            }
            bytes_of(&e)
        }
        1 => {
            let mut e: raw::ExecFailedEvent = zeroed();
            e.header = header;
            e.errno = *u.choose(&[libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::E2BIG, 0, -1])?;
            e.syscall = u.int_in_range(0..=1)?;
            e.filename_len = fill(&mut e.filename, &text(u, &FILES, raw::FILENAME_LEN)?);
            bytes_of(&e)
        }
        2 => bytes_of(&raw::ExitEvent {
            header,
            exit_code: *u.choose(&[0, 1 << 8, 2 << 8, 137 << 8, 9, 9 | 0x80, 6, 11 | 0x80, 15])?,
            _pad: 0,
            lifetime_ns: u.int_in_range(0..=100_000_000_000)?,
        }),
        3 => {
            let mut e: raw::OomKillEvent = zeroed();
            e.header = header;
            e.trigger_pid = u.int_in_range(1..=12)?;
            e.trigger_tgid = e.trigger_pid;
            e.trigger_cgroup_id = cgroup(u, ids)?;
            fill(&mut e.trigger_comm[..raw::COMM_LEN - 1], &text(u, &COMMS, raw::COMM_LEN)?);
            e.anon_rss_pages = u.int_in_range(0..=1 << 20)?;
            e.oom_score_adj = u.int_in_range(-1000..=1000)?;
            e.limit_cgroup_id = cgroup(u, ids)?;
            e.limit_max_pages = u.int_in_range(0..=1 << 20)?;
            e.limit_usage_pages = e.limit_max_pages.saturating_sub(u.int_in_range(0..=1024)?);
            bytes_of(&e)
        }
        4 => {
            let mut e: raw::OomReportEvent = zeroed();
            e.header = header;
            let prefix = u.choose(&["Memory cgroup out of memory", "Out of memory", "Out of memory (oom_kill_allocating_task)"])?;
            let comm = String::from_utf8_lossy(&header.task.comm).trim_end_matches('\0').to_string();
            let line = format!("{prefix}: Killed process {} ({comm}) total-vm:221368kB, anon-rss:48512kB, oom_score_adj:0", header.task.tgid);
            e.line_len = fill(&mut e.line[..raw::OOM_REPORT_LEN - 1], line.as_bytes());
            bytes_of(&e)
        }
        5 => {
            let mut e: raw::ConnectEvent = zeroed();
            e.header = header;
            e.result = -*u.choose(&[0, libc::ENOENT, libc::ECONNREFUSED, libc::EACCES, libc::ETIMEDOUT])?;
            if u.ratio(1, 2)? {
                e.family = raw::AF_UNIX;
                e.path_len = fill(&mut e.unix_path[..raw::UNIX_PATH_LEN - 1], &text(u, &SOCKETS, raw::UNIX_PATH_LEN)?);
            } else {
                e.family = raw::AF_INET;
                e.flags = raw::CONNECT_ASYNC;
                e.port = *u.choose(&[6443, 2379, 10250, 10257, 10259, 80])?;
                e.addr[..4].copy_from_slice(&[10, 0, 0, u.arbitrary()?]);
            }
            bytes_of(&e)
        }
        _ => {
            let mut e: raw::SignalEvent = zeroed();
            e.header = header;
            e.signal = *u.choose(&[9, 15, 6, 11, 2])?;
            e.flags = u.int_in_range(0..=3)?;
            e.sender_pid = u.int_in_range(0..=12)?;
            e.sender_tgid = e.sender_pid;
            e.sender_cgroup_id = cgroup(u, ids)?;
            e.sender_memcg_id = memcg(u, ids)?;
            fill(&mut e.sender_comm[..raw::COMM_LEN - 1], &text(u, &COMMS, raw::COMM_LEN)?);
            fill(&mut e.sender_exe[..raw::EXE_NAME_LEN - 1], &text(u, &COMMS, raw::EXE_NAME_LEN)?);
            bytes_of(&e)
        }
    })
}

/// What the detectors know of the node: nothing yet, or an audit that found what explains deaths.
fn facts(u: &mut Unstructured) -> Result<AuditContext> {
    if u.ratio(1, 2)? {
        return Ok(AuditContext::default());
    }
    Ok(AuditContext {
        runtime_endpoint: Some("unix:///run/containerd/containerd.sock".into()),
        memory_findings: vec![Finding::new(&audit_rules::MEMORY_RESERVATION_MISSING, "kubelet", "no systemReserved")],
        churn_findings: vec![Finding::new(&audit_rules::CGROUP_DRIVER_MISMATCH, "kubelet", "cgroupfs against systemd")],
        sockets_without_cri_v1: vec![("unix:///var/run/dockershim.sock".into(), "serves CRI v1alpha2 only".into())],
    })
}

/// Counter samples of the registry (`name{labels}` -> value).
fn counters(registry: &Registry) -> HashMap<String, f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode the registry");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next().is_some_and(|name| name.ends_with("_total")))
        .filter_map(|(series, value)| Some((series.to_string(), value.parse().ok()?)))
        .collect()
}

fn bounded(text: &str, max: usize, what: &str, id: &str) {
    assert!(text.chars().count() <= max, "{id}: {what} of {} characters (> {max})", text.chars().count());
    assert!(!text.chars().any(char::is_control), "{id}: control character in {what}: {text:?}");
}

fuzz_target!(|data: &[u8]| {
    let node = node();
    let mut u = Unstructured::new(data);
    let Ok(facts) = facts(&mut u) else { return };
    // The records and, for each, how long after the previous one it arrives.
    let mut records = Vec::new();
    let mut gaps = Vec::new();
    while records.len() < 48 && !u.is_empty() {
        let (Ok(bytes), Ok(gap)) = (record(&mut u, records.len() as u32, &node.ids), u.int_in_range(0..=700_000u64)) else { break };
        records.push(bytes);
        // Milliseconds: mostly close together (loops), now and then past a window.
        gaps.push(Duration::from_millis(if gap > 690_000 { gap * 100 } else { gap / 64 }));
    }
    let start = Instant::now();
    let mut at = Vec::with_capacity(records.len());
    let mut t = start;
    for gap in &gaps {
        t += *gap;
        at.push(t);
    }
    // The reader: decode, then the OOM join (a kill waits for its report).
    let mut join = OomJoin::default();
    let mut decoded = Vec::new();
    for (bytes, now) in records.iter().zip(&at) {
        let record = decode(bytes).expect("a record made from monitor-common's structs decodes");
        if let Some(r) = join.push(record, *now) {
            decoded.push(r);
        }
        while let Some(r) = join.release_ready() {
            decoded.push(r);
        }
    }
    while let Some(r) = join.release(t + Duration::from_secs(3600)) {
        decoded.push(r);
    }
    let sent: Vec<u32> = decoded.iter().map(|r| r.cpu).collect();

    let mut registry = Registry::default();
    let attribution_metrics = AttributionMetrics::new(&mut registry, 16);
    let config = AttributionConfig {
        hold: Duration::from_secs(5),
        cri_sockets: vec![node.root.join("no-such.sock")],
        cri_timeout: Duration::from_millis(50),
        static_pod_dir: Some(PathBuf::from("/etc/kubernetes/manifests")),
        node_name: Some("node1".into()),
        host_root: node.root.clone(),
        mounts: Some(Mounts { v2: Some(node.cgroups.clone()), memory_v1: Some(node.cgroups.clone()) }),
        queue: 16,
        ..AttributionConfig::default()
    };
    let attributed: Vec<Attributed> = runtime().block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (mut out, stage) = attribution::spawn_with_metrics(config, rx, attribution_metrics);
        let feed = tokio::spawn(async move {
            for r in decoded {
                tx.send(r).await.expect("the stage takes records");
            }
        });
        let mut got = Vec::new();
        while let Some(a) = out.recv().await {
            got.push(a);
        }
        feed.await.expect("feeding");
        stage.await.expect("the stage ends when its input does");
        got
    });
    assert_eq!(attributed.iter().map(|a| a.record.cpu).collect::<Vec<_>>(), sent, "attribution keeps every event, in order");

    // The daemon's consumer (daemon::pipeline), at the input's times.
    let findings = FindingStore::new();
    findings::metrics::register(&mut registry, &findings);
    let detector_metrics = DetectorMetrics::new(&mut registry);
    let config = LoopConfig::default();
    let mut detectors = Detectors::new(config.clone());
    let wall_start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut seen_counters = counters(&registry);
    let mut seen_counts: HashMap<String, u64> = HashMap::new();
    // Per caller: the subjects it had failure findings of its own about, and when last.
    let mut caller_subjects: HashMap<(String, &'static str), HashMap<String, Instant>> = HashMap::new();
    let mut last_generation = findings.generation();
    for (i, a) in attributed.iter().enumerate() {
        let now = at[a.record.cpu as usize];
        let wall = wall_start + now.duration_since(start);
        let actor = Actor::of(&a.owner, &a.record.event);
        let (death, found) = detectors.observe(&a.record.event, &actor, a.other.as_deref(), &facts, now);
        if let Some(death) = &death {
            let mut labels = a.owner.labels();
            if matches!(a.owner.kind, OwnerKind::Host | OwnerKind::Unknown { .. }) {
                labels.service = format!("process:{}", death.exit.task.comm);
            }
            detector_metrics.record(death, &labels, a.owner.pod().is_some_and(|p| p.static_pod));
        }
        for finding in found {
            if [EXEC_FAILURE_LOOP.id, CONNECT_FAILURE_LOOP.id].contains(&finding.rule) && !finding.subject.ends_with("|_folded") {
                let window = if finding.rule == EXEC_FAILURE_LOOP.id { config.exec_window } else { config.connect_window };
                let subjects = caller_subjects.entry((actor.key.to_string(), finding.rule)).or_default();
                subjects.insert(finding.subject.clone(), now);
                subjects.retain(|_, last| now.saturating_duration_since(*last) <= window);
                assert!(
                    subjects.len() <= MAX_SUBJECTS_PER_CALLER,
                    "{} has {} {} findings of its own within {window:?}: {:?}",
                    actor.key,
                    subjects.len(),
                    finding.rule,
                    subjects.keys().collect::<Vec<_>>()
                );
            }
            findings.record(Origin::Detectors, finding, wall);
        }
        if i % 8 == 7 || i + 1 == attributed.len() {
            findings.expire(Origin::Detectors, QUIET, wall);
            let generation = findings.generation();
            assert!(generation >= last_generation, "the store's generation went back");
            last_generation = generation;
            let open = findings.snapshot();
            let mut per_rule: HashMap<&str, usize> = HashMap::new();
            for f in &open {
                let id = f.id.as_str();
                if f.finding.subject != FOLDED_SUBJECT {
                    *per_rule.entry(f.finding.rule).or_default() += 1;
                }
                bounded(&f.finding.subject, MAX_SUBJECT_CHARS, "subject", id);
                bounded(&f.finding.title, MAX_TITLE_CHARS, "title", id);
                bounded(&f.finding.remediation, MAX_TEXT_CHARS, "remediation", id);
                assert!(f.finding.evidence.len() <= MAX_EVIDENCE, "{id}: {} pieces of evidence", f.finding.evidence.len());
                for e in &f.finding.evidence {
                    bounded(&e.source, MAX_SUBJECT_CHARS, "evidence source", id);
                    bounded(&e.detail, MAX_TEXT_CHARS, "evidence detail", id);
                }
                assert!(f.first_seen <= f.last_seen && f.count >= 1, "{id}: {f:?}");
                if let Some(before) = seen_counts.insert(f.id.clone(), f.count) {
                    assert!(f.count >= before, "{id}: its count went from {before} to {}", f.count);
                }
            }
            seen_counts.retain(|id, _| open.iter().any(|f| &f.id == id));
            for (rule, n) in per_rule {
                assert!(n <= MAX_OPEN_PER_RULE, "{n} open findings of {rule} (> {MAX_OPEN_PER_RULE})");
            }
            let now_counters = counters(&registry);
            for (series, value) in &now_counters {
                if let Some(before) = seen_counters.get(series) {
                    assert!(value >= before, "{series} went from {before} to {value}");
                }
            }
            seen_counters = now_counters;
            let _ = findings.encode_json();
        }
    }
});
