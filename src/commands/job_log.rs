//! What `status` tells from `logs/jobs.jsonl` without reading all of it: the done and
//! failed counts and each server's figures over every job, and the last jobs.
//!
//! The last jobs come from blocks read backwards from the end of the file. The counts come
//! from a summary kept beside it (`logs/.jobs-summary.json`) that covers the file up to a
//! byte offset, so each `status` reads only the lines written since the one before; a summary
//! that does not fit the file (replaced, cut, or unreadable) is made again from the start.
//! A last line still being written (no line end yet) is left for the next time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The size of the blocks read backwards for the last jobs.
const BLOCK: u64 = 64 * 1024;

/// How many bytes before the summary's offset it keeps, to know the file is the one it counted.
const FINGERPRINT: usize = 256;

/// The summary's file name, beside `jobs.jsonl`.
const SUMMARY_NAME: &str = ".jobs-summary.json";

/// What `status` shows of the jobs.
#[derive(Debug, Default)]
pub(super) struct JobLog {
    pub done: usize,
    pub failed: usize,
    /// The last jobs, oldest first.
    pub last: Vec<Value>,
    summary: Summary,
}

/// One server's figures: its done jobs with a server time, their total, its last error.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ServerFigures {
    pub done: usize,
    pub server_ms: f64,
    /// Where its line starts (to tell the later of two) and the server's words.
    last_error: Option<(u64, String)>,
}

impl ServerFigures {
    pub(super) fn last_error(&self) -> Option<&str> {
        self.last_error.as_ref().map(|(_, error)| error.as_str())
    }

    fn add(&mut self, other: &ServerFigures) {
        self.done += other.done;
        self.server_ms += other.server_ms;
        if other.last_error.as_ref().map(|(at, _)| at) > self.last_error.as_ref().map(|(at, _)| at)
        {
            self.last_error.clone_from(&other.last_error);
        }
    }
}

impl JobLog {
    /// Reads `jobs_log` (a missing one has no jobs) and brings its summary up to date.
    pub(super) fn read(jobs_log: &Path, last: usize) -> JobLog {
        let summary_path = summary_path(jobs_log);
        let kept = Summary::load(&summary_path);
        let Ok(mut file) = File::open(jobs_log) else {
            return JobLog::default();
        };
        let summary = kept.clone().caught_up(&mut file).unwrap_or_default();
        if summary != kept {
            summary.store(&summary_path);
        }
        let last = last_lines(&mut file, summary.offset, last).unwrap_or_default();
        JobLog {
            done: summary.done,
            failed: summary.failed,
            last,
            summary,
        }
    }

    /// The figures of a server, from the lines naming it or (written before servers had
    /// names) its URL.
    pub(super) fn server(&self, name: &str, url: &str) -> ServerFigures {
        let mut figures = ServerFigures::default();
        let keys: &[&str] = if name == url { &[name] } else { &[name, url] };
        for key in keys {
            if let Some(found) = self.summary.servers.get(*key) {
                figures.add(found);
            }
        }
        figures
    }
}

/// The counts over `jobs.jsonl` up to `offset`, a line end.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    offset: u64,
    /// The bytes just before `offset`: a replaced file does not have them there.
    fingerprint: Vec<u8>,
    done: usize,
    failed: usize,
    /// By the job's `server` value.
    servers: BTreeMap<String, ServerFigures>,
}

/// The few keys of a `jobs.jsonl` line the counts need; the others are skipped unparsed.
#[derive(Deserialize)]
struct Counted {
    #[serde(default)]
    outcome: Value,
    #[serde(default)]
    server: Value,
    #[serde(default)]
    server_ms: Value,
    #[serde(default)]
    attempts: Value,
    #[serde(default)]
    error: Value,
}

impl Counted {
    /// The keys of a line; `None` when it is no JSON (a crash mid-write).
    fn parse(line: &[u8]) -> Option<Counted> {
        if let Ok(counted) = serde_json::from_slice(line) {
            return Some(counted);
        }
        // JSON of another shape (not an object, a key twice) still counts as a job.
        let job: Value = serde_json::from_slice(line).ok()?;
        Some(Counted {
            outcome: job["outcome"].clone(),
            server: job["server"].clone(),
            server_ms: job["server_ms"].clone(),
            attempts: job["attempts"].clone(),
            error: job["error"].clone(),
        })
    }
}

