//! A fake ComfyUI server for tests: an independent re-implementation of how ComfyUI 0.3.64
//! speaks (its `server.py`, `execution.py`, `main.py` and `nodes.py`, read for the facts; see
//! docs/protocols.md), deliberately without the `drawdrop` crate so that it can check it.
//!
//! What it reproduces:
//! - every route also under `/api/`: `POST /upload/image` (multipart; a clash with other bytes
//!   is renamed `stem (1).ext`, the same bytes keep the name, `overwrite` replaces),
//!   `POST /prompt` (validated like `validate_prompt`: the same error types, messages, details,
//!   `extra_info`, `node_errors` with `dependent_outputs`; a body that is not JSON is aiohttp's
//!   plain-text 500), `GET /history[/{id}]` (`{}` until the prompt is done), `GET /view`,
//!   `GET /object_info[/{class}]`, `GET /system_stats`, `GET /queue`, `GET /prompt`,
//!   `POST /queue` and `POST /history` (clear/delete);
//! - one prompt at a time, in `number` order (first in, first out), each node really run
//!   (see [`nodes`]: real pixels for the image nodes, stand-ins that record their inputs for the
//!   model nodes), with ComfyUI's caching: a node whose signature (type, inputs, the linked
//!   nodes' signatures, LoadImage's file bytes) was computed by the previous prompt is not run
//!   again, and the history of a wholly cached prompt points at the old files;
//! - the websocket `/ws?clientId=ID` with the messages in ComfyUI's order — `status`
//!   broadcasts at each queue change, then for the prompt's `client_id` only: `execution_start`,
//!   `execution_cached`, per node `progress_state`, `executing`, `progress` (KSampler steps),
//!   `executed`, then `execution_success` or `execution_error`, and `executing` with
//!   `node: null` once the history is written;
//! - faults: stopped (connections refused, then restarted on the same port), execution errors
//!   for the next prompts, prompts that hang, websockets cut after N messages, scripted HTTP
//!   answers (a status, a dropped connection, a hang) per route, or drawn for every request
//!   from a fault source (for chaos runs), slow KSampler steps;
//! - for benchmarks, an instant mode ([`FakeComfyUi::set_instant`]): the same routes and
//!   messages, but no node runs (every SaveImage saves the uploaded picture as it is).
//!
//! Where it simplifies: nodes are visited in id order (ComfyUI follows the JSON's order and
//! Python's set order); the `prompt` PNG chunk has its keys sorted; only PNG uploads decode
//! (drawdrop sends PNG); ImageScale's bicubic and lanczos are bilinear; `/view` ignores
//! `preview` and `channel`; previews (off by default, as in ComfyUI) are a fixed small PNG;
//! 16-bit PNGs are cut to 8 bits as the `image` crate does (PIL reads them otherwise); no
//! `/interrupt`, no custom nodes; a stopped fake keeps
//! its queue, history and files (the network went away, ComfyUI did not restart).

mod graph;
mod http;
pub mod nodes;
pub mod python;
mod ws;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::fakes::serving::{self, Running, lock};
use http::{Incoming, Request, Response};
use nodes::{Catalog, Files, Folder, Given, Inputs, Ran};

/// The checkpoints `CheckpointLoaderSimple` lists unless [`FakeComfyUi::set_checkpoints`].
pub const DEFAULT_CHECKPOINTS: &[&str] = &[
    "sd_xl_base_1.0.safetensors",
    "v1-5-pruned-emaonly.safetensors",
];
/// Most prompts the history keeps (`execution.MAXIMUM_HISTORY_SIZE`).
const MAXIMUM_HISTORY_SIZE: usize = 10000;
/// The version `/system_stats` reports.
pub const COMFYUI_VERSION: &str = "0.3.64";

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A scripted answer for the next request to a route (see [`FakeComfyUi::push_http_fault`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpFault {
    /// Answer this status with aiohttp's plain-text error page, doing nothing else.
    Status(u16),
    /// Read the request, then close the connection without a byte.
    Drop,
    /// Never answer; the connection stays open until the client goes away.
    Hang,
}

/// What the tests can count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Prompts accepted by `POST /prompt`.
    pub prompts_queued: usize,
    /// Prompts that finished (success or error) and are in the history.
    pub prompts_executed: usize,
    /// Successful `POST /upload/image` requests.
    pub uploads: usize,
    /// Websockets ever accepted.
    pub ws_connections: usize,
    /// Websockets open now.
    pub ws_open: usize,
}

/// A node that really ran (not served from the cache), with the inputs it was given: the
/// prompt's values after validation's conversions, links as `[node id, slot]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutedNode {
    pub prompt_id: String,
    pub node_id: String,
    pub class_type: String,
    pub inputs: Map<String, Value>,
}

/// Where an accepted prompt is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptState {
    Pending,
    Running,
    /// In the history with `status_str` `success`.
    Succeeded,
    /// In the history with `status_str` `error`.
    Failed,
}

/// A prompt `POST /prompt` accepted (see [`FakeComfyUi::prompts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedPrompt {
    pub prompt_id: String,
    /// The graph as validated.
    pub prompt: Value,
    pub client_id: Option<String>,
    pub state: PromptState,
}

impl QueuedPrompt {
    /// The `image` input of its first LoadImage node (in the graph's key order).
    pub fn loaded_image(&self) -> Option<&str> {
        loaded_image(&self.prompt)
    }
}

/// The `image` input of the first LoadImage node of a graph (in its key order).
fn loaded_image(prompt: &Value) -> Option<&str> {
    prompt
        .as_object()?
        .values()
        .find(|node| node["class_type"] == "LoadImage")
        .and_then(|node| node["inputs"]["image"].as_str())
}

/// Draws a fault for a request: method, path.
type FaultSource = Box<dyn FnMut(&str, &str) -> Option<HttpFault> + Send>;

/// A running fake ComfyUI. Clones share it; it stops when the last handle is dropped.
#[derive(Clone)]
pub struct FakeComfyUi {
    handle: Arc<Handle>,
}

impl fmt::Debug for FakeComfyUi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeComfyUi")
            .field("addr", &self.handle.addr)
            .finish()
    }
}

impl FakeComfyUi {
    /// Starts a fake on `127.0.0.1` at a free port. Panics if it cannot bind.
    pub async fn start() -> FakeComfyUi {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake ComfyUI: cannot bind 127.0.0.1:0")
    }

