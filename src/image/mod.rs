//! Pictures in (PNG, JPEG, WebP, TIFF, HEIC through the system), their orientation, PNG
//! checks, the size rule and resizing for init images, and PNG text metadata.
//!
//! - [`open`] takes a dropped file's bytes of any format drawdrop takes ([`Format`], by
//!   content), checks its declared size before decoding and reads its EXIF orientation;
//!   [`Picture::init_image`] gives the upright 8-bit PNG to send at a size.
//! - [`inspect`] decides whether a file is a complete, sane PNG that drawdrop will send, with a
//!   reason a person can read when it is not ([`PngProblem`]). It walks the chunks once, checking
//!   every CRC, and never decompresses.
//! - [`target_size`] is the size rule: the profile's width/height, else the input's size rounded
//!   to a multiple of 64 within 128..=8192.
//! - [`init_image`] gives the PNG to send at that size: the file's own bytes when it already has
//!   it (no copy, no decode), else a centre-cropped, resized 8-bit PNG.
//! - `png_out` writes the PNGs drawdrop makes of pixels (fast, in one buffer).
//! - [`with_text_chunk`] and [`text_chunks`] write and read `tEXt`/`iTXt` (and read `zTXt`)
//!   metadata without touching any other chunk.

mod check;
mod chunks;
mod color;
mod decode;
mod format;
pub(crate) mod heic;
mod orientation;
pub(crate) mod parameters;
mod png_out;
mod resize;
mod size;
mod sniff;
mod text;

#[cfg(test)]
pub(crate) mod test_png;

#[cfg(test)]
pub(crate) use orientation::exif_block;

use std::fmt;

pub(crate) use check::inspect;
pub(crate) use decode::{Picture, PictureProblem, open};
pub(crate) use format::{Format, TAKEN_FORMATS};
pub(crate) use orientation::Orientation;
pub(crate) use resize::{pixels_png, rgb_png};
pub(crate) use size::{DEFAULT_MAX_MEGAPIXELS, MAX_SIDE, pixels_for_megapixels, target_size};
#[cfg(test)]
pub(crate) use text::with_text_chunk;
pub(crate) use text::{insert_text_chunk, text_chunks};

/// Limits for what drawdrop will take as input and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width x height) an input may declare; a guard against decompression bombs.
    /// Default 8192 x 8192.
    pub max_pixels: u64,
    /// Longest side an input may declare. Inputs are resized to at most 8192 per side before
    /// they are sent, so this may exceed what the server accepts. Default 32768.
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 8192 * 8192,
            max_side: 32768,
        }
    }
}

/// What the header (IHDR) says about a complete, sane PNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PngInfo {
    /// Width in pixels, at least 1.
    pub width: u32,
    /// Height in pixels, at least 1.
    pub height: u32,
    /// Bits per sample (per palette index for indexed images): 1, 2, 4, 8 or 16.
    pub bit_depth: u8,
    /// How pixels are stored (the IHDR color type).
    pub color_type: ColorType,
    /// Adam7 interlacing.
    pub interlaced: bool,
}

impl PngInfo {
    /// `(width, height)`.
    pub(crate) fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

/// A PNG color type, as stored in IHDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ColorType {
    /// Code 0: gray levels.
    Grayscale,
    /// Code 2: red, green, blue.
    Rgb,
    /// Code 3: palette indices (PLTE).
    Indexed,
    /// Code 4: gray levels with alpha.
    GrayscaleAlpha,
    /// Code 6: red, green, blue, alpha.
    Rgba,
}

impl ColorType {
    /// The color type for an IHDR code, if the code exists.
    pub(crate) fn from_code(code: u8) -> Option<ColorType> {
        match code {
            0 => Some(ColorType::Grayscale),
            2 => Some(ColorType::Rgb),
            3 => Some(ColorType::Indexed),
            4 => Some(ColorType::GrayscaleAlpha),
            6 => Some(ColorType::Rgba),
            _ => None,
        }
    }

    /// The bit depths the PNG specification allows with this color type.
    pub(crate) fn allowed_bit_depths(self) -> &'static [u8] {
        match self {
            ColorType::Grayscale => &[1, 2, 4, 8, 16],
            ColorType::Indexed => &[1, 2, 4, 8],
            ColorType::Rgb | ColorType::GrayscaleAlpha | ColorType::Rgba => &[8, 16],
        }
    }
}

impl fmt::Display for ColorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorType::Grayscale => "grayscale",
            ColorType::Rgb => "RGB",
            ColorType::Indexed => "indexed (palette)",
            ColorType::GrayscaleAlpha => "grayscale with alpha",
            ColorType::Rgba => "RGBA",
        })
    }
}
