//! Draw Things' gRPC API as a backend (`api = "drawthings-grpc"`: the app's API server in gRPC
//! mode, and gRPCServerCLI), and its wire: messages, client, generation configuration and
//! image tensors.
//!
//! # The backend
//!
//! The profile's keys are recorded in their Draw Things names (as over HTTP) and written into
//! the configuration (`job`); the init picture goes as a raw f16 tensor of exactly the
//! configured size, made piece by piece as it is sent (never whole: it is twice the size of the
//! pixels). The server ignores `batch_count`, so drawdrop asks once per image, the seed moved
//! on by one for each, as the app does. Answers are read as they arrive, whatever their codec
//! (a raw tensor's slices turned into pixels as they come, never gathered), and written as
//! PNGs; sampling signposts are the job's progress. Probe: `Echo`, which also
//! tells whether the shared secret is right and, when the server browses them, its models.
//!
//! # The service
//!
//! One proto3 service, `ImageGenerationService`, declared without a package, so its methods are
//! at `/ImageGenerationService/<Method>`. drawdrop uses two of them:
//!
//! - `Echo` (unary): `EchoRequest { name, sharedSecret }` -> `EchoReply`. The probe. A server
//!   with a shared secret answers a wrong or missing one with OK and only
//!   `sharedSecretMissing = true`; otherwise `message` is `"HELLO <name>"`, and `files` lists
//!   the server's models when it lets clients browse them.
//! - `GenerateImage` (server streaming): one `ImageGenerationRequest` -> a stream of
//!   `ImageGenerationResponse`. The request carries the init image as a tensor
//!   ([`tensor`]), `scaleFactor` 1, the prompts, the configuration as a FlatBuffer
//!   ([`config`]), the shared secret and `chunked`. The server generates at the image's own size
//!   (it never compares it with the configuration), so the image must be exactly the configured
//!   size, in multiples of 64. A wrong or missing secret fails the call with INTERNAL
//!   ("unknown error processing request"); a failed generation too.
//!
//! The answer stream: progress messages (`currentSignpost`: text encoded, image encoded,
//! sampling step N counting from 0, image decoded, ...; `signposts` with the whole expected
//! set; an optional preview), then one message with only `downloadSize` (the bytes of all
//! encoded images), then the images, one message each. With `chunked` set and more than 4 MiB
//! of images in all, an image over 4 MiB comes in 4 MiB slices, `chunkState = MORE_CHUNKS`
//! on all but the last (`LAST_CHUNK`). A generation that makes no image (cancelled, missing
//! model) ends with one message holding only `scaleFactor`. Messages can be far larger than
//! gRPC's customary 4 MiB limit, so the client raises it ([`client::MAX_MESSAGE_BYTES`]).
//!
//! Modules: `messages` (the prost messages) · `client` (tonic, without generated code) ·
//! `incoming` (an answer's bytes split into messages and fields as they arrive) · `answer`
//! (an answer stream back into images and progress) · `config` (the
//! `GenerationConfiguration` FlatBuffer) · `tensor` (image tensors: header, f16/f32, zip and
//! fpzip, through [`crate::backends::drawthings_grpc::fpzip`]).

pub mod answer;
pub mod client;
pub mod config;
pub mod fpzip;
pub mod incoming;
mod job;
pub mod messages;
#[cfg(feature = "tls")]
mod root_ca;
pub mod tensor;

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use tonic::{Code, Status};

use super::drawthings_http::{self, known};
use super::sdapi::request;
use super::{
    Backend, BoxFuture, Generation, Init, InitForm, Offer, Probe, Request, Trouble, Unusable,
};
use crate::config::{Server, Settings};
use crate::report::live::Progress;
use answer::{AnswerError, Assembler, Keep};
use client::{Client, Framed};
use messages::{EchoReply, EchoRequest, Signpost};

/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the server is told the client's name is (`Echo` answers `HELLO drawdrop`).
const CLIENT_NAME: &str = "drawdrop";
/// gRPC's INVALID_ARGUMENT and UNAUTHENTICATED, for failures drawdrop finds itself.
const INVALID_ARGUMENT: i32 = Code::InvalidArgument as i32;
const UNAUTHENTICATED: i32 = Code::Unauthenticated as i32;

/// A Draw Things server speaking gRPC.
#[derive(Debug)]
pub struct DrawThingsGrpc {
    server: Server,
    /// Made on first use: its channel needs the async runtime, which `check` and the daemon
    /// start only after the backends are made.
    client: OnceLock<Client>,
}

impl DrawThingsGrpc {
    pub fn new(server: &Server) -> Result<DrawThingsGrpc, Unusable> {
        client::check_address(url_of(server)).map_err(|problem| Unusable(problem.to_string()))?;
        Ok(DrawThingsGrpc {
            server: server.clone(),
            client: OnceLock::new(),
        })
    }

