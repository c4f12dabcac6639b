//! The fake ComfyUI's websocket, `/ws?clientId=ID`: the upgrade answer, then one task per
//! socket sending the JSON messages queued for its id (text frames; previews as binary frames), answering pings and a
//! close, and the `feature_flags` handshake a client may open with. A socket registered under an
//! id replaces the one before it, and a socket that ends unregisters its id — even when a newer
//! socket took the id meanwhile, as ComfyUI's `websocket_handler` does.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Shared, Socket};

/// Answers the upgrade request (`key`: its `Sec-WebSocket-Key`) and serves the socket.
pub async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    key: &str,
    client_id: Option<String>,
) {
    let accept = derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let mut socket = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    let (sender, mut queued) = mpsc::unbounded_channel::<Message>();
    let sid = client_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| super::uuid4().replace('-', ""));
    let cut_after = shared.register_socket(&sid, Socket { sender });
    let mut sent = 0usize;
    let mut first_message = true;
    loop {
        tokio::select! {
            message = queued.recv() => {
                let Some(frame) = message else { break };
                if socket.send(frame).await.is_err() {
                    break;
                }
                sent += 1;
                if cut_after.is_some_and(|n| sent >= n) {
                    // Cut: the TCP connection goes away without a close frame.
                    shared.unregister_socket(&sid);
                    return;
                }
            }
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let parsed: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if first_message && parsed["type"] == "feature_flags" {
                        shared.send_to_socket(&sid, "feature_flags", server_features());
                    }
                    first_message = false;
                }
                Some(Ok(Message::Close(_))) => {
                    let _ = socket.close(None).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    shared.unregister_socket(&sid);
}

/// `comfy_api.feature_flags.SERVER_FEATURE_FLAGS`.
fn server_features() -> Value {
    json!({"supports_preview_metadata": true, "max_upload_size": 104857600})
}
