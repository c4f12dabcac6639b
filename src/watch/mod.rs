//! The watch stage: finds files in the inbox, waits until each has settled, and queues it.
//!
//! Sources of "look at this path": the startup scan, notify events (hints only), a rescan
//! when events were lost, a periodic rescan, and paths a worker handed back because they
//! changed after settling. The folder's content is the truth; every look is a fresh `stat`.
//! With `once`, there are no events: the stage ends when every file found at start has
//! settled and been taken, and then closes the queue.

pub mod scan;
pub mod settle;
pub mod source;

use crate::inbox_names::{is_candidate, is_visible_dir};
use crate::queue::{Queue, Work};
use settle::{Settler, Verdict};
use source::Hints;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the whole inbox is scanned even when no event says anything changed.
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// The watch stage's state.
pub struct WatchStage {
    inbox: PathBuf,
    settler: Settler,
    queue: Arc<Queue>,
    once: bool,
    /// Called with the number of new files found by each scan (progress for `--once`).
    on_found: Box<dyn Fn(usize) + Send>,
}

impl WatchStage {
    /// `inbox` should be canonical, as notify reports canonical paths.
    pub fn new(inbox: PathBuf, settle: Duration, queue: Arc<Queue>, once: bool) -> Self {
        WatchStage {
            inbox,
            settler: Settler::new(settle, once),
            queue,
            once,
            on_found: Box::new(|_| {}),
        }
    }

    pub fn on_found(mut self, callback: impl Fn(usize) + Send + 'static) -> Self {
        self.on_found = Box::new(callback);
        self
    }

    /// Runs until cancelled (or, with `once`, until everything found at start is queued).
    /// Closes the queue when it ends.
    pub async fn run(mut self, hints: Option<Hints>, cancel: CancellationToken) {
        let (mut paths, rescan) = match hints {
            Some(Hints { paths, rescan }) => (Some(paths), Some(rescan)),
            None => (None, None),
        };
        self.rescan();
        let mut periodic = tokio::time::interval_at(Instant::now() + RESCAN_EVERY, RESCAN_EVERY);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let queue = self.queue.clone();
        loop {
            if self.once && self.settler.is_empty() && self.queue.is_idle() {
                break;
            }
            let deadline = self.settler.next_deadline();
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(path) = next_hint(&mut paths) => {
                    self.look_at_event(&path);
                    // Take what else is waiting without going round the loop.
                    while let Some(Ok(path)) = paths.as_mut().map(|p| p.try_recv()) {
                        self.look_at_event(&path);
                    }
                }
                _ = rescan_requested(rescan.as_deref()) => self.rescan(),
                _ = periodic.tick(), if !self.once => self.rescan(),
                _ = sleep_until(deadline) => {
                    for relative in self.settler.due(Instant::now()) {
                        self.look_at(&relative);
                    }
                }
                _ = queue.changed() => {
                    for relative in self.queue.take_handed_back() {
                        self.look_at(&relative);
                    }
                }
            }
        }
        self.queue.close();
    }

    /// Looks at every candidate in the inbox.
    fn rescan(&mut self) {
        let inbox = self.inbox.clone();
        let found = match scan::scan(&inbox, |folder, error| {
            tracing::warn!("cannot read inbox folder {}: {error}", folder.display());
        }) {
            Ok(found) => found,
            Err(error) => {
                self.inbox_missing(error);
                return;
            }
        };
        let mut new = 0;
        for file in found {
            if !self.queue.contains(&file.relative) && !self.settler.is_tracking(&file.relative) {
                new += 1;
            }
            self.observe(file.relative, file.seen);
        }
        (self.on_found)(new);
    }

    fn inbox_missing(&mut self, error: std::io::Error) {
        if error.kind() == std::io::ErrorKind::NotFound {
            match std::fs::create_dir_all(&self.inbox) {
                Ok(()) => tracing::warn!(
                    "the inbox {} was gone; created it again (files dropped now are watched at the next rescan)",
                    self.inbox.display()
                ),
                Err(error) => tracing::error!(
                    "the inbox {} is gone and cannot be created again: {error}",
                    self.inbox.display()
                ),
            }
        } else {
            tracing::error!("cannot read the inbox {}: {error}", self.inbox.display());
        }
    }

    /// An event named `path` (absolute): look at it, or at everything in it if it is a folder.
    fn look_at_event(&mut self, path: &Path) {
        let Ok(relative) = path.strip_prefix(&self.inbox) else {
            return;
        };
        if relative.components().any(|c| match c {
            Component::Normal(name) => !is_visible_dir(name),
            _ => true,
        }) {
            return; // hidden, or drawdrop's own state folder
        }
        let relative = relative.to_path_buf();
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => self.scan_folder(&relative),
            _ => self.look_at(&relative),
        }
    }

    /// A folder appeared (perhaps moved in whole, with files already inside).
    fn scan_folder(&mut self, relative: &Path) {
        let Ok(found) = scan::scan(&self.inbox.join(relative), |_, _| {}) else {
            return;
        };
        let count = found.len();
        for file in found {
            self.observe(relative.join(file.relative), file.seen);
        }
        (self.on_found)(count);
    }

    /// Looks at one file again.
    fn look_at(&mut self, relative: &Path) {
        if !is_candidate(relative) {
            return;
        }
        match scan::observe(&self.inbox.join(relative)) {
            Ok(seen) => self.observe(relative.to_path_buf(), seen),
            Err(_) => self.settler.forget(relative),
        }
    }

    fn observe(&mut self, relative: PathBuf, seen: settle::Observation) {
        if self.queue.contains(&relative) {
            return;
        }
        if let Verdict::Settled = self.settler.observe(&relative, seen, Instant::now()) {
            self.queue.push(Work::Settled { relative, seen });
        }
    }
}

async fn next_hint(paths: &mut Option<tokio::sync::mpsc::Receiver<PathBuf>>) -> Option<PathBuf> {
    match paths {
        Some(paths) => paths.recv().await,
        None => std::future::pending().await,
    }
}

async fn rescan_requested(rescan: Option<&source::RescanRequest>) {
    match rescan {
        Some(rescan) => rescan.requested().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
