//! A fake Draw Things gRPC server (the app's API server in gRPC mode, or gRPCServerCLI) for
//! tests: tonic's server half with `ImageGenerationService`'s routes written by hand.
//!
//! It shares nothing with drawdrop's own gRPC code: its messages, its reading of the
//! configuration FlatBuffer and of the image tensor are its own, so a mistake on either side
//! shows. It checks what it gets as the real server would need it (sizes in 64-pixel units equal
//! to the tensor's, multiples of 64, `scaleFactor` 1, a raw f16 RGB tensor) and refuses the rest
//! with INVALID_ARGUMENT (the real server would crash or ignore the image), recording why.
//! A good request is answered like the real server does: signposts (text encoded, image
//! encoded, one per sampling step counting from 0, image decoded), one message with
//! `downloadSize`, then `batch_size` images, the picture inverted (255 - b), raw f16, raw
//! deflate or through a codec the test gives, in 4 MiB slices when the client asks for
//! `chunked` and the images exceed 4 MiB. With a shared secret set, `GenerateImage` without it
//! fails INTERNAL "unknown error processing request" and `Echo` answers only
//! `sharedSecretMissing`. Faults: INTERNAL, a connection cut before the images or after the
//! first image message, a hang; and
//! down ([`FakeGrpc::stop`], then [`FakeGrpc::start_on`] the same address).
//! For benchmarks, [`FakeGrpc::set_instant`] makes it as cheap as the HTTP fake's instant
//! mode: the request is still checked, but its pixels are neither decoded nor kept.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The real server's slice size, and the total above which it slices.
pub const SLICE: usize = 4 * 1024 * 1024;
/// What the real server answers on a wrong or missing shared secret.
pub const SECRET_REFUSED: &str = "unknown error processing request";

const HEADER_LEN: usize = 68;
const F16: u32 = 0x20000;
const NHWC: u32 = 2;
const ZIP: u32 = 0x217;
const FPZIP: u32 = 0xf7217;

// ---- The messages, with the numbers of imageService.proto (only the fields used). ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct GenerateRequest {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub image: Option<Bytes>,
    #[prost(int32, tag = "2")]
    pub scale_factor: i32,
    #[prost(string, tag = "5")]
    pub prompt: String,
    #[prost(string, tag = "6")]
    pub negative_prompt: String,
    #[prost(bytes = "vec", tag = "7")]
    pub configuration: Vec<u8>,
    #[prost(string, tag = "10")]
    pub user: String,
    #[prost(int32, tag = "11")]
    pub device: i32,
    #[prost(string, optional, tag = "13")]
    pub shared_secret: Option<String>,
    #[prost(bool, tag = "14")]
    pub chunked: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
struct Step {
    #[prost(int32, tag = "1")]
    step: i32,
}

/// The signpost oneof, written as the optional fields it is on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct Signpost {
    #[prost(message, optional, tag = "1")]
    text_encoded: Option<Empty>,
    #[prost(message, optional, tag = "2")]
    image_encoded: Option<Empty>,
    #[prost(message, optional, tag = "3")]
    sampling: Option<Step>,
    #[prost(message, optional, tag = "4")]
    image_decoded: Option<Empty>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GenerateResponse {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    generated_images: Vec<Bytes>,
    #[prost(message, optional, tag = "2")]
    current_signpost: Option<Signpost>,
    #[prost(message, repeated, tag = "3")]
    signposts: Vec<Signpost>,
    #[prost(int32, optional, tag = "5")]
    scale_factor: Option<i32>,
    #[prost(int64, optional, tag = "7")]
    download_size: Option<i64>,
    /// 0 LAST_CHUNK, 1 MORE_CHUNKS.
    #[prost(int32, tag = "8")]
    chunk_state: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoIn {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, optional, tag = "2")]
    shared_secret: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoOut {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(string, repeated, tag = "2")]
    files: Vec<String>,
    #[prost(bool, tag = "4")]
    shared_secret_missing: bool,
    #[prost(uint64, tag = "6")]
    server_identifier: u64,
}

