//! The init image: the input's own bytes when it already has the size to send, else decoded,
//! center-cropped to the target's aspect ratio, resized, turned upright and encoded as an
//! 8-bit PNG.

use std::borrow::Cow;
use std::io::Cursor;

use ::image::codecs::png::PngDecoder;
use ::image::imageops::{self, FilterType};
use ::image::{DynamicImage, ImageBuffer, ImageDecoder, Pixel};

use super::color::into_srgb;
use super::orientation::{Orientation, upright};
use super::{MAX_SIDE, PngInfo};

/// A picture at least this many times the target per side is averaged down to twice the
/// target before the Lanczos3 resize.
const PRE_SHRINK: u32 = 3;

/// Room for the PNG decoder's own buffers (rows, text, ICC profile) besides the image.
const DECODER_OVERHEAD: u64 = 64 * 1024 * 1024;

/// Why an init image could not be made. `Display` is a reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ImageError {
    /// The PNG passed [`inspect`](super::inspect) but its pixel data cannot be decoded.
    #[error("the PNG's image data cannot be decoded: {0}")]
    Decode(String),
    /// The resized image could not be encoded (should not happen).
    #[error("the resized image could not be encoded as PNG: {0}")]
    Encode(String),
    /// A target with a side of 0 or above 8192.
    #[error("cannot make an image of {width} x {height} pixels: each side must be 1 to 8192")]
    BadTarget { width: u32, height: u32 },
}

/// The init image to send at `target` = (width, height).
///
/// When the PNG already is that size, its bytes untouched (`Cow::Borrowed`: no decode, no
/// copy). Else it is decoded (any bit depth, color type, palette or interlacing; 16-bit becomes
/// 8-bit), center-cropped to the target's aspect ratio, resized with Lanczos3 (skipped when the
/// crop alone gives the size), and encoded as an 8-bit RGB PNG, or RGBA when the source has
/// alpha, with fast compression. `info` must be what [`inspect`](super::inspect) returned for
/// `bytes`: the decoder is limited to that size, so a lying file cannot allocate more.
#[cfg(test)]
pub(crate) fn init_image<'a>(
    bytes: &'a [u8],
    info: &PngInfo,
    target: (u32, u32),
) -> Result<Cow<'a, [u8]>, ImageError> {
    png_init_image(bytes, info, Orientation::NoTransforms, target)
}

/// [`init_image`] for a PNG stored turned by `orientation` (its `eXIf` chunk): `target` is
/// the size upright, and only an upright PNG of that size is sent as it is.
pub(super) fn png_init_image<'a>(
    bytes: &'a [u8],
    info: &PngInfo,
    orientation: Orientation,
    target: (u32, u32),
) -> Result<Cow<'a, [u8]>, ImageError> {
    check_target(target)?;
    if orientation == Orientation::NoTransforms && info.size() == target {
        return Ok(Cow::Borrowed(bytes));
    }
    let (decoded, icc) = decode_png(bytes, info)?;
    sized_png(decoded, icc.as_deref(), orientation, target).map(Cow::Owned)
}

/// The PNG to send for a decoded picture stored turned by `orientation`: 8-bit RGB (RGBA when
/// it has alpha), center-cropped and resized to `target` (its size upright), converted to
/// sRGB from its ICC profile `icc` when it has one, then turned upright. Cropping and resizing
/// come first, on the picture as stored (with the target's sides swapped for a quarter turn),
/// so only the small result is converted and turned.
pub(super) fn sized_png(
    decoded: DynamicImage,
    icc: Option<&[u8]>,
    orientation: Orientation,
    target: (u32, u32),
) -> Result<Vec<u8>, ImageError> {
    pixels_png(&sized(decoded, icc, orientation, target)?)
}

/// [`sized_png`] before encoding: the pixels, 8-bit RGB or RGBA. A picture already of the
/// size is neither cropped nor copied.
pub(super) fn sized(
    decoded: DynamicImage,
    icc: Option<&[u8]>,
    orientation: Orientation,
    target: (u32, u32),
) -> Result<DynamicImage, ImageError> {
    check_target(target)?;
    let stored_target = upright(target, orientation);
    let of_size = (decoded.width(), decoded.height()) == stored_target;
    let mut sized = match decoded.color().has_alpha() {
        true if of_size => DynamicImage::ImageRgba8(decoded.into_rgba8()),
        true => DynamicImage::ImageRgba8(fit(&decoded.into_rgba8(), stored_target)),
        false if of_size => DynamicImage::ImageRgb8(decoded.into_rgb8()),
        false => DynamicImage::ImageRgb8(fit(&decoded.into_rgb8(), stored_target)),
    };
    into_srgb(&mut sized, icc);
    sized.apply_orientation(orientation);
    Ok(sized)
}

