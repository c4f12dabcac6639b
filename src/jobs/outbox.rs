//! The outbox: where results, archived originals, failed inputs and logs go, how they are
//! named, and how files are put there without ever overwriting one or showing half of one.
//!
//! ```text
//! outbox/<relative path>.png            result (several images: <stem>-1.png ... <stem>-N.png)
//! outbox/originals/<relative path>      the input after success (after = "archive")
//! outbox/failed/<relative path>         an input that could not be done ...
//! outbox/failed/<file name>.error.txt   ... and why
//! outbox/logs/drawdrop.log, jobs.jsonl
//! outbox/gallery/index.html, thumbs/   what was made, before and after
//! outbox/.drawdrop/staging/<job id>/    files being prepared, moved into place when whole
//! ```
//! A name already taken gets ` (2)`, ` (3)` ... before its extension.

use crate::jobs::durable;
use crate::mutex::lock;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::config::paths::{FAILED, GALLERY, LOGS, ORIGINALS, RESERVED, is_reserved};

/// Moves `from` to `relative` under `root` (same file system), or to the first free
/// ` (N)` variant of it from number `start` on, never replacing a file. Returns the relative
/// path used.
pub fn place_in(root: &Path, from: &Path, relative: &Path, start: u32) -> io::Result<PathBuf> {
    if let Some(parent) = root.join(relative).parent() {
        durable::create_dir_all(parent)?;
    }
    for n in start.. {
        let candidate = with_number(relative, n);
        if durable::rename_no_replace(from, &root.join(&candidate))? {
            return Ok(candidate);
        }
    }
    Err(io::Error::other("no free name"))
}

/// The first number `n` for which every name `names(n)` is free under `root`.
pub fn first_free_in(root: &Path, names: impl Fn(u32) -> Vec<PathBuf>) -> u32 {
    (1u32..)
        .find(|&n| {
            names(n)
                .iter()
                .all(|name| fs::symlink_metadata(root.join(name)).is_err())
        })
        .unwrap_or(1)
}

/// The outbox folder and its parts.
#[derive(Debug)]
pub struct Outbox {
    root: PathBuf,
    /// `logs/jobs.jsonl`, opened for appending; one line per finished job.
    journal: Mutex<Option<File>>,
}

