//! Thumbnails: a picture of the outbox made small (longest side [`SIDE`]) as a JPEG of a few
//! tens of KB, turned upright by its EXIF orientation, transparency laid on white. Made in a
//! few milliseconds: pixels averaged (no filter), encoded by `jpeg-encoder`.

use crate::durable;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::{self, Cursor};
use std::path::Path;

/// The longest side of a thumbnail, in pixels.
pub const SIDE: u32 = 256;
/// JPEG quality: small files that still show the grain of a style.
const QUALITY: u8 = 82;
/// A picture declaring more pixels than this gets no thumbnail (a decompression bomb).
const MAX_PIXELS: u64 = 16384 * 16384;
/// Memory a decoder may take for one picture.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Why no thumbnail was made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("cannot decode it: {0}")]
    Decode(#[from] image::ImageError),
    #[error("it is too large to preview ({0} x {1})")]
    TooLarge(u32, u32),
    #[error("cannot encode its thumbnail: {0}")]
    Encode(String),
}

/// Makes the thumbnail of the picture at `source` and writes it whole at `destination`.
pub fn make(source: &Path, destination: &Path) -> Result<(), ThumbError> {
    let bytes = std::fs::read(source)?;
    let jpeg = thumbnail_jpeg(&bytes)?;
    durable::write_replacing(destination, &jpeg)?;
    Ok(())
}

/// The JPEG thumbnail of an encoded picture (any format the image crate reads here).
pub fn thumbnail_jpeg(bytes: &[u8]) -> Result<Vec<u8>, ThumbError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ThumbError::TooLarge(width, height));
    }
    let orientation = decoder.orientation()?;
    let mut picture = DynamicImage::from_decoder(decoder)?;
    picture.apply_orientation(orientation);
    let rgb = on_white(&picture);
    let (width, height) = rgb.dimensions();
    let scale = f64::from(SIDE) / f64::from(width.max(height));
    let small = if scale < 1.0 {
        let side = |n: u32| ((f64::from(n) * scale).round() as u32).max(1);
        shrink(&rgb, side(width), side(height))
    } else {
        rgb
    };
    let mut jpeg = Vec::with_capacity(32 * 1024);
    let (width, height) = small.dimensions();
    jpeg_encoder::Encoder::new(&mut jpeg, QUALITY)
        .encode(
            small.as_raw(),
            u16::try_from(width).unwrap_or(u16::MAX),
            u16::try_from(height).unwrap_or(u16::MAX),
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|error| ThumbError::Encode(error.to_string()))?;
    Ok(jpeg)
}

/// `picture` made `width` x `height` (smaller) by averaging the source pixels each target
/// pixel covers: sharp enough for a thumbnail, and a few times faster than a filter.
fn shrink(picture: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (source_width, source_height) = picture.dimensions();
    let raw = picture.as_raw();
    let stride = source_width as usize * 3;
    let span = |i: u32, to: u32, from: u32| {
        let start = (u64::from(i) * u64::from(from) / u64::from(to)) as usize;
        let end = ((u64::from(i + 1) * u64::from(from) / u64::from(to)) as usize).max(start + 1);
        start..end
    };
    let columns: Vec<_> = (0..width).map(|x| span(x, width, source_width)).collect();
    // The rows a target row covers are summed first, then each column's span of that sum.
    let mut sums = vec![0u32; stride];
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let rows = span(y, height, source_height);
        sums.fill(0);
        for row in rows.clone() {
            for (sum, &value) in sums.iter_mut().zip(&raw[row * stride..(row + 1) * stride]) {
                *sum += u32::from(value);
            }
        }
        for xs in &columns {
            let count = (rows.len() * xs.len()) as u32;
            let mut total = [0u32; 3];
            for pixel in sums[xs.start * 3..xs.end * 3].chunks_exact(3) {
                total[0] += pixel[0];
                total[1] += pixel[1];
                total[2] += pixel[2];
            }
            out.extend(total.map(|total| ((total + count / 2) / count) as u8));
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// The picture without transparency: see-through parts become white, as on a page.
fn on_white(picture: &DynamicImage) -> RgbImage {
    if !picture.color().has_alpha() {
        return picture.to_rgb8();
    }
    let rgba = picture.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let picture = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(width, height, |x, _| {
                image::Rgba([0, 0, 0, if x < width / 2 { 0 } else { 255 }])
            }))
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
            }))
        };
        picture
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_large_picture_becomes_a_small_jpeg_keeping_its_shape() {
        let jpeg = thumbnail_jpeg(&png(1024, 512, false)).unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 128));
        assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
        assert!(jpeg.len() < 60_000, "{} bytes", jpeg.len());
    }

    #[test]
    fn transparency_is_laid_on_white_and_small_pictures_keep_their_size() {
        let jpeg = thumbnail_jpeg(&png(100, 40, true)).unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(thumb.dimensions(), (100, 40));
        assert!(thumb.get_pixel(5, 20).0.iter().all(|&c| c > 230));
        assert!(thumb.get_pixel(95, 20).0.iter().all(|&c| c < 25));
    }

    #[test]
    fn what_is_no_picture_gets_no_thumbnail() {
        assert!(thumbnail_jpeg(b"not a picture").is_err());
        assert!(thumbnail_jpeg(&png(64, 64, false)[..80]).is_err());
    }
}
