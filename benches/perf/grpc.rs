//! The gRPC path beside the HTTP path: per-job time of `run --once` against an instant fake
//! Draw Things over HTTP and the fake gRPC server (raw f16 answers, then fpzip ones as the
//! real server sends by default), less `run --once` with nothing to do, for three pictures:
//! 1024 x 1024 PNGs already at the size sent (the HTTP path's best case: its file goes as it
//! is, with no pixel work at all), one of noise (which no PNG encoder can compress: the worst
//! case for the gRPC path, which must encode the answer) and one photo-like, and a 12 MP
//! phone photo (a JPEG turned upright and resized, which every path decodes). Each figure is everything drawdrop does for a job
//! (the gRPC one: the picture decoded, the tensor made, sent, the answer read back, the PNG
//! written). Both fakes are instant: the HTTP one sends the init image back, the gRPC one
//! checks the request without decoding its pixels and sends the tensor inverted (an fpzip
//! answer is encoded once and then served again), so the figures are drawdrop's work and not
//! the fakes'. Memory: the peak resident memory of `run --once` with the picture less the
//! peak with nothing to do (medians), against the decoded image (the dropped picture's width x
//! height x 3 bytes: a phone photo is decoded whole before it is turned and resized; a PNG at
//! its size is the picture sent).
//! Timing with the memory read every millisecond is a little slower than without; both
//! paths are read alike.

use std::time::{Duration, Instant};

use crate::fake_grpc::{Answering, FakeGrpc, Options};
use crate::harness::{Row, Server, Setup, age, median, noise_png, quick, scene, wait_with_peak};
use crate::pictures::{jpeg, orientation_exif};

/// What one kind of server cost per job.
struct PerJob {
    ms: f64,
    /// Peak resident memory above that of a run with nothing to do.
    extra_mb: f64,
    /// The size of the results (that of the picture sent).
    size: (u32, u32),
}

pub async fn grpc() -> Vec<Row> {
    let runs = if quick() { 3 } else { 9 };
    let http = Server::start().await;
    let fake = FakeGrpc::start(Options::default()).await;
    fake.set_instant(true);
    let grpc_setup = || {
        let setup = Setup::new(&fake.url(), 1000);
        let mut config = std::fs::read_to_string(&setup.config).unwrap();
        config.push_str("api = \"drawthings-grpc\"\n");
        std::fs::write(&setup.config, config).unwrap();
        setup
    };
    let pictures = [
        (
            "1024x1024 noise PNG at its size",
            "p.png",
            noise_png(1024, 1024, 4),
        ),
        (
            "1024x1024 photo-like PNG at its size",
            "s.png",
            scene_png(1024, 1024),
        ),
        (
            "12 MP JPEG photo, turned and resized",
            "photo.jpg",
            jpeg(&scene(4032, 3024), Some(&orientation_exif(6))),
        ),
    ];
    let mut rows = Vec::new();
    for (label, name, bytes) in &pictures {
        let over_http = per_job(&Setup::new(&http.fake.url(), 1000), name, bytes, runs);
        fake.set_answering(Answering::Raw);
        let raw = per_job(&grpc_setup(), name, bytes, runs);
        fake.set_answering(Answering::Fpzip);
        let fpzip = per_job(&grpc_setup(), name, bytes, runs);
        assert_eq!(raw.size, over_http.size, "the same size sent both ways");
        let (width, height) = raw.size;
        let (dropped_width, dropped_height) = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        let decoded_mb = f64::from(dropped_width * dropped_height * 3) / (1024.0 * 1024.0);
        let against = |path: &PerJob| {
            format!(
                "{:.1} ms = {:.2} x HTTP / +{:.0} MB = {:.1} x decoded",
                path.ms,
                path.ms / over_http.ms,
                path.extra_mb,
                path.extra_mb / decoded_mb
            )
        };
        rows.push(Row::new(
            &format!("{label} ({width}x{height} sent): HTTP path per job / memory"),
            format!(
                "{:.1} ms / +{:.0} MB = {:.1} x decoded",
                over_http.ms,
                over_http.extra_mb,
                over_http.extra_mb / decoded_mb
            ),
            "",
            None,
        ));
        rows.push(Row::new(
            &format!("{label}: gRPC path, raw f16 answer"),
            against(&raw),
            "<= HTTP / <= 4 x decoded",
            Some(raw.ms <= over_http.ms && raw.extra_mb <= 4.0 * decoded_mb),
        ));
        rows.push(Row::new(
            &format!("{label}: gRPC path, fpzip answer"),
            against(&fpzip),
            "",
            None,
        ));
    }
    rows
}

/// A PNG of [`scene`] (smooth gradients with grain: it compresses as photos do).
fn scene_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    scene(width, height)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Median `run --once` time with one settled picture less that with none, in ms, and the
/// median peak memory above that of a run with none.
fn per_job(setup: &Setup, name: &str, picture: &[u8], runs: usize) -> PerJob {
    let (mut empty, mut empty_peaks) = (Vec::new(), Vec::new());
    let (mut one, mut one_peaks) = (Vec::new(), Vec::new());
    for at in 0..runs + 1 {
        let (took, peak) = run_once(setup);
        empty.push(took);
        empty_peaks.push(peak);
        let path = setup.inbox.join(format!("{at}-{name}"));
        std::fs::write(&path, picture).unwrap();
        age(&path);
        let (took, peak) = run_once(setup);
        one.push(took);
        one_peaks.push(peak);
    }
    assert_eq!(setup.results(), runs + 1, "every picture went through");
    let result = std::fs::read_dir(&setup.outbox)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|x| x == "png"))
        .unwrap();
    PerJob {
        size: image::image_dimensions(&result).unwrap(),
        ms: median(&mut one[1..]) - median(&mut empty[1..]),
        extra_mb: median(&mut one_peaks[1..]) - median(&mut empty_peaks[1..]),
    }
}

/// `run --once` to the end: its wall time in ms and its peak resident memory in MB (the
/// kernel's high-water mark, read every millisecond while it runs).
fn run_once(setup: &Setup) -> (f64, f64) {
    let started = Instant::now();
    let mut child = setup
        .command(&["run", "--once"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("drawdrop");
    let (status, peak_kb) = wait_with_peak(&mut child, Duration::from_millis(1));
    let took = started.elapsed();
    assert!(status.success(), "drawdrop run --once failed: {status}");
    (ms(took), peak_kb as f64 / 1024.0)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
