//! The outbox gallery and live progress, end to end through the real binary and the fakes:
//! a gallery made by a real run and checked in headless Chromium (thumbnails loaded, cards
//! in order with their texts, a failure's reason, a hostile prompt shown as text, nothing
//! outside the outbox, screenshots kept under target/); `drawdrop gallery` makes the same
//! pages again and shows a deleted result as missing; a crash between a job's line and the
//! gallery is repaired at the next start; `gallery = false` writes none; `--open` opens it;
//! `status` shows a job in flight with its time, and its step when A1111 reports one.

use crate::common::browser::Browser;
use crate::common::{PATIENCE, Setup, runtime, stderr_of, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// A small painted scene (sky, sun, hills, water), so that the pictures read as pictures.
fn scene(width: u32, height: u32, variant: u32) -> Vec<u8> {
    let palettes: [[[f32; 3]; 3]; 4] = [
        [
            [255.0, 170.0, 110.0],
            [120.0, 60.0, 120.0],
            [40.0, 70.0, 90.0],
        ],
        [
            [150.0, 200.0, 250.0],
            [60.0, 140.0, 80.0],
            [30.0, 90.0, 150.0],
        ],
        [
            [250.0, 220.0, 150.0],
            [150.0, 110.0, 60.0],
            [70.0, 120.0, 110.0],
        ],
        [
            [200.0, 180.0, 240.0],
            [70.0, 70.0, 130.0],
            [30.0, 40.0, 80.0],
        ],
    ];
    let [sky, hill, water] = palettes[variant as usize % palettes.len()];
    let (w, h) = (width as f32, height as f32);
    let sun = (w * (0.25 + 0.15 * variant as f32), h * 0.3, h * 0.12);
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let horizon = h * 0.62;
        let ridge = h * 0.45
            + (fx / w * 9.0 + variant as f32).sin() * h * 0.06
            + (fx / w * 23.0).sin() * h * 0.02;
        let mix = |a: [f32; 3], b: [f32; 3], t: f32| {
            [0, 1, 2].map(|c| (a[c] * (1.0 - t) + b[c] * t).clamp(0.0, 255.0) as u8)
        };
        let colour = if ((fx - sun.0).powi(2) + (fy - sun.1).powi(2)).sqrt() < sun.2 {
            [255, 240, 200]
        } else if fy < ridge.min(horizon) {
            mix(sky, [255.0, 255.0, 255.0], fy / horizon * 0.5)
        } else if fy < horizon {
            mix(hill, [0.0, 0.0, 0.0], (fy - ridge) / h)
        } else {
            let ripple = ((fy * 0.9).sin() * 0.5 + 0.5) * 0.15;
            mix(water, sky, ripple)
        };
        image::Rgb(colour)
    });
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode scene");
    png
}

/// A run of five pictures against a fake A1111 that paints them: one fails (the server
/// answers 500), one carries a hostile prompt in its sidecar.
fn made_gallery(runtime: &tokio::runtime::Runtime) -> (FakeServer, Setup) {
    let server = runtime.block_on(FakeServer::start(Flavor::A1111 { auth: None }));
    server.set_stylize(true);
    server.push_fault(Fault::Status {
        code: 500,
        detail: "CUDA out of memory. Tried to allocate 2.00 GiB <GPU 0>".into(),
        retry_after: None,
    });
    let setup = Setup::with(&server.url(), "a1111", 100, "", "max_attempts = 1");
    setup.profile(
        "watercolor",
        "prompt = \"a watercolor painting of a {name}, soft light\"\nsteps = 20\nstrength = 0.55\nmodel = \"sd_xl_base_1.0.safetensors\"\n",
    );
    setup.profile(
        "ink",
        "prompt = \"an ink drawing of a {name}\"\nsteps = 8\nseed = 1234\nmodel = \"dreamshaper_8.safetensors\"\n",
    );
    for (index, name) in [
        "watercolor/harbour.png",
        "watercolor/sunset.png",
        "ink/valley.png",
        "ink/hostile.png",
        "watercolor/lake.png",
    ]
    .iter()
    .enumerate()
    {
        if *name == "ink/hostile.png" {
            setup.drop_file("ink/hostile.txt", HOSTILE.as_bytes());
        }
        setup.drop_file(name, &scene(512, 384, index as u32));
    }
    let output = setup.run_once();
    assert_eq!(
        output.status.code(),
        Some(1),
        "one job fails:\n{}",
        stderr_of(&output)
    );
    // `--once` waits for the gallery to be whole: nothing is left for a next start.
    assert!(
        !stderr_of(&output).contains("the rest is added at the next start"),
        "{}",
        stderr_of(&output)
    );
    (server, setup)
}

