//! Finishing a job in two phases, so that a crash at any moment neither loses the input
//! nor writes a result twice.
//!
//! 1. Stage: the results (or the `.error.txt`) are written whole into the job's staging
//!    folder in the outbox, laid out as they will be in the outbox, and fsynced.
//! 2. Commit: `commit.json` is written into the claimed job. From here on the job is never
//!    sent again; before it, a restart discards the staging folder and sends it again.
//! 3. Apply (idempotent, redone by a restart): the input moves into staging (a rename, or a
//!    copy across file systems), everything staged moves into place without overwriting,
//!    the `jobs.jsonl` line is appended, and the job and its staging folder are removed.

use crate::jobs::claim::{Claims, Job};
use crate::jobs::durable;
use crate::jobs::failpoint::crash_point;
use crate::jobs::names::is_candidate;
use crate::jobs::outbox::{self, Outbox};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the input goes once the job is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InputTo {
    Originals,
    Failed,
    Deleted,
}

/// The decision about a job, written before anything is moved into the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Commit {
    pub input_to: InputTo,
    /// The collision number of the input's new name (1: its own name).
    pub input_number: u32,
    /// The `jobs.jsonl` line, completed with the final names when applied.
    pub record: serde_json::Map<String, Value>,
}

/// What happened to a job's files, relative to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Placed {
    pub results: Vec<PathBuf>,
    /// `originals/...` or `failed/...`; `None` when deleted.
    pub input: Option<PathBuf>,
}

/// The outbox and inbox sides of finishing; cheap to clone into blocking tasks.
#[derive(Debug, Clone)]
pub(crate) struct Finisher {
    pub outbox: Arc<Outbox>,
    pub claims: Claims,
    /// Inbox and outbox on one file system: its journal orders the staged files' names
    /// before the commit, so their folders need no fsync of their own.
    pub one_file_system: bool,
}

impl Finisher {
    /// Decides a job that made `images`: the results (named after the input) are staged and
    /// the commit written. From here on the job is never sent again; [`Finisher::resume`]
    /// moves everything into place.
    pub(crate) fn decide_done(
        &self,
        job: &Job,
        images: &[Vec<u8>],
        input_to: InputTo,
        mut record: serde_json::Map<String, Value>,
    ) -> io::Result<()> {
        let number = self
            .outbox
            .first_free(|n| outbox::result_names(&job.relative, images.len(), n));
        let names = outbox::result_names(&job.relative, images.len(), number);
        self.stage(job, &names, images)?;
        crash_point("staged");
        record.insert("outputs".into(), paths_json(&names));
        let input_number = match input_to {
            InputTo::Deleted => 1,
            _ => self.input_number(job, input_to),
        };
        self.commit(job, input_to, input_number, record)
    }

    /// Decides a job that could not be done: the input and `<name>.error.txt` go to `failed/`.
    pub(crate) fn decide_failed(
        &self,
        job: &Job,
        reason_text: &str,
        mut record: serde_json::Map<String, Value>,
    ) -> io::Result<()> {
        let number = self.input_number(job, InputTo::Failed);
        let failed_input = input_destination(&job.relative, InputTo::Failed, number);
        let error_file = outbox::error_file_for(&failed_input);
        self.stage(job, &[error_file], &[reason_text.as_bytes()])?;
        record.insert("outputs".into(), Value::Array(Vec::new()));
        self.commit(job, InputTo::Failed, number, record)
    }

    /// Completes a decided job: moves its files into place, writes its `jobs.jsonl` line and
    /// forgets it. Idempotent, so it also finishes a job found committed at start, or one an
    /// earlier try left half done (`Resumed::Yes`: its line may be written already).
    pub(crate) fn resume(&self, job: &Job, resumed: Resumed) -> io::Result<Placed> {
        let text = std::fs::read(job.commit_file())?;
        let commit: Commit = serde_json::from_slice(&text)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.apply(job, &commit, resumed)
    }

