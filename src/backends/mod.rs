//! Talking to img2img servers: Draw Things' strict API and AUTOMATIC1111-compatible ones.
//!
//! `request` builds bodies in either dialect, `http` sends them and sorts failures,
//! `answer` reads images and error reasons out of what comes back, `progress` asks how far a
//! request is.

pub mod a1111;
pub mod answer;
pub mod drawthings_grpc;
pub mod drawthings_http;
pub mod http;
pub mod request;
pub mod stream;

pub use http::{Client, Disposition, Probe, SendError, is_loopback};

/// How messages name a server of this kind: "waiting for Draw Things at ...".
pub fn product_name(api: crate::config::Api) -> &'static str {
    match api {
        crate::config::Api::DrawThings => "Draw Things",
        crate::config::Api::A1111 => "the A1111 server",
    }
}
