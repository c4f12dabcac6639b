//! Tests of the test fakes themselves: the Draw Things and A1111 fake servers
//! (tests/it/fakes/server) and the test pictures (tests/it/pictures.rs), spoken to over real
//! HTTP with reqwest, so that tests of drawdrop can trust them.

use crate::pictures;

use std::time::{Duration, Instant};

use crate::fakes::server::{self, FakeServer, Fault, Flavor};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::common::{PATIENCE, client, client_with_timeout};

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// A request as drawdrop sends it to Draw Things: one init image, its size, known keys.
fn dt_body(image: &[u8], width: u32, height: u32) -> Value {
    json!({
        "prompt": "a watercolor cat",
        "negative_prompt": "blurry",
        "init_images": [b64(image)],
        "width": width,
        "height": height,
        "seed": 42,
        "steps": 4,
        "strength": 0.6,
        "sampler": "DPM++ 2M Karras",
    })
}

/// A request as drawdrop sends it to A1111.
fn a1111_body(image: &[u8], width: u32, height: u32) -> Value {
    json!({
        "prompt": "a watercolor cat",
        "init_images": [b64(image)],
        "width": width,
        "height": height,
        "seed": 42,
        "steps": 4,
        "denoising_strength": 0.6,
        "cfg_scale": 7.0,
        "sampler_name": "Euler a",
        "n_iter": 1,
        "override_settings": {"sd_model_checkpoint": "sdxl.safetensors"},
    })
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn detail(&self) -> String {
        self.json()["detail"].as_str().unwrap().to_string()
    }

    /// The answer's images, decoded from base64.
    fn images(&self) -> Vec<Vec<u8>> {
        self.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| BASE64.decode(i.as_str().unwrap()).unwrap())
            .collect()
    }
}

