//! A file as seen at one moment (its size and mtime): what the settle rule watches, and what
//! a claim checks is still the same before it takes the file.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// What the file system said about a file at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    pub size: u64,
    pub mtime: SystemTime,
}

/// Size and mtime of a regular file (symbolic links are not followed).
pub(crate) fn observe(path: &Path) -> io::Result<Observation> {
    observation(&fs::symlink_metadata(path)?)
}

/// [`observe`] from metadata already read (with `symlink_metadata`).
pub(crate) fn observation(meta: &fs::Metadata) -> io::Result<Observation> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(Observation {
        size: meta.len(),
        mtime: meta.modified()?,
    })
}