    /// The client (sharing one connection); only called on the async runtime.
    fn client(&self) -> Result<Client, Trouble> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let trust = match &self.server.ca_file {
            Some(authorities) => client::Trust::Authorities(&authorities.pem),
            None => client::Trust::DrawThings,
        };
        let client = Client::new(url_of(&self.server), CONNECT_TIMEOUT, trust)
            .map_err(|problem| Trouble::Unreachable(problem.to_string()))?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    fn secret(&self) -> Option<&str> {
        self.server
            .shared_secret
            .as_ref()
            .map(|secret| secret.0.as_str())
    }

    /// `Echo`, within the probe's time.
    async fn echo(&self) -> Result<EchoReply, String> {
        let request = EchoRequest {
            name: CLIENT_NAME.to_owned(),
            shared_secret: self.secret().map(str::to_owned),
        };
        let mut client = self.client().map_err(|trouble| trouble.to_string())?;
        match tokio::time::timeout(PROBE_TIMEOUT, client.echo(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(status)) => Err(status_text(&status)),
            Err(_) => Err(format!(
                "no answer to Echo within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    /// Why the server refuses our secret, for a person; `None` when it takes it.
    fn secret_problem(&self, reply: &EchoReply) -> Option<String> {
        reply.shared_secret_missing.then(|| match &self.server.shared_secret {
            None => "it wants a shared secret: set `shared_secret_env` in [server] to the name of                      an environment variable holding the secret the server was started with"
                .to_owned(),
            Some(_) => "it refuses the shared secret drawdrop sends: the variable named by                         `shared_secret_env` must hold the secret the server was started with"
                .to_owned(),
        })
    }

    /// One generation (one image of a job, or `batch_size` of them).
    async fn one(
        &self,
        message: Framed,
        job: &Generation<'_>,
        model: Option<&str>,
    ) -> Result<Vec<Vec<u8>>, Trouble> {
        let max_pixels = job.limits.max_pixels;
        // f32 RGB values for every pixel of every image, plus headers.
        let batch = message_batch(job);
        let limit = max_pixels.saturating_mul(12).saturating_mul(batch) + (1 << 20);
        let mut client = self.client()?;
        let stream = match client.generate_framed(message).await {
            Ok(stream) => stream,
            Err(status) if status.code() == Code::Unavailable => {
                return Err(Trouble::Unreachable(status_text(&status)));
            }
            Err(status) => return Err(self.answer_trouble(AnswerError::Status(status)).await),
        };
        let mut assembler = Assembler::new(limit, Keep::Pictures { max_pixels });
        let mut steps = None;
        let read = stream
            .read(&mut assembler, |message, signpost| {
                if steps.is_none() {
                    steps = last_sampling_step(&message.signposts).map(|last| last + 1);
                }
                if let Some(Signpost::Sampling(at)) = signpost {
                    let steps = steps.or_else(|| job_steps(job)).unwrap_or(0);
                    let step = u32::try_from(at.step).unwrap_or(0) + 1;
                    job.progress.report(Progress::Step {
                        step: step.min(steps.max(step)),
                        steps: steps.max(step),
                    });
                }
            })
            .await;
        let answer = match read.and_then(|()| assembler.finish()) {
            Ok(answer) => answer,
            Err(problem) => return Err(self.answer_trouble(problem).await),
        };
        if answer.pictures.is_empty() {
            return Err(self.no_images(model).await);
        }
        answer
            .pictures
            .into_iter()
            .enumerate()
            .map(|(at, picture)| job::png_of(picture, at + 1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Trouble::BadAnswer)
    }

    /// A status the server answered with, sorted: a refused secret (INTERNAL on the real
    /// server) is found with `Echo` and waits, as refused credentials do; UNAVAILABLE once
    /// the call got through is a server gone in the middle of the answer.
    async fn answer_trouble(&self, problem: AnswerError) -> Trouble {
        match problem {
            AnswerError::Status(status) if status.code() == Code::Internal => {
                match self.echo().await.map(|reply| self.secret_problem(&reply)) {
                    Ok(Some(secret)) => Trouble::Rpc {
                        code: UNAUTHENTICATED,
                        detail: format!("the server {secret}"),
                    },
                    _ => rpc(&status),
                }
            }
            AnswerError::Status(status) if status.code() == Code::Unavailable => {
                Trouble::Lost(status_text(&status))
            }
            AnswerError::Status(status) => rpc(&status),
            AnswerError::ConnectionLost(why) => Trouble::Lost(why),
            cut @ AnswerError::CutShort { .. } => Trouble::Lost(cut.to_string()),
            other => Trouble::BadAnswer(other.to_string()),
        }
    }

    /// An answer without images: the real server's answer to a model it does not have (or a
    /// cancelled generation). A model missing from the models it lists fails the file.
    async fn no_images(&self, model: Option<&str>) -> Trouble {
        if let (Some(model), Ok(reply)) = (model, self.echo().await)
            && !reply.files.is_empty()
            && !reply.files.iter().any(|file| file == model)
        {
            return Trouble::Rpc {
                code: INVALID_ARGUMENT,
                detail: format!("the server has no model {model:?}"),
            };
        }
        Trouble::BadAnswer(
            "the server's answer holds no image (the generation was cancelled, or the server \
             lacks the model)"
                .to_owned(),
        )
    }
}

impl Backend for DrawThingsGrpc {
    fn server(&self) -> &Server {
        &self.server
    }

    fn product(&self) -> &'static str {
        "Draw Things"
    }

    fn hint_when_down(&self) -> &'static str {
        " — is Draw Things open with its API server on in gRPC mode (same port), or gRPCServerCLI running?"
    }

    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async {
            match self.echo().await {
                Ok(reply) => match self.secret_problem(&reply) {
                    Some(problem) => Probe::Down(format!("the server answers, but {problem}")),
                    None if reply.files.is_empty() => Probe::Up(String::new()),
                    None => Probe::Up(format!(": {}", models_in_brief(&reply.files))),
                },
                Err(reason) => Probe::Down(reason),
            }
        })
    }

    fn offer(&self, answers: bool) -> BoxFuture<'_, Offer> {
        Box::pin(async move {
            let models = match answers {
                true => self
                    .echo()
                    .await
                    .ok()
                    .filter(|reply| !reply.files.is_empty())
                    .map(|reply| reply.files),
                false => None,
            };
            Offer {
                models,
                samplers: Some(
                    known::SAMPLERS
                        .iter()
                        .map(|name| (*name).to_owned())
                        .collect(),
                ),
                ..Offer::default()
            }
        })
    }

