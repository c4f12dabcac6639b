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

use crate::jobs::durable;
use crate::jobs::outbox;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

const STATE_DIR: &str = ".drawdrop";
const COMMIT_FILE: &str = "commit.json";
/// How many starts found the job unfinished.
const RESTARTS_FILE: &str = "restarts";
/// What a backend noted it sent for the job: the server's name, a newline, the note.
const SENT_FILE: &str = "sent";
const INPUT_DIR: &str = "in";
/// Files beside `cat.png` that belong to it: `cat.txt` (its prompt) and `cat.toml` (settings).
pub(crate) const SIDECAR_EXTENSIONS: [&str; 2] = ["txt", "toml"];

/// The claimed-jobs area of one inbox.
#[derive(Debug, Clone)]
pub(crate) struct Claims {
    inbox: PathBuf,
    jobs: PathBuf,
}

/// One claimed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Sorts in claim order; also names the job's staging folder in the outbox.
    pub id: String,
    /// Path relative to the inbox, as it was dropped.
    pub relative: PathBuf,
    dir: PathBuf,
}

impl Job {
    /// Where the claimed input is now.
    pub(crate) fn input(&self) -> PathBuf {
        self.dir.join(INPUT_DIR).join(&self.relative)
    }

    /// The claimed sidecar with this extension (`cat.txt`, `cat.toml`), if it came along.
    pub(crate) fn sidecar(&self, extension: &str) -> Option<PathBuf> {
        let path = self.input().with_extension(extension);
        path.is_file().then_some(path)
    }

    /// Every file the job holds (the picture and its sidecars), relative to the inbox.
    pub(crate) fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = durable::files_under(&self.dir.join(INPUT_DIR))?;
        files.sort();
        Ok(files)
    }

    /// Where a file of [`Job::files`] is now.
    pub(crate) fn claimed(&self, relative: &Path) -> PathBuf {
        self.dir.join(INPUT_DIR).join(relative)
    }

    /// The job's commit record, present once its outcome is decided.
    pub(crate) fn commit_file(&self) -> PathBuf {
        self.dir.join(COMMIT_FILE)
    }

    /// What a backend noted it sent for this job, as (server name, note); kept across a
    /// restart, gone with the claim.
    pub(crate) fn sent_note(&self) -> Option<(String, String)> {
        let text = fs::read_to_string(self.dir.join(SENT_FILE)).ok()?;
        let (server, note) = text.split_once('\n')?;
        Some((server.to_owned(), note.trim_end().to_owned()))
    }

    /// Notes durably (it is on disk when this returns) what server `server` was sent for
    /// this job, replacing an earlier note.
    pub(crate) fn note_sent(&self, server: &str, note: &str) -> io::Result<()> {
        let text = format!("{}\n{note}\n", server.replace('\n', " "));
        durable::write_whole(&self.dir.join(SENT_FILE), text.as_bytes())
    }

    /// Counts one more start that found this job unfinished, and returns how many did. A
    /// file that makes drawdrop crash every time is failed after a few, not retried forever.
    pub(crate) fn count_restart(&self) -> io::Result<u32> {
        let path = self.dir.join(RESTARTS_FILE);
        let before: u32 = fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        durable::write_whole(&path, format!("{}\n", before + 1).as_bytes())?;
        Ok(before + 1)
    }
}

