//! A fake of the two image servers drawdrop talks to — Draw Things' HTTP API and
//! AUTOMATIC1111's — for tests, and for trying drawdrop without a GPU.
//!
//! It is an independent re-implementation of how the real servers speak img2img (see
//! docs/protocols.md, taken from the servers' own source) and deliberately does not use the
//! `drawdrop` crate, so that it can check it. It owns a small HTTP/1.1 layer (keep-alive,
//! `Content-Length` bodies, one write per answer, `TCP_NODELAY`) so that faults can be injected
//! precisely: a status, a dropped connection, a hang, a broken or cut body.
//!
//! Answers are cheap and checkable: when the init image already has the answer's size, each
//! returned image is the init image's exact bytes plus one `tEXt` chunk (keyword
//! [`TAG_KEYWORD`]) saying which request and image it is; otherwise a small, freshly encoded PNG
//! of the right size (carrying the same chunk).
//!
//! Use it from an integration test with `#[path = "common/fake_server.rs"] mod fake_server;`
//! (or through `mod common;`), and from an example with
//! `#[path = "../tests/common/fake_server.rs"] mod fake_server;`.
#![allow(dead_code)]

#[path = "serving.rs"]
mod serving;

use serving::{Running, lock};

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Keyword of the `tEXt` chunk the fake adds to every image it returns.
pub const TAG_KEYWORD: &str = "fake-server";
/// The model Draw Things reports as its current one (`GET /`).
pub const DT_DEFAULT_MODEL: &str = "sd_xl_base_1.0_f16.ckpt";
/// The checkpoint A1111 reports as its current one (`GET /sdapi/v1/options`).
pub const A1111_DEFAULT_MODEL: &str = "v1-5-pruned-emaonly.safetensors [6ce0161689]";
/// The samplers Draw Things accepts (`sampler` and its aliases), in the app's order.
pub const DT_SAMPLERS: &[&str] = &[
    "DPM++ 2M Karras",
    "Euler a",
    "DDIM",
    "PLMS",
    "DPM++ SDE Karras",
    "UniPC",
    "LCM",
    "Euler A Substep",
    "DPM++ SDE Substep",
    "TCD",
    "Euler A Trailing",
    "DPM++ SDE Trailing",
    "DPM++ 2M AYS",
    "Euler A AYS",
    "DPM++ SDE AYS",
    "DPM++ 2M Trailing",
    "DDIM Trailing",
    "UniPC Trailing",
    "UniPC AYS",
    "TCD Trailing",
];
/// The seed modes Draw Things accepts (`seed_mode`).
pub const DT_SEED_MODES: &[&str] = &[
    "Legacy",
    "Torch CPU Compatible",
    "Scale Alike",
    "NVIDIA GPU Compatible",
];

/// Largest request head (request line and headers) the fake reads.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the fake reads.
const MAX_BODY: usize = 1 << 30;
/// Most images one answer may hold (Draw Things allows 100 x 4).
const MAX_IMAGES: usize = 400;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Which server the fake plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Draw Things' HTTP API server: strict keys, ranges and sizes, 422 errors, `{"images"}` only.
    DrawThings,
    /// AUTOMATIC1111's API (`--api --nowebui`), optionally behind `--api-auth user:pass`.
    A1111 {
        /// HTTP basic credentials required on every route, when set.
        auth: Option<(String, String)>,
    },
}

/// A scripted misbehaviour for the next img2img request (see [`FakeServer::push_fault`]).
///
/// Every fault except [`Fault::Hang`] waits its turn in the server's one-at-a-time queue and
/// then the configured delay, as a generation would, before acting. Faults skip validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an error JSON in the flavor's format; `retry_after` adds a
    /// `Retry-After: N` header.
    Status {
        /// HTTP status code.
        code: u16,
        /// The `detail` of the error JSON.
        detail: String,
        /// Seconds for a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Read the request, then drop the connection without a byte (the server crashed or
    /// restarted mid-request).
    CloseWithoutAnswer,
    /// Never answer; the connection stays open until the client gives up or the server stops.
    /// It does not hold the queue: later requests are served.
    Hang,
    /// 200 with a consistent `Content-Length`, but the JSON is cut in the middle.
    TruncatedJson,
    /// 200 whose headers promise the whole body, then the connection closes half way through.
    CloseMidBody,
    /// 200 `{"images": []}`.
    EmptyImages,
    /// 200 with image strings that are not base64.
    BadBase64,
    /// 200 with valid base64 of bytes that are not a PNG (a JPEG header).
    NotPng,
    /// 200 with this many (valid) images instead of the right number.
    ImageCount(usize),
}

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Which connection it came on (1, 2, ... in accept order): equal numbers mean keep-alive.
    pub conn: u64,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent (path and any query).
    pub path: String,
    /// Headers in the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as received.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `init_images[0]` decoded from base64 (a `data:...;base64,` prefix is skipped).
    pub fn init_image(&self) -> Option<Vec<u8>> {
        let json = self.json();
        let text = json.get("init_images")?.get(0)?.as_str()?;
        BASE64.decode(strip_data_url(text)).ok()
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The path without its query string.
    pub fn route(&self) -> &str {
        route_of(&self.path)
    }

    /// Whether this is `POST /sdapi/v1/img2img`.
    pub fn is_img2img(&self) -> bool {
        self.method == "POST" && self.route() == "/sdapi/v1/img2img"
    }
}

/// Called once per request with the request and the status answered (`None`: no answer, the
/// connection was dropped or is hanging).
pub type Observer = Arc<dyn Fn(&Recorded, Option<u16>) + Send + Sync>;

/// Chooses a fault for an img2img request when none is scripted (see
/// [`FakeServer::set_fault_source`]); `None` answers normally.
pub type FaultSource = Box<dyn FnMut() -> Option<Fault> + Send>;

/// How the fake answered one img2img request (see [`FakeServer::img2img_answers`]).
#[derive(Clone, Debug)]
pub struct Answered {
    /// The request.
    pub request: Recorded,
    /// The fault it got (scripted or from the fault source), if any.
    pub fault: Option<Fault>,
    /// The status answered (`None`: dropped or hanging). Recorded when the answer is ready,
    /// whether or not the client was still there to read it.
    pub status: Option<u16>,
}

impl Answered {
    /// A real generation answered with 200: the images the request asked for.
    pub fn is_good(&self) -> bool {
        self.fault.is_none() && self.status == Some(200)
    }
}

/// A running fake server. Cloning gives another handle to the same server; the server stops
/// when the last handle is dropped (or at [`FakeServer::stop`]).
#[derive(Clone)]
pub struct FakeServer {
    handle: Arc<Handle>,
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServer")
            .field("flavor", &self.handle.shared.flavor)
            .field("addr", &self.handle.addr)
            .finish()
    }
}

impl FakeServer {
    /// Starts a fake on `127.0.0.1` at a free port. Panics if it cannot bind.
    pub async fn start(flavor: Flavor) -> FakeServer {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(flavor, any_port)
            .await
            .expect("fake server: cannot bind 127.0.0.1:0")
    }

