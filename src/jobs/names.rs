//! Which names in the inbox are pictures to take, which are left alone in silence, and
//! which are other files a person should hear about.
//!
//! Names of the picture formats drawdrop takes (`.png`, `.jpg`, `.jpeg`, `.webp`, `.heic`,
//! `.heif`, `.tif`, `.tiff`, any case) are taken. Hidden files and folders (including
//! drawdrop's own `.drawdrop` state folder, macOS `._` AppleDouble files and iCloud's
//! `.name.icloud` placeholders), browser partial downloads, temporary files, sidecars
//! (`cat.txt`, `cat.toml`, perhaps waiting for their picture) and the files systems leave in
//! folders are left alone in silence, wherever they are in the tree. Anything else (a GIF, a
//! video, a PDF, a camera raw file) is not taken, and said so.

use crate::image::Format;
use crate::jobs::claim::SIDECAR_EXTENSIONS;
use std::ffi::OsStr;
use std::path::{Component, Path};

/// Suffixes of files that are still being downloaded or written under a temporary name.
const TEMPORARY_SUFFIXES: &[&str] = &[".crdownload", ".part", ".download", ".tmp", ".icloud"];

/// Files that Windows and macOS put into folders by themselves.
const SYSTEM_FILES: &[&str] = &["thumbs.db", "desktop.ini", "icon\r"];

/// What drawdrop makes of a file in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A picture to take.
    Picture,
    /// Left alone without a word: hidden, temporary, a sidecar, a system file.
    Silent,
    /// Another kind of file (a GIF, a video, a PDF ...): left alone, and said so once.
    NotTaken,
}

/// What drawdrop makes of the file at `relative` (a path inside the inbox).
pub(crate) fn kind(relative: &Path) -> Kind {
    let mut components = relative.components().peekable();
    if components.peek().is_none() {
        return Kind::Silent;
    }
    for component in components {
        let Component::Normal(name) = component else {
            return Kind::Silent;
        };
        if is_hidden(name) {
            return Kind::Silent;
        }
    }
    let Some(name) = relative.file_name().and_then(OsStr::to_str) else {
        return Kind::NotTaken;
    };
    let lower = name.to_ascii_lowercase();
    let is_sidecar = relative
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|extension| {
            SIDECAR_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
        });
    if is_temporary(name) || is_sidecar || SYSTEM_FILES.contains(&lower.as_str()) {
        Kind::Silent
    } else if Format::for_name(name).is_some() {
        Kind::Picture
    } else {
        Kind::NotTaken
    }
}

/// Whether a file at `relative` (a path inside the inbox) is a picture drawdrop should take.
pub(crate) fn is_candidate(relative: &Path) -> bool {
    kind(relative) == Kind::Picture
}

/// Whether a folder inside the inbox is worth descending into.
pub(crate) fn is_visible_dir(name: &OsStr) -> bool {
    !is_hidden(name)
}

/// A path as it may be shown in a log line or an error file: control characters (a newline
/// in a file name, say) are escaped so one name is always one line.
pub(crate) fn shown(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    TEMPORARY_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_picture_names_in_any_case_at_any_depth() {
        for name in [
            "cat.png",
            "Cat.PNG",
            "a/b/c/dog.Png",
            "watercolor/my cat.png",
            "-x.png",
            "IMG_0001.JPG",
            "photo.jpeg",
            "web.WEBP",
            "IMG_0002.HEIC",
            "a.heif",
            "scan.tif",
            "scan.Tiff",
        ] {
            assert!(is_candidate(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn shown_names_stay_on_one_line() {
        assert_eq!(shown(Path::new("a/my cat.png")), "a/my cat.png");
        assert_eq!(
            shown(Path::new("evil\nINFO done x.png")),
            "evil\\nINFO done x.png"
        );
        assert_eq!(shown(Path::new("tab\there.png")), "tab\\there.png");
    }

    #[test]
    fn leaves_other_names_alone() {
        for name in [
            "clip.mov",
            "cat.png.crdownload",
            "cat.png.part",
            "cat.png.download",
            "cat.png.tmp",
            ".cat.png",
            "._cat.png",
            ".cat.png.icloud",
            ".drawdrop/jobs/1/cat.png",
            "a/.hidden/cat.png",
            ".png",
            "png",
            "catpng",
            "",
            "../cat.png",
            "/abs/cat.png",
        ] {
            assert!(!is_candidate(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn other_files_are_not_taken_and_said_so_but_some_stay_silent() {
        for name in [
            "clip.mov",
            "clip.MP4",
            "anim.gif",
            "scan.pdf",
            "raw.CR2",
            "raw.nef",
            "raw.dng",
            "raw.arw",
            "letter.docx",
            "w/README",
        ] {
            assert_eq!(kind(Path::new(name)), Kind::NotTaken, "{name}");
        }
        for name in [
            "cat.txt",
            "w/cat.TOML",
            "notes.txt",
            ".DS_Store",
            "._clip.mov",
            ".clip.mov.icloud",
            "clip.mov.part",
            "clip.mov.crdownload",
            "Thumbs.db",
            "desktop.ini",
            "Icon\r",
            ".hidden/clip.mov",
        ] {
            assert_eq!(kind(Path::new(name)), Kind::Silent, "{name}");
        }
    }
}
