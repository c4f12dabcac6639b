//! Test pictures: PNGs of every colour type, and the broken files a hot folder meets
//! (truncated PNGs, JPEGs named `.png`, decompression-bomb headers).
//!
//! Independent of the `drawdrop` crate. Include it with
//! `#[path = "common/png.rs"] mod png_util;` (or through `mod common;`).
#![allow(dead_code)]

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
    // A zlib stream of one stored block of 16 zero bytes.
    let mut idat = vec![0x78, 0x01, 0x01, 0x10, 0x00, 0xEF, 0xFF];
    idat.extend_from_slice(&[0; 16]);
    idat.extend_from_slice(&0x0010_0001u32.to_be_bytes()); // Adler-32 of 16 zeros
    push_chunk(&mut out, b"IDAT", &idat);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// `png` with a `tEXt` chunk added just before `IEND`.
pub fn with_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    let iend = chunks(png)
        .into_iter()
        .find(|(kind, _, _)| kind == "IEND")
        .map(|(_, offset, _)| offset)
        .expect("a PNG with IEND");
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    let mut out = png[..iend].to_vec();
    push_chunk(&mut out, b"tEXt", &data);
    out.extend_from_slice(&png[iend..]);
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