    fn check_settings(&self, settings: &Settings, _offer: &Offer) -> Vec<String> {
        let recorded = request::request(drawthings_http::keys(settings), settings, (64, 64), 0);
        job::extra_problems(&recorded.settings)
    }

    fn request(&self, settings: &Settings, size: (u32, u32), seed: u32) -> Result<Request, String> {
        request::refuse_workflow(settings)?;
        let request = request::request(drawthings_http::keys(settings), settings, size, seed);
        job::configuration(&request.settings, seed)?;
        Ok(request)
    }

    fn init_form(&self) -> InitForm {
        InitForm::Pixels
    }

    fn encode(&self, request: &Request, init: Init<'_>) -> Result<Bytes, String> {
        job::init_pixels(&request.settings, init.pixels()?)
    }

    fn generate<'a>(
        &'a self,
        mut job: Generation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>> {
        Box::pin(async move {
            let refused = |detail: String| Trouble::Rpc {
                code: INVALID_ARGUMENT,
                detail,
            };
            // Taken, not shared: the request's megabytes are freed once the last image's
            // request is on its way.
            let mut pixels = std::mem::take(&mut job.body);
            let settings = &job.request.settings;
            let count = settings
                .get("batch_count")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1)
                .clamp(1, u64::from(u32::MAX)) as u32;
            let timeout = self.server.timeout;
            let mut images = Vec::new();
            for index in 0..count {
                let message =
                    job::request(settings, &pixels, self.secret(), index).map_err(refused)?;
                if index + 1 == count {
                    // The last request holds the pixels now: they go once it is sent.
                    pixels = Bytes::new();
                }
                let model = job.request.model.as_deref();
                match tokio::time::timeout(timeout, self.one(message, &job, model)).await {
                    Ok(answer) => images.extend(answer?),
                    Err(_) => return Err(Trouble::TimedOut(timeout)),
                }
            }
            Ok(images)
        })
    }
}

/// The models a server lists, for `check`: the first few by name.
fn models_in_brief(models: &[String]) -> String {
    const SHOWN: usize = 8;
    let names = models[..models.len().min(SHOWN)].join(", ");
    match models.len() {
        1 => format!("its model is {names}"),
        count if count <= SHOWN => format!("its {count} models are {names}"),
        count => format!("its {count} models include {names}"),
    }
}

/// The server's address as the client takes it (`http://host:port`).
fn url_of(server: &Server) -> &str {
    server.url.as_str().trim_end_matches('/')
}

/// The images one generation makes (`batch_size`).
fn message_batch(job: &Generation<'_>) -> u64 {
    job.request
        .settings
        .get("batch_size")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1)
        .max(1)
}

/// The steps the profile asks for, when the server does not say.
fn job_steps(job: &Generation<'_>) -> Option<u32> {
    job.request
        .settings
        .get("steps")
        .and_then(serde_json::Value::as_u64)
        .and_then(|steps| u32::try_from(steps).ok())
}

/// The last sampling step (counting from 0) among the signposts the server expects to pass.
fn last_sampling_step(expected: &[messages::ImageGenerationSignpost]) -> Option<u32> {
    expected
        .iter()
        .filter_map(|signpost| match signpost.signpost {
            Some(Signpost::Sampling(at)) => u32::try_from(at.step).ok(),
            _ => None,
        })
        .max()
}

/// A status as a [`Trouble`].
fn rpc(status: &Status) -> Trouble {
    Trouble::Rpc {
        code: status.code() as i32,
        detail: status_text(status),
    }
}

/// A status as a person reads it: its message, or its code when it has none.
fn status_text(status: &Status) -> String {
    match status.message() {
        "" => super::rpc_name(status.code() as i32).to_owned(),
        message => message.to_owned(),
    }
}
