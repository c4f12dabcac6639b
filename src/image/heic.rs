//! HEIC/HEIF through the system: no sound pure-Rust decoder exists, so the picture is handed
//! to a converter that writes a PNG: macOS's own `sips` (built in), elsewhere libheif's
//! `heif-convert` when it is on PATH.
//!
//! The converter runs in a private temporary folder (mode 0700 on Unix), with no standard
//! input, for a bounded time ([`DEFAULT_TIMEOUT`], or `DRAWDROP_HEIC_TIMEOUT_MS`): one that
//! hangs is killed. What it writes is read back only after its size is checked, and is then
//! checked like any PNG by the caller.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a conversion may take before the converter is stopped.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Overrides [`DEFAULT_TIMEOUT`], in milliseconds (for tests and very slow machines).
pub(crate) const TIMEOUT_ENV: &str = "DRAWDROP_HEIC_TIMEOUT_MS";
/// What to install when no converter is found, for the reason and `drawdrop check`.
pub(crate) const INSTALL_HINT: &str = "install libheif: `apt install libheif-examples` (Debian, Ubuntu), \
     `dnf install libheif-tools` (Fedora) or `brew install libheif`, which provide heif-convert";

/// How often a running converter is looked at.
const POLL: Duration = Duration::from_millis(10);

/// A program that turns a HEIC into a PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Converter {
    kind: ConverterKind,
    /// The program, as found on PATH.
    pub program: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConverterKind {
    /// macOS: `sips -s format png IN --out OUT`.
    Sips,
    /// libheif: `heif-convert IN OUT.png`.
    HeifConvert,
}

impl fmt::Display for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())
    }
}

/// Why a HEIC could not be turned into a PNG. `Display` is a reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeicProblem {
    #[error("HEIC pictures cannot be read on this machine: {INSTALL_HINT}")]
    NoConverter,
    #[error("{converter} could not be started: {error}")]
    Start { converter: String, error: String },
    #[error("{converter} could not convert the HEIC (exit status {status}){said}")]
    Failed {
        converter: String,
        status: String,
        /// The first line it printed, as ": ..." (or empty).
        said: String,
    },
    #[error(
        "{converter} did not finish converting the HEIC within {} s and was stopped \
         (a damaged file?)", timeout.as_secs_f64()
    )]
    TimedOut {
        converter: String,
        timeout: Duration,
    },
    #[error("{converter} finished but wrote no PNG")]
    NoOutput { converter: String },
    #[error("the PNG {converter} wrote is {megabytes} MB, above the limit of {limit} MB")]
    OutputTooLarge {
        converter: String,
        megabytes: u64,
        limit: u64,
    },
    #[error("cannot use a temporary folder for the conversion: {0}")]
    Temporary(String),
}

/// The converter this machine has: `sips` on macOS, `heif-convert` elsewhere, looked up on
/// PATH now (so one installed while drawdrop runs is used from the next picture on).
pub(crate) fn converter() -> Option<Converter> {
    let (kind, name) = if cfg!(target_os = "macos") {
        (ConverterKind::Sips, "sips")
    } else {
        (ConverterKind::HeifConvert, "heif-convert")
    };
    find_on_path(name).map(|program| Converter { kind, program })
}

/// One line for `drawdrop check`: whether HEIC pictures can be read here, and how.
pub(crate) fn describe_support() -> Result<String, String> {
    match converter() {
        Some(converter) => Ok(format!("HEIC pictures are read with {converter}")),
        None => Err(format!("HEIC pictures cannot be read: {INSTALL_HINT}")),
    }
}

/// The HEIC `bytes` as PNG bytes, through the machine's converter. `max_output` bounds what
/// is read back.
pub(crate) fn to_png(bytes: &[u8], max_output: u64) -> Result<Vec<u8>, HeicProblem> {
    let converter = converter().ok_or(HeicProblem::NoConverter)?;
    convert(&converter, bytes, max_output, timeout())
}

