//! Draw Things' HTTP API as the app speaks it: its parameters (keys, aliases, titles, types
//! and ranges, in the app's decoding order), its samplers and seed modes, its current
//! settings (`GET /`), and its strict decoding of a request with Swift's error texts.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Value, json};

use super::generation::{Job, MAX_IMAGES, Route, generation};
use super::http::Response;
use super::png::{InitImage, base64_all, decode_init_image};
use super::{Recorded, Reply, Shared};

/// The model Draw Things reports as its current one (`GET /`).
pub const DT_DEFAULT_MODEL: &str = "sd_xl_base_1.0_f16.ckpt";
/// The samplers Draw Things accepts (`sampler` and its aliases), in the app's order.
pub const DT_SAMPLERS: &[&str] = &[
    "DPM++ 2M Karras",
    "Euler a",
    "DDIM",
    "PLMS",
    "DPM++ SDE Karras",
    "UniPC",
    "LCM",
    "Euler A Substep",
    "DPM++ SDE Substep",
    "TCD",
    "Euler A Trailing",
    "DPM++ SDE Trailing",
    "DPM++ 2M AYS",
    "Euler A AYS",
    "DPM++ SDE AYS",
    "DPM++ 2M Trailing",
    "DDIM Trailing",
    "UniPC Trailing",
    "UniPC AYS",
    "TCD Trailing",
];
/// The seed modes Draw Things accepts (`seed_mode`).
const DT_SEED_MODES: &[&str] = &[
    "Legacy",
    "Torch CPU Compatible",
    "Scale Alike",
    "NVIDIA GPU Compatible",
];

pub(super) async fn route_drawthings(shared: &Arc<Shared>, rec: &Recorded, number: usize) -> Reply {
    match (rec.method.as_str(), rec.route()) {
        ("POST", "/sdapi/v1/img2img") => generation(shared, rec, Route::Img2Img, number).await,
        ("POST", "/sdapi/v1/txt2img") => generation(shared, rec, Route::Txt2Img, number).await,
        ("GET", "/") | ("GET", "/sdapi/v1/options") => Reply::Send(dt_settings(shared)),
        _ => Reply::Send(Response::empty(404)),
    }
}

/// A Draw Things error: always `{"error":"HTTPException","detail":...,"body":"","errors":""}`.
pub(super) fn dt_error(status: u16, detail: &str) -> Response {
    let body = swift_object(&[
        ("error", json!("HTTPException")),
        ("detail", json!(detail)),
        ("body", json!("")),
        ("errors", json!("")),
    ]);
    Response::json(status, body.into_bytes())
}

/// A Draw Things success: `{"images":[...]}` as Swift's JSONEncoder writes it (`\/`).
pub(super) fn dt_success(images: &[String]) -> Response {
    let body = swift_object(&[("images", json!(images))]);
    Response::json(200, body.into_bytes())
}

/// The type of a Draw Things parameter, with its range.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int(i64, i64),
    Double(f64, f64),
    Bool,
    Str,
    Enum(&'static [&'static str]),
    Loras,
    Controls,
}

/// One Draw Things parameter: its JSON key (the command-line flag with `_`), its aliases,
/// the title its errors use and its type.
struct Param {
    key: &'static str,
    aliases: &'static [&'static str],
    title: &'static str,
    kind: Kind,
}

const fn p(key: &'static str, title: &'static str, kind: Kind) -> Param {
    Param {
        key,
        aliases: &[],
        title,
        kind,
    }
}

const fn pa(
    key: &'static str,
    aliases: &'static [&'static str],
    title: &'static str,
    kind: Kind,
) -> Param {
    Param {
        key,
        aliases,
        title,
        kind,
    }
}

