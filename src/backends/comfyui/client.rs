//! ComfyUI's HTTP routes as drawdrop uses them (see docs/protocols.md): the picture uploaded
//! (`POST /upload/image`, multipart), the graph queued (`POST /prompt` with a client id and
//! a prompt id chosen here), its history read (`GET /history/<id>`), whether it still waits
//! (`GET /queue`), and each result fetched (`GET /view`). Every failure is a [`Trouble`];
//! a refused graph (400 with `node_errors`) quotes each node with its id, type and title.

use crate::backends::Trouble;
use crate::backends::http;
use crate::backends::sdapi::answer::error_detail;
use crate::config::Workflow;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

/// Uploads `png` as `name` into ComfyUI's input folder; the name ComfyUI gives it (another
/// file of that name with other bytes makes it `name (1).png`).
pub(super) async fn upload(
    client: &http::Client,
    name: &str,
    png: &[u8],
) -> Result<String, Trouble> {
    let boundary = format!("drawdrop-{:032x}", fastrand::u128(..));
    let body = multipart(&boundary, name, png);
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, answer) = client
        .call(Method::POST, "upload/image", Some((&content_type, body)))
        .await?;
    let answer = ok_json(status, &answer)?;
    answer["name"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Trouble::BadAnswer("ComfyUI's upload answer names no file".to_owned()))
}

/// The multipart form ComfyUI's upload takes: the picture, `type` input, `overwrite` false.
fn multipart(boundary: &str, name: &str, png: &[u8]) -> Bytes {
    let quoted = name.replace(['"', '\r', '\n'], "_");
    let mut body = Vec::with_capacity(png.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{quoted}\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(png);
    for (field, value) in [("type", "input"), ("overwrite", "false")] {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Bytes::from(body)
}

/// Queues `graph` as prompt `prompt_id` for `client_id`'s websocket; the id ComfyUI runs it
/// under (the one asked for, where ComfyUI lets the client choose it).
pub(super) async fn queue(
    client: &http::Client,
    workflow: &Workflow,
    graph: &Value,
    client_id: &str,
    prompt_id: &str,
) -> Result<String, Trouble> {
    let body = json!({"prompt": graph, "client_id": client_id, "prompt_id": prompt_id});
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let (status, answer) = client
        .call(Method::POST, "prompt", Some(("application/json", body)))
        .await?;
    if status == 400 {
        return Err(Trouble::Status {
            code: 400,
            detail: refusal(workflow, &answer),
            retry_after: None,
        });
    }
    let answer = ok_json(status, &answer)?;
    Ok(answer["prompt_id"].as_str().unwrap_or(prompt_id).to_owned())
}

/// ComfyUI's reasons for refusing a graph: each node's errors, named by id, type and title.
pub(super) fn refusal(workflow: &Workflow, answer: &[u8]) -> String {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return error_detail(answer);
    };
    let said = |error: &Value| {
        let message = error["message"].as_str().unwrap_or("refused");
        match error["details"].as_str().filter(|d| !d.is_empty()) {
            Some(details) => format!("{message}: {details}"),
            None => message.to_owned(),
        }
    };
    let mut reasons = Vec::new();
    if let Some(nodes) = answer["node_errors"].as_object() {
        for (id, node) in nodes {
            let errors: Vec<String> = node["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(said)
                .collect();
            let name = match workflow.class(id) {
                Some(_) => workflow.describe(id),
                None => format!("node {id} ({})", node["class_type"].as_str().unwrap_or("?")),
            };
            reasons.push(format!("{name}: {}", errors.join("; ")));
        }
    }
    if reasons.is_empty() {
        reasons.push(said(&answer["error"]));
    }
    reasons.join("; ")
}

/// The history entry of `prompt_id`; `None` while it is not done (ComfyUI answers `{}`).
pub(super) async fn history(
    client: &http::Client,
    prompt_id: &str,
) -> Result<Option<Value>, Trouble> {
    let (status, answer) = client
        .call(Method::GET, &format!("history/{prompt_id}"), None)
        .await?;
    let mut answer = ok_json(status, &answer)?;
    Ok(answer
        .get_mut(prompt_id)
        .map(Value::take)
        .filter(|entry| !entry.is_null()))
}

/// Whether `prompt_id` is running or waiting in ComfyUI's queue.
pub(super) async fn in_queue(client: &http::Client, prompt_id: &str) -> Result<bool, Trouble> {
    let (status, answer) = client.call(Method::GET, "queue", None).await?;
    let answer = ok_json(status, &answer)?;
    let listed = |list: &Value| {
        list.as_array()
            .into_iter()
            .flatten()
            .any(|item| item.get(1).and_then(Value::as_str) == Some(prompt_id))
    };
    Ok(listed(&answer["queue_running"]) || listed(&answer["queue_pending"]))
}

/// One result file (`{"filename", "subfolder", "type"}` of the history).
pub(super) async fn view(client: &http::Client, image: &Value) -> Result<Vec<u8>, Trouble> {
    let text = |key: &str| image[key].as_str().unwrap_or_default();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("filename", text("filename"))
        .append_pair("subfolder", text("subfolder"))
        .append_pair("type", image["type"].as_str().unwrap_or("output"))
        .finish();
    let (status, answer) = client
        .call(Method::GET, &format!("view?{query}"), None)
        .await?;
    if status != 200 {
        return Err(status_trouble(status, &answer));
    }
    Ok(answer.to_vec())
}

/// A 200 answer's JSON, else the status as a trouble.
fn ok_json(status: u16, answer: &[u8]) -> Result<Value, Trouble> {
    if status != 200 {
        return Err(status_trouble(status, answer));
    }
    serde_json::from_slice(answer)
        .map_err(|error| Trouble::BadAnswer(format!("ComfyUI's answer is not JSON ({error})")))
}

fn status_trouble(status: u16, answer: &[u8]) -> Trouble {
    Trouble::Status {
        code: status,
        detail: error_detail(answer),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workflow::tests::txt2img;
    use std::path::Path;

    #[test]
    fn a_refusal_names_each_node() {
        let workflow = Workflow::parse(&txt2img().to_string(), Path::new("/p/w.json")).unwrap();
        let answer = json!({
            "error": {"type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"6": {"errors": [{"type": "required_input_missing",
                "message": "Required input is missing", "details": "clip",
                "extra_info": {"input_name": "clip"}}],
                "dependent_outputs": ["9"], "class_type": "CLIPTextEncode"}}
        });
        assert_eq!(
            refusal(&workflow, answer.to_string().as_bytes()),
            "node 6 (CLIPTextEncode, \"Positive\"): Required input is missing: clip"
        );
        let no_outputs = json!({"error": {"type": "prompt_no_outputs",
            "message": "Prompt has no outputs", "details": "", "extra_info": {}},
            "node_errors": []});
        assert_eq!(
            refusal(&workflow, no_outputs.to_string().as_bytes()),
            "Prompt has no outputs"
        );
    }

    #[test]
    fn the_upload_is_a_multipart_form() {
        let body = multipart("B", "drawdrop-1.png", b"\x89PNG");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"drawdrop-1.png\"\r\n"
        ));
        assert!(text.contains("name=\"type\"\r\n\r\ninput\r\n--B"));
        assert!(text.ends_with("\r\n--B--\r\n"));
    }
}