async fn read(response: reqwest::Response) -> Answer {
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn post_with(client: &reqwest::Client, url: &str, body: &Value) -> Answer {
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn img2img(fake: &FakeServer, body: &Value) -> Answer {
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    post_with(&client(), &url, body).await
}

async fn get(fake: &FakeServer, path: &str) -> Answer {
    let response = client()
        .get(format!("{}{path}", fake.url()))
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn drawthings() -> FakeServer {
    FakeServer::start(Flavor::DrawThings).await
}

async fn a1111(auth: Option<(&str, &str)>) -> FakeServer {
    let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
    FakeServer::start(Flavor::A1111 { auth }).await
}

/// A Draw Things error body exactly as the app writes it.
fn dt_error_body(detail_json_escaped: &str) -> String {
    format!(r#"{{"error":"HTTPException","detail":"{detail_json_escaped}","body":"","errors":""}}"#)
}

// ------------------------------------------------------------------------------------------
// Draw Things
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn dt_unknown_keys_fail_the_whole_request_with_the_exact_body() {
    let fake = drawthings().await;
    // Raw text: leftover keys are named in the order sent (serde_json's map would sort them).
    let image = b64(&pictures::png(512, 512, 1));
    let body = format!(
        r#"{{"prompt":"a cat","foo":1,"width":512,"height":512,"bar":true,"init_images":["{image}"]}}"#
    );
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    let answer = read(client().post(&url).body(body).send().await.unwrap()).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let expected = dt_error_body(r#"Unrecognized keys: [\"foo\", \"bar\"]"#);
    assert_eq!(answer.text(), expected);
    assert_eq!(fake.img2img_requests().len(), 1);
}

#[tokio::test]
async fn dt_a_key_and_its_alias_together_fail() {
    let fake = drawthings().await;
    let mut body = dt_body(&pictures::png(512, 512, 1), 512, 512);
    body["denoising_strength"] = json!(0.5);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.detail(),
        r#"More than one key for Strength specified (must only specify one of ["strength", "denoising_strength"])"#
    );

    let mut body = dt_body(&pictures::png(512, 512, 1), 512, 512);
    body["sampler_name"] = json!("Euler a");
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert!(answer.detail().starts_with("More than one key for Sampler"));

    // An alias alone is fine.
    let mut body = dt_body(&pictures::png(512, 512, 1), 512, 512);
    body.as_object_mut().unwrap().remove("strength");
    body["denoising_strength"] = json!(0.5);
    body["cfg_scale"] = json!(7);
    assert_eq!(img2img(&fake, &body).await.status, 200);
}

#[tokio::test]
async fn dt_init_image_must_be_exactly_width_by_height() {
    let fake = drawthings().await;

    let answer = img2img(&fake, &dt_body(&pictures::png(512, 384, 1), 512, 512)).await;
    assert_eq!(answer.status, 422);
    let expected = dt_error_body("init_images height doesn't match 384 from the parameter 512");
    assert_eq!(answer.text(), expected);

    let answer = img2img(&fake, &dt_body(&pictures::png(640, 512, 1), 512, 512)).await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.detail(),
        "init_images width doesn't match 640 from the parameter 512"
    );

    // Height is checked first.
    let answer = img2img(&fake, &dt_body(&pictures::png(640, 384, 1), 512, 512)).await;
    assert_eq!(
        answer.detail(),
        "init_images height doesn't match 384 from the parameter 512"
    );

    // Without width/height the app's current size applies.
    fake.set_app_size(1024, 768);
    let mut body = dt_body(&pictures::png(512, 512, 1), 512, 512);
    body.as_object_mut().unwrap().remove("width");
    body.as_object_mut().unwrap().remove("height");
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.detail(),
        "init_images height doesn't match 512 from the parameter 768"
    );
}

#[tokio::test]
async fn dt_good_request_answers_only_images_with_escaped_slashes() {
    let fake = drawthings().await;
    let original = pictures::png(512, 512, 7);
    let answer = img2img(&fake, &dt_body(&original, 512, 512)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let raw = answer.text();
    assert!(raw.starts_with(r#"{"images":[""#), "{}", &raw[..40]);
    assert!(raw.contains(r"\/"), "Swift escapes every / as \\/");
    let json = answer.json();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["images"]);
    let images = answer.images();
    assert_eq!(images.len(), 1);
    // The init image's bytes plus one tEXt chunk naming the request and image.
    let tag = pictures::text_chunk(&images[0], server::TAG_KEYWORD).unwrap();
    assert_eq!(tag, "drawthings #1 image 1");
    assert_eq!(
        images[0],
        pictures::with_text(&original, server::TAG_KEYWORD, &tag)
    );
    assert_ne!(images[0], original);

    let recorded = &fake.img2img_requests()[0];
    assert_eq!(recorded.json()["seed"], 42);
    assert_eq!(recorded.init_image().unwrap(), original);
    assert_eq!(recorded.header("CONTENT-TYPE"), Some("application/json"));
}

#[tokio::test]
async fn dt_answers_batch_count_times_batch_size_images() {
    let fake = drawthings().await;
    let original = pictures::png(256, 320, 3);
    let mut body = dt_body(&original, 256, 320);
    body["batch_count"] = json!(3);
    let images = img2img(&fake, &body).await.images();
    assert_eq!(images.len(), 3);
    for (i, image) in images.iter().enumerate() {
        assert_eq!(pictures::size_of(image), (256, 320));
        let tag = pictures::text_chunk(image, server::TAG_KEYWORD).unwrap();
        assert_eq!(tag, format!("drawthings #1 image {}", i + 1));
    }

    let mut body = dt_body(&original, 256, 320);
    body["n_iter"] = json!(2);
    body["batch_size"] = json!(2);
    let images = img2img(&fake, &body).await.images();
    assert_eq!(images.len(), 4);
    let tag = pictures::text_chunk(&images[3], server::TAG_KEYWORD).unwrap();
    assert_eq!(tag, "drawthings #2 image 4");
}

#[tokio::test]
async fn dt_get_root_and_options_report_the_current_settings() {
    let fake = drawthings().await;
    let root = get(&fake, "/").await;
    assert_eq!(root.status, 200);
    let settings = root.json();
    assert_eq!(settings["model"], server::drawthings::DT_DEFAULT_MODEL);
    assert_eq!(settings["width"], 512);
    assert_eq!(settings["height"], 512);
    assert_eq!(settings["steps"], 20);
    assert_eq!(settings["sampler"], "DPM++ 2M Karras");
    assert_eq!(settings["strength"], 1.0);
    assert_eq!(settings["guidance_scale"], 4.5);
    assert_eq!(settings["batch_count"], 1);
    assert_eq!(settings["batch_size"], 1);
    assert_eq!(settings["loras"], json!([]));
    assert!(root.text().contains(r#""model":"sd_xl_base_1.0_f16.ckpt""#));
    // Every parameter is there, under its own key (no aliases).
    let keys = settings.as_object().unwrap();
    for key in [
        "seed_mode",
        "clip_skip",
        "hires_fix",
        "tea_cache",
        "causal_inference",
    ] {
        assert!(keys.contains_key(key), "{key}");
    }
    assert!(!keys.contains_key("cfg_scale"));

    let options = get(&fake, "/sdapi/v1/options").await;
    assert_eq!(options.status, 200);
    assert_eq!(options.json(), settings);

    fake.set_app_size(1024, 768);
    let settings = get(&fake, "/").await.json();
    assert_eq!(
        (settings["width"].clone(), settings["height"].clone()),
        (json!(1024), json!(768))
    );
}

#[tokio::test]
async fn dt_unknown_routes_are_404_with_an_empty_body() {
    let fake = drawthings().await;
    for path in ["/sdapi/v1/sd-models", "/sdapi/v1/progress", "/nope"] {
        let answer = get(&fake, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.body.is_empty(), "{path}");
    }
    let answer = post_with(
        &client(),
        &format!("{}/sdapi/v1/extra", fake.url()),
        &json!({}),
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(answer.body.is_empty());
}

#[tokio::test]
async fn dt_accepts_every_parameter_key_and_alias() {
    let keys = server::drawthings::drawthings_known_keys();
    assert_eq!(
        keys.len(),
        88,
        "77 parameters, 9 aliases, init_images, restore_faces"
    );
    let fake = drawthings().await;
    fake.set_app_size(128, 128);
    let client = client();
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    let image = b64(&pictures::png(128, 128, 1));
    let settings = get(&fake, "/").await.json();
    let settings = settings.as_object().unwrap();
    assert_eq!(settings.len(), 77);
    let aliases = [
        ("upscaler_scale_factor", "upscaler_scale"),
        ("cfg_scale", "guidance_scale"),
        ("n_iter", "batch_count"),
        ("sampler_name", "sampler"),
        ("sampler_index", "sampler"),
        ("denoising_strength", "strength"),
        ("enable_hr", "hires_fix"),
        ("firstphase_width", "hires_fix_width"),
        ("firstphase_height", "hires_fix_height"),
    ];
    let mut sent = vec!["init_images", "restore_faces"];
    // Every parameter, and every alias, alone at the app's current value is accepted.
    let every_key = settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .chain(
            aliases
                .iter()
                .map(|(alias, key)| (*alias, settings[*key].clone())),
        );
    for (key, value) in every_key {
        let mut body = json!({"init_images": [image], "restore_faces": false});
        body[key] = value.clone();
        let answer = post_with(&client, &url, &body).await;
        assert_eq!(answer.status, 200, "{key} = {value}: {}", answer.text());
        sent.push(key);
    }
    sent.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(sent, keys);
}

/// `drawdrop check` flags keys and samplers from drawdrop's own tables; the fake refuses
/// requests from its own. Both are read from the app's source, so they must be the same.
#[test]
fn the_fakes_keys_and_samplers_are_drawdrops() {
    use drawdrop::backends::drawthings_http::known::{KNOWN_KEYS, SAMPLERS};
    use std::collections::BTreeSet;
    let fakes: BTreeSet<&str> = server::drawthings::drawthings_known_keys()
        .into_iter()
        .collect();
    let drawdrops: BTreeSet<&str> = KNOWN_KEYS.iter().copied().collect();
    assert_eq!(
        fakes.difference(&drawdrops).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "keys the fake takes and drawdrop does not know"
    );
    assert_eq!(
        drawdrops.difference(&fakes).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "keys drawdrop knows and the fake refuses"
    );
    assert_eq!(
        KNOWN_KEYS.len(),
        drawdrops.len(),
        "a key twice in drawdrop's table"
    );
    assert_eq!(
        server::drawthings::drawthings_known_keys().len(),
        fakes.len(),
        "a key twice in the fake's table"
    );
    assert_eq!(
        server::drawthings::DT_SAMPLERS,
        SAMPLERS,
        "the samplers, in the app's order"
    );
}

#[tokio::test]
async fn instant_mode_answers_the_init_image_at_once_without_checking_it() {
    let fake = drawthings().await;
    fake.set_instant(true);
    // Neither the generation delay nor any check applies.
    fake.set_delay(Duration::from_secs(600));
    let image = pictures::png(64, 48, 3);
    let body = json!({"init_images": [b64(&image)], "width": 8, "no_such_key": 1});
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Swift's JSONEncoder escapes `/`, and so does the instant answer.
    let escaped = b64(&image).replace('/', "\\/");
    assert_eq!(answer.text(), format!(r#"{{"images":["{escaped}"]}}"#));
    assert_eq!(answer.images(), vec![image]);
    let requests = fake.img2img_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json(), body);
    let missing = img2img(&fake, &json!({"prompt": "no picture"})).await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.detail(), "no init_images");
}

#[tokio::test]
async fn dt_checks_ranges_samplers_models_and_loras() {
    let fake = drawthings().await;
    let image = pictures::png(512, 512, 1);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "width",
            json!(100),
            "Value for Width must be between 128 and 8192, inclusive (was 100)",
        ),
        (
            "strength",
            json!(1.5),
            "Value for Strength must be between 0.0 and 1.0, inclusive (was 1.5)",
        ),
        (
            "steps",
            json!(0),
            "Value for Steps must be between 1 and 150, inclusive (was 0)",
        ),
        (
            "batch_size",
            json!(5),
            "Value for Batch Size must be between 1 and 4, inclusive (was 5)",
        ),
        (
            "batch_count",
            json!(101),
            "Value for Batch Count must be between 1 and 100, inclusive (was 101)",
        ),
        (
            "seed",
            json!(-2),
            "Value for Seed must be between -1 and 4294967295, inclusive (was -2)",
        ),
        (
            "guidance_scale",
            json!(51),
            "Value for Text Guidance must be between 0.0 and 50.0, inclusive (was 51.0)",
        ),
        (
            "clip_skip",
            json!(24),
            "Value for CLIP Skip must be between 1 and 23, inclusive (was 24)",
        ),
        (
            "sampler",
            json!("Euler"),
            "Invalid value for sampler (options: [\"DPM++ 2M Karras\", \"Euler a\"",
        ),
        (
            "seed_mode",
            json!("Random"),
            "Invalid value for seed_mode (options: [\"Legacy\"",
        ),
        ("loras", json!([{"weight": 1.0}]), "keyNotFound"),
        ("loras", json!({"file": "x.ckpt"}), "typeMismatch"),
        ("steps", json!("4"), "typeMismatch(Swift.Int"),
        ("steps", json!(4.5), "does not fit in Int"),
    ];
    for (key, value, expected) in cases {
        let mut body = dt_body(&image, 512, 512);
        body[key] = value.clone();
        let answer = img2img(&fake, &body).await;
        assert_eq!(answer.status, 422, "{key} = {value}");
        assert!(
            answer.detail().contains(expected),
            "{key} = {value}: {}",
            answer.detail()
        );
    }

    let mut body = dt_body(&image, 512, 512);
    body["loras"] = json!([{"file": "dmd2_sdxl_4_step_lora_f16.ckpt", "weight": 1.0}]);
    body["seed"] = json!(4_294_967_295u64);
    body["guidance_scale"] = json!(0);
    assert_eq!(img2img(&fake, &body).await.status, 200);

    fake.set_models(&["sd_xl_base_1.0_f16.ckpt", "flux_1_schnell_q5p.ckpt"]);
    let mut body = dt_body(&image, 512, 512);
    body["model"] = json!("no_such_model.ckpt");
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.text(), dt_error_body("Unrecognized model name"));
    body["model"] = json!("flux_1_schnell_q5p.ckpt");
    assert_eq!(img2img(&fake, &body).await.status, 200);
}

#[tokio::test]
async fn dt_init_images_must_be_plain_base64_of_an_image() {
    let fake = drawthings().await;
    let image = pictures::png(512, 512, 1);
    let invalid = "Data in init_images did not represent a valid image";

    let mut body = dt_body(&image, 512, 512);
    body["init_images"] = json!([format!("data:image/png;base64,{}", b64(&image))]);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.detail(), invalid);

    for bytes in [
        pictures::jpeg_bytes(),
        pictures::truncated(&image),
        b"hello".to_vec(),
    ] {
        let mut body = dt_body(&image, 512, 512);
        body["init_images"] = json!([b64(&bytes)]);
        let answer = img2img(&fake, &body).await;
        assert_eq!(answer.status, 422);
        assert_eq!(answer.detail(), invalid);
    }
}

#[tokio::test]
async fn dt_zero_or_several_init_images_use_the_canvas() {
    let fake = drawthings().await;
    let mut body = dt_body(&pictures::png(512, 512, 1), 384, 256);
    body["init_images"] = json!([]);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(pictures::size_of(&answer.images()[0]), (384, 256));

    // Several images: no size check, the answer has the parameters' size.
    let other = pictures::png(128, 128, 2);
    body["init_images"] = json!([b64(&other), b64(&other)]);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 200);
    let image = &answer.images()[0];
    assert_eq!(pictures::size_of(image), (384, 256));
    image::load_from_memory(image).expect("a fresh image decodes");
}

#[tokio::test]
async fn dt_generates_at_whole_multiples_of_64() {
    let fake = drawthings().await;
    let answer = img2img(&fake, &dt_body(&pictures::png(600, 520, 1), 600, 520)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(pictures::size_of(&answer.images()[0]), (576, 512));
}

#[tokio::test]
async fn dt_txt2img_answers_and_refuses_init_images() {
    let fake = drawthings().await;
    let url = format!("{}/sdapi/v1/txt2img", fake.url());
    let answer = post_with(
        &client(),
        &url,
        &json!({"prompt": "a cat", "width": 256, "height": 256}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(pictures::size_of(&answer.images()[0]), (256, 256));

    let body = dt_body(&pictures::png(256, 256, 1), 256, 256);
    let answer = post_with(&client(), &url, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.detail(),
        "init_images is not supported for text-to-image"
    );
    assert!(fake.img2img_requests().is_empty());
    assert_eq!(fake.requests().len(), 2);
}

// ------------------------------------------------------------------------------------------
// AUTOMATIC1111
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a1111_ignores_unknown_keys_and_answers_images_parameters_and_info() {
    let fake = a1111(None).await;
    let original = pictures::png(512, 512, 5);
    let mut body = a1111_body(&original, 512, 512);
    body["some_extension_key"] = json!({"x": 1});
    body["n_iter"] = json!(2);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["images", "info", "parameters"]);
    assert!(!answer.text().contains(r"\/"));

    let parameters = &json["parameters"];
    assert_eq!(parameters["init_images"], Value::Null);
    assert_eq!(parameters["prompt"], "a watercolor cat");
    assert_eq!(parameters["some_extension_key"], json!({"x": 1}));
    assert_eq!(parameters["batch_size"], 1);

    let info: Value = serde_json::from_str(json["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["seed"], 42);
    assert_eq!(info["all_seeds"], json!([42, 43]));
    assert_eq!(info["prompt"], "a watercolor cat");
    assert_eq!(info["sd_model_name"], "sdxl");

    let images = answer.images();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        assert_eq!(pictures::size_of(image), (512, 512));
        let parameters = pictures::text_chunk(image, "parameters").unwrap();
        assert!(parameters.starts_with("a watercolor cat\nSteps: 4, Sampler: Euler a"));
        assert!(
            parameters.contains(&format!("Seed: {}", 42 + i)),
            "{parameters}"
        );
        let tag = pictures::text_chunk(image, server::TAG_KEYWORD).unwrap();
        assert_eq!(tag, format!("a1111 #1 image {}", i + 1));
    }
}

#[tokio::test]
async fn a1111_defaults_to_512_and_speaks_its_own_errors() {
    let fake = a1111(None).await;
    let original = pictures::png(640, 480, 5);
    let mut body = a1111_body(&original, 0, 0);
    body.as_object_mut().unwrap().remove("width");
    body.as_object_mut().unwrap().remove("height");
    // A1111 accepts a data: URL.
    body["init_images"] = json!([format!("data:image/png;base64,{}", b64(&original))]);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(pictures::size_of(&answer.images()[0]), (512, 512));

    let root = get(&fake, "/").await;
    assert_eq!(root.status, 404);
    let options = get(&fake, "/sdapi/v1/options").await;
    assert_eq!(options.status, 200);
    assert_eq!(
        options.json()["sd_model_checkpoint"],
        server::a1111::A1111_DEFAULT_MODEL
    );

    let mut body = a1111_body(&original, 512, 512);
    body.as_object_mut().unwrap().remove("init_images");
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["detail"], "Init image not found");
    assert_eq!(answer.json()["error"], "HTTPException");

    let mut body = a1111_body(&original, 512, 512);
    body["init_images"] = json!([b64(b"not an image")]);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json()["detail"], "Invalid encoded image");

    let mut body = a1111_body(&original, 512, 512);
    body["width"] = json!("wide");
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.json()["detail"][0]["loc"], json!(["body", "width"]));
}

#[tokio::test]
async fn a1111_basic_auth_guards_every_route() {
    let fake = a1111(Some(("me", "secret"))).await;
    let body = a1111_body(&pictures::png(256, 256, 1), 256, 256);
    let url = format!("{}/sdapi/v1/img2img", fake.url());

    let answer = post_with(&client(), &url, &body).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), Some("Basic"));
    assert_eq!(answer.json()["detail"], "Not authenticated");
    assert_eq!(get(&fake, "/sdapi/v1/options").await.status, 401);

    let wrong = client()
        .get(format!("{}/sdapi/v1/options", fake.url()))
        .basic_auth("me", Some("guess"))
        .send()
        .await
        .unwrap();
    let wrong = read(wrong).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["detail"], "Incorrect username or password");

    let right = client()
        .post(&url)
        .basic_auth("me", Some("secret"))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read(right).await.status, 200);
    let options = client()
        .get(format!("{}/sdapi/v1/options", fake.url()))
        .basic_auth("me", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(options).await.status, 200);
}