/// Draw Things' parameters in the order the app decodes them (Parameters.allParameters()).
/// The titles are the app's English titles as best known.
#[rustfmt::skip]
const DT_PARAMS: &[Param] = &[
    p("model", "model", Kind::Str),
    p("width", "Width", Kind::Int(128, 8192)),
    p("height", "Height", Kind::Int(128, 8192)),
    p("seed", "Seed", Kind::Int(-1, 4_294_967_295)),
    pa("guidance_scale", &["cfg_scale"], "Text Guidance", Kind::Double(0.0, 50.0)),
    p("seed_mode", "Seed Mode", Kind::Enum(DT_SEED_MODES)),
    p("steps", "Steps", Kind::Int(1, 150)),
    pa("batch_count", &["n_iter"], "Batch Count", Kind::Int(1, 100)),
    p("batch_size", "Batch Size", Kind::Int(1, 4)),
    pa("sampler", &["sampler_name", "sampler_index"], "Sampler", Kind::Enum(DT_SAMPLERS)),
    pa("strength", &["denoising_strength"], "Strength", Kind::Double(0.0, 1.0)),
    p("clip_skip", "CLIP Skip", Kind::Int(1, 23)),
    p("image_guidance", "Image Guidance", Kind::Double(0.0, 25.0)),
    p("mask_blur", "Mask Blur", Kind::Double(0.0, 25.0)),
    p("mask_blur_outset", "Mask Blur Outset", Kind::Int(-100, 1000)),
    p("sharpness", "Sharpness", Kind::Double(0.0, 30.0)),
    p("clip_weight", "CLIP Weight", Kind::Double(0.0, 1.0)),
    p("negative_prompt_for_image_prior", "Negative Prompt for Image Prior", Kind::Bool),
    p("image_prior_steps", "Image Prior Steps", Kind::Int(3, 60)),
    p("prompt", "Prompt", Kind::Str),
    p("negative_prompt", "Negative Prompt", Kind::Str),
    pa("hires_fix", &["enable_hr"], "High Resolution Fix", Kind::Bool),
    pa("hires_fix_width", &["firstphase_width"], "First Pass Width", Kind::Int(128, 2048)),
    pa("hires_fix_height", &["firstphase_height"], "First Pass Height", Kind::Int(128, 2048)),
    p("hires_fix_strength", "Second Pass Strength", Kind::Double(0.0, 1.0)),
    p("tiled_decoding", "Tiled Decoding", Kind::Bool),
    p("decoding_tile_width", "Decoding Tile Width", Kind::Int(128, 2048)),
    p("decoding_tile_height", "Decoding Tile Height", Kind::Int(128, 2048)),
    p("decoding_tile_overlap", "Decoding Tile Overlap", Kind::Int(64, 1024)),
    p("original_width", "Original Width", Kind::Int(128, 2048)),
    p("original_height", "Original Height", Kind::Int(128, 2048)),
    p("crop_top", "Crop Top", Kind::Int(0, 1024)),
    p("crop_left", "Crop Left", Kind::Int(0, 1024)),
    p("target_width", "Target Width", Kind::Int(128, 2048)),
    p("target_height", "Target Height", Kind::Int(128, 2048)),
    p("negative_original_width", "Negative Original Width", Kind::Int(128, 2048)),
    p("negative_original_height", "Negative Original Height", Kind::Int(128, 2048)),
    p("aesthetic_score", "Aesthetic Score", Kind::Double(0.0, 10.0)),
    p("negative_aesthetic_score", "Negative Aesthetic Score", Kind::Double(0.0, 10.0)),
    p("zero_negative_prompt", "Zero Negative Prompt", Kind::Bool),
    p("refiner_model", "refiner_model", Kind::Str),
    p("refiner_start", "Refiner Start", Kind::Double(0.0, 1.0)),
    p("num_frames", "Number of Frames", Kind::Int(1, 201)),
    p("fps", "FPS", Kind::Int(1, 30)),
    p("motion_scale", "Motion Scale", Kind::Int(0, 255)),
    p("guiding_frame_noise", "Guiding Frame Noise", Kind::Double(0.0, 1.0)),
    p("start_frame_guidance", "Start Frame Guidance", Kind::Double(0.0, 25.0)),
    p("shift", "Shift", Kind::Double(0.1, 8.0)),
    p("stage_2_steps", "Stage 2 Steps", Kind::Int(1, 150)),
    p("stage_2_guidance", "Stage 2 Guidance", Kind::Double(0.0, 25.0)),
    p("stage_2_shift", "Stage 2 Shift", Kind::Double(0.1, 5.0)),
    p("loras", "loras", Kind::Loras),
    p("controls", "controls", Kind::Controls),
    p("stochastic_sampling_gamma", "Strategic Stochastic Sampling", Kind::Double(0.0, 1.0)),
    p("preserve_original_after_inpaint", "Preserve Original After Inpaint", Kind::Bool),
    p("tiled_diffusion", "Tiled Diffusion", Kind::Bool),
    p("diffusion_tile_width", "Diffusion Tile Width", Kind::Int(128, 2048)),
    p("diffusion_tile_height", "Diffusion Tile Height", Kind::Int(128, 2048)),
    p("diffusion_tile_overlap", "Diffusion Tile Overlap", Kind::Int(64, 1024)),
    p("upscaler", "upscaler", Kind::Str),
    pa("upscaler_scale", &["upscaler_scale_factor"], "Upscaler Scale Factor", Kind::Int(0, 4)),
    p("t5_text_encoder_decoding", "T5 Text Encoder", Kind::Bool),
    p("separate_clip_l", "Separate CLIP-L", Kind::Bool),
    p("clip_l_text", "clip_l_text", Kind::Str),
    p("separate_open_clip_g", "Separate OpenCLIP-G", Kind::Bool),
    p("open_clip_g_text", "open_clip_g_text", Kind::Str),
    p("speed_up_with_guidance_embed", "Speed Up with Guidance Embed", Kind::Bool),
    p("guidance_embed", "Guidance Embed", Kind::Double(0.0, 25.0)),
    p("resolution_dependent_shift", "Resolution Dependent Shift", Kind::Bool),
    p("tea_cache_start", "TeaCache Start", Kind::Int(0, 1000)),
    p("tea_cache_end", "TeaCache End", Kind::Int(0, 1000)),
    p("tea_cache_threshold", "TeaCache Threshold", Kind::Double(0.0, 1.0)),
    p("tea_cache_max_skip_steps", "TeaCache Max Skip Steps", Kind::Int(1, 1000)),
    p("tea_cache", "TeaCache", Kind::Bool),
    p("separate_t5", "Separate T5", Kind::Bool),
    p("t5_text", "t5_text", Kind::Str),
    p("causal_inference", "Causal Inference", Kind::Int(0, 1000)),
];

