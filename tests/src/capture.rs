//! `Capture`: the real probes, loaded for one test, collecting every decoded event.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use monitor::{
    events::{Event, Record},
    probes::{PROGRAMS, ProbeOptions, Probes, metrics::ProbeMetrics},
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

/// Loaded probes plus a background reader that keeps every event.
pub struct Capture {
    events: Arc<Mutex<Vec<Record>>>,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
    _probes: Probes,
}

impl Capture {
    /// Loads and attaches every program; panics with the reason when that is impossible.
    pub fn start() -> Self {
        // As the daemon does: cgroups created in the memory controller's v1 hierarchy too.
        Self::with_options(ProbeOptions { memory_hierarchy: monitor::node::cgroupfs::memory_hierarchy_id(), ..ProbeOptions::default() })
    }

    pub fn with_options(options: ProbeOptions) -> Self {
        let mut probes = Probes::load(&options).unwrap_or_else(|err| {
            panic!(
                "cannot load the eBPF programs: {err}\nThese tests need root (CAP_BPF, CAP_PERFMON, \
                 CAP_SYS_ADMIN) and a kernel with BTF (/sys/kernel/btf/vmlinux)."
            )
        });
        // With the kernel's own BTF, every program must be up and every field found; a test
        // that names another BTF (none) checks what is up itself.
        let full = options.btf_path.is_none();
        let down: Vec<String> = probes
            .status
            .iter()
            .filter(|s| !s.is_up() && !options.disabled.iter().any(|d| d == s.spec.name))
            .map(|s| format!("{}: {}", s.spec.name, s.error.clone().unwrap_or_default()))
            .collect();
        assert!(!full || down.is_empty(), "kernel programs failed to attach:\n{}", down.join("\n"));
        assert!(!full || probes.missing_offsets.is_empty(), "kernel fields missing from BTF: {:?}", probes.missing_offsets);
        let ring = probes.take_events().expect("events ring buffer");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (stop, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel::<Record>(1 << 16);
        let metrics = ProbeMetrics::new(&mut Registry::default());
        runtime.spawn(async move {
            let stage = monitor::progress::Watchdog::default().stage("ring buffer reader", std::time::Duration::from_secs(30));
            let _ = monitor::probes::reader::run(ring, tx, metrics, stage, stop_rx).await;
        });
        let sink = events.clone();
        runtime.spawn(async move {
            while let Some(record) = rx.recv().await {
                sink.lock().expect("events lock").push(record);
            }
        });
        assert!(!full || probes.attached() == PROGRAMS.len() - options.disabled.len());
        Self { events, stop, runtime, _probes: probes }
    }

    /// Each program's state: attached or not, and to which hook.
    pub fn status(&self) -> &[monitor::probes::ProgramStatus] {
        &self._probes.status
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events lock").iter().map(|r| r.event.clone()).collect()
    }

    /// Waits (at most `limit`) until `done` holds for the events seen so far; returns them.
    /// Panics with the events seen when it never does.
    pub fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; {} events seen", events.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Events whose task is in cgroup v2 `cgroup_id`.
    pub fn events_in(&self, cgroup_id: u64) -> Vec<Event> {
        self.events().into_iter().filter(|e| e.task().cgroup_id == cgroup_id).collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Give the reader a moment to stop before the runtime goes away with it.
        self.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
}