// ------------------------------------------------------------------------------------------
// Faults
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn fault_status_uses_the_flavor_format_and_retry_after() {
    let fake = drawthings().await;
    let body = dt_body(&pictures::png(256, 256, 1), 256, 256);
    fake.push_fault(Fault::Status {
        code: 503,
        detail: "busy / try later".into(),
        retry_after: Some(7),
    });
    fake.push_fault(Fault::Status {
        code: 500,
        detail: "boom".into(),
        retry_after: None,
    });
    assert_eq!(fake.pending_faults(), 2);
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("7"));
    assert_eq!(answer.text(), dt_error_body(r"busy \/ try later"));
    let answer = img2img(&fake, &body).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.header("retry-after"), None);
    assert_eq!(
        img2img(&fake, &body).await.status,
        200,
        "faults are used up"
    );
    assert_eq!(fake.pending_faults(), 0);

    let fake = a1111(None).await;
    fake.push_fault(Fault::Status {
        code: 500,
        detail: "CUDA out of memory".into(),
        retry_after: Some(3),
    });
    let answer = img2img(&fake, &a1111_body(&pictures::png(256, 256, 1), 256, 256)).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.header("retry-after"), Some("3"));
    let json = answer.json();
    assert_eq!(json["detail"], "CUDA out of memory");
    assert_eq!(json["error"], "HTTPException");
    assert_eq!(json["body"], "");
}

