//! Which names in the inbox are pictures to take, and which are left alone.
//!
//! Only names ending in `.png` (any case) are taken. Hidden files and folders (including
//! drawdrop's own `.drawdrop` state folder, macOS `._` AppleDouble files and iCloud's
//! `.name.icloud` placeholders), browser partial downloads and temporary files are left alone,
//! wherever they are in the tree.

use std::ffi::OsStr;
use std::path::{Component, Path};

/// Suffixes of files that are still being downloaded or written under a temporary name.
const TEMPORARY_SUFFIXES: &[&str] = &[".crdownload", ".part", ".download", ".tmp", ".icloud"];

/// Whether a file at `relative` (a path inside the inbox) is a picture drawdrop should take.
pub fn is_candidate(relative: &Path) -> bool {
    let mut components = relative.components().peekable();
    if components.peek().is_none() {
        return false;
    }
    for component in components {
        let Component::Normal(name) = component else {
            return false;
        };
        if is_hidden(name) {
            return false;
        }
    }
    let Some(name) = relative.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    has_png_extension(name) && !is_temporary(name)
}

/// Whether a folder inside the inbox is worth descending into.
pub fn is_visible_dir(name: &OsStr) -> bool {
    !is_hidden(name)
}

/// A path as it may be shown in a log line or an error file: control characters (a newline
/// in a file name, say) are escaped so one name is always one line.
pub fn shown(path: &Path) -> String {
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

fn has_png_extension(name: &str) -> bool {
    name.len() > 4
        && name
            .get(name.len() - 4..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".png"))
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
    fn takes_png_names_in_any_case_at_any_depth() {
        for name in [
            "cat.png",
            "Cat.PNG",
            "a/b/c/dog.Png",
            "watercolor/my cat.png",
            "-x.png",
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
            "cat.jpg",
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
}