/// A target with each side within 1..=8192.
fn check_target((width, height): (u32, u32)) -> Result<(), ImageError> {
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(ImageError::BadTarget { width, height });
    }
    Ok(())
}

/// Decodes the PNG with the decoder limited to the size `info` declares; with its ICC profile.
pub(super) fn decode_png(
    bytes: &[u8],
    info: &PngInfo,
) -> Result<(DynamicImage, Option<Vec<u8>>), ImageError> {
    let error = |e: ::image::ImageError| ImageError::Decode(e.to_string());
    let mut decoder =
        PngDecoder::with_limits(Cursor::new(bytes), decoder_limits(info.size())).map_err(error)?;
    let icc = decoder.icc_profile().map_err(error)?;
    Ok((DynamicImage::from_decoder(decoder).map_err(error)?, icc))
}

/// Limits for a decoder of a picture that declared `size`: exactly that size, and memory for
/// it (at most four 16-bit channels per pixel) plus room for the decoder's own buffers.
pub(super) fn decoder_limits((width, height): (u32, u32)) -> ::image::Limits {
    let mut limits = ::image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    let decoded = u64::from(width) * u64::from(height) * 8;
    limits.max_alloc = Some(decoded.saturating_add(DECODER_OVERHEAD));
    limits
}

/// Center-crops `image` to the aspect ratio of `target`, then resizes it to `target`.
fn fit<P>(image: &ImageBuffer<P, Vec<u8>>, target: (u32, u32)) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let (x, y, width, height) = center_crop(image.dimensions(), target);
    let view = imageops::crop_imm(image, x, y, width, height);
    if (width, height) == target {
        view.to_image()
    } else if width >= PRE_SHRINK * target.0 && height >= PRE_SHRINK * target.1 {
        // A photo many times the target: averaged down to twice the target first (fast, and
        // alias-free), so Lanczos3 works on a few megapixels instead of many.
        let halfway = imageops::thumbnail(&*view, 2 * target.0, 2 * target.1);
        imageops::resize(&halfway, target.0, target.1, FilterType::Lanczos3)
    } else {
        imageops::resize(&*view, target.0, target.1, FilterType::Lanczos3)
    }
}

/// The largest rectangle (x, y, width, height) with the aspect ratio of `target` centered in
/// an image of `source` size (sides rounded to the nearest pixel, at least 1).
fn center_crop(source: (u32, u32), target: (u32, u32)) -> (u32, u32, u32, u32) {
    let (sw, sh) = (u64::from(source.0), u64::from(source.1));
    let (tw, th) = (u64::from(target.0.max(1)), u64::from(target.1.max(1)));
    if sw * th > sh * tw {
        // Wider than the target: keep the full height, cut left and right.
        let width = ((2 * sh * tw + th) / (2 * th)).clamp(1, sw);
        let x = (sw - width) / 2;
        (narrow(x), 0, narrow(width), source.1)
    } else {
        // Taller (or the same): keep the full width, cut top and bottom.
        let height = ((2 * sw * th + tw) / (2 * tw)).clamp(1, sh.max(1));
        let y = (sh.saturating_sub(height)) / 2;
        (0, narrow(y), source.0, narrow(height))
    }
}

/// A value known to be at most a u32 image side, back to u32.
fn narrow(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Encodes 8-bit RGB pixels (rows top to bottom) as a PNG with fast compression.
pub(crate) fn rgb_png(pixels: &[u8], size: (u32, u32)) -> Result<Vec<u8>, ImageError> {
    encode_png(pixels, size, 3)
}

/// Encodes an 8-bit RGB or RGBA picture as a PNG with fast compression.
pub(crate) fn pixels_png(picture: &DynamicImage) -> Result<Vec<u8>, ImageError> {
    let bytes_per_pixel = if picture.color().has_alpha() { 4 } else { 3 };
    encode_png(
        picture.as_bytes(),
        (picture.width(), picture.height()),
        bytes_per_pixel,
    )
}

/// Encodes 8-bit pixels, 3 (RGB) or 4 (RGBA) bytes each, as a PNG with fast compression.
fn encode_png(
    pixels: &[u8],
    size: (u32, u32),
    bytes_per_pixel: usize,
) -> Result<Vec<u8>, ImageError> {
    super::png_out::encode(pixels, size, bytes_per_pixel)
        .map_err(|e| ImageError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests;
