//! File operations that survive a crash or `kill -9`: write-then-rename, moves that work
//! across file systems, and a rename that never overwrites.
//!
//! The durability model, which keeps drawdrop's promises with a few fsyncs per job:
//! - a process crash (`kill -9`) loses nothing the process wrote: every step is a rename,
//!   and every file appears under its name only when whole;
//! - for a power loss, file *data* is fsynced before the name that makes it count is
//!   created (a staged result before its commit, a commit record before its rename), and the
//!   metadata operations of one file system (renames, new folders) are taken as committed in
//!   order, which journaling and copy-on-write file systems (APFS, HFS+ journaled, ext4, XFS,
//!   btrfs) do: an fsync on one of them commits every earlier name change on the same file
//!   system. So a job's later steps being on disk implies its earlier ones are;
//! - across file systems there is no such order: a copy to another file system is fsynced,
//!   with its folder, before the source is removed, staged results are fsynced with their
//!   folder before the commit (in the inbox) is written, and the outbox is synced before a
//!   finished job is forgotten.
//!
//! Per job that is three fsyncs on one file system (each staged result, the commit record,
//! and the `jobs.jsonl` line, which is written in the background), a few more across two.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Flushes a folder's entries (new names, renames) to disk. A no-op where folders cannot
/// be opened for syncing.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir) {
            Ok(handle) => match handle.sync_all() {
                Ok(()) => Ok(()),
                // Some file systems (network shares) refuse fsync on folders.
                Err(error) if is_unsupported(&error) => Ok(()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied
    )
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)
}

/// Writes `bytes` to `path` completely, creating parent folders. The file appears under its
/// name only when whole and on disk (written to a temporary sibling, fsynced, renamed),
/// replacing what was there.
pub fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_through_temporary(path, bytes, true)
}

/// Like [`write_whole`] (a reader sees the old file or the new one, never half of one), but
/// without waiting for the disk: for files that can be made again (the gallery).
pub fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_through_temporary(path, bytes, false)
}

fn write_through_temporary(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let parent = parent_of(path)?;
    create_dir_all(parent)?;
    let temporary = temporary_sibling(path);
    let result = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Writes a new file durably (the caller owns the name; used inside staging folders).
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = parent_of(path)?;
    create_dir_all(parent)?;
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Moves a file, replacing `to`, and works across file systems: a rename where possible,
/// else copy to a temporary sibling of `to`, fsync it and its folder, rename into place, then
/// remove `from`. Either way `to` is never seen half-written and `from` is removed only once
/// `to` is on disk.
pub fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    let parent = parent_of(to)?;
    create_dir_all(parent)?;
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::CrossesDevices => copy_then_remove(from, to),
        Err(error) => Err(error),
    }
}

fn copy_then_remove(from: &Path, to: &Path) -> io::Result<()> {
    let parent = parent_of(to)?;
    let temporary = temporary_sibling(to);
    let copied = (|| {
        fs::copy(from, &temporary)?;
        File::open(&temporary)?.sync_all()?;
        fs::rename(&temporary, to)?;
        sync_dir(parent)
    })();
    if let Err(error) = copied {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    fs::remove_file(from)
}

/// Renames `from` to `to` unless `to` exists (then `Ok(false)` and nothing changes). Both
/// must be on one file system. Uses a hard link, which fails on an existing name atomically;
/// where links are not supported, checks first and renames.
///
/// A crash between the link and the unlink leaves the file under both names. Done again,
/// the move finds `to` taken by the very same file and only completes the unlink, so a
/// restart never places one file a second time under a ` (2)` name.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            fs::remove_file(from)?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            if same_file(from, to) {
                fs::remove_file(from)?;
                return Ok(true);
            }
            Ok(false)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(error),
        Err(_) => {
            if fs::symlink_metadata(to).is_ok() {
                return Ok(false);
            }
            fs::rename(from, to)?;
            Ok(true)
        }
    }
}

/// Whether two names are links to one file (same device and inode; never on platforms
/// without inodes). Links are not followed.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(a), Ok(b)) => a.is_file() && a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Removes a folder tree; a folder already gone is fine.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Removes a file; a file already gone is fine.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Every file under `root` (a missing `root` has none), as paths relative to it.
pub fn files_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
        let entries = match fs::read_dir(root.join(relative)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, Path::new(""), &mut files)?;
    Ok(files)
}

/// A hidden name next to `path` for a file being written.
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.drawdrop-{}.tmp", std::process::id()))
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent folder", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_whole_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.txt");
        write_whole(&path, b"one").unwrap();
        write_whole(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn rename_no_replace_keeps_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::write(&from, b"new").unwrap();
        fs::write(&to, b"old").unwrap();
        assert!(!rename_no_replace(&from, &to).unwrap());
        assert_eq!(fs::read(&to).unwrap(), b"old");
        assert_eq!(fs::read(&from).unwrap(), b"new");
        fs::remove_file(&to).unwrap();
        assert!(rename_no_replace(&from, &to).unwrap());
        assert_eq!(fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }

    #[cfg(unix)]
    #[test]
    fn rename_no_replace_finishes_a_move_interrupted_between_link_and_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::write(&from, b"moved").unwrap();
        fs::hard_link(&from, &to).unwrap(); // killed before the unlink
        assert!(rename_no_replace(&from, &to).unwrap());
        assert!(!from.exists());
        assert_eq!(fs::read(&to).unwrap(), b"moved");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn move_file_creates_folders_and_removes_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.png");
        let to = dir.path().join("x/y/to.png");
        fs::write(&from, b"bytes").unwrap();
        move_file(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"bytes");
        assert!(!from.exists());
    }

    #[test]
    fn copy_then_remove_moves_the_bytes_whole() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.png");
        let to = dir.path().join("to.png");
        fs::write(&from, vec![7u8; 100_000]).unwrap();
        copy_then_remove(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), vec![7u8; 100_000]);
        assert!(!from.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