#[tokio::test]
async fn fault_close_without_answer_drops_the_connection() {
    let fake = drawthings().await;
    let body = dt_body(&pictures::png(256, 256, 1), 256, 256);
    fake.push_fault(Fault::CloseWithoutAnswer);
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    let result = client()
        .post(&url)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await;
    let error = result.expect_err("no answer");
    assert!(!error.is_timeout(), "{error:?}");
    assert_eq!(
        fake.img2img_requests().len(),
        1,
        "the request was read whole"
    );
    assert_eq!(
        fake.img2img_requests()[0].body,
        serde_json::to_vec(&body).unwrap()
    );
    assert_eq!(img2img(&fake, &body).await.status, 200);
}

#[tokio::test]
async fn fault_hang_never_answers_and_does_not_hold_the_queue() {
    let fake = drawthings().await;
    let body = dt_body(&pictures::png(256, 256, 1), 256, 256);
    let url = format!("{}/sdapi/v1/img2img", fake.url());

    // The client gives up; the hung request stops counting once it has gone.
    fake.push_fault(Fault::Hang);
    let impatient = client_with_timeout(Duration::from_millis(500));
    let error = impatient
        .post(&url)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .expect_err("never answered");
    assert!(error.is_timeout(), "{error:?}");
    drop(impatient);
    fake.wait_in_flight(0, PATIENCE).await;

    // A hang in progress does not block the next request.
    fake.push_fault(Fault::Hang);
    let hung = {
        let (url, body) = (url.clone(), body.clone());
        tokio::spawn(async move {
            client()
                .post(&url)
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
        })
    };
    fake.wait_in_flight(1, PATIENCE).await;
    assert_eq!(img2img(&fake, &body).await.status, 200);
    assert_eq!(fake.max_in_flight(), 2);

    // stop() ends it: the client sees the connection close long before its timeout.
    let started = Instant::now();
    fake.stop().await;
    let result = hung.await.unwrap();
    assert!(result.is_err());
    assert!(started.elapsed() < PATIENCE / 2);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn fault_broken_bodies() {
    for flavor in [Flavor::DrawThings, Flavor::A1111 { auth: None }] {
        let fake = FakeServer::start(flavor.clone()).await;
        let body = match flavor {
            Flavor::DrawThings => dt_body(&pictures::png(256, 256, 1), 256, 256),
            Flavor::A1111 { .. } => a1111_body(&pictures::png(256, 256, 1), 256, 256),
        };

        fake.push_fault(Fault::TruncatedJson);
        let answer = img2img(&fake, &body).await;
        assert_eq!(answer.status, 200);
        assert!(answer.text().starts_with(r#"{"images":[""#), "{flavor:?}");
        assert!(
            serde_json::from_slice::<Value>(&answer.body).is_err(),
            "{flavor:?}"
        );

        fake.push_fault(Fault::EmptyImages);
        let answer = img2img(&fake, &body).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["images"], json!([]));

        fake.push_fault(Fault::BadBase64);
        let answer = img2img(&fake, &body).await;
        let images = answer.json()["images"].as_array().unwrap().clone();
        assert_eq!(images.len(), 1);
        assert!(BASE64.decode(images[0].as_str().unwrap()).is_err());

        fake.push_fault(Fault::NotPng);
        let images = img2img(&fake, &body).await.images();
        assert_eq!(images.len(), 1);
        assert!(images[0].starts_with(&[0xFF, 0xD8, 0xFF]));
        assert!(image::load_from_memory(&images[0]).is_err());

        fake.push_fault(Fault::ImageCount(3));
        let images = img2img(&fake, &body).await.images();
        assert_eq!(images.len(), 3);
        for image in &images {
            assert_eq!(pictures::size_of(image), (256, 256));
        }

        fake.push_fault(Fault::CloseMidBody);
        let response = client()
            .post(format!("{}/sdapi/v1/img2img", fake.url()))
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .expect("the head arrives");
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.bytes().await.is_err(),
            "{flavor:?}: body cut short"
        );

        assert_eq!(img2img(&fake, &body).await.status, 200, "{flavor:?}");
    }
}

// ------------------------------------------------------------------------------------------
// HTTP layer, lifecycle, concurrency
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_reuses_one_connection_until_close_is_asked() {
    let fake = drawthings().await;
    let client = client();
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    let body = dt_body(&pictures::png(128, 128, 1), 128, 128);
    for _ in 0..3 {
        assert_eq!(post_with(&client, &url, &body).await.status, 200);
        let root = client.get(format!("{}/", fake.url())).send().await.unwrap();
        assert_eq!(read(root).await.status, 200);
    }
    let conns: Vec<u64> = fake.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns.len(), 6);
    assert!(conns.iter().all(|c| *c == conns[0]), "{conns:?}");

    let closing = client
        .get(format!("{}/", fake.url()))
        .header("Connection", "close")
        .send()
        .await
        .unwrap();
    let closing = read(closing).await;
    assert_eq!(closing.header("connection"), Some("close"));
    assert_eq!(post_with(&client, &url, &body).await.status, 200);
    let last = fake.requests().last().unwrap().conn;
    assert_ne!(last, conns[0], "a new connection after Connection: close");
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_listens_again() {
    let fake = drawthings().await;
    let pooled = client();
    let root = format!("{}/", fake.url());
    assert_eq!(
        read(pooled.get(&root).send().await.unwrap()).await.status,
        200
    );

    fake.stop().await;
    assert!(!fake.is_running());
    let error = client().get(&root).send().await.expect_err("stopped");
    assert!(error.is_connect(), "{error:?}");
    assert!(pooled.get(&root).send().await.is_err());

    fake.restart().await.unwrap();
    assert!(fake.is_running());
    assert_eq!(
        read(client().get(&root).send().await.unwrap()).await.status,
        200
    );
    assert_eq!(
        read(pooled.get(&root).send().await.unwrap()).await.status,
        200
    );
    fake.restart().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_run_one_at_a_time_and_in_flight_counts_them() {
    let fake = drawthings().await;
    let delay = Duration::from_millis(300);
    fake.set_delay(delay);
    let body = dt_body(&pictures::png(128, 128, 1), 128, 128);
    let started = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (fake, body) = (fake.clone(), body.clone());
            tokio::spawn(async move { img2img(&fake, &body).await.status })
        })
        .collect();
    fake.wait_in_flight(3, PATIENCE).await;
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert!(started.elapsed() >= delay * 3, "{:?}", started.elapsed());
    assert_eq!(fake.max_in_flight(), 3);
    assert_eq!(fake.in_flight(), 0);
    assert_eq!(fake.wait_img2img(3, PATIENCE).await.len(), 3);
}

