//! The watch stage: finds files in the inbox, waits until each has settled, and queues it.
//!
//! Sources of "look at this path": the startup scan, notify events (hints only), a rescan
//! when events were lost, a periodic rescan, and paths a worker handed back because they
//! changed after settling. The folder's content is the truth; every look is a fresh `stat`.
//! With `once`, there are no events: the stage ends when every file found at start has
//! settled and been taken, and then closes the queue.
//! A settled file whose profile is broken is not queued: it waits in the inbox, and is
//! queued as soon as new settings fix its profile.

pub(crate) mod scan;
pub(crate) mod settle;
pub(crate) mod source;

use crate::image::TAKEN_FORMATS;
use crate::jobs::names::{self, Kind, is_candidate, is_visible_dir, shown};
use crate::jobs::seen::{self, Observation};
use crate::pipeline::queue::{Queue, Work};
use crate::pipeline::reload::Current;
use crate::pipeline::timing::rescan_every;
use notify::RecommendedWatcher;
use settle::{Settler, Verdict};
use source::{Hint, Hints, Source};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The watch stage's state.
pub(crate) struct WatchStage {
    inbox: PathBuf,
    settler: Settler,
    queue: Arc<Queue>,
    once: bool,
    /// Called with the number of new files found by each scan (progress for `--once`).
    on_found: Box<dyn Fn(usize) + Send>,
    /// Links, unreadable folders and files not taken already reported, so each is logged
    /// once a run.
    reported: HashSet<PathBuf>,
    /// The event source and its live watcher; `None` with `once`.
    events: Option<(Source, Option<RecommendedWatcher>)>,
    /// New settings (hot reload) may bring a new settle window.
    settings: Option<watch::Receiver<Arc<Current>>>,
    /// Settled files whose profile is broken, as they were when they settled.
    waiting: HashMap<PathBuf, Observation>,
    /// Which folder is being watched: another one under the inbox's name (deleted and
    /// created again, by a person, a sync tool, or a claim being finished) is watched anew.
    watched: Option<FolderId>,
    /// After a sign that the inbox may be going (things in it removed): when to look at it
    /// next, and until when.
    inbox_check: Option<(Instant, Instant)>,
}

/// How often, and how long, the inbox is looked at after a sign it may be going.
const INBOX_CHECK_EVERY: Duration = Duration::from_millis(100);
const INBOX_CHECK_FOR: Duration = Duration::from_secs(2);

/// A folder's identity: device, inode and (where the file system keeps it) birth time, as
/// inode numbers are reused at once.
type FolderId = (u64, u64, Option<std::time::SystemTime>);

impl WatchStage {
    /// `inbox` should be canonical, as notify reports canonical paths.
    pub(crate) fn new(inbox: PathBuf, settle: Duration, queue: Arc<Queue>, once: bool) -> Self {
        WatchStage {
            inbox,
            settler: Settler::new(settle, once),
            queue,
            once,
            on_found: Box::new(|_| {}),
            reported: HashSet::new(),
            events: None,
            settings: None,
            watched: None,
            inbox_check: None,
            waiting: HashMap::new(),
        }
    }

    /// Follows the settings in force: `settle_ms`, and which profiles are broken.
    pub(crate) fn with_settle_updates(mut self, settings: watch::Receiver<Arc<Current>>) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Watches with this source (whose watcher is already running), re-watching when the
    /// inbox folder is created again after being deleted.
    pub(crate) fn with_events(mut self, source: Source, watcher: RecommendedWatcher) -> Self {
        self.events = Some((source, Some(watcher)));
        self.watched = folder_id(&self.inbox);
        self
    }

    pub(crate) fn on_found(mut self, callback: impl Fn(usize) + Send + 'static) -> Self {
        self.on_found = Box::new(callback);
        self
    }