// ---- What the fake is told and what it saw. ----

/// How answers are encoded.
#[derive(Clone)]
pub enum Answering {
    /// Raw f16 (the server with response compression off).
    Raw,
    /// Codec 0x217: the raw values as a raw deflate stream.
    Deflate,
    /// Codec 0xf7217, fpzip, as the server makes it by default: the f16 values widened,
    /// precision 19, nx = channels, ny = width, nz = height. Encoding is slow, so the fake
    /// remembers its last answer and sends it again for the same tensor.
    Fpzip,
}

/// A scripted misbehaviour for the next `GenerateImage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send the signposts, then fail with INTERNAL and this message (a generation error).
    Internal(String),
    /// Send the signposts, then cut the connection before the images.
    CutBeforeImages,
    /// Send the signposts, the announcement and the first image message (a whole image, or
    /// the first slice of one), then cut the connection.
    CutAfterFirstImage,
    /// Never answer; the call stays open until the client gives up.
    Hang,
}

/// The configuration fields the fake read (slot numbers of config.fbs), as present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeenConfig {
    pub start_width: Option<u16>,
    pub start_height: Option<u16>,
    pub seed: Option<u32>,
    pub steps: Option<u32>,
    pub guidance_scale: Option<f32>,
    pub strength: Option<f32>,
    pub model: Option<String>,
    pub sampler: Option<u8>,
    pub batch_count: Option<u32>,
    pub batch_size: Option<u32>,
    /// (file, weight, mode) of each LoRA.
    pub loras: Vec<(String, f32, u8)>,
    /// `sharpness` (slot 48), as an example of a field set through `[extra]`.
    pub sharpness: Option<f32>,
}

/// One `GenerateImage` as the fake received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub request: GenerateRequest,
    pub config: SeenConfig,
    /// The tensor's size and pixels (bytes, RGB), when it could be read.
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// Why the request was refused; empty when it was answered.
    pub violations: Vec<String>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    faults: VecDeque<Fault>,
    /// Image messages sent (whole images and slices).
    image_messages: usize,
    /// Benchmark mode: pixels neither decoded nor kept.
    instant: bool,
}

struct Shared {
    secret: Option<String>,
    models: Vec<String>,
    answering: Mutex<Answering>,
    /// The last fpzip answer, with the raw tensor it encodes.
    last_fpzip: Mutex<Option<(Bytes, Bytes)>>,
    state: Mutex<State>,
    connections: Mutex<Vec<Weak<Switch>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cut_all(&self) {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for switch in connections.iter().filter_map(Weak::upgrade) {
            switch.cut();
        }
    }
}

/// A running fake. Stops when dropped.
pub struct FakeGrpc {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the fake is started with.
#[derive(Clone, Default)]
pub struct Options {
    pub shared_secret: Option<String>,
    /// The models `Echo` lists (the server's `--model-browser`).
    pub models: Vec<String>,
}

impl FakeGrpc {
    /// Starts a fake on 127.0.0.1 at a free port, answering raw f16.
    pub async fn start(options: Options) -> FakeGrpc {
        FakeGrpc::start_on(options, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake gRPC server: cannot bind")
    }

    /// Starts a fake on `addr` (e.g. the address of one that was stopped).
    pub async fn start_on(options: Options, addr: SocketAddr) -> io::Result<FakeGrpc> {
        FakeGrpc::serve(options, addr, None).await
    }

    /// Starts a fake speaking TLS with this certificate (chain) and key, PEM.
    #[cfg(feature = "tls")]
    pub async fn start_tls(options: Options, certificate: &str, key: &str) -> FakeGrpc {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(certificate, key));
        FakeGrpc::serve(options, SocketAddr::from(([127, 0, 0, 1], 0)), Some(tls))
            .await
            .expect("fake gRPC server: cannot bind")
    }