    /// Starts a fake listening on `addr` (port 0: a free one).
    pub async fn start_on(flavor: Flavor, addr: SocketAddr) -> io::Result<FakeServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(flavor));
        let running = spawn_listener(shared.clone(), listener);
        let handle = Handle {
            shared,
            addr,
            running: Mutex::new(Some(running)),
        };
        Ok(FakeServer {
            handle: Arc::new(handle),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    /// The address it listens on (kept across [`FakeServer::stop`] / [`FakeServer::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Which server it plays.
    pub fn flavor(&self) -> &Flavor {
        &self.handle.shared.flavor
    }

    /// Every request received so far, in order (whatever its route or outcome).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared().state().requests.clone()
    }

    /// The `POST /sdapi/v1/img2img` requests received so far, in order.
    pub fn img2img_requests(&self) -> Vec<Recorded> {
        let state = self.shared().state();
        state
            .requests
            .iter()
            .filter(|r| r.is_img2img())
            .cloned()
            .collect()
    }

    /// Queues a fault: the next img2img requests get the queued faults, first in first out,
    /// then normal answers again.
    pub fn push_fault(&self, fault: Fault) {
        self.shared().state().faults.push_back(fault);
    }

    /// Faults queued and not yet used.
    pub fn pending_faults(&self) -> usize {
        self.shared().state().faults.len()
    }

    /// For benchmarks: img2img is answered at once with the init image as the one result
    /// (written with Swift's `\/` escapes, as Draw Things writes it), without parsing the
    /// JSON or checking anything, so the fake is never the bottleneck. Bodies above 64 KiB
    /// are recorded empty to keep the fake's memory flat.
    pub fn set_instant(&self, on: bool) {
        self.shared().state().instant = on;
    }

    /// Asks `source` for a fault for every img2img request that finds no scripted fault
    /// queued (random faults for fault suites; seed it for replayable runs).
    pub fn set_fault_source(&self, source: impl FnMut() -> Option<Fault> + Send + 'static) {
        self.shared().state().fault_source = Some(Box::new(source));
    }

    /// Every img2img request answered (or dropped) so far, with its fault and status, in
    /// the order the answers were ready (a hanging request as soon as it starts to hang).
    pub fn img2img_answers(&self) -> Vec<Answered> {
        self.shared().state().answers.clone()
    }

    /// Every img2img answer (and fault) waits this long after its turn comes: a simulated
    /// generation. Validation errors are answered at once, as the app does.
    pub fn set_delay(&self, delay: Duration) {
        self.shared().state().delay = delay;
    }

    /// Answer pictures that look made from the init image (posterized, tinted, one tint per
    /// image) instead of its bytes: for the gallery's screenshot.
    pub fn set_stylize(&self, on: bool) {
        self.shared().state().stylize = on;
    }

    /// Draw Things: the model files it knows; a request naming another gets 422
    /// `Unrecognized model name`. An empty list (the default) accepts any model.
    pub fn set_models(&self, models: &[&str]) {
        self.shared().state().models = models.iter().map(|m| m.to_string()).collect();
    }

    /// Draw Things: the app's current canvas size, used when a request sends no
    /// `width`/`height` (default 512 x 512). Also reported by `GET /`.
    pub fn set_app_size(&self, width: u32, height: u32) {
        self.shared().state().app_size = (width, height);
    }

    /// Calls `observer` after each request is handled (used by the example to log).
    pub fn set_observer(&self, observer: impl Fn(&Recorded, Option<u16>) + Send + Sync + 'static) {
        self.shared().state().observer = Some(Arc::new(observer));
    }

    /// Stops listening and drops every open connection (the server "closed"). When it
    /// returns, new connections are refused. Queued faults and recorded requests stay.
    pub async fn stop(&self) {
        let running = lock(&self.handle.running).take();
        if let Some(running) = running {
            running.stop().await;
        }
    }

    /// Listens again on the same address after [`FakeServer::stop`] (no-op when running).
    pub async fn restart(&self) -> io::Result<()> {
        if lock(&self.handle.running).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.handle.addr).await?;
        let running = spawn_listener(self.handle.shared.clone(), listener);
        let mut slot = lock(&self.handle.running);
        match *slot {
            None => *slot = Some(running),
            Some(_) => running.token.cancel(),
        }
        Ok(())
    }

    /// Whether it is listening (started and not stopped).
    pub fn is_running(&self) -> bool {
        lock(&self.handle.running).is_some()
    }

    /// img2img requests being handled now: received and not yet answered (waiting for their
    /// turn, generating, or hanging until the client disconnects).
    pub fn in_flight(&self) -> usize {
        self.shared().state().in_flight
    }

    /// The most img2img requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared().state().max_in_flight
    }

    /// Waits until at least `n` img2img requests were received and returns them all.
    /// Panics after `timeout`.
    pub async fn wait_img2img(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let done = self
            .wait_until(timeout, |s| s.img2img_requests().len() >= n)
            .await;
        let got = self.img2img_requests();
        assert!(
            done,
            "fake server: expected {n} img2img requests within {timeout:?}, got {}",
            got.len()
        );
        got
    }

    /// Waits until exactly `n` img2img requests are in flight. Panics after `timeout`.
    pub async fn wait_in_flight(&self, n: usize, timeout: Duration) {
        let done = self.wait_until(timeout, |s| s.in_flight() == n).await;
        assert!(
            done,
            "fake server: expected {n} img2img requests in flight within {timeout:?}, got {}",
            self.in_flight()
        );
    }

    /// Waits until `condition` holds (checked at every request and in-flight change);
    /// false if `timeout` passed first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&FakeServer) -> bool,
    ) -> bool {
        serving::wait_until(&self.shared().changes, timeout, || condition(self)).await
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state, listener and connections
// ---------------------------------------------------------------------------------------------

/// What the handles own; dropping the last one stops the listener.
struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.token.cancel();
        }
    }
}

/// State shared by the handles and the connection tasks.
struct Shared {
    flavor: Flavor,
    state: Mutex<State>,
    /// The app's one queue: generations run one at a time.
    queue: tokio::sync::Mutex<()>,
    /// Bumped at every recorded request and in-flight change, for the waits.
    changes: watch::Sender<u64>,
    next_conn: AtomicU64,
}

struct State {
    requests: Vec<Recorded>,
    faults: VecDeque<Fault>,
    delay: Duration,
    models: Vec<String>,
    app_size: (u32, u32),
    in_flight: usize,
    max_in_flight: usize,
    observer: Option<Observer>,
    /// Benchmarks: answer img2img at once with the init image, skip every check.
    instant: bool,
    fault_source: Option<FaultSource>,
    answers: Vec<Answered>,
    /// A1111: the generation in its delay now (when it began, how long, its steps), for
    /// `GET /sdapi/v1/progress`.
    generating: Option<(std::time::Instant, Duration, u32)>,
    /// Answer a picture that looks made (see [`stylized`]) instead of the init image's bytes.
    stylize: bool,
}

impl Shared {
    fn new(flavor: Flavor) -> Shared {
        Shared {
            flavor,
            state: Mutex::new(State {
                requests: Vec::new(),
                faults: VecDeque::new(),
                delay: Duration::ZERO,
                models: Vec::new(),
                app_size: (512, 512),
                in_flight: 0,
                max_in_flight: 0,
                observer: None,
                instant: false,
                fault_source: None,
                answers: Vec::new(),
                generating: None,
                stylize: false,
            }),
            queue: tokio::sync::Mutex::new(()),
            changes: watch::channel(0).0,
            next_conn: AtomicU64::new(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Stores a request; returns its number among the requests to the same route (1-based).
    fn record(&self, rec: &Recorded) -> usize {
        let number = {
            let mut state = self.state();
            state.requests.push(rec.clone());
            state
                .requests
                .iter()
                .filter(|r| r.method == rec.method && r.route() == rec.route())
                .count()
        };
        self.bump();
        number
    }
}

/// Counts one img2img request as in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        {
            let mut state = shared.state();
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
        }
        shared.bump();
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state().in_flight -= 1;
        self.0.bump();
    }
}

fn spawn_listener(shared: Arc<Shared>, listener: TcpListener) -> Running {
    serving::spawn_listener(listener, move |stream| {
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        serve_connection(shared.clone(), stream, id)
    })
}

/// What a handler wants done on the connection.
enum Reply {
    /// Send this answer.
    Send(Response),
    /// Send the head and half the body, then close.
    SendHalf(Response),
    /// Close without answering.
    Drop,
    /// Never answer; keep the in-flight count until the client goes away.
    Hang(Option<InFlight>),
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Reply::Send(r) | Reply::SendHalf(r) => Some(r.status),
            Reply::Drop | Reply::Hang(_) => None,
        }
    }
}

/// Serves requests on one connection until it closes (keep-alive).
async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream, conn: u64) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let request = match read_request(&mut stream, &mut buffer).await {
            Ok(Incoming::Request(request)) => request,
            Ok(Incoming::Bad(status, message)) => {
                let response = Response::text(status, message);
                let _ = stream.write_all(&response.to_bytes(true)).await;
                return;
            }
            Ok(Incoming::Closed) | Err(_) => return,
        };
        let close = request.wants_close();
        let head_only = request.method == "HEAD";
        match handle(&shared, request, conn).await {
            Reply::Send(response) => {
                let close = close || response.close;
                let mut bytes = response.to_bytes(close);
                if head_only {
                    bytes.truncate(bytes.len() - response.body.len());
                }
                if stream.write_all(&bytes).await.is_err() || close {
                    return;
                }
            }
            Reply::SendHalf(response) => {
                let bytes = response.to_bytes(true);
                let cut = bytes.len() - response.body.len() / 2;
                let _ = stream.write_all(&bytes[..cut]).await;
                let _ = stream.flush().await;
                return;
            }
            Reply::Drop => return,
            Reply::Hang(in_flight) => {
                serving::wait_for_eof(&mut stream).await;
                drop(in_flight);
                return;
            }
        }
    }
}

