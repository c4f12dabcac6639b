//! Test pictures, for every integration test and the bench: PNGs of every colour type built
//! sample by sample, the other formats people drop (JPEG, WebP, TIFF, PNG with `eXIf`) with
//! EXIF orientation tags put in by hand, the broken files a hot folder meets (truncated
//! files, JPEGs named `.png`, decompression-bomb headers, absurd EXIF), and the readers of
//! what came back (a PNG's size, its chunks and `tEXt` entries, the colours of its corners).
//!
//! The scene of the other formats is always [`quadrants`]: four colour blocks, so any turn or
//! flip shows. Independent of the `drawdrop` crate.
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, Rgb, RgbImage};

/// The eight bytes every PNG starts with.
pub const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The pixel format of a test PNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorKind {
    /// 8-bit RGB.
    Rgb8,
    /// 8-bit RGB with alpha.
    Rgba8,
    /// 8-bit grayscale.
    Gray8,
    /// 16-bit grayscale.
    Gray16,
    /// 16-bit RGB.
    Rgb16,
    /// 8-bit palette indices (a 16-colour palette).
    Palette,
}

/// An RGB8 PNG of `width` x `height`; different seeds give different files.
pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    png_with(ColorKind::Rgb8, width, height, seed)
}

/// A PNG of `width` x `height` in the given pixel format; different seeds give different files.
pub fn png_with(kind: ColorKind, width: u32, height: u32, seed: u32) -> Vec<u8> {
    let (color, depth, samples, bytes_per_sample) = match kind {
        ColorKind::Rgb8 => (::png::ColorType::Rgb, ::png::BitDepth::Eight, 3, 1),
        ColorKind::Rgba8 => (::png::ColorType::Rgba, ::png::BitDepth::Eight, 4, 1),
        ColorKind::Gray8 => (::png::ColorType::Grayscale, ::png::BitDepth::Eight, 1, 1),
        ColorKind::Gray16 => (::png::ColorType::Grayscale, ::png::BitDepth::Sixteen, 1, 2),
        ColorKind::Rgb16 => (::png::ColorType::Rgb, ::png::BitDepth::Sixteen, 3, 2),
        ColorKind::Palette => (::png::ColorType::Indexed, ::png::BitDepth::Eight, 1, 1),
    };
    let mut data = Vec::with_capacity((width * height) as usize * samples * bytes_per_sample);
    for y in 0..height {
        for x in 0..width {
            for channel in 0..samples as u32 {
                let value = sample(x, y, channel, seed, width, height);
                match (kind, bytes_per_sample) {
                    (ColorKind::Palette, _) => data.push((value % 16) as u8),
                    (ColorKind::Rgba8, _) if channel == 3 => data.push(128 + (value % 128) as u8),
                    (_, 1) => data.push(value as u8),
                    _ => data
                        .extend_from_slice(&((value as u16) << 8 | (value as u16)).to_be_bytes()),
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if kind == ColorKind::Palette {
        let palette: Vec<u8> = (0..16u32)
            .flat_map(|i| {
                [
                    (i * 16) as u8,
                    (255 - i * 16) as u8,
                    (seed.wrapping_add(i * 40)) as u8,
                ]
            })
            .collect();
        encoder.set_palette(palette);
    }
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(&data).expect("png data");
    writer.finish().expect("png end");
    out
}

/// One sample (0..=255): a gradient plus seed-dependent stripes.
fn sample(x: u32, y: u32, channel: u32, seed: u32, width: u32, height: u32) -> u32 {
    let gradient = match channel {
        0 => x * 255 / width.max(1),
        1 => y * 255 / height.max(1),
        _ => (x + y) * 255 / (width + height).max(1),
    };
    let stripes = ((x / 8 + y / 8 + channel) ^ seed.wrapping_mul(2_654_435_761)) & 0x3F;
    (gradient + stripes + seed.wrapping_mul(37)) & 0xFF
}

/// The first bytes of a real JPEG (a JFIF header, then end of image): not a PNG.
pub fn jpeg_bytes() -> Vec<u8> {
    vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xD9,
    ]
}

/// `png` cut in the middle (no `IEND`, a broken `IDAT`): a copy still in progress.
pub fn truncated(png: &[u8]) -> Vec<u8> {
    png[..png.len() / 2].to_vec()
}

/// A small PNG whose `IHDR` claims `width` x `height` (e.g. 100000 x 100000), with correct
/// CRCs and a tiny `IDAT`: a decompression-bomb header that must be refused before decoding.
pub fn with_declared_size(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = SIGNATURE.to_vec();
    push_chunk(&mut out, b"IHDR", &ihdr);
    // 16 zero bytes: far fewer than the size claims.
    push_chunk(&mut out, b"IDAT", &zlib_stored(&[0; 16]));
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// `png` with a `tEXt` chunk added just before `IEND`.
pub fn with_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    with_texts(png, &[(keyword.to_string(), text.to_string())]).expect("a PNG with IEND")
}

/// `png` with `tEXt` chunks (keyword, text) added just before `IEND`; `None` if it is not a
/// PNG with an `IEND`.
pub fn with_texts(png: &[u8], chunks: &[(String, String)]) -> Option<Vec<u8>> {
    let iend = chunk_offset(png, b"IEND")?;
    let mut out = Vec::with_capacity(png.len() + 64 * chunks.len());
    out.extend_from_slice(&png[..iend]);
    for (keyword, text) in chunks {
        let mut data = keyword.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(text.as_bytes());
        push_chunk(&mut out, b"tEXt", &data);
    }
    out.extend_from_slice(&png[iend..]);
    Some(out)
}

/// The offset of the first chunk of this type, found without copying any chunk (answers
/// of the fake can be large).
pub fn chunk_offset(png: &[u8], kind: &[u8; 4]) -> Option<usize> {
    if !png.starts_with(SIGNATURE) {
        return None;
    }
    let mut offset = SIGNATURE.len();
    while offset + 12 <= png.len() {
        let length = u32::from_be_bytes(png[offset..offset + 4].try_into().ok()?) as usize;
        if &png[offset + 4..offset + 8] == kind {
            return Some(offset);
        }
        offset = offset.checked_add(12 + length)?;
    }
    None
}

/// A fresh RGB8 PNG of `width` x `height` (a gradient varying with `seed`), stored
/// uncompressed so that it is fast to make even in debug builds (the fake server's answers).
pub fn stored_png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let row = 1 + 3 * width as usize;
    let mut raw = Vec::with_capacity(row * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[
                (x.wrapping_mul(255) / width.max(1)) as u8,
                (y.wrapping_mul(255) / height.max(1)) as u8,
                (seed.wrapping_mul(67) ^ (x / 16 + y / 16)) as u8,
            ]);
        }
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut png = SIGNATURE.to_vec();
    push_chunk(&mut png, b"IHDR", &ihdr);
    push_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    push_chunk(&mut png, b"IEND", &[]);
    png
}

/// A zlib stream holding `data` in stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let length = block.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// The size an image's `IHDR` declares. Panics if `png` is not a PNG.
pub fn size_of(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(SIGNATURE) && png.len() >= 24, "not a PNG");
    assert_eq!(&png[12..16], b"IHDR", "PNG without IHDR first");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

/// The chunks of a PNG as (type, offset of the chunk, data), stopping at the first broken one.
pub fn chunks(png: &[u8]) -> Vec<(String, usize, Vec<u8>)> {
    let mut found = Vec::new();
    if !png.starts_with(SIGNATURE) {
        return found;
    }
    let mut offset = SIGNATURE.len();
    while offset + 12 <= png.len() {
        let length = u32::from_be_bytes(png[offset..offset + 4].try_into().unwrap()) as usize;
        let end = offset + 12 + length;
        if end > png.len() {
            break;
        }
        let kind = String::from_utf8_lossy(&png[offset + 4..offset + 8]).into_owned();
        found.push((kind, offset, png[offset + 8..offset + 8 + length].to_vec()));
        offset = end;
    }
    found
}

/// The `tEXt` chunks of a PNG as (keyword, text), in file order.
pub fn text_chunks(png: &[u8]) -> Vec<(String, String)> {
    chunks(png)
        .into_iter()
        .filter(|(kind, _, _)| kind == "tEXt")
        .filter_map(|(_, _, data)| {
            let nul = data.iter().position(|&b| b == 0)?;
            let keyword = String::from_utf8_lossy(&data[..nul]).into_owned();
            let text = data[nul + 1..].iter().map(|&b| b as char).collect();
            Some((keyword, text))
        })
        .collect()
}

/// The text of the first `tEXt` chunk with this keyword.
pub fn text_chunk(png: &[u8], keyword: &str) -> Option<String> {
    text_chunks(png)
        .into_iter()
        .find(|(k, _)| k == keyword)
        .map(|(_, text)| text)
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

// Other formats, and reading pictures back.

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
