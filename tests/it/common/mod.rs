//! Helpers for the end-to-end tests: temporary inbox/outbox/config layouts, the real
//! `drawdrop` binary as a subprocess (with the rescan and the retry pause shortened where a
//! test only needs them to happen: [`Setup::quick_rescan`], [`Setup::quick_backoff`]), and
//! polling with generous deadlines (no sleeps as synchronisation: tests must pass on a loaded
//! 2-core machine). The helpers of single suites are the modules below: the browser of the
//! gallery test, the chaos run, the fault bench, hostile file-system set-ups, and the
//! crash invariants.

pub mod browser;
pub mod chaos;
pub mod faults;
pub mod hostile;
pub mod invariants;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The names of pictures drawdrop takes.
pub const PICTURE_EXTENSIONS: [&str; 8] = [
    ".png", ".jpg", ".jpeg", ".webp", ".heic", ".heif", ".tif", ".tiff",
];

/// How long a condition may take before a test fails. Generous: CI machines are slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The periodic inbox rescan of a [`Setup::quick_rescan`]: often enough that a test never
/// waits long for it, rarely enough that it is no load.
pub const QUICK_RESCAN_MS: u64 = 200;
/// The first retry pause of a [`Setup::quick_backoff`] (doubled per attempt, as the 1 s is).
pub const QUICK_BACKOFF_MS: u64 = 50;

/// A temporary drawdrop installation: config, profiles, inbox and outbox.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    /// Environment variables every command of this installation gets (the timing knobs).
    env: Vec<(&'static str, String)>,
}

impl Setup {
    /// A config pointing at `url` with the `api` dialect, settling after 300 ms.
    pub fn new(url: &str, api: &str) -> Setup {
        Setup::with(url, api, 300, "", "")
    }

    /// A config with `settle_ms`, plus `top` lines (top level) and `server` lines (`[server]`).
    pub fn with(url: &str, api: &str, settle_ms: u64, top: &str, server: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let inbox = dir.path().join("Inbox");
        let outbox = dir.path().join("Outbox");
        let config = dir.path().join("config.toml");
        let setup = Setup {
            dir,
            config,
            inbox,
            outbox,
            env: Vec::new(),
        };
        setup.write_config(url, api, settle_ms, top, server);
        fs::create_dir_all(setup.dir.path().join("profiles")).expect("profiles dir");
        setup
    }

    /// Rewrites the config file. `timeout_s` is 60 and `max_attempts` 3 unless `server` sets them.
    pub fn write_config(&self, url: &str, api: &str, settle_ms: u64, top: &str, server: &str) {
        let mut server_lines = format!("url = \"{url}\"\napi = \"{api}\"\n{server}\n");
        for (key, default) in [("timeout_s", "60"), ("max_attempts", "3")] {
            if !server.contains(key) {
                server_lines.push_str(&format!("{key} = {default}\n"));
            }
        }
        let text = format!(
            "inbox = {inbox:?}\noutbox = {outbox:?}\nsettle_ms = {settle_ms}\n{top}\n\n[server]\n{server_lines}",
            inbox = self.inbox.to_string_lossy(),
            outbox = self.outbox.to_string_lossy(),
        );
        fs::write(&self.config, text).expect("write config");
    }

    /// Every drawdrop started from here scans its whole inbox every [`QUICK_RESCAN_MS`]
    /// instead of every 30 s (`DRAWDROP_RESCAN_MS`): for tests that need a rescan to happen,
    /// not its period.
    pub fn quick_rescan(mut self) -> Setup {
        self.env
            .push(("DRAWDROP_RESCAN_MS", QUICK_RESCAN_MS.to_string()));
        self
    }

    /// Every drawdrop started from here pauses [`QUICK_BACKOFF_MS`] before a second attempt
    /// (doubled for each further one) instead of 1 s (`DRAWDROP_BACKOFF_MS`): for tests that
    /// need retries to happen, not their real schedule.
    pub fn quick_backoff(mut self) -> Setup {
        self.env
            .push(("DRAWDROP_BACKOFF_MS", QUICK_BACKOFF_MS.to_string()));
        self
    }