/// Records a request, routes it by flavor and tells the observer.
async fn handle(shared: &Arc<Shared>, request: Request, conn: u64) -> Reply {
    if shared.state().instant
        && request.method == "POST"
        && route_of(&request.target) == "/sdapi/v1/img2img"
    {
        return instant_answer(shared, request, conn);
    }
    let rec = Recorded {
        conn,
        method: request.method,
        path: request.target,
        headers: request.headers,
        body: request.body,
    };
    let number = shared.record(&rec);
    let reply = match &shared.flavor {
        Flavor::DrawThings => route_drawthings(shared, &rec, number).await,
        Flavor::A1111 { auth } => route_a1111(shared, &rec, auth.as_ref(), number).await,
    };
    let observer = shared.state().observer.clone();
    if let Some(observer) = observer {
        observer(&rec, reply.status());
    }
    reply
}

/// The benchmark answer: the init image back as the result, found by a plain search.
fn instant_answer(shared: &Arc<Shared>, request: Request, conn: u64) -> Reply {
    const KEY: &[u8] = b"\"init_images\"";
    let body = request.body;
    let image = find(&body, KEY).and_then(|at| {
        // `"init_images": ["...` with or without spaces (Python's json.dumps adds them).
        let bracket = at + memchr::memchr(b'[', &body[at..])?;
        let start = bracket + 1 + memchr::memchr(b'"', &body[bracket + 1..])? + 1;
        let end = start + memchr::memchr(b'"', &body[start..])?;
        Some(&body[start..end])
    });
    let response = match image {
        Some(image) => {
            let mut answer = Vec::with_capacity(image.len() + image.len() / 16 + 16);
            answer.extend_from_slice(b"{\"images\":[\"");
            // Swift's `\/`, copied in runs between slashes (a byte loop would make the fake
            // the bottleneck of a benchmark).
            let mut rest = image;
            while let Some(at) = memchr::memchr(b'/', rest) {
                answer.extend_from_slice(&rest[..at]);
                answer.extend_from_slice(b"\\/");
                rest = &rest[at + 1..];
            }
            answer.extend_from_slice(rest);
            answer.extend_from_slice(b"\"]}");
            Response::json(200, answer)
        }
        None => dt_error(422, "no init_images"),
    };
    let rec = Recorded {
        conn,
        method: request.method,
        path: request.target,
        headers: request.headers,
        body: if body.len() <= 64 * 1024 {
            body
        } else {
            Vec::new()
        },
    };
    shared.record(&rec);
    let observer = shared.state().observer.clone();
    if let Some(observer) = observer {
        observer(&rec, Some(response.status));
    }
    Reply::Send(response)
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// One parsed request.
struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// Whether the connection closes after this request.
    fn wants_close(&self) -> bool {
        let connection = header_value(&self.headers, "connection").map(str::to_ascii_lowercase);
        let has = |token: &str| {
            connection
                .as_deref()
                .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
        };
        if self.version == "HTTP/1.0" {
            !has("keep-alive")
        } else {
            has("close")
        }
    }
}

/// What reading from a connection gave.
enum Incoming {
    Request(Request),
    /// The peer closed (between requests or mid-request).
    Closed,
    /// A malformed request: answer this status and close.
    Bad(u16, &'static str),
}

/// Reads one request; `buffer` keeps bytes read past it (pipelining).
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Incoming> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Ok(Incoming::Bad(431, "request head too large"));
        }
        if stream.read_buf(buffer).await? == 0 {
            return Ok(Incoming::Closed);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let (method, target, version, headers) = match parse_head(&head) {
        Ok(parsed) => parsed,
        Err(message) => return Ok(Incoming::Bad(400, message)),
    };
    if header_value(&headers, "transfer-encoding").is_some() {
        return Ok(Incoming::Bad(411, "chunked bodies are not supported"));
    }
    let length = match content_length(&headers) {
        Ok(length) => length,
        Err(message) => return Ok(Incoming::Bad(400, message)),
    };
    if length > MAX_BODY {
        return Ok(Incoming::Bad(413, "body too large"));
    }
    let expects_continue =
        header_value(&headers, "expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects_continue && buffer.len() < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    buffer.reserve(length.saturating_sub(buffer.len()).min(64 << 20));
    while buffer.len() < length {
        if stream.read_buf(buffer).await? == 0 {
            return Ok(Incoming::Closed);
        }
    }
    // The body is taken without copying it; only what follows it (rarely anything) moves.
    let rest = buffer.split_off(length);
    let body = std::mem::replace(buffer, rest);
    Ok(Incoming::Request(Request {
        method,
        target,
        version,
        headers,
        body,
    }))
}

type Head = (String, String, String, Vec<(String, String)>);

/// Parses the request line and headers.
fn parse_head(head: &str) -> Result<Head, &'static str> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err("malformed request line");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("malformed header");
        };
        if name.is_empty() || name.contains(' ') {
            return Err("malformed header");
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((method.into(), target.into(), version.into(), headers))
}

/// The body length: `Content-Length`, 0 when absent; repeated values must agree.
fn content_length(headers: &[(String, String)]) -> Result<usize, &'static str> {
    let mut length = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if length.is_some_and(|l| l != parsed) {
                return Err("conflicting Content-Length");
            }
            length = Some(parsed);
        }
    }
    Ok(length.unwrap_or(0))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn route_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// One answer.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after it.
    close: bool,
}

impl Response {
    fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            close: false,
        }
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    fn text(status: u16, message: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: message.as_bytes().to_vec(),
            close: true,
        }
    }

    fn with_header(mut self, name: &str, value: String) -> Response {
        self.headers.push((name.to_string(), value));
        self
    }

    /// The whole answer in one buffer, so it goes out in one write.
    fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = Vec::with_capacity(head.len() + self.body.len());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Generation: shared by both flavors
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Img2Img,
    Txt2Img,
}

/// Runs one generation request: in flight, faults, the one-at-a-time queue, the delay.
async fn generation(shared: &Arc<Shared>, rec: &Recorded, route: Route, number: usize) -> Reply {
    let (in_flight, fault) = if route == Route::Img2Img {
        let fault = {
            let mut state = shared.state();
            let scripted = state.faults.pop_front();
            match (scripted, state.fault_source.as_mut()) {
                (Some(fault), _) => Some(fault),
                (None, Some(source)) => source(),
                (None, None) => None,
            }
        };
        (Some(InFlight::enter(shared)), fault)
    } else {
        (None, None)
    };
    let record_answer = |status: Option<u16>| {
        if route == Route::Img2Img {
            shared.state().answers.push(Answered {
                request: rec.clone(),
                fault: fault.clone(),
                status,
            });
        }
    };
    if fault == Some(Fault::Hang) {
        record_answer(None);
        return Reply::Hang(in_flight);
    }
    let _turn = shared.queue.lock().await;
    let delay = shared.state().delay;
    let job = Job {
        shared: shared.clone(),
        body: rec.body.clone(),
        route,
        number,
        fault: fault.clone(),
    };
    let (reply, generated) = tokio::task::spawn_blocking(move || job.run())
        .await
        .unwrap_or_else(|_| (Reply::Send(Response::empty(500)), false));
    if generated {
        let steps = rec
            .json()
            .get("steps")
            .and_then(Value::as_u64)
            .map_or(20, |steps| steps as u32);
        shared.state().generating = Some((std::time::Instant::now(), delay, steps));
        tokio::time::sleep(delay).await;
        shared.state().generating = None;
    }
    record_answer(reply.status());
    drop(in_flight);
    reply
}

/// The CPU part of a generation, run off the async threads.
struct Job {
    shared: Arc<Shared>,
    body: Vec<u8>,
    route: Route,
    number: usize,
    fault: Option<Fault>,
}

impl Job {
    /// The reply, and whether it counts as a generation (waits the delay).
    fn run(self) -> (Reply, bool) {
        if let Some(fault) = self.fault.clone() {
            return (self.fault_reply(fault), true);
        }
        match self.shared.flavor {
            Flavor::DrawThings => match self.drawthings() {
                Ok(response) => (Reply::Send(response), true),
                Err(detail) => (Reply::Send(dt_error(422, &detail)), false),
            },
            Flavor::A1111 { .. } => match self.a1111() {
                Ok(response) => (Reply::Send(response), true),
                Err(response) => (Reply::Send(response), false),
            },
        }
    }

    fn tag(&self, image: usize) -> String {
        let server = match self.shared.flavor {
            Flavor::DrawThings => "drawthings",
            Flavor::A1111 { .. } => "a1111",
        };
        let route = match self.route {
            Route::Img2Img => "",
            Route::Txt2Img => "txt2img ",
        };
        format!("{server} {route}#{} image {image}", self.number)
    }