impl Summary {
    fn load(path: &Path) -> Summary {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written whole (a temporary file, then renamed); a summary that cannot be written is
    /// made again next time.
    fn store(&self, path: &Path) {
        let Ok(bytes) = serde_json::to_vec(self) else {
            return;
        };
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, path))
            .is_err()
        {
            let _ = std::fs::remove_file(&temporary);
        }
    }

    /// This summary brought up to the file's last line end: from its offset when the file
    /// still goes on from there, else from the start.
    fn caught_up(self, file: &mut File) -> io::Result<Summary> {
        let mut summary = if self.fits(file)? {
            self
        } else {
            Summary::default()
        };
        file.seek(SeekFrom::Start(summary.offset))?;
        let mut reader = BufReader::with_capacity(BLOCK as usize, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 || line.last() != Some(&b'\n') {
                break;
            }
            summary.count(&line[..line.len() - 1]);
            summary.fingerprint_with(&line);
            summary.offset += read as u64;
        }
        Ok(summary)
    }

    /// Whether the file holds the summary's fingerprint just before its offset.
    fn fits(&self, file: &mut File) -> io::Result<bool> {
        let length = self.fingerprint.len() as u64;
        if self.offset == 0 {
            return Ok(true);
        }
        if length == 0 || length > self.offset || file.metadata()?.len() < self.offset {
            return Ok(false);
        }
        file.seek(SeekFrom::Start(self.offset - length))?;
        let mut found = vec![0; self.fingerprint.len()];
        file.read_exact(&mut found)?;
        Ok(found == self.fingerprint)
    }

    /// Keeps the last `FINGERPRINT` bytes, `line` being the ones just counted.
    fn fingerprint_with(&mut self, line: &[u8]) {
        if line.len() >= FINGERPRINT {
            self.fingerprint.clear();
            self.fingerprint
                .extend_from_slice(&line[line.len() - FINGERPRINT..]);
        } else {
            self.fingerprint.extend_from_slice(line);
            let excess = self.fingerprint.len().saturating_sub(FINGERPRINT);
            self.fingerprint.drain(..excess);
        }
    }

    /// Counts one line starting at `self.offset`.
    fn count(&mut self, line: &[u8]) {
        let Some(job) = Counted::parse(line) else {
            return;
        };
        if job.outcome == "done" {
            self.done += 1;
        }
        if job.outcome == "failed" {
            self.failed += 1;
        }
        let Some(server) = job.server.as_str() else {
            return;
        };
        let figures = self.servers.entry(server.to_owned()).or_default();
        if job.outcome == "done"
            && let Some(server_ms) = job.server_ms.as_f64()
        {
            figures.done += 1;
            figures.server_ms += server_ms;
        }
        // Only what the server said: a picture that failed before it was sent is no server error.
        let asked = job.attempts.as_u64().is_some_and(|attempts| attempts > 0);
        if asked && let Some(error) = job.error.as_str() {
            figures.last_error = Some((self.offset, error.to_owned()));
        }
    }
}

fn summary_path(jobs_log: &Path) -> PathBuf {
    jobs_log.with_file_name(SUMMARY_NAME)
}