    /// Runs until cancelled (or, with `once`, until everything found at start is queued).
    /// Closes the queue when it ends.
    pub(crate) async fn run(mut self, hints: Option<Hints>, cancel: CancellationToken) {
        let (mut paths, rescan) = match hints {
            Some(Hints { paths, rescan }) => (Some(paths), Some(rescan)),
            None => (None, None),
        };
        self.rescan().await;
        let every = rescan_every();
        let mut periodic = tokio::time::interval_at(Instant::now() + every, every);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let queue = self.queue.clone();
        loop {
            if self.once && self.settler.is_empty() && self.queue.is_idle() {
                break;
            }
            let deadline = self.settler.next_deadline();
            let inbox_check = self.inbox_check.map(|(next, _)| next);
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(hint) = next_hint(&mut paths) => {
                    self.look_at_event(&hint).await;
                    // Take what else is waiting without going round the loop.
                    while let Some(Ok(hint)) = paths.as_mut().map(|p| p.try_recv()) {
                        self.look_at_event(&hint).await;
                    }
                }
                _ = rescan_requested(rescan.as_deref()) => self.rescan().await,
                _ = periodic.tick(), if !self.once => self.rescan().await,
                _ = sleep_until(inbox_check) => self.check_inbox_again().await,
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
                Some(settle) = settle_update(&mut self.settings) => {
                    self.settler.set_window(settle);
                    self.release_waiting();
                }
            }
        }
        self.queue.close();
    }

    /// Looks at every candidate in the inbox.
    async fn rescan(&mut self) {
        self.notice_replaced_inbox();
        let mut made_again = false;
        let found = loop {
            let (found, notices) = scan_off_thread(self.inbox.clone()).await;
            for notice in notices {
                report(&mut self.reported, notice);
            }
            match found {
                Ok(found) => break found,
                // The inbox there now (made again, or another's) may hold files already: a
                // sync tool can put its folder in place between our making it and watching it.
                Err(error) => {
                    if made_again || !self.inbox_missing(error) {
                        return;
                    }
                    made_again = true;
                }
            }
        };
        let mut new = 0;
        for file in found {
            let known = |stage: &Self| {
                stage.queue.contains(&file.relative)
                    || stage.settler.is_tracking(&file.relative)
                    || stage.waiting.contains_key(&file.relative)
            };
            let before = known(self);
            self.observe(file.relative.clone(), file.seen);
            if !before && !self.waiting.contains_key(&file.relative) {
                new += 1;
            }
        }
        (self.on_found)(new);
    }

    /// The inbox cannot be scanned: made again when it is gone. True when there is an inbox
    /// again, watched (to be scanned).
    fn inbox_missing(&mut self, error: std::io::Error) -> bool {
        if error.kind() != std::io::ErrorKind::NotFound {
            if self.reported.insert(self.inbox.clone()) {
                tracing::error!("cannot read the inbox {}: {error}", self.inbox.display());
            }
            return false;
        }
        // Someone else (a sync tool) may make it in the meantime: then that one is watched.
        let made = match std::fs::create_dir(&self.inbox) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.inbox).map(|()| true)
            }
            Err(_) if self.inbox.is_dir() => Ok(false),
            Err(error) => Err(error),
        };
        let made = match made {
            Ok(made) => made,
            Err(error) => {
                if self.reported.insert(self.inbox.clone()) {
                    tracing::error!(
                        "the inbox {} is gone and cannot be created again: {error}; trying again at the next rescan",
                        self.inbox.display()
                    );
                }
                return false;
            }
        };
        self.reported.remove(&self.inbox);
        if made {
            tracing::warn!(
                "the inbox {} was gone; created it again",
                self.inbox.display()
            );
            self.watch_again();
        } else {
            self.watch_replaced_inbox();
        }
        true
    }

    /// Another folder now has the inbox's name: the watcher still watches the old one.
    fn notice_replaced_inbox(&mut self) {
        if self.events.is_none() {
            return;
        }
        let now = folder_id(&self.inbox);
        if now.is_none() || now == self.watched {
            return; // a missing inbox is created again by the scan
        }
        self.watch_replaced_inbox();
    }

    fn watch_replaced_inbox(&mut self) {
        tracing::warn!(
            "the inbox {} was replaced by another folder (deleted and created again?); watching the new one",
            self.inbox.display()
        );
        self.watch_again();
    }

    /// An event about the inbox folder itself. Removed or renamed away, its watch is gone:
    /// the folder now at its path (created again, or put there by a sync tool) is watched
    /// anew, whatever its identity (inode numbers are reused at once), and looked through.
    /// Any other change is looked into when the inbox is missing or another folder.
    async fn look_at_inbox_event(&mut self, removed_or_renamed: bool) {
        let present = self.inbox.is_dir();
        if removed_or_renamed && present && self.events.is_some() {
            self.watch_replaced_inbox();
            self.rescan().await;
        } else if removed_or_renamed {
            self.rescan().await;
        } else {
            self.check_inbox().await;
        }
    }

    /// Whether the inbox is missing or another folder than the one watched: then it is
    /// rescanned (which makes it again, or watches the new one).
    async fn check_inbox(&mut self) -> bool {
        let changed = !self.inbox.is_dir()
            || (self.events.is_some() && folder_id(&self.inbox) != self.watched);
        if changed {
            self.rescan().await;
        }
        changed
    }

    /// A folder in the inbox was removed, or a file at its top: perhaps the inbox goes with
    /// them (`rm -rf`), which is then only seen by looking. Looks a few times over the next
    /// moments (first after a moment, so that a folder someone makes again at once is theirs).
    fn watch_inbox_closely(&mut self) {
        if self.events.is_none() {
            return;
        }
        let now = Instant::now();
        let next = self
            .inbox_check
            .map_or(now + INBOX_CHECK_EVERY, |(next, _)| next);
        self.inbox_check = Some((next, now + INBOX_CHECK_FOR));
    }

    async fn check_inbox_again(&mut self) {
        let Some((_, until)) = self.inbox_check else {
            return;
        };
        let now = Instant::now();
        self.inbox_check = if self.check_inbox().await || now >= until {
            None
        } else {
            Some((now + INBOX_CHECK_EVERY, until))
        };
    }

    /// Watches the folder now at the inbox's path (the old watcher watched a deleted one).
    fn watch_again(&mut self) {
        if let Some((source, watcher)) = &mut self.events {
            *watcher = None;
            match source.watch(&self.inbox) {
                Ok(new) => *watcher = Some(new),
                Err(error) => tracing::error!(
                    "cannot watch the new inbox ({error}); it is scanned every {} s instead",
                    rescan_every().as_secs()
                ),
            }
            self.watched = folder_id(&self.inbox);
        }
    }

    /// An event named `path` (absolute): look at it, or at everything in it if it is a folder.
    async fn look_at_event(&mut self, hint: &Hint) {
        let path = hint.path.as_path();
        let Ok(relative) = path.strip_prefix(&self.inbox) else {
            return;
        };
        if relative.as_os_str().is_empty() {
            self.look_at_inbox_event(hint.removed_or_renamed).await;
            return;
        }
        if hint.folder_removed || (hint.removed_or_renamed && relative.components().count() == 1) {
            self.watch_inbox_closely();
        }
        if relative.components().any(|c| match c {
            Component::Normal(name) => !is_visible_dir(name),
            _ => true,
        }) {
            return; // hidden, or drawdrop's own state folder
        }
        let relative = relative.to_path_buf();
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => self.scan_folder(&relative).await,
            Ok(meta) if meta.is_file() && names::kind(&relative) == Kind::NotTaken => {
                report(&mut self.reported, scan::Notice::NotTaken(relative.clone()));
            }
            _ if hint.closed_after_write => self.look_at_closed(&relative),
            // The metadata just read is this look at the file.
            found if is_candidate(&relative) => {
                let seen = found.and_then(|meta| seen::observation(&meta));
                self.take_in(relative, seen);
            }
            _ => {}
        }
    }

    /// A writer closed this file: a whole picture is taken now, without the settle window
    /// (the claim checks again that it did not change since).
    fn look_at_closed(&mut self, relative: &Path) {
        let path = self.inbox.join(relative);
        if !is_candidate(relative)
            || self.queue.contains(relative)
            || !scan::ends_like_a_whole_picture(&path)
        {
            return self.look_at(relative);
        }
        match seen::observe(&path) {
            Ok(seen) => {
                self.settler.forget(relative);
                self.admit(relative.to_path_buf(), seen);
            }
            Err(_) => self.settler.forget(relative),
        }
    }

    /// A folder appeared (perhaps moved in whole, with files already inside).
    async fn scan_folder(&mut self, relative: &Path) {
        let (found, notices) = scan_off_thread(self.inbox.join(relative)).await;
        for notice in notices {
            report(&mut self.reported, notice.under(relative));
        }
        let Ok(found) = found else {
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
        if is_candidate(relative) {
            let seen = seen::observe(&self.inbox.join(relative));
            self.take_in(relative.to_path_buf(), seen);
        }
    }

    /// What a look at a candidate file found: it settles, or it is gone.
    fn take_in(&mut self, relative: PathBuf, seen: std::io::Result<Observation>) {
        match seen {
            Ok(seen) => self.observe(relative, seen),
            Err(_) => self.settler.forget(&relative),
        }
    }

    fn observe(&mut self, relative: PathBuf, seen: Observation) {
        if self.queue.contains(&relative) {
            return;
        }
        if let Verdict::Settled = self.settler.observe(&relative, seen, Instant::now()) {
            self.admit(relative, seen);
        }
    }

    /// A settled file is queued, unless its profile is broken: then it waits in the inbox
    /// (said once per file).
    fn admit(&mut self, relative: PathBuf, seen: Observation) {
        let Some((profile, file)) = self.broken_profile_of(&relative) else {
            self.waiting.remove(&relative);
            self.queue.push(Work::Settled { relative, seen });
            return;
        };
        if !self.waiting.contains_key(&relative) {
            tracing::info!(
                "waiting: {} — its profile {profile} is broken ({}); it is taken once that file is fixed",
                shown(&relative),
                file.display()
            );
        }
        self.waiting.insert(relative, seen);
    }

    /// The name and file of the broken profile a file at `relative` waits for, if any.
    fn broken_profile_of(&self, relative: &Path) -> Option<(String, PathBuf)> {
        let settings = self.settings.as_ref()?.borrow();
        let (profile, error) = settings.config.waits_for(relative)?;
        Some((profile.to_owned(), error.file.clone()))
    }

    /// New settings: the files that waited for a broken profile are looked at again, and
    /// those unchanged since they settled are queued at once if their profile is fixed.
    fn release_waiting(&mut self) {
        let waiting: Vec<(PathBuf, Observation)> = self
            .waiting
            .iter()
            .map(|(relative, seen)| (relative.clone(), *seen))
            .collect();
        for (relative, settled) in waiting {
            match seen::observe(&self.inbox.join(&relative)) {
                Ok(now) if now == settled => self.admit(relative, now),
                seen => {
                    self.waiting.remove(&relative);
                    self.take_in(relative, seen);
                }
            }
        }
    }
}

