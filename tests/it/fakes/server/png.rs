//! The pictures the fake reads and answers: init images decoded from base64, answers that
//! are the init image's bytes or a fresh picture of the right size, tagged with `tEXt`
//! chunks, or stylized for the gallery's screenshot. Builds on the tests' one PNG builder
//! ([`crate::pictures`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::pictures::{SIGNATURE, stored_png, with_texts};

/// A decoded init image.
#[derive(Clone, Debug)]
pub(super) struct InitImage {
    pub(super) bytes: Vec<u8>,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) is_png: bool,
}

/// Each image as base64, the way both servers put images in JSON.
pub(super) fn base64_all(images: &[Vec<u8>]) -> Vec<String> {
    images.iter().map(|i| BASE64.encode(i)).collect()
}

/// The base64 of a `data:...;base64,` URL (A1111 takes both), or the text itself.
pub(super) fn strip_data_url(text: &str) -> &str {
    match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, data)| data),
        None => text,
    }
}

/// Decodes base64 and then the whole image (any format the `image` crate here knows: PNG).
pub(super) fn decode_init_image(text: &str) -> Result<InitImage, ()> {
    let bytes = BASE64.decode(text).map_err(|_| ())?;
    let decoded = image::load_from_memory(&bytes).map_err(|_| ())?;
    Ok(InitImage {
        width: decoded.width(),
        height: decoded.height(),
        is_png: bytes.starts_with(SIGNATURE),
        bytes,
    })
}

/// `count` answer pictures of `size`: the init image's bytes when it already has that size,
/// else a fresh picture (a gradient varying with `seed`); stylized when asked, and each
/// with the text chunks `chunks(i)` gives it (i from 1).
pub(super) fn answer_pictures(
    init: Option<&InitImage>,
    size: (u32, u32),
    seed: u32,
    count: usize,
    stylize: bool,
    chunks: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<Vec<u8>> {
    let base = match init {
        Some(init) if init.is_png && (init.width, init.height) == size => init.bytes.clone(),
        _ => stored_png(size.0, size.1, seed),
    };
    (1..=count)
        .map(|i| {
            let base = if stylize {
                stylized(&base, i).unwrap_or_else(|| base.clone())
            } else {
                base.clone()
            };
            with_texts(&base, &chunks(i)).unwrap_or(base)
        })
        .collect()
}

/// The init image as if a style had been applied: colours posterized to a few inks and
/// tinted (`variant` picks the tint), edges darkened. `None` when it cannot be decoded.
fn stylized(png: &[u8], variant: usize) -> Option<Vec<u8>> {
    let picture = image::load_from_memory(png).ok()?.to_rgb8();
    let tints: [[f32; 3]; 3] = [[1.15, 0.95, 0.75], [0.75, 0.95, 1.2], [0.95, 1.15, 0.8]];
    let tint = tints[(variant - 1) % tints.len()];
    let (width, height) = picture.dimensions();
    let styled = image::RgbImage::from_fn(width, height, |x, y| {
        let pixel = picture.get_pixel(x, y).0;
        let right = picture.get_pixel((x + 1).min(width - 1), y).0;
        let below = picture.get_pixel(x, (y + 1).min(height - 1)).0;
        let edge: i32 = (0..3)
            .map(|c| {
                (i32::from(pixel[c]) - i32::from(right[c])).abs()
                    + (i32::from(pixel[c]) - i32::from(below[c])).abs()
            })
            .sum();
        let mut out = [0u8; 3];
        for c in 0..3 {
            let level = (f32::from(pixel[c]) / 64.0).round() * 64.0;
            let value = (level * tint[c] + 18.0 - (edge as f32) * 0.6).clamp(0.0, 255.0);
            out[c] = value as u8;
        }
        image::Rgb(out)
    });
    let mut bytes = Vec::new();
    styled
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .ok()?;
    Some(bytes)
}