/// The last `wanted` lines that parse before `end` (a line end), oldest first, read in
/// blocks backwards from `end`.
fn last_lines(file: &mut File, end: u64, wanted: usize) -> io::Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut start = end;
    // The bytes from `start` up to the first line end after it: a line cut by the block.
    let mut carried: Vec<u8> = Vec::new();
    while found.len() < wanted && start > 0 {
        let size = BLOCK.min(start);
        start -= size;
        let mut block = vec![0; size as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&carried);
        // Everything after the block's first line end is whole lines (the last one ending at
        // `end`); what comes before it may begin in the block before.
        let whole_from = match memchr::memchr(b'\n', &block) {
            _ if start == 0 => 0,
            Some(at) => at + 1,
            None => block.len(),
        };
        for line in block[whole_from..].rsplit(|&byte| byte == b'\n') {
            if found.len() == wanted {
                break;
            }
            if let Ok(job) = serde_json::from_slice::<Value>(line) {
                found.push(job);
            }
        }
        block.truncate(whole_from);
        carried = block;
    }
    found.reverse();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn line(n: usize, outcome: &str, server: &str, error: Option<&str>) -> String {
        let job = json!({"time": "2026-11-25T22:15:03.123+01:00", "job": format!("j{n}"),
            "input": format!("cat-{n}.png"), "outcome": outcome, "server": server,
            "attempts": 1, "server_ms": 1000 + n, "total_ms": 1200, "error": error,
            "settings": {"prompt": "a watercolor painting of a dog", "seed": n}});
        format!("{job}\n")
    }

    fn inputs(log: &JobLog) -> Vec<String> {
        log.last
            .iter()
            .map(|job| job["input"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn counts_every_job_and_lists_the_last_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.jsonl");
        let mut text = String::new();
        for n in 0..500 {
            let failed = n % 10 == 3;
            let server = if n % 2 == 0 {
                "mini"
            } else {
                "http://mini:7860/"
            };
            let outcome = if failed { "failed" } else { "done" };
            text += &line(n, outcome, server, failed.then_some("refused: 500 boom"));
        }
        text += "{\"outcome\": \"done\", \"job\": broken\n";
        text += &line(500, "failed", "mini", Some("the last words"));
        // A job being written: no line end yet.
        text += "{\"outcome\": \"done\", \"input\": \"half.png\"";
        std::fs::write(&path, &text).unwrap();
        let log = JobLog::read(&path, 10);
        assert_eq!((log.done, log.failed), (450, 51));
        let mini = log.server("mini", "http://mini:7860/");
        assert_eq!(mini.done, 450);
        let total: usize = (0..500).filter(|n| n % 10 != 3).map(|n| 1000 + n).sum();
        assert_eq!(mini.server_ms, total as f64);
        assert_eq!(mini.last_error(), Some("the last words"));
        assert_eq!(
            log.server("other", "http://other/"),
            ServerFigures::default()
        );
        let expected: Vec<String> = (491..=500).map(|n| format!("cat-{n}.png")).collect();
        assert_eq!(inputs(&log), expected);
    }

    #[test]
    fn the_last_jobs_are_found_across_blocks_and_past_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.jsonl");
        // Three megabytes that are no JSON (nor UTF-8), lines longer than a block, then jobs.
        let mut bytes = vec![0xff_u8; 3 * 1024 * 1024];
        for at in (0..bytes.len()).step_by(100_000) {
            bytes[at] = b'\n';
        }
        bytes.push(b'\n');
        let long_prompt = "p".repeat(BLOCK as usize + 10);
        for n in 0..3 {
            let job = json!({"input": format!("long-{n}.png"), "outcome": "done",
                "server": "s", "server_ms": 1, "prompt": long_prompt});
            bytes.extend_from_slice(format!("{job}\n").as_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let log = JobLog::read(&path, 10);
        assert_eq!(inputs(&log), ["long-0.png", "long-1.png", "long-2.png"]);
        assert_eq!((log.done, log.failed), (3, 0));
    }

    #[test]
    fn a_later_status_reads_only_what_was_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.jsonl");
        let text: String = (0..200).map(|n| line(n, "done", "s", None)).collect();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(JobLog::read(&path, 10).done, 200);
        assert!(dir.path().join(SUMMARY_NAME).is_file());

        // The counted part spoiled in place (same length, same end): a status that read the
        // file again would count nothing there.
        let mut spoiled = text.into_bytes();
        let keep = spoiled.len() - 2 * FINGERPRINT;
        spoiled[..keep].fill(b'x');
        std::fs::write(&path, &spoiled).unwrap();
        append(&path, &line(200, "failed", "s", Some("the new error")));
        let log = JobLog::read(&path, 10);
        assert_eq!((log.done, log.failed), (200, 1));
        assert_eq!(log.server("s", "http://s/").done, 200);
        assert_eq!(
            log.server("s", "http://s/").last_error(),
            Some("the new error")
        );
        assert_eq!(inputs(&log).last().map(String::as_str), Some("cat-200.png"));
    }

    #[test]
    fn a_replaced_or_cut_file_is_counted_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.jsonl");
        let text: String = (0..50).map(|n| line(n, "done", "s", None)).collect();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(JobLog::read(&path, 10).done, 50);

        let longer: String = (100..160)
            .map(|n| line(n, "failed", "s", Some("e")))
            .collect();
        std::fs::write(&path, &longer).unwrap();
        let log = JobLog::read(&path, 10);
        assert_eq!((log.done, log.failed), (0, 60));

        let shorter: String = (0..5).map(|n| line(n, "done", "s", None)).collect();
        std::fs::write(&path, &shorter).unwrap();
        let log = JobLog::read(&path, 10);
        assert_eq!((log.done, log.failed), (5, 0));
        assert_eq!(log.last.len(), 5);

        std::fs::write(dir.path().join(SUMMARY_NAME), b"not json").unwrap();
        assert_eq!(JobLog::read(&path, 10).done, 5);
        std::fs::remove_file(&path).unwrap();
        let log = JobLog::read(&path, 10);
        assert_eq!((log.done, log.failed, log.last.len()), (0, 0, 0));
    }
}