    /// Removes what a crash left in the staging area that belongs to no claimed job (folders
    /// of jobs that were finished all but this, probe files).
    pub(crate) fn clear_stale_staging(&self, jobs: &[Job]) -> io::Result<()> {
        let root = self.outbox.staging_root();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if jobs.iter().any(|job| name == job.id.as_str()) {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                durable::remove_tree(&path)?;
            } else {
                durable::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// A job claimed but not committed: anything staged for it is stale.
    pub(crate) fn discard_staging(&self, job: &Job) -> io::Result<()> {
        durable::remove_tree(&self.outbox.staging(&job.id))
    }

    /// A fresh staging folder for the job holding `contents` under `names`, on disk (and,
    /// across file systems, their folders too).
    fn stage(&self, job: &Job, names: &[PathBuf], contents: &[impl AsRef<[u8]>]) -> io::Result<()> {
        let staging = self.outbox.staging(&job.id);
        durable::remove_tree(&staging)?;
        durable::create_dir_all(&staging)?;
        for (name, content) in names.iter().zip(contents) {
            durable::write_new(&staging.join(name), content.as_ref())?;
        }
        if !self.one_file_system {
            sync_folders_of(&staging, names)?;
        }
        Ok(())
    }

    /// The first collision number free for every file of the job (and the error file).
    fn input_number(&self, job: &Job, input_to: InputTo) -> u32 {
        let files = job.files().unwrap_or_else(|_| vec![job.relative.clone()]);
        self.outbox.first_free(|n| {
            let mut names: Vec<PathBuf> = files
                .iter()
                .map(|file| input_destination(file, input_to, n))
                .collect();
            if input_to == InputTo::Failed {
                names.push(outbox::error_file_for(&input_destination(
                    &job.relative,
                    input_to,
                    n,
                )));
            }
            names
        })
    }

    fn commit(
        &self,
        job: &Job,
        input_to: InputTo,
        input_number: u32,
        mut record: serde_json::Map<String, Value>,
    ) -> io::Result<()> {
        if input_to != InputTo::Deleted {
            let destination = input_destination(&job.relative, input_to, input_number);
            record.insert(
                input_key(input_to).into(),
                Value::from(destination.to_string_lossy()),
            );
        }
        let commit = Commit {
            input_to,
            input_number,
            record,
        };
        let text = serde_json::to_vec(&commit).map_err(io::Error::other)?;
        durable::write_whole(&job.commit_file(), &text)?;
        crash_point("committed");
        Ok(())
    }

    /// Idempotent: safe to redo after a crash at any point. Resumed, it writes the
    /// `jobs.jsonl` line only if an earlier run has not written it yet.
    fn apply(&self, job: &Job, commit: &Commit, resumed: Resumed) -> io::Result<Placed> {
        let staging = self.outbox.staging(&job.id);
        let files = job.files()?;
        for file in &files {
            let claimed = job.claimed(file);
            match commit.input_to {
                InputTo::Deleted => durable::remove_file(&claimed)?,
                to => {
                    let destination = input_destination(file, to, commit.input_number);
                    durable::move_file(&claimed, &staging.join(destination))?;
                }
            }
        }
        if !files.is_empty() {
            crash_point("input-moved");
        }
        let mut placed = Placed::default();
        for path in self.outbox.place_staged(&staging)? {
            match path.components().next().map(|c| c.as_os_str()) {
                Some(top) if top == outbox::ORIGINALS || top == outbox::FAILED => {
                    if is_candidate(&path) {
                        placed.input = Some(path);
                    }
                }
                _ => placed.results.push(path),
            }
        }
        let mut record = commit.record.clone();
        if !placed.results.is_empty() {
            record.insert("outputs".into(), paths_json(&placed.results));
        }
        if let Some(input) = &placed.input {
            record.insert(
                input_key(commit.input_to).into(),
                Value::from(input.to_string_lossy()),
            );
        }
        // A run that ended between the line and the removal of the job wrote it already.
        let journaled = resumed == Resumed::Yes && self.outbox.has_job_line(&job.id)?;
        if !journaled {
            let line = serde_json::to_string(&record).map_err(io::Error::other)?;
            self.outbox.append_job_line(&line)?;
        }
        crash_point("journaled");
        self.claims.forget(job)?;
        durable::remove_tree(&staging)?;
        Ok(placed)
    }
}

/// Whether completing a decided job is a first try (`No`) or a job an earlier try (in this
/// run or a previous one) may have left half done (`Yes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resumed {
    No,
    Yes,
}

/// The `jobs.jsonl` key naming where the input went.
fn input_key(input_to: InputTo) -> &'static str {
    match input_to {
        InputTo::Failed => "failed_as",
        _ => "original",
    }
}

/// `originals/<relative>` or `failed/<relative>` with collision number `n`.
fn input_destination(relative: &Path, input_to: InputTo, n: u32) -> PathBuf {
    let folder = match input_to {
        InputTo::Failed => outbox::FAILED,
        _ => outbox::ORIGINALS,
    };
    Path::new(folder).join(outbox::with_number(relative, n))
}

fn paths_json(paths: &[PathBuf]) -> Value {
    Value::Array(
        paths
            .iter()
            .map(|path| Value::from(path.to_string_lossy()))
            .collect(),
    )
}

