//! A fake of the two image servers drawdrop talks to — Draw Things' HTTP API and
//! AUTOMATIC1111's — for tests, and for trying drawdrop without a GPU.
//!
//! It is an independent re-implementation of how the real servers speak img2img (see
//! docs/protocols.md, taken from the servers' own source) and deliberately does not use the
//! `drawdrop` crate, so that it can check it. It owns a small HTTP/1.1 layer ([`http`]:
//! keep-alive, `Content-Length` bodies, one write per answer, `TCP_NODELAY`) so that faults can
//! be injected precisely: a status, a dropped connection, a hang, a broken or cut body.
//! [`generation`] runs a request through faults, the one-at-a-time queue and the delay;
//! [`drawthings`] and [`a1111`] decode, check and answer as each server does; [`png`] makes
//! the pictures it answers.
//!
//! Answers are cheap and checkable: when the init image already has the answer's size, each
//! returned image is the init image's exact bytes plus one `tEXt` chunk (keyword
//! [`TAG_KEYWORD`]) saying which request and image it is; otherwise a small, freshly encoded PNG
//! of the right size (carrying the same chunk).
//!
//! It needs `crate::fakes::serving` and `crate::pictures` beside it: the test binary has them,
//! and the bench includes the same files at the same places.

pub mod a1111;
pub mod drawthings;
mod generation;
mod http;
mod png;

use crate::fakes::serving::{self, Running, lock};
use a1111::route_a1111;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use drawthings::{dt_error, route_drawthings};
use http::{Incoming, Request, Response, find, header_value, read_request, route_of};
use png::strip_data_url;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Keyword of the `tEXt` chunk the fake adds to every image it returns.
pub const TAG_KEYWORD: &str = "fake-server";

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
