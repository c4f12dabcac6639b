//! The jobs in flight right now, for `drawdrop status`: each one's file, server, start and
//! step, kept by the daemon and written to `outbox/.drawdrop/in-flight.json` (temporary
//! file, then rename; removed when nothing is in flight) at most [`WRITES_PER_SECOND`]
//! times a second. `status` reads only that
//! file, never the daemon's memory.
//!
//! Backends tell progress through a [`Reporter`] ([`Progress`] events): A1111's polled
//! `GET /sdapi/v1/progress` today; a server that tells nothing leaves only the time.

use crate::jobs::durable;
use crate::mutex::lock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The state file is rewritten at most this often.
pub const WRITES_PER_SECOND: u32 = 4;

/// What a backend says about a job while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A new attempt began: what an earlier one reported no longer holds.
    Attempt,
    /// The server is at `step` of `steps`.
    Step { step: u32, steps: u32 },
}

/// One job in flight, as written to the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flying {
    /// The input's path in the inbox.
    pub file: String,
    pub server: String,
    /// When it was first sent, in milliseconds since 1970.
    pub started_ms: i64,
    pub step: Option<u32>,
    pub steps: Option<u32>,
}

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The daemon that wrote it: a file left by a daemon that died means nothing.
    pub pid: u32,
    pub jobs: Vec<Flying>,
}

/// The daemon's list of jobs in flight.
#[derive(Debug)]
pub struct InFlight {
    file: PathBuf,
    jobs: Mutex<(u64, BTreeMap<u64, Flying>)>,
    changed: Notify,
}

impl InFlight {
    /// A list written to `outbox/.drawdrop/in-flight.json`.
    pub fn new(outbox: &Path) -> Arc<InFlight> {
        Arc::new(InFlight {
            file: state_file(outbox),
            jobs: Mutex::new((0, BTreeMap::new())),
            changed: Notify::new(),
        })
    }

    /// A job was sent to `server`: it is in flight until the reporter is dropped.
    pub fn start(self: &Arc<Self>, file: &Path, server: &str) -> Reporter {
        let flying = Flying {
            file: file.to_string_lossy().into_owned(),
            server: server.to_owned(),
            started_ms: jiff::Timestamp::now().as_millisecond(),
            step: None,
            steps: None,
        };
        let id = {
            let mut jobs = lock(&self.jobs);
            jobs.0 += 1;
            let id = jobs.0;
            jobs.1.insert(id, flying);
            id
        };
        self.changed.notify_one();
        Reporter {
            list: self.clone(),
            id,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            pid: std::process::id(),
            jobs: lock(&self.jobs).1.values().cloned().collect(),
        }
    }

    /// Writes the state file after every change, at most [`WRITES_PER_SECOND`] times a
    /// second, until `cancel`; then removes it.
    pub async fn run_writer(self: Arc<Self>, cancel: CancellationToken) {
        let pause = Duration::from_secs(1) / WRITES_PER_SECOND;
        self.remove_leftovers();
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = cancel.cancelled() => break,
            }
            let snapshot = self.snapshot();
            let file = self.file.clone();
            let written = tokio::task::spawn_blocking(move || {
                if snapshot.jobs.is_empty() {
                    durable::remove_file(&file)
                } else {
                    let text = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
                    durable::write_replacing(&file, &text)
                }
            })
            .await;
            if let Ok(Err(error)) = written {
                tracing::debug!("cannot write {}: {error}", self.file.display());
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => break,
            }
        }
        let _ = durable::remove_file(&self.file);
    }

    /// The file (and a temporary of it) left by a daemon that was killed.
    fn remove_leftovers(&self) {
        let _ = durable::remove_file(&self.file);
        let (Some(folder), Some(name)) = (self.file.parent(), self.file.file_name()) else {
            return;
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let entry_name = entry.file_name();
            let entry_name = entry_name.to_string_lossy();
            if entry_name.starts_with(&prefix) && entry_name.ends_with(".tmp") {
                let _ = durable::remove_file(&entry.path());
            }
        }
    }

    fn change(&self, id: u64, event: Progress) {
        {
            let mut jobs = lock(&self.jobs);
            let Some(job) = jobs.1.get_mut(&id) else {
                return;
            };
            let (step, steps) = match event {
                Progress::Attempt => (None, None),
                Progress::Step { step, steps } => (Some(step.min(steps)), Some(steps)),
            };
            if (job.step, job.steps) == (step, steps) {
                return;
            }
            (job.step, job.steps) = (step, steps);
        }
        self.changed.notify_one();
    }
}

