//! Logging: readable lines to stderr and to `outbox/logs/drawdrop.log`, rotated daily with
//! a week kept. Lines carry local time. Nothing secret and no image data is ever logged:
//! the code logs names, sizes, settings and reasons only.
//!
//! Logging starts before the config is read (stderr only); the file joins once the outbox
//! is known. While a progress bar is on the terminal, stderr lines are printed above it.

use crate::mutex::lock;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::writer::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Rotated logs kept besides the current one.
const KEEP_DAYS: usize = 7;
const LOG_NAME: &str = "drawdrop.log";

/// Controls where log lines go after start-up.
#[derive(Clone, Default)]
pub(crate) struct LogHandle {
    file: Arc<Mutex<Option<DailyFile>>>,
    bar: Arc<Mutex<Option<indicatif::ProgressBar>>>,
}

impl LogHandle {
    /// Also writes every line to `dir/drawdrop.log` from now on.
    pub(crate) fn log_to_folder(&self, dir: &Path) -> io::Result<()> {
        let file = DailyFile::open(dir)?;
        *lock(&self.file) = Some(file);
        Ok(())
    }

    /// Prints stderr lines above this progress bar (or plainly again with `None`).
    pub(crate) fn set_progress_bar(&self, bar: Option<indicatif::ProgressBar>) {
        *lock(&self.bar) = bar;
    }
}

/// Narrows what reaches stderr only (e.g. `warn`). The LaunchAgent sets it: launchd keeps
/// stderr in a file that nothing rotates, while `drawdrop.log` has every line and is rotated.
pub(crate) const STDERR_FILTER_VARIABLE: &str = "DRAWDROP_STDERR_LOG";

/// Overrides what is logged (a tracing filter such as `debug`).
pub(crate) const FILTER_VARIABLE: &str = "DRAWDROP_LOG";

/// Starts logging to stderr. [`FILTER_VARIABLE`] overrides the filter (e.g. `debug`), and
/// [`STDERR_FILTER_VARIABLE`] narrows stderr further.
pub(crate) fn init() -> LogHandle {
    let handle = LogHandle::default();
    let filter = EnvFilter::try_from_env(FILTER_VARIABLE)
        .unwrap_or_else(|_| EnvFilter::new("warn,drawdrop=info"));
    let stderr_only = EnvFilter::try_from_env(STDERR_FILTER_VARIABLE).ok();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(StderrWriter(handle.bar.clone()))
        .with_timer(LocalTime)
        .with_target(false)
        .with_ansi(false)
        .with_filter(stderr_only);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(FileWriter(handle.file.clone()))
        .with_timer(LocalTime)
        .with_target(false)
        .with_ansi(false);
    // Fails only if a subscriber is set already (tests): then that one is used.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    handle
}

/// `2026-11-25 22:15:03` in the local time zone.
struct LocalTime;

impl FormatTime for LocalTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            jiff::ZonedDateTime::now().strftime("%Y-%m-%d %H:%M:%S")
        )
    }
}

#[derive(Clone)]
struct StderrWriter(Arc<Mutex<Option<indicatif::ProgressBar>>>);

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = lock(&self.0).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[derive(Clone)]
struct FileWriter(Arc<Mutex<Option<DailyFile>>>);

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(file) = lock(&self.0).as_mut() {
            // A full disk must not stop drawdrop: the line still went to stderr.
            let _ = file.write_line(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `drawdrop.log`, renamed to `drawdrop.YYYY-MM-DD.log` when the day changes.
struct DailyFile {
    dir: PathBuf,
    day: jiff::civil::Date,
    file: File,
}

impl DailyFile {
    fn open(dir: &Path) -> io::Result<DailyFile> {
        fs::create_dir_all(dir)?;
        let today = today();
        let current = dir.join(LOG_NAME);
        if let Some(day) = day_of(&current)
            && day < today
        {
            rotate(dir, day)?;
        }
        Ok(DailyFile {
            dir: dir.to_path_buf(),
            day: today,
            file: open_append(&current)?,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let today = today();
        if today != self.day {
            rotate(&self.dir, self.day)?;
            self.file = open_append(&self.dir.join(LOG_NAME))?;
            self.day = today;
        }
        self.file.write_all(line)
    }
}

fn today() -> jiff::civil::Date {
    jiff::ZonedDateTime::now().date()
}

/// The local day a file was last written.
fn day_of(path: &Path) -> Option<jiff::civil::Date> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    let timestamp = jiff::Timestamp::try_from(modified).ok()?;
    Some(
        timestamp
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .date(),
    )
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Renames the current log after `day` and removes rotated logs beyond a week.
fn rotate(dir: &Path, day: jiff::civil::Date) -> io::Result<()> {
    let rotated = dir.join(format!("drawdrop.{day}.log"));
    match fs::rename(dir.join(LOG_NAME), &rotated) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut old: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_rotated_log(path))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEEP_DAYS);
    for path in &old[..excess] {
        let _ = fs::remove_file(path);
    }
    Ok(())
}

/// `drawdrop.2026-11-25.log`.
fn is_rotated_log(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.strip_prefix("drawdrop.")
        .and_then(|rest| rest.strip_suffix(".log"))
        .is_some_and(|day| day.parse::<jiff::civil::Date>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_renames_by_day_and_keeps_a_week() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=9 {
            fs::write(
                dir.path().join(format!("drawdrop.2026-10-0{day}.log")),
                b"old",
            )
            .unwrap();
        }
        fs::write(dir.path().join(LOG_NAME), b"yesterday").unwrap();
        fs::write(dir.path().join("jobs.jsonl"), b"{}").unwrap();
        rotate(dir.path(), "2026-10-10".parse().unwrap()).unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "drawdrop.2026-10-04.log",
                "drawdrop.2026-10-05.log",
                "drawdrop.2026-10-06.log",
                "drawdrop.2026-10-07.log",
                "drawdrop.2026-10-08.log",
                "drawdrop.2026-10-09.log",
                "drawdrop.2026-10-10.log",
                "jobs.jsonl"
            ]
        );
        assert_eq!(
            fs::read(dir.path().join("drawdrop.2026-10-10.log")).unwrap(),
            b"yesterday"
        );
    }

    #[test]
    fn a_log_from_an_earlier_day_is_rotated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join(LOG_NAME);
        fs::write(&current, b"older line\n").unwrap();
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        File::options()
            .write(true)
            .open(&current)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let mut file = DailyFile::open(dir.path()).unwrap();
        file.write_line(b"new line\n").unwrap();
        assert_eq!(fs::read(&current).unwrap(), b"new line\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
