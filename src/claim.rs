//! Durable claims: a file is moved out of the inbox's sight, durably, before it is sent, so
//! a crash or `kill -9` at any moment leaves it either in the inbox or in a claimed job
//! that the next start finishes.
//!
//! ```text
//! inbox/.drawdrop/lock                         held while a daemon runs (one per inbox)
//! inbox/.drawdrop/jobs/<id>/in/<relative path> the claimed input, at its path in the inbox
//! inbox/.drawdrop/jobs/<id>/commit.json        written once the outcome is decided
//! ```
//! Job ids sort in claim order. The relative path is kept as a path, not as text, so any
//! file name survives.

use crate::durable;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

const STATE_DIR: &str = ".drawdrop";
const COMMIT_FILE: &str = "commit.json";
const INPUT_DIR: &str = "in";

/// The claimed-jobs area of one inbox.
#[derive(Debug, Clone)]
pub struct Claims {
    inbox: PathBuf,
    jobs: PathBuf,
}

/// One claimed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Sorts in claim order; also names the job's staging folder in the outbox.
    pub id: String,
    /// Path relative to the inbox, as it was dropped.
    pub relative: PathBuf,
    dir: PathBuf,
}

impl Job {
    /// Where the claimed input is now.
    pub fn input(&self) -> PathBuf {
        self.dir.join(INPUT_DIR).join(&self.relative)
    }

    /// The job's commit record, present once its outcome is decided.
    pub fn commit_file(&self) -> PathBuf {
        self.dir.join(COMMIT_FILE)
    }

    /// Whether the input is still in the job (not yet archived or failed).
    pub fn has_input(&self) -> bool {
        !self.relative.as_os_str().is_empty()
            && fs::symlink_metadata(self.input()).is_ok_and(|meta| meta.is_file())
    }
}