    /// A fault's answer. Sizes and counts are read leniently from the request.
    fn fault_reply(&self, fault: Fault) -> Reply {
        let (init, size, count) = self.lenient_request();
        let images = || self.images(init.as_ref(), size, count, |_| Vec::new());
        match fault {
            Fault::Status {
                code,
                detail,
                retry_after,
            } => {
                let mut response = match self.shared.flavor {
                    Flavor::DrawThings => dt_error(code, &detail),
                    Flavor::A1111 { .. } => a1111_error(code, "HTTPException", &detail),
                };
                if let Some(seconds) = retry_after {
                    response = response.with_header("Retry-After", seconds.to_string());
                }
                Reply::Send(response)
            }
            Fault::CloseWithoutAnswer => Reply::Drop,
            Fault::Hang => Reply::Hang(None),
            Fault::TruncatedJson => {
                let mut response = self.fault_success(base64_all(&images()));
                response.body.truncate(response.body.len() / 2);
                Reply::Send(response)
            }
            Fault::CloseMidBody => Reply::SendHalf(self.fault_success(base64_all(&images()))),
            Fault::EmptyImages => Reply::Send(self.fault_success(Vec::new())),
            Fault::BadBase64 => {
                let bad = vec!["this is not base64 at all!".to_string(); count];
                Reply::Send(self.fault_success(bad))
            }
            Fault::NotPng => {
                let jpeg = BASE64.encode(JPEG_HEADER);
                Reply::Send(self.fault_success(vec![jpeg; count]))
            }
            Fault::ImageCount(n) => {
                let images = self.images(init.as_ref(), size, n, |_| Vec::new());
                Reply::Send(self.fault_success(base64_all(&images)))
            }
        }
    }

    /// A 200 in the flavor's success format holding these image strings.
    fn fault_success(&self, images: Vec<String>) -> Response {
        match self.shared.flavor {
            Flavor::DrawThings => dt_success(&images),
            Flavor::A1111 { .. } => {
                let body = json!({"images": images, "parameters": {}, "info": "{}"});
                Response::json(200, body.to_string().into_bytes())
            }
        }
    }

    /// The init image, answer size and image count a request asks for, guessing defaults
    /// for anything missing or invalid.
    fn lenient_request(&self) -> (Option<InitImage>, (u32, u32), usize) {
        let json: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let int = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k)?.as_u64());
        let (app_w, app_h) = match self.shared.flavor {
            Flavor::DrawThings => self.shared.state().app_size,
            Flavor::A1111 { .. } => (512, 512),
        };
        let side = |key: &str, default: u32| {
            let value = int(&[key]).unwrap_or(u64::from(default)).clamp(64, 8192) as u32;
            match self.shared.flavor {
                Flavor::DrawThings => (value / 64 * 64).max(64),
                Flavor::A1111 { .. } => value,
            }
        };
        let size = (side("width", app_w), side("height", app_h));
        let count = int(&["batch_count", "n_iter"])
            .unwrap_or(1)
            .saturating_mul(int(&["batch_size"]).unwrap_or(1));
        let count = count.clamp(1, MAX_IMAGES as u64) as usize;
        let init = json
            .get("init_images")
            .and_then(|images| images.get(0))
            .and_then(Value::as_str)
            .and_then(|text| decode_init_image(strip_data_url(text)).ok());
        (init, size, count)
    }

    /// `count` PNGs of `size`: the init image's bytes when it already has that size, else a
    /// fresh picture; each with the tag chunk plus `extra(i)` text chunks (i from 1).
    fn images(
        &self,
        init: Option<&InitImage>,
        size: (u32, u32),
        count: usize,
        extra: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Vec<Vec<u8>> {
        let base = match init {
            Some(init) if init.is_png && (init.width, init.height) == size => init.bytes.clone(),
            _ => encode_png(size.0, size.1, self.number as u32),
        };
        let stylize = self.shared.state().stylize;
        (1..=count)
            .map(|i| {
                let base = if stylize {
                    stylized(&base, i).unwrap_or_else(|| base.clone())
                } else {
                    base.clone()
                };
                let mut chunks = extra(i);
                chunks.push((TAG_KEYWORD.to_string(), self.tag(i)));
                insert_text_chunks(&base, &chunks).unwrap_or_else(|| base.clone())
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Draw Things
// ---------------------------------------------------------------------------------------------

async fn route_drawthings(shared: &Arc<Shared>, rec: &Recorded, number: usize) -> Reply {
    match (rec.method.as_str(), rec.route()) {
        ("POST", "/sdapi/v1/img2img") => generation(shared, rec, Route::Img2Img, number).await,
        ("POST", "/sdapi/v1/txt2img") => generation(shared, rec, Route::Txt2Img, number).await,
        ("GET", "/") | ("GET", "/sdapi/v1/options") => Reply::Send(dt_settings(shared)),
        _ => Reply::Send(Response::empty(404)),
    }
}

/// A Draw Things error: always `{"error":"HTTPException","detail":...,"body":"","errors":""}`.
fn dt_error(status: u16, detail: &str) -> Response {
    let body = swift_object(&[
        ("error", json!("HTTPException")),
        ("detail", json!(detail)),
        ("body", json!("")),
        ("errors", json!("")),
    ]);
    Response::json(status, body.into_bytes())
}

/// A Draw Things success: `{"images":[...]}` as Swift's JSONEncoder writes it (`\/`).
fn dt_success(images: &[String]) -> Response {
    let body = swift_object(&[("images", json!(images))]);
    Response::json(200, body.into_bytes())
}

/// The type of a Draw Things parameter, with its range.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int(i64, i64),
    Double(f64, f64),
    Bool,
    Str,
    Enum(&'static [&'static str]),
    Loras,
    Controls,
}

/// One Draw Things parameter: its JSON key (the command-line flag with `_`), its aliases,
/// the title its errors use and its type.
struct Param {
    key: &'static str,
    aliases: &'static [&'static str],
    title: &'static str,
    kind: Kind,
}

const fn p(key: &'static str, title: &'static str, kind: Kind) -> Param {
    Param {
        key,
        aliases: &[],
        title,
        kind,
    }
}

const fn pa(
    key: &'static str,
    aliases: &'static [&'static str],
    title: &'static str,
    kind: Kind,
) -> Param {
    Param {
        key,
        aliases,
        title,
        kind,
    }
}