    async fn serve(
        options: Options,
        addr: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> io::Result<FakeGrpc> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            secret: options.shared_secret,
            models: options.models,
            answering: Mutex::new(Answering::Raw),
            last_fpzip: Mutex::new(None),
            state: Mutex::new(State::default()),
            connections: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let incoming =
            tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |stream| {
                stream.map(|stream| {
                    // As the real server's: Nagle's delay would hold back the last
                    // segment of every message until the client's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let switch = Arc::new(Switch::default());
                    accepting
                        .connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Arc::downgrade(&switch));
                    Cuttable { stream, switch }
                })
            });
        let routes = Routes {
            shared: shared.clone(),
        };
        // grpc-swift's servers (the app's and gRPCServerCLI) aim at 8 MiB flow-control windows
        // (its `httpTargetWindowSize` default); HTTP/2's 64 KiB would stall a picture's upload
        // on window updates.
        let mut builder = tonic::transport::Server::builder()
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(8 << 20);
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|error| io::Error::other(error.to_string()))?;
        }
        let task = tokio::spawn(async move {
            let _ = builder.serve_with_incoming(routes, incoming).await;
        });
        Ok(FakeGrpc {
            shared,
            addr,
            task: Mutex::new(Some(task)),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers from now on encoded so.
    pub fn set_answering(&self, answering: Answering) {
        *self
            .shared
            .answering
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = answering;
    }

    /// Queues a fault for the next `GenerateImage`.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.state().faults.push_back(fault);
    }

    /// Benchmark mode: requests are checked as ever, but their pixels are neither decoded
    /// nor kept (`Received::pixels` and the request's image stay empty).
    pub fn set_instant(&self, on: bool) {
        self.shared.state().instant = on;
    }

    /// Every `GenerateImage` received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// Image messages sent so far (a sliced image counts each slice).
    pub fn image_messages(&self) -> usize {
        self.shared.state().image_messages
    }

    /// Down: stops listening (the port refuses once this returns) and cuts every connection.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.shared.cut_all();
    }
}

impl Drop for FakeGrpc {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.shared.cut_all();
    }
}

// ---- Connections that can be cut. ----

#[derive(Default)]
struct Switch {
    cut: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Switch {
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for waker in self
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            waker.wake();
        }
    }

    /// An error once cut; else remembers who to wake when it is.
    fn check(&self, context: &Context<'_>) -> io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset));
        }
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            wakers.push(context.waker().clone());
        }
        Ok(())
    }
}

/// A TCP connection with a switch that fails its reads and writes (a server gone).
struct Cuttable {
    stream: TcpStream,
    switch: Arc<Switch>,
}

impl Connected for Cuttable {
    type ConnectInfo = Arc<Switch>;
    fn connect_info(&self) -> Arc<Switch> {
        self.switch.clone()
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

// ---- The routes. ----

#[derive(Clone)]
struct Routes {
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type AnswerStream = Pin<Box<dyn Stream<Item = Result<GenerateResponse, Status>> + Send>>;

impl tower::Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let response = match request.uri().path() {
                "/ImageGenerationService/Echo" => {
                    let mut grpc =
                        tonic::server::Grpc::new(ProstCodec::<EchoOut, EchoIn>::default());
                    grpc.unary(Echo(shared), request).await
                }
                "/ImageGenerationService/GenerateImage" => {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                        GenerateResponse,
                        GenerateRequest,
                    >::default())
                    .max_decoding_message_size(1 << 30)
                    .max_encoding_message_size(1 << 30);
                    grpc.server_streaming(Generate(shared), request).await
                }
                other => Status::unimplemented(format!("no route {other}")).into_http(),
            };
            Ok(response)
        })
    }
}

struct Echo(Arc<Shared>);

