//! Attribution: names the owner of every kernel event — a container (runtime, id, name, pod
//! namespace/name/uid, static pod and its manifest), a host systemd unit, the host, or unknown.
//!
//! This module is the stage that does it: a pipeline stage between the probes' reader and the
//! detectors ([`spawn`]), its settings ([`AttributionConfig`]) and its hold queue. Events go
//! out in the order they came in. An event whose owner is cached goes straight through; one
//! whose cgroup was not seen before waits (at most [`AttributionConfig::hold`]) while the
//! [`resolver`] task finds the cgroup's path (`node::cgroupfs`), parses it
//! (`node::cgroup_path`) and asks the CRI (`node::cri`) or, when no runtime answers, kubelet's
//! files ([`kubelet_files`], `node::static_pods`). Past the hold the event leaves with what is
//! known (or `unknown`) and the miss is counted. Owners ([`Owner`], defined with their names
//! and labels in `owner.rs`) are cached per cgroup (the mapping outlives the short-lived
//! processes in it) and dropped when the cgroup is removed. The stage also drives the expiry
//! of the `events_by_owner_total` series ([`metrics`], [`owner_series`]).
//!
//! It does not judge events (that is `detectors`), does not itself read the node (the
//! resolver does, off the event path) and never blocks on I/O on the event path.

pub mod kubelet_files;
pub mod metrics;
mod owner;
pub mod owner_series;
pub mod resolver;

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::Duration};

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use prometheus_client::registry::Registry;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

use self::metrics::OwnerHandles;
pub use self::{
    metrics::AttributionMetrics,
    owner::{CgroupKey, ContainerOwner, Owner, OwnerKind, OwnerLabelValues, PodRef, UnknownReason},
};
use crate::{
    events::{Event, Kind, Record},
    node::{
        cgroup_path::{self, CgroupOwner},
        runtimes,
        snapshot::DEFAULT_STATIC_POD_PATH,
    },
};
pub use crate::node::snapshot::KubeletHints;

/// An event with its owner (and, for signals, the sender's; for OOM kills, the owner of the
/// memory cgroup whose limit the kill was at).
#[derive(Clone, Debug)]
pub struct Attributed {
    pub record: Record,
    pub owner: Arc<Owner>,
    /// `Signal`: the sender's owner; `OomKill`: the owner of the memory cgroup at its limit
    /// (the victim's container, its pod, kubelet's pods root, a unit), none when the node ran out.
    pub other: Option<Arc<Owner>>,
}

/// Settings of the stage.
#[derive(Clone, Debug)]
pub struct AttributionConfig {
    /// Longest an event waits for its owner before it leaves as it is.
    pub hold: Duration,
    /// CRI sockets to try, in order (host paths, resolved inside `host_root`).
    pub cri_sockets: Vec<PathBuf>,
    pub cri_timeout: Duration,
    /// kubelet's `staticPodPath` (a host path, resolved inside `host_root`).
    pub static_pod_dir: Option<PathBuf>,
    /// kubelet's node name (static pods are named `<name>-<nodeName>`); the hostname if unset.
    pub node_name: Option<String>,
    /// Root of the node's filesystem: every file of the node (CRI sockets, static pods,
    /// kubelet's `/var/log/pods` and `/var/log/containers`) is read inside it.
    pub host_root: PathBuf,
    /// Where the cgroup hierarchies are; discovered from mountinfo if unset.
    pub mounts: Option<crate::node::cgroupfs::Mounts>,
    /// Events queued towards the detectors.
    pub queue: usize,
    /// Most distinct per-owner series (`events_by_owner_total`), see [`metrics`].
    pub max_owner_series: usize,
    /// Series of owners not seen for this long are removed (default
    /// [`owner_series::DEFAULT_SERIES_TTL`]).
    pub owner_series_ttl: Duration,
    /// Cached owners are checked for removed cgroups this often.
    pub sweep_interval: Duration,
    /// What the node reader learns of kubelet (its static pod directory and node name, its
    /// runtime endpoint: host paths); replaces the defaults above when it says.
    pub kubelet: Option<watch::Receiver<KubeletHints>>,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_millis(500),
            cri_sockets: runtimes::cri_sockets().map(PathBuf::from).collect(),
            cri_timeout: Duration::from_secs(2),
            static_pod_dir: Some(PathBuf::from(DEFAULT_STATIC_POD_PATH)),
            node_name: None,
            host_root: PathBuf::from("/"),
            mounts: None,
            queue: 65536,
            max_owner_series: metrics::DEFAULT_MAX_OWNER_SERIES,
            owner_series_ttl: owner_series::DEFAULT_SERIES_TTL,
            sweep_interval: Duration::from_secs(10),
            kubelet: None,
        }
    }
}

