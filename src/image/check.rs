//! Is this a complete, sane PNG? One linear pass over the chunks (CRCs included), no
//! decompression, no allocation that grows with the file; every refusal is a sentence for the
//! `.error.txt` a person reads.

use std::fmt;

use super::chunks::{ChunkError, ChunkName, Chunks, SIGNATURE};
use super::format::TAKEN_FORMATS;
use super::sniff::{OtherFormat, sniff_format};
use super::{ColorType, Limits, PngInfo};

/// The largest width or height the PNG specification allows (2^31 - 1).
const MAX_PNG_DIMENSION: u32 = 0x7fff_ffff;

/// Why a file is not a PNG drawdrop will send. `Display` is a reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PngProblem {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Only zero bytes: a placeholder or a copy that has not really started.
    #[error(
        "the file holds only zero bytes ({len} of them), not an image: an unfinished copy or download?"
    )]
    AllZeros { len: usize },
    /// Another format, recognised by its magic bytes.
    #[error("this is {0}, not a PNG (drawdrop takes {TAKEN_FORMATS})")]
    OtherFormat(OtherFormat),
    /// Unknown binary data.
    #[error("this is not a PNG: the file does not start with the PNG signature")]
    NotPng,
    /// Starts like a PNG, but the signature's line-ending bytes are changed.
    #[error("the PNG signature is damaged (was the file converted as text?)")]
    DamagedSignature,
    /// The file is a proper start of the signature.
    #[error(
        "the PNG is truncated: the file has only {len} bytes and ends inside the PNG signature"
    )]
    TruncatedSignature { len: usize },
    /// The file ends where a chunk header should be.
    #[error(
        "the PNG is truncated: it ends inside the chunk header at byte {offset} (the file has {len} bytes)"
    )]
    TruncatedHeader { offset: usize, len: usize },
    /// The file ends inside a chunk.
    #[error(
        "the PNG is truncated: it ends inside the {chunk} chunk at byte {offset} \
         (the file has {len} bytes, the chunk would end at byte {ends_at})"
    )]
    TruncatedChunk {
        chunk: ChunkName,
        offset: usize,
        len: usize,
        ends_at: u64,
    },
    /// A chunk length above 2^31 - 1.
    #[error(
        "the chunk at byte {offset} declares an impossible length ({length} bytes): the file is damaged"
    )]
    BadLength { offset: usize, length: u32 },
    /// Bytes where a chunk should start that are no chunk.
    #[error(
        "there is no valid chunk at byte {offset} (its type reads {chunk}): the file is damaged"
    )]
    BadChunkType { offset: usize, chunk: ChunkName },
    /// A CRC mismatch.
    #[error("chunk {chunk} at byte {offset} is damaged (CRC mismatch)")]
    Crc { chunk: ChunkName, offset: usize },
    /// The first chunk is not IHDR.
    #[error("the first chunk is {found}, not IHDR: the file is damaged")]
    IhdrNotFirst { found: ChunkName },
    /// Apple's "optimized" PNG variant (CgBI) from iOS app bundles.
    #[error(
        "this is an Apple-optimized PNG (CgBI, from an iOS app bundle), which only Apple's own software reads"
    )]
    AppleCgbi,
    /// IHDR fields that break the specification.
    #[error("the PNG header (IHDR) is invalid: {0}")]
    BadHeader(String),
    /// A zero width or height.
    #[error("width or height is 0 (the header says {width} x {height})")]
    ZeroSize { width: u32, height: u32 },
    /// More pixels than [`Limits::max_pixels`].
    #[error("the image is {width} x {height} pixels, above the limit of {limit}")]
    TooManyPixels {
        width: u32,
        height: u32,
        limit: PixelLimit,
    },
    /// A side longer than [`Limits::max_side`].
    #[error(
        "the image is {width} x {height} pixels, and sides longer than {max_side} pixels are not taken"
    )]
    SideTooLong {
        width: u32,
        height: u32,
        max_side: u32,
    },
    /// IHDR a second time.
    #[error("there is a second IHDR chunk at byte {offset}: the file is damaged")]
    SecondIhdr { offset: usize },
    /// An indexed image whose image data comes before any palette.
    #[error("the PNG uses a palette but has no PLTE chunk before its image data")]
    MissingPalette,
    /// IEND without any IDAT.
    #[error("no IDAT chunk: the PNG holds no image data")]
    NoImageData,
    /// The chunks end, cleanly, without IEND.
    #[error("no IEND chunk: the file is incomplete (it ends after {len} bytes)")]
    MissingIend { len: usize },
    /// A text keyword PNG cannot carry (from [`with_text_chunk`](super::with_text_chunk)).
    #[error(
        "the text keyword {0:?} is not valid: it must be 1 to 79 Latin-1 letters, digits, signs or \
         single spaces, not starting or ending with a space"
    )]
    BadKeyword(String),
    /// Text too long for one chunk (from [`with_text_chunk`](super::with_text_chunk)).
    #[error("the text for {keyword:?} is too long for a PNG chunk ({len} bytes)")]
    TextTooLong { keyword: String, len: usize },
    /// Text with a NUL character (from [`with_text_chunk`](super::with_text_chunk)).
    #[error("the text for {keyword:?} holds a NUL character, which PNG text chunks cannot carry")]
    NulInText { keyword: String },
}