/// Every HTML page and thumbnail of the gallery, by name.
fn gallery_files(setup: &Setup) -> BTreeMap<String, Vec<u8>> {
    crate::common::files_under(&setup.outbox.join("gallery"))
        .into_iter()
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            let bytes = fs::read(setup.outbox.join("gallery").join(&name)).expect("read");
            (name, bytes)
        })
        .collect()
}

/// A link of the page as a path in the outbox (percent-decoded, from `gallery/`).
fn linked_file(setup: &Setup, href: &str) -> PathBuf {
    assert!(
        !href.starts_with('/') && !href.contains("://"),
        "a relative link: {href}"
    );
    let mut bytes = Vec::new();
    let raw = href.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).expect("hex");
            bytes.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let relative = String::from_utf8(bytes).expect("utf-8");
    let path = setup.outbox.join("gallery").join(&relative);
    let resolved =
        fs::canonicalize(&path).unwrap_or_else(|e| panic!("{href} -> {}: {e}", path.display()));
    let outbox = fs::canonicalize(&setup.outbox).expect("outbox");
    assert!(
        resolved.starts_with(&outbox),
        "{href} leads outside the outbox"
    );
    resolved
}

const CHECKS: &str = r#"(async () => {
  await Promise.all([...document.images].map(i => i.complete ? null :
    new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  const text = (card, selector) => { const e = card.querySelector(selector); return e ? e.textContent : null; };
  return {
    images: document.images.length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    widest: Math.max(...[...document.images].map(i => Math.max(i.naturalWidth, i.naturalHeight))),
    scripts: document.scripts.length,
    injected: document.querySelectorAll('img[src="x"]').length,
    missing: document.querySelectorAll('figure.missing').length,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    cards: [...document.querySelectorAll('article.card')].map(card => ({
      id: card.id,
      input: text(card, 'h2'),
      failed: card.classList.contains('failed'),
      prompt: text(card, '.prompt'),
      reason: text(card, '.reason'),
      profile: text(card, 'dd.profile'),
      seed: text(card, 'dd.seed'),
      model: text(card, 'dd.model'),
      server: text(card, 'dd.server'),
      took: text(card, 'dd.took'),
      time: text(card, 'time'),
      thumbs: card.querySelectorAll('img').length,
      links: [...card.querySelectorAll('a')].map(a => a.getAttribute('href')),
    })),
  };
})()"#;

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("gallery")
}