    /// Starts a fake listening on `addr` (port 0: a free one).
    pub async fn start_on(addr: SocketAddr) -> io::Result<FakeComfyUi> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let worker = tokio::spawn(prompt_worker(shared.clone()));
        let running = spawn_listener(shared.clone(), listener);
        Ok(FakeComfyUi {
            handle: Arc::new(Handle {
                shared,
                addr,
                running: Mutex::new(Some(running)),
                worker,
            }),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    /// `ws://127.0.0.1:PORT/ws?clientId=ID`.
    pub fn ws_url(&self, client_id: &str) -> String {
        format!("ws://{}/ws?clientId={client_id}", self.handle.addr)
    }

    /// The address (kept across [`FakeComfyUi::stop`] / [`FakeComfyUi::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// The checkpoint files the server has (`CheckpointLoaderSimple.ckpt_name`'s list).
    pub fn set_checkpoints(&self, names: &[&str]) {
        self.shared().state().checkpoints = names.iter().map(|n| n.to_string()).collect();
    }

    /// How long each KSampler step takes (default: none), so that progress can be watched.
    pub fn set_step_delay(&self, delay: Duration) {
        self.shared().state().step_delay = delay;
    }

    /// The next `count` prompts fail at their first node that runs (not served from the
    /// cache): `execution_error` with `exception_type` `RuntimeError` and this message.
    pub fn fail_next_prompts(&self, count: usize, message: &str) {
        let mut state = self.shared().state();
        state
            .execution_failures
            .extend(std::iter::repeat_n(message.to_string(), count));
    }

    /// The next `count` prompts stop after the `executing` message of their first node that
    /// runs, and go on only at [`FakeComfyUi::release_hung`] (or never, if the fake is dropped).
    pub fn hang_next_prompts(&self, count: usize) {
        self.shared().state().hangs += count;
    }

    /// Lets hung prompts go on.
    pub fn release_hung(&self) {
        self.shared().release.send_modify(|n| *n += 1);
    }

    /// Sends a binary preview frame after each KSampler step (ComfyUI with a preview method
    /// set): big-endian u32 event 1, u32 image type 2, then a small PNG.
    pub fn set_previews(&self, on: bool) {
        self.shared().state().previews = on;
    }

    /// Websockets opened from now on are cut (TCP closed, no close frame) right after
    /// sending `count` messages (the first `status` included); `None`: never.
    pub fn cut_websockets_after(&self, count: Option<usize>) {
        self.shared().state().cut_after = count;
    }

    /// The next request to `route` (`"/prompt"`, `"/history"`, `"/upload/image"`, ...; also
    /// matched under `/api` and with a further `/...`) gets `fault` instead of its answer.
    pub fn push_http_fault(&self, route: &str, fault: HttpFault) {
        self.shared()
            .state()
            .http_faults
            .push_back((route.to_string(), fault));
    }

    /// Asks `source` for a fault for every HTTP request (its method and path without `/api`)
    /// that finds no scripted fault queued: random faults for chaos runs (seed it for
    /// replayable runs). The websocket upgrade (`GET /ws`) asks too.
    pub fn set_fault_source(
        &self,
        source: impl FnMut(&str, &str) -> Option<HttpFault> + Send + 'static,
    ) {
        self.shared().state().fault_source = Some(Box::new(source));
    }

    /// For benchmarks: prompts are validated and followed on the websocket as always, but
    /// run without any work: no node runs and nothing is cached; each SaveImage output node
    /// saves the bytes of the graph's first LoadImage file unchanged, under the name
    /// SaveImage would give it, and the history lists it. So the fake is never the
    /// bottleneck of a per-job figure. Scripted execution failures and hangs wait for the
    /// normal mode.
    pub fn set_instant(&self, on: bool) {
        self.shared().state().instant = on;
    }

    /// Stops listening and drops every connection (websockets included); new connections
    /// are refused. The queue keeps running; history and files stay.
    pub async fn stop(&self) {
        let running = lock(&self.handle.running).take();
        if let Some(running) = running {
            running.stop().await;
        }
    }

    /// Listens again on the same address after [`FakeComfyUi::stop`].
    pub async fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.handle.addr).await?;
        let running = spawn_listener(self.handle.shared.clone(), listener);
        *lock(&self.handle.running) = Some(running);
        Ok(())
    }

    /// Whether it is listening.
    pub fn is_running(&self) -> bool {
        lock(&self.handle.running).is_some()
    }

    pub fn counters(&self) -> Counters {
        self.shared().state().counters.clone()
    }

    /// Every node that ran, in the order they ran.
    pub fn executed_nodes(&self) -> Vec<ExecutedNode> {
        self.shared().state().executed.clone()
    }

    /// The inputs node `node_id` of prompt `prompt_id` ran with (`None`: it did not run).
    pub fn node_inputs(&self, prompt_id: &str, node_id: &str) -> Option<Map<String, Value>> {
        let state = self.shared().state();
        state
            .executed
            .iter()
            .find(|n| n.prompt_id == prompt_id && n.node_id == node_id)
            .map(|n| n.inputs.clone())
    }

    /// A stored file: `folder` is `"input"`, `"temp"` or `"output"`.
    pub fn file(&self, folder: &str, subfolder: &str, name: &str) -> Option<Vec<u8>> {
        let folder = Folder::parse(folder)?;
        let file = self.shared().read(folder, subfolder, name)?;
        Some(file.as_ref().clone())
    }

    /// Names of the files in a folder (`"input"`, `"temp"`, `"output"`), as
    /// `subfolder/name` (just `name` at the top), sorted.
    pub fn files(&self, folder: &str) -> Vec<String> {
        let Some(folder) = Folder::parse(folder) else {
            return Vec::new();
        };
        let state = self.shared().state();
        state
            .files
            .keys()
            .filter(|(f, _, _)| *f == folder)
            .map(|(_, sub, name)| {
                if sub.is_empty() {
                    name.clone()
                } else {
                    format!("{sub}/{name}")
                }
            })
            .collect()
    }