/// Starts the stage: reads `records`, sends [`Attributed`] events on the returned receiver.
/// The stage ends when `records` closes (after flushing what it holds).
pub fn spawn(
    config: AttributionConfig,
    records: mpsc::Receiver<Record>,
    registry: &mut Registry,
) -> (mpsc::Receiver<Attributed>, JoinHandle<()>) {
    let metrics = AttributionMetrics::new(registry, config.max_owner_series);
    spawn_with_metrics(config, records, metrics)
}

/// [`spawn`] with metrics built by the caller (tests read them back).
pub fn spawn_with_metrics(
    config: AttributionConfig,
    records: mpsc::Receiver<Record>,
    metrics: AttributionMetrics,
) -> (mpsc::Receiver<Attributed>, JoinHandle<()>) {
    let (out_tx, out_rx) = mpsc::channel(config.queue.max(1));
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (answers_tx, answers_rx) = mpsc::unbounded_channel();
    let resolver = resolver::Resolver::new(&config, metrics.clone());
    let resolver_task = tokio::spawn(resolver.run(requests_rx, answers_tx));
    let stage = Stage {
        hold: config.hold,
        ttl: config.owner_series_ttl,
        owners: HashMap::new(),
        asked: HashSet::new(),
        held: VecDeque::new(),
        metrics,
        requests: requests_tx,
        out: out_tx,
    };
    let handle = tokio::spawn(async move {
        stage.run(records, answers_rx).await;
        resolver_task.abort();
    });
    (out_rx, handle)
}

/// What the stage asks of the resolver, in the events' order.
#[derive(Debug)]
pub(crate) enum Request {
    /// The owner of a cgroup.
    Owner(CgroupKey),
    /// A cgroup created in `hierarchy` (0: the unified one, else the memory controller's v1
    /// one) at `path`: asked about later, it may be gone from the filesystem.
    Created { hierarchy: u32, id: u64, path: String },
}

/// What the resolver says about a cgroup.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The owner; `settled` when the resolver can learn no more about it (a partial owner
    /// that is not settled may be refined by a later answer).
    Owner {
        key: CgroupKey,
        owner: Arc<Owner>,
        settled: bool,
    },
    /// The cgroup is gone: forget it.
    Removed(CgroupKey),
}

/// Most records taken from the queue at once.
const BATCH: usize = 256;

struct Held {
    record: Record,
    keys: Keys,
    deadline: Instant,
}

/// A cached owner.
struct Cached {
    owner: Arc<Owner>,
    /// The resolver can learn no more about it.
    settled: bool,
    /// Its `events_by_owner_total` counters.
    series: OwnerHandles,
}

struct Stage {
    hold: Duration,
    ttl: Duration,
    owners: HashMap<CgroupKey, Cached>,
    /// Keys asked of the resolver and not yet answered completely.
    asked: HashSet<CgroupKey>,
    held: VecDeque<Held>,
    metrics: AttributionMetrics,
    requests: mpsc::UnboundedSender<Request>,
    out: mpsc::Sender<Attributed>,
}

/// The cgroups an event names: its task's and, for signals the sender's, for OOM kills the one
/// at its limit.
/// (No allocation: this runs for every event.)
#[derive(Clone, Copy)]
struct Keys {
    task: CgroupKey,
    other: Option<CgroupKey>,
}

