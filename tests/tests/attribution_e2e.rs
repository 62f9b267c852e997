//! Attribution end to end: the real probes, a real containerd started by the test, pods and
//! containers created through CRI the way kubelet creates them (one of them a static pod), and
//! inside them an OOM kill of a process that is not PID 1, a container re-created three times
//! after crashing, and failed execs. Every event from those containers must name the right
//! namespace, pod and container, and the static flag and manifest must be right.
//!
//! Needs root, kernel BTF, `containerd`, `runc`, `ctr` and busybox-static.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use monitor::{
    attribution::{self, Attributed, AttributionConfig, AttributionMetrics, OwnerKind},
    events::{Event, Record},
    node::{
        cgroupfs::Mounts,
        cri::{self, CriApi},
    },
    probes::{ProbeOptions, Probes, metrics::ProbeMetrics},
};
use monitor_tests::containerd::{ContainerSpec, Containerd, PodSpec};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

/// Who a container is, as the test created it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    namespace: String,
    pod: String,
    container: String,
    static_pod: bool,
}

/// Probes -> reader -> attribution stage -> a shared list.
struct Pipeline {
    seen: Arc<Mutex<Vec<Attributed>>>,
    stop: watch::Sender<bool>,
    metrics: AttributionMetrics,
    runtime: tokio::runtime::Runtime,
    _probes: Probes,
}

impl Pipeline {
    fn start(config: AttributionConfig) -> Self {
        let mut probes = Probes::load(&ProbeOptions::default())
            .unwrap_or_else(|err| panic!("cannot load the eBPF programs (root and BTF needed): {err}"));
        let ring = probes.take_events().expect("events ring buffer");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel::<Record>(1 << 16);
        let probe_metrics = ProbeMetrics::new(&mut Registry::default());
        let metrics = AttributionMetrics::unregistered(1000);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let stage_metrics = metrics.clone();
        runtime.spawn(async move {
            let stage = monitor::progress::Watchdog::default().stage("ring buffer reader", std::time::Duration::from_secs(30));
            let _ = monitor::probes::reader::run(ring, tx, probe_metrics, stage, stop_rx).await;
        });
        runtime.spawn(async move {
            let (mut out, _handle) = attribution::spawn_with_metrics(config, rx, stage_metrics);
            while let Some(attributed) = out.recv().await {
                sink.lock().expect("lock").push(attributed);
            }
        });
        Self { seen, stop, metrics, runtime, _probes: probes }
    }

    fn events(&self) -> Vec<Attributed> {
        self.seen.lock().expect("lock").clone()
    }

    fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&[Attributed]) -> bool) -> Vec<Attributed> {
        let deadline = Instant::now() + limit;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; {} events seen", events.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
}

fn owner_of(a: &Attributed) -> Option<Expected> {
    let c = a.owner.container()?;
    let pod = c.pod.as_ref()?;
    Some(Expected { namespace: pod.namespace.clone(), pod: pod.name.clone(), container: c.name.clone()?, static_pod: pod.static_pod })
}

/// The v1 memory cgroup inode of a container (cgroupfs driver: `<parent>/<id>`).
fn memcg_inode(pod: &PodSpec, container_id: &str) -> Option<u64> {
    let mount = Mounts::discover().memory_v1?;
    let path = mount.join(pod.cgroup_parent().trim_start_matches('/')).join(container_id);
    fs::metadata(path).ok().map(|m| m.ino())
}