/// Every key Draw Things accepts in a request body (parameters, aliases, `init_images`,
/// `restore_faces`).
pub fn drawthings_known_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = DT_PARAMS
        .iter()
        .flat_map(|p| std::iter::once(p.key).chain(p.aliases.iter().copied()))
        .collect();
    keys.extend(["init_images", "restore_faces"]);
    keys
}

/// The app's current value of a parameter (what a request that leaves it out gets).
fn dt_current(param: &Param, app_size: (u32, u32)) -> Value {
    match param.key {
        "model" => json!(DT_DEFAULT_MODEL),
        "width" => json!(app_size.0),
        "height" => json!(app_size.1),
        "seed" => json!(0),
        "guidance_scale" => json!(4.5),
        "seed_mode" => json!("Scale Alike"),
        "steps" => json!(20),
        "strength" | "clip_weight" | "start_frame_guidance" | "shift" => json!(1.0),
        "stage_2_guidance" | "stage_2_shift" => json!(1.0),
        "image_guidance" | "mask_blur" => json!(1.5),
        "image_prior_steps" => json!(5),
        "prompt" | "negative_prompt" => json!(""),
        "hires_fix_width" | "hires_fix_height" => json!(448),
        "hires_fix_strength" => json!(0.7),
        "decoding_tile_width" | "decoding_tile_height" => json!(640),
        "decoding_tile_overlap" | "diffusion_tile_overlap" => json!(128),
        "diffusion_tile_width" | "diffusion_tile_height" => json!(1024),
        "original_width" | "target_width" | "negative_original_width" => json!(app_size.0),
        "original_height" | "target_height" | "negative_original_height" => json!(app_size.1),
        "aesthetic_score" => json!(6.0),
        "negative_aesthetic_score" => json!(2.5),
        "refiner_start" => json!(0.85),
        "num_frames" => json!(14),
        "fps" => json!(5),
        "motion_scale" => json!(127),
        "guiding_frame_noise" => json!(0.02),
        "stage_2_steps" => json!(10),
        "stochastic_sampling_gamma" => json!(0.3),
        "guidance_embed" => json!(3.5),
        "tea_cache_start" => json!(5),
        "tea_cache_end" => json!(2),
        "tea_cache_threshold" => json!(0.06),
        "tea_cache_max_skip_steps" => json!(3),
        "t5_text_encoder_decoding" | "resolution_dependent_shift" => json!(true),
        "preserve_original_after_inpaint" => json!(true),
        _ => match param.kind {
            Kind::Int(low, high) => json!(0i64.clamp(low, high)),
            Kind::Double(low, high) => json!(0f64.clamp(low, high)),
            Kind::Bool => json!(false),
            Kind::Str => Value::Null,
            Kind::Enum(options) => json!(options[0]),
            Kind::Loras | Kind::Controls => json!([]),
        },
    }
}