/// A second daemon found the inbox already taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("another drawdrop{} is already watching {inbox}", holder.map(|pid| format!(" (process {pid})")).unwrap_or_default())]
    Held { inbox: PathBuf, holder: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held while this process owns the inbox; the OS releases it when the process dies, so a
/// lock left by a killed daemon never blocks a restart.
#[derive(Debug)]
pub(crate) struct InboxLock {
    _file: File,
}

impl Claims {
    pub(crate) fn new(inbox: &Path) -> Self {
        Claims {
            inbox: inbox.to_path_buf(),
            jobs: inbox.join(STATE_DIR).join("jobs"),
        }
    }

    /// Creates the state folders.
    pub(crate) fn create(&self) -> io::Result<()> {
        durable::create_dir_all(&self.jobs)
    }

    /// Takes the inbox for this process, or says who has it.
    pub(crate) fn lock(&self) -> Result<InboxLock, LockError> {
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

    /// The process that holds the inbox, if one runs (for `status`): the pid written in the
    /// lock file, if that process is alive. Never takes the lock itself.
    pub(crate) fn holder(&self) -> Option<u32> {
        let text = fs::read_to_string(self.inbox.join(STATE_DIR).join("lock")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        is_alive(pid).then_some(pid)
    }

    /// Moves `relative` out of the inbox into a new job, durably, with its sidecars
    /// (`cat.txt`, `cat.toml` beside `cat.png`), which go first: a claim holding sidecars but
    /// no picture never completed and is undone by [`Claims::recover`]. `Ok(None)` when the
    /// picture is no longer there (the person took it back).
    pub(crate) fn claim(&self, relative: &Path) -> io::Result<Option<Job>> {
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
        let moved = SIDECAR_EXTENSIONS
            .iter()
            .map(|extension| {
                (
                    source.with_extension(extension),
                    target.with_extension(extension),
                )
            })
            .chain([(source.clone(), target.clone())])
            .try_for_each(|(from, to)| match fs::rename(&from, &to) {
                Err(error) if error.kind() == io::ErrorKind::NotFound && from != source => Ok(()),
                other => other,
            });
        match moved {
            // No fsync: should a power loss undo the claim, the file is simply back in the
            // inbox and sent again; the commit's fsync makes the claim durable with it.
            Ok(()) => Ok(Some(job)),
            Err(error) => {
                // Sidecars that moved go back; then the half-made job goes.
                self.return_files(&job)?;
                durable::remove_tree(&job.dir)?;
                if error.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Puts a claimed input and its sidecars back into the inbox (at their old paths, or the
    /// next free ` (N)` names if new files took them) and forgets the job. Returns the
    /// picture's path in the inbox.
    pub(crate) fn unclaim(&self, job: &Job) -> io::Result<PathBuf> {
        let placed = self.return_files(job)?;
        self.forget(job)?;
        Ok(placed
            .into_iter()
            .find(|path| path.extension() == job.relative.extension())
            .unwrap_or_else(|| job.relative.clone()))
    }

    /// Moves every file of a job back into the inbox, one number for the whole set.
    fn return_files(&self, job: &Job) -> io::Result<Vec<PathBuf>> {
        self.return_files_as(job, None)
    }

    /// [`Claims::return_files`] from collision number `number` on (a put-back being finished
    /// keeps the number its picture already has), or from the first number free for all.
    fn return_files_as(&self, job: &Job, number: Option<u32>) -> io::Result<Vec<PathBuf>> {
        let files = job.files()?;
        let free = number.unwrap_or_else(|| {
            outbox::first_free_in(&self.inbox, |n| {
                files
                    .iter()
                    .map(|file| outbox::with_number(file, n))
                    .collect()
            })
        });
        files
            .iter()
            .map(|file| outbox::place_in(&self.inbox, &job.claimed(file), file, free))
            .collect()
    }

    /// Removes a finished job's folder. A jobs folder that is gone (the inbox was deleted,
    /// with drawdrop's state in it) means the job is forgotten already.
    pub(crate) fn forget(&self, job: &Job) -> io::Result<()> {
        durable::remove_tree(&job.dir)
    }

    /// Jobs left by an earlier run, in claim order. Folders of claims that never completed
    /// (no input and no commit) are removed, and so are jobs whose input was being put back
    /// into the inbox (see [`Claims::put_back_as`]).
    pub(crate) fn recover(&self) -> io::Result<Vec<Job>> {
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
            let mut job = Job {
                id,
                relative: PathBuf::new(),
                dir,
            };
            let picture = job
                .files()?
                .into_iter()
                .find(|file| crate::jobs::names::is_candidate(file));
            let committed = job.commit_file().is_file();
            let put_back = match &picture {
                Some(relative) if !committed => self.put_back_as(&job, relative),
                _ => None,
            };
            match picture {
                // Being put back when the last run ended: finish putting it back.
                Some(_) if put_back.is_some() => {
                    self.return_files_as(&job, put_back)?;
                    durable::remove_tree(&job.dir)?;
                }
                Some(relative) => {
                    job.relative = relative;
                    jobs.push(job);
                }
                // Its picture already moved on; the commit says what is left to do.
                None if committed => jobs.push(job),
                // A claim that never completed: sidecars it took go back.
                None => {
                    self.return_files(&job)?;
                    durable::remove_tree(&job.dir)?;
                }
            }
        }
        Ok(jobs)
    }

    /// The number (1: its own name) under which the uncommitted job's picture was being put
    /// back when the last run ended, if it was:
    /// `unclaim` links the input into the inbox (at its name or the next free ` (N)`) and
    /// then removes the job, so a kill in between leaves the same file in both places.
    /// Sending the job again would make the inbox copy a second input; the put-back is
    /// completed instead and the file is taken from the inbox like any other.
    fn put_back_as(&self, job: &Job, relative: &Path) -> Option<u32> {
        let input = job.claimed(relative);
        for n in 1u32.. {
            let candidate = self.inbox.join(outbox::with_number(relative, n));
            if fs::symlink_metadata(&candidate).is_err() {
                return None;
            }
            if durable::same_file(&input, &candidate) {
                return Some(n);
            }
        }
        None
    }

    /// After a job's picture has left the folder at `relative` for good: removes that
    /// folder, then the folders above it, while each is empty, so a folder copied into the
    /// inbox does not stay behind once drawdrop has taken every file in it. Never the inbox
    /// itself, nor a folder `keep` names (a profile's); never a folder that holds anything:
    /// `rmdir` fails unless the folder is empty, so a file arriving meanwhile keeps it.
    /// Returns the folders removed, relative to the inbox.
    pub(crate) fn remove_emptied_folders(
        &self,
        relative: &Path,
        keep: impl Fn(&Path) -> bool,
    ) -> Vec<PathBuf> {
        relative
            .ancestors()
            .skip(1)
            .take_while(|folder| !folder.as_os_str().is_empty() && !keep(folder))
            .map_while(|folder| {
                fs::remove_dir(self.inbox.join(folder))
                    .ok()
                    .map(|()| folder.to_path_buf())
            })
            .collect()
    }

    /// How many jobs are claimed right now (for `status`).
    pub(crate) fn count(&self) -> usize {
        fs::read_dir(&self.jobs).map(|e| e.count()).unwrap_or(0)
    }
}

/// Whether a process with this id exists.
fn is_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let result = unsafe { libc::kill(pid, 0) };
        result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
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
    fn folders_emptied_by_a_claim_go_up_to_a_kept_one_and_not_beyond_what_holds_anything() {
        let (dir, claims) = setup();
        let root = dir.path();
        for file in [
            "watercolor/batch/deep/a.png",
            "batch30/sub/b.png",
            "notes/c.png",
            "notes/readme.txt",
        ] {
            fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            fs::write(root.join(file), b"x").unwrap();
        }
        fs::create_dir_all(root.join("batch30/made-empty-by-the-user")).unwrap();
        let keep = |folder: &Path| folder == Path::new("watercolor");
        let mut removed = Vec::new();
        for file in [
            "watercolor/batch/deep/a.png",
            "batch30/sub/b.png",
            "notes/c.png",
        ] {
            let job = claims.claim(Path::new(file)).unwrap().unwrap();
            removed.extend(claims.remove_emptied_folders(&job.relative, keep));
        }
        assert_eq!(
            removed,
            ["watercolor/batch/deep", "watercolor/batch", "batch30/sub"].map(PathBuf::from)
        );
        assert!(root.join("watercolor").is_dir(), "a profile's folder stays");
        assert!(root.join("batch30/made-empty-by-the-user").is_dir());
        assert!(root.join("notes/readme.txt").is_file());
        // A file directly in the inbox: the inbox itself stays.
        fs::write(root.join("d.png"), b"x").unwrap();
        let job = claims.claim(Path::new("d.png")).unwrap().unwrap();
        assert!(
            claims
                .remove_emptied_folders(&job.relative, keep)
                .is_empty()
        );
        assert!(root.is_dir());
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
    fn sidecars_travel_with_their_picture_and_back() {
        let (dir, claims) = setup();
        fs::create_dir_all(dir.path().join("w")).unwrap();
        for name in ["w/cat.png", "w/cat.txt", "w/cat.toml", "w/dog.txt"] {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let job = claims.claim(Path::new("w/cat.png")).unwrap().unwrap();
        assert_eq!(
            job.files().unwrap(),
            [
                Path::new("w/cat.png"),
                Path::new("w/cat.toml"),
                Path::new("w/cat.txt")
            ]
        );
        assert_eq!(fs::read(job.sidecar("txt").unwrap()).unwrap(), b"w/cat.txt");
        assert!(dir.path().join("w/dog.txt").exists(), "other sidecars stay");
        assert!(!dir.path().join("w/cat.txt").exists());
        fs::write(dir.path().join("w/cat.txt"), b"a new one").unwrap();
        assert_eq!(claims.unclaim(&job).unwrap(), Path::new("w/cat (2).png"));
        assert_eq!(
            fs::read(dir.path().join("w/cat (2).txt")).unwrap(),
            b"w/cat.txt"
        );
        assert_eq!(
            fs::read(dir.path().join("w/cat (2).toml")).unwrap(),
            b"w/cat.toml"
        );
        assert_eq!(
            fs::read(dir.path().join("w/cat.txt")).unwrap(),
            b"a new one"
        );
    }

    #[test]
    fn a_claim_that_took_only_sidecars_is_undone_on_recovery() {
        let (dir, claims) = setup();
        let half = dir.path().join(".drawdrop/jobs/0000000000001-000000-1/in");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join("cat.txt"), b"prompt").unwrap();
        assert!(claims.recover().unwrap().is_empty());
        assert_eq!(fs::read(dir.path().join("cat.txt")).unwrap(), b"prompt");
        assert_eq!(claims.count(), 0);
    }

    #[test]
    fn forgetting_a_job_whose_inbox_was_deleted_succeeds() {
        let (dir, claims) = setup();
        fs::write(dir.path().join("cat.png"), b"png").unwrap();
        let job = claims.claim(Path::new("cat.png")).unwrap().unwrap();
        fs::remove_dir_all(dir.path().join(STATE_DIR)).unwrap();
        claims.forget(&job).unwrap();
        assert!(!dir.path().join(STATE_DIR).exists(), "nothing recreated");
    }

    #[test]
    fn the_lock_is_exclusive_and_names_its_holder() {
        let (_dir, claims) = setup();
        let held = claims.lock().unwrap();
        match claims.lock() {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(claims.holder(), Some(std::process::id()));
        drop(held);
        claims.lock().unwrap();
    }
}
