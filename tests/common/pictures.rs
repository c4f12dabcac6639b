//! Test pictures of the other formats people drop (JPEG, WebP, TIFF, PNG with `eXIf`), with
//! EXIF orientation tags put in by hand, and the hostile files of those kinds: truncated,
//! lying about their size, with absurd EXIF.
//!
//! The scene is always [`quadrants`]: four colour blocks, so any turn or flip shows.
#![allow(dead_code)]

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, Rgb, RgbImage};

pub const RED: [u8; 3] = [255, 0, 0];
pub const GREEN: [u8; 3] = [0, 255, 0];
pub const BLUE: [u8; 3] = [0, 0, 255];
pub const WHITE: [u8; 3] = [255, 255, 255];
/// What [`corners`] reads on an upright [`quadrants`] picture.
pub const UPRIGHT: [[u8; 3]; 4] = [RED, GREEN, BLUE, WHITE];

/// `width` x `height` in four blocks: red, green on top; blue, white below.
pub fn quadrants(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(match (x < width / 2, y < height / 2) {
            (true, true) => RED,
            (false, true) => GREEN,
            (true, false) => BLUE,
            (false, false) => WHITE,
        })
    })
}

/// What a camera stores for an upright `scene` when it writes EXIF orientation `value`
/// (1 to 8): the scene turned by the inverse of what that orientation asks.
pub fn stored_as(scene: &RgbImage, value: u8) -> RgbImage {
    let inverse = match value {
        6 => Orientation::Rotate270,
        8 => Orientation::Rotate90,
        other => Orientation::from_exif(other).expect("an orientation"),
    };
    let mut stored = DynamicImage::ImageRgb8(scene.clone());
    stored.apply_orientation(inverse);
    stored.into_rgb8()
}

/// The colours at the centres of the four quarters of a decoded picture, each channel
/// thresholded (JPEG and resizing blur the values, never the blocks).
pub fn corners(png: &[u8]) -> [[u8; 3]; 4] {
    let image = image::load_from_memory(png).expect("a picture").into_rgb8();
    let (w, h) = image.dimensions();
    let at = |x: u32, y: u32| {
        image
            .get_pixel(x, y)
            .0
            .map(|v| if v > 127 { 255 } else { 0 })
    };
    [
        at(w / 4, h / 4),
        at(3 * w / 4, h / 4),
        at(w / 4, 3 * h / 4),
        at(3 * w / 4, 3 * h / 4),
    ]
}

/// An EXIF block (TIFF structure, little-endian) whose first directory holds one
/// orientation tag (SHORT) with `value`.
pub fn orientation_exif(value: u16) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0x0112u16.to_le_bytes());
    out.extend_from_slice(&3u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&value.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// A JPEG (quality 95) of `image`, with `exif` put by hand into an APP1 segment right after
/// the start-of-image marker, as cameras write it.
pub fn jpeg(image: &RgbImage, exif: Option<&[u8]>) -> Vec<u8> {
    let mut plain = Vec::new();
    JpegEncoder::new_with_quality(&mut plain, 95)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("encode JPEG");
    let Some(exif) = exif else {
        return plain;
    };
    assert_eq!(&plain[..2], [0xff, 0xd8], "a JPEG starts with SOI");
    let length = u16::try_from(2 + 6 + exif.len()).expect("EXIF fits one segment");
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(exif);
    out.extend_from_slice(&plain[2..]);
    out
}

/// A lossless WebP of `image`, with an `EXIF` chunk when given.
pub fn webp(image: &RgbImage, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = WebPEncoder::new_lossless(&mut out);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif.to_vec()).expect("exif");
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("encode WebP");
    out
}

/// A PNG of `image`, with an `eXIf` chunk when given.
pub fn png_with_exif(image: &RgbImage, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif.to_vec()).expect("exif");
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("encode PNG");
    out
}

/// An uncompressed RGB TIFF of `image`, with an orientation tag when given.
pub fn tiff(image: &RgbImage, orientation: Option<u16>) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut encoder = tiff::encoder::TiffEncoder::new(&mut out).expect("tiff");
    let mut tiff_image = encoder
        .new_image::<tiff::encoder::colortype::RGB8>(image.width(), image.height())
        .expect("tiff image");
    if let Some(value) = orientation {
        tiff_image
            .encoder()
            .write_tag(tiff::tags::Tag::Orientation, value)
            .expect("orientation tag");
    }
    tiff_image.write_data(image.as_raw()).expect("tiff data");
    out.into_inner()
}

/// A WebP whose extended header (VP8X) claims a canvas of `width` x `height` around a tiny
/// real picture: a decompression bomb's header.
pub fn webp_claiming(width: u32, height: u32) -> Vec<u8> {
    let small = webp(&quadrants(4, 4), None);
    // The small file is RIFF, size, WEBP, then one VP8L chunk.
    let image_chunk = &small[12..];
    let mut vp8x = vec![0u8; 10];
    vp8x[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&vp8x);
    body.extend_from_slice(image_chunk);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A TIFF bomb: a little-endian TIFF whose directory claims `width` x `height` 8-bit grey
/// pixels in `strips` strips (every strip offset and count pointing at the same 16 bytes).
pub fn tiff_bomb(width: u32, height: u32, strips: u32) -> Vec<u8> {
    const LONG: u16 = 4;
    const SHORT: u16 = 3;
    let entries: u16 = 8;
    let ifd_len = 2 + 12 * entries as u32 + 4;
    let arrays_at = 8 + ifd_len;
    let counts_at = arrays_at + 4 * strips;
    let data_at = counts_at + 4 * strips;
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    };
    entry(256, LONG, 1, width);
    entry(257, LONG, 1, height);
    entry(258, SHORT, 1, 8);
    entry(259, SHORT, 1, 1);
    entry(262, SHORT, 1, 1);
    entry(273, LONG, strips, arrays_at);
    entry(278, LONG, 1, height.div_ceil(strips).max(1));
    entry(279, LONG, strips, counts_at);
    out.extend_from_slice(&0u32.to_le_bytes());
    for _ in 0..strips {
        out.extend_from_slice(&data_at.to_le_bytes());
    }
    for _ in 0..strips {
        out.extend_from_slice(&16u32.to_le_bytes());
    }
    out.extend_from_slice(&[0x80; 16]);
    out
}