#[test]
fn a_real_run_makes_a_gallery_that_chromium_shows_whole() {
    let runtime = runtime();
    let (_server, setup) = made_gallery(&runtime);
    let jobs = setup.job_lines();
    assert_eq!(jobs.len(), 5);
    let index = setup.outbox.join("gallery/index.html");
    let files = gallery_files(&setup);
    let thumbs: Vec<&String> = files
        .keys()
        .filter(|name| name.starts_with("thumbs/"))
        .collect();
    assert_eq!(
        thumbs.len(),
        9,
        "an original for each job, a result for each success: {thumbs:?}"
    );
    for name in &thumbs {
        let size = files[*name].len();
        assert!(
            name.ends_with(".jpg") && (1_000..100_000).contains(&size),
            "{name}: {size} bytes"
        );
    }
    let url = format!("file://{}", index.display());
    runtime.block_on(async {
        let mut browser = Browser::open(&url, 1280, 1200).await;
        browser.set_viewport(1280, 1200, 1.0, false).await;
        browser
            .wait_for("location.protocol === 'file:' && document.readyState === 'complete'")
            .await;
        let found = browser.evaluate(CHECKS).await;
        assert_eq!(found["broken"], Value::Array(vec![]), "every thumbnail loads: {found:#}");
        assert_eq!(found["images"], 9);
        assert!(found["widest"].as_u64().unwrap() <= 256);
        assert_eq!(found["scripts"], 0, "the hostile prompt added no script");
        assert_eq!(found["injected"], 0, "the hostile prompt added no element");
        assert_eq!(found["missing"], 0);
        assert_eq!(found["overflow"], false, "nothing wider than the window");
        let cards = found["cards"].as_array().expect("cards");
        assert_eq!(cards.len(), 5);
        // Newest first: the reverse of jobs.jsonl.
        for (card, job) in cards.iter().zip(jobs.iter().rev()) {
            assert_eq!(card["id"], format!("job-{}", job["job"].as_str().unwrap()));
            assert_eq!(card["input"], job["input"]);
            assert_eq!(card["profile"], job["profile"]);
            assert_eq!(card["server"], job["server"]);
            assert_eq!(card["time"].as_str().unwrap(), &job["time"].as_str().unwrap().replace('T', " ")[..19]);
            let seconds = job["total_ms"].as_u64().unwrap() as f64 / 1000.0;
            assert_eq!(card["took"], format!("{seconds:.1} s"));
            let failed = job["outcome"] == "failed";
            assert_eq!(card["failed"], failed);
            if failed {
                assert_eq!(card["reason"], job["error"]);
                assert!(card["reason"].as_str().unwrap().contains("CUDA out of memory. Tried to allocate 2.00 GiB <GPU 0>"));
                let failed_as = job["failed_as"].as_str().unwrap();
                let links: Vec<PathBuf> = card["links"].as_array().unwrap().iter()
                    .map(|href| linked_file(&setup, href.as_str().unwrap())).collect();
                assert!(links.contains(&fs::canonicalize(setup.outbox.join(failed_as)).unwrap()), "links to {failed_as}");
                assert!(links.iter().any(|l| l.to_string_lossy().ends_with(".error.txt")));
                assert_eq!(card["thumbs"], 1, "the input, no result");
            } else {
                let settings = &job["settings"];
                assert_eq!(card["prompt"], settings["prompt"]);
                assert_eq!(card["seed"], settings["seed"].to_string());
                assert_eq!(card["model"], settings["override_settings"]["sd_model_checkpoint"]);
                assert_eq!(card["thumbs"], 2, "before and after");
                let links: Vec<PathBuf> = card["links"].as_array().unwrap().iter()
                    .map(|href| linked_file(&setup, href.as_str().unwrap())).collect();
                let result = fs::canonicalize(setup.outbox.join(job["outputs"][0].as_str().unwrap())).unwrap();
                let original = fs::canonicalize(setup.outbox.join(job["original"].as_str().unwrap())).unwrap();
                assert_eq!(links, [original, result], "a click opens the full pictures");
            }
        }
        let hostile = cards.iter().find(|c| c["input"] == "ink/hostile.png").expect("hostile card");
        if hostile["failed"] == false {
            assert_eq!(hostile["prompt"], HOSTILE, "shown as text");
        }
        assert!(String::from_utf8_lossy(&files["index.html"]).contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

        let shots = screenshots();
        let laptop = browser.screenshot(&shots.join("gallery-laptop.png")).await;
        browser.set_viewport(390, 844, 2.0, true).await;
        let phone_checks = browser.evaluate(CHECKS).await;
        assert_eq!(phone_checks["overflow"], false, "fits a phone's width");
        browser.screenshot(&shots.join("gallery-phone.png")).await;
        browser.call("Emulation.setEmulatedMedia", serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]})).await;
        browser.set_viewport(1280, 1200, 1.0, false).await;
        browser.screenshot(&shots.join("gallery-dark.png")).await;
        if std::env::var_os("DRAWDROP_UPDATE_SCREENSHOT").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
            fs::create_dir_all(&docs).unwrap();
            fs::write(docs.join("gallery.png"), &laptop).unwrap();
        }

        // `drawdrop gallery` makes the same pages from jobs.jsonl; a result deleted since
        // shows as missing, not as a broken picture.
        let rebuilt = setup.command().arg("gallery").output().expect("drawdrop gallery");
        assert!(rebuilt.status.success(), "{}", stderr_of(&rebuilt));
        assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("gallery: 5 jobs in"));
        assert_eq!(gallery_files(&setup), files, "the same gallery, made again");
        let done = jobs.iter().find(|job| job["outcome"] == "done").unwrap();
        fs::remove_file(setup.outbox.join(done["outputs"][0].as_str().unwrap())).unwrap();
        let rebuilt = setup.command().arg("gallery").output().expect("drawdrop gallery");
        assert!(rebuilt.status.success());
        browser.call("Page.reload", serde_json::json!({})).await;
        browser.wait_for("document.readyState === 'complete' && document.querySelectorAll('figure.missing').length === 1").await;
        let found = browser.evaluate(CHECKS).await;
        assert_eq!(found["broken"], Value::Array(vec![]));
        assert_eq!(found["images"], 8);
    });
}

