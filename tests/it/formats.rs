//! End to end through the real binary: every picture format people drop (PNG, JPEG, WebP,
//! TIFF, HEIC through a stand-in converter), turned upright by EXIF, scaled down to
//! `max_megapixels`; hostile files of those kinds; files that are not taken.

use crate::common::{Setup, set, stderr_of, wait_until};
use crate::fakes::server::{FakeServer, Flavor, Recorded};
use crate::pictures::size_of;
use crate::pictures::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A profile whose prompt is the file's stem, so each request says which file it carries.
const NAMED: &str = "prompt = \"{name}\"\n";

/// The requests, by the stem their prompt names.
fn by_name(server: &FakeServer) -> BTreeMap<String, Recorded> {
    server
        .img2img_requests()
        .into_iter()
        .map(|request| {
            let name = request.json()["prompt"].as_str().unwrap_or("").to_owned();
            (name, request)
        })
        .collect()
}

/// The size a request asks for, and the size of the PNG it carries (which must agree).
fn sent_size(request: &Recorded) -> (u32, u32) {
    let json = request.json();
    let asked = (
        json["width"].as_u64().unwrap() as u32,
        json["height"].as_u64().unwrap() as u32,
    );
    let init = request.init_image().expect("an init image");
    assert_eq!(size_of(&init), asked, "the PNG sent has the size asked for");
    asked
}

