//! Reading a successful answer as it arrives, so a large image is never held twice: the
//! base64 of Draw Things' `{"images":["...",...]}` (with Swift's `\/` escapes) is decoded
//! block by block straight into the image, and the answer text itself is never kept.
//! A1111's shape (`{"images":[...],"parameters":{...},"info":"..."}`) is read the same way,
//! with the small rest after the images checked as JSON at the end. Any other shape is kept
//! whole and read by [`super::answer::images`].

use super::answer::{self, BadAnswer};
use crate::image::{Limits, inspect};
use base64::Engine;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const PREFIX: &[u8] = b"{\"images\":[";
/// Base64 text gathered before it is decoded (a multiple of 4 is decoded, the rest kept).
const BLOCK: usize = 64 * 1024;
/// A rest after the images larger than this is not JSON metadata but a broken answer.
const MAX_REST: usize = 1024 * 1024;

/// Where the decoder is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching `{"images":[` (this many bytes matched).
    Prefix(usize),
    /// Before an image string, or `]`.
    BeforeString {
        first: bool,
    },
    InString,
    /// After a backslash inside a string.
    Escape,
    /// After an image string: `,` or `]`.
    AfterString,
    /// After `]`: `}` or `,` and more keys.
    AfterArray,
    /// After the last `}`.
    Done,
    /// More keys after the images (A1111): kept, checked at the end.
    Rest,
    /// Not a shape read on the fly: the whole answer is kept.
    Whole,
}

/// Decodes a 200 answer fed in chunks.
pub(crate) struct AnswerDecoder {
    state: State,
    /// Base64 text of the image being read, not yet decoded.
    block: Vec<u8>,
    current: Vec<u8>,
    images: Vec<Vec<u8>>,
    /// The rest after the images, or the whole answer when it is not read on the fly.
    kept: Vec<u8>,
    /// The first image's likely size, from the answer's length.
    capacity_hint: usize,
}

impl AnswerDecoder {
    /// `length`: the answer's `Content-Length`, when known.
    pub(crate) fn new(length: Option<u64>) -> AnswerDecoder {
        let capacity_hint = length.map_or(0, |len| (len as usize / 4) * 3);
        AnswerDecoder {
            state: State::Prefix(0),
            block: Vec::with_capacity(BLOCK + 4),
            current: Vec::new(),
            images: Vec::new(),
            kept: Vec::new(),
            capacity_hint,
        }
    }

    /// Takes the next piece of the answer.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), BadAnswer> {
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = self.step(rest)?;
        }
        Ok(())
    }

    /// Handles the start of `input` and returns what is left of it.
    fn step<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], BadAnswer> {
        match self.state {
            State::Prefix(matched) => {
                let want = &PREFIX[matched..];
                let n = want.len().min(input.len());
                if input[..n] != want[..n] {
                    self.kept.extend_from_slice(&PREFIX[..matched]);
                    self.state = State::Whole;
                    return Ok(input);
                }
                self.state = if matched + n == PREFIX.len() {
                    State::BeforeString { first: true }
                } else {
                    State::Prefix(matched + n)
                };
                Ok(&input[n..])
            }
            State::Whole => {
                self.kept.extend_from_slice(input);
                Ok(&[])
            }
            State::InString => {
                // Copy the run up to the next quote or backslash in one go.
                let stop = memchr::memchr2(b'"', b'\\', input).unwrap_or(input.len());
                self.block.extend_from_slice(&input[..stop]);
                if self.block.len() >= BLOCK {
                    self.decode_block(false)?;
                }
                match input.get(stop) {
                    Some(b'"') => {
                        self.decode_block(true)?;
                        self.images.push(std::mem::take(&mut self.current));
                        self.state = State::AfterString;
                        Ok(&input[stop + 1..])
                    }
                    Some(_) => {
                        self.state = State::Escape;
                        Ok(&input[stop + 1..])
                    }
                    None => Ok(&[]),
                }
            }
            State::Escape => match input[0] {
                b'/' => {
                    self.block.push(b'/');
                    self.state = State::InString;
                    Ok(&input[1..])
                }
                other => Err(broken(&format!(
                    "an unexpected escape \\{} inside an image",
                    other as char
                ))),
            },
            State::Rest => {
                if self.kept.len() + input.len() > MAX_REST {
                    return Err(broken("too much after the images"));
                }
                self.kept.extend_from_slice(input);
                Ok(&[])
            }
            state => self.punctuation(state, input),
        }
    }

    /// The structural characters between strings (whitespace allowed, as JSON does).
    fn punctuation<'a>(&mut self, state: State, input: &'a [u8]) -> Result<&'a [u8], BadAnswer> {
        let byte = input[0];
        if byte.is_ascii_whitespace() {
            return Ok(&input[1..]);
        }
        self.state = match (state, byte) {
            (State::BeforeString { .. }, b'"') => {
                let hint = std::mem::take(&mut self.capacity_hint);
                self.current = Vec::with_capacity(hint);
                State::InString
            }
            (State::BeforeString { first: true }, b']') => State::AfterArray,
            (State::AfterString, b',') => State::BeforeString { first: false },
            (State::AfterString, b']') => State::AfterArray,
            (State::AfterArray, b'}') => State::Done,
            (State::AfterArray, b',') => {
                self.kept.push(b'{');
                State::Rest
            }
            _ => return Err(broken(&format!("unexpected `{}`", byte.escape_ascii()))),
        };
        Ok(&input[1..])
    }

    /// Decodes the gathered base64: whole groups of four, or everything at the string's end.
    fn decode_block(&mut self, last: bool) -> Result<(), BadAnswer> {
        if self.current.is_empty() && self.block.starts_with(b"data:") {
            // A data URL: the base64 starts after `;base64,`.
            let at = memchr::memmem::find(&self.block, b";base64,")
                .ok_or_else(|| broken("an image is a data URL without base64"))?;
            self.block.drain(..at + b";base64,".len());
        }
        let whole = if last {
            self.block.len()
        } else {
            self.block.len() / 4 * 4
        };
        BASE64
            .decode_vec(&self.block[..whole], &mut self.current)
            .map_err(|error| {
                BadAnswer(format!(
                    "image {} of the answer is not valid base64 ({error})",
                    self.images.len() + 1
                ))
            })?;
        self.block.drain(..whole);
        Ok(())
    }

    /// The images, checked like those of a buffered answer.
    pub(crate) fn finish(
        self,
        expected: usize,
        grid_first: bool,
        limits: &Limits,
    ) -> Result<Vec<Vec<u8>>, BadAnswer> {
        match self.state {
            State::Whole | State::Prefix(_) => {
                let mut whole = self.kept;
                if let State::Prefix(matched) = self.state {
                    whole.extend_from_slice(&PREFIX[..matched]);
                }
                return answer::images(&whole, grid_first, expected, limits);
            }
            State::Done => {}
            State::Rest => {
                serde_json::from_slice::<serde_json::Value>(&self.kept).map_err(|error| {
                    broken(&format!("the rest after the images is not JSON ({error})"))
                })?;
            }
            _ => return Err(broken("the answer ends too early")),
        }
        answer::checked(self.images, grid_first, expected, |number, png| {
            inspect(png, limits).map(|_| ()).map_err(|problem| {
                BadAnswer(format!(
                    "image {number} of the answer is not a usable PNG: {problem}"
                ))
            })
        })
    }
}

