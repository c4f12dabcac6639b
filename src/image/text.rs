//! Text metadata: adding a `tEXt`/`iTXt` chunk before IEND, and reading every text chunk.

use super::check::{PngProblem, walk};
use super::chunks::{
    CHUNK_OVERHEAD, Chunk, ChunkName, Chunks, MAX_CHUNK_LENGTH, SIGNATURE, write_chunk,
};

/// Largest text drawdrop inflates from one compressed chunk (a guard against zip bombs).
const MAX_INFLATED_TEXT: usize = 16 * 1024 * 1024;

const TEXT: ChunkName = ChunkName(*b"tEXt");
const ZTXT: ChunkName = ChunkName(*b"zTXt");
const ITXT: ChunkName = ChunkName(*b"iTXt");

/// Returns `png` with one text chunk inserted right before IEND, every other byte kept as is
/// (bytes after IEND too). An existing chunk with the same keyword is kept: callers decide.
///
/// The chunk is `tEXt` when `text` is Latin-1, else `iTXt` (uncompressed, UTF-8, no language).
/// The keyword must be 1 to 79 Latin-1 printable characters without leading, trailing or
/// double spaces; neither may hold NUL. `png` must be a structurally sound PNG (chunks, CRCs,
/// IHDR, IDAT, IEND as [`inspect`](super::inspect) checks them; its size is not limited).
#[cfg(test)]
pub(crate) fn with_text_chunk(
    png: &[u8],
    keyword: &str,
    text: &str,
) -> Result<Vec<u8>, PngProblem> {
    let mut out = png.to_vec();
    insert_text_chunk(&mut out, keyword, text)?;
    Ok(out)
}

/// [`with_text_chunk`] in place: only the bytes from IEND on move, so adding metadata to a
/// large result costs no copy of the image.
pub(crate) fn insert_text_chunk(
    png: &mut Vec<u8>,
    keyword: &str,
    text: &str,
) -> Result<(), PngProblem> {
    let keyword_bytes =
        latin1_keyword(keyword).ok_or_else(|| PngProblem::BadKeyword(keyword.to_owned()))?;
    if text.contains('\0') {
        return Err(PngProblem::NulInText {
            keyword: keyword.to_owned(),
        });
    }
    let (name, data) = text_chunk_data(&keyword_bytes, text);
    if data.len() > MAX_CHUNK_LENGTH as usize {
        return Err(PngProblem::TextTooLong {
            keyword: keyword.to_owned(),
            len: text.len(),
        });
    }
    let iend = walk(png, None)?.iend_offset;
    let mut chunk = Vec::with_capacity(CHUNK_OVERHEAD + data.len());
    write_chunk(&mut chunk, name, &data);
    png.splice(iend..iend, chunk);
    Ok(())
}

/// The keyword as Latin-1 bytes, if PNG allows it.
fn latin1_keyword(keyword: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = keyword
        .chars()
        .map(|c| match u32::from(c) {
            code @ (0x20..=0x7e | 0xa1..=0xff) => u8::try_from(code).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let spaces_ok = !bytes.starts_with(b" ") && !bytes.ends_with(b" ");
    let no_double = !bytes.windows(2).any(|pair| pair == b"  ");
    ((1..=79).contains(&bytes.len()) && spaces_ok && no_double).then_some(bytes)
}

/// The chunk type and data for `keyword` (Latin-1 bytes) and `text` (no NUL).
fn text_chunk_data(keyword: &[u8], text: &str) -> (ChunkName, Vec<u8>) {
    let mut data = keyword.to_vec();
    data.push(0);
    match latin1_text(text) {
        Some(latin1) => {
            data.extend_from_slice(&latin1);
            (TEXT, data)
        }
        None => {
            // Not compressed, method 0, no language tag, no translated keyword.
            data.extend_from_slice(&[0, 0, 0, 0]);
            data.extend_from_slice(text.as_bytes());
            (ITXT, data)
        }
    }
}

/// `text` as Latin-1 bytes, if every character is Latin-1 (C1 controls excluded).
fn latin1_text(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| match u32::from(c) {
            0x7f..=0x9f => None,
            code => u8::try_from(code).ok(),
        })
        .collect()
}

/// Every readable `tEXt`, `zTXt` and `iTXt` chunk before IEND as (keyword, text), in file order.
///
/// Lenient: anything that is not a PNG gives no pairs, the walk stops at the first damaged
/// chunk, and a text chunk that cannot be read (bad compression, over 16 MiB inflated) is
/// skipped. Latin-1 is decoded as such; invalid UTF-8 in `iTXt` is replaced.
pub(crate) fn text_chunks(png: &[u8]) -> Vec<(String, String)> {
    if !png.starts_with(&SIGNATURE) {
        return Vec::new();
    }
    Chunks::after_signature(png)
        .map_while(Result::ok)
        .take_while(|chunk| chunk.name != ChunkName::IEND)
        .filter_map(|chunk| read_text(&chunk))
        .collect()
}

/// (keyword, text) from one chunk, if it is a readable text chunk.
fn read_text(chunk: &Chunk<'_>) -> Option<(String, String)> {
    let (keyword, rest) = split_nul(chunk.data)?;
    let keyword = latin1(keyword);
    match chunk.name {
        TEXT => Some((keyword, latin1(rest))),
        ZTXT => match rest.split_first()? {
            (0, compressed) => Some((keyword, latin1(&inflate(compressed)?))),
            _ => None,
        },
        ITXT => read_itxt(rest).map(|text| (keyword, text)),
        _ => None,
    }
}

/// The text of an `iTXt` after its keyword: flag, method, language, translated keyword, text.
fn read_itxt(rest: &[u8]) -> Option<String> {
    let (&[flag, method], rest) = rest.split_first_chunk::<2>()?;
    let (_language, rest) = split_nul(rest)?;
    let (_translated, text) = split_nul(rest)?;
    match (flag, method) {
        (0, _) => Some(String::from_utf8_lossy(text).into_owned()),
        (1, 0) => Some(String::from_utf8_lossy(&inflate(text)?).into_owned()),
        _ => None,
    }
}

/// The bytes before and after the first NUL.
fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Latin-1 bytes as a string.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// A zlib stream inflated, within [`MAX_INFLATED_TEXT`].
fn inflate(compressed: &[u8]) -> Option<Vec<u8>> {
    fdeflate::decompress_to_vec_bounded(compressed, MAX_INFLATED_TEXT).ok()
}

#[cfg(test)]
mod tests;