/// Draw Things' parameters in the order the app decodes them (Parameters.allParameters()).
/// The titles are the app's English titles as best known.
#[rustfmt::skip]
const DT_PARAMS: &[Param] = &[
    p("model", "model", Kind::Str),
    p("width", "Width", Kind::Int(128, 8192)),
    p("height", "Height", Kind::Int(128, 8192)),
    p("seed", "Seed", Kind::Int(-1, 4_294_967_295)),
    pa("guidance_scale", &["cfg_scale"], "Text Guidance", Kind::Double(0.0, 50.0)),
    p("seed_mode", "Seed Mode", Kind::Enum(DT_SEED_MODES)),
    p("steps", "Steps", Kind::Int(1, 150)),
    pa("batch_count", &["n_iter"], "Batch Count", Kind::Int(1, 100)),
    p("batch_size", "Batch Size", Kind::Int(1, 4)),
    pa("sampler", &["sampler_name", "sampler_index"], "Sampler", Kind::Enum(DT_SAMPLERS)),
    pa("strength", &["denoising_strength"], "Strength", Kind::Double(0.0, 1.0)),
    p("clip_skip", "CLIP Skip", Kind::Int(1, 23)),
    p("image_guidance", "Image Guidance", Kind::Double(0.0, 25.0)),
    p("mask_blur", "Mask Blur", Kind::Double(0.0, 25.0)),
    p("mask_blur_outset", "Mask Blur Outset", Kind::Int(-100, 1000)),
    p("sharpness", "Sharpness", Kind::Double(0.0, 30.0)),
    p("clip_weight", "CLIP Weight", Kind::Double(0.0, 1.0)),
    p("negative_prompt_for_image_prior", "Negative Prompt for Image Prior", Kind::Bool),
    p("image_prior_steps", "Image Prior Steps", Kind::Int(3, 60)),
    p("prompt", "Prompt", Kind::Str),
    p("negative_prompt", "Negative Prompt", Kind::Str),
    pa("hires_fix", &["enable_hr"], "High Resolution Fix", Kind::Bool),
    pa("hires_fix_width", &["firstphase_width"], "First Pass Width", Kind::Int(128, 2048)),
    pa("hires_fix_height", &["firstphase_height"], "First Pass Height", Kind::Int(128, 2048)),
    p("hires_fix_strength", "Second Pass Strength", Kind::Double(0.0, 1.0)),
    p("tiled_decoding", "Tiled Decoding", Kind::Bool),
    p("decoding_tile_width", "Decoding Tile Width", Kind::Int(128, 2048)),
    p("decoding_tile_height", "Decoding Tile Height", Kind::Int(128, 2048)),
    p("decoding_tile_overlap", "Decoding Tile Overlap", Kind::Int(64, 1024)),
    p("original_width", "Original Width", Kind::Int(128, 2048)),
    p("original_height", "Original Height", Kind::Int(128, 2048)),
    p("crop_top", "Crop Top", Kind::Int(0, 1024)),
    p("crop_left", "Crop Left", Kind::Int(0, 1024)),
    p("target_width", "Target Width", Kind::Int(128, 2048)),
    p("target_height", "Target Height", Kind::Int(128, 2048)),
    p("negative_original_width", "Negative Original Width", Kind::Int(128, 2048)),
    p("negative_original_height", "Negative Original Height", Kind::Int(128, 2048)),
    p("aesthetic_score", "Aesthetic Score", Kind::Double(0.0, 10.0)),
    p("negative_aesthetic_score", "Negative Aesthetic Score", Kind::Double(0.0, 10.0)),
    p("zero_negative_prompt", "Zero Negative Prompt", Kind::Bool),
    p("refiner_model", "refiner_model", Kind::Str),
    p("refiner_start", "Refiner Start", Kind::Double(0.0, 1.0)),
    p("num_frames", "Number of Frames", Kind::Int(1, 201)),
    p("fps", "FPS", Kind::Int(1, 30)),
    p("motion_scale", "Motion Scale", Kind::Int(0, 255)),
    p("guiding_frame_noise", "Guiding Frame Noise", Kind::Double(0.0, 1.0)),
    p("start_frame_guidance", "Start Frame Guidance", Kind::Double(0.0, 25.0)),
    p("shift", "Shift", Kind::Double(0.1, 8.0)),
    p("stage_2_steps", "Stage 2 Steps", Kind::Int(1, 150)),
    p("stage_2_guidance", "Stage 2 Guidance", Kind::Double(0.0, 25.0)),
    p("stage_2_shift", "Stage 2 Shift", Kind::Double(0.1, 5.0)),
    p("loras", "loras", Kind::Loras),
    p("controls", "controls", Kind::Controls),
    p("stochastic_sampling_gamma", "Strategic Stochastic Sampling", Kind::Double(0.0, 1.0)),
    p("preserve_original_after_inpaint", "Preserve Original After Inpaint", Kind::Bool),
    p("tiled_diffusion", "Tiled Diffusion", Kind::Bool),
    p("diffusion_tile_width", "Diffusion Tile Width", Kind::Int(128, 2048)),
    p("diffusion_tile_height", "Diffusion Tile Height", Kind::Int(128, 2048)),
    p("diffusion_tile_overlap", "Diffusion Tile Overlap", Kind::Int(64, 1024)),
    p("upscaler", "upscaler", Kind::Str),
    pa("upscaler_scale", &["upscaler_scale_factor"], "Upscaler Scale Factor", Kind::Int(0, 4)),
    p("t5_text_encoder_decoding", "T5 Text Encoder", Kind::Bool),
    p("separate_clip_l", "Separate CLIP-L", Kind::Bool),
    p("clip_l_text", "clip_l_text", Kind::Str),
    p("separate_open_clip_g", "Separate OpenCLIP-G", Kind::Bool),
    p("open_clip_g_text", "open_clip_g_text", Kind::Str),
    p("speed_up_with_guidance_embed", "Speed Up with Guidance Embed", Kind::Bool),
    p("guidance_embed", "Guidance Embed", Kind::Double(0.0, 25.0)),
    p("resolution_dependent_shift", "Resolution Dependent Shift", Kind::Bool),
    p("tea_cache_start", "TeaCache Start", Kind::Int(0, 1000)),
    p("tea_cache_end", "TeaCache End", Kind::Int(0, 1000)),
    p("tea_cache_threshold", "TeaCache Threshold", Kind::Double(0.0, 1.0)),
    p("tea_cache_max_skip_steps", "TeaCache Max Skip Steps", Kind::Int(1, 1000)),
    p("tea_cache", "TeaCache", Kind::Bool),
    p("separate_t5", "Separate T5", Kind::Bool),
    p("t5_text", "t5_text", Kind::Str),
    p("causal_inference", "Causal Inference", Kind::Int(0, 1000)),
];

/// Every key Draw Things accepts in a request body (parameters, aliases, `init_images`,
/// `restore_faces`).
pub fn drawthings_known_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = DT_PARAMS
        .iter()
        .flat_map(|p| std::iter::once(p.key).chain(p.aliases.iter().copied()))
        .collect();
    keys.extend(["init_images", "restore_faces"]);
    keys
}

/// The app's current value of a parameter (what a request that leaves it out gets).
fn dt_current(param: &Param, app_size: (u32, u32)) -> Value {
    match param.key {
        "model" => json!(DT_DEFAULT_MODEL),
        "width" => json!(app_size.0),
        "height" => json!(app_size.1),
        "seed" => json!(0),
        "guidance_scale" => json!(4.5),
        "seed_mode" => json!("Scale Alike"),
        "steps" => json!(20),
        "strength" | "clip_weight" | "start_frame_guidance" | "shift" => json!(1.0),
        "stage_2_guidance" | "stage_2_shift" => json!(1.0),
        "image_guidance" | "mask_blur" => json!(1.5),
        "image_prior_steps" => json!(5),
        "prompt" | "negative_prompt" => json!(""),
        "hires_fix_width" | "hires_fix_height" => json!(448),
        "hires_fix_strength" => json!(0.7),
        "decoding_tile_width" | "decoding_tile_height" => json!(640),
        "decoding_tile_overlap" | "diffusion_tile_overlap" => json!(128),
        "diffusion_tile_width" | "diffusion_tile_height" => json!(1024),
        "original_width" | "target_width" | "negative_original_width" => json!(app_size.0),
        "original_height" | "target_height" | "negative_original_height" => json!(app_size.1),
        "aesthetic_score" => json!(6.0),
        "negative_aesthetic_score" => json!(2.5),
        "refiner_start" => json!(0.85),
        "num_frames" => json!(14),
        "fps" => json!(5),
        "motion_scale" => json!(127),
        "guiding_frame_noise" => json!(0.02),
        "stage_2_steps" => json!(10),
        "stochastic_sampling_gamma" => json!(0.3),
        "guidance_embed" => json!(3.5),
        "tea_cache_start" => json!(5),
        "tea_cache_end" => json!(2),
        "tea_cache_threshold" => json!(0.06),
        "tea_cache_max_skip_steps" => json!(3),
        "t5_text_encoder_decoding" | "resolution_dependent_shift" => json!(true),
        "preserve_original_after_inpaint" => json!(true),
        _ => match param.kind {
            Kind::Int(low, high) => json!(0i64.clamp(low, high)),
            Kind::Double(low, high) => json!(0f64.clamp(low, high)),
            Kind::Bool => json!(false),
            Kind::Str => Value::Null,
            Kind::Enum(options) => json!(options[0]),
            Kind::Loras | Kind::Controls => json!([]),
        },
    }
}

/// `GET /` and `GET /sdapi/v1/options`: the app's current settings, in the app's key order.
fn dt_settings(shared: &Shared) -> Response {
    let app_size = shared.state().app_size;
    let pairs: Vec<(&str, Value)> = DT_PARAMS
        .iter()
        .map(|param| (param.key, dt_current(param, app_size)))
        .collect();
    Response::json(200, swift_object(&pairs).into_bytes())
}

/// A decoded init image.
#[derive(Clone, Debug)]
struct InitImage {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
    is_png: bool,
}

/// A Draw Things request once decoded and validated key by key.
struct DtRequest {
    /// Every parameter's value: the request's, else the app's current one.
    values: Vec<(&'static str, Value)>,
    /// `init_images`, decoded, when sent.
    images: Option<Vec<InitImage>>,
}

impl DtRequest {
    fn value(&self, key: &str) -> &Value {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&Value::Null, |(_, v)| v)
    }

    fn int(&self, key: &str) -> i64 {
        self.value(key).as_i64().unwrap_or(0)
    }
}

