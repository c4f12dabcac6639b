//! The picture formats drawdrop takes, by name (the extensions a person sees) and by content
//! (the magic bytes, which win: an iPhone HEIC saved as `.jpg` is a HEIC).

use std::fmt;

use super::chunks::SIGNATURE;
use super::sniff::{OtherFormat, sniff_format};

/// A picture format drawdrop takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    Png,
    Jpeg,
    WebP,
    /// HEIC / HEIF, read through the system's converter.
    Heic,
    Tiff,
}

/// Every extension taken (lower case, without the dot), with its format.
const EXTENSIONS: [(&str, Format); 8] = [
    ("png", Format::Png),
    ("jpg", Format::Jpeg),
    ("jpeg", Format::Jpeg),
    ("webp", Format::WebP),
    ("heic", Format::Heic),
    ("heif", Format::Heic),
    ("tif", Format::Tiff),
    ("tiff", Format::Tiff),
];

/// The sentence that says what is taken, for log lines and reasons.
pub(crate) const TAKEN_FORMATS: &str = "PNG, JPEG, WebP, HEIC and TIFF";

impl Format {
    /// The format a file name's extension promises, any case (`cat.JPG` -> JPEG).
    pub(crate) fn for_name(name: &str) -> Option<Format> {
        let (stem, extension) = name.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        EXTENSIONS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(extension))
            .map(|&(_, format)| format)
    }

    /// The format `bytes` are in, by their magic bytes; `None` when they are not a picture
    /// drawdrop takes (or too short to tell).
    pub(crate) fn of(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&SIGNATURE) {
            return Some(Format::Png);
        }
        match sniff_format(bytes)? {
            OtherFormat::Jpeg => Some(Format::Jpeg),
            OtherFormat::WebP => Some(Format::WebP),
            OtherFormat::Heic => Some(Format::Heic),
            OtherFormat::Tiff => Some(Format::Tiff),
            _ => None,
        }
    }

    /// The short name people know: "JPEG".
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::WebP => "WebP",
            Format::Heic => "HEIC",
            Format::Tiff => "TIFF",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_case() {
        let cases = [
            ("cat.png", Some(Format::Png)),
            ("Cat.PNG", Some(Format::Png)),
            ("IMG_0001.JPG", Some(Format::Jpeg)),
            ("a.jpeg", Some(Format::Jpeg)),
            ("a.WebP", Some(Format::WebP)),
            ("IMG_0002.HEIC", Some(Format::Heic)),
            ("a.heif", Some(Format::Heic)),
            ("scan.tif", Some(Format::Tiff)),
            ("scan.TIFF", Some(Format::Tiff)),
            ("clip.mov", None),
            ("anim.gif", None),
            ("raw.dng", None),
            (".png", None),
            ("png", None),
            ("cat.png.part", None),
        ];
        for (name, want) in cases {
            assert_eq!(Format::for_name(name), want, "{name}");
        }
    }

    #[test]
    fn content_wins_over_names() {
        assert_eq!(Format::of(&SIGNATURE), Some(Format::Png));
        assert_eq!(
            Format::of(b"\xff\xd8\xff\xe1\0\x10Exif"),
            Some(Format::Jpeg)
        );
        assert_eq!(Format::of(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(
            Format::of(b"\0\0\0\x18ftypheic\0\0\0\0mif1"),
            Some(Format::Heic)
        );
        assert_eq!(Format::of(b"II*\0\x08\0\0\0"), Some(Format::Tiff));
        assert_eq!(Format::of(b"GIF89a\x01\0"), None);
        assert_eq!(Format::of(b"\0\0\0\x20ftypqt  \0\0\0\0"), None);
        assert_eq!(Format::of(b""), None);
    }
}