    /// Writes a workflow profile: `profiles/NAME.json` (API format) and `profiles/NAME.toml`
    /// naming it, with the profile's other `keys`.
    pub fn workflow_profile(&self, name: &str, workflow: &serde_json::Value, keys: &str) -> &Self {
        let file = format!("{name}.json");
        fs::write(
            self.dir.path().join("profiles").join(&file),
            serde_json::to_vec_pretty(workflow).expect("workflow JSON"),
        )
        .expect("write workflow");
        self.profile(name, &format!("workflow = \"{file}\"\n{keys}"))
    }

    /// Makes the config a pool: a ComfyUI server `name` at `url` (with its `lines`), then
    /// the config's `[server]` as a `[[servers]]` named `mac`.
    pub fn add_comfyui_server(&self, name: &str, url: &str, lines: &str) -> &Self {
        let config = fs::read_to_string(&self.config).expect("read config");
        let pool = config.replace(
            "[server]\n",
            &format!(
                "[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi = \"comfyui\"\n{lines}\n\
                 [[servers]]\nname = \"mac\"\n"
            ),
        );
        fs::write(&self.config, pool).expect("write config");
        self
    }

    pub fn profile(&self, name: &str, toml: &str) -> &Self {
        fs::write(
            self.dir
                .path()
                .join("profiles")
                .join(format!("{name}.toml")),
            toml,
        )
        .expect("write profile");
        self
    }

    /// Puts a file into the inbox whole (written beside it, then renamed in, as a
    /// careful copier does), creating folders.
    /// A running daemon removes a folder it emptied: should that happen between making the
    /// folder and the rename, the folder is made again.
    pub fn drop_file(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.inbox.join(relative);
        let staging = self.dir.path().join(".staging");
        fs::create_dir_all(&staging).expect("staging");
        let temporary = staging.join(path.file_name().expect("name"));
        fs::write(&temporary, bytes).expect("write");
        for _ in 0..100 {
            fs::create_dir_all(path.parent().expect("parent")).expect("create folders");
            match fs::rename(&temporary, &path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                renamed => {
                    renamed.expect("rename into the inbox");
                    return path;
                }
            }
        }
        panic!("cannot rename {} into the inbox", path.display());
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drawdrop"));
        command
            .env_remove("DRAWDROP_CONFIG")
            .env("DRAWDROP_LOG", "info,drawdrop=debug")
            .env_remove("DRAWDROP_RESCAN_MS")
            .env_remove("DRAWDROP_BACKOFF_MS")
            .env_remove("DRAWDROP_NEVER_ANSWERED_MS")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .arg("--config")
            .arg(&self.config);
        command
    }

    /// `drawdrop run --once`, waiting for it to exit.
    pub fn run_once(&self) -> Output {
        self.run_once_with(&[])
    }

