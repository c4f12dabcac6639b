//! Thumbnails: a picture of the outbox made small (longest side [`SIDE`]) as a JPEG of a few
//! tens of KB, turned upright by its EXIF orientation, transparency laid on white. Made in
//! a millisecond or two: a PNG is decoded row by row (checksums unchecked: a thumbnail is no
//! proof of the file) and each row goes straight into the small picture, so the full-size
//! picture is never held; other formats are decoded whole, in their own layout. Pixels are
//! averaged (integer box sums, no filter) and encoded by `jpeg-encoder`.

use crate::jobs::durable;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::{self, Cursor};
use std::ops::Range;
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
    #[error("cannot decode it: {0}")]
    DecodePng(#[from] png::DecodingError),
    #[error("it is too large to preview ({0} x {1})")]
    TooLarge(u32, u32),
    #[error("cannot encode its thumbnail: {0}")]
    Encode(String),
    #[error("cannot convert it: {0}")]
    Heic(#[from] crate::image::heic::HeicProblem),
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
    if crate::image::Format::of(bytes) == Some(crate::image::Format::Heic) {
        // A HEIC original: through the system's converter, as its job read it.
        let png = crate::image::heic::to_png(bytes, MAX_DECODE_BYTES)?;
        return thumbnail_jpeg(&png);
    }
    let shrunk = match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => shrink_png(bytes)?,
        _ => None,
    };
    let (small, orientation) = match shrunk {
        Some(shrunk) => shrunk,
        None => shrink_decoded(bytes)?,
    };
    // Turning the small picture is the same as turning the large one first, and cheaper.
    let mut small = DynamicImage::ImageRgb8(small);
    small.apply_orientation(orientation);
    let small = small.into_rgb8();
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

/// A PNG made small as it is decoded, one row after another; `None` for an interlaced one
/// (its rows come in seven passes), which is decoded whole instead.
fn shrink_png(bytes: &[u8]) -> Result<Option<(RgbImage, Orientation)>, ThumbError> {
    let limits = png::Limits {
        bytes: usize::try_from(MAX_DECODE_BYTES).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.ignore_checksums(true);
    // Palettes and low bit depths become 8-bit colour, 16-bit samples keep their high byte.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let info = reader.info();
    if info.interlaced {
        return Ok(None);
    }
    let (width, height) = (info.width, info.height);
    check_size(width, height)?;
    let orientation = info
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let layout = match reader.output_color_type().0 {
        png::ColorType::Grayscale => Layout::Grey,
        png::ColorType::GrayscaleAlpha => Layout::GreyAlpha,
        png::ColorType::Rgba => Layout::Rgba,
        png::ColorType::Rgb | png::ColorType::Indexed => Layout::Rgb,
    };
    let mut shrinker = Shrinker::new(width, height);
    let mut rgb = Vec::new();
    while let Some(row) = reader.next_row()? {
        shrinker.add_row(layout.on_white(row.data(), &mut rgb));
    }
    Ok(Some((shrinker.finish()?, orientation)))
}

/// Any other picture, decoded whole in its own layout and made small.
fn shrink_decoded(bytes: &[u8]) -> Result<(RgbImage, Orientation), ThumbError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    check_size(width, height)?;
    let orientation = decoder.orientation()?;
    let (pixels, layout) = match DynamicImage::from_decoder(decoder)? {
        DynamicImage::ImageRgb8(picture) => (picture.into_raw(), Layout::Rgb),
        DynamicImage::ImageRgba8(picture) => (picture.into_raw(), Layout::Rgba),
        DynamicImage::ImageLuma8(picture) => (picture.into_raw(), Layout::Grey),
        DynamicImage::ImageLumaA8(picture) => (picture.into_raw(), Layout::GreyAlpha),
        other if other.color().has_alpha() => (other.into_rgba8().into_raw(), Layout::Rgba),
        other => (other.into_rgb8().into_raw(), Layout::Rgb),
    };
    let mut shrinker = Shrinker::new(width, height);
    let mut rgb = Vec::new();
    let stride = width as usize * layout.channels();
    for row in pixels.chunks_exact(stride.max(1)) {
        shrinker.add_row(layout.on_white(row, &mut rgb));
    }
    Ok((shrinker.finish()?, orientation))
}

fn check_size(width: u32, height: u32) -> Result<(), ThumbError> {
    match u64::from(width) * u64::from(height) > MAX_PIXELS {
        true => Err(ThumbError::TooLarge(width, height)),
        false => Ok(()),
    }
}

/// How the 8-bit samples of a decoded row are laid out.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Rgb,
    Rgba,
    Grey,
    GreyAlpha,
}

impl Layout {
    fn channels(self) -> usize {
        match self {
            Layout::Rgb => 3,
            Layout::Rgba => 4,
            Layout::Grey => 1,
            Layout::GreyAlpha => 2,
        }
    }

