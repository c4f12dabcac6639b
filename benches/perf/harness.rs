//! What the scenarios share: a temporary drawdrop setup, the release binary, the instant fake
//! server, test pictures, and process figures read from /proc (Linux).

use crate::fakes::server::{FakeServer, Flavor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line of the results table.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
    /// `None` when there is nothing to compare against.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(figure: &str, value: String, target: &str, met: Option<bool>) -> Row {
        Row {
            figure: figure.to_owned(),
            value,
            target: target.to_owned(),
            met,
        }
    }

    pub fn header() -> String {
        format!(
            "| {:<52} | {:<26} | {:<22} | {:<4} |\n|{}|{}|{}|{}|",
            "figure",
            "measured",
            "target",
            "met",
            "-".repeat(54),
            "-".repeat(28),
            "-".repeat(24),
            "-".repeat(6)
        )
    }

    pub fn line(&self) -> String {
        let met = match self.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        format!(
            "| {:<52} | {:<26} | {:<22} | {:<4} |",
            self.figure, self.value, self.target, met
        )
    }
}

/// Whether to run with smaller sizes.
pub fn quick() -> bool {
    std::env::var_os("DRAWDROP_BENCH_QUICK").is_some()
}

/// The instant fake Draw Things, recording when each img2img request arrived.
pub struct Server {
    pub fake: FakeServer,
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Server {
    pub async fn start() -> Server {
        let fake = FakeServer::start(Flavor::DrawThings).await;
        fake.set_instant(true);
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sink = arrivals.clone();
        fake.set_observer(move |request, _| {
            if request.is_img2img() {
                sink.lock().unwrap().push(Instant::now());
            }
        });
        Server { fake, arrivals }
    }

    pub fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

/// A temporary inbox, outbox and config.
pub struct Setup {
    /// Kept alive for the setup's lifetime (removed on drop).
    _dir: tempfile::TempDir,
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(url: &str, settle_ms: u64) -> Setup {
        Setup::with(url, settle_ms, "")
    }

    /// A setup for a ComfyUI server with one profile, `name`, running `workflow` (API
    /// format JSON).
    pub fn comfyui(url: &str, settle_ms: u64, name: &str, workflow: &str) -> Setup {
        let setup = Setup::with_server(url, settle_ms, "", "api = \"comfyui\"\n");
        let folder = setup.config.with_file_name("profiles");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.json")), workflow).unwrap();
        setup.profile(name, &format!("workflow = \"{name}.json\"\n"));
        setup
    }

    /// A setup whose config also has the `top` lines (top-level keys).
    pub fn with(url: &str, settle_ms: u64, top: &str) -> Setup {
        Setup::with_server(url, settle_ms, top, "")
    }

    /// [`Setup::with`], and `server` lines in `[server]` after its url.
    fn with_server(url: &str, settle_ms: u64, top: &str, server: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let inbox = dir.path().join("in");
        let outbox = dir.path().join("out");
        let config = dir.path().join("config.toml");
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(
            &config,
            format!(
                "inbox = {:?}\noutbox = {:?}\nsettle_ms = {settle_ms}\n{top}\n[server]\nurl = \"{url}\"\n{server}",
                inbox.to_string_lossy(),
                outbox.to_string_lossy()
            ),
        )
        .unwrap();
        Setup {
            _dir: dir,
            inbox,
            outbox,
            config,
        }
    }

    /// Writes `profiles/NAME.toml` beside the config.
    pub fn profile(&self, name: &str, toml: &str) {
        let folder = self.config.with_file_name("profiles");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.toml")), toml).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drawdrop"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("DRAWDROP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// `run --once` to the end; its wall time.
    pub fn run_once(&self) -> Duration {
        let started = Instant::now();
        let output = self.command(&["run", "--once"]).output().expect("drawdrop");
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "drawdrop run --once failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        took
    }

    pub fn start_daemon(&self) -> Child {
        let mut command = self.command(&["run"]);
        command.env("DRAWDROP_LOG", "info").stderr(Stdio::null());
        command.spawn().expect("drawdrop")
    }

    /// Results in the outbox (not originals, failed or logs).
    pub fn results(&self) -> usize {
        std::fs::read_dir(&self.outbox)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A PNG of random pixels (incompressible: its size is about width x height x 3 bytes).
pub fn noise_png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pixels: Vec<u8> = (0..width as usize * height as usize * 3)
        .map(|_| rng.u8(..))
        .collect();
    let image = image::RgbImage::from_raw(width, height, pixels).expect("pixels");
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&image, width, height, image::ExtendedColorType::Rgb8)
    .expect("encode");
    out
}

use image::ImageEncoder;

/// A photo-like picture: smooth gradients with some grain.
pub fn scene(width: u32, height: u32) -> image::RgbImage {
    let mut rng = fastrand::Rng::with_seed(5);
    image::RgbImage::from_fn(width, height, |x, y| {
        let grain = rng.u8(..16);
        image::Rgb([
            (x * 255 / width) as u8 ^ grain,
            (y * 255 / height) as u8 ^ grain,
            ((x + y) % 256) as u8,
        ])
    })
}

/// Sets a file's mtime into the past, so `run --once` takes it at once.
pub fn age(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

/// Process figures from /proc (Linux); zeros elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time.
    pub cpu: Duration,
    pub rss_kb: u64,
    /// Peak resident memory.
    pub hwm_kb: u64,
    /// Voluntary + involuntary context switches of every thread: how often it woke.
    pub switches: u64,
}

/// Waits for `child`, reading its peak resident memory (KiB, the kernel's high-water mark)
/// every `every` while it runs.
pub fn wait_with_peak(child: &mut Child, every: Duration) -> (std::process::ExitStatus, u64) {
    let mut peak_kb = 0;
    loop {
        peak_kb = peak_kb.max(proc_stats(child.id()).hwm_kb);
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak_kb);
        }
        std::thread::sleep(every);
    }
}

pub fn proc_stats(pid: u32) -> ProcStats {
    let mut stats = ProcStats::default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in status.lines() {
        let value = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            stats.rss_kb = value();
        } else if line.starts_with("VmHWM:") {
            stats.hwm_kb = value();
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name (which may hold spaces) start at ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime, stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ')'.
        let clock = 100; // USER_HZ on Linux
        stats.cpu = Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock);
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.filter_map(Result::ok) {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            for line in status.lines() {
                if line.starts_with("voluntary_ctxt_switches:")
                    || line.starts_with("nonvoluntary_ctxt_switches:")
                {
                    stats.switches += line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    stats
}

/// Polls until `condition` holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

pub fn stop(child: &mut Child) {
    // SAFETY: signalling a child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// Copies every file of `from` into `to`; `aged`: old enough for `run --once` to take at once.
pub fn copy_all(from: &Path, to: &Path, aged: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).unwrap();
        if aged {
            age(&target);
        }
    }
}

/// `count` pictures of 1 MB each (`p0000.png` ...) in a new temporary folder.
pub fn megabyte_pictures(count: usize) -> tempfile::TempDir {
    let sources = tempfile::tempdir().unwrap();
    for i in 0..count {
        std::fs::write(
            sources.path().join(format!("p{i:04}.png")),
            noise_png(576, 576, i as u64),
        )
        .unwrap();
    }
    sources
}
