//! The queue between the watch stage and the workers: settled files in arrival order (files
//! that arrive together in natural order), and claimed jobs a server handed over (first in
//! line).
//!
//! It holds paths, never images, so a flood of files costs little memory. A path stays
//! "queued" from the moment it settles until a worker has claimed it (or handed it back to
//! be watched again because it changed), so a rescan in between never queues it twice.
//! Workers of different servers take different work (`pop_matching`). The queue also knows
//! when nothing is left to do, which ends a `run --once`.

use crate::jobs::claim::Job;
use crate::jobs::seen::Observation;
use crate::pipeline::natural::compare_paths;
use crate::pipeline::pool::Handover;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Settled files queued within this long of each other count as present together: they
/// are taken in natural order rather than in the order they happened to settle.
pub(crate) const TOGETHER: Duration = Duration::from_secs(2);
/// A file queued together with others moves ahead of at most this many of them, so a flood
/// of names arriving in reverse order costs no more than that per file.
const LONGEST_REORDER: usize = 1000;

/// One piece of work for a worker.
#[derive(Debug)]
pub(crate) enum Work {
    /// A file in the inbox that has settled, with what it looked like then.
    Settled {
        relative: PathBuf,
        seen: Observation,
    },
    /// A claimed job not yet decided, handed over by a server that could not do it (with
    /// what the servers said so far).
    Claimed(Job, Handover),
    /// A claimed job not yet decided that an earlier run left behind.
    Recovered(Job),
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Wakes every waiting worker: work came, a job ended, or the queue closed.
    work_ready: Notify,
    /// Wakes the watch stage: a path was handed back, or the queue went idle.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Work>,
    /// Inbox paths queued or being claimed by a worker, with when they were queued.
    queued: HashMap<PathBuf, Instant>,
    /// Paths a worker found changed after they settled: to be watched again.
    handed_back: Vec<PathBuf>,
    /// Settled items popped but not yet finished with (claimed or handed back).
    in_hand: usize,
    /// Claimed jobs being worked on (they may come back as `Claimed` work).
    active: usize,
    closed: bool,
}

impl Inner {
    fn drained(&self) -> bool {
        self.closed && self.items.is_empty() && self.in_hand == 0 && self.active == 0
    }
}

impl Queue {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds work at the back. A settled path that is already queued is not added twice.
    /// Settled files queued within [`TOGETHER`] of each other (a folder copied in, a
    /// multi-file drag, a scan) line up in natural order: `img_2` before `img_10`, whatever
    /// order they were written in; files that came apart keep their arrival order.
    pub(crate) fn push(&self, work: Work) -> bool {
        let mut inner = self.lock();
        let Work::Settled { relative, .. } = &work else {
            inner.items.push_back(work);
            drop(inner);
            self.work_ready.notify_waiters();
            return true;
        };
        if inner.queued.contains_key(relative) {
            return false;
        }
        let now = Instant::now();
        let mut at = inner.items.len();
        let farthest = at.saturating_sub(LONGEST_REORDER);
        while at > farthest
            && let Work::Settled {
                relative: before, ..
            } = &inner.items[at - 1]
            && inner
                .queued
                .get(before)
                .is_some_and(|queued| now.saturating_duration_since(*queued) <= TOGETHER)
            && compare_paths(before, relative) == Ordering::Greater
        {
            at -= 1;
        }
        inner.queued.insert(relative.clone(), now);
        inner.items.insert(at, work);
        drop(inner);
        self.work_ready.notify_waiters();
        true
    }

    /// Puts a claimed job first in line (a server handed it over).
    pub(crate) fn push_front(&self, work: Work) {
        self.lock().items.push_front(work);
        self.work_ready.notify_waiters();
    }

    /// Puts popped work back where it was, untouched (its worker cannot go on just now).
    pub(crate) fn unpop(&self, work: Work) {
        let mut inner = self.lock();
        match work {
            Work::Settled { .. } => inner.in_hand = inner.in_hand.saturating_sub(1),
            Work::Claimed(..) | Work::Recovered(_) => inner.active = inner.active.saturating_sub(1),
        }
        inner.items.push_front(work);
        drop(inner);
        self.work_ready.notify_waiters();
    }

