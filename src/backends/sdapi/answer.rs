//! Reading the server's answers: the images of a success, the reason of an error.
//!
//! Draw Things answers `{"images": [...]}` only, written by Swift's JSONEncoder, which
//! escapes `/` as `\/` (so the strings cannot be used as they stand in the body). Each image
//! string is taken as raw JSON text, its `\/` escapes dropped in one pass, and decoded from
//! base64: one copy of the image text, not two. A1111 adds `parameters` and `info` and, for
//! several images, may put a grid first.

use crate::image::{Limits, inspect};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Success<'a> {
    /// Each image's JSON string literal, quotes and escapes included, borrowed from the body.
    #[serde(borrow)]
    images: Option<Vec<&'a RawValue>>,
}

/// Why an answer that came with status 200 cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

impl From<BadAnswer> for crate::backends::Trouble {
    fn from(BadAnswer(reason): BadAnswer) -> Self {
        crate::backends::Trouble::BadAnswer(reason)
    }
}

/// The PNG images of a successful answer, checked to be complete PNGs. `expected` is the
/// least number of images the request asked for; `grid_first`: A1111 may put a grid of the
/// batch first.
pub(crate) fn images(
    body: &[u8],
    grid_first: bool,
    expected: usize,
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, BadAnswer> {
    let success: Success = serde_json::from_slice(body).map_err(|error| {
        BadAnswer(format!(
            "the answer is not the JSON that was expected ({error}; {} bytes)",
            body.len()
        ))
    })?;
    let encoded: Vec<&str> = success
        .images
        .ok_or_else(|| BadAnswer("the answer has no \"images\"".into()))?
        .into_iter()
        .map(RawValue::get)
        .collect();
    checked(encoded, grid_first, expected, |_, _| Ok(()))?
        .iter()
        .enumerate()
        .map(|(index, literal)| decode_png(index + 1, literal, limits))
        .collect()
}

/// The number checks of an answer's images (whatever form they are in yet): at least one,
/// A1111's grid dropped, at least `expected`; then `check` on each (1-based number).
pub(crate) fn checked<T>(
    mut images: Vec<T>,
    grid_first: bool,
    expected: usize,
    check: impl Fn(usize, &T) -> Result<(), BadAnswer>,
) -> Result<Vec<T>, BadAnswer> {
    if images.is_empty() {
        return Err(BadAnswer("the answer holds no images".into()));
    }
    if grid_first && expected > 1 && images.len() == expected + 1 {
        // A1111 puts a grid of the batch first.
        images.remove(0);
    }
    if images.len() < expected {
        return Err(BadAnswer(format!(
            "the server sent {} image{}, {expected} were asked for",
            images.len(),
            if images.len() == 1 { "" } else { "s" }
        )));
    }
    for (index, image) in images.iter().enumerate() {
        check(index + 1, image)?;
    }
    Ok(images)
}

/// Decodes one image literal: a JSON string of base64 (plain, or a `data:` URL).
fn decode_png(number: usize, literal: &str, limits: &Limits) -> Result<Vec<u8>, BadAnswer> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or_else(|| BadAnswer(format!("image {number} of the answer is not a string")))?;
    let not_base64 = |error: base64::DecodeError| {
        BadAnswer(format!(
            "image {number} of the answer is not valid base64 ({error})"
        ))
    };
    let bytes = if inner.starts_with("data:") || has_other_escapes(inner.as_bytes()) {
        // The rare shapes: unescape fully, then strip the data URL's head.
        let text: String = serde_json::from_str(literal)
            .map_err(|_| BadAnswer(format!("image {number} of the answer is not a string")))?;
        let text = match text.strip_prefix("data:") {
            Some(url) => url.split_once(";base64,").map_or(url, |(_, data)| data),
            None => &text,
        };
        BASE64.decode(text.trim()).map_err(not_base64)?
    } else {
        decode_dropping_escapes(inner.trim().as_bytes()).map_err(not_base64)?
    };
    inspect(&bytes, limits).map_err(|problem| {
        BadAnswer(format!(
            "image {number} of the answer is not a usable PNG: {problem}"
        ))
    })?;
    Ok(bytes)
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Whether a string literal's content holds an escape other than `\/`.
fn has_other_escapes(inner: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', inner).any(|at| inner.get(at + 1) != Some(&b'/'))
}

/// Base64 with `\/` escapes decoded in one pass through a small buffer: no unescaped copy
/// of the whole text is made.
fn decode_dropping_escapes(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    const BLOCK: usize = 16 * 1024;
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut block = Vec::with_capacity(BLOCK + 4);
    let mut rest = text;
    while !rest.is_empty() {
        let take = memchr::memchr(b'\\', rest).unwrap_or(rest.len());
        block.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if let Some(after) = rest.strip_prefix(b"\\") {
            rest = after; // the escaped character follows as itself
        }
        if block.len() >= BLOCK {
            // Decode whole groups of four; the rest starts the next block.
            let whole = block.len() / 4 * 4;
            BASE64.decode_vec(&block[..whole], &mut out)?;
            block.drain(..whole);
        }
    }
    BASE64.decode_vec(&block, &mut out)?;
    Ok(out)
}

/// The reason an error answer gives, for a person: the `detail` (Draw Things, A1111), or
/// `error` (sd-server), or the start of the body.
pub(crate) fn error_detail(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        for key in ["detail", "error", "message", "errors"] {
            match value.get(key) {
                Some(Value::String(text)) if !text.is_empty() => return clean(text),
                Some(other @ (Value::Array(_) | Value::Object(_))) => {
                    return clean(&other.to_string());
                }
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(the answer was empty)".into()
    } else {
        clean(&text)
    }
}

/// One line, no control characters, at most 500 characters.
fn clean(text: &str) -> String {
    let mut line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    if text.trim().chars().count() > 500 {
        line.push_str(" ...");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(2, 2)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn reads_draw_things_answers_with_escaped_slashes() {
        let encoded = b64(&png()).replace('/', "\\/");
        let body = format!("{{\"images\":[\"{encoded}\",\"{encoded}\"]}}");
        let images = images(body.as_bytes(), false, 2, &Limits::default()).unwrap();
        assert_eq!(images, vec![png(), png()]);
    }

    #[test]
    fn escaped_base64_decodes_across_blocks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let escaped = b64(&data).replace('/', "\\/");
        assert_eq!(decode_dropping_escapes(escaped.as_bytes()).unwrap(), data);
        assert!(decode_dropping_escapes(b"@@@@").is_err());
        assert!(has_other_escapes(br"a\nb"));
        assert!(!has_other_escapes(br"a\/b"));
    }

    #[test]
    fn drops_the_a1111_grid_and_ignores_extra_fields() {
        let body = serde_json::json!({
            "images": [b64(b"grid is not even a png"), b64(&png()), b64(&png())],
            "parameters": {"prompt": "x"}, "info": "{\"seed\": 1}"
        });
        let images = images(body.to_string().as_bytes(), true, 2, &Limits::default()).unwrap();
        assert_eq!(images.len(), 2);
    }

    #[test]
    fn accepts_data_urls() {
        let body =
            serde_json::json!({ "images": [format!("data:image/png;base64,{}", b64(&png()))] });
        assert!(images(body.to_string().as_bytes(), true, 1, &Limits::default()).is_ok());
    }

    #[test]
    fn broken_answers_say_what_is_wrong() {
        let limits = Limits::default();
        let cases: Vec<(String, usize, &str)> = vec![
            ("{\"images\": [\"iVBOR".into(), 1, "not the JSON"),
            ("{\"images\": []}".into(), 1, "no images"),
            ("{\"other\": 1}".into(), 1, "has no \"images\""),
            (
                "{\"images\": [\"***\"]}".into(),
                1,
                "image 1 of the answer is not valid base64",
            ),
            (
                format!("{{\"images\": [\"{}\"]}}", b64(b"GIF89a....")),
                1,
                "image 1 of the answer is not a usable PNG",
            ),
            (
                format!("{{\"images\": [\"{}\"]}}", b64(&png())),
                2,
                "sent 1 image, 2 were asked for",
            ),
        ];
        for (body, expected_count, expected) in cases {
            let error = images(body.as_bytes(), false, expected_count, &limits).unwrap_err();
            assert!(error.0.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn error_details_from_each_server() {
        let draw_things = br#"{"error":"HTTPException","detail":"Unrecognized keys: [\"foo\"]","body":"","errors":""}"#;
        assert_eq!(error_detail(draw_things), "Unrecognized keys: [\"foo\"]");
        assert_eq!(error_detail(br#"{"error": "bad size"}"#), "bad size");
        assert_eq!(
            error_detail(br#"{"detail": [{"loc": ["body", "steps"], "msg": "bad"}]}"#),
            r#"[{"loc":["body","steps"],"msg":"bad"}]"#
        );
        assert_eq!(error_detail(b""), "(the answer was empty)");
        assert_eq!(
            error_detail(b"<html>\nBad Gateway</html>"),
            "<html> Bad Gateway</html>"
        );
        assert!(error_detail(&[b'x'; 2000]).ends_with(" ..."));
    }
}
