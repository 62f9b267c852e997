//! The node, kept current: a task reads a [`NodeSnapshot`] now, then again every interval and
//! whenever a file the last read looked at changes (an mtime poll every [`POLL`]: portable, no
//! inotify), and publishes each on a watch channel, with kubelet's hints on another (sent only
//! when they change). The audit judges each snapshot; attribution takes kubelet's hints.
//!
//! Each read runs on a thread of its own, off the async workers, with a deadline: a read held
//! up by a stuck mount or a socket that never answers leaves its thread behind, and the reader
//! publishes a stand-in saying so (`NodeSnapshot::stalled`), marks its stage busy until the read
//! ends (`/healthz` says so past the limit), and starts no other read before that one ends.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use super::{
    host_root::HostRoot,
    snapshot::{self, KubeletHints, NodeSnapshot, SnapshotOptions},
};
use crate::progress::Stage;

/// How often the files a snapshot read are polled for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// The latest snapshot; `None` until the first read is done.
pub type Snapshots = watch::Receiver<Option<Arc<NodeSnapshot>>>;

/// What the reader publishes.
pub struct NodeWatch {
    pub snapshots: Snapshots,
    /// kubelet's hints of the latest snapshot (host paths).
    pub kubelet: watch::Receiver<KubeletHints>,
    pub task: JoinHandle<()>,
}

fn mtimes(root: &HostRoot, paths: &[PathBuf]) -> HashMap<PathBuf, Option<SystemTime>> {
    paths.iter().map(|p| (p.clone(), root.metadata(p).and_then(|m| m.modified()).ok())).collect()
}

/// Waits until `interval` has passed or a watched file changed (true), or until shutdown
/// (false).
async fn wait_for_change(
    root: &HostRoot,
    watched: &[PathBuf],
    seen: &HashMap<PathBuf, Option<SystemTime>>,
    interval: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL.min(interval)) => {}
            changed = shutdown.changed() => if changed.is_err() { return false },
        }
        if *shutdown.borrow() {
            return false;
        }
        if tokio::time::Instant::now() >= deadline || mtimes(root, watched) != *seen {
            return true;
        }
    }
}

/// One read of the node on a thread of its own (with its own small runtime for the CRI calls),
/// its result sent when done. A thread is never joined: one stuck in a read must not hold the
/// reader, nor the process at exit.
fn read_in_thread(root: &HostRoot, options: &SnapshotOptions) -> tokio::sync::oneshot::Receiver<NodeSnapshot> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (root, options) = (root.clone(), options.clone());
    let spawned = std::thread::Builder::new().name("node-read".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        let snapshot = runtime.block_on(snapshot::collect(&root, &options));
        let _ = tx.send(snapshot);
    });
    if let Err(err) = spawned {
        tracing::error!("cannot start a thread to read the node: {err}");
    }
    rx
}

/// The reader's settings.
#[derive(Clone, Debug)]
pub struct ReadSchedule {
    /// Read again this often, and whenever a file the last read looked at changes.
    pub interval: Duration,
    /// A read not done by then is reported as stalled.
    pub deadline: Duration,
}

/// Starts the reader; it stops when `shutdown` turns true (or its sender is dropped).
pub fn spawn(
    root: HostRoot,
    options: SnapshotOptions,
    schedule: ReadSchedule,
    stage: Stage,
    mut shutdown: watch::Receiver<bool>,
) -> NodeWatch {
    let ReadSchedule { interval, deadline } = schedule;
    let (tx, snapshots) = watch::channel(None);
    let (hints_tx, kubelet) = watch::channel(KubeletHints::default());
    let task = tokio::spawn(async move {
        // At most one immediate re-read in a row (a file whose mtime is in the future, or one
        // written all the time, must not keep the reader busy).
        let mut reread = false;
        loop {
            // A file changed while it is read must count as changed: mtimes newer than the
            // start of the read make the next read come at once.
            let started = SystemTime::now();
            let busy = stage.busy();
            let mut read = read_in_thread(&root, &options);
            let done = tokio::select! {
                done = tokio::time::timeout(deadline, &mut read) => done,
                _ = shutdown.changed() => return,
            };
            let snapshot = match done {
                Ok(Ok(snapshot)) => snapshot,
                Ok(Err(_)) => return, // the thread could not run: logged
                Err(_) => {
                    let why = format!("reading the node's files and runtime sockets took longer than {deadline:?}");
                    warn!("{why}: its findings stay those of the last complete read");
                    tx.send_replace(Some(Arc::new(NodeSnapshot { stalled: Some(why), ..Default::default() })));
                    // No other read before this one ends; the stage stays busy meanwhile.
                    match tokio::select! { done = &mut read => done, _ = shutdown.changed() => return } {
                        Ok(snapshot) => snapshot,
                        Err(_) => return,
                    }
                }
            };
            drop(busy);
            let snapshot = Arc::new(snapshot);
            info!(elapsed_ms = snapshot.elapsed.as_millis() as u64, watched = snapshot.watched.len(), "node configuration read");
            let seen = mtimes(&root, &snapshot.watched);
            let changed_while_read = !reread && seen.values().flatten().any(|t| *t >= started);
            reread = changed_while_read;
            let watched = snapshot.watched.clone();
            let hints = snapshot.kubelet_hints();
            hints_tx.send_if_modified(|current| std::mem::replace(current, hints.clone()) != hints);
            tx.send_replace(Some(snapshot));
            if !changed_while_read && !wait_for_change(&root, &watched, &seen, interval, &mut shutdown).await {
                return;
            }
        }
    });
    NodeWatch { snapshots, kubelet, task }
}
