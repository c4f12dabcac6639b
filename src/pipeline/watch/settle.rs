//! The settle rule: a file is taken once its size and mtime have not changed for the settle
//! window. A pure function of (path, size, mtime, now), so it is tested on paused time.
//!
//! Each observation of a path either starts its window, restarts it (the file changed), or,
//! when the window has passed unchanged, declares it settled. Deadlines are kept in a heap so
//! the watch loop always knows when to look again without scanning every tracked file.

use crate::jobs::seen::Observation;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The outcome of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not yet: look again at this instant.
    Waiting(Instant),
    /// Unchanged for the whole window: take it.
    Settled,
}

/// Files being watched until they settle.
#[derive(Debug)]
pub(crate) struct Settler {
    window: Duration,
    /// `--once`: a file whose mtime is already older than the window counts as settled at once.
    trust_old_mtime: bool,
    tracked: HashMap<PathBuf, Tracked>,
    /// Deadlines, possibly stale (a path re-observed or forgotten since): checked on pop.
    deadlines: BinaryHeap<Reverse<(Instant, PathBuf)>>,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    seen: Observation,
    unchanged_since: Instant,
}

impl Settler {
    pub(crate) fn new(window: Duration, trust_old_mtime: bool) -> Self {
        Settler {
            window,
            trust_old_mtime,
            tracked: HashMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    /// Records what a file looks like now and says whether it has settled.
    /// A settled path is forgotten: observing it again starts a new window.
    pub(crate) fn observe(&mut self, path: &Path, seen: Observation, now: Instant) -> Verdict {
        let trusted_old = self.trust_old_mtime && self.is_old(seen.mtime);
        let verdict = match self.tracked.get_mut(path) {
            Some(tracked) if tracked.seen == seen => {
                let deadline = tracked.unchanged_since + self.window;
                if now >= deadline {
                    Verdict::Settled
                } else {
                    Verdict::Waiting(deadline)
                }
            }
            Some(tracked) => {
                *tracked = Tracked {
                    seen,
                    unchanged_since: now,
                };
                Verdict::Waiting(now + self.window)
            }
            None if trusted_old => Verdict::Settled,
            None => {
                let tracked = Tracked {
                    seen,
                    unchanged_since: now,
                };
                self.tracked.insert(path.to_path_buf(), tracked);
                Verdict::Waiting(now + self.window)
            }
        };
        match verdict {
            Verdict::Settled => {
                self.tracked.remove(path);
            }
            Verdict::Waiting(deadline) => {
                self.deadlines.push(Reverse((deadline, path.to_path_buf())))
            }
        }
        verdict
    }

    /// A new settle window (the config changed); files being watched keep their start.
    pub(crate) fn set_window(&mut self, window: Duration) {
        self.window = window;
        let deadlines = self
            .tracked
            .iter()
            .map(|(path, tracked)| Reverse((tracked.unchanged_since + window, path.clone())))
            .collect();
        self.deadlines = deadlines;
    }

    /// Stops watching a path (it vanished or was taken).
    pub(crate) fn forget(&mut self, path: &Path) {
        self.tracked.remove(path);
    }

    /// The earliest instant at which some tracked file may have settled.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_deadlines();
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Paths whose window has passed by `now`, in natural order; the caller looks at each
    /// again and observes it.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut due = Vec::new();
        while let Some(Reverse((deadline, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            if let Some(Reverse((deadline, path))) = self.deadlines.pop()
                && self.is_current(&path, deadline)
                && !due.contains(&path)
            {
                due.push(path);
            }
        }
        // Ready together: taken in natural order.
        due.sort_by(|a, b| crate::pipeline::natural::compare_paths(a, b));
        due
    }

    /// Number of files being watched.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tracked.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Whether a path is being watched.
    pub(crate) fn is_tracking(&self, path: &Path) -> bool {
        self.tracked.contains_key(path)
    }

    fn is_old(&self, mtime: SystemTime) -> bool {
        SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= self.window)
    }

    fn is_current(&self, path: &Path, deadline: Instant) -> bool {
        self.tracked
            .get(path)
            .is_some_and(|tracked| tracked.unchanged_since + self.window == deadline)
    }

    fn drop_stale_deadlines(&mut self) {
        while let Some(Reverse((deadline, path))) = self.deadlines.peek() {
            if self.is_current(path, *deadline) {
                break;
            }
            self.deadlines.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(1000);

    fn seen(size: u64, mtime_secs: u64) -> Observation {
        Observation {
            size,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + mtime_secs),
        }
    }

    fn fresh(size: u64) -> Observation {
        Observation {
            size,
            mtime: SystemTime::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn settles_after_an_unchanged_window() {
        let mut settler = Settler::new(WINDOW, false);
        let path = Path::new("cat.png");
        let start = Instant::now();
        assert_eq!(
            settler.observe(path, seen(10, 1), start),
            Verdict::Waiting(start + WINDOW)
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            settler.observe(path, seen(10, 1), Instant::now()),
            Verdict::Waiting(start + WINDOW)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            settler.observe(path, seen(10, 1), Instant::now()),
            Verdict::Settled
        );
        assert!(!settler.is_tracking(path));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_in_size_or_mtime_restarts_the_window() {
        let mut settler = Settler::new(WINDOW, false);
        let path = Path::new("slow.png");
        settler.observe(path, seen(10, 1), Instant::now());
        tokio::time::advance(Duration::from_millis(800)).await;
        let grown = Instant::now();
        assert_eq!(
            settler.observe(path, seen(20, 1), grown),
            Verdict::Waiting(grown + WINDOW)
        );
        tokio::time::advance(Duration::from_millis(800)).await;
        let touched = Instant::now();
        assert_eq!(
            settler.observe(path, seen(20, 2), touched),
            Verdict::Waiting(touched + WINDOW)
        );
        tokio::time::advance(WINDOW).await;
        assert_eq!(
            settler.observe(path, seen(20, 2), Instant::now()),
            Verdict::Settled
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_being_written_never_settles_while_it_grows() {
        let mut settler = Settler::new(WINDOW, false);
        let path = Path::new("copying.png");
        for size in 0..50 {
            let verdict = settler.observe(path, seen(size * 1000, size), Instant::now());
            assert!(
                matches!(verdict, Verdict::Waiting(_)),
                "settled at step {size}"
            );
            tokio::time::advance(Duration::from_millis(900)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn old_files_settle_at_once_only_when_trusted() {
        let old = Observation {
            size: 5,
            mtime: SystemTime::now() - Duration::from_secs(60),
        };
        let mut once = Settler::new(WINDOW, true);
        assert_eq!(
            once.observe(Path::new("a.png"), old, Instant::now()),
            Verdict::Settled
        );
        assert!(matches!(
            once.observe(Path::new("b.png"), fresh(5), Instant::now()),
            Verdict::Waiting(_)
        ));
        let mut daemon = Settler::new(WINDOW, false);
        assert!(matches!(
            daemon.observe(Path::new("a.png"), old, Instant::now()),
            Verdict::Waiting(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn due_lists_each_path_once_and_skips_stale_deadlines() {
        let mut settler = Settler::new(WINDOW, false);
        let start = Instant::now();
        settler.observe(Path::new("a.png"), seen(1, 1), start);
        settler.observe(Path::new("b.png"), seen(1, 1), start);
        tokio::time::advance(Duration::from_millis(500)).await;
        // b changes: its first deadline is stale now.
        settler.observe(Path::new("b.png"), seen(2, 1), Instant::now());
        settler.observe(Path::new("c.png"), seen(1, 1), Instant::now());
        settler.forget(Path::new("c.png"));
        assert_eq!(settler.next_deadline(), Some(start + WINDOW));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(settler.due(Instant::now()), vec![PathBuf::from("a.png")]);
        assert_eq!(
            settler.next_deadline(),
            Some(start + WINDOW + Duration::from_millis(500))
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(settler.due(Instant::now()), vec![PathBuf::from("b.png")]);
        assert_eq!(settler.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn files_due_together_come_in_natural_order() {
        let mut settler = Settler::new(WINDOW, false);
        for (name, after_ms) in [("img_10.png", 0), ("img_2.png", 5), ("img_1.png", 9)] {
            tokio::time::advance(Duration::from_millis(after_ms)).await;
            settler.observe(Path::new(name), seen(1, 1), Instant::now());
        }
        tokio::time::advance(WINDOW).await;
        assert_eq!(
            settler.due(Instant::now()),
            ["img_1.png", "img_2.png", "img_10.png"].map(PathBuf::from)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn settled_paths_start_over_when_seen_again() {
        let mut settler = Settler::new(WINDOW, false);
        let path = Path::new("again.png");
        settler.observe(path, seen(1, 1), Instant::now());
        tokio::time::advance(WINDOW).await;
        assert_eq!(
            settler.observe(path, seen(1, 1), Instant::now()),
            Verdict::Settled
        );
        assert!(matches!(
            settler.observe(path, seen(1, 1), Instant::now()),
            Verdict::Waiting(_)
        ));
        assert!(!settler.is_empty());
    }
}