    /// Every prompt accepted so far that the fake still holds (finished ones while the
    /// history keeps them, then the running one, then the queue), with its graph as
    /// validated and where it is.
    pub fn prompts(&self) -> Vec<QueuedPrompt> {
        let state = self.shared().state();
        let mut prompts: Vec<QueuedPrompt> = state
            .history_order
            .iter()
            .filter_map(|id| {
                let entry = state.history.get(id)?;
                let success = entry["status"]["status_str"] == "success";
                Some(QueuedPrompt {
                    prompt_id: id.clone(),
                    prompt: entry["prompt"][2].clone(),
                    client_id: entry["prompt"][3]["client_id"].as_str().map(str::to_owned),
                    state: if success {
                        PromptState::Succeeded
                    } else {
                        PromptState::Failed
                    },
                })
            })
            .collect();
        let waiting = state
            .running
            .iter()
            .map(|item| (item, PromptState::Running));
        let pending = state
            .pending
            .iter()
            .map(|item| (item, PromptState::Pending));
        for (item, where_it_is) in waiting.chain(pending) {
            prompts.push(QueuedPrompt {
                prompt_id: item.prompt_id.clone(),
                prompt: item.prompt.clone(),
                client_id: item.client_id(),
                state: where_it_is,
            });
        }
        prompts
    }

    /// The history entry of a prompt, as `GET /history/{id}` shows it.
    pub fn history(&self, prompt_id: &str) -> Option<Value> {
        let state = self.shared().state();
        state.history.get(prompt_id).cloned()
    }

    /// Waits until `condition` holds (checked at every change of the fake's state); false if
    /// `timeout` passed first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&FakeComfyUi) -> bool,
    ) -> bool {
        serving::wait_until(&self.shared().changes, timeout, || condition(self)).await
    }

    /// Waits until `n` prompts finished. Panics after `timeout`.
    pub async fn wait_executed(&self, n: usize, timeout: Duration) {
        let done = self
            .wait_until(timeout, |s| s.counters().prompts_executed >= n)
            .await;
        assert!(
            done,
            "fake ComfyUI: expected {n} prompts executed within {timeout:?}, got {:?}",
            self.counters()
        );
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
    worker: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.token.cancel();
        }
        self.shared.shutdown.cancel();
        self.worker.abort();
    }
}

/// A websocket's queue of outgoing messages.
struct Socket {
    sender: mpsc::UnboundedSender<Message>,
}

/// A prompt in the queue: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Clone, Debug)]
struct QueueItem {
    number: Value,
    prompt_id: String,
    prompt: Value,
    extra_data: Map<String, Value>,
    outputs: Vec<String>,
}

impl QueueItem {
    fn to_json(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }

