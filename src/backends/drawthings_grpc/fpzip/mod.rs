//! fpzip, the float array codec Draw Things' gRPC server compresses its image tensors with,
//! in pure Rust: a decoder for its answers and an encoder that writes, byte for byte, the
//! stream the reference library (LLNL fpzip 1.3, built with `FPZIP_FP_FAST`) writes for the
//! same input and parameters.
//!
//! - [`decode`] reads a stream with its header ([`read_header`] reads only the header) into
//!   f32 values, refusing arrays larger than the caller's limit before allocating anything.
//! - [`encode`] writes f32 values at a precision; [`encode_f16`] writes f16 values the way
//!   Draw Things does: widened to f32 (exactly) and kept at 19 bits, which loses nothing.
//! - [`Dims::image`] gives the dimensions Draw Things uses for an NHWC image tensor.
//!
//! Only single-precision streams (fpzip type 0) are read and written; doubles are refused
//! ([`FpzipError::UnsupportedType`]). Every precision the format has for floats is supported:
//! 0 (full, as 32) and 2..=32 bits.
//!
//! # The stream
//!
//! The whole stream, header included, is the output of one range coder (see `range`): no
//! byte of it can be read on its own. The coder codes plain bit fields (at most 16 bits at a
//! time; wider fields low 16 bits first) and symbols of an adaptive model (see `model`), and
//! ends with four bytes that close its interval. The header is a sequence of plain fields:
//!
//! | field | bits | value |
//! |---|---|---|
//! | magic | 4 x 8 | `'f'`, `'p'`, `'z'`, 0 |
//! | format version | 16, then 8 | 0x0110, then the arithmetic mode: 1 (`FPZIP_FP_FAST`) |
//! | type | 1 | 0 = f32 (1 = f64) |
//! | precision | 7 | bits kept per value: 0 = all, else 2..=32 |
//! | nx, ny, nz, nf | 32 each | the array's sizes |
//!
//! The array has nf fields of nz planes of ny rows of nx values, x varying fastest. Draw
//! Things stores an NHWC tensor `[N, H, W, C]` as nx = C, ny = W, nz = H, nf = N; its f32
//! tensors at precision 32, its f16 tensors widened to f32 at precision 19 (sign, 8 exponent
//! bits and the 10 of an f16's significand). In a Draw Things tensor the stream follows the
//! 68-byte tensor header, whose codec word is 0xf7217 for fpzip; a tensor that would not shrink
//! is sent raw instead.
//!
//! Each field is coded on its own, with a fresh model, in storage order. For each value the
//! coder predicts it from the 7 neighbours already coded, one back along x, y, z and the
//! diagonals (zero outside the field): the Lorenzo predictor, summed in f32 left to right in
//! exactly this order, `a(x) - a(y,z) + a(y) - a(x,z) + a(z) - a(x,y) + a(x,y,z)`, where `a(y,z)`
//! is the value one back along y and z. It maps prediction and value onto ordered integers of
//! `precision` bits (see `codec::Map`) and codes their difference: up to 8 bits of precision
//! as a single symbol; above, as a symbol for the sign and bit length k of the difference (or
//! "exact"), followed by the k bits below its leading one, verbatim. Bits below the precision
//! are dropped: values decode with them cleared. Because the prediction is float arithmetic,
//! encoder and decoder must compute it identically: IEEE f32, no reassociation, no fused
//! operations, which is what Rust's f32 arithmetic is (and what `FPZIP_FP_FAST` compiles to).

mod codec;
mod model;
mod range;

use range::{RangeDecoder, RangeEncoder};

/// The format version this codec reads and writes: fpzip 1.1+, fast float arithmetic.
const FORMAT_MAJOR: u32 = 0x0110;
const FORMAT_MINOR: u32 = 1;
const MAGIC: [u8; 4] = *b"fpz\0";
/// fpzip's type code for f32.
const TYPE_FLOAT: u32 = 0;
/// The precision Draw Things uses for f16 tensors widened to f32.
pub const F16_PRECISION: u8 = 19;

/// An fpzip array's sizes: nf fields of nz planes of ny rows of nx values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub nx: u32,
    pub ny: u32,
    pub nz: u32,
    pub nf: u32,
}

