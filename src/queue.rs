//! The queue between the watch stage and the workers: settled files in arrival order.
//!
//! It holds paths, never images, so a flood of files costs little memory. A path stays
//! "queued" from the moment it settles until a worker has claimed it (or handed it back to
//! be watched again because it changed), so a rescan in between never queues it twice.
//! The queue also knows when nothing is left to do, which ends a `run --once`.

use crate::claim::Job;
use crate::watch::settle::Observation;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// One piece of work for a worker.
#[derive(Debug)]
pub enum Work {
    /// A file in the inbox that has settled, with what it looked like then.
    Settled {
        relative: PathBuf,
        seen: Observation,
    },
    /// A job claimed by an earlier run that did not finish it.
    Recovered(Job),
}

#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    /// Wakes workers waiting for work.
    work_ready: Notify,
    /// Wakes the watch stage: a path was handed back, or the queue went idle.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Work>,
    /// Inbox paths queued or being claimed by a worker.
    queued: HashSet<PathBuf>,
    /// Paths a worker found changed after they settled: to be watched again.
    handed_back: Vec<PathBuf>,
    /// Items popped but not yet finished with (claimed or handed back).
    in_hand: usize,
    closed: bool,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds work at the back. A settled path that is already queued is not added twice.
    pub fn push(&self, work: Work) -> bool {
        let mut inner = self.lock();
        if let Work::Settled { relative, .. } = &work
            && !inner.queued.insert(relative.clone())
        {
            return false;
        }
        inner.items.push_back(work);
        drop(inner);
        self.work_ready.notify_one();
        true
    }

    /// Whether an inbox path is queued or being claimed right now.
    pub fn contains(&self, relative: &Path) -> bool {
        self.lock().queued.contains(relative)
    }

    /// The next work, waiting for it; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<Work> {
        loop {
            let notified = self.work_ready.notified();
            {
                let mut inner = self.lock();
                if let Some(work) = inner.items.pop_front() {
                    if matches!(work, Work::Settled { .. }) {
                        inner.in_hand += 1;
                    }
                    let more = !inner.items.is_empty();
                    drop(inner);
                    if more {
                        self.work_ready.notify_one();
                    }
                    return Some(work);
                }
                if inner.closed {
                    drop(inner);
                    self.work_ready.notify_one();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// A worker is done with a settled path it popped: it claimed it, or it vanished.
    pub fn release(&self, relative: &Path) {
        let mut inner = self.lock();
        inner.queued.remove(relative);
        inner.in_hand = inner.in_hand.saturating_sub(1);
        drop(inner);
        self.changed.notify_one();
    }

    /// A worker found a popped path changed since it settled: watch it again.
    pub fn hand_back(&self, relative: &Path) {
        let mut inner = self.lock();
        inner.queued.remove(relative);
        inner.in_hand = inner.in_hand.saturating_sub(1);
        inner.handed_back.push(relative.to_path_buf());
        drop(inner);
        self.changed.notify_one();
    }

    /// Paths handed back since the last call.
    pub fn take_handed_back(&self) -> Vec<PathBuf> {
        std::mem::take(&mut self.lock().handed_back)
    }

    /// Waits until a path is handed back or a worker lets go of one.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// True when no settled path is queued, in a worker's hand or handed back.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.queued.is_empty() && inner.in_hand == 0 && inner.handed_back.is_empty()
    }

    /// Items waiting for a worker.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No more work will come: workers finish what is queued, then `pop` returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work_ready.notify_waiters();
        self.work_ready.notify_one();
    }

    /// Drops work not yet started (on shutdown): those files simply stay in the inbox.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.queued.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going with it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[tokio::test]
    async fn keeps_arrival_order_and_refuses_duplicates() {
        let queue = Queue::new();
        assert!(queue.push(settled("a.png")));
        assert!(queue.push(settled("b.png")));
        assert!(!queue.push(settled("a.png")));
        assert_eq!(name(queue.pop().await), "a.png");
        // Still queued while a worker holds it.
        assert!(!queue.push(settled("a.png")));
        queue.release(Path::new("a.png"));
        assert!(queue.push(settled("a.png")));
        assert_eq!(name(queue.pop().await), "b.png");
        assert_eq!(name(queue.pop().await), "a.png");
    }

    #[tokio::test]
    async fn idle_only_when_nothing_is_queued_held_or_handed_back() {
        let queue = Queue::new();
        assert!(queue.is_idle());
        queue.push(settled("a.png"));
        assert!(!queue.is_idle());
        let _ = queue.pop().await;
        assert!(!queue.is_idle());
        queue.hand_back(Path::new("a.png"));
        assert!(!queue.is_idle());
        assert_eq!(queue.take_handed_back(), vec![PathBuf::from("a.png")]);
        assert!(queue.is_idle());
    }

    #[tokio::test]
    async fn close_wakes_every_waiting_worker() {
        let queue = std::sync::Arc::new(Queue::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.pop().await.is_none() })
            })
            .collect();
        tokio::task::yield_now().await;
        queue.close();
        for waiter in waiters {
            assert!(
                tokio::time::timeout(Duration::from_secs(10), waiter)
                    .await
                    .unwrap()
                    .unwrap()
            );
        }
    }
}
