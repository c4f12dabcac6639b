//! Opening a dropped picture of any format drawdrop takes: what it is by its bytes, its size
//! from its header (checked against the limits before anything is decoded), which way is up
//! (EXIF), and the picture to send at a size, as a PNG or as pixels.
//!
//! PNG is checked chunk by chunk ([`inspect`](super::inspect)) and sent as it is when it
//! already has the size and stands upright. JPEG, WebP and TIFF are decoded in pure Rust with
//! the decoder's memory limited to the declared size; HEIC goes through the system's
//! converter ([`heic`](super::heic)) and its PNG is then treated as any PNG.

use std::borrow::Cow;
use std::io::Cursor;

use ::image::codecs::jpeg::JpegDecoder;
use ::image::codecs::tiff::TiffDecoder;
use ::image::codecs::webp::WebPDecoder;
use ::image::{DynamicImage, ImageDecoder};

use super::check::{PngProblem, check_limits, check_signature, walk};
use super::format::{Format, TAKEN_FORMATS};
use super::heic::{self, HeicProblem};
use super::orientation::{ExifProblem, Orientation, exif_orientation, upright};
use super::resize::{ImageError, decode_png, decoder_limits, png_init_image, sized, sized_png};
use super::sniff::{OtherFormat, sniff_format};
use super::{Limits, PngInfo};

/// Why a dropped file is not a picture drawdrop can send. `Display` is a reason a person can
/// read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PictureProblem {
    /// A PNG that is not complete and sane, a picture of an absurd size, an empty file.
    #[error(transparent)]
    Png(#[from] PngProblem),
    /// Another format than the name says, and not one drawdrop takes.
    #[error("this is {found}, not a {named} (drawdrop takes {TAKEN_FORMATS})")]
    NotTaken { found: OtherFormat, named: Format },
    /// Bytes that are no known format.
    #[error(
        "this is not a {named}: the file does not start as a {named} does (nor as any picture \
         drawdrop takes: {TAKEN_FORMATS})"
    )]
    Unknown { named: Format },
    /// A JPEG that ends before its end-of-image marker.
    #[error(
        "the JPEG is truncated: it ends before its end-of-image marker (the file has {len} \
         bytes): an unfinished copy or download?"
    )]
    TruncatedJpeg { len: usize },
    /// The decoder refused the data.
    #[error("the {format} cannot be decoded ({reason}): is the file damaged or incomplete?")]
    Decode { format: Format, reason: String },
    /// The orientation cannot be told.
    #[error("the {format} cannot be turned upright: {problem}")]
    Exif {
        format: Format,
        problem: ExifProblem,
    },
    /// The PNG a HEIC converter wrote is not one to send.
    #[error("the HEIC's converter wrote a PNG that cannot be sent: {0}")]
    ConvertedPng(PngProblem),
    /// The HEIC converter is missing or failed.
    #[error(transparent)]
    Heic(#[from] HeicProblem),
    /// Making the PNG to send failed.
    #[error(transparent)]
    Sizing(#[from] ImageError),
}

/// A picture opened and checked: its format, size and orientation, ready to be sent at a size.
#[derive(Debug)]
pub(crate) struct Picture<'a> {
    /// What the bytes are (a HEIC stays a HEIC here, though its PNG is what is kept).
    pub format: Format,
    /// Which way it is stored, relative to upright.
    pub orientation: Orientation,
    /// The file's bytes; for a HEIC, the PNG its converter wrote.
    bytes: Cow<'a, [u8]>,
    /// Its size as stored.
    stored: (u32, u32),
    /// The checked header, when `bytes` are a PNG.
    png: Option<PngInfo>,
}

/// Opens the picture in `bytes`. `named` is the format the file's name promises, used only to
/// word the reason when the bytes are no picture; the bytes decide what the picture is.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    named: Option<Format>,
    limits: &Limits,
) -> Result<Picture<'a>, PictureProblem> {
    let Some(format) = Format::of(bytes) else {
        return Err(not_a_picture(bytes, named.unwrap_or(Format::Png)));
    };
    let bytes = match format {
        Format::Heic => Cow::Owned(heic::to_png(bytes, heic_output_limit(limits))?),
        _ => Cow::Borrowed(bytes),
    };
    let (stored, orientation, png) = match format {
        Format::Png | Format::Heic => {
            let walk = walk(&bytes, Some(limits)).map_err(|problem| match format {
                Format::Heic => PictureProblem::ConvertedPng(problem),
                _ => problem.into(),
            })?;
            let exif = walk.exif.and_then(|range| bytes.get(range));
            (
                walk.info.size(),
                orientation_of(format, exif)?,
                Some(walk.info),
            )
        }
        Format::Jpeg => {
            if !ends_like_a_jpeg(&bytes) {
                return Err(PictureProblem::TruncatedJpeg { len: bytes.len() });
            }
            let mut decoder = JpegDecoder::new(Cursor::new(&*bytes)).map_err(decode(format))?;
            let exif = decoder.exif_metadata().map_err(decode(format))?;
            header(format, &decoder, exif.as_deref(), limits)?
        }
        Format::WebP => {
            let mut decoder = WebPDecoder::new(Cursor::new(&*bytes)).map_err(decode(format))?;
            let exif = decoder.exif_metadata().map_err(decode(format))?;
            header(format, &decoder, exif.as_deref(), limits)?
        }
        Format::Tiff => {
            let decoder = TiffDecoder::new(Cursor::new(&*bytes)).map_err(decode(format))?;
            // A TIFF file is itself the structure EXIF borrows: its orientation tag is in its
            // first directory.
            header(format, &decoder, Some(&bytes), limits)?
        }
    };
    Ok(Picture {
        format,
        orientation,
        bytes,
        stored,
        png,
    })
}