    /// `row` as RGB without transparency (see-through parts white, as on a page), in
    /// `scratch` unless it is RGB already.
    fn on_white<'a>(self, row: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        let over =
            |c: u8, a: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        scratch.clear();
        match self {
            Layout::Rgb => return row,
            Layout::Rgba => scratch.extend(
                row.chunks_exact(4)
                    .flat_map(|p| [over(p[0], p[3]), over(p[1], p[3]), over(p[2], p[3])]),
            ),
            Layout::Grey => scratch.extend(row.iter().flat_map(|&g| [g, g, g])),
            Layout::GreyAlpha => scratch.extend(row.chunks_exact(2).flat_map(|p| {
                let g = over(p[0], p[1]);
                [g, g, g]
            })),
        }
        scratch
    }
}

/// Makes a picture small as its RGB rows come, top to bottom: each pixel of the small picture
/// is the average of the source pixels it covers (sharp enough for a thumbnail, and a few
/// times faster than a filter). A picture within [`SIDE`] keeps its size.
struct Shrinker {
    source_height: u32,
    width: u32,
    height: u32,
    /// The source columns each small column covers.
    columns: Vec<Range<usize>>,
    /// The source rows the small row being made covers.
    rows: Range<usize>,
    /// Source rows taken so far.
    taken: usize,
    /// The column sums of the source rows taken for the small row being made.
    sums: Vec<u32>,
    out: Vec<u8>,
}

impl Shrinker {
    fn new(source_width: u32, source_height: u32) -> Shrinker {
        let scale = f64::from(SIDE) / f64::from(source_width.max(source_height).max(1));
        let side = |n: u32| match scale < 1.0 {
            true => ((f64::from(n) * scale).round() as u32).max(1),
            false => n,
        };
        let (width, height) = (side(source_width), side(source_height));
        Shrinker {
            source_height,
            width,
            height,
            columns: (0..width).map(|x| span(x, width, source_width)).collect(),
            rows: span(0, height, source_height),
            taken: 0,
            sums: vec![0; source_width as usize * 3],
            out: Vec::with_capacity(width as usize * height as usize * 3),
        }
    }

    /// The next source row, as RGB.
    fn add_row(&mut self, rgb: &[u8]) {
        if self.taken >= self.source_height as usize {
            return;
        }
        for (sum, &value) in self.sums.iter_mut().zip(rgb) {
            *sum += u32::from(value);
        }
        self.taken += 1;
        if self.taken < self.rows.end {
            return;
        }
        for xs in &self.columns {
            let count = (self.rows.len() * xs.len()) as u32;
            let mut total = [0u32; 3];
            for pixel in self.sums[xs.start * 3..xs.end * 3].chunks_exact(3) {
                total[0] += pixel[0];
                total[1] += pixel[1];
                total[2] += pixel[2];
            }
            self.out
                .extend(total.map(|total| ((total + count / 2) / count) as u8));
        }
        self.sums.fill(0);
        let next = (self.out.len() / (self.width as usize * 3)) as u32;
        self.rows = span(next, self.height, self.source_height);
    }

    /// The small picture; an error if rows were missing.
    fn finish(self) -> Result<RgbImage, ThumbError> {
        let missing = || {
            ThumbError::Decode(image::ImageError::IoError(
                io::ErrorKind::UnexpectedEof.into(),
            ))
        };
        match self.taken == self.source_height as usize {
            true => RgbImage::from_raw(self.width, self.height, self.out).ok_or_else(missing),
            false => Err(missing()),
        }
    }
}