/// Syncs the folders holding staged files: the commit goes to the inbox's file system, which
/// may be another one, and must never be on disk before the staged files' names are.
fn sync_folders_of(staging: &Path, names: &[PathBuf]) -> io::Result<()> {
    let mut folders: Vec<PathBuf> = names
        .iter()
        .filter_map(|name| staging.join(name).parent().map(Path::to_path_buf))
        .collect();
    folders.dedup();
    folders
        .iter()
        .try_for_each(|folder| durable::sync_dir(folder))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Fixture {
        _dir: tempfile::TempDir,
        inbox: PathBuf,
        outbox: Arc<Outbox>,
        claims: Claims,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("in");
        let outbox = Arc::new(Outbox::new(dir.path().join("out")));
        outbox.create().unwrap();
        let claims = Claims::new(&inbox);
        claims.create().unwrap();
        Fixture {
            _dir: dir,
            inbox,
            outbox,
            claims,
        }
    }

    impl Fixture {
        fn finisher(&self) -> Finisher {
            Finisher {
                outbox: self.outbox.clone(),
                claims: self.claims.clone(),
                one_file_system: false,
            }
        }

        /// Stages `result` under the input's name and commits the job by hand (its record
        /// naming the job), as if the process died right after the commit.
        fn commit_by_hand(&self, job: &Job, result: &[u8]) -> Commit {
            let staging = self.outbox.staging(&job.id);
            durable::write_new(&staging.join(&job.relative), result).unwrap();
            let mut record = serde_json::Map::new();
            record.insert("job".into(), Value::from(job.id.clone()));
            let commit = Commit {
                input_to: InputTo::Originals,
                input_number: 1,
                record,
            };
            durable::write_whole(&job.commit_file(), &serde_json::to_vec(&commit).unwrap())
                .unwrap();
            commit
        }

        fn claim(&self, relative: &str, content: &[u8]) -> Job {
            let path = self.inbox.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            self.claims.claim(Path::new(relative)).unwrap().unwrap()
        }

        fn done(&self, job: &Job, images: &[Vec<u8>], input_to: InputTo) -> Placed {
            let finisher = self.finisher();
            finisher
                .decide_done(job, images, input_to, Default::default())
                .unwrap();
            finisher.resume(job, Resumed::No).unwrap()
        }

        fn failed(&self, job: &Job, reason: &str) -> Placed {
            let finisher = self.finisher();
            finisher
                .decide_failed(job, reason, Default::default())
                .unwrap();
            finisher.resume(job, Resumed::No).unwrap()
        }

        fn out(&self, relative: &str) -> Vec<u8> {
            fs::read(self.outbox.root().join(relative)).unwrap()
        }

        fn lines(&self) -> Vec<Value> {
            fs::read_to_string(self.outbox.jobs_log())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    #[test]
    fn done_places_results_and_archives_the_input() {
        let f = fixture();
        let job = f.claim("w/cat.png", b"input");
        let placed = f.done(&job, &[b"r1".to_vec(), b"r2".to_vec()], InputTo::Originals);
        assert_eq!(
            placed.results,
            [Path::new("w/cat-1.png"), Path::new("w/cat-2.png")]
        );
        assert_eq!(
            placed.input.as_deref(),
            Some(Path::new("originals/w/cat.png"))
        );
        assert_eq!(f.out("w/cat-1.png"), b"r1");
        assert_eq!(f.out("originals/w/cat.png"), b"input");
        assert_eq!(f.claims.count(), 0);
        assert_eq!(fs::read_dir(f.outbox.staging_root()).unwrap().count(), 0);
        let lines = f.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["outputs"],
            serde_json::json!(["w/cat-1.png", "w/cat-2.png"])
        );
        assert_eq!(lines[0]["original"], "originals/w/cat.png");
    }

    #[test]
    fn a_second_run_of_the_same_name_never_overwrites() {
        let f = fixture();
        for content in [b"first".as_slice(), b"second"] {
            let job = f.claim("cat.png", content);
            f.done(&job, &[content.to_vec()], InputTo::Originals);
        }
        assert_eq!(f.out("cat.png"), b"first");
        assert_eq!(f.out("cat (2).png"), b"second");
        assert_eq!(f.out("originals/cat.png"), b"first");
        assert_eq!(f.out("originals/cat (2).png"), b"second");
    }

    #[test]
    fn failed_moves_the_input_with_its_reason() {
        let f = fixture();
        let job = f.claim("bad.png", b"junk");
        let placed = f.failed(&job, "Reason: not a PNG\n");
        assert_eq!(placed.input.as_deref(), Some(Path::new("failed/bad.png")));
        assert!(placed.results.is_empty());
        assert_eq!(f.out("failed/bad.png"), b"junk");
        assert_eq!(f.out("failed/bad.png.error.txt"), b"Reason: not a PNG\n");
        assert_eq!(f.lines()[0]["failed_as"], "failed/bad.png");
    }

    #[test]
    fn sidecars_go_along_and_an_error_file_keeps_its_pictures_number() {
        let f = fixture();
        fs::create_dir_all(f.outbox.failed()).unwrap();
        // Two failures of the same name decided before either is applied.
        let first = f.claim("cat.png", b"one");
        fs::write(f.inbox.join("cat.txt"), b"prompt two").unwrap();
        f.finisher()
            .decide_failed(&first, "first\n", Default::default())
            .unwrap();
        let second = f.claim("cat.png", b"two");
        f.finisher()
            .decide_failed(&second, "second\n", Default::default())
            .unwrap();
        f.finisher().resume(&first, Resumed::No).unwrap();
        let placed = f.finisher().resume(&second, Resumed::Yes).unwrap();
        assert_eq!(
            placed.input.as_deref(),
            Some(Path::new("failed/cat (2).png"))
        );
        assert_eq!(f.out("failed/cat (2).png"), b"two");
        assert_eq!(f.out("failed/cat (2).png.error.txt"), b"second\n");
        assert_eq!(f.out("failed/cat (2).txt"), b"prompt two");
        assert_eq!(f.out("failed/cat.png.error.txt"), b"first\n");
    }

    #[test]
    fn delete_removes_the_input() {
        let f = fixture();
        let job = f.claim("cat.png", b"input");
        let placed = f.done(&job, &[b"r".to_vec()], InputTo::Deleted);
        assert_eq!(placed.input, None);
        assert!(!f.outbox.originals().join("cat.png").exists());
        assert!(!job.input().exists());
    }

    #[test]
    fn a_committed_job_interrupted_before_apply_is_finished_by_resume_exactly_once() {
        let f = fixture();
        let job = f.claim("cat.png", b"input");
        f.commit_by_hand(&job, b"result");
        let recovered = f.claims.recover().unwrap();
        assert_eq!(recovered.len(), 1);
        let placed = f.finisher().resume(&recovered[0], Resumed::Yes).unwrap();
        assert_eq!(placed.results, [Path::new("cat.png")]);
        assert_eq!(f.out("cat.png"), b"result");
        assert_eq!(f.out("originals/cat.png"), b"input");
        assert!(f.claims.recover().unwrap().is_empty());
        assert!(!f.outbox.root().join("cat (2).png").exists());
    }

    #[test]
    fn resume_after_the_journal_line_was_written_writes_no_second_line() {
        let f = fixture();
        let job = f.claim("cat.png", b"input");
        let commit = f.commit_by_hand(&job, b"result");
        let staging = f.outbox.staging(&job.id);
        f.outbox.append_job_line("{\"job\":\"another\"}").unwrap();
        // Everything done but the removal of the job, as a kill after the line leaves it.
        durable::move_file(&job.input(), &staging.join("originals/cat.png")).unwrap();
        f.outbox.place_staged(&staging).unwrap();
        let line = serde_json::to_string(&commit.record).unwrap();
        f.outbox.append_job_line(&line).unwrap();
        let recovered = f.claims.recover().unwrap();
        f.finisher().resume(&recovered[0], Resumed::Yes).unwrap();
        let lines = f.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1]["job"], Value::from(job.id.clone()));
        assert_eq!(f.claims.count(), 0);
        // A job resumed before its line was written still gets it.
        let second = f.claim("dog.png", b"input");
        f.commit_by_hand(&second, b"result");
        f.finisher().resume(&second, Resumed::Yes).unwrap();
        assert_eq!(f.lines().len(), 3);
        assert_eq!(f.out("originals/dog.png"), b"input");
    }

    #[test]
    fn resume_after_the_input_already_moved_still_places_the_rest() {
        let f = fixture();
        let job = f.claim("cat.png", b"input");
        f.commit_by_hand(&job, b"result");
        let staging = f.outbox.staging(&job.id);
        durable::move_file(&job.input(), &staging.join("originals/cat.png")).unwrap();
        let recovered = f.claims.recover().unwrap();
        assert_eq!(
            recovered.len(),
            1,
            "a committed job without input is still recovered"
        );
        f.finisher().resume(&recovered[0], Resumed::Yes).unwrap();
        assert_eq!(f.out("cat.png"), b"result");
        assert_eq!(f.out("originals/cat.png"), b"input");
        assert_eq!(f.claims.count(), 0);
    }
}
