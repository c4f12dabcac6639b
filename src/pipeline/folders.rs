//! Creating the folders a run needs — the inbox, one inbox folder per profile, the outbox
//! and its parts — and refusing an inbox and outbox nested in each other once symbolic links
//! are resolved.

use crate::config::{Config, Nesting, nesting};
use crate::jobs::outbox::Outbox;
use std::io;
use std::path::{Path, PathBuf};

/// A folder that cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FolderError {
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "the {inner_name} {inner} is inside the {outer_name} {outer}: they must be separate folders"
    )]
    Nested {
        inner_name: &'static str,
        inner: PathBuf,
        outer_name: &'static str,
        outer: PathBuf,
    },
}

impl FolderError {
    pub(crate) fn create(path: &Path, source: io::Error) -> Self {
        FolderError::Create {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates every folder and returns the inbox's canonical path (what file events report).
pub(crate) fn prepare(config: &Config) -> Result<PathBuf, FolderError> {
    let create = |path: &Path| {
        crate::jobs::durable::create_dir_all(path)
            .map_err(|source| FolderError::create(path, source))
    };
    create(&config.inbox)?;
    create(&config.outbox)?;
    let inbox = canonical(&config.inbox)?;
    let outbox = canonical(&config.outbox)?;
    check_separate(&inbox, &outbox)?;
    Outbox::new(config.outbox.clone())
        .create()
        .map_err(|source| FolderError::create(&config.outbox, source))?;
    for name in config.profiles.keys() {
        create(&inbox.join(name))?;
    }
    // A broken profile's folder is where its files wait until it is fixed.
    for name in config.broken.keys().filter(|name| waits_in_a_folder(name)) {
        create(&inbox.join(name))?;
    }
    Ok(inbox)
}

/// Whether broken profile `name` has an inbox folder of its own: not when the name itself is
/// what is wrong (one of the outbox's own folder names, or not a plain folder name).
pub(crate) fn waits_in_a_folder(name: &str) -> bool {
    !crate::jobs::outbox::is_reserved(name)
        && !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
}

/// Whether two folders are on one file system (where renames between them work and one
/// journal orders their changes). Unknown means no.
pub(crate) fn one_file_system(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

fn canonical(path: &Path) -> Result<PathBuf, FolderError> {
    path.canonicalize()
        .map_err(|source| FolderError::create(path, source))
}

fn check_separate(inbox: &Path, outbox: &Path) -> Result<(), FolderError> {
    match nesting(inbox, outbox) {
        Nesting::Apart => Ok(()),
        Nesting::Same | Nesting::OutboxInsideInbox => Err(FolderError::Nested {
            inner_name: "outbox",
            inner: outbox.to_path_buf(),
            outer_name: "inbox",
            outer: inbox.to_path_buf(),
        }),
        Nesting::InboxInsideOutbox => Err(FolderError::Nested {
            inner_name: "inbox",
            inner: inbox.to_path_buf(),
            outer_name: "outbox",
            outer: outbox.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, inbox: &str, outbox: &str) -> Config {
        let mut config = Config::defaults(&dir.join("config.toml"));
        config.inbox = dir.join(inbox);
        config.outbox = dir.join(outbox);
        config
    }

    #[test]
    fn creates_the_inbox_profile_folders_and_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = prepare(&config(dir.path(), "in", "out")).unwrap();
        assert!(inbox.join("default").is_dir());
        for part in ["originals", "failed", "logs"] {
            assert!(dir.path().join("out").join(part).is_dir(), "{part}");
        }
    }

    #[test]
    fn a_broken_profile_has_a_folder_unless_its_name_is_what_is_wrong() {
        assert!(waits_in_a_folder("watercolor"));
        for name in ["originals", "Gallery", "logs", ".hidden", "a/b", ""] {
            assert!(!waits_in_a_folder(name), "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_an_outbox_inside_the_inbox_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in/sub")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("in/sub"), dir.path().join("out")).unwrap();
        let error = prepare(&config(dir.path(), "in", "out")).unwrap_err();
        assert!(error.to_string().contains("is inside the inbox"), "{error}");
    }
}
