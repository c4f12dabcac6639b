//! The PNG chunk layout: the signature and a zero-copy walk over chunks that checks lengths,
//! type codes and CRCs.
//!
//! A chunk is `length (4, big-endian) | type (4) | data (length) | CRC-32 of type and data (4)`.
//! The walk borrows from the file and allocates nothing.

use std::fmt;

/// The eight bytes every PNG starts with.
pub(super) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The largest chunk length the PNG specification allows (2^31 - 1).
pub(super) const MAX_CHUNK_LENGTH: u32 = 0x7fff_ffff;

/// Bytes of a chunk that are not data: length, type and CRC.
pub(super) const CHUNK_OVERHEAD: usize = 12;

/// A chunk's four-byte type code, shown as text (`IDAT`) or, when it is not letters, escaped.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChunkName(pub [u8; 4]);

impl ChunkName {
    pub(super) const IHDR: ChunkName = ChunkName(*b"IHDR");
    pub(super) const PLTE: ChunkName = ChunkName(*b"PLTE");
    pub(super) const IDAT: ChunkName = ChunkName(*b"IDAT");
    pub(super) const IEND: ChunkName = ChunkName(*b"IEND");
    pub(super) const CGBI: ChunkName = ChunkName(*b"CgBI");
    /// EXIF metadata, where a PNG keeps its orientation.
    pub(super) const EXIF: ChunkName = ChunkName(*b"eXIf");

    /// Whether all four bytes are ASCII letters, as the specification requires.
    pub(crate) fn is_valid(&self) -> bool {
        self.0.iter().all(u8::is_ascii_alphabetic)
    }
}

impl fmt::Display for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_valid() {
            self.0
                .iter()
                .try_for_each(|&b| write!(f, "{}", char::from(b)))
        } else {
            f.write_str("\"")?;
            self.0
                .iter()
                .try_for_each(|&b| write!(f, "{}", std::ascii::escape_default(b)))?;
            f.write_str("\"")
        }
    }
}

impl fmt::Debug for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One chunk, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk<'a> {
    /// The type code.
    pub name: ChunkName,
    /// The data, without length, type or CRC.
    pub data: &'a [u8],
    /// Where the chunk starts (its length field) in the file.
    pub offset: usize,
}

impl Chunk<'_> {
    /// Where the next chunk starts.
    pub(super) fn end(&self) -> usize {
        self.offset + CHUNK_OVERHEAD + self.data.len()
    }
}

/// Why the walk stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkError {
    /// Fewer than 8 bytes left where a chunk header should be.
    TruncatedHeader { offset: usize },
    /// The chunk needs more bytes than the file has; `ends_at` is where it would end.
    TruncatedChunk {
        name: ChunkName,
        offset: usize,
        ends_at: u64,
    },
    /// A length above 2^31 - 1.
    BadLength { offset: usize, length: u32 },
    /// A type code that is not four letters.
    BadType { offset: usize, name: ChunkName },
    /// The stored CRC does not match type and data.
    Crc { offset: usize, name: ChunkName },
}

/// An iterator over the chunks after the signature. It stops after the first error and at the
/// end of the file; it does not stop at IEND (callers do).
pub(super) struct Chunks<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Chunks<'a> {
    /// Walks `bytes`, which must start with the signature (it is skipped, not checked).
    pub(super) fn after_signature(bytes: &'a [u8]) -> Self {
        Chunks {
            bytes,
            pos: SIGNATURE.len().min(bytes.len()),
            failed: false,
        }
    }

    /// Reads the chunk at `self.pos`, or says why it cannot be read.
    fn read(&self) -> Result<Chunk<'a>, ChunkError> {
        let offset = self.pos;
        let rest = self.bytes.get(offset..).unwrap_or_default();
        let Some((header, after_header)) = rest.split_first_chunk::<8>() else {
            return Err(ChunkError::TruncatedHeader { offset });
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let name = ChunkName([header[4], header[5], header[6], header[7]]);
        if length > MAX_CHUNK_LENGTH {
            return Err(ChunkError::BadLength { offset, length });
        }
        if !name.is_valid() {
            return Err(ChunkError::BadType { offset, name });
        }
        let Some((data, crc)) = split_data_and_crc(after_header, length as usize) else {
            let ends_at = offset as u64 + CHUNK_OVERHEAD as u64 + u64::from(length);
            return Err(ChunkError::TruncatedChunk {
                name,
                offset,
                ends_at,
            });
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&name.0);
        hasher.update(data);
        if hasher.finalize() != u32::from_be_bytes(crc) {
            return Err(ChunkError::Crc { offset, name });
        }
        Ok(Chunk { name, data, offset })
    }
}

