//! Following a queued prompt to its end: ComfyUI's websocket (`/ws?clientId=`) tells its
//! progress (`progress`: step N of M, into `status`) and when it is done (`executing` with
//! `node: null`), so its history is read at once; without a websocket (it could not be
//! opened, or dropped) the history is polled instead, so the job is never lost. The history
//! entry then says the outcome: the saved images, or ComfyUI's `exception_message`.

use super::client;
use crate::backends::{Trouble, http};
use crate::config::Workflow;
use crate::report::live::{Progress, Reporter};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How often the history is asked while no websocket tells when a prompt is done.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long opening the websocket may take before the history is polled instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open websocket to ComfyUI.
pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the websocket for `client_id`; `None` when it cannot be (the history is polled then).
pub(super) async fn connect(client: &http::Client, client_id: &str) -> Option<Socket> {
    let mut url = client.endpoint("ws");
    url.query_pairs_mut().append_pair("clientId", client_id);
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).ok()?;
    let mut request = url.as_str().into_client_request().ok()?;
    if let Some(auth) = &client.server().auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", auth.username, auth.password));
        let value = format!("Basic {token}").parse().ok()?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, _))) => Some(socket),
        Ok(Err(error)) => {
            tracing::debug!("no websocket to ComfyUI ({error}): its history is polled");
            None
        }
        Err(_) => None,
    }
}

/// Waits until prompt `prompt_id` is done and returns its history entry.
pub(super) async fn until_done(
    client: &http::Client,
    socket: Option<Socket>,
    prompt_id: &str,
    progress: &Reporter,
) -> Result<Value, Trouble> {
    if let Some(mut socket) = socket {
        if let Some(entry) = watch(client, &mut socket, prompt_id, progress).await? {
            return Ok(entry);
        }
        tracing::debug!("ComfyUI's websocket closed: polling the history of {prompt_id}");
    }
    loop {
        if let Some(entry) = client::history(client, prompt_id).await? {
            return Ok(entry);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Reads the websocket until ComfyUI says the prompt is done and its history holds it;
/// `None` when the socket ends first.
async fn watch(
    client: &http::Client,
    socket: &mut Socket,
    prompt_id: &str,
    progress: &Reporter,
) -> Result<Option<Value>, Trouble> {
    while let Some(message) = socket.next().await {
        let Ok(Message::Text(text)) = message else {
            if message.is_err() {
                return Ok(None);
            }
            // Binary frames are previews; pings are answered by the library.
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let data = &event["data"];
        if data["prompt_id"].as_str() != Some(prompt_id) {
            continue;
        }
        match event["type"].as_str() {
            Some("progress") => {
                let number = |key: &str| data[key].as_u64().and_then(|n| u32::try_from(n).ok());
                if let (Some(step), Some(steps)) = (number("value"), number("max")) {
                    progress.report(Progress::Step { step, steps });
                }
            }
            // ComfyUI writes the history, then says `executing` with no node.
            Some("executing") if data["node"].is_null() => {
                if let Some(entry) = client::history(client, prompt_id).await? {
                    return Ok(Some(entry));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The result files a finished prompt's history lists, node by node in the order of the
/// workflow's `SaveImage` nodes; or why it failed.
pub(super) fn outcome(workflow: &Workflow, entry: &Value) -> Result<Vec<Value>, Trouble> {
    let status = &entry["status"];
    if status["status_str"].as_str() == Some("error") {
        return Err(Trouble::BadAnswer(execution_error(workflow, status)));
    }
    let outputs = &entry["outputs"];
    let images: Vec<Value> = workflow
        .output_nodes()
        .into_iter()
        .flat_map(|node| {
            outputs[node]["images"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if images.is_empty() {
        return Err(Trouble::BadAnswer(format!(
            "ComfyUI ran the workflow {} but its SaveImage nodes saved no image",
            workflow.name()
        )));
    }
    Ok(images)
}

/// ComfyUI's own words for a prompt that failed while it ran (`execution_error`).
fn execution_error(workflow: &Workflow, status: &Value) -> String {
    let messages = status["messages"].as_array().into_iter().flatten();
    for message in messages {
        let (Some(kind), data) = (message[0].as_str(), &message[1]) else {
            continue;
        };
        match kind {
            "execution_error" => {
                let node = data["node_id"].as_str().unwrap_or("?");
                let name = match workflow.class(node) {
                    Some(_) => workflow.describe(node),
                    None => format!(
                        "node {node} ({})",
                        data["node_type"].as_str().unwrap_or("?")
                    ),
                };
                let exception = data["exception_message"].as_str().unwrap_or("").trim();
                let kind = data["exception_type"].as_str().unwrap_or("error");
                return format!("ComfyUI failed at {name}: {kind}: {exception}");
            }
            "execution_interrupted" => return "the prompt was interrupted in ComfyUI".to_owned(),
            _ => {}
        }
    }
    "ComfyUI reports an error but no message".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workflow::tests::txt2img;
    use serde_json::json;
    use std::path::Path;

    fn workflow() -> Workflow {
        Workflow::parse(&txt2img().to_string(), Path::new("/p/w.json")).unwrap()
    }

    #[test]
    fn the_history_says_the_images_or_the_error() {
        let done = json!({"outputs": {"9": {"images": [
            {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": []}});
        let images = outcome(&workflow(), &done).unwrap();
        assert_eq!(images[0]["filename"], "ComfyUI_00001_.png");
        let failed = json!({"outputs": {}, "status": {"status_str": "error", "completed": false,
            "messages": [["execution_start", {"prompt_id": "p"}],
                ["execution_error", {"prompt_id": "p", "node_id": "3", "node_type": "KSampler",
                 "exception_message": "CUDA out of memory\n", "exception_type": "RuntimeError"}]]}});
        assert_eq!(
            outcome(&workflow(), &failed).unwrap_err().to_string(),
            "ComfyUI failed at node 3 (KSampler): RuntimeError: CUDA out of memory"
        );
        let nothing = json!({"outputs": {}, "status": {"status_str": "success"}});
        assert!(outcome(&workflow(), &nothing).is_err());
    }
}