impl Job {
    /// Draw Things' img2img/txt2img handler: the answer, or the detail of a 422.
    fn drawthings(&self) -> Result<Response, String> {
        let (app_size, models) = {
            let state = self.shared.state();
            (state.app_size, state.models.clone())
        };
        let request = dt_decode(&self.body, app_size)?;
        let width = request.int("width");
        let height = request.int("height");
        let single = match (&request.images, self.route) {
            (Some(images), Route::Img2Img) if images.len() == 1 => Some(&images[0]),
            (Some(_), Route::Txt2Img) => {
                return Err("init_images is not supported for text-to-image".into());
            }
            _ => None,
        };
        if let Some(image) = single {
            if i64::from(image.height) != height {
                return Err(format!(
                    "init_images height doesn't match {} from the parameter {height}",
                    image.height
                ));
            }
            if i64::from(image.width) != width {
                return Err(format!(
                    "init_images width doesn't match {} from the parameter {width}",
                    image.width
                ));
            }
        }
        if let Some(model) = request.value("model").as_str()
            && !models.is_empty()
            && !models.iter().any(|m| m == model)
        {
            return Err("Unrecognized model name".into());
        }
        let count = (request.int("batch_count") * request.int("batch_size")) as usize;
        // The app generates at whole multiples of 64.
        let size = ((width / 64 * 64) as u32, (height / 64 * 64) as u32);
        let images = self.images(single, size, count.clamp(1, MAX_IMAGES), |_| Vec::new());
        Ok(dt_success(&base64_all(&images)))
    }
}

/// Decodes a Draw Things request body the way the app's `RequestBody` does, in its order:
/// `restore_faces`, `init_images`, every parameter (alias clash, type, range), then any key
/// left over. Returns the detail of the first error.
fn dt_decode(body: &[u8], app_size: (u32, u32)) -> Result<DtRequest, String> {
    let object = match serde_json::from_slice::<OrderedObject>(body) {
        Ok(object) => object.0,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(swift_type_mismatch(
                "Dictionary<String, Any>",
                None,
                "a different type",
            ));
        }
        Err(_) => {
            return Err("dataCorrupted(Swift.DecodingError.Context(codingPath: [], \
                 debugDescription: \"The given data was not valid JSON.\", underlyingError: nil))"
                .into());
        }
    };
    let get = |key: &str| object.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    if let Some(value) = get("restore_faces")
        && !(value.is_boolean() || value.is_null())
    {
        return Err(swift_type_mismatch(
            "Bool",
            Some("restore_faces"),
            found(value),
        ));
    }
    let images = match get("init_images") {
        Some(value) => Some(dt_init_images(value)?),
        None => None,
    };
    let mut values = Vec::with_capacity(DT_PARAMS.len());
    let mut decoded: Vec<&str> = vec!["restore_faces", "init_images"];
    for param in DT_PARAMS {
        let names: Vec<&str> = std::iter::once(param.key)
            .chain(param.aliases.iter().copied())
            .collect();
        let present: Vec<&str> = names.iter().copied().filter(|n| get(n).is_some()).collect();
        let current = dt_current(param, app_size);
        let value = match present.as_slice() {
            [] => current,
            [key] => {
                decoded.push(key);
                dt_decode_value(param, key, get(key).unwrap_or(&Value::Null), current)?
            }
            _ => {
                return Err(format!(
                    "More than one key for {} specified (must only specify one of {})",
                    param.title,
                    swift_array(&names)
                ));
            }
        };
        values.push((param.key, value));
    }
    let mut remaining: Vec<&str> = Vec::new();
    for (key, _) in &object {
        if !decoded.contains(&key.as_str()) && !remaining.contains(&key.as_str()) {
            remaining.push(key);
        }
    }
    if !remaining.is_empty() {
        return Err(format!("Unrecognized keys: {}", swift_array(&remaining)));
    }
    Ok(DtRequest { values, images })
}

/// Decodes `init_images`: an array of plain base64 strings, each an image.
fn dt_init_images(value: &Value) -> Result<Vec<InitImage>, String> {
    let Some(items) = value.as_array() else {
        return Err(swift_type_mismatch(
            "Array<Data>",
            Some("init_images"),
            found(value),
        ));
    };
    items
        .iter()
        .map(|item| {
            let Some(text) = item.as_str() else {
                return Err(swift_type_mismatch(
                    "Data",
                    Some("init_images"),
                    found(item),
                ));
            };
            decode_init_image(text)
                .map_err(|()| "Data in init_images did not represent a valid image".to_string())
        })
        .collect()
}

/// Decodes one parameter's JSON value, checks its type and range; `null` keeps `current`.
fn dt_decode_value(
    param: &Param,
    key: &str,
    value: &Value,
    current: Value,
) -> Result<Value, String> {
    if value.is_null() {
        return Ok(match param.kind {
            Kind::Str => Value::Null,
            Kind::Enum(_) => return Err(swift_value_not_found("String", key)),
            _ => current,
        });
    }
    match param.kind {
        Kind::Int(low, high) => {
            let number = swift_int(value, key)?;
            if !(low..=high).contains(&number) {
                return Err(format!(
                    "Value for {} must be between {low} and {high}, inclusive (was {number})",
                    param.title
                ));
            }
            Ok(json!(number))
        }
        Kind::Double(low, high) => {
            let Some(number) = value.as_f64() else {
                return Err(swift_type_mismatch("Double", Some(key), found(value)));
            };
            if !(low..=high).contains(&number) {
                return Err(format!(
                    "Value for {} must be between {} and {}, inclusive (was {})",
                    param.title,
                    swift_double(low),
                    swift_double(high),
                    swift_double(number)
                ));
            }
            Ok(json!(number))
        }
        Kind::Bool if value.is_boolean() => Ok(value.clone()),
        Kind::Bool => Err(swift_type_mismatch("Bool", Some(key), found(value))),
        Kind::Str if value.is_string() => Ok(value.clone()),
        Kind::Str => Err(swift_type_mismatch("String", Some(key), found(value))),
        Kind::Enum(options) => {
            let Some(name) = value.as_str() else {
                return Err(swift_type_mismatch("String", Some(key), found(value)));
            };
            if options.contains(&name) {
                Ok(value.clone())
            } else {
                Err(format!(
                    "Invalid value for {key} (options: {})",
                    swift_array(options)
                ))
            }
        }
        Kind::Loras => dt_loras(key, value).map(|()| value.clone()),
        Kind::Controls => match value.as_array() {
            Some(items) if items.iter().all(Value::is_object) => Ok(value.clone()),
            _ => Err(swift_type_mismatch(
                "Array<JSControl>",
                Some(key),
                found(value),
            )),
        },
    }
}

/// `loras`: an array of `{"file": String, "weight": Double}` (weight optional).
fn dt_loras(key: &str, value: &Value) -> Result<(), String> {
    let Some(items) = value.as_array() else {
        return Err(swift_type_mismatch(
            "Array<JSLoRA>",
            Some(key),
            found(value),
        ));
    };
    for item in items {
        let Some(lora) = item.as_object() else {
            return Err(swift_type_mismatch("JSLoRA", Some(key), found(item)));
        };
        match lora.get("file") {
            Some(Value::String(_)) => {}
            None | Some(Value::Null) => {
                return Err(format!(
                    "keyNotFound(JSONKey(stringValue: \"file\", intValue: nil), \
                     Swift.DecodingError.Context(codingPath: [JSONKey(stringValue: \"{key}\", \
                     intValue: nil)], debugDescription: \"No value associated with key \
                     \\\"file\\\".\", underlyingError: nil))"
                ));
            }
            Some(other) => return Err(swift_type_mismatch("String", Some("file"), found(other))),
        }
        if let Some(weight) = lora.get("weight")
            && !(weight.is_number() || weight.is_null())
        {
            return Err(swift_type_mismatch("Float", Some("weight"), found(weight)));
        }
    }
    Ok(())
}

/// A JSON number as Swift's `Int` decoding takes it (integral values only).
fn swift_int(value: &Value, key: &str) -> Result<i64, String> {
    if let Some(number) = value.as_i64() {
        return Ok(number);
    }
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 && number.abs() < 9.0e18 => Ok(number as i64),
        Some(_) => Err(format!(
            "dataCorrupted(Swift.DecodingError.Context(codingPath: [JSONKey(stringValue: \
             \"{key}\", intValue: nil)], debugDescription: \"Parsed JSON number <{value}> does \
             not fit in Int.\", underlyingError: nil))"
        )),
        None => Err(swift_type_mismatch("Int", Some(key), found(value))),
    }
}