impl Picture<'_> {
    /// The size once turned upright: what the size rule applies to.
    pub(crate) fn upright_size(&self) -> (u32, u32) {
        upright(self.stored, self.orientation)
    }

    /// The PNG to send at `target` (upright): a PNG already upright at that size is its own
    /// bytes (no decode, no copy); every other picture is decoded, converted to 8-bit RGB (or
    /// RGBA), cropped and resized to `target`, converted to sRGB (from its ICC profile), turned
    /// upright and encoded as PNG.
    pub(crate) fn init_image(&self, target: (u32, u32)) -> Result<Cow<'_, [u8]>, PictureProblem> {
        if let Some(info) = &self.png {
            return Ok(png_init_image(&self.bytes, info, self.orientation, target)?);
        }
        let (decoded, icc) = self.decoded()?;
        Ok(Cow::Owned(sized_png(
            decoded,
            icc.as_deref(),
            self.orientation,
            target,
        )?))
    }

    /// The pixels to send at `target` (upright), for a server that takes pixels rather than a
    /// PNG: what [`Picture::init_image`] encodes (8-bit RGB, or RGBA when the picture has
    /// alpha; cropped, resized, in sRGB, upright), not encoded. A picture already upright at
    /// that size is only decoded.
    pub(crate) fn init_pixels(&self, target: (u32, u32)) -> Result<DynamicImage, PictureProblem> {
        let (decoded, icc) = self.decoded()?;
        Ok(sized(decoded, icc.as_deref(), self.orientation, target)?)
    }

    /// The picture decoded as stored, with its ICC profile, the decoder limited to its size.
    fn decoded(&self) -> Result<(DynamicImage, Option<Vec<u8>>), PictureProblem> {
        if let Some(info) = &self.png {
            return Ok(decode_png(&self.bytes, info)?);
        }
        let limits = decoder_limits(self.stored);
        let cursor = Cursor::new(&*self.bytes);
        let format = self.format;
        match format {
            Format::Jpeg => limited(JpegDecoder::new(cursor), limits),
            Format::WebP => limited(WebPDecoder::new(cursor), limits),
            _ => limited(TiffDecoder::new(cursor), limits),
        }
        .map_err(decode(format))
    }
}

/// A decoder (just made) limited to `limits`, read to its end; with its ICC profile.
fn limited<D: ImageDecoder>(
    decoder: ::image::ImageResult<D>,
    limits: ::image::Limits,
) -> ::image::ImageResult<(DynamicImage, Option<Vec<u8>>)> {
    let mut decoder = decoder?;
    decoder.set_limits(limits)?;
    let icc = decoder.icc_profile()?;
    Ok((DynamicImage::from_decoder(decoder)?, icc))
}

/// What a header tells: the size as stored, the orientation, and for a PNG its checked header.
type Header = ((u32, u32), Orientation, Option<PngInfo>);

/// Size (checked against the limits) and orientation from a decoder's header.
fn header(
    format: Format,
    decoder: &impl ImageDecoder,
    exif: Option<&[u8]>,
    limits: &Limits,
) -> Result<Header, PictureProblem> {
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(PngProblem::ZeroSize { width, height }.into());
    }
    check_limits((width, height), limits)?;
    Ok(((width, height), orientation_of(format, exif)?, None))
}

/// The orientation an EXIF block (if any) gives.
fn orientation_of(format: Format, exif: Option<&[u8]>) -> Result<Orientation, PictureProblem> {
    exif.map_or(Ok(Orientation::NoTransforms), exif_orientation)
        .map_err(|problem| PictureProblem::Exif { format, problem })
}

/// A decoder's refusal as a reason.
fn decode(format: Format) -> impl Fn(::image::ImageError) -> PictureProblem {
    move |error| PictureProblem::Decode {
        format,
        reason: error.to_string(),
    }
}

/// Whether a JPEG ends with its end-of-image marker (`FF D9`), after which some writers pad
/// with zero bytes: the last thing written, so a JPEG without it is cut short. A phone's
/// multi-picture JPEG ends with the marker of its last picture.
fn ends_like_a_jpeg(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    bytes[..end].ends_with(&[0xff, 0xd9])
}

/// The most a HEIC converter's PNG may weigh: the largest picture the limits allow, at four
/// bytes a pixel (a PNG is compressed, so a real one is far smaller).
fn heic_output_limit(limits: &Limits) -> u64 {
    limits.max_pixels.saturating_mul(4)
}

/// Why bytes that are no picture drawdrop takes cannot be sent, for a file named as `named`.
fn not_a_picture(bytes: &[u8], named: Format) -> PictureProblem {
    if named == Format::Png {
        return match check_signature(bytes) {
            Err(problem) => problem.into(),
            Ok(()) => PictureProblem::Unknown { named },
        };
    }
    if bytes.is_empty() {
        PngProblem::Empty.into()
    } else if bytes.iter().all(|&b| b == 0) {
        PngProblem::AllZeros { len: bytes.len() }.into()
    } else if let Some(found) = sniff_format(bytes) {
        PictureProblem::NotTaken { found, named }
    } else {
        PictureProblem::Unknown { named }
    }
}

#[cfg(test)]
mod tests;