    fn client_id(&self) -> Option<String> {
        self.extra_data.get("client_id").map(python::str)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Bumped at every change the tests may wait for.
    changes: watch::Sender<u64>,
    /// Wakes the prompt worker.
    wake: Notify,
    /// Bumped to let hung prompts go on.
    release: watch::Sender<u64>,
    /// The fake is gone.
    shutdown: CancellationToken,
}

struct State {
    checkpoints: Vec<String>,
    step_delay: Duration,
    files: BTreeMap<(Folder, String, String), Arc<Vec<u8>>>,
    /// ComfyUI's `self.number`: the next prompt's number.
    number: i64,
    pending: Vec<QueueItem>,
    running: Option<QueueItem>,
    history: BTreeMap<String, Value>,
    /// History ids in the order they were written.
    history_order: Vec<String>,
    /// Node results by signature (the nodes of the last prompt only, as ComfyUI's classic cache).
    cache: HashMap<String, Ran>,
    sockets: HashMap<String, Socket>,
    /// The running prompt's client and the node it is on (for a socket that reconnects).
    current: Option<(Option<String>, Option<String>)>,
    execution_failures: VecDeque<String>,
    hangs: usize,
    cut_after: Option<usize>,
    previews: bool,
    http_faults: VecDeque<(String, HttpFault)>,
    fault_source: Option<FaultSource>,
    instant: bool,
    counters: Counters,
    executed: Vec<ExecutedNode>,
}

/// Who a message goes to.
#[derive(Clone, Copy)]
enum To<'a> {
    /// The prompt's client; nobody when it has no `client_id`.
    Client(Option<&'a str>),
    /// The prompt's client; every socket when it has no `client_id` (progress messages).
    ClientOrAll(Option<&'a str>),
    /// Every socket.
    All,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            state: Mutex::new(State {
                checkpoints: DEFAULT_CHECKPOINTS.iter().map(|c| c.to_string()).collect(),
                step_delay: Duration::ZERO,
                files: BTreeMap::new(),
                number: 0,
                pending: Vec::new(),
                running: None,
                history: BTreeMap::new(),
                history_order: Vec::new(),
                cache: HashMap::new(),
                sockets: HashMap::new(),
                current: None,
                execution_failures: VecDeque::new(),
                hangs: 0,
                cut_after: None,
                previews: false,
                http_faults: VecDeque::new(),
                fault_source: None,
                instant: false,
                counters: Counters::default(),
                executed: Vec::new(),
            }),
            changes: watch::channel(0).0,
            wake: Notify::new(),
            release: watch::channel(0).0,
            shutdown: CancellationToken::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn catalog(&self) -> Catalog {
        let state = self.state();
        let input_images = state
            .files
            .keys()
            .filter(|(f, sub, name)| {
                *f == Folder::Input && sub.is_empty() && nodes::is_image_name(name)
            })
            .map(|(_, _, name)| name.clone())
            .collect();
        Catalog {
            checkpoints: state.checkpoints.clone(),
            input_images,
        }
    }

    /// `{"exec_info": {"queue_remaining": N}}`.
    fn queue_info(state: &State) -> Value {
        let remaining = state.pending.len() + usize::from(state.running.is_some());
        json!({"exec_info": {"queue_remaining": remaining}})
    }

    /// Sends `{"type", "data"}` to the sockets `to` names.
    fn send(&self, to: To<'_>, kind: &str, data: Value) {
        Shared::send_locked(&self.state(), to, kind, data);
    }

    /// [`Shared::send`] with the state already locked (so that a queue change and its
    /// `status` message are one step, as ComfyUI sends it under the queue's mutex).
    fn send_locked(state: &State, to: To<'_>, kind: &str, data: Value) {
        let text = json!({"type": kind, "data": data}).to_string();
        Shared::deliver(state, to, &Message::text(text));
    }

    /// Queues one frame on the sockets `to` names.
    fn deliver(state: &State, to: To<'_>, frame: &Message) {
        let target = match to {
            To::Client(None) => return,
            To::Client(Some(id)) | To::ClientOrAll(Some(id)) => Some(id),
            To::ClientOrAll(None) | To::All => None,
        };
        match target {
            Some(id) => {
                if let Some(socket) = state.sockets.get(id) {
                    let _ = socket.sender.send(frame.clone());
                }
            }
            None => {
                for socket in state.sockets.values() {
                    let _ = socket.sender.send(frame.clone());
                }
            }
        }
    }

    fn send_to_socket(&self, sid: &str, kind: &str, data: Value) {
        self.send(To::Client(Some(sid)), kind, data);
    }

    fn queue_updated_locked(state: &State) {
        let info = Shared::queue_info(state);
        Shared::send_locked(state, To::All, "status", json!({"status": info}));
    }

    /// Registers a socket under `sid` (replacing the one before) and queues its greeting;
    /// returns after how many messages it is to be cut.
    fn register_socket(&self, sid: &str, socket: Socket) -> Option<usize> {
        let cut_after = {
            let mut state = self.state();
            state.sockets.insert(sid.to_string(), socket);
            state.counters.ws_connections += 1;
            state.counters.ws_open += 1;
            state.cut_after
        };
        let (info, current) = {
            let state = self.state();
            (Shared::queue_info(&state), state.current.clone())
        };
        self.send_to_socket(sid, "status", json!({"status": info, "sid": sid}));
        if let Some((Some(client), Some(node))) = current
            && client == sid
        {
            self.send_to_socket(sid, "executing", json!({"node": node}));
        }
        self.bump();
        cut_after
    }

    fn unregister_socket(&self, sid: &str) {
        {
            let mut state = self.state();
            state.sockets.remove(sid);
            state.counters.ws_open -= 1;
        }
        self.bump();
    }
}

impl Files for Shared {
    fn read(&self, folder: Folder, subfolder: &str, name: &str) -> Option<Arc<Vec<u8>>> {
        let key = (folder, normalize(subfolder)?, name.to_string());
        self.state().files.get(&key).cloned()
    }

    fn list(&self, folder: Folder, subfolder: &str) -> Vec<String> {
        let Some(subfolder) = normalize(subfolder) else {
            return Vec::new();
        };
        let state = self.state();
        state
            .files
            .keys()
            .filter(|(f, sub, _)| *f == folder && *sub == subfolder)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    fn write(&self, folder: Folder, subfolder: &str, name: &str, bytes: Vec<u8>) {
        if let Some(subfolder) = normalize(subfolder) {
            let key = (folder, subfolder, name.to_string());
            self.state().files.insert(key, Arc::new(bytes));
        }
    }
}

/// `os.path.normpath` of a subfolder inside its folder; `None` when it leaves the folder.
fn normalize(subfolder: &str) -> Option<String> {
    if subfolder.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in subfolder.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// `str(uuid.uuid4())`.
fn uuid4() -> String {
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        *byte = fastrand::u8(..);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------------------------
// The prompt worker (main.py's prompt_worker and execution.py's PromptExecutor)
// ---------------------------------------------------------------------------------------------

async fn prompt_worker(shared: Arc<Shared>) {
    loop {
        let item = loop {
            let next = {
                let mut state = shared.state();
                if state.pending.is_empty() {
                    None
                } else {
                    let item = state.pending.remove(0);
                    state.running = Some(item.clone());
                    state.current = Some((item.client_id(), None));
                    Shared::queue_updated_locked(&state);
                    Some(item)
                }
            };
            if let Some(item) = next {
                break item;
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                () = shared.shutdown.cancelled() => return,
            }
        };
        let Some(outcome) = execute(&shared, &item).await else {
            return;
        };
        let client = item.client_id();
        {
            let mut state = shared.state();
            state.running = None;
            state.current = None;
            let entry = json!({
                "prompt": item.to_json(),
                "outputs": outcome.outputs,
                "status": {
                    "status_str": if outcome.success { "success" } else { "error" },
                    "completed": outcome.success,
                    "messages": outcome.messages,
                },
                "meta": outcome.meta,
            });
            // `task_done`: past MAXIMUM_HISTORY_SIZE the oldest entry goes; an id seen
            // before keeps its place.
            if state.history.len() > MAXIMUM_HISTORY_SIZE {
                let oldest = state.history_order.remove(0);
                state.history.remove(&oldest);
            }
            if state
                .history
                .insert(item.prompt_id.clone(), entry)
                .is_none()
            {
                state.history_order.push(item.prompt_id.clone());
            }
            state.counters.prompts_executed += 1;
            Shared::queue_updated_locked(&state);
        }
        shared.send(
            To::Client(client.as_deref()),
            "executing",
            json!({"node": null, "prompt_id": item.prompt_id}),
        );
        shared.bump();
    }
}

/// What running a prompt left for its history.
struct Outcome {
    success: bool,
    outputs: Value,
    meta: Value,
    messages: Vec<Value>,
}

/// One prompt's run; `None` if the fake went away while it hung.
async fn execute(shared: &Arc<Shared>, item: &QueueItem) -> Option<Outcome> {
    if shared.state().instant {
        return Some(execute_instantly(shared, item));
    }
    let client = item.client_id();
    let client = client.as_deref();
    let prompt_id = item.prompt_id.as_str();
    let mut messages = Vec::new();
    let add_message = |messages: &mut Vec<Value>, kind: &str, data: Value| {
        let mut data = data;
        data["timestamp"] = json!(now_ms());
        messages.push(json!([kind, data]));
        shared.send(To::Client(client), kind, data);
    };
    add_message(
        &mut messages,
        "execution_start",
        json!({"prompt_id": prompt_id}),
    );
    let signatures = graph::signatures(&item.prompt, shared.as_ref());
    let step_delay = {
        let mut state = shared.state();
        state
            .cache
            .retain(|key, _| signatures.values().any(|s| s == key));
        state.step_delay
    };
    let cached_result = |id: &str| {
        let key = signatures.get(id)?;
        shared.state().cache.get(key).cloned()
    };
    let graph_nodes: Vec<String> = item
        .prompt
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let cached_at_start: Vec<String> = graph_nodes
        .iter()
        .filter(|id| cached_result(id).is_some())
        .cloned()
        .collect();
    add_message(
        &mut messages,
        "execution_cached",
        json!({"nodes": cached_at_start, "prompt_id": prompt_id}),
    );
    let order = graph::run_order(&item.prompt, &item.outputs, &|id| {
        cached_result(id).is_some()
    });
    let mut progress = Progress::new(prompt_id);
    let mut executed: Vec<String> = Vec::new();
    let mut first_to_run = true;
    let mut success = true;
    for id in &order {
        let node = &item.prompt[id.as_str()];
        let class = node["class_type"].as_str().unwrap_or_default().to_string();
        if let Some(hit) = cached_result(id) {
            if client.is_some() {
                shared.send(
                    To::Client(client),
                    "executed",
                    json!({"node": id, "display_node": id, "output": hit.ui, "prompt_id": prompt_id}),
                );
            }
            progress.finish(shared, client, id);
            continue;
        }
        progress.start(shared, client, id);
        let (given, formatted) = gather_inputs(node, &signatures, shared);
        {
            let mut state = shared.state();
            if let Some(current) = state.current.as_mut() {
                current.1 = Some(id.clone());
            }
        }
        shared.send(
            To::Client(client),
            "executing",
            json!({"node": id, "display_node": id, "prompt_id": prompt_id}),
        );
        // Scripted faults act on a prompt's first node that really runs (a wholly cached
        // prompt leaves them for the next one).
        let (failure, hang) = {
            let mut state = shared.state();
            state.executed.push(ExecutedNode {
                prompt_id: prompt_id.to_string(),
                node_id: id.clone(),
                class_type: class.clone(),
                inputs: node["inputs"].as_object().cloned().unwrap_or_default(),
            });
            if std::mem::take(&mut first_to_run) {
                // A hung prompt waits for a release that comes after it started.
                let hang = (state.hangs > 0).then(|| shared.release.subscribe());
                if hang.is_some() {
                    state.hangs -= 1;
                }
                (state.execution_failures.pop_front(), hang)
            } else {
                (None, None)
            }
        };
        shared.bump();
        if let Some(mut released) = hang {
            tokio::select! {
                _ = released.changed() => {}
                () = shared.shutdown.cancelled() => return None,
            }
        }
        let result = match (failure, given) {
            (Some(message), _) => Err(nodes::Raised {
                exception_type: "RuntimeError".into(),
                message,
            }),
            (None, Err(raised)) => Err(raised),
            (None, Ok(given)) => {
                if class == "KSampler" {
                    let steps = given
                        .get("steps")
                        .and_then(|g| match g {
                            Given::Value(v) => v.as_u64(),
                            Given::Data(_) => None,
                        })
                        .unwrap_or(1);
                    for step in 1..=steps {
                        if !step_delay.is_zero() {
                            tokio::time::sleep(step_delay).await;
                        }
                        progress.update(shared, client, id, step, steps);
                    }
                }
                let extra_pnginfo = item
                    .extra_data
                    .get("extra_pnginfo")
                    .and_then(Value::as_object);
                let ctx = nodes::Context {
                    files: shared.as_ref(),
                    prompt: &item.prompt,
                    extra_pnginfo,
                };
                nodes::run(&class, &given, &ctx)
            }
        };
        match result {
            Ok(ran) => {
                if let Some(key) = signatures.get(id) {
                    shared.state().cache.insert(key.clone(), ran.clone());
                }
                if let Some(ui) = &ran.ui
                    && client.is_some()
                {
                    shared.send(
                        To::Client(client),
                        "executed",
                        json!({"node": id, "display_node": id, "output": ui, "prompt_id": prompt_id}),
                    );
                }
                progress.finish(shared, client, id);
                executed.push(id.clone());
            }
            Err(raised) => {
                success = false;
                add_message(
                    &mut messages,
                    "execution_error",
                    json!({
                        "prompt_id": prompt_id,
                        "node_id": id,
                        "node_type": class,
                        "executed": executed,
                        "exception_message": format!("{}\n", raised.message),
                        "exception_type": raised.exception_type,
                        "traceback": graph::traceback(),
                        "current_inputs": formatted,
                        "current_outputs": cached_at_start,
                    }),
                );
                break;
            }
        }
    }
    if success {
        add_message(
            &mut messages,
            "execution_success",
            json!({"prompt_id": prompt_id}),
        );
    }
    let mut outputs = Map::new();
    let mut meta = Map::new();
    for id in &graph_nodes {
        if let Some(ui) = cached_result(id).and_then(|hit| hit.ui) {
            outputs.insert(id.clone(), ui);
            meta.insert(
                id.clone(),
                json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id}),
            );
        }
    }
    Some(Outcome {
        success,
        outputs: Value::Object(outputs),
        meta: Value::Object(meta),
        messages,
    })
}

/// [`FakeComfyUi::set_instant`]'s run: the messages of a prompt whose nodes all ran, but
/// every output node saving the LoadImage file as it is.
fn execute_instantly(shared: &Shared, item: &QueueItem) -> Outcome {
    let client = item.client_id();
    let client = client.as_deref();
    let prompt_id = item.prompt_id.as_str();
    let stamped = |kind: &str, mut data: Value| {
        data["timestamp"] = json!(now_ms());
        shared.send(To::Client(client), kind, data.clone());
        json!([kind, data])
    };
    let mut messages = vec![
        stamped("execution_start", json!({"prompt_id": prompt_id})),
        stamped(
            "execution_cached",
            json!({"nodes": [], "prompt_id": prompt_id}),
        ),
    ];
    let picture = loaded_image(&item.prompt).and_then(|image| {
        let (folder, subfolder, name) = nodes::annotated_path(image);
        shared.read(folder, &subfolder, &name)
    });
    let mut outputs = Map::new();
    let mut meta = Map::new();
    for id in &item.outputs {
        let node = &item.prompt[id.as_str()];
        shared.send(
            To::Client(client),
            "executing",
            json!({"node": id, "display_node": id, "prompt_id": prompt_id}),
        );
        let (Some(picture), "SaveImage") = (&picture, node["class_type"].as_str().unwrap_or(""))
        else {
            continue;
        };
        let prefix = node["inputs"]["filename_prefix"]
            .as_str()
            .unwrap_or("ComfyUI");
        let saved = nodes::save_names(prefix, nodes::png_size(picture), 1, Folder::Output, shared);
        let Some((subfolder, name)) = saved
            .ok()
            .and_then(|(subfolder, names)| Some((subfolder, names.into_iter().next()?)))
        else {
            continue;
        };
        shared.write(Folder::Output, &subfolder, &name, picture.as_ref().clone());
        let ui = json!({"images": [{"filename": name, "subfolder": subfolder, "type": "output"}]});
        shared.send(
            To::Client(client),
            "executed",
            json!({"node": id, "display_node": id, "output": ui, "prompt_id": prompt_id}),
        );
        outputs.insert(id.clone(), ui);
        meta.insert(
            id.clone(),
            json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id}),
        );
    }
    messages.push(stamped(
        "execution_success",
        json!({"prompt_id": prompt_id}),
    ));
    Outcome {
        success: true,
        outputs: Value::Object(outputs),
        meta: Value::Object(meta),
        messages,
    }
}

type Gathered = (Result<Inputs, nodes::Raised>, Value);

/// A node's inputs for running it (links resolved from the cache), and how an execution
/// error quotes them (`current_inputs`: each value in a list).
fn gather_inputs(node: &Value, signatures: &HashMap<String, String>, shared: &Shared) -> Gathered {
    let mut given = Inputs::new();
    let mut formatted = Map::new();
    let mut missing = None;
    for (name, value) in node["inputs"].as_object().into_iter().flatten() {
        let resolved = match graph::as_link(value) {
            Some((from, slot)) => {
                let data = signatures
                    .get(from)
                    .and_then(|key| shared.state().cache.get(key).cloned())
                    .and_then(|hit| hit.outputs.get(slot).cloned());
                match data {
                    Some(data) => Given::Data(data),
                    None => {
                        missing.get_or_insert_with(|| nodes::Raised {
                            exception_type: "IndexError".into(),
                            message: "tuple index out of range".into(),
                        });
                        continue;
                    }
                }
            }
            None => Given::Value(value.clone()),
        };
        let shown = match &resolved {
            Given::Value(v) => v.clone(),
            Given::Data(d) => json!(d.describe()),
        };
        formatted.insert(name.clone(), json!([shown]));
        given.insert(name.clone(), resolved);
    }
    let given = match missing {
        Some(raised) => Err(raised),
        None => Ok(given),
    };
    (given, Value::Object(formatted))
}

/// The `progress_state` messages: every node of the prompt that started, with its state.
struct Progress {
    prompt_id: String,
    nodes: BTreeMap<String, (&'static str, f64, f64)>,
}

impl Progress {
    fn new(prompt_id: &str) -> Progress {
        Progress {
            prompt_id: prompt_id.to_string(),
            nodes: BTreeMap::new(),
        }
    }

