//! AUTOMATIC1111's API (`--api`, optionally `--api-auth`): basic auth, the options and
//! progress routes, img2img decoded with pydantic's coercions and FastAPI's validation
//! errors, and answers with its `parameters`, `info` and infotext chunks.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::generation::{Job, MAX_IMAGES, Route, generation};
use super::http::Response;
use super::png::{InitImage, base64_all, decode_init_image, strip_data_url};
use super::{Recorded, Reply, Shared, State};

/// The checkpoint A1111 reports as its current one (`GET /sdapi/v1/options`).
pub const A1111_DEFAULT_MODEL: &str = "v1-5-pruned-emaonly.safetensors [6ce0161689]";

pub(super) async fn route_a1111(
    shared: &Arc<Shared>,
    rec: &Recorded,
    auth: Option<&(String, String)>,
    number: usize,
) -> Reply {
    let known = matches!(
        (rec.method.as_str(), rec.route()),
        ("POST", "/sdapi/v1/img2img")
            | ("GET", "/sdapi/v1/options")
            | ("GET", "/sdapi/v1/progress")
    );
    if !known {
        return Reply::Send(Response::json(404, br#"{"detail":"Not Found"}"#.to_vec()));
    }
    if let Some(credentials) = auth
        && let Some(denied) = a1111_check_auth(rec, credentials)
    {
        return Reply::Send(denied);
    }
    if rec.route() == "/sdapi/v1/progress" {
        return Reply::Send(a1111_progress(&shared.state()));
    }
    if rec.method == "GET" {
        return Reply::Send(a1111_options());
    }
    generation(shared, rec, Route::Img2Img, number).await
}

/// `GET /sdapi/v1/progress` as A1111's `ProgressResponse` (modules/api/models.py): the
/// fraction done, the time left relative to it, and the shared state's counters; the steps
/// advance evenly through the delay of the generation in progress.
fn a1111_progress(state: &State) -> Response {
    let (progress, step, steps, jobs) = match state.generating {
        Some((started, delay, steps)) if !delay.is_zero() => {
            let done = (started.elapsed().as_secs_f64() / delay.as_secs_f64()).min(1.0);
            (done, (done * f64::from(steps)) as u32, steps, 1)
        }
        _ => (0.0, 0, 0, 0),
    };
    let eta = if progress > 0.0 {
        (1.0 - progress) / progress
    } else {
        0.0
    };
    let body = json!({
        "progress": progress,
        "eta_relative": eta,
        "state": {
            "skipped": false,
            "interrupted": false,
            "stopping_generation": false,
            "job": if jobs > 0 { "task(fake)" } else { "" },
            "job_count": jobs,
            "job_timestamp": "20261201000000",
            "job_no": 0,
            "sampling_step": step,
            "sampling_steps": steps,
        },
        "current_image": null,
        "textinfo": null,
        "current_task": null,
    });
    Response::json(200, body.to_string().into_bytes())
}

/// `None` when the request carries the right basic credentials, else the 401.
fn a1111_check_auth(rec: &Recorded, (user, password): &(String, String)) -> Option<Response> {
    let given = rec
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let detail = match given {
        None => "Not authenticated",
        Some(pair) if pair == format!("{user}:{password}") => return None,
        Some(_) => "Incorrect username or password",
    };
    Some(a1111_error(401, "HTTPException", detail).with_header("WWW-Authenticate", "Basic".into()))
}

/// An A1111 error: `{"error","detail","body","errors"}`.
pub(super) fn a1111_error(status: u16, error: &str, detail: &str) -> Response {
    let body = json!({
        "error": error,
        "detail": detail,
        "body": "",
        "errors": format!("{status}: {detail}"),
    });
    Response::json(status, body.to_string().into_bytes())
}

/// A FastAPI request-validation error (422 `{"detail":[{loc,msg,type}]}`).
fn a1111_invalid(field: Option<&str>, msg: &str, kind: &str) -> Response {
    let mut loc = vec![json!("body")];
    loc.extend(field.map(|f| json!(f)));
    let body = json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]});
    Response::json(422, body.to_string().into_bytes())
}

