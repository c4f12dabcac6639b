//! Hostile and odd input, and file-system trouble, end to end through the real binary:
//! broken PNGs and decompression bombs, files above `max_file_mb`, every PNG colour type,
//! odd names and deep folders, symbolic links, unreadable files, an outbox that is read-only
//! or full, inbox and outbox on different file systems (with crashes), an inbox deleted or
//! renamed while drawdrop runs, plain HTTP to another machine, and secrets in logs.
//!
//! Each case asserts a clear outcome (a result, or `failed/` with a readable reason, or a
//! file left alone with a log line) and never a panic or a silent skip.

use crate::common::hostile::{
    TmpfsMount, chmod_folders, cpu_seconds, device_of, drop_beside_inbox, files_beside, fill_up,
    restore_modes, start_daemon_with, stray_lines, unprivileged,
};
use crate::common::{Daemon, Setup, files_under, set, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use crate::pictures::{
    ColorKind, jpeg_bytes, png, png_with, size_of, truncated, with_declared_size, with_text,
};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long drawdrop is watched for spinning, and the CPU time it may use meanwhile.
const IDLE_WATCH: Duration = Duration::from_secs(3);
const IDLE_CPU_LIMIT_S: f64 = 1.0;

/// Asserts that the daemon uses (almost) no CPU while it has nothing it can do.
fn assert_not_spinning(daemon: &Daemon, situation: &str) {
    let before = cpu_seconds(daemon.pid());
    // Not synchronisation: a measurement of what drawdrop does while it waits.
    std::thread::sleep(IDLE_WATCH);
    let used = cpu_seconds(daemon.pid()) - before;
    assert!(
        used < IDLE_CPU_LIMIT_S,
        "drawdrop used {used:.2} s of CPU in {IDLE_WATCH:?} while {situation}: it spins\n{}",
        daemon.output()
    );
}

/// Asserts the daemon never panicked and every log line is one event (a name with a
/// newline is escaped, not split).
fn assert_clean_logs(setup: &Setup, daemon: &Daemon) {
    let output = daemon.output();
    assert!(!output.contains("panicked"), "a panic:\n{output}");
    let log = setup.log_text();
    assert!(!log.contains("panicked"), "a panic:\n{log}");
    assert_eq!(stray_lines(&log), Vec::<String>::new(), "log:\n{log}");
    assert_eq!(
        stray_lines(&output),
        Vec::<String>::new(),
        "stderr:\n{output}"
    );
}

/// Waits until the outbox (without drawdrop's hidden state) holds exactly `expected`;
/// on timeout, fails showing the difference and what the daemon said.
fn wait_for_outbox(setup: &Setup, daemon: &Daemon, expected: &BTreeSet<String>, what: &str) {
    let started = std::time::Instant::now();
    loop {
        let found = visible_outbox(setup);
        if &found == expected {
            return;
        }
        if started.elapsed() > crate::common::PATIENCE {
            panic!(
                "timed out waiting until {what}\nmissing: {:?}\nunexpected: {:?}\ninbox: {:?}\nclaimed: {:?}\ndaemon:\n{}",
                expected.difference(&found).collect::<Vec<_>>(),
                found.difference(expected).collect::<Vec<_>>(),
                setup.inbox_files(),
                setup.leftovers(),
                daemon.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the daemon has said `text` at least `times` times.
fn wait_for_said(daemon: &Daemon, text: &str, times: usize) {
    let started = std::time::Instant::now();
    while daemon.output().matches(text).count() < times {
        if started.elapsed() > crate::common::PATIENCE {
            panic!(
                "timed out waiting until drawdrop said {text:?} {times} times:\n{}",
                daemon.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The outbox's files without drawdrop's hidden state (`.drawdrop/`) and logs.
fn visible_outbox(setup: &Setup) -> BTreeSet<String> {
    setup
        .outbox_files()
        .into_iter()
        .filter(|f| !f.starts_with(".drawdrop/"))
        .collect()
}

fn error_text(setup: &Setup, failed_input: &str) -> String {
    String::from_utf8(setup.read_out(&format!("failed/{failed_input}.error.txt")))
        .expect("an .error.txt is text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_oversized_pngs_fail_with_a_reason_and_are_never_sent() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::with(&server.url(), "drawthings", 300, "max_file_mb = 1", "");
    let big = with_text(&png(64, 64, 3), "Comment", &"x".repeat(2 * 1024 * 1024));
    assert!(big.len() > 2 * 1024 * 1024);
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", Vec::new(), "the file is empty"),
        ("zeros.png", vec![0; 4096], "only zero bytes"),
        (
            "cut.png",
            truncated(&png(256, 256, 2)),
            "the PNG is truncated",
        ),
        // A JPEG named .png is taken as a JPEG: this one is only a header.
        ("photo.png", jpeg_bytes(), "the JPEG cannot be decoded"),
        (
            "notes.png",
            b"remember the milk\n".to_vec(),
            "a text file, not a PNG",
        ),
        (
            "bomb.png",
            with_declared_size(100_000, 100_000),
            "100000 x 100000 pixels",
        ),
        (
            "just-over.png",
            with_declared_size(8192, 8193),
            "the image is 8192 x 8193 pixels, above the limit of 8192 x 8192",
        ),
        (
            "big.png",
            big,
            "above the limit of 1 MB (max_file_mb in the config)",
        ),
    ];
    let good = png(128, 128, 1);

    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    for (name, bytes, _) in &broken {
        setup.drop_file(name, bytes);
    }
    setup.drop_file("good.png", &good);

    let mut expected = set(&["good.png", "originals/good.png"]);
    for (name, _, _) in &broken {
        expected.insert(format!("failed/{name}"));
        expected.insert(format!("failed/{name}.error.txt"));
    }
    wait_for_outbox(
        &setup,
        &daemon,
        &expected,
        "every broken file failed and the good one is done",
    );
    wait_until("a jobs.jsonl line for each", || {
        setup.job_lines().len() == broken.len() + 1
    });
    // The log line comes a moment after the jobs.jsonl line (the file is in place first).
    wait_until("a log line for each", || {
        let log = setup.log_text();
        broken
            .iter()
            .all(|(name, _, _)| log.contains(&format!("failed {name} because")))
    });

    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 1, "only the good PNG was sent");
    assert_eq!(requests[0].init_image().unwrap(), good);
    let log = setup.log_text();
    let lines = setup.job_lines();
    for (name, bytes, reason) in &broken {
        let text = error_text(&setup, name);
        assert!(text.contains(reason), "{name}: {text}");
        assert!(
            text.contains(&format!("could not process {name}")),
            "{text}"
        );
        assert_eq!(&setup.read_out(&format!("failed/{name}")), bytes, "{name}");
        assert!(
            log.contains(&format!("failed {name} because")),
            "a log line for {name}:\n{log}"
        );
        let line = lines.iter().find(|l| l["input"] == *name).expect(name);
        assert_eq!(line["outcome"], "failed");
        assert!(line["error"].as_str().unwrap().contains(reason), "{line}");
        assert_eq!(line["attempts"], 0, "never sent: {line}");
        let kind = if *name == "big.png" {
            "too_large"
        } else {
            "not_a_picture"
        };
        assert_eq!(line["error_kind"], kind, "{line}");
    }
    assert_eq!(setup.inbox_files(), BTreeSet::new());
    setup.wait_for_no_leftovers();
    assert!(
        !daemon.output().contains("unencrypted"),
        "no plain-HTTP warning for a server on this machine"
    );
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_png_colour_type_is_sent_untouched_or_converted_to_8_bit() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    // (kind, a size that is not a multiple of 64, the size drawdrop sends for it). Each odd
    // size maps to its own size sent, which tells the requests apart.
    let kinds = [
        (ColorKind::Rgb8, (200, 150), (192, 128)),
        (ColorKind::Rgba8, (300, 150), (320, 128)),
        (ColorKind::Gray8, (150, 300), (128, 320)),
        (ColorKind::Gray16, (400, 150), (384, 128)),
        (ColorKind::Rgb16, (150, 400), (128, 384)),
        (ColorKind::Palette, (250, 250), (256, 256)),
    ];
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    let mut expected = BTreeSet::new();
    let mut exact = Vec::new();
    for (n, (kind, odd, _)) in kinds.iter().enumerate() {
        let square = png_with(*kind, 128, 128, n as u32);
        let other = png_with(*kind, odd.0, odd.1, n as u32 + 10);
        for (name, bytes) in [
            (format!("exact-{kind:?}.png"), &square),
            (format!("odd-{kind:?}.png"), &other),
        ] {
            setup.drop_file(&name, bytes);
            expected.insert(name.clone());
            expected.insert(format!("originals/{name}"));
        }
        exact.push(square);
    }
    wait_for_outbox(
        &setup,
        &daemon,
        &expected,
        "a result for each colour type and size",
    );

    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 2 * kinds.len());
    for (n, (kind, _, sent_size)) in kinds.iter().enumerate() {
        let untouched = requests
            .iter()
            .filter(|r| r.init_image().as_ref() == Some(&exact[n]))
            .count();
        assert_eq!(untouched, 1, "{kind:?} at 128 x 128 is sent byte for byte");
        let converted = requests
            .iter()
            .find(|r| {
                let json = r.json();
                (json["width"].as_u64(), json["height"].as_u64())
                    == (Some(sent_size.0 as u64), Some(sent_size.1 as u64))
            })
            .unwrap_or_else(|| panic!("a request for odd-{kind:?}.png"));
        let init = converted.init_image().unwrap();
        assert_eq!(size_of(&init), *sent_size, "{kind:?}");
        assert_eq!(init[24], 8, "{kind:?} is converted to 8 bits per sample");
        let colour_type = if *kind == ColorKind::Rgba8 { 6 } else { 2 };
        assert_eq!(
            init[25], colour_type,
            "{kind:?}: RGB, or RGBA to keep alpha"
        );
        assert_eq!(
            size_of(&setup.read_out(&format!("odd-{kind:?}.png"))),
            *sent_size
        );
        assert_eq!(
            setup.read_out(&format!("originals/odd-{kind:?}.png")),
            png_with(*kind, kinds[n].1.0, kinds[n].1.1, n as u32 + 10),
            "the original is archived untouched"
        );
    }
    wait_until("a jobs.jsonl line each", || {
        setup.job_lines().len() == 2 * kinds.len()
    });
    for line in setup.job_lines() {
        assert_eq!(line["outcome"], "done", "{line}");
        let odd = line["input"].as_str().unwrap().starts_with("odd-");
        assert_eq!(line["resized"], odd, "{line}");
    }
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_and_deep_folders_keep_their_names_and_nothing_escapes_the_outbox() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let deep: String = (0..30)
        .map(|level| format!("level-{level:02}-a-rather-long-folder-name/"))
        .collect::<String>()
        + "deep.png";
    let processed = [
        "my cat.png",
        "café ☕.png",
        "-rf.png",
        "--help.png",
        "a\nb.png",
        "tab\there.png",
        "a..png",
        "x\\..\\..\\evil.png",
        "a../cat.png",
        "~/cat.png",
        "-/--.png",
        deep.as_str(),
    ];
    // Hidden names are left alone wherever they are.
    let hidden = ["..png", ".../cat.png", "sub/..png"];
    // Folders with the name of an outbox folder cannot be mirrored there: they fail.
    let reserved = [
        "originals/cat.png",
        "logs/cat.png",
        "failed/cat.png",
        "gallery/cat.png",
    ];

    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    let beside = files_beside(&setup);
    let mut pictures = Vec::new();
    for (n, name) in processed.iter().chain(&hidden).chain(&reserved).enumerate() {
        let picture = png(128, 128, 100 + n as u32);
        setup.drop_file(name, &picture);
        pictures.push((name.to_string(), picture));
    }

    // (`files_under` shows a backslash in a name as `/`: the name is checked below as well.)
    let mut expected = BTreeSet::new();
    for name in processed {
        expected.insert(name.replace('\\', "/"));
        expected.insert(format!("originals/{name}").replace('\\', "/"));
    }
    for name in reserved {
        expected.insert(format!("failed/{name}"));
        expected.insert(format!("failed/{name}.error.txt"));
    }
    wait_for_outbox(&setup, &daemon, &expected, "every odd name processed");
    wait_until("a jobs.jsonl line each", || {
        setup.job_lines().len() == processed.len() + reserved.len()
    });

    let evil = setup.outbox.join("x\\..\\..\\evil.png");
    assert!(evil.is_file(), "a backslash is just a letter in a name");
    assert_eq!(evil.parent(), Some(setup.outbox.as_path()));
    for (name, picture) in &pictures {
        if processed.contains(&name.as_str()) {
            assert_eq!(&setup.read_out(&format!("originals/{name}")), picture);
        } else if reserved.contains(&name.as_str()) {
            let text = error_text(&setup, name);
            assert!(
                text.contains("has the name of an outbox folder"),
                "{name}: {text}"
            );
        }
    }
    assert_eq!(
        setup.inbox_files(),
        hidden.iter().map(|h| h.to_string()).collect(),
        "hidden names are left in the inbox"
    );
    assert_eq!(
        server.img2img_requests().len(),
        processed.len(),
        "the hidden and the refused were never sent"
    );
    assert_eq!(
        files_beside(&setup),
        beside,
        "drawdrop wrote nothing outside its inbox and outbox"
    );
    setup.wait_for_no_leftovers();

    let log = setup.log_text();
    assert!(
        log.contains("done a\\nb.png in"),
        "the newline is escaped:\n{log}"
    );
    assert!(log.contains("done tab\\there.png in"), "{log}");
    assert!(log.contains("done café ☕.png in"), "{log}");
    assert!(log.contains("done --help.png in"), "{log}");
    let lines = setup.job_lines();
    assert!(lines.iter().any(|l| l["input"] == "a\nb.png"));
    assert!(lines.iter().any(|l| l["input"] == deep.as_str()));
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbolic_links_in_the_inbox_are_left_alone_and_reported() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // A link made while drawdrop runs may wait for the next rescan.
    let setup = Setup::new(&server.url(), "drawthings").quick_rescan();
    let outside = setup.dir.path().join("Outside");
    fs::create_dir_all(outside.join("pictures")).unwrap();
    let secret = png(128, 128, 1);
    fs::write(outside.join("secret.png"), &secret).unwrap();
    fs::write(outside.join("pictures/inside.png"), &secret).unwrap();
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, setup.inbox.join(name)).unwrap();
    };
    fs::create_dir_all(setup.inbox.join("sub")).unwrap();
    link(&outside.join("secret.png"), "link.png");
    link(&outside.join("pictures"), "linked folder");
    link(&outside.join("nothing.png"), "dangling.png");
    link(Path::new("loop.png"), "loop.png");
    link(&outside.join("secret.png"), "sub/nested link.png");
    let outside_before = files_under(&outside);

    let daemon = setup.start_daemon();
    setup.drop_file("good.png", &png(128, 128, 2));
    wait_until("the good file is done", || {
        setup.outbox.join("good.png").exists()
    });
    for name in [
        "link.png",
        "linked folder",
        "dangling.png",
        "loop.png",
        "sub/nested link.png",
    ] {
        daemon.wait_for_output(&format!("left alone: {name} is a symbolic link"));
    }
    // A link made while drawdrop runs is reported too (at the latest by the periodic rescan).
    link(&outside.join("secret.png"), "late link.png");
    daemon.wait_for_output("left alone: late link.png is a symbolic link");

    assert_eq!(server.img2img_requests().len(), 1, "only good.png was sent");
    for name in [
        "link.png",
        "linked folder",
        "dangling.png",
        "loop.png",
        "sub/nested link.png",
        "late link.png",
    ] {
        let meta = fs::symlink_metadata(setup.inbox.join(name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name} stays in the inbox");
    }
    assert_eq!(files_under(&outside), outside_before);
    assert_eq!(fs::read(outside.join("secret.png")).unwrap(), secret);
    assert_eq!(
        setup.outbox_files(),
        set(&["good.png", "originals/good.png"])
    );
    let output = daemon.output();
    assert_eq!(
        output.matches("left alone: link.png").count(),
        1,
        "each link is reported once:\n{output}"
    );
    assert_clean_logs(&setup, &daemon);
}

/// Blocks the outbox with `block`, drops two files, and checks that the first is sent once
/// and its outcome waits (claimed, never failed), the second waits in the inbox, and drawdrop
/// does not spin; then `unblock`s and checks that both complete exactly once.
fn outbox_trouble_keeps_inputs_safe(
    setup: &Setup,
    daemon: &Daemon,
    server: &FakeServer,
    block: impl FnOnce(),
    unblock: impl FnOnce(),
) {
    let sent_before = server.img2img_requests().len();
    let jobs_before = setup.job_lines().len();
    let outbox_before = visible_outbox(setup);
    let said = |daemon: &Daemon| {
        daemon
            .output()
            .matches("cannot write to the outbox")
            .count()
    };
    let said_before = said(daemon);
    block();

    let cat = png(192, 128, 21);
    setup.drop_file("cat.png", &cat);
    wait_until("drawdrop says it cannot write to the outbox", || {
        said(daemon) > said_before
    });
    assert_eq!(
        server.img2img_requests().len(),
        sent_before + 1,
        "cat.png was sent"
    );
    let claimed: Vec<_> = files_under(&setup.inbox.join(".drawdrop/jobs"))
        .into_iter()
        .filter(|f| f.ends_with("/in/cat.png"))
        .collect();
    assert_eq!(claimed.len(), 1, "cat.png is kept claimed: {claimed:?}");
    assert_eq!(
        fs::read(setup.inbox.join(".drawdrop/jobs").join(&claimed[0])).unwrap(),
        cat
    );

    let dog = png(128, 192, 22);
    setup.drop_file("dog.png", &dog);
    assert_not_spinning(daemon, "the outbox cannot be written");
    assert_eq!(
        setup
            .inbox_files()
            .into_iter()
            .filter(|f| !f.starts_with("locked/"))
            .collect::<BTreeSet<_>>(),
        set(&["dog.png"]),
        "a new file waits in the inbox while the outbox cannot be written"
    );
    assert_eq!(server.img2img_requests().len(), sent_before + 1);
    assert_eq!(
        visible_outbox(setup),
        outbox_before,
        "nothing failed, nothing half-written"
    );

    unblock();
    let mut expected = outbox_before.clone();
    expected.extend(set(&[
        "cat.png",
        "originals/cat.png",
        "dog.png",
        "originals/dog.png",
    ]));
    wait_for_outbox(
        setup,
        daemon,
        &expected,
        "both complete once the outbox can be written",
    );
    wait_until("their jobs.jsonl lines", || {
        setup.job_lines().len() == jobs_before + 2
    });
    assert_eq!(setup.read_out("originals/cat.png"), cat);
    assert_eq!(setup.read_out("originals/dog.png"), dog);
    assert_eq!(
        server.img2img_requests().len(),
        sent_before + 2,
        "cat.png was not sent again: its answer was kept"
    );
    assert!(!setup.inbox.join("cat.png").exists() && !setup.inbox.join("dog.png").exists());
    setup.wait_for_no_leftovers();
    assert!(
        daemon.output().contains("the outbox can be written again"),
        "{}",
        daemon.output()
    );
}

/// The outbox scenario with the outbox and every folder in it made read-only (`chmod 555`).
fn read_only_outbox(setup: &Setup, daemon: &Daemon, server: &FakeServer) {
    let modes = std::cell::RefCell::new(Vec::new());
    outbox_trouble_keeps_inputs_safe(
        setup,
        daemon,
        server,
        || *modes.borrow_mut() = chmod_folders(&setup.outbox, 0o555),
        || restore_modes(&modes.borrow()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_fails_and_a_read_only_outbox_keeps_the_input_until_writable() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings").quick_rescan();
    let daemon = start_daemon_with(&setup, |command| unprivileged(&setup, command));
    daemon.wait_for_output("watching");

    // A file nobody may read, moved in whole (as a person would drop it).
    let secret = png(128, 128, 1);
    let outside = setup.dir.path().join("secret.png");
    fs::write(&outside, &secret).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o000)).unwrap();
    fs::rename(&outside, setup.inbox.join("secret.png")).unwrap();
    // And a folder that cannot be listed (write and search only: moving a folder to another
    // parent needs write permission on it).
    let folder = setup.dir.path().join("locked");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("hidden away.png"), &secret).unwrap();
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o300)).unwrap();
    fs::rename(&folder, setup.inbox.join("locked")).unwrap();

    wait_until("the unreadable file failed", || {
        setup.outbox.join("failed/secret.png.error.txt").exists()
    });
    let text = error_text(&setup, "secret.png");
    assert!(
        text.contains("cannot read the file: Permission denied"),
        "{text}"
    );
    let failed = setup.outbox.join("failed/secret.png");
    fs::set_permissions(&failed, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(fs::read(&failed).unwrap(), secret, "moved whole to failed/");
    daemon.wait_for_output("failed secret.png because cannot read the file: Permission denied");
    daemon.wait_for_output("cannot read the inbox folder locked: Permission denied");
    assert!(server.img2img_requests().is_empty(), "nothing was sent");
    assert!(
        setup.inbox.join("locked").is_dir(),
        "the folder is left alone"
    );

    read_only_outbox(&setup, &daemon, &server);
    assert_eq!(
        setup.outbox_files(),
        set(&[
            "failed/secret.png",
            "failed/secret.png.error.txt",
            "cat.png",
            "originals/cat.png",
            "dog.png",
            "originals/dog.png",
        ])
    );
    fs::set_permissions(
        setup.inbox.join("locked"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_disk_keeps_the_input_until_space_returns() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let mut setup = Setup::new(&server.url(), "drawthings");
    let disk = setup.dir.path().join("small-disk");
    let mount = match TmpfsMount::new(&disk, "2m") {
        Ok(mount) => mount,
        Err(error) => {
            // Straight to stderr, past the test harness's capture: this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "NOT TESTED: a full outbox disk: cannot mount a 2 MB tmpfs on {} ({error}); \
                 this needs root with CAP_SYS_ADMIN. Testing a read-only outbox instead.",
                disk.display()
            );
            let daemon = start_daemon_with(&setup, |command| unprivileged(&setup, command));
            daemon.wait_for_output("watching");
            read_only_outbox(&setup, &daemon, &server);
            return;
        }
    };
    setup.outbox = disk.join("Outbox");
    setup.write_config(&server.url(), "drawthings", 300, "", "");
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    assert_ne!(device_of(&setup.outbox), device_of(&setup.inbox));

    let filler = disk.join("filler");
    outbox_trouble_keeps_inputs_safe(
        &setup,
        &daemon,
        &server,
        || {
            let written = fill_up(&filler);
            assert!(written > 0, "the small disk had room to fill");
        },
        || fs::remove_file(&filler).unwrap(),
    );
    assert!(
        daemon.output().contains("No space left on device"),
        "the reason is given:\n{}",
        daemon.output()
    );
    drop(daemon);
    drop(mount);
}

/// Sets up an inbox and an outbox on different file systems: `/dev/shm` (a tmpfs) and the
/// temp dir's disk. Returns the setup and the `/dev/shm` folder that must outlive it.
fn across_devices(url: &str, inbox_in_shm: bool) -> (Setup, tempfile::TempDir) {
    let shm = tempfile::tempdir_in("/dev/shm").expect("a folder in /dev/shm");
    let mut setup = Setup::new(url, "drawthings");
    if inbox_in_shm {
        setup.inbox = shm.path().join("Inbox");
    } else {
        setup.outbox = shm.path().join("Outbox");
    }
    setup.write_config(url, "drawthings", 300, "", "");
    fs::create_dir_all(&setup.inbox).unwrap();
    fs::create_dir_all(&setup.outbox).unwrap();
    assert_ne!(
        device_of(&setup.inbox),
        device_of(&setup.outbox),
        "/dev/shm and the temp dir are different file systems"
    );
    (setup, shm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_and_outbox_on_different_file_systems_lose_nothing() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    for inbox_in_shm in [true, false] {
        let (setup, _shm) = across_devices(&server.url(), inbox_in_shm);
        let sent_before = server.img2img_requests().len();
        let daemon = setup.start_daemon();
        daemon.wait_for_output("watching");
        let pictures = [
            ("cat.png", png(128, 128, 1)),
            ("style/dog.png", png(200, 150, 2)),
            ("a/b/c/bird.png", png(256, 256, 3)),
        ];
        let mut expected = BTreeSet::new();
        for (name, picture) in &pictures {
            drop_beside_inbox(&setup, name, picture);
            expected.insert(name.to_string());
            expected.insert(format!("originals/{name}"));
        }
        wait_for_outbox(&setup, &daemon, &expected, "results and originals arrive");
        for (name, picture) in &pictures {
            assert_eq!(
                &setup.read_out(&format!("originals/{name}")),
                picture,
                "{name} archived byte for byte (inbox in /dev/shm: {inbox_in_shm})"
            );
        }
        assert_eq!(server.img2img_requests().len(), sent_before + 3);
        wait_until("three jobs.jsonl lines", || setup.job_lines().len() == 3);
        assert_eq!(setup.inbox_files(), BTreeSet::new());
        setup.wait_for_no_leftovers();
        assert_clean_logs(&setup, &daemon);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_finishing_across_file_systems_is_completed_exactly_once() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    for point in ["committed", "input-moved", "placed-one"] {
        for inbox_in_shm in [true, false] {
            let case = format!("crash at {point}, inbox in /dev/shm: {inbox_in_shm}");
            let (setup, _shm) = across_devices(&server.url(), inbox_in_shm);
            let sent_before = server.img2img_requests().len();
            let mut crashing = start_daemon_with(&setup, |command| {
                command.env("DRAWDROP_CRASH_AT", point);
            });
            let picture = png(192, 128, 7);
            drop_beside_inbox(&setup, "w/cat.png", &picture);
            wait_until(&format!("drawdrop aborts ({case})"), || {
                crashing.try_exit().is_some()
            });
            assert!(
                crashing.output().contains("crash point"),
                "{case}: {}",
                crashing.output()
            );

            let daemon = setup.start_daemon();
            wait_for_outbox(
                &setup,
                &daemon,
                &set(&["w/cat.png", "originals/w/cat.png"]),
                &format!("one result and one original ({case})"),
            );
            wait_until(&format!("one jobs.jsonl line ({case})"), || {
                setup.job_lines().len() == 1
            });
            assert_eq!(setup.read_out("originals/w/cat.png"), picture, "{case}");
            assert_eq!(
                server.img2img_requests().len(),
                sent_before + 1,
                "{case}: a decided job is never sent again"
            );
            assert_eq!(setup.inbox_files(), BTreeSet::new(), "{case}");
            setup.wait_for_no_leftovers();
            drop(daemon);
        }
    }
}

/// What drawdrop says when it finds its inbox gone, and when it finds another folder there.
const RECREATED: &str = "was gone; created it again";
const REPLACED: &str = "was replaced by another folder";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_deleted_or_renamed_while_running_is_created_again_without_spinning() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // The inbox is looked at again at the next rescan.
    let setup = Setup::new(&server.url(), "drawthings").quick_rescan();
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");

    // Deleted (with drawdrop's own state folder) the moment the first result appears, while
    // drawdrop is still tidying that job up.
    setup.drop_file("first.png", &png(128, 128, 1));
    let started = std::time::Instant::now();
    while !setup.outbox.join("first.png").exists() {
        assert!(
            started.elapsed() < crate::common::PATIENCE,
            "no first result"
        );
        std::hint::spin_loop();
    }
    fs::remove_dir_all(&setup.inbox).unwrap();
    wait_for_said(&daemon, RECREATED, 1);
    assert!(setup.inbox.is_dir(), "the inbox was created again");
    setup.drop_file("second.png", &png(128, 128, 2));
    wait_until("a file dropped into the new inbox is done", || {
        setup.outbox.join("second.png").exists()
    });
    assert_not_spinning(&daemon, "its inbox was deleted and created again");

    // Renamed away.
    let moved = setup.dir.path().join("Inbox moved away");
    fs::rename(&setup.inbox, &moved).unwrap();
    wait_for_said(&daemon, RECREATED, 2);
    setup.drop_file("third.png", &png(128, 128, 3));
    wait_until("a file dropped into the new inbox is done", || {
        setup.outbox.join("third.png").exists()
    });
    fs::write(moved.join("left behind.png"), png(128, 128, 4)).unwrap();
    assert_not_spinning(&daemon, "its inbox was renamed away");

    let expected: BTreeSet<String> = ["first", "second", "third"]
        .iter()
        .flat_map(|n| [format!("{n}.png"), format!("originals/{n}.png")])
        .collect();
    wait_for_outbox(&setup, &daemon, &expected, "each picture done once");
    wait_until("three jobs.jsonl lines", || setup.job_lines().len() == 3);
    assert!(
        moved.join("left behind.png").exists(),
        "the renamed folder is no longer watched"
    );
    assert_eq!(server.img2img_requests().len(), 3);
    assert!(
        !daemon.output().contains("cannot write to the outbox"),
        "the outbox was fine all along:\n{}",
        daemon.output()
    );
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_replaced_by_another_folder_is_watched_again() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // The inbox is looked at again at the next rescan.
    let setup = Setup::new(&server.url(), "drawthings").quick_rescan();
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    // Deleted and at once created again by someone else (a person, a sync tool).
    fs::remove_dir_all(&setup.inbox).unwrap();
    fs::create_dir(&setup.inbox).unwrap();
    wait_for_said(&daemon, REPLACED, 1);
    assert_not_spinning(&daemon, "its inbox was replaced");
    setup.drop_file("cat.png", &png(128, 128, 1));
    wait_for_outbox(
        &setup,
        &daemon,
        &set(&["cat.png", "originals/cat.png"]),
        "a file dropped into the new folder is done",
    );
    assert_eq!(server.img2img_requests().len(), 1);
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_deleted_while_a_picture_is_in_flight_is_noticed_and_watched_again() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.set_delay(Duration::from_secs(2));
    // The inbox is looked at again at the next rescan.
    let setup = Setup::new(&server.url(), "drawthings").quick_rescan();
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    setup.drop_file("cat.png", &png(128, 128, 1));
    server.wait_in_flight(1, crate::common::PATIENCE).await;
    // The person deletes the inbox, and with it the picture drawdrop holds.
    fs::remove_dir_all(&setup.inbox).unwrap();
    wait_for_outbox(
        &setup,
        &daemon,
        &set(&["cat.png"]),
        "the answer is kept as the result",
    );
    // Whoever created the folder again, drawdrop must watch the new one.
    let said = |daemon: &Daemon| {
        let output = daemon.output();
        output.contains(RECREATED) || output.contains(REPLACED)
    };
    wait_until("drawdrop notices its inbox is another folder now", || {
        said(&daemon)
    });
    assert_not_spinning(&daemon, "its inbox was deleted under a job");
    server.set_delay(Duration::ZERO);
    setup.drop_file("dog.png", &png(128, 128, 2));
    wait_for_outbox(
        &setup,
        &daemon,
        &set(&["cat.png", "dog.png", "originals/dog.png"]),
        "a file dropped into the new inbox is done",
    );
    assert_eq!(server.img2img_requests().len(), 2);
    setup.wait_for_no_leftovers();
    assert_clean_logs(&setup, &daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_server_on_another_machine_is_warned_about_at_start() {
    // TEST-NET-1: never answers.
    let setup = Setup::new("http://192.0.2.1:7860", "drawthings");
    let daemon = setup.start_daemon();
    daemon.wait_for_output("travel unencrypted");
    wait_until("the warning is in the log file too", || {
        setup.log_text().contains("travel unencrypted")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_and_headers_never_reach_a_log_or_an_error_file() {
    use base64::Engine as _;
    const PASSWORD: &str = "hunter2-Sekr3t";
    const WRONG: &str = "wrong-Pa55word";
    let server = FakeServer::start(Flavor::A1111 {
        auth: Some(("me".into(), PASSWORD.into())),
    })
    .await;
    let setup = Setup::with(
        &server.url(),
        "a1111",
        300,
        "",
        "username = \"me\"\npassword_env = \"DRAWDROP_TEST_PASSWORD\"\nmax_attempts = 2",
    )
    // The 500s only need to be retried, not after the real second.
    .quick_backoff();
    // Everything logged, from every crate.
    let with_password = |password: &'static str| {
        move |command: &mut std::process::Command| {
            command
                .env("DRAWDROP_TEST_PASSWORD", password)
                .env("DRAWDROP_LOG", "trace");
        }
    };

    // 401 on the request (waited for), then 500 (retried), then done.
    server.push_fault(Fault::Status {
        code: 401,
        detail: "Not authenticated".into(),
        retry_after: None,
    });
    server.push_fault(Fault::Status {
        code: 500,
        detail: "CUDA out of memory".into(),
        retry_after: None,
    });
    let mut daemon = start_daemon_with(&setup, with_password(PASSWORD));
    setup.drop_file("ok.png", &png(128, 128, 1));
    wait_until("ok.png done after a 401 and a 500", || {
        setup.outbox.join("ok.png").exists()
    });
    // 500 twice: failed with the server's words.
    for _ in 0..2 {
        server.push_fault(Fault::Status {
            code: 500,
            detail: "CUDA out of memory".into(),
            retry_after: None,
        });
    }
    setup.drop_file("bad.png", &png(128, 128, 2));
    wait_until("bad.png failed", || {
        setup.outbox.join("failed/bad.png.error.txt").exists()
    });
    assert!(error_text(&setup, "bad.png").contains("CUDA out of memory"));
    let first_run = daemon.output();
    daemon.terminate(Duration::from_secs(20));

    // A wrong password: the server refuses every request; the file waits.
    let mut refused = start_daemon_with(&setup, with_password(WRONG));
    setup.drop_file("waits.png", &png(128, 128, 3));
    refused.wait_for_output("refuses drawdrop's credentials");
    assert_eq!(setup.inbox_files(), set(&["waits.png"]));
    let second_run = refused.output();
    refused.terminate(Duration::from_secs(20));

    // `drawdrop check` reports on the server without the password either.
    let check = setup
        .command()
        .env("DRAWDROP_TEST_PASSWORD", PASSWORD)
        .env("DRAWDROP_LOG", "trace")
        .arg("check")
        .output()
        .unwrap();
    // A password written into the URL is refused without being quoted back.
    let in_url = Setup::new(
        &server
            .url()
            .replace("http://", &format!("http://me:{PASSWORD}@")),
        "a1111",
    );
    let url_check = in_url.command().args(["run", "--once"]).output().unwrap();
    assert_eq!(url_check.status.code(), Some(2));

    let mut everything = vec![
        ("drawdrop.log", setup.log_text()),
        ("stderr of the first run", first_run),
        ("stderr of the second run", second_run),
        ("check", String::from_utf8_lossy(&check.stdout).into_owned()),
        (
            "check stderr",
            String::from_utf8_lossy(&check.stderr).into_owned(),
        ),
        (
            "run with the password in the URL",
            String::from_utf8_lossy(&url_check.stderr).into_owned(),
        ),
        (
            "jobs.jsonl",
            fs::read_to_string(setup.outbox.join("logs/jobs.jsonl")).unwrap(),
        ),
    ];
    for file in files_under(&setup.outbox) {
        if file.ends_with(".error.txt") {
            everything.push((
                "an .error.txt",
                fs::read_to_string(setup.outbox.join(&file)).unwrap(),
            ));
        }
    }
    let encode =
        |password: &str| base64::engine::general_purpose::STANDARD.encode(format!("me:{password}"));
    for (place, text) in &everything {
        for secret in [PASSWORD, WRONG, &encode(PASSWORD), &encode(WRONG)] {
            assert!(!text.contains(secret), "{place} holds a secret:\n{text}");
        }
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{place} mentions a header:\n{text}"
        );
        assert!(!text.contains("iVBOR"), "{place} holds image data");
    }
    assert!(
        server
            .img2img_requests()
            .iter()
            .all(|r| r.header("authorization").is_some()),
        "the credentials were sent"
    );
}