/// Where one job's progress goes; the job leaves the list when this is dropped.
#[derive(Debug)]
pub struct Reporter {
    list: Arc<InFlight>,
    id: u64,
}

impl Reporter {
    pub fn report(&self, event: Progress) {
        self.list.change(self.id, event);
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        lock(&self.list.jobs).1.remove(&self.id);
        self.list.changed.notify_one();
    }
}

/// `outbox/.drawdrop/in-flight.json`.
pub fn state_file(outbox: &Path) -> PathBuf {
    outbox.join(".drawdrop").join("in-flight.json")
}

/// The jobs in flight as daemon `pid` last wrote them; empty when it wrote none.
pub fn read(outbox: &Path, pid: u32) -> Vec<Flying> {
    std::fs::read(state_file(outbox))
        .ok()
        .and_then(|text| serde_json::from_slice::<Snapshot>(&text).ok())
        .filter(|snapshot| snapshot.pid == pid)
        .map(|snapshot| snapshot.jobs)
        .unwrap_or_default()
}

/// `cat.png on mini, 12 s, step 12/30` (the time since it was sent, at `now_ms`).
pub fn describe(job: &Flying, now_ms: i64) -> String {
    let seconds = (now_ms - job.started_ms).max(0) / 1000;
    let elapsed = if seconds >= 60 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds} s")
    };
    let mut line = format!("{} on {}, {elapsed}", job.file, job.server);
    if let (Some(step), Some(steps)) = (job.step, job.steps) {
        line.push_str(&format!(", step {step}/{steps}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_state_file_follows_the_jobs_and_is_gone_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let list = InFlight::new(dir.path());
        let leftover = dir.path().join(".drawdrop/.in-flight.json.drawdrop-1.tmp");
        durable::write_whole(&leftover, b"{").unwrap();
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(list.clone().run_writer(cancel.clone()));
        let reporter = list.start(Path::new("w/cat.png"), "mini");
        reporter.report(Progress::Step { step: 3, steps: 20 });
        let pid = std::process::id();
        let mut seen = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen = read(dir.path(), pid);
            if seen.first().and_then(|job| job.step) == Some(3) {
                break;
            }
        }
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(!leftover.exists(), "what a killed daemon left is gone");
        assert_eq!(seen[0].steps, Some(20));
        assert!(
            read(dir.path(), pid + 1).is_empty(),
            "another daemon's file"
        );
        drop(reporter);
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if read(dir.path(), pid).is_empty() {
                break;
            }
        }
        assert!(read(dir.path(), pid).is_empty());
        cancel.cancel();
        writer.await.unwrap();
        assert!(!state_file(dir.path()).exists());
    }

    #[test]
    fn a_job_reads_as_file_server_time_and_step() {
        let mut job = Flying {
            file: "w/cat.png".into(),
            server: "mini".into(),
            started_ms: 1_000,
            step: None,
            steps: None,
        };
        assert_eq!(describe(&job, 13_500), "w/cat.png on mini, 12 s");
        (job.step, job.steps) = (Some(12), Some(30));
        assert_eq!(
            describe(&job, 76_000),
            "w/cat.png on mini, 1m 15s, step 12/30"
        );
    }
}
