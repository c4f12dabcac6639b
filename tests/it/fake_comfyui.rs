//! Tests of the fake ComfyUI (tests/it/fakes/comfyui), spoken to over real HTTP (reqwest)
//! and real websockets (tokio-tungstenite) the way docs/protocols.md describes ComfyUI, so that
//! tests of drawdrop's ComfyUI backend can trust it.

use crate::pictures;

use std::time::Duration;

use crate::fakes::comfyui::{self, FakeComfyUi, HttpFault, python};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{PATIENCE, client, client_with_timeout};

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

async fn read(response: reqwest::Response) -> Answer {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Answer {
        status: response.status().as_u16(),
        content_type,
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn get(fake: &FakeComfyUi, path: &str) -> Answer {
    read(
        client()
            .get(format!("{}{path}", fake.url()))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_raw(fake: &FakeComfyUi, path: &str, body: Vec<u8>) -> Answer {
    read(
        client()
            .post(format!("{}{path}", fake.url()))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `POST /prompt` as docs/protocols.md says: the graph and the client id.
async fn queue(fake: &FakeComfyUi, graph: &Value, client_id: &str) -> Answer {
    let body = json!({"prompt": graph, "client_id": client_id});
    post_raw(fake, "/prompt", serde_json::to_vec(&body).unwrap()).await
}

/// Queues a graph that must be accepted; returns its prompt id.
async fn queue_ok(fake: &FakeComfyUi, graph: &Value, client_id: &str) -> String {
    let answer = queue(fake, graph, client_id).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["prompt_id"].as_str().unwrap().to_string()
}

/// `POST /upload/image` (multipart, built by hand: `image` with its file name, then fields).
async fn upload(fake: &FakeComfyUi, name: &str, bytes: &[u8], fields: &[(&str, &str)]) -> Answer {
    let boundary = "----drawdropBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    for (key, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    read(
        client()
            .post(format!("{}/upload/image", fake.url()))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn upload_ok(fake: &FakeComfyUi, name: &str, bytes: &[u8]) -> String {
    let answer = upload(fake, name, bytes, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["name"].as_str().unwrap().to_string()
}

type Ws = WebSocketStream<TcpStream>;

/// Opens `/ws?clientId=ID` and reads its greeting (so the socket is registered before a prompt
/// is queued); returns the socket and the greeting.
async fn connect(fake: &FakeComfyUi, client_id: Option<&str>) -> (Ws, Value) {
    let stream = TcpStream::connect(fake.addr()).await.unwrap();
    let url = match client_id {
        Some(id) => fake.ws_url(id),
        None => format!("ws://{}/ws", fake.addr()),
    };
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let greeting = next_message(&mut ws).await.expect("a status greeting");
    assert_eq!(greeting["type"], "status", "{greeting}");
    (ws, greeting)
}

/// The next JSON message; `None` when the socket ended.
async fn next_message(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a websocket message in time");
        match frame {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Messages up to and including `executing` with `node: null` for this prompt.
async fn until_done(ws: &mut Ws, prompt_id: &str) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(message) = next_message(ws).await {
        let done = message["type"] == "executing"
            && message["data"]["node"].is_null()
            && message["data"]["prompt_id"] == prompt_id;
        got.push(message);
        if done {
            return got;
        }
    }
    panic!("websocket ended before the prompt was done: {got:?}");
}

/// The messages' types and (for `executing`/`executed`) nodes, progress states left out.
fn outline(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["type"] != "progress_state")
        .map(|m| {
            let kind = m["type"].as_str().unwrap();
            match kind {
                "executing" | "executed" => format!("{kind} {}", m["data"]["node"]),
                "progress" => format!("progress {}/{}", m["data"]["value"], m["data"]["max"]),
                "status" => format!(
                    "status {}",
                    m["data"]["status"]["exec_info"]["queue_remaining"]
                ),
                _ => kind.to_string(),
            }
        })
        .collect()
}

fn invert_graph(image: &str) -> Value {
    json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": image}, "_meta": {"title": "drawdrop"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ComfyUI"}},
    })
}

/// The default text-to-image workflow of ComfyUI, in API format.
fn txt2img_graph(seed: u64, steps: u64) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a watercolor cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    })
}

/// LoadImage -> VAEEncode -> KSampler -> VAEDecode -> SaveImage.
fn img2img_graph(image: &str) -> Value {
    let mut graph = txt2img_graph(7, 3);
    graph["10"] = json!({"class_type": "LoadImage", "inputs": {"image": image}});
    graph["11"] =
        json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    graph["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    graph["3"]["inputs"]["denoise"] = json!(0.6);
    graph.as_object_mut().unwrap().remove("5");
    graph
}

/// The first image of `node` in a history entry, fetched with `/view`.
async fn output_image(fake: &FakeComfyUi, entry: &Value, node: &str) -> Vec<u8> {
    let image = &entry["outputs"][node]["images"][0];
    let path = format!(
        "/view?filename={}&subfolder={}&type={}",
        image["filename"].as_str().unwrap(),
        image["subfolder"].as_str().unwrap(),
        image["type"].as_str().unwrap()
    );
    let answer = get(fake, &path).await;
    assert_eq!(answer.status, 200, "{path}");
    assert_eq!(answer.content_type, "image/png");
    answer.body
}

async fn history(fake: &FakeComfyUi, prompt_id: &str) -> Value {
    let answer = get(fake, &format!("/history/{prompt_id}")).await;
    assert_eq!(answer.status, 200);
    answer.json()
}

fn rgb(png: &[u8]) -> image::RgbImage {
    image::load_from_memory(png).unwrap().to_rgb8()
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_is_also_under_api_and_the_probe_answers() {
    let fake = FakeComfyUi::start().await;
    for prefix in ["", "/api"] {
        let stats = get(&fake, &format!("{prefix}/system_stats")).await;
        assert_eq!(stats.status, 200);
        let stats = stats.json();
        assert_eq!(stats["system"]["comfyui_version"], "0.3.64");
        assert!(stats["devices"][0]["vram_total"].is_u64());
        let queue = get(&fake, &format!("{prefix}/queue")).await.json();
        assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
        assert_eq!(
            get(&fake, &format!("{prefix}/history")).await.json(),
            json!({})
        );
    }
    let head = client()
        .head(format!("{}/system_stats", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(get(&fake, "/nothing/here").await.status, 404);
    assert_eq!(get(&fake, "/upload/image").await.status, 405);
    assert_eq!(
        get(&fake, "/prompt").await.json(),
        json!({"exec_info": {"queue_remaining": 0}})
    );
}

#[tokio::test]
async fn object_info_declares_nodes_in_comfyuis_shape() {
    let fake = FakeComfyUi::start().await;
    fake.set_checkpoints(&["a.safetensors", "b.ckpt"]);
    let all = get(&fake, "/object_info").await.json();
    for class in [
        "LoadImage",
        "SaveImage",
        "ImageInvert",
        "ImageScale",
        "KSampler",
        "CLIPTextEncode",
        "CheckpointLoaderSimple",
        "VAEEncode",
        "VAEDecode",
        "EmptyLatentImage",
    ] {
        assert_eq!(all[class]["name"], class, "{class}");
        assert!(all[class]["input"]["required"].is_object(), "{class}");
    }
    let loader = get(&fake, "/api/object_info/CheckpointLoaderSimple")
        .await
        .json();
    let loader = &loader["CheckpointLoaderSimple"];
    assert_eq!(
        loader["input"]["required"]["ckpt_name"][0],
        json!(["a.safetensors", "b.ckpt"])
    );
    assert_eq!(loader["output"], json!(["MODEL", "CLIP", "VAE"]));
    assert_eq!(loader["display_name"], "Load Checkpoint");
    assert_eq!(loader["output_node"], false);
    let sampler = &all["KSampler"]["input"]["required"];
    assert_eq!(sampler["seed"][0], "INT");
    assert_eq!(sampler["seed"][1]["max"], json!(u64::MAX));
    assert_eq!(sampler["cfg"][1]["default"], json!(8.0));
    assert!(
        sampler["sampler_name"][0]
            .as_array()
            .unwrap()
            .contains(&json!("euler"))
    );
    assert!(
        sampler["scheduler"][0]
            .as_array()
            .unwrap()
            .contains(&json!("karras"))
    );
    assert_eq!(all["KSampler"]["input_order"]["required"][0], "model");
    assert_eq!(all["SaveImage"]["output_node"], true);
    assert_eq!(all["SaveImage"]["input"]["hidden"]["prompt"], "PROMPT");
    assert_eq!(
        all["ImageInvert"]["input"]["required"]["image"],
        json!(["IMAGE"])
    );
    assert_eq!(
        all["ImageScale"]["input"]["required"]["upscale_method"],
        json!([["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]])
    );
    assert_eq!(
        get(&fake, "/object_info/NoSuchNode").await.json(),
        json!({})
    );

    // LoadImage lists the uploaded images at the top of the input folder.
    upload_ok(&fake, "b.png", &pictures::png(4, 4, 1)).await;
    upload_ok(&fake, "a.png", &pictures::png(4, 4, 2)).await;
    let load = get(&fake, "/object_info/LoadImage").await.json();
    assert_eq!(
        load["LoadImage"]["input"]["required"]["image"],
        json!([["a.png", "b.png"], {"image_upload": true}])
    );
}

#[tokio::test]
async fn uploads_rename_a_clash_keep_the_same_bytes_and_overwrite_on_request() {
    let fake = FakeComfyUi::start().await;
    let (first, second, third) = (
        pictures::png(8, 8, 1),
        pictures::png(8, 8, 2),
        pictures::png(8, 8, 3),
    );
    let answer = upload(&fake, "cat.png", &first, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"name": "cat.png", "subfolder": "", "type": "input"})
    );
    assert_eq!(upload_ok(&fake, "cat.png", &second).await, "cat (1).png");
    // The same bytes again: ComfyUI finds the duplicate and keeps its name.
    assert_eq!(upload_ok(&fake, "cat.png", &second).await, "cat (1).png");
    assert_eq!(upload_ok(&fake, "cat.png", &first).await, "cat.png");
    assert_eq!(upload_ok(&fake, "cat.png", &third).await, "cat (2).png");
    let overwritten = upload(&fake, "cat.png", &third, &[("overwrite", "true")]).await;
    assert_eq!(overwritten.json()["name"], "cat.png");
    assert_eq!(fake.file("input", "", "cat.png").unwrap(), third);
    assert_eq!(fake.file("input", "", "cat (1).png").unwrap(), second);
    assert_eq!(
        fake.files("input"),
        ["cat (1).png", "cat (2).png", "cat.png"]
    );

    let placed = upload(
        &fake,
        "dog.png",
        &first,
        &[("subfolder", "jobs"), ("type", "temp")],
    )
    .await;
    assert_eq!(
        placed.json(),
        json!({"name": "dog.png", "subfolder": "jobs", "type": "temp"})
    );
    let viewed = get(&fake, "/view?filename=dog.png&subfolder=jobs&type=temp").await;
    assert_eq!(viewed.status, 200);
    assert_eq!(viewed.body, first);
    assert_eq!(
        get(&fake, "/view?filename=dog.png&type=output")
            .await
            .status,
        404
    );
    assert_eq!(get(&fake, "/view?filename=../x.png").await.status, 400);

    let escape = upload(&fake, "x.png", &first, &[("subfolder", "../..")]).await;
    assert_eq!(escape.status, 400);
    let no_image = post_raw(&fake, "/upload/image", b"{}".to_vec()).await;
    assert_eq!(no_image.status, 400);
    assert_eq!(fake.counters().uploads, 7);
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_graph_comfyui_refuses_gets_its_error_shapes() {
    let fake = FakeComfyUi::start().await;
    upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;

    // Not JSON: aiohttp's plain 500.
    let answer = post_raw(&fake, "/prompt", b"{not json".to_vec()).await;
    assert_eq!(answer.status, 500);
    assert!(answer.content_type.starts_with("text/plain"));
    assert!(answer.text().starts_with("500 Internal Server Error"));

    let answer = post_raw(&fake, "/prompt", br#"{"client_id": "x"}"#.to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["type"], "no_prompt");

    let mut unknown = invert_graph("in.png");
    unknown["2"]["class_type"] = json!("FancyUpscaler");
    let answer = queue(&fake, &unknown, "c").await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json(),
        json!({
            "error": {
                "type": "invalid_prompt",
                "message": "Cannot execute because node FancyUpscaler does not exist.",
                "details": "Node ID '#2'",
                "extra_info": {},
            },
            "node_errors": {},
        })
    );

    let no_outputs = json!({"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}});
    let answer = queue(&fake, &no_outputs, "c").await.json();
    assert_eq!(
        answer["error"],
        json!({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}})
    );

    let mut missing = invert_graph("in.png");
    missing["3"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("filename_prefix");
    let answer = queue(&fake, &missing, "c").await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json(),
        json!({
            "error": {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "Required input is missing: filename_prefix",
                "extra_info": {},
            },
            "node_errors": {"3": {
                "errors": [{
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "filename_prefix",
                    "extra_info": {"input_name": "filename_prefix"},
                }],
                "dependent_outputs": ["3"],
                "class_type": "SaveImage",
            }},
        })
    );

    // An image never uploaded: LoadImage's own validation, upstream of the output.
    let answer = queue(&fake, &invert_graph("never.png"), "c").await.json();
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(answer["error"]["details"], "");
    assert_eq!(
        answer["node_errors"],
        json!({"1": {
            "errors": [{
                "type": "custom_validation_failed",
                "message": "Custom validation failed for node",
                "details": "image - Invalid image file: never.png",
                "extra_info": {"input_name": "image"},
            }],
            "dependent_outputs": ["3"],
            "class_type": "LoadImage",
        }})
    );

    // Values not among the allowed ones: a short list is quoted, a long one only counted.
    let mut graph = txt2img_graph(1, 2);
    graph["4"]["inputs"]["ckpt_name"] = json!("nope.safetensors");
    graph["3"]["inputs"]["sampler_name"] = json!("Euler a");
    let answer = queue(&fake, &graph, "c").await.json();
    let loader_error = &answer["node_errors"]["4"]["errors"][0];
    assert_eq!(loader_error["type"], "value_not_in_list");
    assert_eq!(loader_error["message"], "Value not in list");
    assert_eq!(
        loader_error["details"],
        "ckpt_name: 'nope.safetensors' not in ['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors']"
    );
    assert_eq!(
        loader_error["extra_info"]["received_value"],
        "nope.safetensors"
    );
    assert_eq!(
        loader_error["extra_info"]["input_config"][0],
        json!([
            "sd_xl_base_1.0.safetensors",
            "v1-5-pruned-emaonly.safetensors"
        ])
    );
    let sampler_error = &answer["node_errors"]["3"]["errors"][0];
    assert_eq!(sampler_error["type"], "value_not_in_list");
    assert_eq!(
        sampler_error["details"],
        format!(
            "sampler_name: 'Euler a' not in (list of length {})",
            comfyui::nodes::SAMPLERS.len()
        )
    );
    assert_eq!(sampler_error["extra_info"]["input_config"], Value::Null);
    assert_eq!(
        answer["node_errors"]["3"]["dependent_outputs"],
        json!(["9"])
    );

    // Conversions and bounds, with Python's words.
    let mut graph = txt2img_graph(1, 2);
    graph["3"]["inputs"]["steps"] = json!("many");
    graph["3"]["inputs"]["cfg"] = json!(-1);
    graph["5"]["inputs"]["width"] = json!("4");
    let answer = queue(&fake, &graph, "c").await.json();
    let errors = &answer["node_errors"]["3"]["errors"];
    assert_eq!(errors[0]["type"], "invalid_input_type");
    assert_eq!(
        errors[0]["details"],
        "steps, many, invalid literal for int() with base 10: 'many'"
    );
    assert_eq!(errors[1]["type"], "value_smaller_than_min");
    assert_eq!(errors[1]["message"], "Value -1.0 smaller than min of 0.0");
    assert_eq!(
        answer["node_errors"]["5"]["errors"][0]["message"],
        "Value 4 smaller than min of 16"
    );
    assert_eq!(fake.counters().prompts_queued, 0);
}

#[tokio::test]
async fn a_good_output_beside_a_bad_one_runs_alone() {
    let fake = FakeComfyUi::start().await;
    upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    let mut graph = invert_graph("in.png");
    graph["4"] = json!({"class_type": "SaveImage", "inputs": {"images": ["2", 0]}});
    let answer = queue(&fake, &graph, "c").await;
    assert_eq!(answer.status, 200);
    let answer = answer.json();
    assert_eq!(
        answer["node_errors"]["4"]["errors"][0]["type"],
        "required_input_missing"
    );
    let id = answer["prompt_id"].as_str().unwrap();
    fake.wait_executed(1, PATIENCE).await;
    let entry = &history(&fake, id).await[id];
    assert!(entry["outputs"]["3"].is_object());
    assert!(entry["outputs"].get("4").is_none());
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_inverted_picture_comes_back_inverted_after_the_messages_in_order() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, greeting) = connect(&fake, Some("client-a")).await;
    assert_eq!(
        greeting["data"],
        json!({"status": {"exec_info": {"queue_remaining": 0}}, "sid": "client-a"})
    );
    let picture = pictures::png(24, 16, 5);
    let name = upload_ok(&fake, "in.png", &picture).await;
    fake.hang_next_prompts(1);
    let prompt_id = queue_ok(&fake, &invert_graph(&name), "client-a").await;
    assert_eq!(prompt_id.len(), 36, "a uuid: {prompt_id}");

    // Not done: the history stays empty (the prompt hangs on its first node).
    assert!(
        fake.wait_until(PATIENCE, |f| !f.executed_nodes().is_empty())
            .await
    );
    assert_eq!(history(&fake, &prompt_id).await, json!({}));
    let queue = get(&fake, "/queue").await.json();
    assert_eq!(queue["queue_running"][0][1], prompt_id.as_str());
    fake.release_hung();

    let messages = until_done(&mut ws, &prompt_id).await;
    assert_eq!(
        outline(&messages),
        [
            "status 1",
            "status 1",
            "execution_start",
            "execution_cached",
            "executing \"1\"",
            "executing \"2\"",
            "executing \"3\"",
            "executed \"3\"",
            "execution_success",
            "status 0",
            "executing null",
        ]
    );
    for message in &messages[2..] {
        if message["type"] != "status" {
            assert_eq!(
                message["data"]["prompt_id"],
                prompt_id.as_str(),
                "{message}"
            );
        }
    }
    let executed = messages.iter().find(|m| m["type"] == "executed").unwrap();
    assert_eq!(
        executed["data"]["output"],
        json!({"images": [{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]})
    );

    let entry = history(&fake, &prompt_id).await;
    let entry = &entry[prompt_id.as_str()];
    assert_eq!(entry["prompt"][1], prompt_id.as_str());
    assert_eq!(entry["prompt"][2], invert_graph(&name));
    assert_eq!(entry["prompt"][3], json!({"client_id": "client-a"}));
    assert_eq!(entry["prompt"][4], json!(["3"]));
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    let kinds: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["execution_start", "execution_cached", "execution_success"]
    );
    assert!(entry["status"]["messages"][0][1]["timestamp"].is_u64());

    let result = output_image(&fake, entry, "3").await;
    let prompt_chunk = pictures::text_chunk(&result, "prompt").expect("a prompt chunk");
    assert_eq!(
        serde_json::from_str::<Value>(&prompt_chunk).unwrap(),
        invert_graph(&name)
    );
    assert!(
        prompt_chunk.contains("\"class_type\": \"LoadImage\""),
        "json.dumps spacing"
    );
    let (before, after) = (rgb(&picture), rgb(&result));
    assert_eq!(after.dimensions(), (24, 16));
    let mut off_by_one = 0;
    for (x, y) in before.pixels().zip(after.pixels()) {
        for c in 0..3 {
            let (x, y) = (x.0[c], y.0[c]);
            // ComfyUI: 1.0 - x/255 in float32, saved as trunc(255 * v).
            let expected = (255.0f32 * (1.0f32 - f32::from(x) / 255.0f32)) as u8;
            assert_eq!(y, expected);
            assert!(y == 255 - x || y + 1 == 255 - x, "{x} -> {y}");
            off_by_one += usize::from(y != 255 - x);
        }
    }
    assert!(off_by_one > 0, "some channels come back as 254 - x");
    assert_eq!(fake.counters().prompts_queued, 1);
    assert_eq!(fake.counters().prompts_executed, 1);
}

#[tokio::test]
async fn messages_go_only_to_the_prompts_client() {
    let fake = FakeComfyUi::start().await;
    let (mut mine, _) = connect(&fake, Some("mine")).await;
    let (mut other, _) = connect(&fake, Some("other")).await;
    let (mut anonymous, greeting) = connect(&fake, None).await;
    assert_eq!(greeting["data"]["sid"].as_str().unwrap().len(), 32);
    assert_eq!(fake.counters().ws_connections, 3);
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    let prompt_id = queue_ok(&fake, &invert_graph(&name), "mine").await;
    let messages = until_done(&mut mine, &prompt_id).await;
    assert!(messages.iter().any(|m| m["type"] == "executed"));

    // The others saw the queue change (queued, running, done) and nothing of the prompt.
    let probe_id = queue_ok(&fake, &invert_graph(&name), "other").await;
    let seen = until_done(&mut other, &probe_id).await;
    assert_eq!(outline(&seen)[..3], ["status 1", "status 1", "status 0"]);
    assert!(
        seen.iter()
            .all(|m| m["data"]["prompt_id"] != prompt_id.as_str())
    );
    assert!(seen.iter().any(|m| m["type"] == "executed"));
    for _ in 0..6 {
        let message = next_message(&mut anonymous).await.unwrap();
        assert_eq!(message["type"], "status", "{message}");
        assert!(message["data"].get("sid").is_none());
    }
    // A client with no socket: its prompt runs all the same.
    let unseen = queue_ok(&fake, &invert_graph(&name), "nobody").await;
    fake.wait_until(PATIENCE, |f| f.history(&unseen).is_some())
        .await;
    assert_eq!(fake.counters().prompts_executed, 3);
}

#[tokio::test]
async fn prompts_run_one_at_a_time_first_in_first_out_with_progress() {
    let fake = FakeComfyUi::start().await;
    fake.set_step_delay(Duration::from_millis(20));
    let (mut ws, _) = connect(&fake, Some("c")).await;
    fake.hang_next_prompts(1);
    let mut ids = Vec::new();
    for seed in [11u64, 22, 33] {
        ids.push(queue_ok(&fake, &txt2img_graph(seed, 4), "c").await);
    }
    assert!(
        fake.wait_until(PATIENCE, |f| !f.executed_nodes().is_empty())
            .await
    );
    let queue = get(&fake, "/queue").await.json();
    assert_eq!(
        queue["queue_running"].as_array().unwrap().len(),
        1,
        "{queue}"
    );
    assert_eq!(queue["queue_running"][0][1], ids[0].as_str());
    let pending: Vec<&Value> = queue["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item[1])
        .collect();
    assert_eq!(pending, [ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(queue["queue_pending"][0][0], 1, "numbered in order");
    fake.release_hung();

    let mut progress = Vec::new();
    for id in &ids {
        let messages = until_done(&mut ws, id).await;
        progress.push(
            outline(&messages)
                .into_iter()
                .filter(|m| m.starts_with("progress"))
                .collect::<Vec<_>>(),
        );
        let steps: Vec<&Value> = messages
            .iter()
            .filter(|m| m["type"] == "progress")
            .collect();
        assert!(
            steps
                .iter()
                .all(|m| m["data"]["node"] == "3" && m["data"]["prompt_id"] == id.as_str())
        );
    }
    // Prompts did not overlap: each prompt's messages came whole, in the order queued.
    let order: Vec<String> = fake
        .executed_nodes()
        .iter()
        .filter(|n| n.class_type == "KSampler")
        .map(|n| n.prompt_id.clone())
        .collect();
    assert_eq!(order, ids);
    // The checkpoint and the prompts are the same each time: only the sampler and after ran again.
    assert_eq!(
        progress[0],
        [
            "progress 1/4",
            "progress 2/4",
            "progress 3/4",
            "progress 4/4"
        ]
    );
    let sampler = fake.node_inputs(&ids[1], "3").unwrap();
    assert_eq!(sampler["seed"], 22);
    assert_eq!(sampler["steps"], 4);
    assert_eq!(
        sampler["cfg"],
        json!(8.0),
        "converted to FLOAT like ComfyUI"
    );
    assert_eq!(sampler["denoise"], json!(1.0));
    assert_eq!(sampler["sampler_name"], "euler");
    assert_eq!(sampler["positive"], json!(["6", 0]));
    assert_eq!(
        fake.node_inputs(&ids[0], "6").unwrap()["text"],
        "a watercolor cat"
    );
    assert_eq!(fake.node_inputs(&ids[0], "7").unwrap()["text"], "blurry");
    assert!(fake.node_inputs(&ids[1], "6").is_none(), "cached");
    let files: Vec<String> = ids
        .iter()
        .map(|id| {
            fake.history(id).unwrap()["outputs"]["9"]["images"][0]["filename"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        files,
        [
            "ComfyUI_00001_.png",
            "ComfyUI_00002_.png",
            "ComfyUI_00003_.png"
        ]
    );
}

#[tokio::test]
async fn the_same_graph_and_file_runs_nothing_again() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let picture = pictures::png(16, 16, 9);
    let name = upload_ok(&fake, "in.png", &picture).await;
    let first = queue_ok(&fake, &invert_graph(&name), "c").await;
    until_done(&mut ws, &first).await;
    let second = queue_ok(&fake, &invert_graph(&name), "c").await;
    let messages = until_done(&mut ws, &second).await;
    let cached = messages
        .iter()
        .find(|m| m["type"] == "execution_cached")
        .unwrap();
    assert_eq!(cached["data"]["nodes"], json!(["1", "2", "3"]));
    assert!(
        !outline(&messages)
            .iter()
            .any(|m| m.starts_with("executing \"")),
        "nothing ran: {messages:?}"
    );
    let executed = messages.iter().find(|m| m["type"] == "executed").unwrap();
    assert_eq!(
        executed["data"]["output"]["images"][0]["filename"],
        "ComfyUI_00001_.png"
    );
    assert!(fake.executed_nodes().iter().all(|n| n.prompt_id == first));
    let old = fake.history(&first).unwrap()["outputs"].clone();
    assert_eq!(fake.history(&second).unwrap()["outputs"], old);

    // The same bytes under a new name are new work (how a client avoids stale results).
    let renamed = upload_ok(&fake, "job-2.png", &picture).await;
    let third = queue_ok(&fake, &invert_graph(&renamed), "c").await;
    let messages = until_done(&mut ws, &third).await;
    assert!(outline(&messages).contains(&"executing \"3\"".to_string()));
    assert_eq!(
        fake.history(&third).unwrap()["outputs"]["3"]["images"][0]["filename"],
        "ComfyUI_00002_.png"
    );
    // Other bytes under the old name (uploaded with overwrite) are new work too.
    upload(
        &fake,
        "in.png",
        &pictures::png(16, 16, 10),
        &[("overwrite", "true")],
    )
    .await;
    let fourth = queue_ok(&fake, &invert_graph(&name), "c").await;
    until_done(&mut ws, &fourth).await;
    assert!(fake.node_inputs(&fourth, "1").is_some());
}

#[tokio::test]
async fn an_img2img_graph_gives_the_picture_back_and_records_the_sampler() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let picture = pictures::png(64, 48, 3);
    let name = upload_ok(&fake, "in.png", &picture).await;
    let id = queue_ok(&fake, &img2img_graph(&name), "c").await;
    let messages = until_done(&mut ws, &id).await;
    assert_eq!(
        outline(&messages)
            .iter()
            .filter(|m| m.starts_with("progress"))
            .count(),
        3
    );
    let entry = fake.history(&id).unwrap();
    let result = output_image(&fake, &entry, "9").await;
    assert_eq!(rgb(&result), rgb(&picture));
    let sampler = fake.node_inputs(&id, "3").unwrap();
    assert_eq!(sampler["denoise"], json!(0.6));
    assert_eq!(sampler["latent_image"], json!(["11", 0]));
    assert_eq!(
        fake.node_inputs(&id, "4").unwrap()["ckpt_name"],
        "v1-5-pruned-emaonly.safetensors"
    );

    // Like ComfyUI's VAE, the encoder cuts each side down to a multiple of 8, centred.
    let odd = pictures::png(70, 50, 4);
    let name = upload_ok(&fake, "odd.png", &odd).await;
    let id = queue_ok(&fake, &img2img_graph(&name), "c").await;
    until_done(&mut ws, &id).await;
    let result = rgb(&output_image(&fake, &fake.history(&id).unwrap(), "9").await);
    assert_eq!(result.dimensions(), (64, 48));
    let source = rgb(&odd);
    assert_eq!(result.get_pixel(0, 0), source.get_pixel(3, 1));
}

#[tokio::test]
async fn two_save_nodes_give_two_outputs_and_prefixes_count_apart() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let picture = pictures::png(8, 8, 1);
    let name = upload_ok(&fake, "in.png", &picture).await;
    let mut graph = invert_graph(&name);
    graph["4"] = json!({"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "drawdrop/plain"}});
    let id = queue_ok(&fake, &graph, "c").await;
    let messages = until_done(&mut ws, &id).await;
    assert_eq!(
        messages.iter().filter(|m| m["type"] == "executed").count(),
        2
    );
    let entry = fake.history(&id).unwrap();
    assert_eq!(
        entry["outputs"]["3"]["images"],
        json!([{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}])
    );
    assert_eq!(
        entry["outputs"]["4"]["images"],
        json!([{"filename": "plain_00001_.png", "subfolder": "drawdrop", "type": "output"}])
    );
    assert_eq!(rgb(&output_image(&fake, &entry, "4").await), rgb(&picture));
    assert_ne!(rgb(&output_image(&fake, &entry, "3").await), rgb(&picture));
    assert_eq!(
        fake.files("output"),
        ["ComfyUI_00001_.png", "drawdrop/plain_00001_.png"]
    );
}

#[tokio::test]
async fn image_scale_resamples_like_pytorch() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let picture = pictures::png(4, 4, 7);
    let name = upload_ok(&fake, "in.png", &picture).await;
    let source = rgb(&picture);
    let scaled = |method: &str, width: u32, height: u32| {
        json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": method, "width": width, "height": height, "crop": "disabled"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": method}},
        })
    };
    let id = queue_ok(&fake, &scaled("nearest-exact", 8, 0), "c").await;
    until_done(&mut ws, &id).await;
    let up = rgb(&output_image(&fake, &fake.history(&id).unwrap(), "3").await);
    assert_eq!(up.dimensions(), (8, 8), "height follows the aspect");
    for (x, y, pixel) in up.enumerate_pixels() {
        assert_eq!(pixel, source.get_pixel(x / 2, y / 2));
    }
    let id = queue_ok(&fake, &scaled("bilinear", 2, 2), "c").await;
    until_done(&mut ws, &id).await;
    let down = rgb(&output_image(&fake, &fake.history(&id).unwrap(), "3").await);
    let mut unlike_nearest = 0;
    for (x, y, pixel) in down.enumerate_pixels() {
        for c in 0..3 {
            // Halving: each output sits midway between four inputs (weights 0.5 x 0.5).
            let at =
                |dx: u32, dy: u32| f32::from(source.get_pixel(2 * x + dx, 2 * y + dy).0[c]) / 255.0;
            let value =
                0.5 * (0.5 * at(0, 0) + 0.5 * at(1, 0)) + 0.5 * (0.5 * at(0, 1) + 0.5 * at(1, 1));
            assert_eq!(pixel.0[c], (255.0 * value) as u8, "{x},{y}");
            unlike_nearest +=
                usize::from(pixel.0[c] != source.get_pixel(2 * x + 1, 2 * y + 1).0[c]);
        }
    }
    assert!(unlike_nearest > 0);
}

#[tokio::test]
async fn an_execution_error_is_reported_and_the_next_prompt_succeeds() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    fake.fail_next_prompts(1, "CUDA error: out of memory");
    let failed = queue_ok(&fake, &invert_graph(&name), "c").await;
    let messages = until_done(&mut ws, &failed).await;
    assert_eq!(
        outline(&messages)[2..],
        [
            "execution_start",
            "execution_cached",
            "executing \"1\"",
            "execution_error",
            "status 0",
            "executing null"
        ]
    );
    let error = &messages
        .iter()
        .find(|m| m["type"] == "execution_error")
        .unwrap()["data"];
    assert_eq!(error["prompt_id"], failed.as_str());
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["node_type"], "LoadImage");
    assert_eq!(error["exception_message"], "CUDA error: out of memory\n");
    assert_eq!(error["exception_type"], "RuntimeError");
    assert!(error["traceback"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(error["current_inputs"], json!({"image": [name]}));
    let entry = fake.history(&failed).unwrap();
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);
    assert_eq!(entry["status"]["messages"][2][0], "execution_error");
    assert_eq!(entry["outputs"], json!({}));

    let retried = queue_ok(&fake, &invert_graph(&name), "c").await;
    until_done(&mut ws, &retried).await;
    assert_eq!(
        fake.history(&retried).unwrap()["status"]["status_str"],
        "success"
    );

    // A file that is not a picture passes validation (it exists) and fails when it loads.
    let broken = upload_ok(&fake, "broken.png", b"not a picture at all").await;
    let id = queue_ok(&fake, &invert_graph(&broken), "c").await;
    let messages = until_done(&mut ws, &id).await;
    let error = &messages
        .iter()
        .find(|m| m["type"] == "execution_error")
        .unwrap()["data"];
    assert_eq!(error["exception_type"], "PIL.UnidentifiedImageError");
    assert_eq!(
        error["exception_message"],
        "cannot identify image file '/ComfyUI/input/broken.png'\n"
    );
    assert_eq!(fake.counters().prompts_executed, 3);
}

#[tokio::test]
async fn a_scripted_failure_waits_for_a_prompt_that_runs_something() {
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    let first = queue_ok(&fake, &invert_graph(&name), "c").await;
    until_done(&mut ws, &first).await;
    fake.fail_next_prompts(1, "boom");
    // Wholly cached: nothing runs, nothing can raise.
    let cached = queue_ok(&fake, &invert_graph(&name), "c").await;
    until_done(&mut ws, &cached).await;
    assert_eq!(
        fake.history(&cached).unwrap()["status"]["status_str"],
        "success"
    );
    let mut graph = invert_graph(&name);
    graph["3"]["inputs"]["filename_prefix"] = json!("other");
    let id = queue_ok(&fake, &graph, "c").await;
    let messages = until_done(&mut ws, &id).await;
    let error = &messages
        .iter()
        .find(|m| m["type"] == "execution_error")
        .unwrap()["data"];
    assert_eq!(
        error["node_id"], "3",
        "the first node not served from the cache"
    );
    assert_eq!(error["executed"], json!([]));
    assert_eq!(error["current_outputs"], json!(["1", "2"]));
    assert_eq!(fake.history(&id).unwrap()["status"]["status_str"], "error");
}

#[tokio::test]
async fn a_websocket_cut_after_n_messages_leaves_the_prompt_running() {
    let fake = FakeComfyUi::start().await;
    fake.set_step_delay(Duration::from_millis(10));
    fake.cut_websockets_after(Some(4));
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let id = queue_ok(&fake, &txt2img_graph(5, 3), "c").await;
    let mut got = 1;
    while next_message(&mut ws).await.is_some() {
        got += 1;
    }
    assert_eq!(got, 4, "the greeting and three more, then the cut");
    fake.wait_executed(1, PATIENCE).await;
    assert_eq!(
        fake.history(&id).unwrap()["status"]["status_str"],
        "success"
    );
    assert!(
        fake.wait_until(PATIENCE, |f| f.counters().ws_open == 0)
            .await
    );

    // A new socket under the same id hears the next prompt (and is cut in turn).
    fake.cut_websockets_after(None);
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let next = queue_ok(&fake, &txt2img_graph(6, 3), "c").await;
    until_done(&mut ws, &next).await;
    assert_eq!(fake.counters().ws_connections, 2);
}

#[tokio::test]
async fn the_websocket_pongs_closes_cleanly_and_tells_a_returning_client_its_node() {
    use futures_util::SinkExt as _;
    let fake = FakeComfyUi::start().await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(matches!(pong, Some(Ok(Message::Pong(ref p))) if p.as_ref() == b"are you there"));

    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    fake.hang_next_prompts(1);
    let id = queue_ok(&fake, &invert_graph(&name), "c").await;
    assert!(
        fake.wait_until(PATIENCE, |f| !f.executed_nodes().is_empty())
            .await
    );
    ws.close(None).await.unwrap();
    // What was sent before the close arrives, then the server's close answer ends it.
    while next_message(&mut ws).await.is_some() {}
    assert!(
        fake.wait_until(PATIENCE, |f| f.counters().ws_open == 0)
            .await
    );

    // Back under the same id while the prompt runs: the greeting, then the node it is on.
    let (mut ws, greeting) = connect(&fake, Some("c")).await;
    assert_eq!(
        greeting["data"]["status"]["exec_info"]["queue_remaining"],
        1
    );
    let current = next_message(&mut ws).await.unwrap();
    assert_eq!(current, json!({"type": "executing", "data": {"node": "1"}}));
    fake.release_hung();
    let rest = until_done(&mut ws, &id).await;
    assert!(outline(&rest).contains(&"executed \"3\"".to_string()));
}

#[tokio::test]
async fn previews_come_as_binary_frames_after_each_step() {
    let fake = FakeComfyUi::start().await;
    fake.set_previews(true);
    let (mut ws, _) = connect(&fake, Some("c")).await;
    let id = queue_ok(&fake, &txt2img_graph(1, 2), "c").await;
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        match frame.unwrap().unwrap() {
            Message::Binary(bytes) => frames.push(format!("binary {:02x?}", &bytes[..12])),
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "progress" {
                    frames.push("progress".into());
                }
                if message["type"] == "executing" && message["data"]["node"].is_null() {
                    assert_eq!(message["data"]["prompt_id"], id.as_str());
                    break;
                }
            }
            _ => {}
        }
    }
    let preview = "binary [00, 00, 00, 01, 00, 00, 00, 02, 89, 50, 4e, 47]";
    assert_eq!(frames, ["progress", preview, "progress", preview]);
}

#[tokio::test]
async fn a_stopped_server_refuses_and_comes_back_on_the_same_port_with_its_history() {
    let fake = FakeComfyUi::start().await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    let id = queue_ok(&fake, &invert_graph(&name), "c").await;
    fake.wait_executed(1, PATIENCE).await;
    let (mut ws, _) = connect(&fake, Some("c")).await;
    fake.stop().await;
    assert!(!fake.is_running());
    assert!(
        next_message(&mut ws).await.is_none(),
        "the socket went with the server"
    );
    let refused = client()
        .get(format!("{}/system_stats", fake.url()))
        .send()
        .await;
    assert!(refused.unwrap_err().is_connect());
    fake.restart().await.unwrap();
    assert_eq!(get(&fake, "/system_stats").await.status, 200);
    assert!(history(&fake, &id).await[id.as_str()].is_object());
}

#[tokio::test]
async fn scripted_http_faults_answer_once() {
    let fake = FakeComfyUi::start().await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    fake.push_http_fault("/prompt", HttpFault::Status(500));
    let answer = queue(&fake, &invert_graph(&name), "c").await;
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.text(),
        "500 Internal Server Error\n\nServer got itself in trouble"
    );
    assert_eq!(fake.counters().prompts_queued, 0);

    fake.push_http_fault("/history", HttpFault::Drop);
    let dropped = client()
        .get(format!("{}/api/history/x", fake.url()))
        .send()
        .await;
    assert!(dropped.is_err());

    fake.push_http_fault("/system_stats", HttpFault::Hang);
    let hung = client_with_timeout(Duration::from_millis(300))
        .get(format!("{}/system_stats", fake.url()))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());

    let id = queue_ok(&fake, &invert_graph(&name), "c").await;
    fake.wait_executed(1, PATIENCE).await;
    assert!(history(&fake, &id).await[id.as_str()].is_object());
    assert_eq!(get(&fake, "/system_stats").await.status, 200);
}

#[tokio::test]
async fn a_fault_source_is_asked_for_every_request_without_a_scripted_fault() {
    let fake = FakeComfyUi::start().await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    fake.set_fault_source(move |method, path| {
        seen.lock().unwrap().push(format!("{method} {path}"));
        (method == "POST" && path == "/prompt").then_some(HttpFault::Status(500))
    });
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    assert_eq!(queue(&fake, &invert_graph(&name), "c").await.status, 500);
    assert_eq!(fake.counters().prompts_queued, 0);
    // A scripted fault comes first and does not ask the source.
    fake.push_http_fault("/system_stats", HttpFault::Status(503));
    assert_eq!(get(&fake, "/api/system_stats").await.status, 503);
    assert_eq!(
        *asked.lock().unwrap(),
        ["POST /upload/image", "POST /prompt"]
    );
    assert_eq!(get(&fake, "/api/system_stats").await.status, 200);
    assert_eq!(asked.lock().unwrap().last().unwrap(), "GET /system_stats");
}

#[tokio::test]
async fn instant_mode_saves_the_uploaded_picture_as_it_is_with_the_usual_messages() {
    let fake = FakeComfyUi::start().await;
    fake.set_instant(true);
    let (mut ws, _) = connect(&fake, Some("bench")).await;
    let picture = pictures::png(40, 24, 3);
    let name = upload_ok(&fake, "in.png", &picture).await;
    let mut graph = invert_graph(&name);
    graph["4"] = json!({"class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "plain/%width%x%height%"}});
    let prompt_id = queue_ok(&fake, &graph, "bench").await;
    let messages = until_done(&mut ws, &prompt_id).await;
    assert_eq!(
        outline(&messages),
        [
            "status 1",
            "status 1",
            "execution_start",
            "execution_cached",
            "executing \"3\"",
            "executed \"3\"",
            "executing \"4\"",
            "executed \"4\"",
            "execution_success",
            "status 0",
            "executing null",
        ]
    );
    let entry = history(&fake, &prompt_id).await;
    let entry = &entry[prompt_id.as_str()];
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(
        entry["outputs"]["4"]["images"][0],
        json!({"filename": "40x24_00001_.png", "subfolder": "plain", "type": "output"})
    );
    // Nothing ran: both outputs are the upload, byte for byte (not inverted).
    assert_eq!(output_image(&fake, entry, "3").await, picture);
    assert_eq!(output_image(&fake, entry, "4").await, picture);
    assert!(fake.executed_nodes().is_empty());
    // The next prompt counts its files on.
    let again = queue_ok(&fake, &invert_graph(&name), "bench").await;
    until_done(&mut ws, &again).await;
    assert_eq!(
        history(&fake, &again).await[again.as_str()]["outputs"]["3"]["images"][0]["filename"],
        "ComfyUI_00002_.png"
    );
    // Validation still applies.
    let refused = queue(&fake, &invert_graph("missing.png"), "bench").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[0].prompt_id, prompt_id);
    assert_eq!(prompts[0].state, comfyui::PromptState::Succeeded);
    assert_eq!(prompts[0].loaded_image(), Some(name.as_str()));
    assert_eq!(prompts[0].client_id.as_deref(), Some("bench"));
}

#[tokio::test]
async fn prompts_lists_each_accepted_prompt_where_it_is() {
    let fake = FakeComfyUi::start().await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    fake.fail_next_prompts(1, "boom");
    let failed = queue_ok(&fake, &invert_graph(&name), "c").await;
    fake.wait_executed(1, PATIENCE).await;
    fake.hang_next_prompts(1);
    let running = queue_ok(&fake, &txt2img_graph(1, 1), "c").await;
    let pending = queue_ok(&fake, &txt2img_graph(2, 1), "c").await;
    assert!(
        fake.wait_until(PATIENCE, |f| f
            .prompts()
            .iter()
            .any(|p| p.state == comfyui::PromptState::Running))
            .await
    );
    let states: Vec<(String, comfyui::PromptState)> = fake
        .prompts()
        .into_iter()
        .map(|p| (p.prompt_id, p.state))
        .collect();
    use comfyui::PromptState::{Failed, Pending, Running, Succeeded};
    assert_eq!(
        states,
        [
            (failed.clone(), Failed),
            (running.clone(), Running),
            (pending.clone(), Pending)
        ]
    );
    fake.release_hung();
    fake.wait_executed(3, PATIENCE).await;
    let states: Vec<comfyui::PromptState> = fake.prompts().iter().map(|p| p.state).collect();
    assert_eq!(states, [Failed, Succeeded, Succeeded]);
    assert_eq!(fake.prompts()[1].loaded_image(), None, "txt2img loads none");
}

#[tokio::test]
async fn a_saved_picture_carries_extra_pnginfo_as_comfyui_writes_it() {
    let fake = FakeComfyUi::start().await;
    let name = upload_ok(&fake, "in.png", &pictures::png(8, 8, 1)).await;
    let body = json!({
        "prompt": invert_graph(&name),
        "prompt_id": "chosen-by-the-client",
        "client_id": "c",
        "extra_data": {"extra_pnginfo": {"workflow": {"nodes": [], "version": 0.4}}},
    });
    let answer = post_raw(&fake, "/prompt", serde_json::to_vec(&body).unwrap()).await;
    let id = answer.json()["prompt_id"].as_str().unwrap().to_string();
    assert_eq!(id, "chosen-by-the-client");
    assert_eq!(answer.json()["number"], 0);
    fake.wait_executed(1, PATIENCE).await;
    let entry = fake.history(&id).unwrap();
    let result = output_image(&fake, &entry, "3").await;
    assert_eq!(
        pictures::text_chunk(&result, "workflow").unwrap(),
        r#"{"nodes": [], "version": 0.4}"#
    );
    assert_eq!(entry["prompt"][3]["client_id"], "c");
}

#[test]
fn python_text_is_written_as_python_writes_it() {
    assert_eq!(
        python::json_dumps(&json!({"a": [1, 2.5, "é"], "b": null})),
        r#"{"a": [1, 2.5, "\u00e9"], "b": null}"#
    );
    assert_eq!(python::float_repr(1.0), "1.0");
    assert_eq!(python::float_repr(1e16), "1e+16");
    assert_eq!(python::float_repr(0.00001), "1e-05");
    assert_eq!(python::repr(&json!(["a", "it's"])), r#"['a', "it's"]"#);
    assert_eq!(python::to_int(&json!(7.9)).unwrap(), json!(7));
    assert_eq!(python::to_float(&json!("2")).unwrap(), json!(2.0));
}