#[test]
fn every_container_event_names_its_pod_and_container() {
    let containerd = Containerd::start();
    // The CRI client the audit relies on, against the real runtime: containerd 1.6 serves both
    // API versions, lists the imported image and reports its effective CRI config.
    let timeout = Duration::from_secs(5);
    let probe = containerd.block_on(cri::probe_socket(&containerd.socket, timeout));
    assert!(probe.exists);
    let v1 = probe.v1.as_ref().unwrap_or_else(|e| panic!("v1 Version: {e}"));
    assert_eq!(v1.runtime_name, "containerd");
    assert!(probe.v1alpha2.is_ok(), "{:?}", probe.v1alpha2);
    let images = containerd.block_on(cri::list_images(&containerd.socket, CriApi::V1, timeout)).expect("ListImages");
    assert!(images.iter().any(|i| i.repo_tags.iter().any(|t| t == monitor_tests::containerd::IMAGE)), "{images:?}");
    let config = containerd.block_on(cri::runtime_status_config(&containerd.socket, CriApi::V1, timeout)).expect("Status");
    assert_eq!(config.get("sandboxImage").and_then(|v| v.as_str()), Some(monitor_tests::containerd::IMAGE), "{config}");
    let manifests = containerd.dir.join("manifests");
    fs::create_dir_all(&manifests).expect("mkdir");
    fs::write(
        manifests.join("static-web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  namespace: kube-system\nspec:\n  containers:\n  - name: web\n    image: nrm.local/busybox:1\n",
    )
    .expect("write manifest");
    // The node's files are read inside the host root: containerd's directory stands in for it
    // (its socket and the manifests as host paths; no kubelet log directories there).
    assert_eq!(containerd.socket, containerd.dir.join("containerd.sock"));
    let pipeline = Pipeline::start(AttributionConfig {
        cri_sockets: vec![PathBuf::from("/containerd.sock")],
        static_pod_dir: Some(PathBuf::from("/manifests")),
        node_name: Some("node1".into()),
        host_root: containerd.dir.clone(),
        ..AttributionConfig::default()
    });

    let oom_pod = PodSpec { namespace: "team-a".into(), name: "eater-7d9f".into(), uid: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".into(), static_source: false, qos: "burstable" };
    let crash_pod = PodSpec { namespace: "team-b".into(), name: "crashy-5c6b".into(), uid: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d".into(), static_source: false, qos: "besteffort" };
    let static_pod = PodSpec { namespace: "kube-system".into(), name: "static-web-node1".into(), uid: "9729a196c4723b60ab401eaff722982d".into(), static_source: true, qos: "" };
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let mut by_memcg: HashMap<u64, Expected> = HashMap::new();
    let mut record = |id: &str, pod: &PodSpec, container: &str, expected: &mut HashMap<String, Expected>| {
        let want = Expected { namespace: pod.namespace.clone(), pod: pod.name.clone(), container: container.into(), static_pod: pod.static_source };
        // Every container's events are checked by its memory cgroup: a cgroup not found here
        // (gone already) would leave its events unchecked, so it must be found.
        let ino = memcg_inode(pod, id).unwrap_or_else(|| panic!("no memory cgroup for {container} ({id}) of {}", pod.name));
        by_memcg.insert(ino, want.clone());
        expected.insert(id.to_string(), want);
    };

    // 1. A static pod whose container runs failed execs (3 times).
    let web_sandbox = containerd.run_pod(&static_pod);
    record(&web_sandbox, &static_pod, "POD", &mut expected);
    let web = containerd.run_container(&web_sandbox, &static_pod, &ContainerSpec::new("web", &["/bin/sleep", "1000"]));
    record(&web, &static_pod, "web", &mut expected);
    for _ in 0..3 {
        let code = containerd.exec_sync(&web, &["/bin/sh", "-c", "/bin/no-such-tool"]).expect("exec_sync");
        assert_eq!(code, 127, "sh reports a missing command");
    }

    // 2. An OOM kill of a process that is not the container's PID 1.
    let eater_sandbox = containerd.run_pod(&oom_pod);
    record(&eater_sandbox, &oom_pod, "POD", &mut expected);
    let mut eater = ContainerSpec::new("eater", &["/bin/sh", "-c", "sleep 1000 & head -c 200m /dev/zero | tail; sleep 1000"]);
    eater.memory_limit_bytes = 48 << 20;
    let eater_id = containerd.run_container(&eater_sandbox, &oom_pod, &eater);
    record(&eater_id, &oom_pod, "eater", &mut expected);

    // 3. A container that crashes and is re-created three times (4 runs), each run also
    //    failing to exec a missing binary.
    let crash_sandbox = containerd.run_pod(&crash_pod);
    record(&crash_sandbox, &crash_pod, "POD", &mut expected);
    let mut crash_ids = Vec::new();
    for attempt in 0..4 {
        // A second before it exits: its cgroup (removed with the container's task) is read
        // right after StartContainer returns.
        let mut spec = ContainerSpec::new("crasher", &["/bin/sh", "-c", "/bin/missing-binary; sleep 1; exit 3"]);
        spec.attempt = attempt;
        let id = containerd.create_container(&crash_sandbox, &crash_pod, &spec);
        // The cgroup exists from start until the process exits; note it before then.
        let mut client = containerd.cri();
        containerd
            .block_on(client.start_container(k8s_cri::v1::StartContainerRequest { container_id: id.clone() }))
            .unwrap_or_else(|e| panic!("start crasher: {e}\n{}", containerd.log()));
        record(&id, &crash_pod, "crasher", &mut expected);
        assert_eq!(containerd.wait_exit(&id, Duration::from_secs(10)), 3);
        crash_ids.push(id);
    }

    let events = pipeline.wait_until(Duration::from_secs(30), "the OOM kill, 4 crasher exits and 3 failed execs in the static pod", |events| {
        let oom = events.iter().any(|a| matches!(a.record.event, Event::OomKill(_)) && owner_of(a).is_some_and(|o| o.container == "eater"));
        let crashes = events
            .iter()
            .filter(|a| matches!(&a.record.event, Event::Exit(e) if e.status.shell_code() == 3))
            .filter(|a| owner_of(a).is_some_and(|o| o.container == "crasher"))
            .count();
        let failed_execs = events
            .iter()
            .filter(|a| matches!(&a.record.event, Event::ExecFailed(e) if e.filename == "/bin/no-such-tool"))
            .count();
        oom && crashes >= 4 && failed_execs >= 3
    });

    // Every event of a process in one of our containers names the right owner.
    let mut checked = 0;
    let mut wrong = Vec::new();
    for a in &events {
        let task = a.record.event.task();
        let by_id = a.owner.container().and_then(|c| expected.get(c.id.as_str()));
        let by_cgroup = by_memcg.get(&task.memcg_id);
        let Some(want) = by_cgroup.or(by_id) else { continue };
        checked += 1;
        if owner_of(a).as_ref() != Some(want) {
            wrong.push(format!("{} pid {} ({}): owner {}, want {want:?}", a.record.event.kind().as_str(), task.pid, task.comm, a.owner.display()));
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} container events misattributed:\n{}", wrong.len(), wrong.join("\n"));
    assert!(checked >= 10, "only {checked} container events seen");

    // The OOM victim is not PID 1 of the container (tail, or head), and is the eater's.
    let oom: Vec<&Attributed> = events.iter().filter(|a| matches!(a.record.event, Event::OomKill(_))).collect();
    let victim = oom.iter().find(|a| owner_of(a).is_some_and(|o| o.container == "eater")).expect("an OOM kill in the eater");
    assert_ne!(victim.record.event.task().comm, "sh", "PID 1 (sh) must survive");
    assert_eq!(owner_of(victim).map(|o| (o.namespace, o.pod, o.static_pod)), Some(("team-a".into(), "eater-7d9f".into(), false)));

    // The four runs of the crasher are four containers of one pod, each named `crasher`.
    let crash_owners: std::collections::HashSet<String> = events
        .iter()
        .filter(|a| matches!(&a.record.event, Event::Exit(e) if e.status.shell_code() == 3))
        .filter_map(|a| a.owner.container().filter(|c| c.name.as_deref() == Some("crasher")).map(|c| c.id.to_string()))
        .collect();
    assert_eq!(crash_owners.len(), 4, "one exit per run: {crash_owners:?}");
    assert!(crash_ids.iter().all(|id| crash_owners.contains(id)));
    let missing_binary = events
        .iter()
        .filter(|a| matches!(&a.record.event, Event::ExecFailed(e) if e.filename == "/bin/missing-binary"))
        .filter(|a| owner_of(a).is_some_and(|o| o.container == "crasher" && o.pod == "crashy-5c6b"))
        .count();
    assert!(missing_binary >= 4, "failed execs of the crasher: {missing_binary}");

    // The static pod's failed execs: static flag and manifest.
    let static_execs: Vec<&Attributed> = events
        .iter()
        .filter(|a| matches!(&a.record.event, Event::ExecFailed(e) if e.filename == "/bin/no-such-tool"))
        .collect();
    assert!(static_execs.len() >= 3);
    for a in static_execs {
        let pod = a.owner.pod().expect("pod");
        assert!(pod.static_pod, "{}", a.owner.display());
        // The manifest as the operator knows it: its host path.
        assert_eq!(pod.manifest.as_deref(), Some(std::path::Path::new("/manifests/static-web.yaml")));
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("kube-system", "static-web-node1"));
    }

    // Nothing of ours was unknown, and host processes are not given a pod.
    for a in &events {
        if let OwnerKind::Unknown { reason } = &a.owner.kind {
            assert!(!by_memcg.contains_key(&a.record.event.task().memcg_id), "a container event was unknown: {reason}");
        }
    }
    let misses: u64 = ["late", "not_resolved", "cgroup_gone"]
        .iter()
        .map(|reason| pipeline.metrics.misses.get_or_create(&attribution::metrics::MissLabels { reason }).get())
        .sum();
    eprintln!("attributed {} events, {checked} in test containers; misses {misses}", events.len());
    drop(pipeline);
}