    /// `drawdrop run --once` with these environment variables set.
    pub fn run_once_with(&self, variables: &[(&str, &str)]) -> Output {
        let child = self
            .command()
            .args(["run", "--once"])
            .envs(variables.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start drawdrop");
        wait_output(child, PATIENCE * 2)
    }

    /// `drawdrop run` in the background; stopped (SIGTERM, then kill) when dropped.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    /// `drawdrop run` in the background with extra environment variables (a crash point).
    pub fn start_daemon_with(&self, env: &[(&str, &str)]) -> Daemon {
        let log = self
            .dir
            .path()
            .join(format!("daemon-{}.stderr", fastrand::u32(..)));
        let stderr = fs::File::create(&log).expect("stderr file");
        let mut command = self.command();
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .arg("run")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start drawdrop");
        Daemon {
            child: Some(child),
            stderr: log,
        }
    }

    /// Every file under the outbox except logs, the gallery and the list of jobs in flight
    /// (for `status`), relative.
    pub fn outbox_files(&self) -> BTreeSet<String> {
        files_under(&self.outbox)
            .into_iter()
            .filter(|f| {
                !f.starts_with("logs/")
                    && !f.starts_with("gallery/")
                    && f != ".drawdrop/in-flight.json"
            })
            .collect()
    }

    /// Every file under the inbox (hidden ones too, but not drawdrop's state folder).
    pub fn inbox_files(&self) -> BTreeSet<String> {
        files_under(&self.inbox)
            .into_iter()
            .filter(|f| !f.starts_with(".drawdrop/"))
            .collect()
    }

    pub fn read_out(&self, relative: &str) -> Vec<u8> {
        fs::read(self.outbox.join(relative))
            .unwrap_or_else(|e| panic!("read outbox/{relative}: {e}"))
    }

    /// The lines of `logs/jobs.jsonl`, parsed.
    pub fn job_lines(&self) -> Vec<serde_json::Value> {
        match fs::read_to_string(self.outbox.join("logs/jobs.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|line| serde_json::from_str(line).expect("jobs.jsonl line is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.outbox.join("logs/drawdrop.log")).unwrap_or_default()
    }

    /// True once nothing is left to do: no picture waits in the inbox (outside hidden
    /// folders) and no job is claimed. A file moves from the inbox into a claimed job in one
    /// rename and its job is removed only once it is finished, so this never holds early.
    pub fn is_finished(&self) -> bool {
        let waiting = files_under(&self.inbox).into_iter().any(|relative| {
            !relative.split('/').any(|part| part.starts_with('.'))
                && PICTURE_EXTENSIONS
                    .iter()
                    .any(|extension| relative.to_ascii_lowercase().ends_with(extension))
        });
        let claimed = fs::read_dir(self.inbox.join(".drawdrop/jobs"))
            .map(|entries| entries.count())
            .unwrap_or(0);
        !waiting && claimed == 0
    }

    /// Files left in drawdrop's claimed-jobs and staging areas (the list of jobs in flight,
    /// for `status`, is no job's).
    pub fn leftovers(&self) -> BTreeSet<String> {
        let mut left: BTreeSet<String> = files_under(&self.inbox.join(".drawdrop/jobs"));
        left.extend(
            files_under(&self.outbox.join(".drawdrop"))
                .into_iter()
                .filter(|file| file != "in-flight.json"),
        );
        left
    }

    /// Waits until drawdrop's claimed-jobs and staging areas are empty: with the daemon
    /// running, a job's claim goes as its last step, just after its `jobs.jsonl` line.
    pub fn wait_for_no_leftovers(&self) {
        wait_until("no claimed job or staged file is left", || {
            self.leftovers().is_empty()
        });
    }
}

/// The running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub stderr: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What it printed to stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until its stderr contains `text`; on timeout, fails showing what it said.
    pub fn wait_for_output(&self, text: &str) {
        if !poll_until(PATIENCE, || self.output().contains(text)) {
            panic!(
                "timed out after {PATIENCE:?} waiting until daemon output contains {text:?}; it said:\n{}",
                self.output()
            );
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for it to exit.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let child = self.child.as_mut().expect("running");
        let started = Instant::now();
        signal(child.id(), libc::SIGTERM);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!(
                    "drawdrop did not exit within {limit:?} of SIGTERM:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (at most `limit`) until it exits by itself, e.g. at a crash point.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if started.elapsed() > limit {
                panic!(
                    "drawdrop did not exit by itself within {limit:?}:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it has exited, with its status.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned; failure (already exited) is harmless.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// A multi-threaded tokio runtime of two workers, for tests that drive the binary from plain
/// `#[test]` functions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A reqwest client for talking to a fake directly, giving up after [`PATIENCE`].
pub fn client() -> reqwest::Client {
    client_with_timeout(PATIENCE)
}

/// A reqwest client giving up after `timeout`; with the `tls` feature reqwest needs a
/// rustls crypto provider first.
pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a reqwest client")
}

/// Polls `condition` until it holds, failing the test after `PATIENCE`.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(what, PATIENCE, condition);
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub fn wait_until_within(what: &str, limit: Duration, condition: impl FnMut() -> bool) {
    if !poll_until(limit, condition) {
        panic!("timed out after {limit:?} waiting until {what}");
    }
}

/// Polls `condition` (every 5 ms at first, backing off to every 100 ms) until it holds or
/// `limit` has passed; whether it held.
pub fn poll_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits for a child to exit within `limit`, collecting its output.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "drawdrop did not exit within {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `root`, as relative paths with `/`.
pub fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                folders.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.insert(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found
}

/// A set of strings, for comparing folder contents.
pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// LoadImage -> ImageInvert -> SaveImage (prefix `ComfyUI`): a workflow that needs no model.
pub fn invert_workflow() -> serde_json::Value {
    serde_json::json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ComfyUI"}}
    })
}
