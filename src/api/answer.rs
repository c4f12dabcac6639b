//! Reading the server's answers: the images of a success, the reason of an error.
//!
//! Draw Things answers `{"images": [...]}` only, written by Swift's JSONEncoder (which
//! escapes `/` as `\/`: the strings are decoded into owned text, never borrowed from the
//! body). A1111 adds `parameters` and `info` and, for several images, may put a grid first.

use crate::config::Api;
use crate::image::{Limits, inspect};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Success {
    images: Option<Vec<String>>,
}

/// Why an answer that came with status 200 cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

/// The PNG images of a successful answer, checked to be complete PNGs. `expected` is the
/// least number of images the request asked for.
pub fn images(
    body: &[u8],
    api: Api,
    expected: usize,
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, BadAnswer> {
    let success: Success = serde_json::from_slice(body).map_err(|error| {
        BadAnswer(format!(
            "the answer is not the JSON that was expected ({error}; {} bytes)",
            body.len()
        ))
    })?;
    let mut encoded = success
        .images
        .ok_or_else(|| BadAnswer("the answer has no \"images\"".into()))?;
    if encoded.is_empty() {
        return Err(BadAnswer("the answer holds no images".into()));
    }
    if api == Api::A1111 && expected > 1 && encoded.len() == expected + 1 {
        // A1111 puts a grid of the batch first.
        encoded.remove(0);
    }
    if encoded.len() < expected {
        return Err(BadAnswer(format!(
            "the server sent {} image{}, {expected} were asked for",
            encoded.len(),
            if encoded.len() == 1 { "" } else { "s" }
        )));
    }
    encoded
        .iter()
        .enumerate()
        .map(|(index, text)| decode_png(index + 1, text, limits))
        .collect()
}

fn decode_png(number: usize, text: &str, limits: &Limits) -> Result<Vec<u8>, BadAnswer> {
    let text = text
        .find(";base64,")
        .filter(|_| text.starts_with("data:"))
        .map_or(text, |at| &text[at + ";base64,".len()..]);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|error| {
            BadAnswer(format!(
                "image {number} of the answer is not valid base64 ({error})"
            ))
        })?;
    inspect(&bytes, limits).map_err(|problem| {
        BadAnswer(format!(
            "image {number} of the answer is not a usable PNG: {problem}"
        ))
    })?;
    Ok(bytes)
}

/// The reason an error answer gives, for a person: the `detail` (Draw Things, A1111), or
/// `error` (sd-server), or the start of the body.
pub fn error_detail(body: &[u8]) -> String {
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
        let images = images(body.as_bytes(), Api::DrawThings, 2, &Limits::default()).unwrap();
        assert_eq!(images, vec![png(), png()]);
    }

    #[test]
    fn drops_the_a1111_grid_and_ignores_extra_fields() {
        let body = serde_json::json!({
            "images": [b64(b"grid is not even a png"), b64(&png()), b64(&png())],
            "parameters": {"prompt": "x"}, "info": "{\"seed\": 1}"
        });
        let images = images(
            body.to_string().as_bytes(),
            Api::A1111,
            2,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(images.len(), 2);
    }

    #[test]
    fn accepts_data_urls() {
        let body =
            serde_json::json!({ "images": [format!("data:image/png;base64,{}", b64(&png()))] });
        assert!(
            images(
                body.to_string().as_bytes(),
                Api::A1111,
                1,
                &Limits::default()
            )
            .is_ok()
        );
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
            let error =
                images(body.as_bytes(), Api::DrawThings, expected_count, &limits).unwrap_err();
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