/// A pixel-count limit, shown as `8192 x 8192` when it is a square, else as a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelLimit(pub u64);

impl fmt::Display for PixelLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = self.0.isqrt();
        if side * side == self.0 {
            write!(f, "{side} x {side}")
        } else {
            write!(f, "{} pixels", self.0)
        }
    }
}

/// Checks that `bytes` is a complete, sane PNG within `limits` and returns what its header says.
///
/// Checks the signature; walks every chunk up to IEND (each within the file, each CRC correct);
/// IHDR first with valid fields (bit depth and color type a valid pair); a palette before the
/// image data of an indexed image; at least one IDAT; IEND present. Bytes after IEND are
/// tolerated. The declared size is checked against `limits` as soon as IHDR is read, so an
/// absurd size is refused before the rest is even looked at. Nothing is decompressed: this is a
/// linear CRC pass, and it allocates nothing unless it fails.
pub(crate) fn inspect(bytes: &[u8], limits: &Limits) -> Result<PngInfo, PngProblem> {
    walk(bytes, Some(limits)).map(|walk| walk.info)
}

/// The result of a successful walk.
#[derive(Debug, Clone)]
pub(super) struct Walk {
    /// The header.
    pub info: PngInfo,
    /// Where the IEND chunk starts.
    pub iend_offset: usize,
    /// Where the data of the first `eXIf` chunk (the orientation's home) is, if there is one.
    pub exif: Option<std::ops::Range<usize>>,
}

/// The checks of [`inspect`], with the size limits optional, also returning where IEND is.
pub(super) fn walk(bytes: &[u8], limits: Option<&Limits>) -> Result<Walk, PngProblem> {
    check_signature(bytes)?;
    let mut chunks = Chunks::after_signature(bytes);
    let info = read_header(&mut chunks, bytes.len())?;
    if let Some(limits) = limits {
        check_limits(info.size(), limits)?;
    }
    let mut exif = None;
    let mut has_palette = false;
    let mut has_image_data = false;
    for chunk in chunks {
        let chunk = chunk.map_err(|e| chunk_problem(e, bytes.len()))?;
        match chunk.name {
            ChunkName::IHDR => {
                return Err(PngProblem::SecondIhdr {
                    offset: chunk.offset,
                });
            }
            ChunkName::PLTE => has_palette = true,
            ChunkName::EXIF if exif.is_none() => {
                let start = chunk.offset + 8;
                exif = Some(start..start + chunk.data.len());
            }
            ChunkName::IDAT if info.color_type == ColorType::Indexed && !has_palette => {
                return Err(PngProblem::MissingPalette);
            }
            ChunkName::IDAT => has_image_data = true,
            ChunkName::IEND if !has_image_data => return Err(PngProblem::NoImageData),
            ChunkName::IEND => {
                return Ok(Walk {
                    info,
                    iend_offset: chunk.offset,
                    exif,
                });
            }
            _ => {}
        }
    }
    Err(PngProblem::MissingIend { len: bytes.len() })
}