impl Dims {
    /// The dimensions Draw Things gives an image tensor `[1, height, width, channels]`.
    pub fn image(height: u32, width: u32, channels: u32) -> Dims {
        Dims {
            nx: channels,
            ny: width,
            nz: height,
            nf: 1,
        }
    }

    /// How many values the array holds (four u32 sizes can exceed any machine's usize).
    pub fn count(self) -> u128 {
        u128::from(self.nx) * u128::from(self.ny) * u128::from(self.nz) * u128::from(self.nf)
    }

    fn field(self) -> (usize, usize, usize) {
        (self.nx as usize, self.ny as usize, self.nz as usize)
    }
}

/// What a stream's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dims: Dims,
    /// As stored: 0 = full precision (32 bits), else 2..=32.
    pub precision: u8,
}

impl Header {
    /// The bits kept per value (0 means 32).
    pub fn bits(self) -> u32 {
        match self.precision {
            0 => 32,
            bits => u32::from(bits),
        }
    }
}

/// A decoded stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: Header,
    /// The values in storage order (x fastest), with the bits below the precision cleared.
    pub values: Vec<f32>,
    /// How many bytes of the input the stream took (the rest, if any, is not fpzip's).
    pub consumed: usize,
}

/// Why a stream cannot be read, or values cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FpzipError {
    #[error("the fpzip stream is cut short")]
    Truncated,
    #[error("not an fpzip stream (its header does not start with the fpz magic)")]
    BadMagic,
    #[error(
        "fpzip format version {major:#06x}.{minor} is not supported (only {FORMAT_MAJOR:#06x}.{FORMAT_MINOR}, the fast float mode)"
    )]
    UnsupportedVersion { major: u32, minor: u32 },
    #[error("the fpzip stream holds doubles; only 32-bit floats are supported")]
    UnsupportedType,
    #[error("fpzip precision {0} is not supported for floats (0 or 2..=32 bits)")]
    UnsupportedPrecision(u32),
    #[error("the fpzip array holds {values} values, over the limit of {limit}")]
    TooLarge { values: u128, limit: usize },
    #[error("the fpzip stream is damaged (it holds codes no encoder writes)")]
    Corrupt,
    #[error("{given} values given for an fpzip array of {expected}")]
    LengthMismatch { expected: u128, given: usize },
}

/// Reads only the header of a stream (as `fpzip_read_header` does).
pub fn read_header(stream: &[u8]) -> Result<Header, FpzipError> {
    read_header_from(&mut RangeDecoder::new(stream))
}

fn read_header_from(decoder: &mut RangeDecoder<'_>) -> Result<Header, FpzipError> {
    let magic = MAGIC.map(|_| decoder.decode_bits(8));
    if magic
        .iter()
        .zip(MAGIC)
        .any(|(&got, want)| got != u32::from(want))
    {
        return Err(if decoder.overrun() {
            FpzipError::Truncated
        } else {
            FpzipError::BadMagic
        });
    }
    let major = decoder.decode_bits(16);
    let minor = decoder.decode_bits(8);
    let kind = decoder.decode_bits(1);
    let precision = decoder.decode_bits(7);
    let [nx, ny, nz, nf] = [0; 4].map(|_: u32| decoder.decode_bits(32));
    if decoder.overrun() {
        return Err(FpzipError::Truncated);
    }
    if decoder.corrupt() {
        return Err(FpzipError::Corrupt);
    }
    if (major, minor) != (FORMAT_MAJOR, FORMAT_MINOR) {
        return Err(FpzipError::UnsupportedVersion { major, minor });
    }
    if kind != TYPE_FLOAT {
        return Err(FpzipError::UnsupportedType);
    }
    let precision = checked_precision(precision)?;
    Ok(Header {
        dims: Dims { nx, ny, nz, nf },
        precision,
    })
}

fn checked_precision(precision: u32) -> Result<u8, FpzipError> {
    match precision {
        0 | 2..=32 => Ok(precision as u8),
        other => Err(FpzipError::UnsupportedPrecision(other)),
    }
}

