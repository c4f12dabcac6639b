//! Keeping the gallery up to date while drawdrop runs: a background task woken after every
//! job's `jobs.jsonl` line, so thumbnails and pages are made off the path of the next
//! request, on a thread of its own at a low priority (the requests' work goes first). At
//! start it catches up on lines an earlier run left (a crash between a job's line and its
//! gallery update).

use super::Gallery;
use crate::mutex::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// After a job's line, the keeper waits this long for the lines of others before it updates.
const GATHER: Duration = Duration::from_millis(250);

/// What the workers hold: tells the keeper a job's line was written.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    wake: Arc<Notify>,
}

impl Feed {
    pub fn job_logged(&self) {
        self.wake.notify_one();
    }
}

type Work = Box<dyn FnOnce() + Send>;

/// The background task's side.
pub struct Keeper {
    gallery: Arc<Gallery>,
    feed: Feed,
    /// Read before every update: `gallery = false` (now) writes nothing.
    enabled: Box<dyn Fn() -> bool + Send + Sync>,
    /// The gallery's own thread, started at the first update.
    thread: Mutex<Option<mpsc::Sender<Work>>>,
}

impl Keeper {
    pub fn new(gallery: Gallery, enabled: impl Fn() -> bool + Send + Sync + 'static) -> Keeper {
        Keeper {
            gallery: Arc::new(gallery),
            feed: Feed::default(),
            enabled: Box::new(enabled),
            thread: Mutex::new(None),
        }
    }

    /// Runs `work` on the gallery's thread and waits for it.
    async fn on_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = oneshot::channel();
        let work: Work = Box::new(move || {
            let _ = done.send(work());
        });
        let sent = {
            let mut thread = lock(&self.thread);
            if thread.is_none() {
                *thread = start_thread();
            }
            match thread.as_ref() {
                Some(sender) => sender.send(work).map_err(|refused| refused.0),
                None => Err(work),
            }
        };
        if let Err(work) = sent {
            // No thread of its own: a blocking task does the work.
            tokio::task::spawn_blocking(work).await.ok()?;
        }
        result.await.ok()
    }

    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Updates the gallery at start and after every job until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut first = true;
        loop {
            let stop = Arc::new(AtomicBool::new(false));
            let updating = self.update(stop.clone(), std::mem::take(&mut first), false);
            tokio::pin!(updating);
            tokio::select! {
                _ = &mut updating => {}
                _ = cancel.cancelled() => {
                    stop.store(true, Ordering::Relaxed);
                    updating.await;
                    return;
                }
            }
            tokio::select! {
                _ = self.feed.wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
            // Jobs finishing in quick succession are taken together: a few pages a second.
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// The last update before drawdrop exits: what is left, until `deadline` if there is one.
    pub async fn last_update(self: &Arc<Self>, deadline: Option<Instant>) {
        let stop = Arc::new(AtomicBool::new(false));
        let updating = self.update(stop.clone(), false, true);
        match deadline {
            None => updating.await,
            Some(deadline) => {
                tokio::pin!(updating);
                if tokio::time::timeout_at(deadline, &mut updating)
                    .await
                    .is_err()
                {
                    stop.store(true, Ordering::Relaxed);
                    updating.await;
                }
            }
        }
    }

    /// One update; the `first` of a run also clears what a crash left and says what it
    /// caught up on, and the `last` says when it had to stop before the end. (An update of
    /// the run stopped by its end is no news: the last update follows it.)
    async fn update(self: &Arc<Self>, stop: Arc<AtomicBool>, first: bool, last: bool) {
        if !(self.enabled)() {
            return;
        }
        let gallery = self.gallery.clone();
        let updated = self
            .on_thread(move || {
                let stop = || stop.load(Ordering::Relaxed);
                if first {
                    gallery.update_after_start(&stop)
                } else {
                    gallery.update(&stop)
                }
            })
            .await;
        match updated {
            Some(Ok(updated)) if updated.behind && last => tracing::info!(
                "the gallery has {} jobs; the rest is added at the next start",
                updated.total
            ),
            Some(Ok(updated)) if first && updated.added > 0 => tracing::info!(
                "the gallery caught up on {} jobs ({} in all)",
                updated.added,
                updated.total
            ),
            Some(Ok(_)) => {}
            Some(Err(error)) => tracing::warn!(
                "cannot update the gallery in {}: {error}",
                self.gallery.index().display()
            ),
            None => tracing::error!("the gallery update stopped unexpectedly"),
        }
    }
}

/// The gallery's thread: it does one piece of work after another, at a low priority.
fn start_thread() -> Option<mpsc::Sender<Work>> {
    let (sender, receiver) = mpsc::channel::<Work>();
    std::thread::Builder::new()
        .name("drawdrop-gallery".into())
        .spawn(move || {
            lower_priority();
            for work in receiver {
                work();
            }
        })
        .ok()?;
    Some(sender)
}

/// This thread yields to the others: nice 10 on Linux, the background band on macOS.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority(2) on this thread's own id, with a valid nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
    #[cfg(target_vendor = "apple")]
    // SAFETY: setpriority(2) on the calling thread (id 0) with Darwin's background band.
    unsafe {
        libc::setpriority(libc::PRIO_DARWIN_THREAD, 0, libc::PRIO_DARWIN_BG);
    }
}