fn swift_type_mismatch(swift_type: &str, key: Option<&str>, found: &str) -> String {
    let path = key.map_or(String::new(), |k| {
        format!("JSONKey(stringValue: \"{k}\", intValue: nil)")
    });
    format!(
        "typeMismatch(Swift.{swift_type}, Swift.DecodingError.Context(codingPath: [{path}], \
         debugDescription: \"Expected to decode {swift_type} but found {found} instead.\", \
         underlyingError: nil))"
    )
}

fn swift_value_not_found(swift_type: &str, key: &str) -> String {
    format!(
        "valueNotFound(Swift.{swift_type}, Swift.DecodingError.Context(codingPath: \
         [JSONKey(stringValue: \"{key}\", intValue: nil)], debugDescription: \"Expected \
         {swift_type} value but found null instead.\", underlyingError: nil))"
    )
}

/// How Swift's decoder names a JSON value's type in its errors.
fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a dictionary",
    }
}

/// A Swift `Double` as `description` prints it (`1.0`, `0.5`).
fn swift_double(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// A Swift `[String]` as its `description` prints it: `["a", "b"]`.
fn swift_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A JSON object in the given key order, written as Swift's JSONEncoder writes it: compact,
/// with `/` escaped as `\/`.
fn swift_object(pairs: &[(&str, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        swift_string(key, &mut out);
        out.push(':');
        swift_value(value, &mut out);
    }
    out.push('}');
    out
}

fn swift_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => swift_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                swift_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let pairs: Vec<(&str, Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            out.push_str(&swift_object(&pairs));
        }
        other => out.push_str(&other.to_string()),
    }
}

fn swift_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object with its keys in document order (Draw Things reports leftover keys in the
/// order they were sent, which serde_json's map would sort).
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, Value>()? {
                    pairs.push(pair);
                }
                Ok(OrderedObject(pairs))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// AUTOMATIC1111
// ---------------------------------------------------------------------------------------------

async fn route_a1111(
    shared: &Arc<Shared>,
    rec: &Recorded,
    auth: Option<&(String, String)>,
    number: usize,
) -> Reply {
    let known = matches!(
        (rec.method.as_str(), rec.route()),
        ("POST", "/sdapi/v1/img2img")
            | ("GET", "/sdapi/v1/options")
            | ("GET", "/sdapi/v1/progress")
    );
    if !known {
        return Reply::Send(Response::json(404, br#"{"detail":"Not Found"}"#.to_vec()));
    }
    if let Some(credentials) = auth
        && let Some(denied) = a1111_check_auth(rec, credentials)
    {
        return Reply::Send(denied);
    }
    if rec.route() == "/sdapi/v1/progress" {
        return Reply::Send(a1111_progress(&shared.state()));
    }
    if rec.method == "GET" {
        return Reply::Send(a1111_options());
    }
    generation(shared, rec, Route::Img2Img, number).await
}

/// `GET /sdapi/v1/progress` as A1111's `ProgressResponse` (modules/api/models.py): the
/// fraction done, the time left relative to it, and the shared state's counters; the steps
/// advance evenly through the delay of the generation in progress.
fn a1111_progress(state: &State) -> Response {
    let (progress, step, steps, jobs) = match state.generating {
        Some((started, delay, steps)) if !delay.is_zero() => {
            let done = (started.elapsed().as_secs_f64() / delay.as_secs_f64()).min(1.0);
            (done, (done * f64::from(steps)) as u32, steps, 1)
        }
        _ => (0.0, 0, 0, 0),
    };
    let eta = if progress > 0.0 {
        (1.0 - progress) / progress
    } else {
        0.0
    };
    let body = json!({
        "progress": progress,
        "eta_relative": eta,
        "state": {
            "skipped": false,
            "interrupted": false,
            "stopping_generation": false,
            "job": if jobs > 0 { "task(fake)" } else { "" },
            "job_count": jobs,
            "job_timestamp": "20261201000000",
            "job_no": 0,
            "sampling_step": step,
            "sampling_steps": steps,
        },
        "current_image": null,
        "textinfo": null,
        "current_task": null,
    });
    Response::json(200, body.to_string().into_bytes())
}

/// `None` when the request carries the right basic credentials, else the 401.
fn a1111_check_auth(rec: &Recorded, (user, password): &(String, String)) -> Option<Response> {
    let given = rec
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let detail = match given {
        None => "Not authenticated",
        Some(pair) if pair == format!("{user}:{password}") => return None,
        Some(_) => "Incorrect username or password",
    };
    Some(a1111_error(401, "HTTPException", detail).with_header("WWW-Authenticate", "Basic".into()))
}

/// An A1111 error: `{"error","detail","body","errors"}`.
fn a1111_error(status: u16, error: &str, detail: &str) -> Response {
    let body = json!({
        "error": error,
        "detail": detail,
        "body": "",
        "errors": format!("{status}: {detail}"),
    });
    Response::json(status, body.to_string().into_bytes())
}

/// A FastAPI request-validation error (422 `{"detail":[{loc,msg,type}]}`).
fn a1111_invalid(field: Option<&str>, msg: &str, kind: &str) -> Response {
    let mut loc = vec![json!("body")];
    loc.extend(field.map(|f| json!(f)));
    let body = json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]});
    Response::json(422, body.to_string().into_bytes())
}

fn a1111_options() -> Response {
    let body = json!({
        "sd_model_checkpoint": A1111_DEFAULT_MODEL,
        "sd_checkpoint_hash": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        "samples_format": "png",
        "enable_pnginfo": true,
        "CLIP_stop_at_last_layers": 1,
        "sd_vae": "Automatic",
    });
    Response::json(200, body.to_string().into_bytes())
}

/// An integer field as pydantic (v1) coerces it.
fn pydantic_int(object: &Map<String, Value>, key: &str, default: i64) -> Result<i64, Response> {
    let invalid = || {
        a1111_invalid(
            Some(key),
            "value is not a valid integer",
            "type_error.integer",
        )
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(i64::from(*b)),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.abs() < 9.0e18).map(|f| f as i64))
            .ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A float field as pydantic (v1) coerces it.
fn pydantic_float(object: &Map<String, Value>, key: &str, default: f64) -> Result<f64, Response> {
    let invalid = || a1111_invalid(Some(key), "value is not a valid float", "type_error.float");
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A string field as pydantic (v1) coerces it.
fn pydantic_str(object: &Map<String, Value>, key: &str, default: &str) -> Result<String, Response> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(a1111_invalid(
            Some(key),
            "str type expected",
            "type_error.str",
        )),
    }
}

/// What an A1111 img2img request asks for, with A1111's defaults.
struct A1111Request {
    object: Map<String, Value>,
    images: Vec<InitImage>,
    prompt: String,
    negative_prompt: String,
    width: i64,
    height: i64,
    steps: i64,
    n_iter: i64,
    batch_size: i64,
    seed: i64,
    cfg_scale: f64,
    denoising_strength: f64,
    sampler_name: String,
    model: String,
}

fn a1111_decode(body: &[u8]) -> Result<A1111Request, Response> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(a1111_invalid(
                None,
                "value is not a valid dict",
                "type_error.dict",
            ));
        }
        Err(e) => {
            return Err(a1111_invalid(
                None,
                &e.to_string(),
                "value_error.jsondecode",
            ));
        }
    };
    let images = match object.get("init_images") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|text| decode_init_image(strip_data_url(text)).ok())
                    .ok_or_else(|| a1111_error(500, "HTTPException", "Invalid encoded image"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            let msg = "value is not a valid list";
            return Err(a1111_invalid(Some("init_images"), msg, "type_error.list"));
        }
    };
    if images.is_empty() {
        return Err(a1111_error(404, "HTTPException", "Init image not found"));
    }
    let model = object
        .get("override_settings")
        .and_then(|o| o.get("sd_model_checkpoint"))
        .and_then(Value::as_str)
        .unwrap_or(A1111_DEFAULT_MODEL)
        .to_string();
    Ok(A1111Request {
        prompt: pydantic_str(&object, "prompt", "")?,
        negative_prompt: pydantic_str(&object, "negative_prompt", "")?,
        width: pydantic_int(&object, "width", 512)?,
        height: pydantic_int(&object, "height", 512)?,
        steps: pydantic_int(&object, "steps", 50)?,
        n_iter: pydantic_int(&object, "n_iter", 1)?,
        batch_size: pydantic_int(&object, "batch_size", 1)?,
        seed: pydantic_int(&object, "seed", -1)?,
        cfg_scale: pydantic_float(&object, "cfg_scale", 7.0)?,
        denoising_strength: pydantic_float(&object, "denoising_strength", 0.75)?,
        sampler_name: pydantic_str(&object, "sampler_name", "Euler a")?,
        model,
        images,
        object,
    })
}