/// The source indices (of `from`) that index `i` (of `to`, fewer) covers; never empty.
fn span(i: u32, to: u32, from: u32) -> Range<usize> {
    let start = (u64::from(i) * u64::from(from) / u64::from(to.max(1))) as usize;
    let end = ((u64::from(i + 1) * u64::from(from) / u64::from(to.max(1))) as usize).max(start + 1);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, Rgba};

    fn encoded(picture: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let picture = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(width, height, |x, _| {
                Rgba([0, 0, 0, if x < width / 2 { 0 } else { 255 }])
            }))
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
                Rgb([(x % 256) as u8, (y % 256) as u8, 90])
            }))
        };
        encoded(&picture, image::ImageFormat::Png)
    }

    /// Red on the left half, blue on the right, a green band along the top tenth.
    fn halves(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            match (y < height / 10, x < width / 2) {
                (true, _) => Rgb([0, 200, 0]),
                (false, true) => Rgb([220, 30, 30]),
                (false, false) => Rgb([30, 30, 220]),
            }
        })
    }

    fn thumbnail(bytes: &[u8]) -> RgbImage {
        let jpeg = thumbnail_jpeg(bytes).unwrap();
        assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
        image::load_from_memory(&jpeg).unwrap().to_rgb8()
    }

    fn mean(picture: &RgbImage) -> [f64; 3] {
        let mut sums = [0.0; 3];
        for pixel in picture.pixels() {
            for (sum, &value) in sums.iter_mut().zip(&pixel.0) {
                *sum += f64::from(value);
            }
        }
        sums.map(|sum| sum / f64::from(picture.width() * picture.height()))
    }

    fn assert_close(seen: [u8; 3], expected: [u8; 3]) {
        let off = seen.iter().zip(&expected).map(|(&a, &b)| a.abs_diff(b));
        assert!(off.max().unwrap() <= 12, "{seen:?} against {expected:?}");
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
    fn the_thumbnail_keeps_the_colours_of_every_part() {
        let source = halves(900, 600);
        for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
            let thumb = thumbnail(&encoded(&DynamicImage::ImageRgb8(source.clone()), format));
            assert_eq!(thumb.dimensions(), (256, 171), "{format:?}");
            assert_close(thumb.get_pixel(128, 5).0, [0, 200, 0]);
            assert_close(thumb.get_pixel(60, 100).0, [220, 30, 30]);
            assert_close(thumb.get_pixel(200, 100).0, [30, 30, 220]);
            let (seen, expected) = (mean(&thumb), mean(&source));
            for (seen, expected) in seen.iter().zip(&expected) {
                assert!(
                    (seen - expected).abs() < 3.0,
                    "{format:?}: {seen} against {expected}"
                );
            }
        }
    }

    #[test]
    fn a_picture_turned_by_its_exif_orientation_is_shown_upright() {
        // Orientation 6: the stored picture is to be turned a quarter clockwise.
        let mut bytes = Vec::new();
        let mut encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        encoder
            .set_exif_metadata(crate::image::exif_block(&[(0x0112, 3, 1, 6)]))
            .unwrap();
        let source = halves(600, 300);
        encoder
            .write_image(source.as_raw(), 600, 300, image::ExtendedColorType::Rgb8)
            .unwrap();
        let thumb = thumbnail(&bytes);
        assert_eq!(thumb.dimensions(), (128, 256));
        // The green top band is now on the right, the red left half at the top.
        assert_close(thumb.get_pixel(124, 128).0, [0, 200, 0]);
        assert_close(thumb.get_pixel(50, 40).0, [220, 30, 30]);
        assert_close(thumb.get_pixel(50, 220).0, [30, 30, 220]);
    }

    #[test]
    fn transparency_is_laid_on_white_and_small_pictures_keep_their_size() {
        let thumb = thumbnail(&png(100, 40, true));
        assert_eq!(thumb.dimensions(), (100, 40));
        assert!(thumb.get_pixel(5, 20).0.iter().all(|&c| c > 230));
        assert!(thumb.get_pixel(95, 20).0.iter().all(|&c| c < 25));
        // Half see-through red over white is pink, also when shrunk.
        let pink = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            800,
            400,
            Rgba([255, 0, 0, 128]),
        ));
        let thumb = thumbnail(&encoded(&pink, image::ImageFormat::Png));
        assert_eq!(thumb.dimensions(), (256, 128));
        assert_close(thumb.get_pixel(128, 64).0, [255, 127, 127]);
    }

    #[test]
    fn sixteen_bit_and_grey_pictures_are_shown_in_their_colours() {
        let rgb16 = image::ImageBuffer::from_fn(700, 350, |x, _| match x < 350 {
            true => Rgb([65535u16, 32768, 0]),
            false => Rgb([0, 0, 65535]),
        });
        let grey = image::GrayImage::from_fn(512, 512, |_, y| {
            image::Luma([if y < 256 { 40 } else { 200 }])
        });
        let grey_alpha16 = image::ImageBuffer::from_pixel(512, 300, image::LumaA([0u16, 0]));
        let cases = [
            (
                DynamicImage::ImageRgb16(rgb16),
                (256, 128),
                [(64, 64, [255, 128, 0]), (192, 64, [0, 0, 255])],
            ),
            (
                DynamicImage::ImageLuma8(grey),
                (256, 256),
                [(128, 64, [40; 3]), (128, 192, [200; 3])],
            ),
            (
                DynamicImage::ImageLumaA16(grey_alpha16),
                (256, 150),
                [(10, 10, [255; 3]), (200, 100, [255; 3])],
            ),
        ];
        for (picture, size, pixels) in cases {
            let color = picture.color();
            let thumb = thumbnail(&encoded(&picture, image::ImageFormat::Png));
            assert_eq!(thumb.dimensions(), size, "{color:?}");
            for (x, y, expected) in pixels {
                assert_close(thumb.get_pixel(x, y).0, expected);
            }
        }
    }

    #[test]
    fn a_picture_of_one_row_or_column_keeps_one() {
        let line = DynamicImage::ImageRgb8(RgbImage::from_pixel(2000, 1, Rgb([10, 20, 30])));
        assert_eq!(
            thumbnail(&encoded(&line, image::ImageFormat::Png)).dimensions(),
            (256, 1)
        );
        let column = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 2000, Rgb([10, 20, 30])));
        assert_eq!(
            thumbnail(&encoded(&column, image::ImageFormat::Png)).dimensions(),
            (1, 256)
        );
    }

    #[test]
    fn what_is_no_picture_gets_no_thumbnail() {
        assert!(thumbnail_jpeg(b"not a picture").is_err());
        assert!(thumbnail_jpeg(&png(64, 64, false)[..80]).is_err());
        let whole = png(600, 600, false);
        assert!(thumbnail_jpeg(&whole[..whole.len() / 2]).is_err());
    }
}