fn broken(what: &str) -> BadAnswer {
    BadAnswer(format!(
        "the answer is not the JSON that was expected ({what})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(seed: u8) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(40, 30, image::Rgb([seed, 2, 3]))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn b64(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    /// Feeds `body` in chunks of `size` and finishes.
    fn decode(body: &[u8], size: usize, expected: usize) -> Result<Vec<Vec<u8>>, BadAnswer> {
        let mut decoder = AnswerDecoder::new(Some(body.len() as u64));
        for chunk in body.chunks(size) {
            decoder.feed(chunk)?;
        }
        decoder.finish(expected, false, &Limits::default())
    }

    #[test]
    fn every_shape_decodes_alike_in_any_chunking() {
        let (a, b) = (png(1), png(2));
        let escaped = |png: &[u8]| b64(png).replace('/', "\\/");
        let bodies = [
            format!("{{\"images\":[\"{}\",\"{}\"]}}", escaped(&a), escaped(&b)),
            format!(
                "{{\"images\":[\"{}\",\"{}\"],\"parameters\":{{\"x\":1}},\"info\":\"{{}}\"}}",
                b64(&a),
                b64(&b)
            ),
            format!("{{\"images\": [\"{}\", \"{}\"]}}", b64(&a), b64(&b)),
            format!(
                "{{\"info\":\"x\",\"images\":[\"{}\",\"{}\"]}}",
                b64(&a),
                b64(&b)
            ),
            format!(
                "{{\"images\":[\"data:image/png;base64,{}\",\"{}\"]}}",
                escaped(&a),
                b64(&b)
            ),
        ];
        for body in &bodies {
            for size in [1, 3, 7, 64, 4096, usize::MAX] {
                let size = size.min(body.len());
                let images = decode(body.as_bytes(), size, 2)
                    .unwrap_or_else(|e| panic!("{size}: {e}: {body:.80}"));
                assert_eq!(
                    images,
                    vec![a.clone(), b.clone()],
                    "chunks of {size}: {body:.80}"
                );
            }
        }
    }

    #[test]
    fn broken_answers_are_told_apart() {
        let good = b64(&png(1));
        let cases = [
            (format!("{{\"images\":[\"{good}\""), "ends too early"),
            (format!("{{\"images\":[\"{good}\"]"), "ends too early"),
            ("{\"images\":[]}".to_owned(), "no images"),
            (format!("{{\"images\":[\"{good}\"]}}x"), "unexpected"),
            ("{\"images\":[\"@@@@\"]}".to_owned(), "not valid base64"),
            (
                format!("{{\"images\":[\"{}\"]}}", b64(b"GIF89a")),
                "not a usable PNG",
            ),
            (format!("{{\"images\":[\"{good}\"],\"info\":}}"), "not JSON"),
            ("{\"other\":1}".to_owned(), "has no \"images\""),
        ];
        for (body, expected) in cases {
            let error = decode(body.as_bytes(), 5, 1).unwrap_err();
            assert!(error.0.contains(expected), "{body:.60}: {error}");
        }
    }
}
