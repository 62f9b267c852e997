//! The node, kept current: a task reads a [`NodeSnapshot`] now, then again every interval and
//! whenever a file the last read looked at changes (an mtime poll every [`POLL`]: portable, no
//! inotify), and publishes each on a watch channel, with kubelet's hints on another (sent only
//! when they change). The audit judges each snapshot; attribution takes kubelet's hints.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

use super::{
    host_root::HostRoot,
    snapshot::{self, KubeletHints, NodeSnapshot, SnapshotOptions},
};

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

/// Starts the reader; it stops when `shutdown` turns true (or its sender is dropped).
pub fn spawn(
    root: HostRoot,
    options: SnapshotOptions,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> NodeWatch {
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
            let snapshot = Arc::new(snapshot::collect(&root, &options).await);
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