impl tower::Service<Request<EchoIn>> for Echo {
    type Response = Response<EchoOut>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<EchoOut>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<EchoIn>) -> Self::Future {
        let request = request.into_inner();
        let reply = if self.0.secret.is_some() && request.shared_secret != self.0.secret {
            EchoOut {
                shared_secret_missing: true,
                ..Default::default()
            }
        } else {
            EchoOut {
                message: format!("HELLO {}", request.name),
                files: self.0.models.clone(),
                shared_secret_missing: false,
                server_identifier: 0x5eed,
            }
        };
        std::future::ready(Ok(Response::new(reply)))
    }
}

struct Generate(Arc<Shared>);

impl tower::Service<Request<GenerateRequest>> for Generate {
    type Response = Response<AnswerStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<AnswerStream>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<GenerateRequest>) -> Self::Future {
        let shared = self.0.clone();
        let switch = request.extensions().get::<Arc<Switch>>().cloned();
        let request = request.into_inner();
        Box::pin(async move { generate(shared, switch, request) })
    }
}

fn generate(
    shared: Arc<Shared>,
    switch: Option<Arc<Switch>>,
    request: GenerateRequest,
) -> Result<Response<AnswerStream>, Status> {
    let secret_ok = shared.secret.is_none() || request.shared_secret == shared.secret;
    let instant = shared.state().instant;
    let (received, tensor) = examine(request, !instant);
    let violations = received.violations.clone();
    let steps = received.config.steps.unwrap_or(0).min(1000);
    let batch = received.config.batch_size.unwrap_or(1);
    let chunked = received.request.chunked;
    let fault = {
        let mut state = shared.state();
        state.received.push(received);
        if secret_ok {
            state.faults.pop_front()
        } else {
            None
        }
    };
    if !secret_ok {
        return Err(Status::internal(SECRET_REFUSED));
    }
    if !violations.is_empty() {
        return Err(Status::invalid_argument(violations.join("; ")));
    }
    let (sender, receiver) = mpsc::channel::<Outgoing>(16);
    let answering = shared
        .answering
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    tokio::spawn(async move {
        if fault == Some(Fault::Hang) {
            sender.closed().await;
            return;
        }
        for message in progress(steps) {
            if sender.send(Outgoing::Message(message)).await.is_err() {
                return;
            }
        }
        match &fault {
            Some(Fault::CutBeforeImages) => {
                let _ = sender.send(Outgoing::Cut).await;
                return;
            }
            Some(Fault::Internal(message)) => {
                let _ = sender
                    .send(Outgoing::Fail(Status::internal(message.clone())))
                    .await;
                return;
            }
            _ => {}
        }
        let image = encode_answer(&shared, &answering, inverted(tensor));
        let images = vec![image; batch as usize];
        for message in image_messages(images, chunked) {
            let is_image = !message.generated_images.is_empty();
            if sender.send(Outgoing::Message(message)).await.is_err() {
                return;
            }
            if is_image {
                shared.state().image_messages += 1;
                if fault == Some(Fault::CutAfterFirstImage) {
                    let _ = sender.send(Outgoing::Cut).await;
                    return;
                }
            }
        }
    });
    let stream = ReceiverStream::new(receiver).map(move |outgoing| match outgoing {
        Outgoing::Message(message) => Ok(message),
        Outgoing::Fail(status) => Err(status),
        Outgoing::Cut => {
            if let Some(switch) = &switch {
                switch.cut();
            }
            Err(Status::unavailable("connection cut"))
        }
    });
    Ok(Response::new(Box::pin(stream) as AnswerStream))
}

enum Outgoing {
    Message(GenerateResponse),
    /// End the answer with this status.
    Fail(Status),
    /// Cut the connection here.
    Cut,
}

