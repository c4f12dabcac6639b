//! 8-bit RGB or RGBA pixels written as a PNG, fast and in one buffer: each row filtered with
//! whichever of PNG's five filters leaves the smallest sum of its bytes taken as signed (the
//! usual adaptive heuristic, the `png` crate's too), compressed with fdeflate straight into
//! the output as one IDAT chunk. A picture that does not compress (seen in its first eighth,
//! or at the end) is written stored instead, no larger than its pixels and a little framing.
//! Nothing the size of the picture is made beside the output.

use std::cell::Cell;
use std::io::{self, Write};

use super::chunks::{ChunkName, MAX_CHUNK_LENGTH, SIGNATURE, write_chunk};

/// PNG's colour types.
const RGB: u8 = 2;
const RGBA: u8 = 6;
/// The filter types' bytes: none, then sub, up, average, and Paeth, 4.
const NONE: u8 = 0;
const PAETH: u8 = 4;

/// `pixels` (`bytes_per_pixel` 3 for RGB or 4 for RGBA, rows top to bottom) of a picture of
/// `width` x `height` as a PNG.
pub(crate) fn encode(
    pixels: &[u8],
    (width, height): (u32, u32),
    bytes_per_pixel: usize,
) -> io::Result<Vec<u8>> {
    let row_len = width as usize * bytes_per_pixel;
    let color = match bytes_per_pixel {
        3 => RGB,
        4 => RGBA,
        other => {
            return Err(io::Error::other(format!(
                "{other} bytes a pixel: only RGB and RGBA are written"
            )));
        }
    };
    if width == 0 || height == 0 || pixels.len() != row_len * height as usize {
        return Err(io::Error::other(format!(
            "{} bytes are not the pixels of a {width}x{height} picture",
            pixels.len()
        )));
    }
    let filtered_len = (row_len + 1) * height as usize;
    let stored_len = fdeflate::StoredOnlyCompressor::<()>::compressed_size(filtered_len);
    // Room for the stored case and the chunks' framing: the PNG is written without growing,
    // and memory not written to is not used.
    let mut out = Vec::with_capacity(stored_len + 64);
    out.extend_from_slice(&SIGNATURE);
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, color, 0, 0, 0]);
    write_chunk(&mut out, ChunkName::IHDR, &header);
    // The IDAT chunk is written in place: its length once its data is in, then its CRC.
    let idat = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&ChunkName::IDAT.0);
    let data = out.len();
    let compressed = compressed_into(&mut out, pixels, row_len, bytes_per_pixel)?;
    if !compressed || out.len() - data > stored_len {
        out.truncate(data);
        let mut end = io::Cursor::new(&mut out);
        end.set_position(data as u64);
        let mut stored = fdeflate::StoredOnlyCompressor::new(end)?;
        for row in pixels.chunks_exact(row_len) {
            stored.write_data(&[NONE])?;
            stored.write_data(row)?;
        }
        stored.finish()?;
    }
    let data_len = u32::try_from(out.len() - data)
        .ok()
        .filter(|&len| len <= MAX_CHUNK_LENGTH)
        .ok_or_else(|| io::Error::other("the picture's data is over a PNG chunk's 2 GiB"))?;
    out[idat..idat + 4].copy_from_slice(&data_len.to_be_bytes());
    let crc = crc32fast::hash(&out[idat + 4..]);
    out.extend_from_slice(&crc.to_be_bytes());
    write_chunk(&mut out, ChunkName::IEND, &[]);
    Ok(out)
}

