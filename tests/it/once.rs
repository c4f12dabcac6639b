//! End to end through the real binary: `drawdrop run --once`, its exit codes and summary,
//! the A1111 dialect, junk in the inbox, and `drawdrop check`.

use crate::common::{Setup, set, stderr_of};
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::{jpeg_bytes, png, text_chunk, truncated};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_processes_the_inbox_and_exits_0() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.drop_file("a.png", &png(128, 128, 1));
    setup.drop_file("deep/er/b.png", &png(200, 128, 2));
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 done, 0 failed"), "{stdout}");
    assert_eq!(
        setup.outbox_files(),
        set(&[
            "a.png",
            "deep/er/b.png",
            "originals/a.png",
            "originals/deep/er/b.png"
        ])
    );
    assert_eq!(setup.inbox_files(), BTreeSet::new());
    // No prompt in the (empty) default profile: the settings line comes first, no blank line.
    let parameters = text_chunk(&setup.read_out("a.png"), "parameters").unwrap();
    assert!(parameters.starts_with("Seed: "), "{parameters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_launch_agent_stderr_gets_only_warnings_and_the_log_file_everything() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.drop_file("a.png", &png(128, 128, 1));
    setup.drop_file("bad.png", b"not a picture");
    let output = setup.run_once_with(&[("DRAWDROP_STDERR_LOG", "warn")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert!(
        stderr.contains("bad.png"),
        "the failure is a warning: {stderr}"
    );
    let log = setup.log_text();
    assert!(log.contains("INFO done a.png"), "{log}");
    assert!(log.contains("bad.png"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tells_the_servers_time_from_the_wait_and_sending_from_reading_ahead() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.set_delay(Duration::from_secs(2));
    let setup = Setup::new(&server.url(), "drawthings");
    setup.drop_file("a.png", &png(128, 128, 1));
    setup.drop_file("b.png", &png(128, 128, 2));
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let log = setup.log_text();
    let line = |start: &str| -> String {
        log.lines()
            .find(|line| line.contains(start))
            .unwrap_or_else(|| panic!("no {start:?} in\n{log}"))
            .to_owned()
    };
    // b.png was read ahead while a.png was at the server: it is "sent" only once a.png's
    // answer came, two seconds (the fake's generation time) after a.png was.
    let seconds = |line: &str| -> i64 {
        let time: jiff::civil::Time = line[11..19].parse().expect("a time");
        i64::from(time.hour()) * 3600 + i64::from(time.minute()) * 60 + i64::from(time.second())
    };
    let (sent_a, sent_b) = (line("sending a.png"), line("sending b.png"));
    assert!(seconds(&sent_b) - seconds(&sent_a) >= 2, "{log}");
    assert!(!log.contains("taken b.png"), "{log}");
    // b.png's line tells the server's 2 s apart from the ~2 s it waited for a.png.
    let done_b = line("done b.png in ");
    let figure = |after: &str| -> f64 {
        let rest = &done_b[done_b.find(after).expect("figure") + after.len()..];
        rest.split(' ').next().unwrap().parse().expect("seconds")
    };
    let at_server = figure("done b.png in ");
    assert!((1.9..3.5).contains(&at_server), "{done_b}");
    assert!(done_b.contains(" s at the server, after "), "{done_b}");
    let waited = figure(", after ");
    assert!(waited >= 1.5, "{done_b}");
    assert!(
        done_b.contains(" s waiting for its turn -> b.png"),
        "{done_b}"
    );
    // jobs.jsonl keeps its form: the server's time and the whole time.
    let lines = setup.job_lines();
    let b = lines.iter().find(|l| l["input"] == "b.png").unwrap();
    assert!(b["server_ms"].as_u64().unwrap() >= 1900);
    assert!(b["total_ms"].as_u64().unwrap() >= b["server_ms"].as_u64().unwrap() + 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_present_together_are_sent_in_natural_order() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    // Oldest first would be the reverse, byte order img_10 before img_2.
    let names = [
        "img_1.png",
        "img_2.png",
        "img_10.png",
        "more/img_9.png",
        "more/img_11.png",
    ];
    let now = std::time::SystemTime::now();
    for (index, name) in names.iter().enumerate() {
        let path = setup.drop_file(name, &png(128, 128, index as u32));
        let age = Duration::from_secs(100 * (names.len() - index) as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(now - age)
            .unwrap();
    }
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let sent: Vec<&str> = server
        .img2img_requests()
        .iter()
        .map(|request| {
            let image = request.init_image().unwrap();
            let index = (0..names.len())
                .find(|&i| png(128, 128, i as u32) == image)
                .expect("one of the pictures");
            names[index]
        })
        .collect();
    assert_eq!(sent, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_copied_in_goes_once_its_files_are_done_and_every_other_folder_stays() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("watercolor", "prompt = \"a watercolor\"\n");
    // As `cp -r batch30 Inbox/`: a folder with pictures, one of them in a subfolder.
    setup.drop_file("batch30/img_1.png", &png(128, 128, 1));
    setup.drop_file("batch30/img_2.png", &png(128, 128, 2));
    setup.drop_file("batch30/deep/img_3.png", &png(128, 128, 3));
    setup.drop_file("broken/not-a-picture.png", b"text, not a PNG");
    setup.drop_file("watercolor/w.png", &png(128, 128, 4));
    setup.drop_file("notes/n.png", &png(128, 128, 5));
    std::fs::write(setup.inbox.join("notes/readme.txt"), b"keep me").unwrap();
    std::fs::create_dir_all(setup.inbox.join("made-by-hand")).unwrap();
    std::fs::create_dir_all(setup.inbox.join("batch30/empty-already")).unwrap();

    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(setup.outbox.join("batch30/deep/img_3.png").is_file());
    let folders: BTreeSet<String> = std::fs::read_dir(&setup.inbox)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert_eq!(
        folders,
        set(&["batch30", "default", "made-by-hand", "notes", "watercolor"]),
        "broken/ went (its file failed: drawdrop took it too)"
    );
    // batch30 keeps only the folder that was empty before drawdrop took anything.
    assert_eq!(
        std::fs::read_dir(setup.inbox.join("batch30"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        ["empty-already"]
    );
    assert_eq!(setup.inbox_files(), set(&["notes/readme.txt"]));
    assert!(
        setup.log_text().contains("removed the folder batch30/deep"),
        "{}",
        setup.log_text()
    );

    // Without that folder, the copied-in one goes as a whole.
    std::fs::remove_dir(setup.inbox.join("batch30/empty-already")).unwrap();
    std::fs::remove_dir(setup.inbox.join("batch30")).unwrap();
    setup.drop_file("batch31/img_1.png", &png(128, 128, 6));
    setup.drop_file("batch31/deep/img_2.png", &png(128, 128, 7));
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(!setup.inbox.join("batch31").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_on_an_empty_inbox_exits_0_without_asking_the_server() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 done, 0 failed"));
    // Not even `GET /`: no worker asks whether the server answers before a file needs it
    // (they used to, racing the start-up scan, so a loaded machine saw a probe).
    let asked: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(asked.is_empty(), "asked: {asked:?}\n{}", stderr_of(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_is_left_alone_and_broken_pngs_fail_with_a_reason() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let junk = [
        "notes.txt",
        "photo.png.crdownload",
        "movie.png.part",
        "clip.png.download",
        "x.png.tmp",
        ".hidden.png",
        "._cat.png",
        ".cat.png.icloud",
        "picture.gif",
        "clip.mov",
    ];
    for name in junk {
        setup.drop_file(name, b"not for drawdrop");
    }
    let good = png(128, 128, 1);
    setup.drop_file("good.png", &good);
    setup.drop_file("text.png", b"hello, I am text");
    setup.drop_file("empty.png", b"");
    setup.drop_file("photo.png", &jpeg_bytes());
    setup.drop_file("cut.png", &truncated(&png(256, 256, 2)));

    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 done, 4 failed"));
    assert_eq!(setup.inbox_files(), set(&junk), "junk stays where it was");
    assert_eq!(
        server.img2img_requests().len(),
        1,
        "only the good PNG was sent"
    );
    for (name, reason) in [
        ("text.png", "text"),
        ("empty.png", "empty"),
        ("photo.png", "JPEG"),
        ("cut.png", "truncated"),
    ] {
        let text = String::from_utf8(setup.read_out(&format!("failed/{name}.error.txt"))).unwrap();
        assert!(text.contains(reason), "{name}: {text}");
        assert!(setup.outbox.join("failed").join(name).exists());
    }
    assert!(setup.outbox.join("good.png").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111_gets_translated_keys_and_basic_auth_without_the_password_leaking() {
    let server = FakeServer::start(Flavor::A1111 {
        auth: Some(("me".into(), "hunter2-secret".into())),
    })
    .await;
    let setup = Setup::with(
        &server.url(),
        "a1111",
        300,
        "",
        "username = \"me\"\npassword_env = \"DRAWDROP_TEST_PASSWORD\"",
    );
    setup.profile(
        "default",
        r#"
prompt = "an oil painting"
strength = 0.4
guidance_scale = 6.5
sampler = "Euler a"
model = "sdxl.safetensors"
batch_count = 2
steps = 12
seed = 77
[[loras]]
file = "detail.safetensors"
weight = 0.8
"#,
    );
    setup.drop_file("cat.png", &png(512, 512, 1));
    let output = setup
        .command()
        .env("DRAWDROP_TEST_PASSWORD", "hunter2-secret")
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));

    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 1);
    let mut body = requests[0].json();
    body.as_object_mut().unwrap().remove("init_images");
    assert_eq!(
        body,
        json!({
            "prompt": "an oil painting <lora:detail:0.8>", "denoising_strength": 0.4,
            "cfg_scale": 6.5, "sampler_name": "Euler a", "n_iter": 2, "steps": 12, "seed": 77,
            "override_settings": {"sd_model_checkpoint": "sdxl.safetensors"},
            "width": 512, "height": 512
        })
    );
    assert!(requests[0].header("authorization").is_some());
    assert_eq!(
        setup.outbox_files(),
        set(&["cat-1.png", "cat-2.png", "originals/cat.png"])
    );
    let everything = format!(
        "{}{}{}",
        setup.log_text(),
        stderr_of(&output),
        std::fs::read_to_string(setup.outbox.join("logs/jobs.jsonl")).unwrap()
    );
    assert!(
        !everything.contains("hunter2"),
        "the password never reaches a log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_gives_up_on_a_closed_server_with_2_and_leaves_the_files_untouched() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.stop().await;
    let setup = Setup::with(&server.url(), "drawthings", 300, "", "timeout_s = 2");
    let picture = png(128, 128, 1);
    setup.drop_file("cat.png", &picture);
    let started = Instant::now();
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("did not answer"), "{stderr}");
    // It said what it waited for, and until when.
    let waiting = format!(
        "waiting for Draw Things at {}/ (not answering: ",
        server.url()
    );
    assert!(stderr.contains(&waiting), "{stderr}");
    assert!(giving_up_at(&stderr).is_some(), "{stderr}");
    assert_eq!(setup.inbox_files(), set(&["cat.png"]));
    assert_eq!(std::fs::read(setup.inbox.join("cat.png")).unwrap(), picture);
    assert!(setup.outbox_files().is_empty());
}

/// The time in "— giving up at 14:05:10", as seconds since midnight.
fn giving_up_at(stderr: &str) -> Option<i64> {
    let (_, rest) = stderr.split_once("— giving up at ")?;
    let time: jiff::civil::Time = rest.get(..8)?.parse().ok()?;
    Some(i64::from(time.hour()) * 3600 + i64::from(time.minute()) * 60 + i64::from(time.second()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_gives_up_within_a_minute_on_a_server_that_never_answered() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.stop().await;
    let setup = Setup::with(&server.url(), "drawthings", 300, "", "timeout_s = 600");
    let picture = png(128, 128, 1);
    setup.drop_file("cat.png", &picture);
    let before = jiff::ZonedDateTime::now().time();
    let started = Instant::now();
    // The minute, shortened to 6 s (`DRAWDROP_NEVER_ANSWERED_MS`; its real length is tested
    // on paused time in the product's unit tests): still far from timeout_s.
    let output = setup.run_once_with(&[("DRAWDROP_NEVER_ANSWERED_MS", "6000")]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(60),
        "took {took:?}, not timeout_s (600 s) but the never-answered limit"
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("not once since drawdrop started"),
        "{stderr}"
    );
    let announced = giving_up_at(&stderr).expect("the give-up time is announced");
    let start = i64::from(before.hour()) * 3600
        + i64::from(before.minute()) * 60
        + i64::from(before.second());
    let ahead = (announced - start).rem_euclid(86_400);
    assert!(
        (5..=20).contains(&ahead),
        "announced {ahead} s ahead: {stderr}"
    );
    assert_eq!(setup.inbox_files(), set(&["cat.png"]));
    assert_eq!(std::fs::read(setup.inbox.join("cat.png")).unwrap(), picture);
    assert!(setup.outbox_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_exits_2_naming_file_line_and_column() {
    let setup = Setup::new("http://127.0.0.1:9", "drawthings");
    std::fs::write(&setup.config, "inbox = \"in\"\nsettle_ms = \"soon\"\n").unwrap();
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(2));
    let expected = format!("{}:2:13:", setup.config.display());
    assert!(
        stderr_of(&output).contains(&expected),
        "{}",
        stderr_of(&output)
    );

    // A broken profile is something to fix, not a config that cannot be read.
    setup.profile("bad", "steps = 0\n");
    std::fs::write(&setup.config, "").unwrap();
    let output = setup.command().arg("check").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("bad.toml:1:9:"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_folders_and_the_server() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let output = setup.command().arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("answers: its current model is"), "{stdout}");
    assert!(stdout.contains("all is well"), "{stdout}");

    server.stop().await;
    let output = setup.command().arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("does not answer"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_piped_into_a_reader_that_has_gone_ends_without_a_panic() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    for command in ["status", "check"] {
        // As `drawdrop status | head -1` once head has exited: the pipe has no reader.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = setup
            .command()
            .arg(command)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(output.status.signal(), Some(13), "{command}: {stderr}");
        }
    }
}

/// `status` over a long `jobs.jsonl`: it reads the end and what was added since it last
/// looked, and its counts stay those of every job.
mod status_of_a_long_job_log {
    use crate::common::{Setup, stderr_of};
    use crate::fakes::server::{FakeServer, Flavor};
    use crate::pictures::{png, truncated};

    fn status(setup: &Setup) -> String {
        let output = setup.command().arg("status").output().expect("status");
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn entry(status: &str, what: &str) -> String {
        status
            .lines()
            .find(|line| line.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in:\n{status}"))
            .to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn megabytes_of_garbage_before_the_jobs_change_nothing_and_new_jobs_count() {
        let server = FakeServer::start(Flavor::DrawThings).await;
        let setup = Setup::new(&server.url(), "drawthings");
        setup.drop_file("cat.png", &png(64, 64, 1));
        setup.drop_file("broken.png", &truncated(&png(64, 64, 2)));
        let output = setup.run_once();
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));

        // Four megabytes that are no JSON lines (nor UTF-8) before the product's own lines.
        let log = setup.outbox.join("logs/jobs.jsonl");
        let lines = std::fs::read(&log).unwrap();
        let mut spoiled: Vec<u8> = (0..4 * 1024 * 1024_u32)
            .map(|n| if n % 5000 == 4999 { b'\n' } else { 0xfe })
            .collect();
        spoiled.push(b'\n');
        spoiled.extend_from_slice(&lines);
        std::fs::write(&log, &spoiled).unwrap();

        let first = status(&setup);
        assert_eq!(entry(&first, "done"), "done         1");
        assert_eq!(entry(&first, "failed"), "failed       1");
        assert!(
            entry(&first, "server").contains("answers; 1 done"),
            "{first}"
        );
        let last: Vec<&str> = first
            .lines()
            .skip_while(|line| *line != "last jobs:")
            .skip(1)
            .collect();
        assert_eq!(last.len(), 2, "{first}");
        assert!(
            last.iter()
                .any(|line| line.contains("done    cat.png -> cat.png"))
        );
        assert!(
            last.iter()
                .any(|line| line.contains("failed  broken.png because"))
        );
        assert!(setup.outbox.join("logs/.jobs-summary.json").is_file());
        assert_eq!(status(&setup), first, "a second look sees the same");

        setup.drop_file("dog.png", &png(64, 64, 3));
        let output = setup.run_once();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let after = status(&setup);
        assert_eq!(entry(&after, "done"), "done         2");
        assert_eq!(entry(&after, "failed"), "failed       1");
        assert!(
            entry(&after, "server").contains("answers; 2 done"),
            "{after}"
        );
        let newest = after.lines().last().unwrap_or_default();
        assert!(newest.contains("done    dog.png -> dog.png"), "{after}");
    }
}
