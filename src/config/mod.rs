//! Configuration: the config file and the profiles beside it, read into validated types.
//!
//! Reading happens in two steps, as in ripgrep's low/high-level args: `raw` holds serde structs
//! that mirror the TOML exactly (unknown keys are errors), and the other modules turn them into
//! the typed values the rest of drawdrop uses. Every error names the file, line and column.
//!
//! - `location`: which file (`--config`, `$DRAWDROP_CONFIG`, the platform config folder)
//! - `load`: the config file into a [`Config`]; `server`: its `[server]` table
//! - `profiles`: the `profiles/` folder; `settings`: one profile's keys; `extra`: its `[extra]`
//! - `checks`: ranges and choices; `diagnostic`: spans to `line:col`, plain messages
//! - `paths`: `~`, relative folders, inbox/outbox nesting; `files`: reading a file as text
//! - `templates`: the annotated files `drawdrop init` writes

mod checks;
mod diagnostic;
mod extra;
mod files;
mod load;
mod location;
pub mod paths;
mod profiles;
mod raw;
mod server;
mod settings;
mod templates;
pub mod workflow;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{DEFAULT_INBOX, DEFAULT_MAX_FILE_MB, DEFAULT_OUTBOX, DEFAULT_SETTLE_MS};
pub use location::{CONFIG_ENV, CONFIG_FILE_NAME, default_config_path, locate, locate_with};
pub(crate) use paths::{Nesting, nesting};
pub use paths::{expand_tilde, home_dir, normalize};
pub use profiles::{DEFAULT_PROFILE_NAME, profile_name_problem};
pub use server::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_SERVER_URL, DEFAULT_TIMEOUT_S,
};
pub use templates::{
    COMFYUI_PROFILE_TOML, COMFYUI_WORKFLOW_JSON, DEFAULT_CONFIG_TOML, DEFAULT_PROFILE_TOML,
};
pub use workflow::Workflow;

/// The whole validated configuration: the config file plus every profile.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this came from (absolute), or where it would be when defaults are used.
    pub file: PathBuf,
    /// Watched folder, absolute, `~` expanded.
    pub inbox: PathBuf,
    /// Results, originals, failed and logs, absolute, `~` expanded.
    pub outbox: PathBuf,
    /// Profile for files dropped directly into the inbox (or into a folder that is no profile).
    pub default_profile: String,
    /// How long size and mtime must stay unchanged before a file is taken.
    pub settle: Duration,
    /// What happens to an original after success.
    pub after: After,
    /// Larger inputs fail at once instead of being read into memory (`max_file_mb`).
    pub max_file_bytes: u64,
    /// Desktop notifications when a batch finishes or a file fails.
    pub notifications: bool,
    /// `outbox/gallery/`: a page of what was made, kept up to date after every job.
    pub gallery: bool,
    /// The image server and how to talk to it.
    /// The image servers: one (`[server]`), or a pool (`[[servers]]`); never empty.
    pub servers: Vec<Server>,
    /// Every usable profile by name; holds `default_profile` unless that one is broken.
    pub profiles: BTreeMap<String, Profile>,
    /// Profiles whose file cannot be used (unreadable, invalid, a refused name), by name:
    /// their files wait in the inbox until the file is fixed; every other profile goes on.
    pub broken: BTreeMap<String, ConfigError>,
}

/// What becomes of a processed original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Moved to `outbox/originals/<relative path>`.
    Archive,
    /// Removed.
    Delete,
}

/// An image server drawdrop talks to.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Its name in logs, `status` and `jobs.jsonl` (`server` for a lone `[server]`).
    pub name: String,
    /// Only these profiles go to this server; `None`: any.
    pub profiles: Option<Vec<String>>,
    /// Base URL, http (or https with the `tls` feature), without user name or password.
    pub url: reqwest::Url,
    /// Which request keys to use.
    pub api: Api,
    /// Per request; a generation may take minutes.
    pub timeout: Duration,
    /// Attempts for failures that may pass (5xx, timeouts, broken answers).
    pub max_attempts: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Sent with every request when `username` and `password_env` are set.
    pub auth: Option<BasicAuth>,
    /// Draw Things' shared secret (gRPC), read from the variable `shared_secret_env` names.
    pub shared_secret: Option<Secret>,
    /// `ca_file`: the certificate authority to trust for `https` instead of the usual ones
    /// (for Draw Things over gRPC: instead of Draw Things' own root).
    pub ca_file: Option<CaFile>,
}