fn a1111_options() -> Response {
    let body = json!({
        "sd_model_checkpoint": A1111_DEFAULT_MODEL,
        "sd_checkpoint_hash": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        "samples_format": "png",
        "enable_pnginfo": true,
        "CLIP_stop_at_last_layers": 1,
        "sd_vae": "Automatic",
    });
    Response::json(200, body.to_string().into_bytes())
}

/// An integer field as pydantic (v1) coerces it.
fn pydantic_int(object: &Map<String, Value>, key: &str, default: i64) -> Result<i64, Response> {
    let invalid = || {
        a1111_invalid(
            Some(key),
            "value is not a valid integer",
            "type_error.integer",
        )
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(i64::from(*b)),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.abs() < 9.0e18).map(|f| f as i64))
            .ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A float field as pydantic (v1) coerces it.
fn pydantic_float(object: &Map<String, Value>, key: &str, default: f64) -> Result<f64, Response> {
    let invalid = || a1111_invalid(Some(key), "value is not a valid float", "type_error.float");
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A string field as pydantic (v1) coerces it.
fn pydantic_str(object: &Map<String, Value>, key: &str, default: &str) -> Result<String, Response> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(a1111_invalid(
            Some(key),
            "str type expected",
            "type_error.str",
        )),
    }
}

/// What an A1111 img2img request asks for, with A1111's defaults.
struct A1111Request {
    object: Map<String, Value>,
    images: Vec<InitImage>,
    prompt: String,
    negative_prompt: String,
    width: i64,
    height: i64,
    steps: i64,
    n_iter: i64,
    batch_size: i64,
    seed: i64,
    cfg_scale: f64,
    denoising_strength: f64,
    sampler_name: String,
    model: String,
}

fn a1111_decode(body: &[u8]) -> Result<A1111Request, Response> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(a1111_invalid(
                None,
                "value is not a valid dict",
                "type_error.dict",
            ));
        }
        Err(e) => {
            return Err(a1111_invalid(
                None,
                &e.to_string(),
                "value_error.jsondecode",
            ));
        }
    };
    let images = match object.get("init_images") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|text| decode_init_image(strip_data_url(text)).ok())
                    .ok_or_else(|| a1111_error(500, "HTTPException", "Invalid encoded image"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            let msg = "value is not a valid list";
            return Err(a1111_invalid(Some("init_images"), msg, "type_error.list"));
        }
    };
    if images.is_empty() {
        return Err(a1111_error(404, "HTTPException", "Init image not found"));
    }
    let model = object
        .get("override_settings")
        .and_then(|o| o.get("sd_model_checkpoint"))
        .and_then(Value::as_str)
        .unwrap_or(A1111_DEFAULT_MODEL)
        .to_string();
    Ok(A1111Request {
        prompt: pydantic_str(&object, "prompt", "")?,
        negative_prompt: pydantic_str(&object, "negative_prompt", "")?,
        width: pydantic_int(&object, "width", 512)?,
        height: pydantic_int(&object, "height", 512)?,
        steps: pydantic_int(&object, "steps", 50)?,
        n_iter: pydantic_int(&object, "n_iter", 1)?,
        batch_size: pydantic_int(&object, "batch_size", 1)?,
        seed: pydantic_int(&object, "seed", -1)?,
        cfg_scale: pydantic_float(&object, "cfg_scale", 7.0)?,
        denoising_strength: pydantic_float(&object, "denoising_strength", 0.75)?,
        sampler_name: pydantic_str(&object, "sampler_name", "Euler a")?,
        model,
        images,
        object,
    })
}

impl A1111Request {
    /// The checkpoint's short name (`v1-5-pruned-emaonly`).
    fn model_name(&self) -> &str {
        let name = self.model.split(" [").next().unwrap_or(&self.model);
        name.rsplit_once('.').map_or(name, |(stem, _)| stem)
    }

