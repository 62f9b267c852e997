//! The node, kept current: a task reads a [`NodeSnapshot`] now, then again every interval and
//! whenever a file the last read looked at changes (a poll every [`POLL`] of each file's
//! identity: portable, no inotify), and publishes each on a watch channel, with kubelet's hints
//! on another (sent only when they change). The audit judges each snapshot; attribution takes
//! kubelet's hints.
//!
//! A change is judged against each file as it was *before* the read that looked at it (its
//! [`Identity`]: device, inode, size, modification and change times), never after: a file
//! replaced while it is read, by a rename keeping an old mtime (`mv`, `cp -p`, `tar x`) as much
//! as by a write, differs from what was read and makes the next read come. A file a read looks
//! at for the first time has no identity from before: one more read follows at the next poll.
//!
//! Each read runs on a thread of its own, off the async workers, with a deadline: a read held
//! up by a stuck mount or a socket that never answers leaves its thread behind, and the reader
//! publishes a stand-in saying so (`NodeSnapshot::stalled`), marks its stage busy until the read
//! ends (`/healthz` says so past the limit), and starts no other read before that one ends.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::Arc,
    time::Duration,
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

/// Which file is at a path, and as of when: a rename puts another inode there, a write changes
/// the size or the times (the change time cannot be set back by anyone, the mtime can).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Each path's identity, `None` for one that cannot be looked at (absent).
type Identities = HashMap<PathBuf, Option<Identity>>;

fn identities(root: &HostRoot, paths: &[PathBuf]) -> Identities {
    let identity = |m: std::fs::Metadata| Identity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    };
    paths.iter().map(|p| (p.clone(), root.metadata(p).ok().map(identity))).collect()
}

/// What the waits after a read compare with: the paths the read looked at, as they were before
/// it began (`before`, taken of the previous read's paths). `complete` is false when the read
/// looked at a path `before` does not have.
fn seen_by_read(before: &Identities, watched: &[PathBuf]) -> (Identities, bool) {
    let seen: Identities = watched.iter().filter_map(|p| Some((p.clone(), before.get(p)?.clone()))).collect();
    let complete = seen.len() == watched.len();
    (seen, complete)
}

/// Waits until `interval` has passed or a watched file differs from `seen` (true), or until
/// shutdown (false). Without a complete `seen`, the first poll says changed.
async fn wait_for_change(
    root: &HostRoot,
    watched: &[PathBuf],
    (seen, complete): &(Identities, bool),
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
        if !complete || tokio::time::Instant::now() >= deadline || identities(root, watched) != *seen {
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
        // The paths the last read looked at: their identities are taken before each read.
        let mut watched: Vec<PathBuf> = Vec::new();
        loop {
            let before = identities(&root, &watched);
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
            watched = snapshot.watched.clone();
            let seen = seen_by_read(&before, &watched);
            let hints = snapshot.kubelet_hints();
            hints_tx.send_if_modified(|current| std::mem::replace(current, hints.clone()) != hints);
            tx.send_replace(Some(snapshot));
            if !wait_for_change(&root, &watched, &seen, interval, &mut shutdown).await {
                return;
            }
        }
    });
    NodeWatch { snapshots, kubelet, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file replaced after it was read by one with an older mtime (a rename, as `mv` and
    /// `cp -p` leave it) differs from what the read saw; a path new to the read is not known
    /// from before it.
    #[test]
    fn a_replacement_during_the_read_is_a_change() {
        let dir = std::env::temp_dir().join(format!("nrm-watch-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
        std::fs::write(dir.join("etc/a.yaml"), "a: 1\n").expect("write");
        let root = HostRoot::new(&dir);
        let a = PathBuf::from("/etc/a.yaml");
        let before = identities(&root, std::slice::from_ref(&a));
        // The read happens; then, before it ends, the file is replaced by a rename of a file
        // of the same size whose mtime is an hour old.
        let replacement = dir.join("etc/.a.yaml.new");
        std::fs::write(&replacement, "a: 2\n").expect("write");
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&replacement).expect("open").set_modified(old).expect("mtime");
        std::fs::rename(&replacement, dir.join("etc/a.yaml")).expect("rename");
        let (seen, complete) = seen_by_read(&before, std::slice::from_ref(&a));
        assert!(complete);
        assert_ne!(identities(&root, std::slice::from_ref(&a)), seen, "the replacement must count as a change");
        // Nothing changed since: the same.
        let (seen, _) = seen_by_read(&identities(&root, std::slice::from_ref(&a)), std::slice::from_ref(&a));
        assert_eq!(identities(&root, std::slice::from_ref(&a)), seen);
        // A path the read looked at for the first time.
        let b = PathBuf::from("/etc/b.yaml");
        let (_, complete) = seen_by_read(&before, &[a, b]);
        assert!(!complete);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