impl Keys {
    fn of(event: &Event) -> Self {
        let other = match event {
            Event::Signal(s) if s.sender_cgroup_id != 0 || s.sender_memcg_id != 0 => {
                Some(CgroupKey {
                    cgroup_id: s.sender_cgroup_id,
                    memcg_id: s.sender_memcg_id,
                })
            }
            // The memory cgroup whose limit the kill was at, in the memory controller's
            // hierarchy (v1 when the victim has a v1 memory cgroup).
            Event::OomKill(o) => o.limit.map(|limit| {
                if o.task.memcg_id != 0 {
                    CgroupKey { cgroup_id: 0, memcg_id: limit.cgroup_id }
                } else {
                    CgroupKey { cgroup_id: limit.cgroup_id, memcg_id: 0 }
                }
            }),
            _ => None,
        };
        let task = match event {
            // A cgroup found at the start is its own event: keyed by its id in its hierarchy.
            Event::CgroupCreated(c) if c.existing => match c.hierarchy {
                0 => CgroupKey { cgroup_id: c.id, memcg_id: 0 },
                _ => CgroupKey { cgroup_id: 0, memcg_id: c.id },
            },
            _ => CgroupKey::of(event.task()),
        };
        Self { task, other }
    }

    fn iter(self) -> impl Iterator<Item = CgroupKey> {
        std::iter::once(self.task).chain(self.other)
    }
}

