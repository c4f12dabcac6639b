//! One job in the words of Draw Things' gRPC API: the recorded request settings (the profile's
//! names, as over HTTP) turned into the generation configuration, the init picture into the
//! request message with its raw f16 tensor, and an answer's tensors back into PNGs.

use ::image::DynamicImage;
use bytes::Bytes;
use prost::Message;
use serde_json::{Map, Value};

use super::client::{Framed, Part};
use super::config::{self, ConfigError, GenerationConfig, Lora, LoraMode};
use super::messages::{DeviceType, ImageGenerationRequest};
use super::tensor::{self, TensorToSend};
use crate::image;

/// The request keys drawdrop fills from the profile; every other key is an `[extra]` field
/// of the configuration.
const PROFILE_KEYS: &[&str] = &[
    "prompt",
    "negative_prompt",
    "steps",
    "strength",
    "guidance_scale",
    "sampler",
    "model",
    "batch_count",
    "loras",
    "seed",
    "width",
    "height",
    "batch_size",
];

/// The configuration for the recorded request `settings` (as [`super::DrawThingsGrpc`]
/// records them), generating with `seed`. `batch_count` is not sent: the server ignores it,
/// drawdrop asks once per image.
pub(super) fn configuration(
    settings: &Map<String, Value>,
    seed: u32,
) -> Result<GenerationConfig, String> {
    let number = |key: &str| settings.get(key).and_then(Value::as_f64);
    let whole = |key: &str| {
        settings
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    let text = |key: &str| settings.get(key).and_then(Value::as_str).map(str::to_owned);
    let loras = settings
        .get("loras")
        .and_then(Value::as_array)
        .map(|loras| {
            loras
                .iter()
                .map(|lora| Lora {
                    file: lora["file"].as_str().unwrap_or_default().to_owned(),
                    weight: lora["weight"].as_f64().unwrap_or(1.0) as f32,
                    mode: LoraMode::All,
                })
                .collect()
        })
        .unwrap_or_default();
    let extra = settings
        .iter()
        .filter(|(key, _)| !PROFILE_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let generation = GenerationConfig {
        width: whole("width").unwrap_or(0),
        height: whole("height").unwrap_or(0),
        seed,
        steps: whole("steps"),
        guidance_scale: number("guidance_scale").map(|value| value as f32),
        strength: number("strength").map(|value| value as f32),
        model: text("model"),
        sampler: text("sampler"),
        batch_count: None,
        batch_size: whole("batch_size"),
        loras,
        extra,
    };
    // Written once here so that a wrong `[extra]` key or sampler fails the file now.
    config::encode(&generation).map_err(|problem| describe(&problem))?;
    Ok(generation)
}

/// A configuration problem as the file's failure (or `check`) says it.
pub(super) fn describe(problem: &ConfigError) -> String {
    match problem {
        ConfigError::UnknownField { .. }
        | ConfigError::NotSettable { .. }
        | ConfigError::WrongValue { .. } => format!("[extra]: {problem}"),
        _ => problem.to_string(),
    }
}

/// The `[extra]` problems of recorded request `settings`, for `check`.
pub(super) fn extra_problems(settings: &Map<String, Value>) -> Vec<String> {
    settings
        .iter()
        .filter(|(key, _)| !PROFILE_KEYS.contains(&key.as_str()))
        .filter_map(|(key, value)| config::check_extra(key, value).err())
        .map(|problem| describe(&problem))
        .collect()
}

/// The seed the recorded request `settings` carry (0 when they carry none).
fn recorded_seed(settings: &Map<String, Value>) -> u32 {
    settings
        .get("seed")
        .and_then(Value::as_u64)
        .and_then(|seed| u32::try_from(seed).ok())
        .unwrap_or(0)
}

/// The init picture's 8-bit pixels, as a job keeps them between its encoding and its
/// sending ([`request`] makes the tensor of them as it goes): RGB, or RGBA whose alpha is not
/// sent, at the configured size. The configuration is made once here, so that a wrong
/// `[extra]` key fails the file now.
pub(super) fn init_pixels(
    settings: &Map<String, Value>,
    picture: DynamicImage,
) -> Result<Bytes, String> {
    let generation = configuration(settings, recorded_seed(settings))?;
    let (width, height) = (picture.width(), picture.height());
    if (width, height) != (generation.width, generation.height) {
        return Err(format!(
            "the picture to send is {width}x{height}, not the configured {}x{}",
            generation.width, generation.height
        ));
    }
    Ok(Bytes::from(match picture {
        DynamicImage::ImageRgb8(rgb) => rgb.into_raw(),
        DynamicImage::ImageRgba8(rgba) => rgba.into_raw(),
        other => other.to_rgb8().into_raw(),
    }))
}

/// The framed request for image `index` (from 0) of a job: the init picture (`pixels`, as
/// [`init_pixels`] keeps them) as a raw f16 tensor with `scaleFactor` 1, made as it is sent,
/// the prompts, the configuration with the recorded seed moved on by `index` (as the app
/// does for the images of a batch), the shared secret, and `chunked`.
pub(super) fn request(
    settings: &Map<String, Value>,
    pixels: &Bytes,
    shared_secret: Option<&str>,
    index: u32,
) -> Result<Framed, String> {
    let generation = configuration(settings, recorded_seed(settings).wrapping_add(index))?;
    let tensor = TensorToSend::new(pixels.clone(), generation.width, generation.height)
        .map_err(|problem| problem.to_string())?;
    let text = |key: &str| {
        settings
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let rest = ImageGenerationRequest {
        image: None,
        scale_factor: 1,
        prompt: text("prompt"),
        negative_prompt: text("negative_prompt"),
        configuration: config::encode(&generation).map_err(|problem| describe(&problem))?,
        user: "drawdrop".to_owned(),
        device: DeviceType::Laptop as i32,
        shared_secret: shared_secret.map(str::to_owned),
        chunked: true,
        ..ImageGenerationRequest::default()
    };
    // The image is field 1, and protobuf writes fields in their numbers' order: it comes
    // first, and the rest follows as it encodes alone.
    let field = 1 + prost::encoding::encoded_len_varint(tensor.len() as u64);
    let mut head = Framed::head(field + tensor.len() + rest.encoded_len()).to_vec();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut head);
    prost::encoding::encode_varint(tensor.len() as u64, &mut head);
    Ok(Framed::from_parts(vec![
        Part::Bytes(Bytes::from(head)),
        Part::Tensor(tensor),
        Part::Bytes(Bytes::from(rest.encode_to_vec())),
    ]))
}

/// An answer's picture as a PNG; `number` counts from 1, for the message.
pub(super) fn png_of(picture: tensor::Rgb8, number: usize) -> Result<Vec<u8>, String> {
    image::rgb_png(&picture.pixels, (picture.width, picture.height))
        .map_err(|problem| format!("image {number} of the answer cannot be written: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::drawthings_grpc::config::ConfigReader;
    use crate::backends::drawthings_grpc::config::FieldValue;
    use serde_json::json;

    fn recorded() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "prompt": "a watercolor", "negative_prompt": "blurry", "steps": 4,
            "strength": 0.6, "guidance_scale": 7.0, "sampler": "DPM++ 2M Karras",
            "model": "sd_xl_base_1.0_f16.ckpt", "batch_count": 2,
            "loras": [{"file": "dmd2_lora_f16.ckpt", "weight": 0.5}],
            "seed": 42, "width": 1024, "height": 768, "sharpness": 2
        }) else {
            unreachable!()
        };
        map
    }

    #[test]
    fn the_profile_keys_fill_the_configuration() {
        let generation = configuration(&recorded(), 42).unwrap();
        let bytes = config::encode(&generation).unwrap();
        let reader = ConfigReader::new(&bytes).unwrap();
        assert_eq!(
            reader.get("start_width").unwrap(),
            Some(FieldValue::UShort(16))
        );
        assert_eq!(
            reader.get("start_height").unwrap(),
            Some(FieldValue::UShort(12))
        );
        assert_eq!(reader.get("seed").unwrap(), Some(FieldValue::UInt(42)));
        assert_eq!(reader.get("sampler").unwrap(), Some(FieldValue::UByte(0)));
        assert_eq!(reader.get("batch_count").unwrap(), None);
        assert_eq!(
            reader.get("sharpness").unwrap(),
            Some(FieldValue::Float(2.0))
        );
        assert_eq!(reader.loras()[0].file, "dmd2_lora_f16.ckpt");
        assert_eq!(reader.loras()[0].weight, 0.5);
    }

    #[test]
    fn a_wrong_extra_key_is_named_with_the_reason() {
        let mut settings = recorded();
        settings.insert("hires_fixx".into(), json!(true));
        settings.insert("seed_mode".into(), json!("Sideways"));
        let problem = configuration(&settings, 1).unwrap_err();
        assert!(
            problem.starts_with("[extra]: `hires_fixx` is not a field"),
            "{problem}"
        );
        let problems = extra_problems(&settings);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].contains("`seed_mode` must be one of Legacy"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_request_made_as_it_goes_is_the_message_protobuf_would_write() {
        let mut settings = recorded();
        settings.insert("width".into(), json!(128));
        settings.insert("height".into(), json!(64));
        let rgb = crate::image::test_png::gradient(128, 64);
        let rgba = ::image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8();
        let expected = |secret: Option<&str>, seed: u32| {
            let tensor = tensor::encode_rgb8(&tensor::Rgb8 {
                width: 128,
                height: 64,
                pixels: rgb.as_raw().clone(),
            })
            .unwrap();
            ImageGenerationRequest {
                image: Some(Bytes::from(tensor)),
                scale_factor: 1,
                prompt: "a watercolor".into(),
                negative_prompt: "blurry".into(),
                configuration: config::encode(&configuration(&settings, seed).unwrap()).unwrap(),
                user: "drawdrop".into(),
                device: DeviceType::Laptop as i32,
                shared_secret: secret.map(str::to_owned),
                chunked: true,
                ..Default::default()
            }
        };
        let pictures = [
            DynamicImage::ImageRgb8(rgb.clone()),
            DynamicImage::ImageRgba8(rgba),
            DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16()),
        ];
        for picture in pictures {
            let pixels = init_pixels(&settings, picture).unwrap();
            for secret in [None, Some("s3cret")] {
                for index in [0, 1] {
                    let framed = request(&settings, &pixels, secret, index).unwrap();
                    let sent = framed.to_vec();
                    assert_eq!(framed.message_len(), sent.len() - Framed::HEAD_LEN);
                    // A later image of the batch: the same but for its seed moved on.
                    assert_eq!(sent, Framed::of(&expected(secret, 42 + index)).to_vec());
                }
            }
        }
        let wrong_size = DynamicImage::ImageRgb8(crate::image::test_png::gradient(64, 64));
        assert!(
            init_pixels(&settings, wrong_size)
                .unwrap_err()
                .contains("is 64x64, not the configured 128x64")
        );
    }
}