/// Decodes a stream with its header (as `fpzip_read_header` then `fpzip_read` do), refusing
/// arrays of more than `max_values` values before allocating them.
pub fn decode(stream: &[u8], max_values: usize) -> Result<Decoded, FpzipError> {
    let mut values = Vec::new();
    let (header, consumed) = decode_with(stream, max_values, |header| {
        values.reserve_exact(header.dims.count() as usize);
        |value| values.push(value)
    })?;
    Ok(Decoded {
        header,
        values,
        consumed,
    })
}

/// [`decode`], the values given one by one in storage order to the sink `start` makes once
/// the header is read and the size checked (so that a caller keeps them in its own form):
/// the header, and how many bytes of the input the stream took.
pub fn decode_with<S: FnMut(f32)>(
    stream: &[u8],
    max_values: usize,
    start: impl FnOnce(&Header) -> S,
) -> Result<(Header, usize), FpzipError> {
    let mut decoder = RangeDecoder::new(stream);
    let header = read_header_from(&mut decoder)?;
    let count = header.dims.count();
    if count > max_values as u128 {
        return Err(FpzipError::TooLarge {
            values: count,
            limit: max_values,
        });
    }
    let mut sink = start(&header);
    if count > 0 {
        for _ in 0..header.dims.nf {
            if !codec::decode_field(&mut decoder, &mut sink, header.dims.field(), header.bits()) {
                break;
            }
        }
    }
    if decoder.overrun() {
        return Err(FpzipError::Truncated);
    }
    if decoder.corrupt() {
        return Err(FpzipError::Corrupt);
    }
    Ok((header, decoder.consumed()))
}

/// Encodes f32 values (storage order, x fastest) at `precision` (0 = full, or 2..=32 bits),
/// header included: the stream `fpzip_write_header` then `fpzip_write` make.
pub fn encode(values: &[f32], dims: Dims, precision: u8) -> Result<Vec<u8>, FpzipError> {
    let precision = checked_precision(u32::from(precision))?;
    if dims.count() != values.len() as u128 {
        return Err(FpzipError::LengthMismatch {
            expected: dims.count(),
            given: values.len(),
        });
    }
    let header = Header { dims, precision };
    let mut encoder = RangeEncoder::new(values.len() + 32);
    for byte in MAGIC {
        encoder.encode_bits(u32::from(byte), 8);
    }
    encoder.encode_bits(FORMAT_MAJOR, 16);
    encoder.encode_bits(FORMAT_MINOR, 8);
    encoder.encode_bits(TYPE_FLOAT, 1);
    encoder.encode_bits(u32::from(precision), 7);
    for size in [dims.nx, dims.ny, dims.nz, dims.nf] {
        encoder.encode_bits(size, 32);
    }
    let field_len = values.len() / dims.nf.max(1) as usize;
    if field_len > 0 {
        for field in values.chunks_exact(field_len) {
            codec::encode_field(&mut encoder, field, dims.field(), header.bits());
        }
    }
    Ok(encoder.finish())
}

/// Encodes f16 values (their bits, storage order) as Draw Things does: widened to f32 and
/// kept at [`F16_PRECISION`] bits, so they decode to exactly the widened values.
pub fn encode_f16(bits: &[u16], dims: Dims) -> Result<Vec<u8>, FpzipError> {
    let widened: Vec<f32> = bits.iter().map(|&half| f16_to_f32(half)).collect();
    encode(&widened, dims, F16_PRECISION)
}

/// An f16 (its bits) as the f32 of exactly the same value (infinities and NaN included).
pub fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half >> 15) << 31;
    let exponent = u32::from(half >> 10) & 0x1f;
    let fraction = u32::from(half) & 0x3ff;
    let magnitude = match (exponent, fraction) {
        (0, 0) => 0,
        // Subnormal: fraction * 2^-24, normalised.
        (0, _) => {
            let shift = fraction.leading_zeros() - 21;
            ((113 - shift) << 23) | (((fraction << shift) & 0x3ff) << 13)
        }
        (0x1f, _) => 0x7f80_0000 | (fraction << 13),
        _ => ((exponent + 112) << 23) | (fraction << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests;