/// A PEM file of certificate authorities, read when the config is loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CaFile").field(&self.path).finish()
    }
}

impl Server {
    /// How logs and `status` name it: `mini (http://mini.local:7860/)`, or only the URL for
    /// a lone `[server]` that names none.
    pub fn label(&self) -> String {
        if self.name == server::DEFAULT_SERVER_NAME {
            self.url.to_string()
        } else {
            format!("{} ({})", self.name, self.url)
        }
    }
}

/// Which request keys the server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Draw Things' names (`strength`, `guidance_scale`, `loras` ...), as in profiles.
    DrawThings,
    /// AUTOMATIC1111's names (`denoising_strength`, `cfg_scale`, LoRAs in the prompt ...).
    A1111,
    /// ComfyUI: a profile's workflow, with the profile's keys put into its nodes.
    ComfyUi,
    /// Draw Things' gRPC API (the app's API server in gRPC mode, gRPCServerCLI): the profile's
    /// keys in its generation configuration.
    DrawThingsGrpc,
}

impl Api {
    pub const ALL: [Api; 4] = [
        Api::DrawThings,
        Api::A1111,
        Api::ComfyUi,
        Api::DrawThingsGrpc,
    ];

    /// Its name in the config, `check` and `jobs.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Api::DrawThings => "drawthings",
            Api::A1111 => "a1111",
            Api::ComfyUi => "comfyui",
            Api::DrawThingsGrpc => "drawthings-grpc",
        }
    }

    /// Whether it runs a profile's `workflow` (and only profiles that have one).
    pub fn runs_workflows(self) -> bool {
        matches!(self, Api::ComfyUi)
    }
}

/// HTTP basic auth; the password comes from the environment, never from a file.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    /// Read from the variable `password_env` names; never shown by `Debug` or in errors.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A secret read from the environment; never shown by `Debug` or in errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A named style: `profiles/NAME.toml`.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file stem, which is also the name of the profile's folder in the inbox.
    pub name: String,
    /// The file it came from; `None` for the built-in empty `default` profile.
    pub file: Option<PathBuf>,
    pub settings: Settings,
    /// The servers of a pool this profile prefers, in order (`servers = [...]`); `None`: any.
    pub servers: Option<Vec<String>>,
}

/// Generation settings with Draw Things' names. `None` means "not sent: the server's own setting".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub steps: Option<u32>,
    pub strength: Option<f64>,
    pub guidance_scale: Option<f64>,
    /// -1 (or absent) means drawdrop picks a random seed per image.
    pub seed: Option<i64>,
    pub sampler: Option<String>,
    pub model: Option<String>,
    pub batch_count: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Pictures larger than this (in units of 1024 x 1024 pixels) are scaled down before the
    /// size rule; `None`: [`DEFAULT_MAX_MEGAPIXELS`](crate::image::DEFAULT_MAX_MEGAPIXELS).
    /// Never sent to the server.
    pub max_megapixels: Option<f64>,
    pub loras: Option<Vec<Lora>>,
    /// Passed through verbatim into the request.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A ComfyUI workflow (profiles only): the profile's picture and keys go into its nodes.
    pub workflow: Option<Workflow>,
    /// `[comfyui.set]`: "<node id>.<input>" = value, laid over the workflow's own values.
    pub comfyui_set: workflow::NodeInputs,
}

/// One `[[loras]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Lora {
    /// The LoRA's file name as the server knows it, such as `x_lora_f16.ckpt`.
    pub file: String,
    /// -10 to 10; 1 when the profile leaves it out.
    pub weight: f64,
}

/// A config or profile problem, pointing at the spot in the file when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column of the offending text.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The file's further problems, in file order (this one is the first); each is shown on
    /// a line of its own.
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    /// This problem and the file's further ones, in file order.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.more)
    }

    /// This problem alone, `file:line:col: message`.
    pub fn first_line(&self) -> String {
        match self.position {
            Some((line, col)) => format!("{}:{line}:{col}: {}", self.file.display(), self.message),
            None => format!("{}: {}", self.file.display(), self.message),
        }
    }

    fn render(&self) -> String {
        self.all()
            .map(ConfigError::first_line)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How the config file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`; a missing file is an error.
    Flag,
    /// `$DRAWDROP_CONFIG`; a missing file is an error.
    Env,
    /// The platform config folder; a missing file there means built-in defaults.
    Default,
}

/// Where the config file is (or would be), and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Absolute; the file need not exist.
    pub path: PathBuf,
    pub source: ConfigSource,
}