/// A second daemon found the inbox already taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another drawdrop{} is already watching {inbox}", holder.map(|pid| format!(" (process {pid})")).unwrap_or_default())]
    Held { inbox: PathBuf, holder: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held while this process owns the inbox; the OS releases it when the process dies, so a
/// lock left by a killed daemon never blocks a restart.
#[derive(Debug)]
pub struct InboxLock {
    _file: File,
}

impl Claims {
    pub fn new(inbox: &Path) -> Self {
        Claims {
            inbox: inbox.to_path_buf(),
            jobs: inbox.join(STATE_DIR).join("jobs"),
        }
    }

    /// Creates the state folders.
    pub fn create(&self) -> io::Result<()> {
        durable::create_dir_all(&self.jobs)
    }

    /// Takes the inbox for this process, or says who has it.
    pub fn lock(&self) -> Result<InboxLock, LockError> {
        let path = self.inbox.join(STATE_DIR).join("lock");
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io_error)?;
                file.rewind().map_err(io_error)?;
                writeln!(file, "{}", std::process::id()).map_err(io_error)?;
                Ok(InboxLock { _file: file })
            }
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(LockError::Held {
                    inbox: self.inbox.clone(),
                    holder: holder.trim().parse().ok(),
                })
            }
            Err(fs::TryLockError::Error(error)) => Err(io_error(error)),
        }
    }

    /// Moves `relative` out of the inbox into a new job, durably. `Ok(None)` when the file
    /// is no longer there (the person took it back).
    pub fn claim(&self, relative: &Path) -> io::Result<Option<Job>> {
        let id = new_job_id();
        let job = Job {
            id: id.clone(),
            relative: relative.to_path_buf(),
            dir: self.jobs.join(&id),
        };
        let target = job.input();
        let target_dir = parent(&target);
        fs::create_dir_all(target_dir)?;
        let source = self.inbox.join(relative);
        match fs::rename(&source, &target) {
            Ok(()) => {
                durable::sync_dir(target_dir)?;
                durable::sync_dir(parent(&source))?;
                durable::sync_dir(&self.jobs)?;
                Ok(Some(job))
            }
            Err(error) => {
                let _ = durable::remove_tree(&job.dir);
                if error.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Puts a claimed input back into the inbox (at its old path, or the next free
    /// ` (N)` name if a new file took it) and forgets the job. Returns the path used.
    pub fn unclaim(&self, job: &Job) -> io::Result<PathBuf> {
        let input = job.input();
        durable::create_dir_all(parent(&self.inbox.join(&job.relative)))?;
        for n in 1u32.. {
            let relative = crate::outbox::with_number(&job.relative, n);
            if durable::rename_no_replace(&input, &self.inbox.join(&relative))? {
                durable::sync_dir(parent(&self.inbox.join(&relative)))?;
                self.forget(job)?;
                return Ok(relative);
            }
        }
        Err(io::Error::other("no free name in the inbox"))
    }

    /// Removes a finished job's folder.
    pub fn forget(&self, job: &Job) -> io::Result<()> {
        durable::remove_tree(&job.dir)?;
        durable::sync_dir(&self.jobs)
    }

    /// Jobs left by an earlier run, in claim order. Folders of claims that never completed
    /// (no input and no commit) are removed, and so are jobs whose input was being put back
    /// into the inbox (see [`Claims::was_put_back`]).
    pub fn recover(&self) -> io::Result<Vec<Job>> {
        let mut ids: Vec<String> = match fs::read_dir(&self.jobs) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        ids.sort();
        let mut jobs = Vec::new();
        for id in ids {
            let dir = self.jobs.join(&id);
            let input = find_single_file(&dir.join(INPUT_DIR))?;
            let committed = dir.join(COMMIT_FILE).is_file();
            match input {
                Some(relative) if !committed && self.was_put_back(&dir, &relative) => {
                    durable::remove_tree(&dir)?;
                    durable::sync_dir(&self.jobs)?;
                }
                Some(relative) => jobs.push(Job { id, relative, dir }),
                None if committed => jobs.push(Job {
                    id,
                    relative: PathBuf::new(),
                    dir,
                }),
                None => durable::remove_tree(&dir)?,
            }
        }
        Ok(jobs)
    }

    /// Whether the uncommitted job in `dir` was being put back when the last run ended:
    /// `unclaim` links the input into the inbox (at its name or the next free ` (N)`) and
    /// then removes the job, so a kill in between leaves the same file in both places.
    /// Sending the job again would make the inbox copy a second input; the put-back is
    /// completed instead and the file is taken from the inbox like any other.
    fn was_put_back(&self, dir: &Path, relative: &Path) -> bool {
        let input = dir.join(INPUT_DIR).join(relative);
        for n in 1u32.. {
            let candidate = self.inbox.join(crate::outbox::with_number(relative, n));
            if fs::symlink_metadata(&candidate).is_err() {
                return false;
            }
            if durable::same_file(&input, &candidate) {
                return true;
            }
        }
        false
    }

    /// How many jobs are claimed right now (for `status`).
    pub fn count(&self) -> usize {
        fs::read_dir(&self.jobs).map(|e| e.count()).unwrap_or(0)
    }
}

/// The one file under `dir` (the claimed input), as a path relative to `dir`.
fn find_single_file(dir: &Path) -> io::Result<Option<PathBuf>> {
    let mut relative = PathBuf::new();
    loop {
        let entries = match fs::read_dir(dir.join(&relative)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(entry) = entries.filter_map(Result::ok).next() else {
            return Ok(None);
        };
        relative.push(entry.file_name());
        if !entry.file_type()?.is_dir() {
            return Ok(Some(relative));
        }
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Milliseconds since the epoch, a per-process counter and the process id: sortable by
/// claim time and unique across processes sharing an outbox.
fn new_job_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = jiff::Timestamp::now().as_millisecond();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{millis:013}-{count:06}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Claims) {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path());
        claims.create().unwrap();
        (dir, claims)
    }

    #[test]
    fn claim_moves_the_file_out_of_sight_and_recover_finds_it() {
        let (dir, claims) = setup();
        fs::create_dir_all(dir.path().join("watercolor")).unwrap();
        fs::write(dir.path().join("watercolor/cat.png"), b"png").unwrap();
        let job = claims
            .claim(Path::new("watercolor/cat.png"))
            .unwrap()
            .unwrap();
        assert!(!dir.path().join("watercolor/cat.png").exists());
        assert_eq!(fs::read(job.input()).unwrap(), b"png");
        let recovered = Claims::new(dir.path()).recover().unwrap();
        assert_eq!(recovered, vec![job]);
    }

    #[test]
    fn claiming_a_vanished_file_leaves_nothing_behind() {
        let (_dir, claims) = setup();
        assert_eq!(claims.claim(Path::new("gone.png")).unwrap(), None);
        assert_eq!(claims.count(), 0);
    }

    #[test]
    fn unclaim_puts_the_file_back_without_overwriting() {
        let (dir, claims) = setup();
        fs::write(dir.path().join("cat.png"), b"first").unwrap();
        let job = claims.claim(Path::new("cat.png")).unwrap().unwrap();
        fs::write(dir.path().join("cat.png"), b"second").unwrap();
        assert_eq!(claims.unclaim(&job).unwrap(), Path::new("cat (2).png"));
        assert_eq!(fs::read(dir.path().join("cat (2).png")).unwrap(), b"first");
        assert_eq!(fs::read(dir.path().join("cat.png")).unwrap(), b"second");
        assert_eq!(claims.count(), 0);
    }

    #[test]
    fn recover_keeps_claim_order_and_drops_empty_claims() {
        let (dir, claims) = setup();
        let mut jobs = Vec::new();
        for name in ["b.png", "a.png"] {
            fs::write(dir.path().join(name), name).unwrap();
            jobs.push(claims.claim(Path::new(name)).unwrap().unwrap());
        }
        fs::create_dir_all(dir.path().join(".drawdrop/jobs/0000000000000-000000-1/in")).unwrap();
        assert_eq!(claims.recover().unwrap(), jobs);
        assert_eq!(claims.count(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn recover_completes_a_put_back_interrupted_between_link_and_unlink() {
        let (dir, claims) = setup();
        fs::write(dir.path().join("cat.png"), b"taken").unwrap();
        let job = claims.claim(Path::new("cat.png")).unwrap().unwrap();
        fs::write(dir.path().join("cat.png"), b"a new file of that name").unwrap();
        // unclaim linked the input to the next free name, then was killed.
        fs::hard_link(job.input(), dir.path().join("cat (2).png")).unwrap();
        assert_eq!(claims.recover().unwrap(), Vec::new());
        assert_eq!(claims.count(), 0);
        assert_eq!(fs::read(dir.path().join("cat (2).png")).unwrap(), b"taken");
        assert_eq!(
            fs::read(dir.path().join("cat.png")).unwrap(),
            b"a new file of that name"
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_names_its_holder() {
        let (_dir, claims) = setup();
        let held = claims.lock().unwrap();
        match claims.lock() {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        claims.lock().unwrap();
    }
}
