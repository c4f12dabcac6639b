//! The seam between the pipeline and the servers. Every kind of server is a [`Backend`]: is
//! it up ([`Backend::probe`]), what does it offer ([`Backend::offer`], for `check`), and one
//! job — its request in the server's own words ([`Backend::request`], [`Backend::encode`]),
//! generated into result pictures with progress on the way ([`Backend::generate`]) or a
//! [`Trouble`] saying whether to wait, retry or fail. The pipeline (workers, the pool,
//! retries, hand-overs, the outbox) never looks at a dialect: a new kind of server is a new
//! folder here and one line in [`for_server`].
//!
//! Kinds: `drawthings_http` (Draw Things' HTTP API), `a1111` (AUTOMATIC1111-compatible
//! servers), `comfyui` (a profile's ComfyUI workflow) and `drawthings_grpc` (Draw Things'
//! gRPC API). What the HTTP kinds share: `http` (the client: requests, auth, failures sorted)
//! and `sdapi` (the `/sdapi/v1/img2img` JSON request both speak, and its answer read as it
//! streams in). `drawthings_grpc` holds, beside its backend, the wire of Draw Things' gRPC API
//! (messages, configuration, tensors, fpzip).

pub(crate) mod a1111;
pub(crate) mod comfyui;
pub mod drawthings_grpc;
pub mod drawthings_http;
pub(crate) mod http;
pub(crate) mod sdapi;
mod trouble;

pub use crate::image::Limits;
pub use trouble::{Disposition, Trouble, rpc_name};

use crate::config::{Api, Server, Settings, Workflow};
use crate::image;
use crate::report::live::Reporter;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::borrow::Cow;
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

    /// The size to send a picture of `upright` size at: the size rule (multiples of 64,
    /// `max_megapixels`, the profile's `width`/`height`) unless the kind sizes otherwise.
    fn size(&self, upright: (u32, u32), settings: &Settings) -> (u32, u32) {
        standard_size(upright, settings)
    }

    /// One job's request in this server's words: `settings` (a profile's, with the picture's
    /// sidecars) at `size` with `seed`; `Err`: why these settings cannot go to this kind of
    /// server (the file fails with it).
    fn request(&self, settings: &Settings, size: (u32, u32), seed: u32) -> Result<Request, String>;

    /// What keeps `settings` from running on this server, found in what it `offer`s (for
    /// `check`); the kinds whose requests carry only the profile's keys have nothing to add.
    fn check_settings(&self, _settings: &Settings, _offer: &Offer) -> Vec<String> {
        Vec::new()
    }

    /// The form in which this kind of server takes the init picture: the pipeline makes it
    /// so (a PNG, unless the kind says pixels).
    fn init_form(&self) -> InitForm {
        InitForm::Png
    }

    /// The request's body, with the init picture at the request's size, in the
    /// [`Backend::init_form`] the kind asked for: the bytes that go on the wire, or a form the
    /// kind turns into them as it sends (gRPC's tensor, twice the size of the pixels, is made
    /// of them as it goes). Blocking work: the pipeline calls it off the async threads, one
    /// job ahead.
    /// `Err`: why no request can be made of it (drawdrop's own failure; the file fails).
    fn encode(&self, request: &Request, init: Init<'_>) -> Result<Bytes, String>;

    /// Sends one job and reads its result pictures (PNGs), telling progress on the way.
    fn generate<'a>(&'a self, job: Generation<'a>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>>;
}

/// How a kind of server takes the init picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitForm {
    /// An encoded PNG (what the HTTP APIs and ComfyUI's upload take).
    Png,
    /// Decoded 8-bit pixels (what a tensor is made of): no PNG is made only to be read back.
    Pixels,
}

/// The init picture at a request's size, upright: a PNG already so is its own bytes; pixels
/// are in sRGB, and the backend's to keep (no copy of them is made).
#[derive(Debug, Clone)]
pub enum Init<'a> {
    /// A PNG.
    Png(&'a [u8]),
    /// 8-bit RGB or RGBA pixels.
    Pixels(::image::DynamicImage),
}

impl<'a> Init<'a> {
    /// The picture as a PNG (pixels are encoded).
    pub(crate) fn png(self) -> Result<Cow<'a, [u8]>, String> {
        match self {
            Init::Png(png) => Ok(Cow::Borrowed(png)),
            Init::Pixels(pixels) => image::pixels_png(&pixels)
                .map(Cow::Owned)
                .map_err(|problem| problem.to_string()),
        }
    }

    /// The picture as pixels (a PNG is decoded).
    pub(crate) fn pixels(self) -> Result<::image::DynamicImage, String> {
        match self {
            Init::Pixels(pixels) => Ok(pixels),
            Init::Png(png) => ::image::load_from_memory_with_format(png, ::image::ImageFormat::Png)
                .map_err(|problem| format!("the PNG to send cannot be read back: {problem}")),
        }
    }
}

/// The backend for `server`: the one place where kinds are chosen.
pub fn for_server(server: &Server) -> Result<Arc<dyn Backend>, Unusable> {
    Ok(match server.api {
        Api::DrawThings => Arc::new(drawthings_http::DrawThingsHttp::new(server)?),
        Api::A1111 => Arc::new(a1111::A1111::new(server)?),
        Api::ComfyUi => Arc::new(comfyui::ComfyUi::new(server)?),
        Api::DrawThingsGrpc => Arc::new(drawthings_grpc::DrawThingsGrpc::new(server)?),
    })
}

/// The size rule every kind uses unless it sizes otherwise ([`Backend::size`]).
pub fn standard_size(upright: (u32, u32), settings: &Settings) -> (u32, u32) {
    let max_megapixels = settings
        .max_megapixels
        .unwrap_or(image::DEFAULT_MAX_MEGAPIXELS);
    image::target_size(
        upright,
        (settings.width, settings.height),
        image::pixels_for_megapixels(max_megapixels),
    )
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
    /// Everything the server says it can run, in its own words (ComfyUI's `/object_info`),
    /// for the kind's [`Backend::check_settings`].
    pub catalog: Option<Arc<Value>>,
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
    /// The workflow to run, with the job's settings in it (kinds that run one).
    pub workflow: Option<Workflow>,
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
    /// Where the backend notes what it sent, so that a restart finds it again.
    pub journal: &'a dyn Journal,
}

/// A job's durable notebook for its backend, kept with the job's claim: what was sent for it
/// (ComfyUI's prompt id), noted before it is sent, so that after a crash the job is looked
/// up on the server instead of being sent twice. A note is the server's own: another
/// server of a pool sees none.
pub trait Journal: Send + Sync {
    /// What this server's backend noted for the job (in this run or before a restart).
    fn noted(&self) -> Option<String>;
    /// Notes `what`, durably (it survives a crash), replacing an earlier note.
    fn note<'a>(&'a self, what: &'a str) -> BoxFuture<'a, Result<(), String>>;
}