#[tokio::test]
async fn malformed_http_gets_an_error_status_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = drawthings().await;
    let cases: [(&[u8], &str); 3] = [
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"POST /sdapi/v1/img2img HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 411 ",
        ),
        (
            b"POST /sdapi/v1/img2img HTTP/1.1\r\nContent-Length: nine\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
    ];
    for (request, expected) in cases {
        let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(expected), "{answer}");
    }
    // A body that is not JSON is a 422 from the app, not a crash.
    let url = format!("{}/sdapi/v1/img2img", fake.url());
    let answer = read(client().post(&url).body("{not json").send().await.unwrap()).await;
    assert_eq!(answer.status, 422);
    assert!(answer.detail().contains("not valid JSON"));
    let answer = read(client().post(&url).body("[1]").send().await.unwrap()).await;
    assert_eq!(answer.status, 422);
    assert_eq!(get(&fake, "/").await.status, 200);
}

#[tokio::test]
async fn observer_sees_each_request_and_its_status() {
    let fake = drawthings().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    fake.set_observer(move |rec, status| log.lock().unwrap().push((rec.path.clone(), status)));
    get(&fake, "/").await;
    get(&fake, "/missing").await;
    fake.push_fault(Fault::CloseWithoutAnswer);
    let _ = client()
        .post(format!("{}/sdapi/v1/img2img", fake.url()))
        .body("{}")
        .send()
        .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("/".to_string(), Some(200)),
            ("/missing".to_string(), Some(404)),
            ("/sdapi/v1/img2img".to_string(), None),
        ]
    );
}