/// [`to_png`] with this converter and time limit.
fn convert(
    converter: &Converter,
    bytes: &[u8],
    max_output: u64,
    timeout: Duration,
) -> Result<Vec<u8>, HeicProblem> {
    let folder = PrivateFolder::new().map_err(|e| HeicProblem::Temporary(e.to_string()))?;
    let input = folder.path.join("in.heic");
    let output = folder.path.join("out.png");
    std::fs::write(&input, bytes).map_err(|e| HeicProblem::Temporary(e.to_string()))?;
    let mut command = Command::new(&converter.program);
    match converter.kind {
        ConverterKind::Sips => command
            .args(["-s", "format", "png"])
            .arg(&input)
            .arg("--out")
            .arg(&output),
        ConverterKind::HeifConvert => command.arg(&input).arg(&output),
    };
    run(converter, command, &folder.path.join("said.txt"), timeout)?;
    let written = [output.clone(), folder.path.join("out-1.png")]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| HeicProblem::NoOutput {
            converter: converter.to_string(),
        })?;
    let size = std::fs::metadata(&written)
        .map_err(|e| HeicProblem::Temporary(e.to_string()))?
        .len();
    if size > max_output {
        return Err(HeicProblem::OutputTooLarge {
            converter: converter.to_string(),
            megabytes: size.div_ceil(1024 * 1024),
            limit: max_output / (1024 * 1024),
        });
    }
    std::fs::read(&written).map_err(|e| HeicProblem::Temporary(e.to_string()))
}

/// Runs the converter to its end, or kills it after `timeout`. Its output goes to `said`.
fn run(
    converter: &Converter,
    mut command: Command,
    said: &Path,
    timeout: Duration,
) -> Result<(), HeicProblem> {
    let name = converter.to_string();
    let start_error = |error: std::io::Error| HeicProblem::Start {
        converter: name.clone(),
        error: error.to_string(),
    };
    let log = std::fs::File::create(said).map_err(start_error)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(start_error)?)
        .stderr(log)
        .spawn()
        .map_err(start_error)?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HeicProblem::TimedOut {
                    converter: name,
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(start_error(error));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let first_line = std::fs::read(said)
        .map(|text| {
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .map(|line| format!(": {}", line.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    Err(HeicProblem::Failed {
        converter: name,
        status: status
            .code()
            .map_or_else(|| "killed by a signal".to_owned(), |code| code.to_string()),
        said: first_line,
    })
}

/// [`DEFAULT_TIMEOUT`], or what `DRAWDROP_HEIC_TIMEOUT_MS` says.
fn timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// The first executable file called `name` in a PATH folder.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|folder| !folder.as_os_str().is_empty())
        .map(|folder| folder.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A folder only this user can enter, removed with everything in it when dropped.
struct PrivateFolder {
    path: PathBuf,
}

impl PrivateFolder {
    fn new() -> std::io::Result<PrivateFolder> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "drawdrop-heic-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(PrivateFolder { path })
    }
}

impl Drop for PrivateFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;

    /// A stand-in for heif-convert running `body` (sh), in `dir`.
    fn stand_in(dir: &Path, body: &str) -> Converter {
        use std::os::unix::fs::PermissionsExt;
        let program = dir.join("heif-convert");
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Converter {
            kind: ConverterKind::HeifConvert,
            program,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_converters_png_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        // Writes its input, reversed, as its output.
        let converter = stand_in(dir.path(), "/usr/bin/rev < \"$1\" > \"$2\"");
        let png = convert(&converter, b"cieh\n", 1000, 10 * SECOND).unwrap();
        assert_eq!(png, b"heic\n");
    }

    #[test]
    fn a_hanging_converter_is_killed_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let converter = stand_in(dir.path(), "exec /bin/sleep 30");
        let started = Instant::now();
        let problem = convert(&converter, b"x", 1000, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < 10 * SECOND, "{:?}", started.elapsed());
        assert!(matches!(problem, HeicProblem::TimedOut { .. }), "{problem}");
        assert!(problem.to_string().contains("within 0.2 s and was stopped"));
    }

    #[test]
    fn failures_are_quoted_and_missing_or_huge_output_refused() {
        let dir = tempfile::tempdir().unwrap();
        let converter = stand_in(
            dir.path(),
            "echo\necho 'Unsupported feature: HEVC decoder missing'\necho more\nexit 3",
        );
        let problem = convert(&converter, b"x", 1000, 10 * SECOND).unwrap_err();
        assert!(
            problem.to_string().ends_with(
                "could not convert the HEIC (exit status 3): Unsupported feature: HEVC decoder missing"
            ),
            "{problem}"
        );
        let converter = stand_in(dir.path(), "exit 0");
        let problem = convert(&converter, b"x", 1000, 10 * SECOND).unwrap_err();
        assert!(matches!(problem, HeicProblem::NoOutput { .. }), "{problem}");
        let converter = stand_in(dir.path(), "/usr/bin/head -c 3000000 /dev/zero > \"$2\"");
        let problem = convert(&converter, b"x", 1024 * 1024, 10 * SECOND).unwrap_err();
        assert_eq!(
            problem.to_string(),
            format!("the PNG {converter} wrote is 3 MB, above the limit of 1 MB")
        );
    }
}
