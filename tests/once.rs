//! End to end through the real binary: `drawdrop run --once`, its exit codes and summary,
//! the A1111 dialect, junk in the inbox, and `drawdrop check`.

mod common;

use common::fake_server::{FakeServer, Flavor};
use common::png::{jpeg_bytes, png, truncated};
use common::{Setup, set, stderr_of};
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
async fn once_on_an_empty_inbox_exits_0_without_asking_the_server() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 done, 0 failed"));
    assert!(server.requests().is_empty());
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
    assert!(
        stderr_of(&output).contains("did not answer"),
        "{}",
        stderr_of(&output)
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

    setup.profile("bad", "steps = 0\n");
    std::fs::write(&setup.config, "").unwrap();
    let output = setup.command().arg("check").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
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
