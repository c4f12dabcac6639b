//! Counting finished jobs, for the `--once` summary, its progress bar and its exit code.

use crate::mutex::lock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Something that shows progress (a terminal progress bar); optional.
pub(crate) trait Progress: Send + Sync {
    fn found(&self, total: usize);
    fn finished(&self, done: usize, failed: usize, last: &str);
    /// What the run waits for (a server that does not answer), or `None` once it stops.
    fn waiting(&self, what: Option<&str>);
}

#[derive(Default)]
pub(crate) struct Tally {
    done: AtomicUsize,
    failed: AtomicUsize,
    found: AtomicUsize,
    progress: Mutex<Option<Box<dyn Progress>>>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn show_progress(&self, progress: Box<dyn Progress>) {
        *lock(&self.progress) = Some(progress);
    }

    /// More files were found (the total grows).
    pub(crate) fn add_found(&self, count: usize) {
        if count == 0 {
            return;
        }
        let total = self.found.fetch_add(count, Ordering::Relaxed) + count;
        self.with_progress(|p| p.found(total));
    }

    pub(crate) fn add_done(&self, what: &str) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.report(what);
    }

    pub(crate) fn add_failed(&self, what: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.report(what);
    }

    /// Shows what the run waits for, or (`None`) that it waits no more.
    pub(crate) fn waiting(&self, what: Option<&str>) {
        self.with_progress(|p| p.waiting(what));
    }

    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    fn report(&self, what: &str) {
        let (done, failed) = (self.done(), self.failed());
        self.with_progress(|p| p.finished(done, failed, what));
    }

    fn with_progress(&self, f: impl FnOnce(&dyn Progress)) {
        if let Some(progress) = lock(&self.progress).as_deref() {
            f(progress);
        }
    }
}