// ------------------------------------------------------------------------------------------
// PNG helpers
// ------------------------------------------------------------------------------------------

#[test]
fn png_helpers_make_what_they_say() {
    use pictures::ColorKind;
    for kind in [
        ColorKind::Rgb8,
        ColorKind::Rgba8,
        ColorKind::Gray8,
        ColorKind::Gray16,
        ColorKind::Rgb16,
        ColorKind::Palette,
    ] {
        let png = pictures::png_with(kind, 70, 33, 9);
        assert_eq!(pictures::size_of(&png), (70, 33), "{kind:?}");
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (70, 33), "{kind:?}");
    }
    assert_ne!(pictures::png(64, 64, 1), pictures::png(64, 64, 2));
    assert_eq!(pictures::png(64, 64, 1), pictures::png(64, 64, 1));

    let truncated = pictures::truncated(&pictures::png(64, 64, 1));
    assert!(image::load_from_memory(&truncated).is_err());
    assert!(image::load_from_memory(&pictures::jpeg_bytes()).is_err());

    let bomb = pictures::with_declared_size(100_000, 100_000);
    assert_eq!(pictures::size_of(&bomb), (100_000, 100_000));
    assert!(bomb.len() < 200);
    let kinds: Vec<String> = pictures::chunks(&bomb).into_iter().map(|c| c.0).collect();
    assert_eq!(
        kinds,
        ["IHDR", "IDAT", "IEND"],
        "every CRC-framed chunk parses"
    );
    let reader = image::ImageReader::new(std::io::Cursor::new(&bomb))
        .with_guessed_format()
        .unwrap();
    assert_eq!(reader.into_dimensions().unwrap(), (100_000, 100_000));

    let tagged = pictures::with_text(&pictures::png(16, 16, 1), "parameters", "a cat");
    assert_eq!(
        pictures::text_chunk(&tagged, "parameters").as_deref(),
        Some("a cat")
    );
    image::load_from_memory(&tagged).unwrap();
}