fn progress(steps: u32) -> Vec<GenerateResponse> {
    let marks = |which: usize| {
        let mut signpost = Signpost::default();
        match which {
            0 => signpost.text_encoded = Some(Empty {}),
            1 => signpost.image_encoded = Some(Empty {}),
            _ => signpost.image_decoded = Some(Empty {}),
        }
        signpost
    };
    let sampling = |step: u32| Signpost {
        sampling: Some(Step { step: step as i32 }),
        ..Default::default()
    };
    let mut all = vec![marks(0), marks(1)];
    all.extend((0..steps).map(sampling));
    all.push(marks(2));
    let expected = vec![
        marks(0),
        marks(1),
        sampling(steps.saturating_sub(1)),
        marks(2),
    ];
    all.into_iter()
        .enumerate()
        .map(|(at, signpost)| GenerateResponse {
            current_signpost: Some(signpost),
            signposts: if at == 0 {
                expected.clone()
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .collect()
}

/// The announcement, then the images, sliced as the real server slices them.
fn image_messages(images: Vec<Bytes>, chunked: bool) -> Vec<GenerateResponse> {
    let total: usize = images.iter().map(Bytes::len).sum();
    let slicing = chunked && total > SLICE;
    let mut messages = vec![GenerateResponse {
        download_size: Some(total as i64),
        ..Default::default()
    }];
    for image in images {
        let slices: Vec<Bytes> = if slicing {
            (0..image.len())
                .step_by(SLICE)
                .map(|at| image.slice(at..image.len().min(at + SLICE)))
                .collect()
        } else {
            vec![image]
        };
        let last = slices.len() - 1;
        for (at, slice) in slices.into_iter().enumerate() {
            messages.push(GenerateResponse {
                generated_images: vec![slice],
                scale_factor: Some(1),
                chunk_state: i32::from(at != last),
                ..Default::default()
            });
        }
    }
    messages
}

/// The tensor with every value negated: the picture inverted (-v is 255 - b).
fn inverted(tensor: Bytes) -> Bytes {
    let mut out = BytesMut::from(tensor);
    for half in out[HEADER_LEN..].chunks_exact_mut(2) {
        half[1] ^= 0x80;
    }
    out.freeze()
}

fn encode_answer(shared: &Shared, answering: &Answering, raw: Bytes) -> Bytes {
    match answering {
        Answering::Raw => raw,
        Answering::Deflate => {
            let mut out = raw[..HEADER_LEN].to_vec();
            out[..4].copy_from_slice(&ZIP.to_le_bytes());
            out.extend(miniz_oxide::deflate::compress_to_vec(&raw[HEADER_LEN..], 1));
            Bytes::from(out)
        }
        Answering::Fpzip => {
            let mut last = shared.last_fpzip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((tensor, answer)) = &*last
                && *tensor == raw
            {
                return answer.clone();
            }
            let answer = fpzip_of(&raw);
            *last = Some((raw, answer.clone()));
            answer
        }
    }
}

/// A raw f16 tensor (a header of the fake's own making) as fpzip.
fn fpzip_of(raw: &[u8]) -> Bytes {
    use drawdrop::backends::drawthings_grpc::fpzip::{Dims, encode_f16};
    let (height, width) = (word(raw, 24).unwrap_or(0), word(raw, 28).unwrap_or(0));
    let halves: Vec<u16> = raw[HEADER_LEN..]
        .chunks_exact(2)
        .map(|half| u16::from_le_bytes([half[0], half[1]]))
        .collect();
    let stream = encode_f16(&halves, Dims::image(height, width, 3))
        .expect("fpzip: the fake's own tensor encodes");
    let mut out = raw[..HEADER_LEN].to_vec();
    out[..4].copy_from_slice(&FPZIP.to_le_bytes());
    out.extend(stream);
    Bytes::from(out)
}

// ---- Reading the request its own way. ----

/// Reads and checks a request; gives what was seen (the pixels only when asked for) and the
/// tensor (empty when unreadable).
fn examine(mut request: GenerateRequest, decode_pixels: bool) -> (Received, Bytes) {
    let mut violations = Vec::new();
    if request.scale_factor != 1 {
        violations.push(format!("scaleFactor is {}, not 1", request.scale_factor));
    }
    let config = match read_config(&request.configuration) {
        Ok(config) => config,
        Err(problem) => {
            violations.push(format!("configuration: {problem}"));
            SeenConfig::default()
        }
    };
    let tensor = if decode_pixels {
        request.image.clone().unwrap_or_default()
    } else {
        request.image.take().unwrap_or_default()
    };
    let (width, height, pixels) = match read_tensor(&tensor, decode_pixels) {
        Ok(read) => read,
        Err(problem) => {
            violations.push(format!("image: {problem}"));
            (0, 0, Vec::new())
        }
    };
    if width % 64 != 0 || height % 64 != 0 {
        violations.push(format!(
            "image size {width}x{height} is not in multiples of 64"
        ));
    }
    let configured = (
        config.start_width.map(|w| u32::from(w) * 64),
        config.start_height.map(|h| u32::from(h) * 64),
    );
    if configured != (Some(width), Some(height)) {
        violations.push(format!(
            "configured size {configured:?} is not the image's {width}x{height}"
        ));
    }
    if !(1..=4).contains(&config.batch_size.unwrap_or(1)) {
        violations.push(format!("batch_size {:?} is not 1..=4", config.batch_size));
    }
    let usable = if violations.is_empty() {
        tensor
    } else {
        Bytes::new()
    };
    let received = Received {
        request,
        config,
        width,
        height,
        pixels,
        violations,
    };
    (received, usable)
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A raw f16 NHWC RGB tensor: (width, height, RGB bytes, or nothing unless `decode_pixels`).
fn read_tensor(tensor: &[u8], decode_pixels: bool) -> Result<(u32, u32, Vec<u8>), String> {
    let words: Vec<u32> = (0..17)
        .map(|at| word(tensor, at * 4))
        .collect::<Option<_>>()
        .ok_or("shorter than its header")?;
    if words[0] != 0 {
        return Err(format!(
            "codec {:#x} (the server reads raw tensors)",
            words[0]
        ));
    }
    if words[2] != NHWC || words[3] != F16 {
        return Err(format!(
            "format {} data type {:#x}, not NHWC f16",
            words[2], words[3]
        ));
    }
    if words[5] != 1 || words[8] != 3 || words[9..].iter().any(|&d| d != 0) {
        return Err(format!("dimensions {:?}, not [1, H, W, 3]", &words[5..]));
    }
    let (height, width) = (words[6], words[7]);
    let values = &tensor[HEADER_LEN..];
    if values.len() != height as usize * width as usize * 6 {
        return Err(format!(
            "{} bytes of values for {width}x{height}",
            values.len()
        ));
    }
    if !decode_pixels {
        return Ok((width, height, Vec::new()));
    }
    let pixels = values
        .chunks_exact(2)
        .map(|half| {
            ((half_value(u16::from_le_bytes([half[0], half[1]])) + 1.0) * 127.5)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    Ok((width, height, pixels))
}

/// An f16's value (finite ones; the fake never meets others from a good client).
fn half_value(half: u16) -> f32 {
    let sign = if half & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((half >> 10) & 0x1f);
    let fraction = f32::from(half & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f32.powi(-24),
        _ => (1.0 + fraction / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// A FlatBuffer table by hand: root offset, vtable, fields by slot.
struct Flat<'a> {
    buf: &'a [u8],
    table: usize,
}

impl<'a> Flat<'a> {
    fn root(buf: &'a [u8]) -> Result<Flat<'a>, String> {
        let table = word(buf, 0).ok_or("empty")? as usize;
        Flat::at(buf, table)
    }

    fn at(buf: &'a [u8], table: usize) -> Result<Flat<'a>, String> {
        let back = word(buf, table).ok_or("table out of the buffer")? as i32;
        let vtable = (table as i64 - i64::from(back)) as usize;
        buf.get(vtable..vtable + 4)
            .ok_or("vtable out of the buffer")?;
        Ok(Flat { buf, table })
    }

    fn vtable(&self) -> usize {
        (self.table as i64 - i64::from(word(self.buf, self.table).unwrap_or(0) as i32)) as usize
    }

    /// Where slot `slot`'s value is, if present.
    fn field(&self, slot: usize, len: usize) -> Result<Option<&'a [u8]>, String> {
        let vtable = self.vtable();
        let u16_at = |at: usize| {
            self.buf
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        };
        let vtable_len = u16_at(vtable).ok_or("vtable cut")?;
        let entry = 4 + 2 * slot;
        if entry + 2 > vtable_len {
            return Ok(None);
        }
        let offset = u16_at(vtable + entry).ok_or("vtable cut")?;
        if offset == 0 {
            return Ok(None);
        }
        let at = self.table + offset;
        self.buf
            .get(at..at + len)
            .map(Some)
            .ok_or_else(|| format!("slot {slot} out of the buffer"))
    }

    fn u8(&self, slot: usize) -> Result<Option<u8>, String> {
        Ok(self.field(slot, 1)?.map(|b| b[0]))
    }
    fn u16(&self, slot: usize) -> Result<Option<u16>, String> {
        Ok(self
            .field(slot, 2)?
            .map(|b| u16::from_le_bytes([b[0], b[1]])))
    }
    fn u32(&self, slot: usize) -> Result<Option<u32>, String> {
        Ok(self
            .field(slot, 4)?
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }
    fn f32(&self, slot: usize) -> Result<Option<f32>, String> {
        Ok(self.u32(slot)?.map(f32::from_bits))
    }

    /// Where an offset field points.
    fn target(&self, slot: usize) -> Result<Option<usize>, String> {
        let Some(bytes) = self.field(slot, 4)? else {
            return Ok(None);
        };
        let at = bytes.as_ptr() as usize - self.buf.as_ptr() as usize;
        Ok(Some(
            at + u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
        ))
    }

    fn string(&self, slot: usize) -> Result<Option<String>, String> {
        let Some(at) = self.target(slot)? else {
            return Ok(None);
        };
        let len = word(self.buf, at).ok_or("string out of the buffer")? as usize;
        let bytes = self
            .buf
            .get(at + 4..at + 4 + len)
            .ok_or("string out of the buffer")?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| format!("slot {slot}: not UTF-8"))
    }

    fn tables(&self, slot: usize) -> Result<Vec<Flat<'a>>, String> {
        let Some(at) = self.target(slot)? else {
            return Ok(Vec::new());
        };
        let count = word(self.buf, at).ok_or("vector out of the buffer")? as usize;
        (0..count)
            .map(|index| {
                let entry = at + 4 + 4 * index;
                let offset = word(self.buf, entry).ok_or("vector out of the buffer")? as usize;
                Flat::at(self.buf, entry + offset)
            })
            .collect()
    }
}

/// The configuration's fields at their config.fbs slots.
fn read_config(buffer: &[u8]) -> Result<SeenConfig, String> {
    let flat = Flat::root(buffer)?;
    let loras = flat
        .tables(20)?
        .into_iter()
        .map(|lora| {
            Ok((
                lora.string(0)?.unwrap_or_default(),
                lora.f32(1)?.unwrap_or(0.6),
                lora.u8(2)?.unwrap_or(0),
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(SeenConfig {
        start_width: flat.u16(1)?,
        start_height: flat.u16(2)?,
        seed: flat.u32(3)?,
        steps: flat.u32(4)?,
        guidance_scale: flat.f32(5)?,
        strength: flat.f32(6)?,
        model: flat.string(7)?,
        sampler: flat.u8(8)?,
        batch_count: flat.u32(9)?,
        batch_size: flat.u32(10)?,
        loras,
        sharpness: flat.f32(48)?,
    })
}