/// `GET /` and `GET /sdapi/v1/options`: the app's current settings, in the app's key order.
fn dt_settings(shared: &Shared) -> Response {
    let app_size = shared.state().app_size;
    let pairs: Vec<(&str, Value)> = DT_PARAMS
        .iter()
        .map(|param| (param.key, dt_current(param, app_size)))
        .collect();
    Response::json(200, swift_object(&pairs).into_bytes())
}

/// A Draw Things request once decoded and validated key by key.
struct DtRequest {
    /// Every parameter's value: the request's, else the app's current one.
    values: Vec<(&'static str, Value)>,
    /// `init_images`, decoded, when sent.
    images: Option<Vec<InitImage>>,
}

impl DtRequest {
    fn value(&self, key: &str) -> &Value {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&Value::Null, |(_, v)| v)
    }

    fn int(&self, key: &str) -> i64 {
        self.value(key).as_i64().unwrap_or(0)
    }
}

impl Job {
    /// Draw Things' img2img/txt2img handler: the answer, or the detail of a 422.
    pub(super) fn drawthings(&self) -> Result<Response, String> {
        let (app_size, models) = {
            let state = self.shared.state();
            (state.app_size, state.models.clone())
        };
        let request = dt_decode(&self.body, app_size)?;
        let width = request.int("width");
        let height = request.int("height");
        let single = match (&request.images, self.route) {
            (Some(images), Route::Img2Img) if images.len() == 1 => Some(&images[0]),
            (Some(_), Route::Txt2Img) => {
                return Err("init_images is not supported for text-to-image".into());
            }
            _ => None,
        };
        if let Some(image) = single {
            if i64::from(image.height) != height {
                return Err(format!(
                    "init_images height doesn't match {} from the parameter {height}",
                    image.height
                ));
            }
            if i64::from(image.width) != width {
                return Err(format!(
                    "init_images width doesn't match {} from the parameter {width}",
                    image.width
                ));
            }
        }
        if let Some(model) = request.value("model").as_str()
            && !models.is_empty()
            && !models.iter().any(|m| m == model)
        {
            return Err("Unrecognized model name".into());
        }
        let count = (request.int("batch_count") * request.int("batch_size")) as usize;
        // The app generates at whole multiples of 64.
        let size = ((width / 64 * 64) as u32, (height / 64 * 64) as u32);
        let images = self.images(single, size, count.clamp(1, MAX_IMAGES), |_| Vec::new());
        Ok(dt_success(&base64_all(&images)))
    }
}