fn error_text(setup: &Setup, failed: &str) -> String {
    String::from_utf8(setup.read_out(&format!("failed/{failed}.error.txt"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_taken_sent_upright_as_png_and_archived_untouched() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("default", NAMED);
    let scene = quadrants(256, 128);
    let sideways = stored_as(&scene, 6);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("camera.jpg", jpeg(&sideways, Some(&orientation_exif(6)))),
        ("upright.JPEG", jpeg(&scene, None)),
        (
            "web.webp",
            webp(&stored_as(&scene, 8), Some(&orientation_exif(8))),
        ),
        ("scan.TIF", tiff(&stored_as(&scene, 3), Some(3))),
        (
            "shot.png",
            png_with_exif(&sideways, Some(&orientation_exif(6))),
        ),
        // The bytes decide: a JPEG named .png, a WebP named .jpg.
        ("misnamed.png", jpeg(&scene, None)),
        ("saved.jpg", webp(&scene, None)),
    ];
    for (name, bytes) in &files {
        setup.drop_file(name, bytes);
    }
    setup.drop_file("camera.txt", b"camera");

    let output = setup.run_once();
    let log = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");

    let mut expected = set(&[
        "camera.png",
        "upright.png",
        "web.png",
        "scan.png",
        "shot.png",
        "misnamed.png",
        "saved.png",
        "originals/camera.txt",
    ]);
    for (name, _) in &files {
        expected.insert(format!("originals/{name}"));
    }
    assert_eq!(setup.outbox_files(), expected);
    for (name, bytes) in &files {
        assert_eq!(
            &setup.read_out(&format!("originals/{name}")),
            bytes,
            "{name} archived byte for byte under its own name"
        );
    }
    let requests = by_name(&server);
    assert_eq!(requests.len(), files.len());
    for (name, _) in &files {
        let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
        let request = &requests[stem];
        assert_eq!(sent_size(request), (256, 128), "{name} is sent upright");
        let init = request.init_image().unwrap();
        assert_eq!(corners(&init), UPRIGHT, "{name} reaches the server upright");
        assert_eq!(size_of(&setup.read_out(&format!("{stem}.png"))), (256, 128));
    }
    assert!(
        log.contains("misnamed.png is a JPEG picture, though its name says PNG: taken as JPEG"),
        "{log}"
    );
    assert!(
        log.contains("saved.jpg is a WebP picture, though its name says JPEG: taken as WebP"),
        "{log}"
    );
    let lines = setup.job_lines();
    let inputs: Vec<&str> = lines.iter().filter_map(|l| l["input"].as_str()).collect();
    assert!(inputs.contains(&"camera.jpg"), "{inputs:?}");
    let camera = lines.iter().find(|l| l["input"] == "camera.jpg").unwrap();
    assert_eq!(camera["outputs"][0], "camera.png");
    assert_eq!(camera["sidecars"][0], "camera.txt");
    assert_eq!(camera["input_size"], serde_json::json!([256, 128]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exif_orientation_of_a_jpeg_reaches_the_server_upright() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("default", NAMED);
    let scene = quadrants(192, 128);
    for value in 1..=8u8 {
        let stored = stored_as(&scene, value);
        let bytes = jpeg(&stored, Some(&orientation_exif(value.into())));
        setup.drop_file(&format!("o{value}.jpg"), &bytes);
    }
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let requests = by_name(&server);
    for value in 1..=8u8 {
        let request = &requests[&format!("o{value}")];
        assert_eq!(sent_size(request), (192, 128), "orientation {value}");
        let init = request.init_image().unwrap();
        assert_eq!(corners(&init), UPRIGHT, "orientation {value}");
        let result = setup.read_out(&format!("o{value}.png"));
        assert_eq!(size_of(&result), (192, 128));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_megapixel_photo_is_scaled_down_unless_a_profile_asks_for_more() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("default", NAMED);
    setup.profile("large", "prompt = \"{name}\"\nmax_megapixels = 4\n");
    setup.profile("sized", "prompt = \"{name}\"\nwidth = 2048\n");
    // An iPhone photo: 4032 x 3024 stored, orientation 6 (taken upright, 3024 x 4032).
    let photo = jpeg(&quadrants(4032, 3024), Some(&orientation_exif(6)));
    setup.drop_file("phone.jpg", &photo);
    let three = png_with_exif(&quadrants(2016, 1512), None);
    setup.drop_file("large/three.png", &three);
    setup.drop_file("sized/wide.png", &three);
    // A sidecar can raise (or lower) the limit for one picture.
    setup.drop_file("quarter.png", &three);
    setup.drop_file("quarter.toml", b"max_megapixels = 0.25\n");

    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let requests = by_name(&server);
    assert_eq!(
        sent_size(&requests["phone"]),
        (896, 1152),
        "about 1 megapixel, upright"
    );
    assert_eq!(
        sent_size(&requests["three"]),
        (2048, 1536),
        "max_megapixels = 4: as it is, snapped"
    );
    assert_eq!(sent_size(&requests["wide"]), (2048, 1536), "width wins");
    assert_eq!(
        sent_size(&requests["quarter"]),
        (576, 448),
        "0.25 megapixel"
    );
    assert_eq!(size_of(&setup.read_out("phone.png")), (896, 1152));
}

/// A folder holding a stand-in for `heif-convert` (and `sips`, as macOS uses that) running
/// `body` (sh). It comes first on the `PATH` given to drawdrop (see [`path_with`]).
fn stand_in_converter(setup: &Setup, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let folder = setup.dir.path().join("bin");
    std::fs::create_dir_all(&folder).unwrap();
    let script = folder.join("heif-convert");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&script, folder.join("sips")).unwrap();
    folder
}

/// `PATH` with `bin` first, then the system's folders (for the shell commands a stand-in uses).
fn path_with(bin: &Path) -> String {
    format!("{}:/usr/bin:/bin", bin.display())
}

/// The first bytes of an iPhone HEIC: its `ftyp` box (the rest does not matter to a stand-in).
fn heic_bytes() -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    bytes.extend_from_slice(&[7; 200]);
    bytes
}

fn check_output(setup: &Setup, path: &str) -> String {
    let output = setup
        .command()
        .arg("check")
        .env("PATH", path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heic_goes_through_the_converter_on_path_and_its_png_is_turned_upright() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("default", NAMED);
    // What the converter writes: a sideways PNG with its orientation in eXIf.
    let converted = setup.dir.path().join("converted.png");
    let scene = quadrants(256, 192);
    std::fs::write(
        &converted,
        png_with_exif(&stored_as(&scene, 6), Some(&orientation_exif(6))),
    )
    .unwrap();
    let seen = setup.dir.path().join("seen.heic");
    // heif-convert IN OUT; sips -s format png IN --out OUT: the input is the last-but-one
    // argument for the one and the fourth for the other; the output is always the last.
    let bin = stand_in_converter(
        &setup,
        &format!(
            "for last in \"$@\"; do :; done\n\
             if [ \"$1\" = -s ]; then in=\"$4\"; else in=\"$1\"; fi\n\
             cp \"$in\" '{}' && cp '{}' \"$last\"",
            seen.display(),
            converted.display()
        ),
    );
    let heic = heic_bytes();
    setup.drop_file("IMG_0001.HEIC", &heic);
    setup.drop_file("IMG_0001.txt", b"IMG_0001");
    // An iPhone HEIC saved under a .jpg name is a HEIC.
    setup.drop_file("IMG_0002.jpg", &heic);

    let temporary = setup.dir.path().join("tmp");
    std::fs::create_dir_all(&temporary).unwrap();
    let output = setup.run_once_with(&[
        ("PATH", &path_with(&bin)),
        ("TMPDIR", temporary.to_str().unwrap()),
    ]);
    let log = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(
        std::fs::read(&seen).unwrap(),
        heic,
        "the converter was given the HEIC"
    );
    assert_eq!(
        std::fs::read_dir(&temporary).unwrap().count(),
        0,
        "no temporary folder of a conversion is left behind"
    );
    assert_eq!(
        setup.outbox_files(),
        set(&[
            "IMG_0001.png",
            "IMG_0002.png",
            "originals/IMG_0001.HEIC",
            "originals/IMG_0001.txt",
            "originals/IMG_0002.jpg",
        ])
    );
    assert_eq!(setup.read_out("originals/IMG_0001.HEIC"), heic);
    // The gallery shows the HEIC originals too, upright, made through the same converter.
    let originals: Vec<_> = std::fs::read_dir(setup.outbox.join("gallery/thumbs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with("-o.jpg"))
        .collect();
    assert_eq!(originals.len(), 2, "{originals:?}");
    for thumbnail in originals {
        let picture = image::open(&thumbnail).unwrap();
        assert_eq!((picture.width(), picture.height()), (256, 192));
    }
    for request in server.img2img_requests() {
        assert_eq!(sent_size(&request), (256, 192));
        assert_eq!(corners(&request.init_image().unwrap()), UPRIGHT);
    }
    assert!(
        log.contains("IMG_0002.jpg is a HEIC picture, though its name says JPEG"),
        "{log}"
    );
    let check = check_output(&setup, &path_with(&bin));
    assert!(
        check.contains(&format!(
            "heic      ok       HEIC pictures are read with {}",
            bin.join(if cfg!(target_os = "macos") {
                "sips"
            } else {
                "heif-convert"
            })
            .display()
        )),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_converter_a_heic_fails_with_what_to_install() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let empty = setup.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    setup.drop_file("IMG_0003.heic", &heic_bytes());
    let output = setup.run_once_with(&[("PATH", empty.to_str().unwrap())]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let text = error_text(&setup, "IMG_0003.heic");
    assert!(
        text.contains("HEIC pictures cannot be read on this machine"),
        "{text}"
    );
    assert!(text.contains("apt install libheif-examples"), "{text}");
    assert!(text.contains("brew install libheif"), "{text}");
    assert_eq!(setup.read_out("failed/IMG_0003.heic"), heic_bytes());
    assert!(server.img2img_requests().is_empty());
    let check = check_output(&setup, empty.to_str().unwrap());
    assert!(
        check.contains("heic      note     HEIC pictures cannot be read: install libheif"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converter_that_hangs_is_stopped_one_that_fails_is_quoted_and_junk_is_refused() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let bin = stand_in_converter(
        &setup,
        "for last in \"$@\"; do :; done\n\
         if grep -q hang \"$1\" \"$4\" 2>/dev/null; then exec sleep 60; fi\n\
         if grep -q garbage \"$1\" \"$4\" 2>/dev/null; then echo garbage > \"$last\"; exit 0; fi\n\
         echo 'Could not read HEIF/AVIF file: Invalid input: No ftyp box' >&2\n\
         exit 1",
    );
    let mut hangs = heic_bytes();
    hangs.extend_from_slice(b"hang");
    setup.drop_file("hangs.heic", &hangs);
    let mut garbage = heic_bytes();
    garbage.extend_from_slice(b"garbage");
    setup.drop_file("garbage.heic", &garbage);
    setup.drop_file("chokes.heic", &heic_bytes());
    let started = Instant::now();
    let output = setup.run_once_with(&[
        ("PATH", &path_with(&bin)),
        ("DRAWDROP_HEIC_TIMEOUT_MS", "700"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    let text = error_text(&setup, "hangs.heic");
    assert!(
        text.contains("did not finish converting the HEIC within 0.7 s and was stopped"),
        "{text}"
    );
    let text = error_text(&setup, "garbage.heic");
    assert!(
        text.contains("the HEIC's converter wrote a PNG that cannot be sent: this is a text file"),
        "{text}"
    );
    let text = error_text(&setup, "chokes.heic");
    assert!(
        text.contains("could not convert the HEIC (exit status 1): Could not read HEIF/AVIF file"),
        "{text}"
    );
    assert!(server.img2img_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pictures_of_the_new_kinds_fail_with_a_reason_and_are_never_sent() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let scene = quadrants(128, 128);
    let whole = jpeg(&scene, None);
    let mut huge_ifd = orientation_exif(6);
    huge_ifd[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "cut.jpg",
            whole[..whole.len() / 2].to_vec(),
            "the JPEG is truncated",
        ),
        (
            "claims.webp",
            webp_claiming(60000, 60000),
            "60000 x 60000 pixels, above the limit of 8192 x 8192",
        ),
        (
            "bomb.tif",
            tiff_bomb(100_000, 100_000, 100_000),
            "100000 x 100000 pixels, above the limit",
        ),
        (
            "strips.tif",
            tiff_bomb(4096, 4096, 4096),
            "the TIFF cannot be decoded",
        ),
        (
            "zero.jpg",
            jpeg(&scene, Some(&orientation_exif(0))),
            "its EXIF orientation is 0, which is none of the eight",
        ),
        (
            "twohundred.jpg",
            jpeg(&scene, Some(&orientation_exif(200))),
            "its EXIF orientation is 200",
        ),
        (
            "count.jpg",
            jpeg(&scene, Some(&huge_ifd)),
            "claims 65535 entries",
        ),
        (
            "offset.webp",
            webp(&scene, Some(b"II*\0\xff\xff\xff\x7f")),
            "past its end",
        ),
        ("empty.heic", Vec::new(), "the file is empty"),
        (
            "anim.jpg",
            b"GIF89a\x01\0\x01\0\0\0\0;".to_vec(),
            "this is a GIF image, not a JPEG",
        ),
    ];
    for (name, bytes, _) in &cases {
        setup.drop_file(name, bytes);
    }
    setup.drop_file("good.jpg", &whole);
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(
        server.img2img_requests().len(),
        1,
        "only the good one is sent"
    );
    assert!(setup.outbox.join("good.png").exists());
    for (name, bytes, words) in &cases {
        let text = error_text(&setup, name);
        assert!(text.contains(words), "{name}: {text}");
        assert_eq!(&setup.read_out(&format!("failed/{name}")), bytes, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_not_taken_are_reported_once_left_alone_and_listed_by_status() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let others = ["clip.mov", "scan.pdf", "anim.gif", "raw/IMG_1.DNG"];
    let silent = [
        "notes.txt",
        "waiting.toml",
        ".DS_Store",
        "photo.jpg.part",
        ".IMG_2.HEIC.icloud",
    ];
    for name in others.iter().chain(&silent) {
        setup.drop_file(name, b"not a picture drawdrop takes");
    }
    let status = |setup: &Setup| {
        let output = setup.command().arg("status").output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let before = status(&setup);
    assert!(
        before.contains("not taken  4: anim.gif, clip.mov, raw/IMG_1.DNG, scan.pdf\n"),
        "{before}"
    );

    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    for name in others {
        daemon.wait_for_output(&format!(
            "not taken: {name} \u{2014} drawdrop takes PNG, JPEG, WebP, HEIC and TIFF"
        ));
    }
    // Touched, and a new one dropped while running: each still said once.
    setup.drop_file("clip.mov", b"a new take");
    setup.drop_file("later.mp4", b"video");
    daemon.wait_for_output("not taken: later.mp4");
    setup.drop_file("good.jpg", &jpeg(&quadrants(128, 128), None));
    wait_until("the good picture is done", || {
        setup.outbox.join("good.png").exists()
    });
    let log = daemon.output();
    for name in [
        "clip.mov",
        "scan.pdf",
        "anim.gif",
        "raw/IMG_1.DNG",
        "later.mp4",
    ] {
        assert_eq!(
            log.matches(&format!("not taken: {name} ")).count(),
            1,
            "{name} once:\n{log}"
        );
    }
    for name in silent {
        assert!(!log.contains(name), "{name} stays silent:\n{log}");
    }
    for name in others.iter().chain(&silent) {
        assert!(setup.inbox.join(name).exists(), "{name} left where it was");
    }
    let after = status(&setup);
    assert!(
        after.contains("not taken  5: anim.gif, clip.mov, later.mp4, raw/IMG_1.DNG, scan.pdf\n"),
        "{after}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_jpeg_or_webp_closed_by_its_writer_is_taken_without_waiting_to_settle() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // Ten minutes to settle: only the close-after-write fast path can take them in time.
    let setup = Setup::with(&server.url(), "drawthings", 600_000, "", "");
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    let scene = quadrants(128, 128);
    let photo = jpeg(&stored_as(&scene, 3), Some(&orientation_exif(3)));
    std::fs::write(setup.inbox.join("quick.jpg"), &photo).unwrap();
    std::fs::write(setup.inbox.join("quick.webp"), webp(&scene, None)).unwrap();
    // A JPEG cut short, closed by its writer, still waits for the settle window.
    std::fs::write(setup.inbox.join("cut.jpg"), &photo[..photo.len() - 100]).unwrap();
    wait_until("both results", || {
        setup.outbox.join("quick.png").exists() && setup.outbox.join("quick (2).png").exists()
    });
    assert!(setup.inbox.join("cut.jpg").exists(), "the cut file waits");
    assert_eq!(server.img2img_requests().len(), 2);
    for request in server.img2img_requests() {
        assert_eq!(corners(&request.init_image().unwrap()), UPRIGHT);
    }
}
