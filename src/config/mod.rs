//! Configuration: the config file and the profiles beside it, read into validated types.
//!
//! Reading happens in two steps, as in ripgrep's low/high-level args: `raw` holds serde structs
//! that mirror the TOML exactly (unknown keys are errors), and this module turns them into the
//! typed values the rest of drawdrop uses. Every error names the file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub server: Server,
    /// Every profile by name; always holds `default_profile`.
    pub profiles: BTreeMap<String, Profile>,
}

/// What becomes of a processed original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Moved to `outbox/originals/<relative path>`.
    Archive,
    /// Removed.
    Delete,
}

/// The image server drawdrop talks to.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: reqwest::Url,
    pub api: Api,
    /// Per request; a generation may take minutes.
    pub timeout: Duration,
    /// Attempts for failures that may pass (5xx, timeouts, broken answers).
    pub max_attempts: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub auth: Option<BasicAuth>,
}

/// Which request keys the server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    DrawThings,
    A1111,
}

/// HTTP basic auth; the password comes from the environment, never from a file.
#[derive(Clone)]
pub struct BasicAuth {
    pub username: String,
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

/// A named style: `profiles/NAME.toml`.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// The file it came from; `None` for the built-in empty `default` profile.
    pub file: Option<PathBuf>,
    pub settings: Settings,
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
    pub loras: Option<Vec<Lora>>,
    /// Passed through verbatim into the request.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lora {
    pub file: String,
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
}

impl ConfigError {
    fn render(&self) -> String {
        match self.position {
            Some((line, col)) => format!("{}:{line}:{col}: {}", self.file.display(), self.message),
            None => format!("{}: {}", self.file.display(), self.message),
        }
    }
}

/// How the config file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Flag,
    Env,
    /// The platform config folder; a missing file there means built-in defaults.
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub source: ConfigSource,
}

pub fn locate(_flag: Option<&Path>) -> Result<Located, ConfigError> {
    todo!("config helper")
}