/// The rows filtered and compressed at the end of `out`; `false` when the first eighth of
/// them came out larger than stored (the caller stores the picture instead).
fn compressed_into(
    out: &mut Vec<u8>,
    pixels: &[u8],
    row_len: usize,
    bytes_per_pixel: usize,
) -> io::Result<bool> {
    let start = out.len();
    let written = Cell::new(0);
    let mut compressor = fdeflate::Compressor::new(Tally {
        out,
        written: &written,
    })?;
    let rows = pixels.len() / row_len;
    let judged_at = rows.div_ceil(8);
    let zeros = vec![0u8; row_len];
    let mut previous: &[u8] = &zeros;
    let mut filtered = Filtered::new(row_len);
    for (at, row) in pixels.chunks_exact(row_len).enumerate() {
        compressor.write_data(filtered.best(previous, row, bytes_per_pixel))?;
        previous = row;
        if at + 1 == judged_at && written.get() > (row_len + 1) * judged_at {
            return Ok(false);
        }
    }
    compressor.finish()?;
    debug_assert_eq!(written.get(), out.len() - start);
    Ok(true)
}

/// A writer appending to a buffer and counting what it appended (so that it can be read
/// while the compressor holds the writer).
struct Tally<'a> {
    out: &'a mut Vec<u8>,
    written: &'a Cell<usize>,
}

impl Write for Tally<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.written.set(self.written.get() + bytes.len());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A row under each filter, each after its filter-type byte.
struct Filtered {
    rows: [Vec<u8>; 5],
}

impl Filtered {
    fn new(row_len: usize) -> Filtered {
        Filtered {
            rows: std::array::from_fn(|kind| {
                let mut row = vec![0u8; row_len + 1];
                row[0] = kind as u8;
                row
            }),
        }
    }

    /// `row` (below `previous`) under the filter that leaves the smallest signed sum,
    /// after its filter byte.
    fn best(&mut self, previous: &[u8], row: &[u8], bpp: usize) -> &[u8] {
        let [none, sub, up, average, paeth] = &mut self.rows;
        let (sub, up, average, paeth) = (
            &mut sub[1..],
            &mut up[1..],
            &mut average[1..],
            &mut paeth[1..],
        );
        none[1..].copy_from_slice(row);
        // The first pixel has nothing to its left: sub keeps it, Paeth predicts from above.
        let first = bpp.min(row.len());
        for at in 0..first {
            let (this, above) = (row[at], previous[at]);
            sub[at] = this;
            up[at] = this.wrapping_sub(above);
            average[at] = this.wrapping_sub(above / 2);
            paeth[at] = this.wrapping_sub(above);
        }
        // The rest, each filter in a loop of its own over slices of one length (no bounds to
        // check, so that each is vectorised).
        let (this, left) = (&row[first..], &row[..row.len() - first]);
        let (above, upper_left) = (&previous[first..], &previous[..row.len() - first]);
        for (out, (&this, &left)) in sub[first..].iter_mut().zip(this.iter().zip(left)) {
            *out = this.wrapping_sub(left);
        }
        for (out, (&this, &above)) in up[first..].iter_mut().zip(this.iter().zip(above)) {
            *out = this.wrapping_sub(above);
        }
        for (out, ((&this, &left), &above)) in average[first..]
            .iter_mut()
            .zip(this.iter().zip(left).zip(above))
        {
            *out = this.wrapping_sub(((u16::from(left) + u16::from(above)) / 2) as u8);
        }
        for (out, (((&this, &left), &above), &upper_left)) in paeth[first..]
            .iter_mut()
            .zip(this.iter().zip(left).zip(above).zip(upper_left))
        {
            *out = this.wrapping_sub(paeth_predictor(left, above, upper_left));
        }
        let best = (NONE..=PAETH)
            .min_by_key(|&kind| signed_sum(&self.rows[usize::from(kind)][1..]))
            .unwrap_or(NONE);
        &self.rows[usize::from(best)]
    }
}

/// The byte among `left`, `above` and `upper_left` nearest to `left + above - upper_left`
/// (ties in that order), as PNG's Paeth filter predicts.
#[inline(always)]
fn paeth_predictor(left: u8, above: u8, upper_left: u8) -> u8 {
    let (a, b, c) = (i16::from(left), i16::from(above), i16::from(upper_left));
    // The distances from `a + b - c` to each, without branches.
    let (to_a, to_b, to_c) = ((b - c).abs(), (a - c).abs(), (a + b - 2 * c).abs());
    let nearer_b_or_c = if to_b <= to_c { above } else { upper_left };
    if to_a <= to_b && to_a <= to_c {
        left
    } else {
        nearer_b_or_c
    }
}