    fn publish(&self, shared: &Shared, client: Option<&str>) {
        let nodes: Map<String, Value> = self
            .nodes
            .iter()
            .map(|(id, (state, value, max))| {
                let entry = json!({
                    "value": value, "max": max, "state": state, "node_id": id,
                    "prompt_id": self.prompt_id, "display_node_id": id,
                    "parent_node_id": null, "real_node_id": id,
                });
                (id.clone(), entry)
            })
            .collect();
        shared.send(
            To::ClientOrAll(client),
            "progress_state",
            json!({"prompt_id": self.prompt_id, "nodes": nodes}),
        );
    }

    fn start(&mut self, shared: &Shared, client: Option<&str>, id: &str) {
        self.nodes.insert(id.to_string(), ("running", 0.0, 1.0));
        self.publish(shared, client);
    }

    fn update(&mut self, shared: &Shared, client: Option<&str>, id: &str, step: u64, steps: u64) {
        self.nodes
            .insert(id.to_string(), ("running", step as f64, steps as f64));
        self.publish(shared, client);
        shared.send(
            To::ClientOrAll(client),
            "progress",
            json!({"value": step, "max": steps, "prompt_id": self.prompt_id, "node": id}),
        );
        let state = shared.state();
        if state.previews {
            // `send_image`: event PREVIEW_IMAGE (1), then the image type (2: PNG), then the PNG.
            let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 2];
            frame.extend_from_slice(&nodes::preview_png());
            Shared::deliver(&state, To::ClientOrAll(client), &Message::binary(frame));
        }
    }

