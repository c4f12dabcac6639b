//! End to end through the real binary: `drawdrop run` as a daemon against the fake
//! Draw Things and A1111 servers on 127.0.0.1:0.

use crate::common::{Setup, set, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use crate::pictures::{png, size_of, text_chunk};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

const WATERCOLOR: &str = r#"
prompt = "a watercolor painting"
negative_prompt = "blurry"
steps = 4
strength = 0.6
guidance_scale = 1.0
seed = 1234
sampler = "LCM"
model = "sd_xl_base_1.0_f16.ckpt"
[[loras]]
file = "dmd2_sdxl_4_step_lora_f16.ckpt"
weight = 1.0
[extra]
sharpness = 2
"#;

fn keys(request: &Value) -> BTreeSet<String> {
    request
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_dropped_at_the_root_and_into_a_profile_folder_come_out_done() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("watercolor", WATERCOLOR);
    let mut daemon = setup.start_daemon();
    wait_until("the profile folder exists", || {
        setup.inbox.join("watercolor").is_dir()
    });

    let square = png(1024, 1024, 1);
    let wide = png(1000, 750, 2);
    let small = png(300, 200, 3);
    setup.drop_file("square.png", &square);
    setup.drop_file("watercolor/wide.png", &wide);
    setup.drop_file("watercolor/sub/small.PNG", &small);

    let expected = set(&[
        "square.png",
        "watercolor/wide.png",
        "watercolor/sub/small.png",
        "originals/square.png",
        "originals/watercolor/wide.png",
        "originals/watercolor/sub/small.PNG",
    ]);
    wait_until("three results and three originals", || {
        setup.outbox_files() == expected
    });
    wait_until("three jobs.jsonl lines", || setup.job_lines().len() == 3);

    // Originals are archived byte for byte; results have the size that was sent.
    assert_eq!(setup.read_out("originals/square.png"), square);
    assert_eq!(setup.read_out("originals/watercolor/wide.png"), wide);
    assert_eq!(setup.read_out("originals/watercolor/sub/small.PNG"), small);
    assert_eq!(size_of(&setup.read_out("square.png")), (1024, 1024));
    assert_eq!(size_of(&setup.read_out("watercolor/wide.png")), (1024, 768));
    assert_eq!(
        size_of(&setup.read_out("watercolor/sub/small.png")),
        (320, 192)
    );
    for result in [
        "square.png",
        "watercolor/wide.png",
        "watercolor/sub/small.png",
    ] {
        assert!(
            text_chunk(&setup.read_out(result), "fake-server").is_some(),
            "{result} is the server's picture"
        );
    }

    // Each request carries exactly the profile's settings, in Draw Things' names.
    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        let json = request.json();
        let init = request.init_image().expect("one init image");
        let (width, height) = (
            json["width"].as_u64().unwrap(),
            json["height"].as_u64().unwrap(),
        );
        assert_eq!(size_of(&init), (width as u32, height as u32));
        assert_eq!(width % 64, 0);
        assert_eq!(height % 64, 0);
        if json.get("prompt").is_none() {
            // The built-in default profile sends only what must be sent.
            assert_eq!(
                keys(&json),
                set(&["height", "init_images", "seed", "width"])
            );
            assert_eq!(init, square, "an image of the right size is sent untouched");
        } else {
            assert_eq!(
                keys(&json),
                set(&[
                    "guidance_scale",
                    "height",
                    "init_images",
                    "loras",
                    "model",
                    "negative_prompt",
                    "prompt",
                    "sampler",
                    "seed",
                    "sharpness",
                    "steps",
                    "strength",
                    "width",
                ])
            );
            assert_eq!(json["seed"], 1234);
            assert_eq!(json["strength"], 0.6);
            assert_eq!(
                json["loras"],
                serde_json::json!([{"file": "dmd2_sdxl_4_step_lora_f16.ckpt", "weight": 1.0}])
            );
        }
    }

    let lines = setup.job_lines();
    for line in &lines {
        assert_eq!(line["outcome"], "done");
        assert_eq!(line["attempts"], 1);
        assert!(
            line["settings"].get("init_images").is_none(),
            "no image data in jobs.jsonl"
        );
    }
    let wide_line = lines
        .iter()
        .find(|l| l["input"] == "watercolor/wide.png")
        .expect("wide");
    assert_eq!(wide_line["profile"], "watercolor");
    assert_eq!(
        wide_line["outputs"],
        serde_json::json!(["watercolor/wide.png"])
    );
    assert_eq!(wide_line["original"], "originals/watercolor/wide.png");
    assert_eq!(wide_line["settings"]["width"], 1024);
    assert_eq!(wide_line["settings"]["height"], 768);

    let log = setup.log_text();
    assert!(log.contains("done square.png"), "{log}");
    assert!(!log.contains("iVBOR"), "no image data in the log");
    assert_eq!(setup.inbox_files(), BTreeSet::new());
    setup.wait_for_no_leftovers();

    let (status, took) = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_slowly_is_sent_once_complete() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::with(&server.url(), "drawthings", 1000, "", "");
    let _daemon = setup.start_daemon();
    wait_until("the inbox exists", || setup.inbox.join("default").is_dir());

    let picture = png(512, 512, 9);
    let path = setup.inbox.join("slow.png");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in picture.chunks(picture.len().div_ceil(20)) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    drop(file);

    wait_until("the result", || setup.outbox.join("slow.png").exists());
    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 1, "sent exactly once");
    assert_eq!(
        requests[0].init_image().unwrap(),
        picture,
        "sent complete and byte-identical"
    );
    assert_eq!(setup.read_out("originals/slow.png"), picture);
    assert!(
        setup
            .outbox_files()
            .iter()
            .all(|f| !f.starts_with("failed/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_server_is_waited_for_and_nothing_fails() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.stop().await;
    let setup = Setup::new(&server.url(), "drawthings");
    let daemon = setup.start_daemon();
    setup.drop_file("cat.png", &png(256, 256, 1));
    daemon.wait_for_output("is not answering");
    assert_eq!(
        setup.inbox_files(),
        set(&["cat.png"]),
        "the file waits in the inbox"
    );

    server.restart().await.unwrap();
    wait_until("the result", || setup.outbox.join("cat.png").exists());
    assert!(
        setup
            .outbox_files()
            .iter()
            .all(|f| !f.starts_with("failed/"))
    );
    assert!(
        daemon.output().contains("is answering"),
        "{}",
        daemon.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_rejections_fail_at_once_with_the_detail() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.set_models(&["sd_xl_base_1.0_f16.ckpt"]);
    // The 500 only needs to be retried, not after the real second.
    let setup = Setup::new(&server.url(), "drawthings").quick_backoff();
    setup.profile("unknown", "model = \"no_such_model.ckpt\"\n");
    setup.profile("strict", "[extra]\nno_such_key = 1\n");
    server.push_fault(Fault::Status {
        code: 500,
        detail: "out of memory".into(),
        retry_after: None,
    });
    let _daemon = setup.start_daemon();
    setup.drop_file("retried.png", &png(128, 128, 1));
    wait_until("the retried result", || {
        setup.outbox.join("retried.png").exists()
    });
    setup.drop_file("unknown/rejected.png", &png(128, 128, 2));
    wait_until("the rejection", || {
        setup
            .outbox
            .join("failed/unknown/rejected.png.error.txt")
            .exists()
    });

    let error = String::from_utf8(setup.read_out("failed/unknown/rejected.png.error.txt")).unwrap();
    assert!(error.contains("Unrecognized model name"), "{error}");
    assert!(error.contains("Attempts: 1"), "{error}");
    // What to fix: the model that was sent and the file it came from.
    let profile_file = setup.dir.path().join("profiles/unknown.toml");
    let named = format!(
        "Draw Things refused the request (HTTP 422): Unrecognized model name (model sent: \"no_such_model.ckpt\", from {})",
        profile_file.display()
    );
    assert!(error.contains(&named), "{error}");
    wait_until("the failure in the log", || {
        setup.log_text().contains("failed unknown/rejected.png")
    });
    assert!(setup.log_text().contains(&named), "{}", setup.log_text());

    // A model set by the picture's own .toml is named there; another refusal names the profile.
    std::fs::write(setup.inbox.join("own.toml"), "model = \"mine.ckpt\"\n").unwrap();
    setup.drop_file("own.png", &png(128, 128, 3));
    setup.drop_file("strict/keys.png", &png(128, 128, 4));
    wait_until("both refusals", || {
        setup.outbox.join("failed/own.png.error.txt").exists()
            && setup
                .outbox
                .join("failed/strict/keys.png.error.txt")
                .exists()
    });
    let own = String::from_utf8(setup.read_out("failed/own.png.error.txt")).unwrap();
    assert!(
        own.contains("(model sent: \"mine.ckpt\", from own.toml beside the picture)"),
        "{own}"
    );
    let keys = String::from_utf8(setup.read_out("failed/strict/keys.png.error.txt")).unwrap();
    let from = format!(
        "(settings from {})",
        setup.dir.path().join("profiles/strict.toml").display()
    );
    assert!(
        keys.contains("Unrecognized keys") && keys.contains(&from),
        "{keys}"
    );
    assert_eq!(
        setup.read_out("failed/unknown/rejected.png"),
        png(128, 128, 2)
    );
    let lines = setup.job_lines();
    let retried = lines.iter().find(|l| l["input"] == "retried.png").unwrap();
    assert_eq!(retried["attempts"], 2);
    let rejected = lines
        .iter()
        .find(|l| l["input"] == "unknown/rejected.png")
        .unwrap();
    assert_eq!(rejected["outcome"], "failed");
    assert!(
        rejected["error"]
            .as_str()
            .unwrap()
            .contains("Unrecognized model name")
    );
    assert_eq!(rejected["error_kind"], "refused");
    assert_eq!(retried["error_kind"], serde_json::Value::Null);
    // 2 for the retried file, 1 for each rejected one: a 422 is never retried.
    assert_eq!(server.img2img_requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_flight_at_kill_9_is_finished_after_a_restart_exactly_once() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // The first request never gets an answer (without holding up later ones).
    server.push_fault(Fault::Hang);
    let setup = Setup::new(&server.url(), "drawthings");
    let mut daemon = setup.start_daemon();
    let picture = png(256, 192, 5);
    setup.drop_file("cat.png", &picture);
    server.wait_in_flight(1, crate::common::PATIENCE).await;
    daemon.kill_hard();
    assert_eq!(setup.inbox_files(), BTreeSet::new(), "the file was claimed");

    let _daemon = setup.start_daemon();
    wait_until("the result", || {
        setup.outbox_files() == set(&["cat.png", "originals/cat.png"])
    });
    wait_until("one jobs.jsonl line", || setup.job_lines().len() == 1);
    assert_eq!(setup.read_out("originals/cat.png"), picture);
    assert_eq!(
        server.img2img_requests().len(),
        2,
        "sent again once, after the restart"
    );
    setup.wait_for_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_puts_the_job_in_flight_back_and_exits_0_within_10_s() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.set_delay(Duration::from_secs(600));
    let setup = Setup::new(&server.url(), "drawthings");
    let mut daemon = setup.start_daemon();
    let picture = png(128, 128, 6);
    setup.drop_file("cat.png", &picture);
    server.wait_in_flight(1, crate::common::PATIENCE).await;

    let (status, took) = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(setup.inbox_files(), set(&["cat.png"]));
    assert_eq!(std::fs::read(setup.inbox.join("cat.png")).unwrap(), picture);
    assert_eq!(setup.leftovers(), BTreeSet::new());
    assert!(setup.outbox_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_inbox_refuses_to_start() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    let first = setup.start_daemon();
    first.wait_for_output("watching");
    let second = setup.command().arg("run").output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("process {}", first.pid())),
        "names the holder: {stderr}"
    );
    // The refusal is the second one's business: the running daemon's log stays its own.
    let log = setup.log_text();
    assert!(log.contains("watching"), "{log}");
    assert!(!log.contains("already watching"), "{log}");
    assert_eq!(log.matches("watching").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_never_exceed_the_concurrency() {
    let server = FakeServer::start(Flavor::A1111 { auth: None }).await;
    server.set_delay(Duration::from_millis(300));
    let setup = Setup::with(&server.url(), "a1111", 300, "", "concurrency = 2");
    let _daemon = setup.start_daemon();
    for n in 0..6 {
        setup.drop_file(&format!("p{n}.png"), &png(128, 128, n));
    }
    wait_until("six results", || {
        (0..6).all(|n| setup.outbox.join(format!("p{n}.png")).exists())
    });
    assert_eq!(server.img2img_requests().len(), 6);
    assert!(
        server.max_in_flight() <= 2,
        "max in flight {}",
        server.max_in_flight()
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_png_closed_by_its_writer_is_taken_without_waiting_to_settle() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    // Ten minutes to settle: only the close-after-write fast path can take it in time.
    let setup = Setup::with(&server.url(), "drawthings", 600_000, "", "");
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    let picture = png(128, 128, 4);
    std::fs::write(setup.inbox.join("quick.png"), &picture).unwrap();
    wait_until("the result", || setup.outbox.join("quick.png").exists());
    assert_eq!(server.img2img_requests()[0].init_image().unwrap(), picture);

    // An incomplete PNG closed by its writer still waits for the settle window.
    std::fs::write(setup.inbox.join("cut.png"), &picture[..picture.len() / 2]).unwrap();
    std::fs::write(setup.inbox.join("after.png"), png(128, 128, 5)).unwrap();
    wait_until("the next result", || {
        setup.outbox.join("after.png").exists()
    });
    assert!(setup.inbox.join("cut.png").exists(), "the cut file waits");
    assert_eq!(server.img2img_requests().len(), 2);
}

/// The inbox deleted, renamed away or replaced while the daemon runs: noticed from the
/// watcher's own events, so the periodic rescan is set far beyond the test's patience.
mod inbox_gone {
    use crate::common::{Daemon, Setup, set, wait_until};
    use crate::fakes::server::{FakeServer, Flavor};
    use crate::pictures::png;
    use std::fs;

    /// Ten minutes: anything taken sooner was taken because of an event.
    const NO_PERIODIC_RESCAN: (&str, &str) = ("DRAWDROP_RESCAN_MS", "600000");

    async fn started() -> (FakeServer, Setup, Daemon) {
        let server = FakeServer::start(Flavor::DrawThings).await;
        let setup = Setup::new(&server.url(), "drawthings");
        let daemon = setup.start_daemon_with(&[NO_PERIODIC_RESCAN]);
        daemon.wait_for_output("watching");
        setup.drop_file("before.png", &png(64, 64, 1));
        wait_until("the picture dropped at start is done", || {
            setup.outbox.join("before.png").exists()
        });
        (server, setup, daemon)
    }

    fn wait_done(setup: &Setup, names: &[&str]) {
        let mut expected = vec!["before.png", "originals/before.png"];
        let originals: Vec<String> = names.iter().map(|n| format!("originals/{n}")).collect();
        expected.extend(names.iter().copied());
        expected.extend(originals.iter().map(String::as_str));
        wait_until(&format!("{names:?} done"), || {
            setup.outbox_files() == set(&expected)
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_inbox_is_made_again_at_once_and_watched() {
        let (server, setup, daemon) = started().await;
        fs::remove_dir_all(&setup.inbox).unwrap();
        // drop_file would make the folder itself: wait for drawdrop to make it.
        wait_until("drawdrop makes its inbox again", || setup.inbox.is_dir());
        daemon.wait_for_output("was gone; created it again");
        setup.drop_file("after.png", &png(64, 64, 2));
        wait_done(&setup, &["after.png"]);
        assert_eq!(server.img2img_requests().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inbox_deleted_and_made_again_by_someone_else_is_watched() {
        let (server, setup, daemon) = started().await;
        fs::remove_dir_all(&setup.inbox).unwrap();
        fs::create_dir_all(&setup.inbox).unwrap();
        daemon.wait_for_output("was replaced by another folder");
        assert!(!daemon.output().contains("was gone"), "{}", daemon.output());
        setup.drop_file("after.png", &png(64, 64, 2));
        wait_done(&setup, &["after.png"]);
        assert_eq!(server.img2img_requests().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inbox_renamed_away_and_replaced_by_a_full_folder_is_watched_and_taken() {
        let (server, setup, daemon) = started().await;
        // A sync tool's way: the new folder is made beside it, with a picture already in
        // it, and renamed into place once the old one is moved aside.
        let new = setup.dir.path().join("Inbox.new");
        fs::create_dir(&new).unwrap();
        fs::write(new.join("was inside.png"), png(64, 64, 2)).unwrap();
        let old = setup.dir.path().join("Inbox.old");
        fs::rename(&setup.inbox, &old).unwrap();
        if fs::rename(&new, &setup.inbox).is_err() {
            // drawdrop made an inbox again in between, with something of its own in it.
            fs::remove_dir_all(&setup.inbox).unwrap();
            fs::rename(&new, &setup.inbox).unwrap();
        }
        wait_done(&setup, &["was inside.png"]);
        setup.drop_file("dropped later.png", &png(64, 64, 3));
        wait_done(&setup, &["was inside.png", "dropped later.png"]);
        fs::write(old.join("left behind.png"), png(64, 64, 4)).unwrap();
        setup.drop_file("last.png", &png(64, 64, 5));
        wait_done(&setup, &["was inside.png", "dropped later.png", "last.png"]);
        assert!(
            old.join("left behind.png").exists(),
            "the folder moved away is no longer watched"
        );
        assert_eq!(server.img2img_requests().len(), 4);
        drop(daemon);
    }
}
