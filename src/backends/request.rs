//! Building an img2img request: the profile's settings in the server's dialect, plus the
//! init image, in one pass.
//!
//! Both dialects take Draw Things' names from the profile. With `api = "a1111"` they are
//! translated (strength -> denoising_strength, guidance_scale -> cfg_scale, sampler ->
//! sampler_name, batch_count -> n_iter, model -> override_settings.sd_model_checkpoint,
//! loras -> `<lora:NAME:WEIGHT>` in the prompt). A key the profile leaves out is not sent,
//! except width/height (the init image must match them) and seed (always recorded).

use crate::config::{Api, Lora, Settings};
use crate::image::parameters::lora_name;
use base64::Engine;
use serde_json::{Map, Value, json};

/// The settings of one request, without the image: what is sent, and what is logged.
pub type RequestSettings = Map<String, Value>;

/// The model a request names, in either dialect (`model`, or A1111's
/// `override_settings.sd_model_checkpoint`); `None`: the server's current one.
pub fn model_of(settings: &RequestSettings) -> Option<&str> {
    settings
        .get("model")
        .or_else(|| {
            settings
                .get("override_settings")?
                .get("sd_model_checkpoint")
        })
        .and_then(Value::as_str)
}

/// The settings to send for `settings` at `size` with `seed`, in `api`'s dialect.
pub fn settings_for(api: Api, settings: &Settings, size: (u32, u32), seed: u32) -> RequestSettings {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    };
    let steps = settings.steps.map(Value::from);
    let negative = settings.negative_prompt.clone().map(Value::from);
    match api {
        Api::DrawThings => {
            put("prompt", settings.prompt.clone().map(Value::from));
            put("negative_prompt", negative);
            put("steps", steps);
            put("strength", settings.strength.map(Value::from));
            put("guidance_scale", settings.guidance_scale.map(Value::from));
            put("sampler", settings.sampler.clone().map(Value::from));
            put("model", settings.model.clone().map(Value::from));
            put("batch_count", settings.batch_count.map(Value::from));
            put(
                "loras",
                settings
                    .loras
                    .as_ref()
                    .map(|loras| draw_things_loras(loras)),
            );
        }
        Api::A1111 => {
            put("prompt", a1111_prompt(settings));
            put("negative_prompt", negative);
            put("steps", steps);
            put("denoising_strength", settings.strength.map(Value::from));
            put("cfg_scale", settings.guidance_scale.map(Value::from));
            put("sampler_name", settings.sampler.clone().map(Value::from));
            put("n_iter", settings.batch_count.map(Value::from));
            put(
                "override_settings",
                settings
                    .model
                    .as_ref()
                    .map(|model| json!({ "sd_model_checkpoint": model })),
            );
        }
    }
    put("seed", Some(Value::from(seed)));
    put("width", Some(Value::from(size.0)));
    put("height", Some(Value::from(size.1)));
    for (key, value) in &settings.extra {
        out.insert(key.clone(), value.clone());
    }
    out
}

/// The seed to send: the profile's, or a random one when it says -1 or nothing.
pub fn pick_seed(settings: &Settings) -> u32 {
    match settings.seed {
        Some(seed) if seed >= 0 => u32::try_from(seed).unwrap_or(u32::MAX),
        _ => fastrand::u32(..),
    }
}

/// How many images the server must send back at least.
pub fn expected_images(settings: &Settings) -> usize {
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
pub fn body(settings: &RequestSettings, image: &[u8]) -> Vec<u8> {
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

fn draw_things_loras(loras: &[Lora]) -> Value {
    Value::Array(
        loras
            .iter()
            .map(|lora| json!({ "file": lora.file, "weight": lora.weight }))
            .collect(),
    )
}

/// A1111 takes LoRAs as `<lora:NAME:WEIGHT>` in the prompt, NAME without the extension.
fn a1111_prompt(settings: &Settings) -> Option<Value> {
    let tags: Vec<String> = settings
        .loras
        .iter()
        .flatten()
        .map(|lora| format!("<lora:{}:{}>", lora_name(&lora.file), lora.weight))
        .collect();
    match (&settings.prompt, tags.is_empty()) {
        (prompt, true) => prompt.clone().map(Value::from),
        (Some(prompt), false) => Some(Value::from(format!("{prompt} {}", tags.join(" ")))),
        (None, false) => Some(Value::from(tags.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watercolor() -> Settings {
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
        }
    }

    #[test]
    fn draw_things_keys_are_the_profile_keys() {
        let sent = settings_for(Api::DrawThings, &watercolor(), (1024, 768), 42);
        assert_eq!(
            Value::Object(sent),
            json!({
                "prompt": "a watercolor painting", "negative_prompt": "blurry", "steps": 4,
                "strength": 0.6, "guidance_scale": 7.0, "sampler": "DPM++ 2M Karras",
                "model": "sd_xl_base_1.0_f16.ckpt", "batch_count": 2,
                "loras": [{"file": "dmd2_lora_f16.ckpt", "weight": 1.0}],
                "seed": 42, "width": 1024, "height": 768, "sharpness": 2
            })
        );
    }

    #[test]
    fn a1111_keys_are_translated() {
        let sent = settings_for(Api::A1111, &watercolor(), (512, 512), 7);
        assert_eq!(
            Value::Object(sent),
            json!({
                "prompt": "a watercolor painting <lora:dmd2_lora_f16:1>", "negative_prompt": "blurry",
                "steps": 4, "denoising_strength": 0.6, "cfg_scale": 7.0,
                "sampler_name": "DPM++ 2M Karras", "n_iter": 2,
                "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0_f16.ckpt"},
                "seed": 7, "width": 512, "height": 512, "sharpness": 2
            })
        );
    }

    #[test]
    fn the_model_is_read_back_in_either_dialect() {
        for api in [Api::DrawThings, Api::A1111] {
            let sent = settings_for(api, &watercolor(), (512, 512), 7);
            assert_eq!(model_of(&sent), Some("sd_xl_base_1.0_f16.ckpt"), "{api:?}");
            let sent = settings_for(api, &Settings::default(), (512, 512), 7);
            assert_eq!(model_of(&sent), None);
        }
    }

    #[test]
    fn an_empty_profile_sends_only_size_and_seed() {
        for api in [Api::DrawThings, Api::A1111] {
            let sent = settings_for(api, &Settings::default(), (640, 448), 1);
            assert_eq!(
                Value::Object(sent),
                json!({"seed": 1, "width": 640, "height": 448})
            );
        }
    }

    #[test]
    fn seeds_are_kept_or_picked() {
        let mut settings = Settings {
            seed: Some(4_294_967_295),
            ..Settings::default()
        };
        assert_eq!(pick_seed(&settings), u32::MAX);
        settings.seed = Some(-1);
        let picks: std::collections::HashSet<u32> = (0..20).map(|_| pick_seed(&settings)).collect();
        assert!(picks.len() > 1, "random seeds should differ");
    }

    #[test]
    fn the_body_is_valid_json_with_the_image_in_base64() {
        let settings = settings_for(Api::DrawThings, &watercolor(), (64, 64), 3);
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
}
