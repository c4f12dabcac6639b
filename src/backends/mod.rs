//! The seam between the pipeline and the servers. Every kind of server is a [`Backend`]: is
//! it up ([`Backend::probe`]), what does it offer ([`Backend::offer`], for `check`), and one
//! job — its request in the server's own words ([`Backend::request`], [`Backend::encode`]),
//! generated into result pictures with progress on the way ([`Backend::generate`]) or a
//! [`Trouble`] saying whether to wait, retry or fail. The pipeline (workers, the pool,
//! retries, hand-overs, the outbox) never looks at a dialect: a new kind of server is a new
//! folder here and one line in [`for_server`].
//!
//! Kinds: `drawthings_http` (Draw Things' HTTP API) and `a1111` (AUTOMATIC1111-compatible
//! servers). What the HTTP kinds share: `http` (the client: requests, auth, failures sorted)
//! and `sdapi` (the `/sdapi/v1/img2img` JSON request both speak, and its answer read as it
//! streams in). `drawthings_grpc` holds the wire of Draw Things' gRPC API (messages,
//! configuration, tensors, fpzip), the pieces a gRPC kind is built from.

pub mod a1111;
pub mod drawthings_grpc;
pub mod drawthings_http;
pub mod http;
pub mod sdapi;
mod trouble;

pub use trouble::{Disposition, Trouble};

use crate::config::{Api, Server, Settings};
use crate::image::Limits;
use crate::report::live::Reporter;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future a backend returns (boxed, so backends of every kind sit behind one type).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One server, whatever its kind.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The server as the config describes it.
    fn server(&self) -> &Server;

    /// How messages name this kind of server: "waiting for Draw Things at ...".
    fn product(&self) -> &'static str;

    /// What to check when it does not answer, for a person: `" — is Draw Things open ...?"`.
    fn hint_when_down(&self) -> &'static str;

    /// Whether it answers now.
    fn probe(&self) -> BoxFuture<'_, Probe>;

    /// What it offers, as far as it tells (or as far as its kind is known), for `check`.
    /// `answers`: the probe found it up (a server that does not answer is not asked).
    fn offer(&self, answers: bool) -> BoxFuture<'_, Offer>;

    /// One job's request in this server's words: `settings` (a profile's, with the picture's
    /// sidecars) at `size` with `seed`.
    fn request(&self, settings: &Settings, size: (u32, u32), seed: u32) -> Request;

    /// The request as it goes on the wire, with the init picture (a PNG at the request's
    /// size). Blocking work: the pipeline calls it off the async threads, one job ahead.
    fn encode(&self, request: &Request, init_png: &[u8]) -> Bytes;

    /// Sends one job and reads its result pictures (PNGs), telling progress on the way.
    fn generate<'a>(&'a self, job: Generation<'a>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>>;
}

/// The backend for `server`: the one place where kinds are chosen.
pub fn for_server(server: &Server) -> Result<Arc<dyn Backend>, Unusable> {
    Ok(match server.api {
        Api::DrawThings => Arc::new(drawthings_http::DrawThingsHttp::new(server)?),
        Api::A1111 => Arc::new(a1111::A1111::new(server)?),
    })
}

/// A backend cannot be made for the server as configured (its client cannot be built).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// What a readiness probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The server answers; with what it says of itself, for `check` (`": its current model is
    /// X, size 1024x1024"`), or nothing.
    Up(String),
    /// It does not (yet): why, for a person.
    Down(String),
}

/// What a server offers, for `check`; `None` where it does not tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offer {
    pub models: Option<Vec<String>>,
    pub samplers: Option<Vec<String>>,
    pub loras: Option<Vec<String>>,
    /// The request keys `[extra]` may use, and what the server answers any other with;
    /// `None`: any.
    pub keys: Option<(Vec<String>, &'static str)>,
    /// The lists are known from the kind's source rather than asked of this server: a
    /// finding names the kind and lists what there is.
    pub known_by_kind: bool,
}

/// One job's request in a server's words, made by [`Backend::request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The settings sent (seed and size included): recorded in `jobs.jsonl`, and sent again
    /// unchanged by a retry.
    pub settings: Map<String, Value>,
    /// The model named in the request; `None`: the server's current one.
    pub model: Option<String>,
    /// The least number of pictures a good answer holds.
    pub expected_images: usize,
}

/// One job for [`Backend::generate`].
pub struct Generation<'a> {
    pub request: &'a Request,
    /// [`Backend::encode`]'s bytes.
    pub body: Bytes,
    /// The largest picture an answer may hold.
    pub limits: &'a Limits,
    /// Where progress goes (for `status`).
    pub progress: &'a Reporter,
}