    /// Whether an inbox path is queued or being claimed right now.
    pub(crate) fn contains(&self, relative: &Path) -> bool {
        self.lock().queued.contains_key(relative)
    }

    /// The first work `matches` accepts, waiting for it; `None` once the queue is closed and
    /// nothing is left to do. A claimed job popped counts as active until [`Queue::job_ended`].
    pub(crate) async fn pop_matching(&self, matches: impl Fn(&Work) -> bool) -> Option<Work> {
        self.wait_for(|inner| {
            if let Some(at) = inner.items.iter().position(&matches) {
                let work = inner.items.remove(at)?;
                match work {
                    Work::Settled { .. } => inner.in_hand += 1,
                    Work::Claimed(..) | Work::Recovered(_) => inner.active += 1,
                }
                return Some(Some(work));
            }
            inner.drained().then_some(None)
        })
        .await
    }

    /// Waits until work is waiting (true) or nothing is left to do (false). A worker waits
    /// here before it asks whether its server answers, so no server is asked anything
    /// before a file needs it (`run --once` on an empty inbox asks nothing).
    pub(crate) async fn has_work(&self) -> bool {
        self.wait_for(|inner| {
            if !inner.items.is_empty() {
                Some(true)
            } else {
                inner.drained().then_some(false)
            }
        })
        .await
    }

    /// Waits until the queue is closed and nothing is left to do.
    pub(crate) async fn drained(&self) {
        self.wait_for(|inner| inner.drained().then_some(())).await
    }

    /// Waits until `ready` returns something, looking again whenever work changes.
    async fn wait_for<T>(&self, mut ready: impl FnMut(&mut Inner) -> Option<T>) -> T {
        loop {
            let notified = self.work_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = ready(&mut self.lock()) {
                return value;
            }
            notified.await;
        }
    }

    /// A worker is done with a settled path it popped: it vanished, or it was claimed (then
    /// `claimed` and the job counts as active).
    pub(crate) fn release(&self, relative: &Path, claimed: bool) {
        let mut inner = self.lock();
        inner.queued.remove(relative);
        inner.in_hand = inner.in_hand.saturating_sub(1);
        if claimed {
            inner.active += 1;
        }
        drop(inner);
        self.changed.notify_one();
        self.work_ready.notify_waiters();
    }

    /// A worker found a popped path changed since it settled: watch it again.
    pub(crate) fn hand_back(&self, relative: &Path) {
        let mut inner = self.lock();
        inner.queued.remove(relative);
        inner.in_hand = inner.in_hand.saturating_sub(1);
        inner.handed_back.push(relative.to_path_buf());
        drop(inner);
        self.changed.notify_one();
    }

    /// A claimed job is being worked on outside the queue (one found decided at start).
    pub(crate) fn job_started(&self) {
        self.lock().active += 1;
    }

    /// A claimed job left a worker: decided, put back, or handed over (pushed again first).
    pub(crate) fn job_ended(&self) {
        let mut inner = self.lock();
        inner.active = inner.active.saturating_sub(1);
        drop(inner);
        self.work_ready.notify_waiters();
    }

    /// Paths handed back since the last call.
    pub(crate) fn take_handed_back(&self) -> Vec<PathBuf> {
        std::mem::take(&mut self.lock().handed_back)
    }