    fn finish(&mut self, shared: &Shared, client: Option<&str>, id: &str) {
        let max = self.nodes.get(id).map_or(1.0, |n| n.2);
        self.nodes.insert(id.to_string(), ("finished", max, max));
        self.publish(shared, client);
    }
}

// ---------------------------------------------------------------------------------------------
// Listener, connections and routes
// ---------------------------------------------------------------------------------------------

fn spawn_listener(shared: Arc<Shared>, listener: TcpListener) -> Running {
    serving::spawn_listener(listener, move |stream| {
        serve_connection(shared.clone(), stream)
    })
}

/// What a route wants done with the connection.
enum Reply {
    Send(Response),
    Drop,
    Hang,
    /// Become a websocket for this client id.
    Upgrade(Option<String>),
}

async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let request = match http::read_request(&mut stream, &mut buffer).await {
            Ok(Incoming::Request(request)) => request,
            Ok(Incoming::Bad(status, message)) => {
                let _ = stream
                    .write_all(&Response::text(status, message).to_bytes(true))
                    .await;
                return;
            }
            Ok(Incoming::Closed) | Err(_) => return,
        };
        let close = request.close;
        match route(&shared, &request).await {
            Reply::Send(response) => {
                let mut bytes = response.to_bytes(close);
                if request.method == "HEAD" {
                    bytes.truncate(bytes.len() - response.body.len());
                }
                if stream.write_all(&bytes).await.is_err() || close {
                    return;
                }
            }
            Reply::Drop => return,
            Reply::Hang => {
                serving::wait_for_eof(&mut stream).await;
                return;
            }
            Reply::Upgrade(client_id) => {
                let key = request.header("sec-websocket-key").unwrap_or_default();
                ws::serve(shared, stream, key, client_id).await;
                return;
            }
        }
    }
}

/// Takes the first scripted fault for this path, else asks the fault source, if any.
fn take_fault(shared: &Shared, method: &str, path: &str) -> Option<HttpFault> {
    let mut state = shared.state();
    let scripted = state.http_faults.iter().position(|(route, _)| {
        path == route
            || path
                .strip_prefix(route.as_str())
                .is_some_and(|r| r.starts_with('/'))
    });
    match scripted {
        Some(at) => state.http_faults.remove(at).map(|(_, fault)| fault),
        None => state
            .fault_source
            .as_mut()
            .and_then(|source| source(method, path)),
    }
}