impl Outbox {
    pub fn new(root: PathBuf) -> Self {
        Outbox {
            root,
            journal: Mutex::new(None),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn originals(&self) -> PathBuf {
        self.root.join(ORIGINALS)
    }

    pub fn failed(&self) -> PathBuf {
        self.root.join(FAILED)
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join(LOGS)
    }

    pub fn gallery(&self) -> PathBuf {
        self.root.join(GALLERY)
    }

    pub fn jobs_log(&self) -> PathBuf {
        self.logs().join("jobs.jsonl")
    }

    /// Where a job's files are prepared before they are moved into place.
    pub fn staging(&self, job_id: &str) -> PathBuf {
        self.staging_root().join(job_id)
    }

    pub fn staging_root(&self) -> PathBuf {
        self.root.join(".drawdrop").join("staging")
    }

    /// Creates the outbox and its folders.
    pub fn create(&self) -> io::Result<()> {
        for dir in [
            self.root.clone(),
            self.originals(),
            self.failed(),
            self.logs(),
            self.staging_root(),
        ] {
            durable::create_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Moves every file under `staging` to the same relative path in the outbox, never
    /// overwriting (a taken name gets the next free ` (N)`). Returns where each one went,
    /// relative to the outbox, in path order.
    ///
    /// Staged names are never hidden (inputs with hidden names are not taken), so a hidden
    /// file there is a temporary that a crash left in the middle of a copy (an input moved
    /// across file systems): it is removed, never placed.
    pub fn place_staged(&self, staging: &Path) -> io::Result<Vec<PathBuf>> {
        let mut staged = durable::files_under(staging)?;
        staged.retain(|relative| {
            let hidden = relative
                .file_name()
                .is_some_and(|name| name.as_encoded_bytes().first() == Some(&b'.'));
            if hidden {
                let _ = durable::remove_file(&staging.join(relative));
            }
            !hidden
        });
        // Pictures first, so that their companions (`cat.txt`, `cat.png.error.txt`) can
        // follow a picture that had to take another name.
        staged.sort_by_key(|path| (!is_picture(path), path.clone()));
        let mut pictures: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut placed = Vec::with_capacity(staged.len());
        for relative in staged {
            let wanted = companion_name(&relative, &pictures).unwrap_or_else(|| relative.clone());
            let at = self.place(&staging.join(&relative), &wanted)?;
            if is_picture(&relative) {
                pictures.push((relative, at.clone()));
            }
            placed.push(at);
            crate::jobs::failpoint::crash_point("placed-one");
        }
        placed.sort();
        Ok(placed)
    }

    /// Moves `from` (on the outbox's file system) to `relative` in the outbox, or to the
    /// first free ` (N)` variant of it. Returns the relative path used.
    pub fn place(&self, from: &Path, relative: &Path) -> io::Result<PathBuf> {
        place_in(&self.root, from, relative, 1)
    }

    /// The first number `n` for which every name `names(n)` is free in the outbox.
    pub fn first_free(&self, names: impl Fn(u32) -> Vec<PathBuf>) -> u32 {
        first_free_in(&self.root, names)
    }

    /// Whether `logs/jobs.jsonl` has the line of job `id` already. Reads the whole file, so
    /// it is asked only when a job decided before a crash is completed.
    pub fn has_job_line(&self, id: &str) -> io::Result<bool> {
        let file = match File::open(self.jobs_log()) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        let needle = format!("\"{id}\"");
        for line in io::BufReader::new(file).split(b'\n') {
            let line = line?;
            if !line
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                continue;
            }
            let record: Result<serde_json::Value, _> = serde_json::from_slice(&line);
            if record.is_ok_and(|record| record.get("job").and_then(|j| j.as_str()) == Some(id)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends one line to `logs/jobs.jsonl` in a single write, so lines never interleave,
    /// and syncs it: on journaling file systems that also commits every file placed in the
    /// outbox before it, so a job is forgotten (perhaps on another file system) only once its
    /// outcome is on disk. Done in the background, it also keeps the journal short for the
    /// next commit's fsync, which is on the path of the next request.
    pub fn append_job_line(&self, line: &str) -> io::Result<()> {
        let mut journal = lock(&self.journal);
        if journal.is_none() {
            durable::create_dir_all(&self.logs())?;
            *journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.jobs_log())?,
            );
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let file = journal
            .as_mut()
            .ok_or_else(|| io::Error::other("journal closed"))?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if written.is_err() {
            // Reopen next time: the file may have been removed or the disk remounted.
            *journal = None;
        }
        written
    }
}

/// The result names for an input at `relative` making `count` images, with the collision
/// number `n` (1 = no number): `cat.png`, or `cat-1.png` ... `cat-N.png`; `cat (2).png` ...
pub fn result_names(relative: &Path, count: usize, n: u32) -> Vec<PathBuf> {
    let stem = relative.file_stem().unwrap_or(OsStr::new("image"));
    let parent = relative.parent().unwrap_or(Path::new(""));
    let name = |index: Option<usize>| {
        let mut name = OsString::from(stem);
        if let Some(index) = index {
            name.push(format!("-{index}"));
        }
        if n > 1 {
            name.push(format!(" ({n})"));
        }
        name.push(".png");
        parent.join(name)
    };
    if count <= 1 {
        vec![name(None)]
    } else {
        (1..=count).map(|index| name(Some(index))).collect()
    }
}

/// `relative` with ` (n)` before its extension when `n > 1`: `a/cat.png` -> `a/cat (2).png`.
pub fn with_number(relative: &Path, n: u32) -> PathBuf {
    if n <= 1 {
        return relative.to_path_buf();
    }
    let stem = relative.file_stem().unwrap_or_default();
    let mut name = OsString::from(stem);
    name.push(format!(" ({n})"));
    if let Some(extension) = relative.extension() {
        name.push(".");
        name.push(extension);
    }
    relative.with_file_name(name)
}

fn is_picture(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(crate::image::Format::for_name)
        .is_some()
}

/// The name a companion of a picture takes when the picture was placed under another name:
/// `cat.png.error.txt` -> `cat (2).png.error.txt`, `cat.txt` -> `cat (2).txt`.
fn companion_name(file: &Path, pictures: &[(PathBuf, PathBuf)]) -> Option<PathBuf> {
    let name = file.file_name()?.to_str()?;
    if let Some(picture) = name.strip_suffix(".error.txt") {
        let picture = file.with_file_name(picture);
        let (_, placed) = pictures.iter().find(|(wanted, _)| *wanted == picture)?;
        return Some(error_file_for(placed));
    }
    let stem = file.file_stem()?;
    let (wanted, placed) = pictures
        .iter()
        .find(|(wanted, _)| wanted.parent() == file.parent() && wanted.file_stem() == Some(stem))?;
    let suffix = placed
        .file_stem()?
        .to_str()?
        .strip_prefix(wanted.file_stem()?.to_str()?)?
        .to_owned();
    let mut renamed = stem.to_os_string();
    renamed.push(suffix);
    if let Some(extension) = file.extension() {
        renamed.push(".");
        renamed.push(extension);
    }
    Some(file.with_file_name(renamed))
}

/// `failed/cat.png` -> `failed/cat.png.error.txt`.
pub fn error_file_for(failed_input: &Path) -> PathBuf {
    let mut name = failed_input.file_name().unwrap_or_default().to_os_string();
    name.push(".error.txt");
    failed_input.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(paths: Vec<PathBuf>) -> Vec<String> {
        paths
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn result_names_for_one_and_several_images() {
        assert_eq!(
            strings(result_names(Path::new("a/Cat.PNG"), 1, 1)),
            ["a/Cat.png"]
        );
        assert_eq!(
            strings(result_names(Path::new("cat.png"), 1, 2)),
            ["cat (2).png"]
        );
        assert_eq!(
            strings(result_names(Path::new("w/cat.png"), 3, 1)),
            ["w/cat-1.png", "w/cat-2.png", "w/cat-3.png"]
        );
        assert_eq!(
            strings(result_names(Path::new("cat.png"), 2, 3)),
            ["cat-1 (3).png", "cat-2 (3).png"]
        );
    }

    #[test]
    fn numbers_go_before_the_extension() {
        assert_eq!(
            with_number(Path::new("a/cat.png"), 1),
            Path::new("a/cat.png")
        );
        assert_eq!(
            with_number(Path::new("a/cat.png"), 2),
            Path::new("a/cat (2).png")
        );
        assert_eq!(
            with_number(Path::new("my.cat.png"), 3),
            Path::new("my.cat (3).png")
        );
        assert_eq!(with_number(Path::new("noext"), 2), Path::new("noext (2)"));
        assert_eq!(
            error_file_for(Path::new("failed/a/cat (2).png")),
            Path::new("failed/a/cat (2).png.error.txt")
        );
    }

    #[test]
    fn first_free_skips_a_number_when_any_name_of_the_set_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().to_path_buf());
        let names = |n| result_names(Path::new("cat.png"), 2, n);
        assert_eq!(outbox.first_free(names), 1);
        fs::write(dir.path().join("cat-2.png"), b"").unwrap();
        assert_eq!(outbox.first_free(names), 2);
        fs::write(dir.path().join("cat-1 (2).png"), b"").unwrap();
        assert_eq!(outbox.first_free(names), 3);
    }

    #[test]
    fn place_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().join("out"));
        outbox.create().unwrap();
        let staging = outbox.staging("job1");
        for (name, content) in [("w/cat.png", "new"), ("originals/w/cat.png", "orig")] {
            durable::write_new(&staging.join(name), content.as_bytes()).unwrap();
        }
        durable::write_new(&outbox.root().join("w/cat.png"), b"old").unwrap();
        let placed = outbox.place_staged(&staging).unwrap();
        assert_eq!(strings(placed), ["originals/w/cat.png", "w/cat (2).png"]);
        assert_eq!(fs::read(outbox.root().join("w/cat.png")).unwrap(), b"old");
        assert_eq!(
            fs::read(outbox.root().join("w/cat (2).png")).unwrap(),
            b"new"
        );
    }

    #[test]
    fn place_staged_drops_temporaries_left_by_an_interrupted_copy() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().join("out"));
        outbox.create().unwrap();
        let staging = outbox.staging("job1");
        durable::write_new(&staging.join("originals/cat.png"), b"whole").unwrap();
        durable::write_new(&staging.join("originals/.cat.png.drawdrop-7.tmp"), b"wh").unwrap();
        let placed = outbox.place_staged(&staging).unwrap();
        assert_eq!(strings(placed), ["originals/cat.png"]);
        assert_eq!(
            fs::read_dir(outbox.originals()).unwrap().count(),
            1,
            "only the whole file"
        );
        assert!(!staging.join("originals/.cat.png.drawdrop-7.tmp").exists());
    }

    #[test]
    fn has_job_line_finds_a_job_by_its_id_only() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().to_path_buf());
        assert!(!outbox.has_job_line("1-2-3").unwrap());
        outbox
            .append_job_line("{\"job\":\"1-2-30\",\"input\":\"1-2-3\"}")
            .unwrap();
        assert!(!outbox.has_job_line("1-2-3").unwrap());
        outbox.append_job_line("{\"job\":\"1-2-3\"}").unwrap();
        assert!(outbox.has_job_line("1-2-3").unwrap());
    }

    #[test]
    fn job_lines_are_appended_whole() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().to_path_buf());
        outbox.append_job_line("{\"a\":1}").unwrap();
        outbox.append_job_line("{\"a\":2}").unwrap();
        assert_eq!(
            fs::read_to_string(outbox.jobs_log()).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
    }
}