    /// A1111's infotext for one image (what it writes in the PNG's `parameters` chunk).
    fn infotext(&self, seed: i64) -> String {
        let mut text = self.prompt.clone();
        if !self.negative_prompt.is_empty() {
            text.push_str(&format!("\nNegative prompt: {}", self.negative_prompt));
        }
        text.push_str(&format!(
            "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {seed}, Size: {}x{}, \
             Model hash: 6ce0161689, Model: {}, Denoising strength: {}, Version: v1.10.1",
            self.steps,
            self.sampler_name,
            self.cfg_scale,
            self.width,
            self.height,
            self.model_name(),
            self.denoising_strength,
        ));
        text
    }

    /// `parameters` of the answer: the request with A1111's defaults, `init_images` null.
    fn parameters(&self) -> Value {
        let mut parameters = self.object.clone();
        let defaults = [
            ("prompt", json!("")),
            ("negative_prompt", json!("")),
            ("styles", Value::Null),
            ("seed", json!(-1)),
            ("subseed", json!(-1)),
            ("subseed_strength", json!(0)),
            ("sampler_name", Value::Null),
            ("batch_size", json!(1)),
            ("n_iter", json!(1)),
            ("steps", json!(50)),
            ("cfg_scale", json!(7.0)),
            ("width", json!(512)),
            ("height", json!(512)),
            ("denoising_strength", json!(0.75)),
            ("resize_mode", json!(0)),
            ("override_settings", Value::Null),
            ("send_images", json!(true)),
            ("save_images", json!(false)),
            ("alwayson_scripts", json!({})),
        ];
        for (key, value) in defaults {
            parameters.entry(key).or_insert(value);
        }
        parameters.insert("init_images".into(), Value::Null);
        Value::Object(parameters)
    }

    /// `info` of the answer: a JSON string.
    fn info(&self, seeds: &[i64]) -> String {
        let count = seeds.len();
        let infotexts: Vec<String> = seeds.iter().map(|s| self.infotext(*s)).collect();
        json!({
            "prompt": self.prompt,
            "all_prompts": vec![&self.prompt; count],
            "negative_prompt": self.negative_prompt,
            "all_negative_prompts": vec![&self.negative_prompt; count],
            "seed": seeds.first().copied().unwrap_or(self.seed),
            "all_seeds": seeds,
            "subseed": -1,
            "all_subseeds": vec![-1; count],
            "subseed_strength": 0,
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": false,
            "sd_model_name": self.model_name(),
            "sd_model_hash": "6ce0161689",
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": [],
            "clip_skip": 1,
            "is_using_inpainting_conditioning": false,
            "version": "v1.10.1",
        })
        .to_string()
    }
}

impl Job {
    /// A1111's img2img handler: the answer, or an error answer.
    pub(super) fn a1111(&self) -> Result<Response, Response> {
        let request = a1111_decode(&self.body)?;
        let valid_side = |side: i64| (8..=8192).contains(&side);
        if !valid_side(request.width) || !valid_side(request.height) {
            let detail = format!(
                "width and height must be 8...8192 (got {}x{})",
                request.width, request.height
            );
            return Err(a1111_error(500, "RuntimeError", &detail));
        }
        let count = (request.n_iter.max(0))
            .saturating_mul(request.batch_size.max(0))
            .min(MAX_IMAGES as i64);
        let first_seed = match request.seed {
            -1 => i64::from(fastrand::u32(..)),
            seed => seed,
        };
        let seeds: Vec<i64> = (0..count).map(|i| first_seed.saturating_add(i)).collect();
        let size = (request.width as u32, request.height as u32);
        let init = request.images.first();
        let images = self.images(init, size, seeds.len(), |i| {
            vec![("parameters".to_string(), request.infotext(seeds[i - 1]))]
        });
        let body = json!({
            "images": base64_all(&images),
            "parameters": request.parameters(),
            "info": request.info(&seeds),
        });
        Ok(Response::json(200, body.to_string().into_bytes()))
    }
}
