//! Walking the inbox: every candidate picture with its size and mtime, in natural order.
//!
//! Hidden folders (drawdrop's own `.drawdrop` among them) are not entered and symbolic links
//! are not followed, so a scan sees exactly the files a person put into the inbox.

use crate::jobs::names::{self, Kind, is_candidate, is_visible_dir};
use crate::jobs::seen::{Observation, observe};
use crate::pipeline::natural;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A candidate file found in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Path relative to the inbox.
    pub relative: PathBuf,
    pub seen: Observation,
}

/// Something a scan left alone that a person should hear about, with its path in the
/// scanned folder.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A folder inside the inbox that cannot be read.
    Unreadable(PathBuf, io::Error),
    /// A symbolic link with a picture's name, or to a folder: never followed, as it may
    /// point anywhere.
    Link(PathBuf),
    /// A file of a kind drawdrop does not take (a GIF, a video, a PDF ...): left where it is.
    NotTaken(PathBuf),
}

impl Notice {
    /// The same notice with its path under `folder` (the scanned folder's path in the inbox).
    pub(crate) fn under(self, folder: &Path) -> Notice {
        match self {
            Notice::Unreadable(path, error) => Notice::Unreadable(folder.join(path), error),
            Notice::Link(path) => Notice::Link(folder.join(path)),
            Notice::NotTaken(path) => Notice::NotTaken(folder.join(path)),
        }
    }
}

/// Lists every candidate under `inbox` in natural order of their paths (`img_2` before
/// `img_10`, folder by folder): files present together are taken as a person reads their
/// names, whatever order a copier wrote them in. What is skipped for a reason a person
/// should know (unreadable folders, symbolic links, files not taken) goes to
/// `notice`; an unreadable inbox is
/// an error.
pub(crate) fn scan(inbox: &Path, mut notice: impl FnMut(Notice)) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut folders = vec![PathBuf::new()];
    let mut first = true;
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(inbox.join(&folder)) {
            Ok(entries) => entries,
            Err(error) if first => return Err(error),
            Err(error) => {
                notice(Notice::Unreadable(folder, error));
                continue;
            }
        };
        first = false;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let relative = folder.join(entry.file_name());
            if kind.is_dir() {
                if is_visible_dir(&entry.file_name()) {
                    folders.push(relative);
                }
            } else if kind.is_symlink() {
                if is_candidate(&relative) || entry.path().is_dir() {
                    notice(Notice::Link(relative));
                }
            } else if kind.is_file()
                && is_candidate(&relative)
                && let Ok(seen) = observe(&entry.path())
            {
                found.push(Found { relative, seen });
            } else if kind.is_file() && names::kind(&relative) == Kind::NotTaken {
                notice(Notice::NotTaken(relative));
            }
        }
    }
    found.sort_by(|a, b| natural::compare_paths(&a.relative, &b.relative));
    Ok(found)
}

/// Whether a file ends as a whole picture does, by the last thing its writer writes: a PNG
/// its IEND chunk, a JPEG its end-of-image marker, a WebP the length its RIFF header
/// promised. So a closed file that ends so was written to its end. Other formats (TIFF,
/// HEIC) have no such mark and wait for the settle window.
pub(crate) fn ends_like_a_whole_picture(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
    let mut head = [0u8; 12];
    let mut tail = [0u8; 12];
    let Ok(len) = fs::File::open(path).and_then(|mut file| {
        file.read_exact(&mut head)?;
        let len = file.seek(SeekFrom::End(-12))? + 12;
        file.read_exact(&mut tail)?;
        Ok(len)
    }) else {
        return false;
    };
    if head.starts_with(b"\x89PNG") {
        tail == IEND
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        tail.ends_with(&[0xff, 0xd9])
    } else if head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        let promised = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        u64::from(promised) + 8 == len
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| f.relative.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn finds_pictures_at_every_depth_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "a.png",
            "watercolor/b.PNG",
            "watercolor/deep/er/c.png",
            "notes.txt",
            "d.png.part",
            ".hidden.png",
            ".drawdrop/jobs/1/e.png",
            ".secret/f.png",
        ] {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
        }
        let mut found = names(&scan(root, |_| {}).unwrap());
        found.sort();
        assert_eq!(
            found,
            ["a.png", "watercolor/b.PNG", "watercolor/deep/er/c.png"]
        );
    }

    #[test]
    fn lists_in_natural_order_whatever_the_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let now = std::time::SystemTime::now();
        // Written newest name first, as a copier may: neither mtime nor bytes give the order.
        for (name, age) in [
            ("img_10.png", 300),
            ("img_2.png", 200),
            ("b/img_1.png", 250),
            ("img_1.png", 100),
            ("B/img_3.png", 50),
        ] {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - std::time::Duration::from_secs(age))
                .unwrap();
        }
        assert_eq!(
            names(&scan(root, |_| {}).unwrap()),
            [
                "B/img_3.png",
                "b/img_1.png",
                "img_1.png",
                "img_2.png",
                "img_10.png"
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn does_not_follow_symbolic_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.png"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.png"),
            dir.path().join("linked.png"),
        )
        .unwrap();
        let mut links = Vec::new();
        let found = scan(dir.path(), |notice| {
            if let Notice::Link(path) = notice {
                links.push(path);
            }
        })
        .unwrap();
        assert!(found.is_empty());
        links.sort();
        assert_eq!(links, [PathBuf::from("link"), PathBuf::from("linked.png")]);
    }

    #[test]
    fn a_picture_is_whole_when_it_ends_as_its_format_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::WebP,
        ] {
            let mut bytes = Vec::new();
            image::RgbImage::new(4, 4)
                .write_to(&mut std::io::Cursor::new(&mut bytes), format)
                .unwrap();
            fs::write(&path, &bytes).unwrap();
            assert!(ends_like_a_whole_picture(&path), "{format:?}");
            fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
            assert!(!ends_like_a_whole_picture(&path), "{format:?} cut");
        }
        fs::write(&path, b"x").unwrap();
        assert!(!ends_like_a_whole_picture(&path));
        fs::write(&path, b"II*\0\x08\0\0\0 a TIFF of some length").unwrap();
        assert!(
            !ends_like_a_whole_picture(&path),
            "TIFF waits for the settle window"
        );
    }

    #[test]
    fn a_missing_inbox_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(&dir.path().join("gone"), |_| {}).is_err());
    }
}
