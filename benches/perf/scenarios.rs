//! The scenarios of the performance table, one function each.

use crate::fakes::comfyui::FakeComfyUi;
use crate::harness::{
    Row, Server, Setup, age, copy_all, median, megabyte_pictures, noise_png, percentile,
    proc_stats, quick, scene, stop, wait_until, wait_with_peak,
};
use base64::Engine;
use std::path::Path;
use std::time::{Duration, Instant};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Overhead per 1 MB image against the floor of the same work done by hand in this process.
pub async fn overhead() -> Vec<Row> {
    let server = Server::start().await;
    let runs = if quick() { 5 } else { 15 };
    let picture = noise_png(576, 576, 1);
    let megabytes = picture.len() as f64 / 1e6;

    // The floor: read, base64, loopback POST, decode, write: nothing else.
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("in.png");
    std::fs::write(&input, &picture).unwrap();
    let client = http_client();
    let url = format!("{}/sdapi/v1/img2img", server.fake.url());
    let mut floor = Vec::new();
    for i in 0..runs + 3 {
        let started = Instant::now();
        floor_once(&client, &url, &input, &scratch.path().join("out.png")).await;
        if i >= 3 {
            floor.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let floor = median(&mut floor);

    let setup = Setup::new(&server.fake.url(), 1000);
    let per_image = per_job(&setup, "", &picture, runs);
    let ratio = per_image / floor;
    vec![
        Row::new(
            &format!("floor per {megabytes:.1} MB image (read, base64, POST, decode, write)"),
            format!("{floor:.1} ms"),
            "",
            None,
        ),
        Row::new(
            "drawdrop overhead per image, settled -> result + original",
            format!("{per_image:.1} ms = {ratio:.2} x floor"),
            "<= 3 x floor",
            Some(ratio <= 3.0),
        ),
    ]
}

/// drawdrop's cost of one job, in ms: `run --once` with one settled file in `folder` (the
/// inbox itself: "") minus `run --once` with none, medians of `runs` (after one to warm up).
fn per_job(setup: &Setup, folder: &str, picture: &[u8], runs: usize) -> f64 {
    let mut empty = Vec::new();
    let mut one = Vec::new();
    for i in 0..runs + 1 {
        empty.push(setup.run_once().as_secs_f64() * 1000.0);
        let path = setup.inbox.join(folder).join(format!("p{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, picture).unwrap();
        age(&path);
        one.push(setup.run_once().as_secs_f64() * 1000.0);
    }
    median(&mut one[1..]) - median(&mut empty[1..])
}

/// The ComfyUI path's cost per job against the Draw Things path's, for the same 1 MB
/// picture, each against its instant fake: upload, queue, websocket, history and view
/// against one img2img request.
pub async fn comfyui() -> Vec<Row> {
    let draw_things = Server::start().await;
    let comfy = FakeComfyUi::start().await;
    comfy.set_instant(true);
    let runs = if quick() { 5 } else { 15 };
    let picture = noise_png(576, 576, 1);
    let megabytes = picture.len() as f64 / 1e6;
    let mut through_draw_things = Vec::new();
    let mut through_comfyui = Vec::new();
    // Alternated, so that a change in the machine's load moves both sides.
    for _ in 0..3 {
        let setup = Setup::new(&draw_things.fake.url(), 1000);
        through_draw_things.push(per_job(&setup, "", &picture, runs));
        let setup = Setup::comfyui(&comfy.url(), 1000, "invert", INVERT);
        through_comfyui.push(per_job(&setup, "invert", &picture, runs));
    }
    let draw_things = median(&mut through_draw_things);
    let comfyui = median(&mut through_comfyui);
    let ratio = comfyui / draw_things;
    assert_eq!(
        comfy.counters().prompts_queued,
        3 * (runs + 1),
        "one prompt per job"
    );
    vec![
        Row::new(
            &format!("Draw Things path per {megabytes:.1} MB image (img2img)"),
            format!("{draw_things:.1} ms"),
            "",
            None,
        ),
        Row::new(
            "ComfyUI path, same image (upload, queue, ws, history, view)",
            format!("{comfyui:.1} ms = {ratio:.2} x Draw Things"),
            "<= 2 x Draw Things",
            Some(ratio <= 2.0),
        ),
    ]
}

/// The workflow of the ComfyUI scenario: LoadImage -> ImageInvert -> SaveImage (the
/// instant fake saves the upload as it is).
const INVERT: &str = r#"{
  "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ComfyUI"}}
}"#;

/// drawdrop `run --once` against the Python baseline over the same pictures and server.
pub async fn python() -> Vec<Row> {
    let server = Server::start().await;
    let count = if quick() { 40 } else { 200 };
    let sources = megabyte_pictures(count);
    let mut python = Vec::new();
    let mut drawdrop = Vec::new();
    for _ in 0..2 {
        let work = tempfile::tempdir().unwrap();
        let (inbox, outbox) = (work.path().join("in"), work.path().join("out"));
        copy_all(sources.path(), &inbox, false);
        let started = Instant::now();
        let status = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baseline.py"))
            .args(["--url", &server.fake.url(), "--inbox"])
            .arg(&inbox)
            .arg("--outbox")
            .arg(&outbox)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("python3");
        assert!(
            status.success(),
            "the baseline script failed (is `requests` installed?)"
        );
        python.push(started.elapsed().as_secs_f64());

        let setup = Setup::new(&server.fake.url(), 1000);
        copy_all(sources.path(), &setup.inbox, true);
        drawdrop.push(setup.run_once().as_secs_f64());
        assert_eq!(setup.results(), count);
    }
    let python = python.iter().copied().fold(f64::MAX, f64::min);
    let drawdrop = drawdrop.iter().copied().fold(f64::MAX, f64::min);
    let ratio = python / drawdrop;
    let durability = durability_cost(sources.path(), count);
    let without = python / (drawdrop - durability);
    vec![
        Row::new(
            &format!("Python + requests, {count} x 1 MB PNGs"),
            format!("{python:.2} s"),
            "",
            None,
        ),
        Row::new(
            &format!("drawdrop run --once, same {count} PNGs"),
            format!("{drawdrop:.2} s = {ratio:.1} x faster"),
            ">= 3 x faster",
            Some(ratio >= 3.0),
        ),
        Row::new(
            "of which: its 2 fsyncs per image (result, commit)",
            format!("{durability:.2} s; without them {without:.1} x faster"),
            "",
            None,
        ),
    ]
}

/// What making `count` results durable costs on this disk, with drawdrop's own calls: each
/// result written and fsynced, then a commit record written, fsynced and renamed. These
/// are the two fsyncs on the path between one request and the next.
fn durability_cost(pictures: &Path, count: usize) -> f64 {
    let scratch = tempfile::tempdir().unwrap();
    let picture = std::fs::read(pictures.join("p0000.png")).unwrap();
    let commit = vec![b'x'; 400];
    let started = Instant::now();
    for i in 0..count {
        drawdrop::jobs::durable::write_new(&scratch.path().join(format!("r{i}.png")), &picture)
            .unwrap();
        drawdrop::jobs::durable::write_whole(&scratch.path().join(format!("c{i}.json")), &commit)
            .unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// From the last write of a file to its request leaving, with the default settle_ms = 1000.
pub async fn latency() -> Vec<Row> {
    let server = Server::start().await;
    let setup = Setup::new(&server.fake.url(), 1000);
    let mut daemon = setup.start_daemon();
    wait_for_probe(&server);
    let files = if quick() { 5 } else { 20 };
    let mut latencies = Vec::new();
    for i in 0..files {
        let picture = noise_png(256, 256, i as u64);
        let path = setup.inbox.join(format!("l{i}.png"));
        std::fs::write(&path, &picture).unwrap();
        let written = Instant::now();
        wait_until("the request", Duration::from_secs(60), || {
            server.count() > i
        });
        let arrived = server.arrivals.lock().unwrap()[i];
        latencies.push(arrived.duration_since(written).as_secs_f64() * 1000.0);
        wait_until("the result", Duration::from_secs(60), || {
            setup.outbox.join(format!("l{i}.png")).exists()
        });
    }
    // Without a close-after-write event (as on macOS): the writer keeps the file open until
    // the request left, so only the settle window can take it.
    let mut held = Vec::new();
    for i in 0..files {
        let picture = noise_png(256, 256, 1000 + i as u64);
        let name = format!("h{i}.png");
        let mut file = std::fs::File::create(setup.inbox.join(&name)).unwrap();
        std::io::Write::write_all(&mut file, &picture).unwrap();
        let written = Instant::now();
        wait_until("the request", Duration::from_secs(60), || {
            server.count() > files + i
        });
        let arrived = server.arrivals.lock().unwrap()[files + i];
        held.push(arrived.duration_since(written).as_secs_f64() * 1000.0);
        drop(file);
        wait_until("the result", Duration::from_secs(60), || {
            setup.outbox.join(&name).exists()
        });
    }
    stop(&mut daemon);
    let p50 = percentile(&mut latencies.clone(), 0.5);
    let p95 = percentile(&mut latencies, 0.95);
    let held_p50 = percentile(&mut held.clone(), 0.5);
    let held_p95 = percentile(&mut held, 0.95);
    vec![
        Row::new(
            "pickup latency, writer closed the file (Linux) p50 / p95",
            format!("{p50:.0} / {p95:.0} ms"),
            "p95 <= settle_ms + 50",
            Some(p95 <= 1050.0),
        ),
        Row::new(
            "pickup latency, settle window only (macOS) p50 / p95",
            format!("{held_p50:.0} / {held_p95:.0} ms"),
            "p95 <= settle_ms + 50",
            Some(held_p95 <= 1050.0),
        ),
    ]
}

/// An idle daemon: CPU time, wake-ups and memory over a minute.
pub async fn idle() -> Vec<Row> {
    let server = Server::start().await;
    let setup = Setup::new(&server.fake.url(), 1000);
    let mut daemon = setup.start_daemon();
    wait_for_probe(&server);
    std::thread::sleep(Duration::from_secs(2));
    let span = Duration::from_secs(if quick() { 10 } else { 60 });
    let before = proc_stats(daemon.id());
    std::thread::sleep(span);
    let after = proc_stats(daemon.id());
    stop(&mut daemon);
    let per_minute = 60.0 / span.as_secs_f64();
    let cpu = (after.cpu - before.cpu).as_secs_f64() * 1000.0 * per_minute;
    let switches = (after.switches - before.switches) as f64 * per_minute;
    let rss = after.rss_kb as f64 / 1024.0;
    vec![
        Row::new(
            "idle CPU time per minute",
            format!("{cpu:.0} ms"),
            "< 10 ms",
            Some(cpu < 10.0),
        ),
        Row::new(
            "idle wake-ups per minute (context switches, all threads)",
            format!("{switches:.0}"),
            "~ 2 rescans / min",
            None,
        ),
        Row::new(
            "idle resident memory",
            format!("{rss:.1} MB"),
            "< 15 MB",
            Some(rss < 15.0),
        ),
    ]
}

/// Many small PNGs dropped at once into a running daemon.
pub async fn burst() -> Vec<Row> {
    let server = Server::start().await;
    let count = if quick() { 1000 } else { 10_000 };
    let pictures: Vec<Vec<u8>> = (0..count).map(|i| small_png(i as u32)).collect();
    let setup = Setup::new(&server.fake.url(), 1000);
    let mut daemon = setup.start_daemon();
    wait_for_probe(&server);
    let started = Instant::now();
    for (i, picture) in pictures.iter().enumerate() {
        std::fs::write(setup.inbox.join(format!("b{i:05}.png")), picture).unwrap();
    }
    let mut peak = 0;
    wait_until("every request", Duration::from_secs(3600), || {
        peak = peak.max(proc_stats(daemon.id()).hwm_kb);
        std::thread::sleep(Duration::from_millis(20));
        server.count() >= count
    });
    let took = started.elapsed().as_secs_f64();
    wait_until("every result", Duration::from_secs(600), || {
        setup.results() >= count
    });
    peak = peak.max(proc_stats(daemon.id()).hwm_kb);
    stop(&mut daemon);
    // Which picture each request carried, in the order they came.
    let index: std::collections::HashMap<String, usize> = pictures
        .iter()
        .enumerate()
        .map(|(i, p)| (BASE64.encode(p), i))
        .collect();
    let order: Vec<usize> = server
        .fake
        .img2img_requests()
        .iter()
        .filter_map(|request| {
            request.json()["init_images"][0]
                .as_str()
                .and_then(|s| index.get(s).copied())
        })
        .collect();
    let distinct: std::collections::HashSet<usize> = order.iter().copied().collect();
    let out_of_order = order.windows(2).filter(|w| w[1] < w[0]).count();
    let peak_mb = peak as f64 / 1024.0;
    vec![
        Row::new(
            &format!("burst of {count} small PNGs: requests / distinct"),
            format!("{} / {} in {took:.1} s", order.len(), distinct.len()),
            "each exactly once",
            Some(order.len() == count && distinct.len() == count),
        ),
        Row::new(
            "burst: requests out of arrival order",
            format!("{out_of_order}"),
            "0",
            Some(out_of_order == 0),
        ),
        Row::new(
            "burst: peak resident memory",
            format!("{peak_mb:.1} MB"),
            "< 64 MB",
            Some(peak_mb < 64.0),
        ),
    ]
}

/// A start with a crowded inbox: time until the first request leaves.
pub async fn scan() -> Vec<Row> {
    let server = Server::start().await;
    let count = if quick() { 5_000 } else { 50_000 };
    let setup = Setup::new(&server.fake.url(), 1000);
    let picture = noise_png(16, 16, 7);
    for i in 0..count {
        let path = setup.inbox.join(format!("s{i:05}.png"));
        std::fs::write(&path, &picture).unwrap();
    }
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    for entry in std::fs::read_dir(&setup.inbox)
        .unwrap()
        .filter_map(Result::ok)
    {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.path())
            .unwrap();
        file.set_modified(past).unwrap();
    }
    let started = Instant::now();
    let mut child = setup.command(&["run", "--once"]).spawn().expect("drawdrop");
    wait_until("the first request", Duration::from_secs(120), || {
        server.count() >= 1
    });
    let first = server.arrivals.lock().unwrap()[0]
        .duration_since(started)
        .as_secs_f64();
    stop(&mut child);
    vec![Row::new(
        &format!("start with {count} files in the inbox -> first request"),
        format!("{first:.2} s"),
        "< 2 s",
        Some(first < 2.0),
    )]
}

/// One large PNG sent as it is: peak memory against its size.
pub async fn large() -> Vec<Row> {
    let server = Server::start().await;
    let side = if quick() { 2048 } else { 4096 };
    let picture = noise_png(side, side, 3);
    let size_mb = picture.len() as f64 / (1024.0 * 1024.0);
    let setup = Setup::new(&server.fake.url(), 1000);
    // Above the default max_megapixels: this profile lets it through at its own size, so the
    // file's bytes are what is sent.
    setup.profile("default", "max_megapixels = 16\n");
    let path = setup.inbox.join("large.png");
    std::fs::write(&path, &picture).unwrap();
    drop(picture);
    age(&path);
    let mut child = setup.command(&["run", "--once"]).spawn().expect("drawdrop");
    let (_, peak) = wait_with_peak(&mut child, Duration::from_millis(5));
    assert_eq!(setup.results(), 1, "the large picture went through");
    let peak_mb = peak as f64 / 1024.0;
    let ratio = peak_mb / size_mb;
    vec![Row::new(
        &format!("{size_mb:.0} MB PNG: peak resident memory"),
        format!("{peak_mb:.0} MB = {ratio:.1} x its size"),
        "< 4 x its size",
        Some(ratio < 4.0),
    )]
}

/// A phone photo (12 MP JPEG, orientation 6) and a 1024 x 1024 WebP against a plain
/// 1024 x 1024 PNG: from the start of `run --once` to the request leaving, and peak memory.
pub async fn photo() -> Vec<Row> {
    use crate::pictures::{jpeg, orientation_exif, webp};
    let server = Server::start().await;
    let runs = if quick() { 2 } else { 5 };
    let photo = jpeg(&scene(4032, 3024), Some(&orientation_exif(6)));
    let decoded_mb = 4032.0 * 3024.0 * 3.0 / (1024.0 * 1024.0);
    let cases = [
        (
            "1024x1024 PNG, sent as it is",
            "p.png",
            noise_png(1024, 1024, 9),
        ),
        ("12 MP JPEG photo, orientation 6", "photo.jpg", photo),
        ("1024x1024 WebP", "w.webp", webp(&scene(1024, 1024), None)),
    ];
    let mut figures = Vec::new();
    for (_, name, bytes) in &cases {
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..runs {
            let setup = Setup::new(&server.fake.url(), 1000);
            let path = setup.inbox.join(name);
            std::fs::write(&path, bytes).unwrap();
            age(&path);
            let before = server.count();
            let started = Instant::now();
            let mut child = setup.command(&["run", "--once"]).spawn().expect("drawdrop");
            let mut left = None;
            loop {
                peak = peak.max(proc_stats(child.id()).hwm_kb);
                if left.is_none() && server.count() > before {
                    left = Some(server.arrivals.lock().unwrap()[before].duration_since(started));
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(setup.results(), 1, "{name} went through");
            let left = left.or_else(|| {
                let arrivals = server.arrivals.lock().unwrap();
                arrivals.get(before).map(|at| at.duration_since(started))
            });
            times.push(left.expect("a request").as_secs_f64() * 1000.0);
        }
        figures.push((median(&mut times), peak as f64 / 1024.0));
    }
    let (png_ms, png_mb) = figures[0];
    let mut rows = vec![Row::new(
        &format!("{}: to request / peak", cases[0].0),
        format!("{png_ms:.0} ms / {png_mb:.0} MB"),
        "",
        None,
    )];
    for (index, ((label, _, _), (ms, mb))) in cases.iter().zip(&figures).enumerate().skip(1) {
        let times = format!("{ms:.0} ms = {:.1} x PNG", ms / png_ms.max(1.0));
        let (value, target, met) = if index == 1 {
            (
                format!("{times} / {mb:.0} MB = {:.1} x decoded", mb / decoded_mb),
                "peak < 6 x decoded",
                Some(*mb < 6.0 * decoded_mb),
            )
        } else {
            (format!("{times} / {mb:.0} MB"), "", None)
        };
        rows.push(Row::new(
            &format!("{label}: to request / peak"),
            value,
            target,
            met,
        ));
    }
    rows
}

/// A small, distinct PNG of 128 x 128 (the smallest size sent untouched): its index is
/// written into the first row of pixels.
fn small_png(index: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(128, 128, |x, y| {
        if y == 0 && x < 32 {
            let bit = (index >> x) & 1;
            image::Rgb([bit as u8 * 255, 0, 0])
        } else {
            image::Rgb([90, 120, 150])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn http_client() -> reqwest::Client {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The floor: the least any tool must do per image.
async fn floor_once(client: &reqwest::Client, url: &str, input: &Path, output: &Path) {
    #[derive(serde::Deserialize)]
    struct Answer {
        images: Vec<String>,
    }
    let bytes = std::fs::read(input).unwrap();
    let body = format!(
        "{{\"width\":576,\"height\":576,\"seed\":1,\"init_images\":[\"{}\"]}}",
        BASE64.encode(&bytes)
    );
    let answer = client
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: Answer = serde_json::from_slice(&answer).unwrap();
    let image = BASE64.decode(&answer.images[0]).unwrap();
    std::fs::write(output, image).unwrap();
}

fn wait_for_probe(server: &Server) {
    wait_until("the daemon's first probe", Duration::from_secs(60), || {
        server.fake.requests().iter().any(|r| r.method == "GET")
    });
}