#[test]
fn the_gallery_kept_job_by_job_equals_one_made_from_jobs_jsonl_and_a_crash_is_repaired() {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::with(&server.url(), "drawthings", 100, "", "");
    setup.profile("duo", "batch_count = 2\n");
    // The daemon dies right after the second job's jobs.jsonl line, before its gallery update.
    let mut daemon = setup.start_daemon_with(&[("DRAWDROP_CRASH_AT", "journaled:2")]);
    setup.drop_file("one.png", &scene(256, 192, 0));
    wait_until("the first job is in the gallery", || {
        fs::read_to_string(setup.outbox.join("gallery/index.html"))
            .is_ok_and(|html| html.contains("one.png"))
    });
    setup.drop_file("duo/two.png", &scene(256, 192, 1));
    let status = daemon.wait_exit(PATIENCE);
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{}", daemon.output());
    let index = fs::read_to_string(setup.outbox.join("gallery/index.html")).unwrap();
    assert!(
        !index.contains("duo/two.png"),
        "the crash came before the gallery update"
    );
    // The next start finishes the job (it wrote its line already) and the gallery catches up.
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(setup.job_lines().len(), 2, "one line per job");
    let index = fs::read_to_string(setup.outbox.join("gallery/index.html")).unwrap();
    assert_eq!(
        index.matches("<h2>duo/two.png</h2>").count(),
        1,
        "shown once"
    );
    assert_eq!(index.matches("<article ").count(), 2);
    assert!(
        index.find("duo/two.png").unwrap() < index.find("one.png").unwrap(),
        "newest first"
    );
    assert!(
        setup
            .outbox
            .join("gallery/thumbs")
            .read_dir()
            .unwrap()
            .count()
            == 5,
        "1 + 1 originals, 1 + 2 results"
    );
    // A third job by a daemon, then the gallery made from jobs.jsonl: the same files.
    let mut daemon = setup.start_daemon();
    setup.drop_file("three.png", &scene(256, 192, 2));
    wait_until("the third job is in the gallery", || {
        fs::read_to_string(setup.outbox.join("gallery/index.html"))
            .is_ok_and(|html| html.contains("three.png"))
    });
    daemon.terminate(Duration::from_secs(15));
    let kept = gallery_files(&setup);
    fs::remove_dir_all(setup.outbox.join("gallery")).unwrap();
    let rebuilt = setup
        .command()
        .arg("gallery")
        .output()
        .expect("drawdrop gallery");
    assert!(rebuilt.status.success(), "{}", stderr_of(&rebuilt));
    assert_eq!(
        gallery_files(&setup).keys().collect::<Vec<_>>(),
        kept.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        String::from_utf8_lossy(&gallery_files(&setup)["index.html"]),
        String::from_utf8_lossy(&kept["index.html"])
    );
}

#[test]
fn gallery_false_writes_none_and_open_hands_the_page_to_the_system() {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::with(&server.url(), "drawthings", 100, "gallery = false", "");
    setup.drop_file("cat.png", &scene(128, 128, 0));
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(setup.outbox.join("cat.png").is_file());
    assert!(
        !setup.outbox.join("gallery").exists(),
        "gallery = false writes none"
    );
    // A stand-in for xdg-open (and macOS open) on PATH records what it was given.
    let bin = setup.dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let record = setup.dir.path().join("opened.txt");
    for opener in ["xdg-open", "open"] {
        let script = bin.join(opener);
        fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", record.display()),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let opened = setup
        .command()
        .args(["gallery", "--open"])
        .env("PATH", path)
        .output()
        .expect("drawdrop gallery --open");
    assert!(opened.status.success(), "{}", stderr_of(&opened));
    let index = setup.outbox.join("gallery/index.html");
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        index.to_string_lossy()
    );
    assert!(
        fs::read_to_string(&index)
            .unwrap()
            .contains("<h2>cat.png</h2>")
    );
}

/// `drawdrop status` output.
fn status(setup: &Setup) -> String {
    let output = setup
        .command()
        .arg("status")
        .output()
        .expect("drawdrop status");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn status_shows_the_job_in_flight_with_its_time_and_a1111s_step() {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::A1111 { auth: None }));
    server.set_delay(Duration::from_secs(8));
    let setup = Setup::with(&server.url(), "a1111", 100, "", "");
    setup.profile("slow", "steps = 30\n");
    let _daemon = setup.start_daemon();
    setup.drop_file("slow/cat.png", &scene(128, 128, 0));
    let mut seen = String::new();
    wait_until("status shows the step", || {
        seen = status(&setup);
        seen.lines().any(|line| {
            line.contains("in flight")
                && line.contains("slow/cat.png on ")
                && line.contains(" s, step ")
                && line.contains("/30")
        })
    });
    let line = seen
        .lines()
        .find(|l| l.contains("in flight"))
        .unwrap()
        .to_owned();
    let step: u32 = line
        .rsplit("step ")
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(step <= 30, "{line}");
    wait_until("the job is done", || {
        setup.outbox.join("slow/cat.png").is_file()
    });
    wait_until("nothing is in flight any more", || {
        !status(&setup).contains("in flight")
    });
}

#[test]
fn status_shows_a_draw_things_job_in_flight_with_its_time_only() {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    server.set_delay(Duration::from_secs(6));
    let setup = Setup::new(&server.url(), "drawthings");
    let _daemon = setup.start_daemon();
    setup.drop_file("dog.png", &scene(128, 128, 1));
    let mut seen = String::new();
    wait_until("status shows the job and a second passed", || {
        seen = status(&setup);
        seen.lines().any(|line| {
            line.contains("in flight") && line.contains("dog.png on ") && !line.contains(", 0 s")
        })
    });
    let line = seen.lines().find(|l| l.contains("in flight")).unwrap();
    assert!(
        line.trim_end().ends_with(" s"),
        "time only, no step: {line}"
    );
}