#[cfg(unix)]
fn folder_id(path: &Path) -> Option<FolderId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.created().ok()))
}

#[cfg(not(unix))]
fn folder_id(_path: &Path) -> Option<FolderId> {
    None
}

/// Logs what a scan left alone, once per path.
fn report(reported: &mut HashSet<PathBuf>, notice: scan::Notice) {
    match notice {
        scan::Notice::Link(path) => {
            if reported.insert(path.clone()) {
                tracing::warn!(
                    "left alone: {} is a symbolic link (drawdrop never follows links, which may point outside the inbox; copy the picture in instead)",
                    shown(&path)
                );
            }
        }
        scan::Notice::Unreadable(path, error) => {
            if reported.insert(path.clone()) {
                tracing::warn!("cannot read the inbox folder {}: {error}", shown(&path));
            }
        }
        scan::Notice::NotTaken(path) => {
            if reported.insert(path.clone()) {
                tracing::warn!(
                    "not taken: {} \u{2014} drawdrop takes {TAKEN_FORMATS}",
                    shown(&path)
                );
            }
        }
    }
}

/// [`scan::scan`] of `folder` off the async threads (a large inbox takes a while), with
/// what it noticed on the way.
async fn scan_off_thread(
    folder: PathBuf,
) -> (std::io::Result<Vec<scan::Found>>, Vec<scan::Notice>) {
    let scanned = tokio::task::spawn_blocking(move || {
        let mut notices = Vec::new();
        let found = scan::scan(&folder, |notice| notices.push(notice));
        (found, notices)
    })
    .await;
    scanned.unwrap_or_else(|error| (Err(std::io::Error::other(error)), Vec::new()))
}

/// The settle window of new settings, when they come.
async fn settle_update(settings: &mut Option<watch::Receiver<Arc<Current>>>) -> Option<Duration> {
    match settings {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(receiver.borrow_and_update().config.settle),
            Err(_) => {
                *settings = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn next_hint(paths: &mut Option<tokio::sync::mpsc::Receiver<Hint>>) -> Option<Hint> {
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