/// Decodes a Draw Things request body the way the app's `RequestBody` does, in its order:
/// `restore_faces`, `init_images`, every parameter (alias clash, type, range), then any key
/// left over. Returns the detail of the first error.
fn dt_decode(body: &[u8], app_size: (u32, u32)) -> Result<DtRequest, String> {
    let object = match serde_json::from_slice::<OrderedObject>(body) {
        Ok(object) => object.0,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(swift_type_mismatch(
                "Dictionary<String, Any>",
                None,
                "a different type",
            ));
        }
        Err(_) => {
            return Err("dataCorrupted(Swift.DecodingError.Context(codingPath: [], \
                 debugDescription: \"The given data was not valid JSON.\", underlyingError: nil))"
                .into());
        }
    };
    let get = |key: &str| object.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    if let Some(value) = get("restore_faces")
        && !(value.is_boolean() || value.is_null())
    {
        return Err(swift_type_mismatch(
            "Bool",
            Some("restore_faces"),
            found(value),
        ));
    }
    let images = match get("init_images") {
        Some(value) => Some(dt_init_images(value)?),
        None => None,
    };
    let mut values = Vec::with_capacity(DT_PARAMS.len());
    let mut decoded: Vec<&str> = vec!["restore_faces", "init_images"];
    for param in DT_PARAMS {
        let names: Vec<&str> = std::iter::once(param.key)
            .chain(param.aliases.iter().copied())
            .collect();
        let present: Vec<&str> = names.iter().copied().filter(|n| get(n).is_some()).collect();
        let current = dt_current(param, app_size);
        let value = match present.as_slice() {
            [] => current,
            [key] => {
                decoded.push(key);
                dt_decode_value(param, key, get(key).unwrap_or(&Value::Null), current)?
            }
            _ => {
                return Err(format!(
                    "More than one key for {} specified (must only specify one of {})",
                    param.title,
                    swift_array(&names)
                ));
            }
        };
        values.push((param.key, value));
    }
    let mut remaining: Vec<&str> = Vec::new();
    for (key, _) in &object {
        if !decoded.contains(&key.as_str()) && !remaining.contains(&key.as_str()) {
            remaining.push(key);
        }
    }
    if !remaining.is_empty() {
        return Err(format!("Unrecognized keys: {}", swift_array(&remaining)));
    }
    Ok(DtRequest { values, images })
}

/// Decodes `init_images`: an array of plain base64 strings, each an image.
fn dt_init_images(value: &Value) -> Result<Vec<InitImage>, String> {
    let Some(items) = value.as_array() else {
        return Err(swift_type_mismatch(
            "Array<Data>",
            Some("init_images"),
            found(value),
        ));
    };
    items
        .iter()
        .map(|item| {
            let Some(text) = item.as_str() else {
                return Err(swift_type_mismatch(
                    "Data",
                    Some("init_images"),
                    found(item),
                ));
            };
            decode_init_image(text)
                .map_err(|()| "Data in init_images did not represent a valid image".to_string())
        })
        .collect()
}

/// Decodes one parameter's JSON value, checks its type and range; `null` keeps `current`.
fn dt_decode_value(
    param: &Param,
    key: &str,
    value: &Value,
    current: Value,
) -> Result<Value, String> {
    if value.is_null() {
        return Ok(match param.kind {
            Kind::Str => Value::Null,
            Kind::Enum(_) => return Err(swift_value_not_found("String", key)),
            _ => current,
        });
    }
    match param.kind {
        Kind::Int(low, high) => {
            let number = swift_int(value, key)?;
            if !(low..=high).contains(&number) {
                return Err(format!(
                    "Value for {} must be between {low} and {high}, inclusive (was {number})",
                    param.title
                ));
            }
            Ok(json!(number))
        }
        Kind::Double(low, high) => {
            let Some(number) = value.as_f64() else {
                return Err(swift_type_mismatch("Double", Some(key), found(value)));
            };
            if !(low..=high).contains(&number) {
                return Err(format!(
                    "Value for {} must be between {} and {}, inclusive (was {})",
                    param.title,
                    swift_double(low),
                    swift_double(high),
                    swift_double(number)
                ));
            }
            Ok(json!(number))
        }
        Kind::Bool if value.is_boolean() => Ok(value.clone()),
        Kind::Bool => Err(swift_type_mismatch("Bool", Some(key), found(value))),
        Kind::Str if value.is_string() => Ok(value.clone()),
        Kind::Str => Err(swift_type_mismatch("String", Some(key), found(value))),
        Kind::Enum(options) => {
            let Some(name) = value.as_str() else {
                return Err(swift_type_mismatch("String", Some(key), found(value)));
            };
            if options.contains(&name) {
                Ok(value.clone())
            } else {
                Err(format!(
                    "Invalid value for {key} (options: {})",
                    swift_array(options)
                ))
            }
        }
        Kind::Loras => dt_loras(key, value).map(|()| value.clone()),
        Kind::Controls => match value.as_array() {
            Some(items) if items.iter().all(Value::is_object) => Ok(value.clone()),
            _ => Err(swift_type_mismatch(
                "Array<JSControl>",
                Some(key),
                found(value),
            )),
        },
    }
}