impl Stage {
    async fn run(
        mut self,
        mut records: mpsc::Receiver<Record>,
        mut answers: mpsc::UnboundedReceiver<Answer>,
    ) {
        let mut expiry = tokio::time::interval(owner_series::sweep_interval(self.ttl));
        let mut records_open = true;
        // Records are taken as many as wait (up to BATCH) per wake-up: under load the stage
        // then runs one tight loop instead of a select per event.
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Checked before waiting: the flush below may have released the last held event,
            // and nothing else would wake the stage before the next series sweep.
            if !records_open && self.held.is_empty() {
                break;
            }
            let deadline = self.held.front().map(|h| h.deadline);
            tokio::select! {
                taken = records.recv_many(&mut batch, BATCH), if records_open => {
                    if taken == 0 {
                        records_open = false;
                    }
                    for record in batch.drain(..) {
                        if let Some(attributed) = self.accept(record) {
                            self.send(attributed).await;
                        }
                    }
                    if !self.held.is_empty() {
                        self.release().await;
                    }
                }
                Some(answer) = answers.recv() => {
                    self.learn(answer);
                    self.release().await;
                }
                _ = sleep_until(deadline) => self.release().await,
                _ = expiry.tick() => self.metrics.expire_owner_series(self.ttl),
            }
            if !records_open {
                // Flush: nothing more will come; wait only for what is held.
                if let Some(deadline) = self.held.front().map(|h| h.deadline) {
                    tokio::select! {
                        Some(answer) = answers.recv() => { self.learn(answer); self.release().await; }
                        _ = tokio::time::sleep_until(deadline) => self.release().await,
                    }
                }
            }
        }
    }

    /// The resolver is done with `key`: its owner is as good as it gets.
    fn complete(&self, key: &CgroupKey) -> bool {
        self.owners.get(key).is_some_and(|cached| cached.settled)
    }

    /// The event, attributed, when it can leave now: its owners are settled and nothing is
    /// held before it. Else it is held (and its cgroups asked of the resolver).
    fn accept(&mut self, record: Record) -> Option<Attributed> {
        if let Event::CgroupCreated(created) = &record.event {
            // Taught to the resolver before the events of processes in it. Only a container's:
            // the cgroups that come and go within milliseconds (pods' and units' are walked),
            // and no flood of other names can grow the resolver's index.
            if !created.path_truncated && matches!(cgroup_path::parse(&created.path), CgroupOwner::Container(_)) {
                let _ = self.requests.send(Request::Created { hierarchy: created.hierarchy, id: created.id, path: created.path.clone() });
            }
            // A cgroup the kernel reports created goes no further (its processes' events
            // follow). One found at the start goes on as the cgroup's own event, for the
            // detectors to follow it from now.
            if !created.existing {
                return None;
            }
        }
        let keys = Keys::of(&record.event);
        let mut ready = true;
        for key in keys.iter() {
            if !self.complete(&key) {
                ready = false;
                if self.asked.insert(key) {
                    let _ = self.requests.send(Request::Owner(key));
                }
            }
        }
        if ready && self.held.is_empty() {
            Some(self.attribute(record, keys, false))
        } else {
            self.held.push_back(Held {
                record,
                keys,
                deadline: Instant::now() + self.hold,
            });
            None
        }
    }

    fn learn(&mut self, answer: Answer) {
        match answer {
            Answer::Owner {
                key,
                owner,
                settled,
            } => {
                if settled {
                    self.asked.remove(&key);
                }
                // Never replace a fully named owner with a lesser answer (CRI lagging).
                let better_cached = self
                    .owners
                    .get(&key)
                    .is_some_and(|c| c.owner.is_complete() && !owner.is_complete());
                if !better_cached {
                    self.owners.insert(
                        key,
                        Cached {
                            owner,
                            settled,
                            series: OwnerHandles::default(),
                        },
                    );
                }
            }
            Answer::Removed(key) => {
                self.owners.remove(&key);
                self.asked.remove(&key);
            }
        }
        self.metrics.cached_owners.set(self.owners.len() as i64);
    }

    /// Emits held events in order: each once its owners are settled, or once its deadline
    /// passed, with what is known.
    async fn release(&mut self) {
        let now = Instant::now();
        while let Some(head) = self.held.front() {
            let ready = head.keys.iter().all(|k| self.complete(&k));
            if !(ready || head.deadline <= now) {
                break;
            }
            let Some(held) = self.held.pop_front() else {
                break;
            };
            let attributed = self.attribute(held.record, held.keys, !ready);
            self.send(attributed).await;
        }
    }

    /// Names the owners of an event, counting it per owner; `late` when it waited past its
    /// hold.
    fn attribute(&mut self, record: Record, keys: Keys, late: bool) -> Attributed {
        let other = keys.other.map(|key| match self.owners.get(&key) {
            Some(cached) => cached.owner.clone(),
            None => Arc::new(Owner::unknown(UnknownReason::NotResolved)),
        });
        let kind = record.event.kind();
        let owner = match self.owners.get_mut(&keys.task) {
            Some(cached) => {
                self.metrics
                    .count_event_cached(kind, &cached.owner, &mut cached.series);
                cached.owner.clone()
            }
            None => {
                let owner = Arc::new(Owner::unknown(UnknownReason::NotResolved));
                self.metrics.count_event(kind, &owner);
                owner
            }
        };
        // Misses are of the kernel's events: a cgroup found at the start (a leftover the runtime
        // no longer lists, say) is none, as the miss ratio leaves `cgroup_mkdir` out.
        if (late || matches!(owner.kind, OwnerKind::Unknown { .. })) && kind != Kind::CgroupMkdir {
            self.metrics.count_miss(&owner, late);
        }
        Attributed {
            record,
            owner,
            other,
        }
    }

    /// Hands an event on, waiting only when the queue is full.
    async fn send(&self, attributed: Attributed) {
        if let Err(mpsc::error::TrySendError::Full(attributed)) = self.out.try_send(attributed) {
            let _ = self.out.send(attributed).await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::{
        events::{Exec, Task},
        node::cgroupfs::Mounts,
    };

    const ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
    const UID: &str = "9729a196c4723b60ab401eaff722982d";

    fn exec(cgroup_id: u64, pid: u32) -> Record {
        let task = Task {
            pid,
            tgid: pid,
            ppid: 1,
            uid: 0,
            cgroup_id,
            memcg_id: 0,
            start_ns: 0,
            comm: "sh".into(),
        };
        Record {
            cpu: 0,
            event: Event::Exec(Exec {
                task,
                filename: "/bin/sh".into(),
                filename_truncated: false,
            }),
        }
    }

    /// A stage with no resolver behind it, running: its input, what it asks the resolver and
    /// what it passes on. Events leave at their `hold` deadline.
    fn lone_stage(hold: Duration) -> (mpsc::Sender<Record>, mpsc::UnboundedReceiver<Request>, mpsc::Receiver<Attributed>, tokio::task::JoinHandle<()>) {
        let (records_tx, records_rx) = mpsc::channel(8);
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let (out_tx, out) = mpsc::channel(8);
        let stage = Stage {
            hold,
            ttl: owner_series::DEFAULT_SERIES_TTL,
            owners: HashMap::new(),
            asked: HashSet::new(),
            held: VecDeque::new(),
            metrics: AttributionMetrics::unregistered(100),
            requests: requests_tx,
            out: out_tx,
        };
        let handle = tokio::spawn(async move {
            let _answers = answers_tx; // no answer ever comes, and the channel stays open
            stage.run(records_rx, answers_rx).await
        });
        (records_tx, requests_rx, out, handle)
    }

    /// Created cgroups go to the resolver, in order and before any key, when they are a
    /// container's; nothing of them goes on to the detectors.
    #[tokio::test]
    async fn only_containers_cgroups_created_are_taught_to_the_resolver() {
        let (records_tx, mut requests_rx, mut out, handle) = lone_stage(Duration::from_millis(50));
        let created = |path: &str, truncated: bool| Record {
            cpu: 0,
            event: Event::CgroupCreated(crate::events::CgroupCreated {
                task: exec(1, 1).event.task().clone(),
                hierarchy: 0,
                id: 77,
                path: path.into(),
                path_truncated: truncated,
                existing: false,
            }),
        };
        let container = format!("/kubepods/burstable/pod{UID}/{ID}");
        for record in [created("/user.slice/user-1000.slice/session-3.scope", false), created(&container, true), created(&container, false), exec(42, 7)] {
            records_tx.send(record).await.expect("send");
        }
        drop(records_tx);
        let got = out.recv().await.expect("the exec");
        assert!(matches!(got.record.event, Event::Exec(_)));
        assert!(out.recv().await.is_none(), "no created cgroup goes on");
        handle.await.expect("stage");
        let requests: Vec<Request> = std::iter::from_fn(|| requests_rx.try_recv().ok()).collect();
        assert!(matches!(&requests[0], Request::Created { id: 77, path, .. } if *path == container), "{requests:?}");
        assert!(matches!(&requests[1], Request::Owner(_)), "{requests:?}");
        assert_eq!(requests.len(), 2, "{requests:?}");
    }

    /// A cgroup found at the start goes on to the detectors as its own event, keyed by its id
    /// in its hierarchy (a container's path taught first); one the kernel reports does not.
    #[tokio::test]
    async fn cgroups_found_at_the_start_go_on_as_their_own_events() {
        let (records_tx, mut requests_rx, mut out, handle) = lone_stage(Duration::from_millis(20));
        let found = |hierarchy: u32, id: u64, path: &str| Record {
            cpu: 0,
            event: Event::CgroupCreated(crate::events::CgroupCreated {
                task: Task::default(),
                hierarchy,
                id,
                path: path.into(),
                path_truncated: false,
                existing: true,
            }),
        };
        let container = format!("/kubepods/burstable/pod{UID}/{ID}");
        for record in [found(4, 61, &container), found(0, 62, "/system.slice/kubelet.service")] {
            records_tx.send(record).await.expect("send");
        }
        drop(records_tx);
        for id in [61, 62] {
            let got = out.recv().await.expect("the found cgroup");
            assert!(matches!(&got.record.event, Event::CgroupCreated(c) if c.id == id && c.existing), "{:?}", got.record.event);
        }
        assert!(out.recv().await.is_none());
        handle.await.expect("stage");
        let requests: Vec<Request> = std::iter::from_fn(|| requests_rx.try_recv().ok()).collect();
        assert!(matches!(&requests[0], Request::Created { hierarchy: 4, id: 61, path } if *path == container), "{requests:?}");
        assert!(matches!(&requests[1], Request::Owner(CgroupKey { cgroup_id: 0, memcg_id: 61 })), "{requests:?}");
        assert!(matches!(&requests[2], Request::Owner(CgroupKey { cgroup_id: 62, memcg_id: 0 })), "{requests:?}");
        assert_eq!(requests.len(), 3, "{requests:?}");
    }

    /// Found by the `pipeline` fuzz target: when the input closes while an event waits for its
    /// owner, the stage ends as soon as that event leaves, not at the next series sweep (30 s).
    #[tokio::test]
    async fn ends_once_the_last_held_event_leaves() {
        // No resolver: the event leaves at its deadline.
        let (records_tx, _requests_rx, mut out, handle) = lone_stage(Duration::from_millis(100));
        // The stage takes its sweep's first (immediate) tick; the next is 30 s away.
        tokio::time::sleep(Duration::from_millis(20)).await;
        records_tx.send(exec(42, 7)).await.expect("send");
        drop(records_tx);
        let got = out.recv().await.expect("the held event");
        assert_eq!(got.record.event.task().pid, 7);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the stage ends with its input")
            .expect("stage");
    }

    /// kubelet's staticPodPath and node name, as the audit reads them, reach the resolver: a
    /// container logged as `kube-scheduler-node7` is the static pod of a manifest in a
    /// directory that is not the default, on a node whose name is not the hostname.
    #[tokio::test]
    async fn static_pods_come_from_kubelets_configured_directory_and_node_name() {
        let root =
            std::env::temp_dir().join(format!("nrm-attribution-hints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cgroups = root.join("cgroup");
        let container_dir = cgroups.join(format!("kubepods/burstable/pod{UID}/{ID}"));
        std::fs::create_dir_all(&container_dir).expect("mkdir");
        std::fs::create_dir_all(root.join("var/log/containers")).expect("mkdir");
        std::fs::write(
            root.join(format!(
                "var/log/containers/kube-scheduler-node7_kube-system_kube-scheduler-{ID}.log"
            )),
            "",
        )
        .expect("write");
        let manifests = root.join("etc/k0s/manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        std::fs::write(
            manifests.join("scheduler.yaml"),
            "kind: Pod\nmetadata: {name: kube-scheduler, namespace: kube-system}\nspec: {containers: [{name: kube-scheduler, image: s}]}\n",
        )
        .expect("write");
        let (hints_tx, hints_rx) = watch::channel(KubeletHints::default());
        let config = AttributionConfig {
            cri_sockets: vec![PathBuf::from("/no-such.sock")],
            static_pod_dir: Some(PathBuf::from("/etc/kubernetes/manifests")),
            // Not given: kubelet's hints name the node (a given name would win over them).
            node_name: None,
            host_root: root.clone(),
            mounts: Some(Mounts {
                v2: Some(cgroups.clone()),
                memory_v1: None,
            }),
            kubelet: Some(hints_rx),
            ..AttributionConfig::default()
        };
        hints_tx.send_replace(KubeletHints {
            static_pod_dir: Some(PathBuf::from("/etc/k0s/manifests")),
            node_name: Some("node7".into()),
            runtime_socket: None,
        });
        let (tx, rx) = mpsc::channel(4);
        let (mut out, handle) =
            spawn_with_metrics(config, rx, AttributionMetrics::unregistered(100));
        tx.send(exec(
            std::fs::metadata(&container_dir).expect("stat").ino(),
            5,
        ))
        .await
        .expect("send");
        drop(tx);
        let got = out.recv().await.expect("attributed");
        handle.await.expect("stage");
        let pod = got.owner.pod().expect("a pod");
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("kube-system", "kube-scheduler-node7")
        );
        assert!(pod.static_pod, "{:?}", got.owner);
        assert_eq!(
            pod.manifest.as_deref(),
            Some(std::path::Path::new("/etc/k0s/manifests/scheduler.yaml")),
            "the host path of the manifest"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A fake node: a cgroup2 tree and kubelet's files, no CRI socket. The stage names a
    /// static pod's container from the log layout and the manifest, a host unit from its path,
    /// keeps the order of events, and labels an id that matches no cgroup unknown at once,
    /// counting the miss.
    #[tokio::test]
    async fn names_owners_without_a_runtime_and_counts_misses() {
        let root = std::env::temp_dir().join(format!("nrm-attribution-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cgroups = root.join("cgroup");
        let container_dir = cgroups.join(format!("kubepods/burstable/pod{UID}/{ID}"));
        let kubelet_dir = cgroups.join("system.slice/kubelet.service");
        std::fs::create_dir_all(&container_dir).expect("mkdir");
        std::fs::create_dir_all(&kubelet_dir).expect("mkdir");
        std::fs::create_dir_all(root.join("var/log/containers")).expect("mkdir");
        std::fs::write(
            root.join(format!(
                "var/log/containers/etcd-node1_kube-system_etcd-{ID}.log"
            )),
            "",
        )
        .expect("write");
        let manifests = root.join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        std::fs::write(
            manifests.join("etcd.yaml"),
            "kind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec: {containers: [{name: etcd, image: etcd}]}\n",
        )
        .expect("write");
        let ino = |p: &std::path::Path| std::fs::metadata(p).expect("stat").ino();
        let config = AttributionConfig {
            hold: Duration::from_millis(200),
            cri_sockets: vec![root.join("no-such.sock")],
            static_pod_dir: Some(PathBuf::from("/manifests")),
            node_name: Some("node1".into()),
            host_root: root.clone(),
            mounts: Some(Mounts {
                v2: Some(cgroups.clone()),
                memory_v1: None,
            }),
            ..AttributionConfig::default()
        };
        let metrics = AttributionMetrics::unregistered(100);
        let (tx, rx) = mpsc::channel(16);
        let (mut out, handle) = spawn_with_metrics(config, rx, metrics.clone());
        let started = Instant::now();
        tx.send(exec(u64::MAX - 7, 1)).await.expect("send");
        tx.send(exec(ino(&container_dir), 2)).await.expect("send");
        tx.send(exec(ino(&kubelet_dir), 3)).await.expect("send");
        drop(tx);
        let mut got = Vec::new();
        while let Some(a) = out.recv().await {
            got.push(a);
        }
        handle.await.expect("stage");
        assert_eq!(
            got.iter()
                .map(|a| a.record.event.task().pid)
                .collect::<Vec<_>>(),
            [1, 2, 3],
            "order kept"
        );
        assert!(
            matches!(got[0].owner.kind, OwnerKind::Unknown { .. }),
            "{:?}",
            got[0].owner
        );
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "a cgroup known to be gone is not held"
        );
        let c = got[1].owner.container().expect("a container");
        assert_eq!(c.id.as_str(), ID);
        assert_eq!(c.name.as_deref(), Some("etcd"));
        let pod = c.pod.as_ref().expect("pod");
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str(), pod.uid.as_str()),
            ("kube-system", "etcd-node1", UID)
        );
        assert!(pod.static_pod);
        assert_eq!(
            pod.manifest.as_deref(),
            Some(std::path::Path::new("/manifests/etcd.yaml")),
            "the host path of the manifest"
        );
        assert_eq!(
            &**got[1].owner.stable_key(),
            "pod:kube-system/etcd-node1/etcd"
        );
        assert_eq!(
            got[2].owner.kind,
            OwnerKind::HostService {
                unit: "kubelet.service".into(),
                service: "kubelet".into()
            }
        );
        let misses = |reason| {
            metrics
                .misses
                .get_or_create(&metrics::MissLabels { reason })
                .get()
        };
        assert_eq!(
            (
                misses("cgroup_gone"),
                misses("late"),
                misses("not_resolved")
            ),
            (1, 0, 0)
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
