//! The img2img request in the JSON both HTTP kinds take: the settings of one job (in the
//! kind's names, see `drawthings_http` and `a1111`), plus the init image, in one pass. A key
//! the profile leaves out is not sent, except width/height (the init image must match them)
//! and seed (always recorded); `[extra]` keys go as they are.

use crate::backends::{Init, Request};
use crate::config::Settings;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

/// The settings of one request, without the image: what is sent, and what is logged.
pub(crate) type RequestSettings = Map<String, Value>;

/// One job's request: `keys` (the profile's settings in the kind's words) with what every
/// request carries.
pub(crate) fn request(
    keys: RequestSettings,
    settings: &Settings,
    size: (u32, u32),
    seed: u32,
) -> Request {
    Request {
        settings: with_seed_size_and_extra(keys, settings, size, seed),
        model: settings.model.clone(),
        expected_images: expected_images(settings),
        workflow: None,
    }
}

/// A profile with a ComfyUI workflow cannot go to a server that takes the profile's keys
/// only (a pool sends such profiles to ComfyUI servers alone).
pub(crate) fn refuse_workflow(settings: &Settings) -> Result<(), String> {
    match &settings.workflow {
        Some(workflow) => Err(format!(
            "this profile runs the ComfyUI workflow {}, and this server is not a ComfyUI server",
            workflow.name()
        )),
        None => Ok(()),
    }
}

/// The request body for `request` with the init picture.
pub(crate) fn encode(request: &Request, init: Init<'_>) -> Result<Bytes, String> {
    Ok(Bytes::from(body(&request.settings, &init.png()?)))
}

/// Adds what every request carries to the kind's own keys: seed, size and `[extra]`.
fn with_seed_size_and_extra(
    mut out: RequestSettings,
    settings: &Settings,
    size: (u32, u32),
    seed: u32,
) -> RequestSettings {
    out.insert("seed".to_owned(), Value::from(seed));
    out.insert("width".to_owned(), Value::from(size.0));
    out.insert("height".to_owned(), Value::from(size.1));
    for (key, value) in &settings.extra {
        out.insert(key.clone(), value.clone());
    }
    out
}

/// Puts `value` under `key` when there is one.
pub(crate) fn put(out: &mut RequestSettings, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        out.insert(key.to_owned(), value);
    }
}

/// How many images the server must send back at least.
pub(crate) fn expected_images(settings: &Settings) -> usize {
    let batch_count = settings.batch_count.unwrap_or(1) as usize;
    let batch_size = settings
        .extra
        .get("batch_size")
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize;
    batch_count.max(1) * batch_size.max(1)
}

/// The JSON body: the settings with `"init_images": ["<base64>"]` appended. The base64
/// text is encoded straight into the body (it never needs JSON escaping).
pub(crate) fn body(settings: &RequestSettings, image: &[u8]) -> Vec<u8> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let encoded_len = base64::encoded_len(image.len(), true).unwrap_or(0);
    let mut body = serde_json::to_vec(settings).unwrap_or_else(|_| b"{}".to_vec());
    body.reserve(encoded_len + 24);
    body.pop(); // the closing brace
    if !settings.is_empty() {
        body.push(b',');
    }
    body.extend_from_slice(b"\"init_images\":[\"");
    let start = body.len();
    body.resize(start + encoded_len, 0);
    let written = engine
        .encode_slice(image, &mut body[start..])
        .unwrap_or_default();
    body.truncate(start + written);
    body.extend_from_slice(b"\"]}");
    body
}

/// A profile with every key set, for the kinds' tests.
#[cfg(test)]
pub(crate) fn watercolor() -> Settings {
    use crate::config::Lora;
    Settings {
        prompt: Some("a watercolor painting".into()),
        negative_prompt: Some("blurry".into()),
        steps: Some(4),
        strength: Some(0.6),
        guidance_scale: Some(7.0),
        seed: Some(42),
        sampler: Some("DPM++ 2M Karras".into()),
        model: Some("sd_xl_base_1.0_f16.ckpt".into()),
        batch_count: Some(2),
        width: None,
        height: None,
        // drawdrop's own: never sent.
        max_megapixels: Some(4.0),
        loras: Some(vec![Lora {
            file: "dmd2_lora_f16.ckpt".into(),
            weight: 1.0,
        }]),
        extra: Map::from_iter([("sharpness".to_owned(), Value::from(2))]),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_is_valid_json_with_the_image_in_base64() {
        let settings = json!({"prompt": "a watercolor painting", "seed": 3});
        let Value::Object(settings) = settings else {
            unreachable!()
        };
        let image: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sent = body(&settings, &image);
        let parsed: Value = serde_json::from_slice(&sent).unwrap();
        let encoded = parsed["init_images"][0].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, image);
        assert_eq!(parsed["prompt"], "a watercolor painting");
        let empty = body(&Map::new(), b"x");
        assert_eq!(
            std::str::from_utf8(&empty).unwrap(),
            r#"{"init_images":["eA=="]}"#
        );
    }

    #[test]
    fn expected_images_counts_batches() {
        let mut settings = Settings::default();
        assert_eq!(expected_images(&settings), 1);
        settings.batch_count = Some(3);
        settings.extra.insert("batch_size".into(), Value::from(2));
        assert_eq!(expected_images(&settings), 6);
    }

    #[test]
    fn an_empty_profile_sends_only_size_and_seed() {
        let sent = with_seed_size_and_extra(Map::new(), &Settings::default(), (640, 448), 1);
        assert_eq!(
            Value::Object(sent),
            json!({"seed": 1, "width": 640, "height": 448})
        );
    }
}
