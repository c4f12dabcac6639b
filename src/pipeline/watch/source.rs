//! The file-system event source (notify: FSEvents on macOS, inotify on Linux).
//!
//! Events are hints: they only say which path to look at again. The callback runs on
//! notify's thread and never blocks: it `try_send`s each path into a bounded channel, and
//! when that is full, or the OS says events were lost (`Rescan`), it asks for a rescan of
//! the whole inbox instead, as it does for an event that names no path (FSEvents' "root
//! changed", or an imprecise event).

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, mpsc};

/// Paths waiting to be looked at; beyond this a rescan is cheaper than remembering them.
const HINT_CAPACITY: usize = 4096;

/// A request for a full rescan, set from notify's thread.
#[derive(Debug, Default)]
pub(crate) struct RescanRequest {
    wanted: AtomicBool,
    notify: Notify,
}

impl RescanRequest {
    pub(crate) fn request(&self) {
        self.wanted.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits until a rescan is requested, and takes the request.
    pub(crate) async fn requested(&self) {
        loop {
            if self.wanted.swap(false, Ordering::AcqRel) {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// A path to look at again, from a file event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hint {
    pub path: PathBuf,
    /// A writer closed the file (Linux reports this; macOS does not): if it now holds a
    /// complete PNG it need not wait out the settle window.
    pub closed_after_write: bool,
    /// The path was removed or renamed (away, or into place). For the inbox itself that is
    /// its watch gone: inotify's `IN_DELETE_SELF` / `IN_MOVE_SELF`, FSEvents' removed or
    /// renamed root.
    pub removed_or_renamed: bool,
    /// A folder was removed. On Linux a deleted inbox says nothing of itself while drawdrop
    /// holds a file inside it (its lock): the removal of its folders is the sign.
    pub folder_removed: bool,
}

/// What the watch stage receives from the event source.
pub(crate) struct Hints {
    pub paths: mpsc::Receiver<Hint>,
    pub rescan: Arc<RescanRequest>,
}

/// The sending side: makes watchers that feed the same `Hints` (a new one is needed when
/// the inbox folder itself was deleted and created again).
#[derive(Clone)]
pub(crate) struct Source {
    sender: mpsc::Sender<Hint>,
    rescan: Arc<RescanRequest>,
}

/// A source and the hints it feeds.
pub(crate) fn channel() -> (Source, Hints) {
    let (sender, paths) = mpsc::channel(HINT_CAPACITY);
    let rescan = Arc::new(RescanRequest::default());
    let source = Source {
        sender,
        rescan: rescan.clone(),
    };
    (source, Hints { paths, rescan })
}

impl Source {
    /// Watches `inbox` recursively. Keep the watcher alive as long as events are wanted.
    pub(crate) fn watch(&self, inbox: &Path) -> notify::Result<RecommendedWatcher> {
        let (sender, rescan) = (self.sender.clone(), self.rescan.clone());
        let mut watcher =
            notify::recommended_watcher(move |event| forward(event, &sender, &rescan))?;
        watcher.watch(inbox, RecursiveMode::Recursive)?;
        Ok(watcher)
    }
}

/// notify's callback: never blocks, never panics.
fn forward(event: notify::Result<Event>, sender: &mpsc::Sender<Hint>, rescan: &RescanRequest) {
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            tracing::debug!("file events reported an error ({error}); rescanning");
            rescan.request();
            return;
        }
    };
    let closed_after_write = is_close_after_write(&event.kind);
    if matches!(event.kind, EventKind::Access(_)) && !closed_after_write {
        return;
    }
    if event.need_rescan() || event.paths.is_empty() {
        rescan.request();
        return;
    }
    let removed_or_renamed = matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
    );
    let folder_removed = matches!(
        event.kind,
        EventKind::Remove(notify::event::RemoveKind::Folder)
    );
    for path in event.paths {
        match sender.try_send(Hint {
            path,
            closed_after_write,
            removed_or_renamed,
            folder_removed,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                rescan.request();
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

fn is_close_after_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(notify::event::AccessKind::Close(
            notify::event::AccessMode::Write
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag};

    fn created(path: &str) -> notify::Result<Event> {
        Ok(Event::new(EventKind::Create(CreateKind::File)).add_path(PathBuf::from(path)))
    }

    #[tokio::test]
    async fn paths_are_forwarded() {
        let (sender, mut paths) = mpsc::channel(4);
        let rescan = RescanRequest::default();
        forward(created("/in/a.png"), &sender, &rescan);
        let hint = paths.recv().await.unwrap();
        assert_eq!(hint.path, PathBuf::from("/in/a.png"));
        assert!(!hint.closed_after_write);
        assert!(!hint.removed_or_renamed);
        assert!(!rescan.wanted.load(Ordering::Acquire));
        let closed = notify::event::AccessKind::Close(notify::event::AccessMode::Write);
        let event = Event::new(EventKind::Access(closed)).add_path(PathBuf::from("/in/b.png"));
        forward(Ok(event), &sender, &rescan);
        assert!(paths.recv().await.unwrap().closed_after_write);
        let opened = notify::event::AccessKind::Open(notify::event::AccessMode::Any);
        forward(
            Ok(Event::new(EventKind::Access(opened)).add_path("/in/c.png".into())),
            &sender,
            &rescan,
        );
        assert!(paths.try_recv().is_err(), "other accesses are not hints");
        assert!(!rescan.wanted.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn removals_and_renames_are_told_apart() {
        let (sender, mut paths) = mpsc::channel(4);
        let rescan = RescanRequest::default();
        let kinds = [
            EventKind::Remove(notify::event::RemoveKind::Folder),
            EventKind::Modify(notify::event::ModifyKind::Name(
                notify::event::RenameMode::From,
            )),
            EventKind::Modify(notify::event::ModifyKind::Data(
                notify::event::DataChange::Any,
            )),
        ];
        for kind in kinds {
            forward(
                Ok(Event::new(kind).add_path("/in".into())),
                &sender,
                &rescan,
            );
        }
        let told: Vec<(bool, bool)> = [(); 3]
            .iter()
            .map(|()| paths.try_recv().unwrap())
            .map(|hint| (hint.removed_or_renamed, hint.folder_removed))
            .collect();
        assert_eq!(told, [(true, true), (true, false), (false, false)]);
        assert!(!rescan.wanted.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn an_event_without_a_path_asks_for_a_rescan() {
        let (sender, mut paths) = mpsc::channel(4);
        let rescan = RescanRequest::default();
        // FSEvents' "root changed": the watched folder itself was renamed or removed.
        let root_changed = Event::new(EventKind::Modify(notify::event::ModifyKind::Name(
            notify::event::RenameMode::From,
        )))
        .set_info("root changed");
        forward(Ok(root_changed), &sender, &rescan);
        assert!(rescan.wanted.load(Ordering::Acquire));
        assert!(paths.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_channel_asks_for_a_rescan_instead_of_blocking() {
        let (sender, _paths) = mpsc::channel(1);
        let rescan = RescanRequest::default();
        forward(created("/in/a.png"), &sender, &rescan);
        forward(created("/in/b.png"), &sender, &rescan);
        tokio::time::timeout(std::time::Duration::from_secs(5), rescan.requested())
            .await
            .expect("a rescan was requested");
    }

    #[tokio::test]
    async fn a_closed_channel_is_ignored() {
        let (sender, paths) = mpsc::channel(1);
        drop(paths);
        let rescan = RescanRequest::default();
        forward(created("/in/a.png"), &sender, &rescan);
        assert!(!rescan.wanted.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn lost_events_and_errors_ask_for_a_rescan() {
        let (sender, _paths) = mpsc::channel(4);
        let rescan = RescanRequest::default();
        forward(
            Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)),
            &sender,
            &rescan,
        );
        assert!(rescan.wanted.swap(false, Ordering::AcqRel));
        forward(
            Err(notify::Error::generic("queue overflow")),
            &sender,
            &rescan,
        );
        assert!(rescan.wanted.load(Ordering::Acquire));
    }
}