async fn route(shared: &Arc<Shared>, request: &Request) -> Reply {
    let full = request.path();
    let path = match full.strip_prefix("/api") {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => full,
    };
    if let Some(fault) = take_fault(shared, &request.method, &path) {
        return match fault {
            HttpFault::Status(status) => Reply::Send(match status {
                500 => Response::internal_error(),
                _ => Response::text(status, &format!("{status}: scripted fault")),
            }),
            HttpFault::Drop => Reply::Drop,
            HttpFault::Hang => Reply::Hang,
        };
    }
    let method = request.method.as_str();
    let get = method == "GET" || method == "HEAD";
    let response = match (path.as_str(), get) {
        ("/ws", true) if request.is_websocket_upgrade() => {
            return Reply::Upgrade(request.query_value("clientId"));
        }
        ("/ws", true) => Response::text(
            400,
            "No WebSocket UPGRADE hdr: None\n Can \"Upgrade\" only to \"WebSocket\".",
        ),
        ("/system_stats", true) => Response::json(200, &system_stats()),
        ("/object_info", true) => {
            let catalog = shared.catalog();
            let mut all = Map::new();
            for class in nodes::CLASSES {
                if let Some(def) = nodes::definition(class, &catalog) {
                    all.insert(class.to_string(), def.info());
                }
            }
            Response::json(200, &Value::Object(all))
        }
        (p, true) if p.starts_with("/object_info/") => {
            let class = &p["/object_info/".len()..];
            let found = nodes::definition(class, &shared.catalog());
            let mut one = Map::new();
            if let Some(def) = found {
                one.insert(class.to_string(), def.info());
            }
            Response::json(200, &Value::Object(one))
        }
        ("/prompt", true) => Response::json(200, &Shared::queue_info(&shared.state())),
        ("/prompt", false) if method == "POST" => post_prompt(shared, &request.body),
        ("/queue", true) => {
            let state = shared.state();
            let running: Vec<Value> = state.running.iter().map(QueueItem::to_json).collect();
            let pending: Vec<Value> = state.pending.iter().map(QueueItem::to_json).collect();
            Response::json(
                200,
                &json!({"queue_running": running, "queue_pending": pending}),
            )
        }
        ("/queue", false) if method == "POST" => post_queue(shared, &request.body),
        ("/history", true) => get_history(shared, request),
        (p, true) if p.starts_with("/history/") => {
            let id = &p["/history/".len()..];
            let state = shared.state();
            let mut one = Map::new();
            if let Some(entry) = state.history.get(id) {
                one.insert(id.to_string(), entry.clone());
            }
            Response::json(200, &Value::Object(one))
        }
        ("/history", false) if method == "POST" => post_history(shared, &request.body),
        ("/upload/image", false) if method == "POST" => upload_image(shared, request),
        ("/view", true) => view(shared, request),
        (
            "/ws" | "/system_stats" | "/object_info" | "/prompt" | "/queue" | "/history"
            | "/upload/image" | "/view",
            _,
        ) => Response::text(405, "405: Method Not Allowed"),
        _ => Response::text(404, "404: Not Found"),
    };
    Reply::Send(response)
}

fn system_stats() -> Value {
    json!({
        "system": {
            "os": "posix",
            "ram_total": 16_777_216_000u64,
            "ram_free": 8_388_608_000u64,
            "comfyui_version": COMFYUI_VERSION,
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.94",
            "required_templates_version": "0.1.94",
            "python_version": "3.12.3 (main, Aug 14 2025, 17:47:21) [GCC 13.3.0]",
            "pytorch_version": "2.8.0+cpu",
            "embedded_python": false,
            "argv": ["main.py", "--cpu"],
        },
        "devices": [{
            "name": "cpu",
            "type": "cpu",
            "index": null,
            "vram_total": 16_777_216_000u64,
            "vram_free": 8_388_608_000u64,
            "torch_vram_total": 16_777_216_000u64,
            "torch_vram_free": 8_388_608_000u64,
        }],
    })
}

/// `POST /prompt`.
fn post_prompt(shared: &Arc<Shared>, body: &[u8]) -> Response {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Response::internal_error();
    };
    let number = match request.get("number") {
        Some(given) => match python::to_float(given) {
            Ok(number) => number,
            Err(_) => return Response::internal_error(),
        },
        None => {
            let mut state = shared.state();
            let mut number = state.number;
            if request
                .get("front")
                .is_some_and(|f| python::to_bool(f) == json!(true))
            {
                number = -number;
            }
            state.number += 1;
            json!(number)
        }
    };
    let Some(prompt) = request.get("prompt") else {
        let error = json!({
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        });
        return Response::json(400, &json!({"error": error, "node_errors": {}}));
    };
    let prompt_id = request.get("prompt_id").map_or_else(uuid4, python::str);
    let mut prompt = prompt.clone();
    let catalog = shared.catalog();
    let accepted = match graph::validate(&mut prompt, &catalog, shared.as_ref()) {
        Ok(accepted) => accepted,
        Err(graph::Refused::Crash) => return Response::internal_error(),
        Err(graph::Refused::Invalid { error, node_errors }) => {
            return Response::json(400, &json!({"error": error, "node_errors": node_errors}));
        }
    };
    let mut extra_data = match request.get("extra_data") {
        Some(Value::Object(extra)) => extra.clone(),
        _ => Map::new(),
    };
    if let Some(client_id) = request.get("client_id") {
        extra_data.insert("client_id".into(), client_id.clone());
    }
    let item = QueueItem {
        number: number.clone(),
        prompt_id: prompt_id.clone(),
        prompt,
        extra_data,
        outputs: accepted.outputs,
    };
    {
        let mut state = shared.state();
        let key = number.as_f64().unwrap_or(0.0);
        let at = state
            .pending
            .iter()
            .position(|queued| queued.number.as_f64().unwrap_or(0.0) > key)
            .unwrap_or(state.pending.len());
        state.pending.insert(at, item);
        state.counters.prompts_queued += 1;
        Shared::queue_updated_locked(&state);
    }
    shared.wake.notify_one();
    shared.bump();
    Response::json(
        200,
        &json!({"prompt_id": prompt_id, "number": number, "node_errors": accepted.node_errors}),
    )
}

