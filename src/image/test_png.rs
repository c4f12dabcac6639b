//! Test helpers: PNGs made with the `image` crate's encoder or chunk by chunk by hand
//! (palette, interlaced and broken ones the encoder cannot write).

use ::image::codecs::png::PngEncoder;
use ::image::{DynamicImage, ImageEncoder, Rgb, RgbImage};

use super::chunks::{ChunkName, SIGNATURE, write_chunk};

/// Encodes `image` as a PNG with the `image` crate.
pub(crate) fn encode(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            image.as_bytes(),
            image.width(),
            image.height(),
            image.color().into(),
        )
        .unwrap();
    out
}

/// An RGB8 image whose colors vary with the position.
pub(crate) fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

/// A PNG of [`gradient`].
pub(crate) fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(width, height)))
}

/// The 13 bytes of an IHDR.
pub(crate) fn ihdr(width: u32, height: u32, bit_depth: u8, color: u8, interlace: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(13);
    data.extend_from_slice(&width.to_be_bytes());
    data.extend_from_slice(&height.to_be_bytes());
    data.extend_from_slice(&[bit_depth, color, 0, 0, interlace]);
    data
}

/// A file: the signature, then each chunk with a correct CRC.
pub(crate) fn build(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    for (name, data) in chunks {
        write_chunk(&mut out, ChunkName(**name), data);
    }
    out
}

/// A zlib stream of `raw`.
pub(crate) fn zlib(raw: &[u8]) -> Vec<u8> {
    fdeflate::compress_to_vec(raw)
}

/// An indexed PNG: `index(x, y)` gives each pixel's palette index, packed at `bit_depth`.
pub(crate) fn indexed_png(
    width: u32,
    height: u32,
    bit_depth: u8,
    palette: &[[u8; 3]],
    alpha: Option<&[u8]>,
    index: impl Fn(u32, u32) -> u8,
) -> Vec<u8> {
    let per_byte = 8 / u32::from(bit_depth);
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0);
        let mut row = vec![0u8; width.div_ceil(per_byte) as usize];
        for x in 0..width {
            let shift = 8 - u32::from(bit_depth) * (x % per_byte + 1);
            row[(x / per_byte) as usize] |= index(x, y) << shift;
        }
        raw.extend_from_slice(&row);
    }
    let plte: Vec<u8> = palette.iter().flatten().copied().collect();
    let header = ihdr(width, height, bit_depth, 3, 0);
    let idat = zlib(&raw);
    let mut chunks: Vec<(&[u8; 4], &[u8])> = vec![(b"IHDR", &header), (b"PLTE", &plte)];
    if let Some(alpha) = alpha {
        chunks.push((b"tRNS", alpha));
    }
    chunks.extend([(b"IDAT", idat.as_slice()), (b"IEND", &[][..])]);
    build(&chunks)
}

/// The Adam7 passes: first column, first row, column step, row step.
const ADAM7: [(u32, u32, u32, u32); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

/// An interlaced (Adam7) RGB8 PNG of `image`.
pub(crate) fn interlaced_png(image: &RgbImage) -> Vec<u8> {
    let (width, height) = image.dimensions();
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in ADAM7 {
        let xs: Vec<u32> = (x0..width).step_by(dx as usize).collect();
        if xs.is_empty() {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            raw.push(0);
            for &x in &xs {
                raw.extend_from_slice(&image.get_pixel(x, y).0);
            }
        }
    }
    let header = ihdr(width, height, 8, 2, 1);
    build(&[(b"IHDR", &header), (b"IDAT", &zlib(&raw)), (b"IEND", &[])])
}

/// A small valid PNG built by hand: `width` x `height`, RGB8, black.
pub(crate) fn handmade_png(width: u32, height: u32) -> Vec<u8> {
    let raw = vec![0u8; ((width * 3 + 1) * height) as usize];
    let header = ihdr(width, height, 8, 2, 0);
    build(&[(b"IHDR", &header), (b"IDAT", &zlib(&raw)), (b"IEND", &[])])
}
