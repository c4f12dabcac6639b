//! Recognising what a non-PNG file is, by its first bytes, so the reason given is a kind one
//! ("this is a JPEG image") rather than "bad signature".

use std::fmt;

/// A file format that is not PNG, recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OtherFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// GIF87a / GIF89a.
    Gif,
    /// WebP (`RIFF....WEBP`).
    WebP,
    /// HEIC / HEIF (ISO media `ftyp` with a HEIF brand), what iPhones save.
    Heic,
    /// AVIF (ISO media `ftyp` with an AVIF brand).
    Avif,
    /// Another ISO media file (`ftyp`): MP4, MOV, 3GP ...
    Video,
    /// JPEG XL, bare codestream or container.
    JpegXl,
    /// TIFF, also the base of DNG and many camera raw formats.
    Tiff,
    /// Windows bitmap.
    Bmp,
    /// Photoshop document.
    Psd,
    /// PDF.
    Pdf,
    /// ZIP, also the container of Office documents.
    Zip,
    /// An SVG drawing (XML text).
    Svg,
    /// An HTML page, typically an error page saved by a failed download.
    Html,
    /// Some other text.
    Text,
}

impl fmt::Display for OtherFormat {
    /// A noun phrase with its article: "a JPEG image".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OtherFormat::Jpeg => "a JPEG image",
            OtherFormat::Gif => "a GIF image",
            OtherFormat::WebP => "a WebP image",
            OtherFormat::Heic => "a HEIC/HEIF image",
            OtherFormat::Avif => "an AVIF image",
            OtherFormat::Video => "a video (MP4 or QuickTime)",
            OtherFormat::JpegXl => "a JPEG XL image",
            OtherFormat::Tiff => "a TIFF image (or a camera raw file)",
            OtherFormat::Bmp => "a BMP image",
            OtherFormat::Psd => "a Photoshop document",
            OtherFormat::Pdf => "a PDF document",
            OtherFormat::Zip => "a ZIP archive (or an Office document)",
            OtherFormat::Svg => "an SVG drawing",
            OtherFormat::Html => "a web page (HTML), perhaps from a failed download",
            OtherFormat::Text => "a text file",
        })
    }
}

/// How much of the start of a file the text checks look at.
const TEXT_PREFIX: usize = 1024;

/// What `bytes` is, when its magic bytes say so. `None` for unknown binary data (and PNG).
pub(super) fn sniff_format(bytes: &[u8]) -> Option<OtherFormat> {
    binary_format(bytes).or_else(|| text_format(bytes))
}

/// Formats with a fixed signature at a fixed place.
fn binary_format(bytes: &[u8]) -> Option<OtherFormat> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xff, 0xd8, 0xff]) {
        Some(OtherFormat::Jpeg)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(OtherFormat::Gif)
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some(OtherFormat::WebP)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some(iso_media_format(bytes.get(8..12)))
    } else if starts(&[0xff, 0x0a]) || starts(b"\0\0\0\x0cJXL \r\n\x87\n") {
        Some(OtherFormat::JpegXl)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some(OtherFormat::Tiff)
    } else if starts(b"BM") && bytes.len() >= 26 && bytes.get(6..10) == Some(&[0; 4]) {
        Some(OtherFormat::Bmp)
    } else if starts(b"8BPS") {
        Some(OtherFormat::Psd)
    } else if starts(b"%PDF-") {
        Some(OtherFormat::Pdf)
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        Some(OtherFormat::Zip)
    } else {
        None
    }
}

/// The kind of an ISO base media file from its major brand.
fn iso_media_format(brand: Option<&[u8]>) -> OtherFormat {
    match brand {
        Some(b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1") => {
            OtherFormat::Heic
        }
        Some(b"avif" | b"avis") => OtherFormat::Avif,
        _ => OtherFormat::Video,
    }
}

/// Text, and the kinds of text worth naming (SVG, HTML).
fn text_format(bytes: &[u8]) -> Option<OtherFormat> {
    let prefix = &bytes[..bytes.len().min(TEXT_PREFIX)];
    if !looks_like_text(prefix) {
        return None;
    }
    let lower = prefix.to_ascii_lowercase();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if contains(b"<svg") {
        Some(OtherFormat::Svg)
    } else if contains(b"<!doctype html") || contains(b"<html") {
        Some(OtherFormat::Html)
    } else {
        Some(OtherFormat::Text)
    }
}

/// UTF-8 (a character cut at the end of the prefix is fine) without control characters other
/// than tab, line breaks and form feed.
fn looks_like_text(prefix: &[u8]) -> bool {
    let valid = match std::str::from_utf8(prefix) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_formats_by_magic() {
        let cases: &[(&[u8], Option<OtherFormat>)] = &[
            (b"\xff\xd8\xff\xe0\0\x10JFIF", Some(OtherFormat::Jpeg)),
            (b"GIF89a\x01\0", Some(OtherFormat::Gif)),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some(OtherFormat::WebP)),
            (b"\0\0\0\x18ftypheic\0\0\0\0", Some(OtherFormat::Heic)),
            (b"\0\0\0\x18ftypmif1\0\0\0\0", Some(OtherFormat::Heic)),
            (b"\0\0\0\x1cftypavif\0\0\0\0", Some(OtherFormat::Avif)),
            (b"\0\0\0\x20ftypqt  \0\0\0\0", Some(OtherFormat::Video)),
            (b"\xff\x0a\xfa", Some(OtherFormat::JpegXl)),
            (b"II*\0\x08\0\0\0", Some(OtherFormat::Tiff)),
            (b"MM\0*\0\0\0\x08", Some(OtherFormat::Tiff)),
            (
                b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0\x01\0\0\0\x01\0",
                Some(OtherFormat::Bmp),
            ),
            (b"8BPS\0\x01", Some(OtherFormat::Psd)),
            (b"%PDF-1.7\n", Some(OtherFormat::Pdf)),
            (b"PK\x03\x04\x14\0", Some(OtherFormat::Zip)),
            (
                b"<?xml version=\"1.0\"?>\n<svg xmlns=",
                Some(OtherFormat::Svg),
            ),
            (b"<!DOCTYPE html>\n<html><body>403", Some(OtherFormat::Html)),
            (b"hello, world\n", Some(OtherFormat::Text)),
            (
                "caf\u{e9} \u{1F600}\r\n".as_bytes(),
                Some(OtherFormat::Text),
            ),
            (b"BMW is a car", Some(OtherFormat::Text)),
            (b"\0\x01\x02\x03binary", None),
            (b"\x89PNG\r\n\x1a\n", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff_format(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn text_cut_inside_a_character_is_still_text() {
        let long = format!("x{}", "\u{e9}".repeat(TEXT_PREFIX));
        assert_eq!(sniff_format(long.as_bytes()), Some(OtherFormat::Text));
    }
}