/// A `{"clear": true, "delete": [ids]}` body (`POST /queue`, `POST /history`); `None` when
/// it is not a JSON object (aiohttp's 500).
fn clear_and_delete(body: &[u8]) -> Option<(bool, Vec<String>)> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let clear = request
        .get("clear")
        .is_some_and(|c| python::to_bool(c) == json!(true));
    let delete = request
        .get("delete")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().map(python::str).collect())
        .unwrap_or_default();
    Some((clear, delete))
}

/// `POST /queue`: clears or deletes pending prompts.
fn post_queue(shared: &Arc<Shared>, body: &[u8]) -> Response {
    let Some((clear, delete)) = clear_and_delete(body) else {
        return Response::internal_error();
    };
    {
        let mut state = shared.state();
        if clear {
            state.pending.clear();
        }
        state
            .pending
            .retain(|item| !delete.contains(&item.prompt_id));
        Shared::queue_updated_locked(&state);
    }
    shared.bump();
    Response::empty(200)
}

/// `GET /history?max_items=&offset=`.
fn get_history(shared: &Shared, request: &Request) -> Response {
    let parse = |name: &str| request.query_value(name).map(|v| v.parse::<i64>());
    let (max_items, offset) = match (parse("max_items"), parse("offset")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => return Response::internal_error(),
        (max, offset) => (max.and_then(Result::ok), offset.and_then(Result::ok)),
    };
    let state = shared.state();
    let total = state.history_order.len() as i64;
    let mut offset = offset.unwrap_or(-1);
    if offset < 0
        && let Some(max) = max_items
    {
        offset = total - max;
    }
    let mut out = Map::new();
    for (i, id) in state.history_order.iter().enumerate() {
        if (i as i64) < offset {
            continue;
        }
        if let Some(entry) = state.history.get(id) {
            out.insert(id.clone(), entry.clone());
        }
        if max_items.is_some_and(|max| out.len() as i64 >= max) {
            break;
        }
    }
    Response::json(200, &Value::Object(out))
}

/// `POST /history`: clears or deletes entries.
fn post_history(shared: &Shared, body: &[u8]) -> Response {
    let Some((clear, delete)) = clear_and_delete(body) else {
        return Response::internal_error();
    };
    let mut state = shared.state();
    if clear {
        state.history.clear();
        state.history_order.clear();
    }
    for id in &delete {
        state.history.remove(id);
    }
    state.history_order.retain(|kept| !delete.contains(kept));
    Response::empty(200)
}

/// `POST /upload/image` (`image_upload` in server.py).
fn upload_image(shared: &Shared, request: &Request) -> Response {
    let parts = request
        .header("content-type")
        .and_then(|ct| http::multipart(ct, &request.body))
        .unwrap_or_default();
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let folder = match field("type").map(|p| p.text()) {
        None => Folder::Input,
        Some(name) => match Folder::parse(&name) {
            Some(folder) => folder,
            // `get_dir_by_type` leaves its variable unset: an UnboundLocalError.
            None => return Response::internal_error(),
        },
    };
    let Some(image) = field("image") else {
        return Response::empty(400);
    };
    let Some(mut filename) = image.filename.clone().filter(|f| !f.is_empty()) else {
        return Response::empty(400);
    };
    let subfolder = field("subfolder").map(|p| p.text()).unwrap_or_default();
    let Some(normalized) = normalize(&subfolder) else {
        return Response::empty(400);
    };
    if filename.contains('/') || filename == ".." {
        return Response::empty(400);
    }
    let overwrite = field("overwrite").map(|p| p.text());
    let overwrite = matches!(overwrite.as_deref(), Some("true" | "1"));
    let (stem, extension) = split_extension(&filename);
    let mut duplicate = false;
    if !overwrite {
        let mut i = 1;
        while let Some(existing) = shared.read(folder, &normalized, &filename) {
            if existing.as_slice() == image.data.as_slice() {
                duplicate = true;
                break;
            }
            filename = format!("{stem} ({i}){extension}");
            i += 1;
        }
    }
    if !duplicate {
        shared.write(folder, &normalized, &filename, image.data.clone());
    }
    shared.state().counters.uploads += 1;
    shared.bump();
    Response::json(
        200,
        &json!({"name": filename, "subfolder": subfolder, "type": folder.name()}),
    )
}

/// `os.path.splitext`: the extension from the last dot, not counting leading dots.
fn split_extension(name: &str) -> (String, String) {
    let leading = name.len() - name.trim_start_matches('.').len();
    match name[leading..].rfind('.') {
        Some(at) => {
            let at = leading + at;
            (name[..at].to_string(), name[at..].to_string())
        }
        None => (name.to_string(), String::new()),
    }
}

/// `GET /view?filename=&subfolder=&type=`.
fn view(shared: &Shared, request: &Request) -> Response {
    let Some(filename) = request.query_value("filename") else {
        return Response::empty(404);
    };
    let annotated = [
        (" [output]", Some(Folder::Output)),
        (" [input]", Some(Folder::Input)),
        (" [temp]", Some(Folder::Temp)),
    ]
    .iter()
    .find_map(|(suffix, folder)| {
        filename
            .strip_suffix(suffix)
            .map(|n| (n.to_string(), *folder))
    });
    let (filename, folder) = annotated.unwrap_or((filename.clone(), None));
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return Response::empty(400);
    }
    let folder = match folder {
        Some(folder) => folder,
        None => {
            let kind = request
                .query_value("type")
                .unwrap_or_else(|| "output".into());
            match Folder::parse(&kind) {
                Some(folder) => folder,
                None => return Response::empty(400),
            }
        }
    };
    let subfolder = request.query_value("subfolder").unwrap_or_default();
    let Some(subfolder) = normalize(&subfolder) else {
        return Response::empty(403);
    };
    let name = filename.rsplit('/').next().unwrap_or_default().to_string();
    match shared.read(folder, &subfolder, &name) {
        Some(bytes) => Response {
            status: 200,
            content_type: content_type_of(&name),
            extra_headers: vec![("Content-Disposition".into(), format!("filename=\"{name}\""))],
            body: bytes.as_ref().clone(),
        },
        None => Response::empty(404),
    }
}

/// `mimetypes.guess_type` for the files the fake holds.
fn content_type_of(name: &str) -> &'static str {
    let extension = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}