impl A1111Request {
    /// The checkpoint's short name (`v1-5-pruned-emaonly`).
    fn model_name(&self) -> &str {
        let name = self.model.split(" [").next().unwrap_or(&self.model);
        name.rsplit_once('.').map_or(name, |(stem, _)| stem)
    }

    /// A1111's infotext for one image (what it writes in the PNG's `parameters` chunk).
    fn infotext(&self, seed: i64) -> String {
        let mut text = self.prompt.clone();
        if !self.negative_prompt.is_empty() {
            text.push_str(&format!("\nNegative prompt: {}", self.negative_prompt));
        }
        text.push_str(&format!(
            "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {seed}, Size: {}x{}, \
             Model hash: 6ce0161689, Model: {}, Denoising strength: {}, Version: v1.10.1",
            self.steps,
            self.sampler_name,
            self.cfg_scale,
            self.width,
            self.height,
            self.model_name(),
            self.denoising_strength,
        ));
        text
    }

    /// `parameters` of the answer: the request with A1111's defaults, `init_images` null.
    fn parameters(&self) -> Value {
        let mut parameters = self.object.clone();
        let defaults = [
            ("prompt", json!("")),
            ("negative_prompt", json!("")),
            ("styles", Value::Null),
            ("seed", json!(-1)),
            ("subseed", json!(-1)),
            ("subseed_strength", json!(0)),
            ("sampler_name", Value::Null),
            ("batch_size", json!(1)),
            ("n_iter", json!(1)),
            ("steps", json!(50)),
            ("cfg_scale", json!(7.0)),
            ("width", json!(512)),
            ("height", json!(512)),
            ("denoising_strength", json!(0.75)),
            ("resize_mode", json!(0)),
            ("override_settings", Value::Null),
            ("send_images", json!(true)),
            ("save_images", json!(false)),
            ("alwayson_scripts", json!({})),
        ];
        for (key, value) in defaults {
            parameters.entry(key).or_insert(value);
        }
        parameters.insert("init_images".into(), Value::Null);
        Value::Object(parameters)
    }

    /// `info` of the answer: a JSON string.
    fn info(&self, seeds: &[i64]) -> String {
        let count = seeds.len();
        let infotexts: Vec<String> = seeds.iter().map(|s| self.infotext(*s)).collect();
        json!({
            "prompt": self.prompt,
            "all_prompts": vec![&self.prompt; count],
            "negative_prompt": self.negative_prompt,
            "all_negative_prompts": vec![&self.negative_prompt; count],
            "seed": seeds.first().copied().unwrap_or(self.seed),
            "all_seeds": seeds,
            "subseed": -1,
            "all_subseeds": vec![-1; count],
            "subseed_strength": 0,
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": false,
            "sd_model_name": self.model_name(),
            "sd_model_hash": "6ce0161689",
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": [],
            "clip_skip": 1,
            "is_using_inpainting_conditioning": false,
            "version": "v1.10.1",
        })
        .to_string()
    }
}

impl Job {
    /// A1111's img2img handler: the answer, or an error answer.
    fn a1111(&self) -> Result<Response, Response> {
        let request = a1111_decode(&self.body)?;
        let valid_side = |side: i64| (8..=8192).contains(&side);
        if !valid_side(request.width) || !valid_side(request.height) {
            let detail = format!(
                "width and height must be 8...8192 (got {}x{})",
                request.width, request.height
            );
            return Err(a1111_error(500, "RuntimeError", &detail));
        }
        let count = (request.n_iter.max(0))
            .saturating_mul(request.batch_size.max(0))
            .min(MAX_IMAGES as i64);
        let first_seed = match request.seed {
            -1 => i64::from(fastrand::u32(..)),
            seed => seed,
        };
        let seeds: Vec<i64> = (0..count).map(|i| first_seed.saturating_add(i)).collect();
        let size = (request.width as u32, request.height as u32);
        let init = request.images.first();
        let images = self.images(init, size, seeds.len(), |i| {
            vec![("parameters".to_string(), request.infotext(seeds[i - 1]))]
        });
        let body = json!({
            "images": base64_all(&images),
            "parameters": request.parameters(),
            "info": request.info(&seeds),
        });
        Ok(Response::json(200, body.to_string().into_bytes()))
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// The first bytes of a JPEG (JFIF) file.
const JPEG_HEADER: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xFF, 0xD9,
];

fn base64_all(images: &[Vec<u8>]) -> Vec<String> {
    images.iter().map(|i| BASE64.encode(i)).collect()
}

fn strip_data_url(text: &str) -> &str {
    match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, data)| data),
        None => text,
    }
}

/// Decodes base64 and then the whole image (any format the `image` crate here knows: PNG).
fn decode_init_image(text: &str) -> Result<InitImage, ()> {
    let bytes = BASE64.decode(text).map_err(|_| ())?;
    let decoded = image::load_from_memory(&bytes).map_err(|_| ())?;
    Ok(InitImage {
        width: decoded.width(),
        height: decoded.height(),
        is_png: bytes.starts_with(PNG_SIGNATURE),
        bytes,
    })
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `png` with `tEXt` chunks inserted just before `IEND`; `None` if it is not a sane PNG.
fn insert_text_chunks(png: &[u8], chunks: &[(String, String)]) -> Option<Vec<u8>> {
    let iend = find_chunk(png, b"IEND")?;
    let mut out = Vec::with_capacity(png.len() + 64 * chunks.len());
    out.extend_from_slice(&png[..iend]);
    for (keyword, text) in chunks {
        let mut data = keyword.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(text.as_bytes());
        push_chunk(&mut out, b"tEXt", &data);
    }
    out.extend_from_slice(&png[iend..]);
    Some(out)
}

/// The offset of the first chunk of this type.
fn find_chunk(png: &[u8], kind: &[u8; 4]) -> Option<usize> {
    if !png.starts_with(PNG_SIGNATURE) {
        return None;
    }
    let mut offset = PNG_SIGNATURE.len();
    while offset + 12 <= png.len() {
        let length = u32::from_be_bytes(png[offset..offset + 4].try_into().ok()?) as usize;
        if &png[offset + 4..offset + 8] == kind {
            return Some(offset);
        }
        offset = offset.checked_add(12 + length)?;
    }
    None
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A fresh RGB8 PNG of `width` x `height` (a gradient varying with `seed`), stored
/// uncompressed so that it is fast to make even in debug builds.
/// The init image as if a style had been applied: colours posterized to a few inks and
/// tinted (`variant` picks the tint), edges darkened. `None` when it cannot be decoded.
fn stylized(png: &[u8], variant: usize) -> Option<Vec<u8>> {
    let picture = image::load_from_memory(png).ok()?.to_rgb8();
    let tints: [[f32; 3]; 3] = [[1.15, 0.95, 0.75], [0.75, 0.95, 1.2], [0.95, 1.15, 0.8]];
    let tint = tints[(variant - 1) % tints.len()];
    let (width, height) = picture.dimensions();
    let styled = image::RgbImage::from_fn(width, height, |x, y| {
        let pixel = picture.get_pixel(x, y).0;
        let right = picture.get_pixel((x + 1).min(width - 1), y).0;
        let below = picture.get_pixel(x, (y + 1).min(height - 1)).0;
        let edge: i32 = (0..3)
            .map(|c| {
                (i32::from(pixel[c]) - i32::from(right[c])).abs()
                    + (i32::from(pixel[c]) - i32::from(below[c])).abs()
            })
            .sum();
        let mut out = [0u8; 3];
        for c in 0..3 {
            let level = (f32::from(pixel[c]) / 64.0).round() * 64.0;
            let value = (level * tint[c] + 18.0 - (edge as f32) * 0.6).clamp(0.0, 255.0);
            out[c] = value as u8;
        }
        image::Rgb(out)
    });
    let mut bytes = Vec::new();
    styled
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .ok()?;
    Some(bytes)
}

fn encode_png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let row = 1 + 3 * width as usize;
    let mut raw = Vec::with_capacity(row * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[
                (x.wrapping_mul(255) / width.max(1)) as u8,
                (y.wrapping_mul(255) / height.max(1)) as u8,
                (seed.wrapping_mul(67) ^ (x / 16 + y / 16)) as u8,
            ]);
        }
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut png = PNG_SIGNATURE.to_vec();
    push_chunk(&mut png, b"IHDR", &ihdr);
    push_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    push_chunk(&mut png, b"IEND", &[]);
    png
}

/// A zlib stream holding `data` in stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let length = block.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}