/// The signature, or the kindest explanation of why it is not there.
pub(super) fn check_signature(bytes: &[u8]) -> Result<(), PngProblem> {
    if bytes.starts_with(&SIGNATURE) {
        return Ok(());
    }
    Err(if bytes.is_empty() {
        PngProblem::Empty
    } else if SIGNATURE.starts_with(bytes) {
        PngProblem::TruncatedSignature { len: bytes.len() }
    } else if bytes.starts_with(&SIGNATURE[..4]) {
        PngProblem::DamagedSignature
    } else if let Some(format) = sniff_format(bytes) {
        PngProblem::OtherFormat(format)
    } else if bytes.iter().all(|&b| b == 0) {
        PngProblem::AllZeros { len: bytes.len() }
    } else {
        PngProblem::NotPng
    })
}

/// Reads the first chunk, which must be a valid IHDR.
fn read_header(chunks: &mut Chunks<'_>, len: usize) -> Result<PngInfo, PngProblem> {
    let chunk = match chunks.next() {
        None => return Err(PngProblem::MissingIend { len }),
        Some(Err(e)) => return Err(chunk_problem(e, len)),
        Some(Ok(chunk)) => chunk,
    };
    match chunk.name {
        ChunkName::IHDR => parse_ihdr(chunk.data),
        ChunkName::CGBI => Err(PngProblem::AppleCgbi),
        found => Err(PngProblem::IhdrNotFirst { found }),
    }
}

/// The IHDR fields, checked against the specification.
fn parse_ihdr(data: &[u8]) -> Result<PngInfo, PngProblem> {
    let bad = |reason: String| PngProblem::BadHeader(reason);
    let Ok(d) = <&[u8; 13]>::try_from(data) else {
        return Err(bad(format!(
            "it is {} bytes long instead of 13",
            data.len()
        )));
    };
    let width = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let height = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let [bit_depth, color_code, compression, filter, interlace] = [d[8], d[9], d[10], d[11], d[12]];
    if width > MAX_PNG_DIMENSION || height > MAX_PNG_DIMENSION {
        return Err(bad(format!(
            "its size {width} x {height} is above the PNG maximum of {MAX_PNG_DIMENSION} per side"
        )));
    }
    if width == 0 || height == 0 {
        return Err(PngProblem::ZeroSize { width, height });
    }
    let color_type = ColorType::from_code(color_code)
        .ok_or_else(|| bad(format!("color type {color_code} does not exist")))?;
    let allowed = color_type.allowed_bit_depths();
    if !allowed.contains(&bit_depth) {
        return Err(bad(format!(
            "bit depth {bit_depth} is not allowed with color type {color_code} ({color_type}), \
             only {}",
            list(allowed)
        )));
    }
    if compression != 0 || filter != 0 {
        return Err(bad(format!(
            "compression method {compression} and filter method {filter} must both be 0"
        )));
    }
    if interlace > 1 {
        return Err(bad(format!(
            "interlace method {interlace} does not exist (only 0 and 1)"
        )));
    }
    Ok(PngInfo {
        width,
        height,
        bit_depth,
        color_type,
        interlaced: interlace == 1,
    })
}

/// "1, 2, 4 or 8".
fn list(values: &[u8]) -> String {
    match values {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u8::to_string).collect();
            format!("{} or {last}", init.join(", "))
        }
    }
}

/// A declared size (of a picture in any format) against the limits.
pub(super) fn check_limits((width, height): (u32, u32), limits: &Limits) -> Result<(), PngProblem> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PngProblem::TooManyPixels {
            width,
            height,
            limit: PixelLimit(limits.max_pixels),
        });
    }
    if width.max(height) > limits.max_side {
        return Err(PngProblem::SideTooLong {
            width,
            height,
            max_side: limits.max_side,
        });
    }
    Ok(())
}

/// A chunk-walk error as a problem, for a file of `len` bytes.
fn chunk_problem(error: ChunkError, len: usize) -> PngProblem {
    match error {
        ChunkError::TruncatedHeader { offset } => PngProblem::TruncatedHeader { offset, len },
        ChunkError::TruncatedChunk {
            name,
            offset,
            ends_at,
        } => PngProblem::TruncatedChunk {
            chunk: name,
            offset,
            len,
            ends_at,
        },
        ChunkError::BadLength { offset, length } => PngProblem::BadLength { offset, length },
        ChunkError::BadType { offset, name } => PngProblem::BadChunkType {
            offset,
            chunk: name,
        },
        ChunkError::Crc { offset, name } => PngProblem::Crc {
            chunk: name,
            offset,
        },
    }
}

#[cfg(test)]
mod tests;