#[tokio::test]
async fn a_fault_source_picks_faults_when_none_is_scripted_and_every_answer_is_recorded() {
    let fake = drawthings().await;
    let mut next = 0;
    fake.set_fault_source(move || {
        next += 1;
        (next % 2 == 0).then_some(Fault::EmptyImages)
    });
    fake.push_fault(Fault::Status {
        code: 503,
        detail: "busy".into(),
        retry_after: None,
    });
    let body = dt_body(&pictures::png(512, 512, 1), 512, 512);
    let statuses = [
        img2img(&fake, &body).await.status,
        img2img(&fake, &body).await.status,
        img2img(&fake, &body).await.status,
    ];
    // Scripted first; then the source: none, then EmptyImages (a 200 without images).
    assert_eq!(statuses, [503, 200, 200]);
    let answers = fake.img2img_answers();
    let faults: Vec<Option<Fault>> = answers.iter().map(|a| a.fault.clone()).collect();
    assert_eq!(
        faults,
        [
            Some(Fault::Status {
                code: 503,
                detail: "busy".into(),
                retry_after: None
            }),
            None,
            Some(Fault::EmptyImages),
        ]
    );
    let good: Vec<bool> = answers.iter().map(|a| a.is_good()).collect();
    assert_eq!(good, [false, true, false]);
    assert_eq!(answers[1].status, Some(200));
    assert_eq!(
        answers[1].request.init_image().unwrap(),
        pictures::png(512, 512, 1)
    );
}