/// Splits `length` bytes of data and the four CRC bytes off the front of `rest`.
fn split_data_and_crc(rest: &[u8], length: usize) -> Option<(&[u8], [u8; 4])> {
    let data = rest.get(..length)?;
    let crc = rest.get(length..)?.first_chunk::<4>()?;
    Some((data, *crc))
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let result = self.read();
        match &result {
            Ok(chunk) => self.pos = chunk.end(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// Writes one complete chunk (length, type, data, CRC) to `out`.
pub(super) fn write_chunk(out: &mut Vec<u8>, name: ChunkName, data: &[u8]) {
    // Callers keep data far below 2^31 bytes; saturate rather than wrap if one does not.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&name.0);
    out.extend_from_slice(data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&name.0);
    hasher.update(data);
    out.extend_from_slice(&hasher.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        for (name, data) in chunks {
            write_chunk(&mut out, ChunkName(**name), data);
        }
        out
    }

    #[test]
    fn walks_chunks_with_offsets() {
        let bytes = file(&[(b"IHDR", &[1; 13]), (b"IDAT", b"abc"), (b"IEND", b"")]);
        let chunks: Vec<_> = Chunks::after_signature(&bytes)
            .collect::<Result<_, _>>()
            .unwrap();
        let names: Vec<String> = chunks.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(names, ["IHDR", "IDAT", "IEND"]);
        assert_eq!(chunks[0].offset, 8);
        assert_eq!(chunks[1].offset, 8 + 12 + 13);
        assert_eq!(chunks[1].data, b"abc");
        assert_eq!(chunks[2].end(), bytes.len());
    }

    #[test]
    fn stops_after_the_first_error() {
        let mut bytes = file(&[(b"IDAT", b"abc"), (b"IEND", b"")]);
        bytes[8 + 8] ^= 1;
        let results: Vec<_> = Chunks::after_signature(&bytes).collect();
        assert_eq!(
            results,
            [Err(ChunkError::Crc {
                offset: 8,
                name: ChunkName::IDAT
            })]
        );
    }

    #[test]
    fn reports_truncation_and_bad_headers() {
        let bytes = file(&[(b"IDAT", b"abcdef")]);
        let cut = &bytes[..bytes.len() - 1];
        let err = Chunks::after_signature(cut).next().unwrap().unwrap_err();
        assert_eq!(
            err,
            ChunkError::TruncatedChunk {
                name: ChunkName::IDAT,
                offset: 8,
                ends_at: bytes.len() as u64
            }
        );
        let err = Chunks::after_signature(&bytes[..12])
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(err, ChunkError::TruncatedHeader { offset: 8 });

        let mut bad = bytes.clone();
        bad[12] = b'1';
        let err = Chunks::after_signature(&bad).next().unwrap().unwrap_err();
        assert!(matches!(err, ChunkError::BadType { offset: 8, .. }));
        assert_eq!(ChunkName(*b"1DAT").to_string(), "\"1DAT\"");
        assert_eq!(
            ChunkName([0, b'a', 0xff, b'b']).to_string(),
            r#""\x00a\xffb""#
        );

        let mut huge = bytes;
        huge[8] = 0x80;
        let err = Chunks::after_signature(&huge).next().unwrap().unwrap_err();
        assert!(matches!(err, ChunkError::BadLength { offset: 8, .. }));
    }
}