/// `loras`: an array of `{"file": String, "weight": Double}` (weight optional).
fn dt_loras(key: &str, value: &Value) -> Result<(), String> {
    let Some(items) = value.as_array() else {
        return Err(swift_type_mismatch(
            "Array<JSLoRA>",
            Some(key),
            found(value),
        ));
    };
    for item in items {
        let Some(lora) = item.as_object() else {
            return Err(swift_type_mismatch("JSLoRA", Some(key), found(item)));
        };
        match lora.get("file") {
            Some(Value::String(_)) => {}
            None | Some(Value::Null) => {
                return Err(format!(
                    "keyNotFound(JSONKey(stringValue: \"file\", intValue: nil), \
                     Swift.DecodingError.Context(codingPath: [JSONKey(stringValue: \"{key}\", \
                     intValue: nil)], debugDescription: \"No value associated with key \
                     \\\"file\\\".\", underlyingError: nil))"
                ));
            }
            Some(other) => return Err(swift_type_mismatch("String", Some("file"), found(other))),
        }
        if let Some(weight) = lora.get("weight")
            && !(weight.is_number() || weight.is_null())
        {
            return Err(swift_type_mismatch("Float", Some("weight"), found(weight)));
        }
    }
    Ok(())
}

/// A JSON number as Swift's `Int` decoding takes it (integral values only).
fn swift_int(value: &Value, key: &str) -> Result<i64, String> {
    if let Some(number) = value.as_i64() {
        return Ok(number);
    }
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 && number.abs() < 9.0e18 => Ok(number as i64),
        Some(_) => Err(format!(
            "dataCorrupted(Swift.DecodingError.Context(codingPath: [JSONKey(stringValue: \
             \"{key}\", intValue: nil)], debugDescription: \"Parsed JSON number <{value}> does \
             not fit in Int.\", underlyingError: nil))"
        )),
        None => Err(swift_type_mismatch("Int", Some(key), found(value))),
    }
}

fn swift_type_mismatch(swift_type: &str, key: Option<&str>, found: &str) -> String {
    let path = key.map_or(String::new(), |k| {
        format!("JSONKey(stringValue: \"{k}\", intValue: nil)")
    });
    format!(
        "typeMismatch(Swift.{swift_type}, Swift.DecodingError.Context(codingPath: [{path}], \
         debugDescription: \"Expected to decode {swift_type} but found {found} instead.\", \
         underlyingError: nil))"
    )
}

fn swift_value_not_found(swift_type: &str, key: &str) -> String {
    format!(
        "valueNotFound(Swift.{swift_type}, Swift.DecodingError.Context(codingPath: \
         [JSONKey(stringValue: \"{key}\", intValue: nil)], debugDescription: \"Expected \
         {swift_type} value but found null instead.\", underlyingError: nil))"
    )
}

/// How Swift's decoder names a JSON value's type in its errors.
fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a dictionary",
    }
}

/// A Swift `Double` as `description` prints it (`1.0`, `0.5`).
fn swift_double(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// A Swift `[String]` as its `description` prints it: `["a", "b"]`.
fn swift_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A JSON object in the given key order, written as Swift's JSONEncoder writes it: compact,
/// with `/` escaped as `\/`.
fn swift_object(pairs: &[(&str, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        swift_string(key, &mut out);
        out.push(':');
        swift_value(value, &mut out);
    }
    out.push('}');
    out
}

fn swift_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => swift_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                swift_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let pairs: Vec<(&str, Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            out.push_str(&swift_object(&pairs));
        }
        other => out.push_str(&other.to_string()),
    }
}

fn swift_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object with its keys in document order (Draw Things reports leftover keys in the
/// order they were sent, which serde_json's map would sort).
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, Value>()? {
                    pairs.push(pair);
                }
                Ok(OrderedObject(pairs))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}