/// The sum of `bytes` taken as signed, in magnitude: how far from zero a filter left them.
fn signed_sum(bytes: &[u8]) -> u64 {
    // In runs short enough for a 16-bit sum (256 x 128 at most), which is vectorised wide.
    bytes
        .chunks(256)
        .map(|run| {
            let sum: u16 = run
                .iter()
                .map(|&byte| u16::from((byte as i8).unsigned_abs()))
                .sum();
            u64::from(sum)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of `kind`: noise, a smooth gradient with grain, or flat.
    fn pixels(width: u32, height: u32, bpp: usize, kind: &str) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..width as usize * height as usize * bpp)
            .map(|at| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let (x, y) = ((at / bpp) % width as usize, (at / bpp) / width as usize);
                match kind {
                    "noise" => state as u8,
                    "smooth" => ((x + 2 * y + at % bpp * 40) as u8) ^ (state as u8 & 7),
                    _ => 77,
                }
            })
            .collect()
    }

    fn decoded(png: &[u8]) -> (u32, u32, ::image::ColorType, Vec<u8>) {
        let image = ::image::load_from_memory_with_format(png, ::image::ImageFormat::Png)
            .expect("a PNG any decoder reads");
        let (width, height, color) = (image.width(), image.height(), image.color());
        (width, height, color, image.into_bytes())
    }

    #[test]
    fn pictures_of_every_kind_read_back_as_their_pixels() {
        for (width, height) in [(1, 1), (7, 3), (64, 64), (333, 97)] {
            for bpp in [3, 4] {
                for kind in ["noise", "smooth", "flat"] {
                    let sent = pixels(width, height, bpp, kind);
                    let png = encode(&sent, (width, height), bpp).unwrap();
                    let color = match bpp {
                        3 => ::image::ColorType::Rgb8,
                        _ => ::image::ColorType::Rgba8,
                    };
                    assert_eq!(
                        decoded(&png),
                        (width, height, color, sent.clone()),
                        "{width}x{height}, {bpp} bytes a pixel, {kind}"
                    );
                    // Every chunk is checked by the strict reader the pipeline uses.
                    let checked = crate::image::inspect(&png, &crate::image::Limits::default());
                    assert!(checked.is_ok(), "{kind}: {checked:?}");
                }
            }
        }
    }

    #[test]
    fn noise_is_stored_and_smooth_pictures_compress_as_well_as_the_png_crate_does() {
        let (width, height) = (512, 256);
        let noise = pixels(width, height, 3, "noise");
        let stored = encode(&noise, (width, height), 3).unwrap();
        let raw = noise.len() + height as usize;
        assert!(
            stored.len() < raw + raw / 1000 + 128,
            "{} for {raw}",
            stored.len()
        );
        let smooth = pixels(width, height, 3, "smooth");
        let ours = encode(&smooth, (width, height), 3).unwrap();
        let mut theirs = Vec::new();
        ::image::ImageEncoder::write_image(
            ::image::codecs::png::PngEncoder::new_with_quality(
                &mut theirs,
                ::image::codecs::png::CompressionType::Fast,
                ::image::codecs::png::FilterType::Adaptive,
            ),
            &smooth,
            width,
            height,
            ::image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        assert!(
            ours.len() <= theirs.len() + theirs.len() / 50,
            "ours {} against {}",
            ours.len(),
            theirs.len()
        );
        assert!(ours.len() < raw * 2 / 3, "{} for {raw}", ours.len());
    }

    #[test]
    fn pixels_unlike_their_size_are_refused() {
        assert!(encode(&[0; 11], (2, 2), 3).is_err());
        assert!(encode(&[0; 8], (2, 2), 2).is_err());
        assert!(encode(&[], (0, 0), 3).is_err());
    }
}
