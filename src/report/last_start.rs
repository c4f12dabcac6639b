//! How the daemon's last start went, kept beside the config file (`.config.toml.last-start.json`
//! for `config.toml`), so that `drawdrop status` can tell why the daemon is not running even
//! when the config file itself cannot be read, and still find the folders of the last good
//! start. Written by `drawdrop run` (not `--once`): the folders at each start, the error that
//! stopped a start. Best effort: a folder that cannot be written only loses this note.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `drawdrop run` recorded at its last start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastStart {
    /// When it was recorded, local time, `2026-12-01 09:15:03 +01:00`.
    pub time: String,
    /// The folders of the last start that got going (kept when a later start fails).
    pub inbox: Option<PathBuf>,
    pub outbox: Option<PathBuf>,
    /// Why the last start failed; `None` when it got going.
    pub error: Option<String>,
}

impl LastStart {
    /// The record for the config file at `config_file`, if there is one.
    pub(crate) fn read(config_file: &Path) -> Option<LastStart> {
        let text = std::fs::read_to_string(record_path(config_file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A start got going with these folders.
    pub(crate) fn started(config_file: &Path, inbox: &Path, outbox: &Path) {
        write(
            config_file,
            &LastStart {
                time: now(),
                inbox: Some(inbox.to_path_buf()),
                outbox: Some(outbox.to_path_buf()),
                error: None,
            },
        );
    }

    /// A start failed with `error`; the folders of the last good start are kept.
    pub(crate) fn failed(config_file: &Path, error: &str) {
        let last = LastStart::read(config_file).unwrap_or_default();
        write(
            config_file,
            &LastStart {
                time: now(),
                error: Some(error.to_owned()),
                ..last
            },
        );
    }
}

/// `.NAME.last-start.json` beside the config file `NAME`.
fn record_path(config_file: &Path) -> PathBuf {
    let name = config_file
        .file_name()
        .map_or_else(|| "config".into(), |name| name.to_string_lossy());
    config_file.with_file_name(format!(".{name}.last-start.json"))
}

fn now() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Whole or not at all (temporary file, then rename); a failure is only logged.
fn write(config_file: &Path, record: &LastStart) {
    let path = record_path(config_file);
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let text = match serde_json::to_string_pretty(record) {
        Ok(text) => text,
        Err(error) => return tracing::debug!("cannot note the start: {error}"),
    };
    let written =
        std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        tracing::debug!("cannot note the start in {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_keeps_the_folders_of_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        assert_eq!(LastStart::read(&config), None);
        LastStart::started(&config, Path::new("/in"), Path::new("/out"));
        let started = LastStart::read(&config).unwrap();
        assert_eq!(started.error, None);
        assert_eq!(started.inbox.as_deref(), Some(Path::new("/in")));
        LastStart::failed(&config, "config.toml:1:1: broken");
        let failed = LastStart::read(&config).unwrap();
        assert_eq!(failed.error.as_deref(), Some("config.toml:1:1: broken"));
        assert_eq!(failed.outbox.as_deref(), Some(Path::new("/out")));
        assert!(dir.path().join(".config.toml.last-start.json").is_file());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }
}