    /// Waits until a path is handed back or a worker lets go of one.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// True when no settled path is queued, in a worker's hand or handed back.
    pub(crate) fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.queued.is_empty() && inner.in_hand == 0 && inner.handed_back.is_empty()
    }

    /// True when nothing is waiting, in hand, handed back or being worked on: a batch is
    /// over (the queue may stay open for more). Read at one instant, under one lock.
    pub(crate) fn is_quiet(&self) -> bool {
        let inner = self.lock();
        inner.items.is_empty()
            && inner.queued.is_empty()
            && inner.in_hand == 0
            && inner.handed_back.is_empty()
            && inner.active == 0
    }

    /// Items waiting for a worker.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No more files will come: workers finish what is queued and active, then
    /// `pop_matching` returns `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work_ready.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::mutex::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn settled(name: &str) -> Work {
        Work::Settled {
            relative: PathBuf::from(name),
            seen: Observation {
                size: 1,
                mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            },
        }
    }

    fn name(work: Option<Work>) -> String {
        match work {
            Some(Work::Settled { relative, .. }) => relative.to_string_lossy().into_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn any(_: &Work) -> bool {
        true
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_arrival_order_and_refuses_duplicates() {
        let queue = Queue::new();
        assert!(queue.push(settled("b.png")));
        tokio::time::advance(TOGETHER * 2).await;
        assert!(queue.push(settled("a.png")));
        assert!(!queue.push(settled("b.png")));
        assert_eq!(name(queue.pop_matching(any).await), "b.png");
        // Still queued while a worker holds it.
        assert!(!queue.push(settled("b.png")));
        queue.release(Path::new("b.png"), false);
        tokio::time::advance(TOGETHER * 2).await;
        assert!(queue.push(settled("b.png")));
        assert_eq!(name(queue.pop_matching(any).await), "a.png");
        assert_eq!(name(queue.pop_matching(any).await), "b.png");
    }

    #[tokio::test(start_paused = true)]
    async fn files_queued_together_line_up_in_natural_order() {
        let queue = Queue::new();
        // As a copier writes a folder, in its own order, within a second.
        for file in [
            "batch/img_10.png",
            "batch/img_2.png",
            "batch/img_1.png",
            "batch/deep/z.png",
            "batch/img_3.png",
        ] {
            queue.push(settled(file));
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        // Then, long after, a file whose name sorts first: it keeps its place at the back.
        tokio::time::advance(TOGETHER * 2).await;
        queue.push(settled("a.png"));
        let mut order = Vec::new();
        while !queue.is_empty() {
            order.push(name(queue.pop_matching(any).await));
        }
        assert_eq!(
            order,
            [
                "batch/deep/z.png",
                "batch/img_1.png",
                "batch/img_2.png",
                "batch/img_3.png",
                "batch/img_10.png",
                "a.png"
            ]
        );
    }

    #[tokio::test]
    async fn workers_take_only_what_matches_in_order() {
        let queue = Queue::new();
        for file in ["w/a.png", "b.png", "w/c.png"] {
            queue.push(settled(file));
        }
        let in_w = |work: &Work| matches!(work, Work::Settled { relative, .. } if relative.starts_with("w"));
        assert_eq!(name(queue.pop_matching(in_w).await), "w/a.png");
        assert_eq!(name(queue.pop_matching(in_w).await), "w/c.png");
        assert_eq!(name(queue.pop_matching(any).await), "b.png");
    }

    #[tokio::test]
    async fn idle_only_when_nothing_is_queued_held_or_handed_back() {
        let queue = Queue::new();
        assert!(queue.is_idle());
        queue.push(settled("a.png"));
        assert!(!queue.is_idle());
        let _ = queue.pop_matching(any).await;
        assert!(!queue.is_idle());
        queue.hand_back(Path::new("a.png"));
        assert!(!queue.is_idle());
        assert_eq!(queue.take_handed_back(), vec![PathBuf::from("a.png")]);
        assert!(queue.is_idle());
    }

    #[tokio::test]
    async fn has_work_waits_for_work_or_the_end() {
        let queue = Arc::new(Queue::new());
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.has_work().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "an open, empty queue has no work yet"
        );
        queue.push(settled("a.png"));
        assert!(
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap()
        );
        let _ = queue.pop_matching(any).await;
        queue.release(Path::new("a.png"), false);
        queue.close();
        assert!(
            !queue.has_work().await,
            "closed and empty: nothing will come"
        );
    }

    #[tokio::test]
    async fn closing_ends_the_waits_only_once_no_job_is_active() {
        let queue = Arc::new(Queue::new());
        queue.push(settled("a.png"));
        let _ = queue.pop_matching(any).await;
        queue.release(Path::new("a.png"), true);
        queue.close();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.pop_matching(|_| false).await.is_none() })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "a job may still come back"
        );
        queue.job_ended();
        for waiter in waiters {
            assert!(
                tokio::time::timeout(Duration::from_secs(10), waiter)
                    .await
                    .unwrap()
                    .unwrap()
            );
        }
        tokio::time::timeout(Duration::from_secs(10), queue.drained())
            .await
            .unwrap();
    }
}
