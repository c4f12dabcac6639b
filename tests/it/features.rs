//! End to end through the real binary: per-image prompts (sidecars and `{name}`), the
//! `parameters` chunk in results, hot reload of config and profiles, `init`, `status` and
//! the names `check` flags.

use crate::common::{Setup, wait_until};
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::{png, text_chunk};

fn prompt_of(server: &FakeServer, index: usize) -> serde_json::Value {
    server.img2img_requests()[index].json()["prompt"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_and_name_shape_each_pictures_settings_and_travel_with_it() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("w", "prompt = \"a painting of {name}\"\nsteps = 20\n");
    setup.profile("default", "prompt = \"plain\"\nsteps = 20\n");
    let _daemon = setup.start_daemon();
    wait_until("the profile folder", || setup.inbox.join("w").is_dir());

    setup.drop_file("w/my dog.png", &png(128, 128, 1));
    wait_until("the dog", || setup.outbox.join("w/my dog.png").exists());
    assert_eq!(prompt_of(&server, 0), "a painting of my dog");

    // Sidecars first, then the picture, as a person would drop them together.
    setup.drop_file("cat.txt", b"  a cat, in the style of {name}\n");
    setup.drop_file("cat.toml", b"steps = 8\nstrength = 0.3\n");
    setup.drop_file("cat.png", &png(128, 128, 2));
    wait_until("the cat", || setup.outbox.join("cat.png").exists());
    let request = server.img2img_requests()[1].json();
    assert_eq!(request["prompt"], "a cat, in the style of cat");
    assert_eq!(request["steps"], 8);
    assert_eq!(request["strength"], 0.3);
    wait_until("the sidecars archived", || {
        setup.outbox.join("originals/cat.txt").exists()
            && setup.outbox.join("originals/cat.toml").exists()
    });
    assert_eq!(
        setup.read_out("originals/cat.txt"),
        b"  a cat, in the style of {name}\n"
    );
    let line = setup
        .job_lines()
        .into_iter()
        .find(|l| l["input"] == "cat.png")
        .unwrap();
    assert_eq!(line["sidecars"], serde_json::json!(["cat.toml", "cat.txt"]));
    assert!(setup.inbox_files().is_empty(), "{:?}", setup.inbox_files());

    // A broken sidecar fails its picture with the spot in the file, and goes along to failed/.
    setup.drop_file("bad.toml", b"steps = 0\n");
    setup.drop_file("bad.png", &png(128, 128, 3));
    wait_until("the failure", || {
        setup.outbox.join("failed/bad.png.error.txt").exists()
    });
    let error = String::from_utf8(setup.read_out("failed/bad.png.error.txt")).unwrap();
    let spot = format!("{}:1:9:", setup.inbox.join("bad.toml").display());
    assert!(error.contains(&spot), "{error}");
    wait_until("the sidecar in failed/", || {
        setup.outbox.join("failed/bad.toml").exists()
    });
    assert_eq!(
        server.img2img_requests().len(),
        2,
        "the broken one was never sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_carry_their_settings_and_keep_the_servers_chunks() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile(
        "default",
        "prompt = \"a fox\"\nnegative_prompt = \"blurry\"\nsteps = 4\nstrength = 0.6\n\
         guidance_scale = 1.0\nsampler = \"LCM\"\nseed = 1234\nmodel = \"sd_xl_base_1.0_f16.ckpt\"\n",
    );
    setup.drop_file("fox.png", &png(640, 448, 1));
    let output = setup.run_once();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::common::stderr_of(&output)
    );
    let result = setup.read_out("fox.png");
    let parameters = text_chunk(&result, "parameters").expect("a parameters chunk");
    assert_eq!(
        parameters,
        format!(
            "a fox\nNegative prompt: blurry\nSteps: 4, Sampler: LCM, CFG scale: 1, Seed: 1234, \
             Size: 640x448, Model: sd_xl_base_1.0_f16.ckpt, Denoising strength: 0.6, Version: drawdrop {}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        text_chunk(&result, "fake-server").is_some(),
        "the server's own chunk is kept"
    );

    // A1111 writes its own `parameters` (with exact seeds): that one is kept, not doubled.
    let a1111 = FakeServer::start(Flavor::A1111 { auth: None }).await;
    let setup = Setup::new(&a1111.url(), "a1111");
    setup.drop_file("owl.png", &png(512, 512, 2));
    let output = setup.run_once();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::common::stderr_of(&output)
    );
    let chunks = crate::pictures::text_chunks(&setup.read_out("owl.png"));
    let parameters: Vec<_> = chunks.iter().filter(|(k, _)| k == "parameters").collect();
    assert_eq!(parameters.len(), 1, "{chunks:?}");
    assert!(
        !parameters[0].1.contains("drawdrop"),
        "the server's infotext: {}",
        parameters[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_take_effect_for_the_next_file_and_a_broken_config_keeps_the_last_good_settings() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("w", "prompt = \"one\"\n");
    let daemon = setup.start_daemon();
    wait_until("the profile folder", || setup.inbox.join("w").is_dir());
    setup.drop_file("w/a.png", &png(128, 128, 1));
    wait_until("a", || setup.outbox.join("w/a.png").exists());
    assert_eq!(prompt_of(&server, 0), "one");

    setup.profile("w", "prompt = \"two\"\n");
    wait_until("the reload", || {
        daemon.output().matches("settings reloaded").count() >= 1
    });
    setup.drop_file("w/b.png", &png(128, 128, 2));
    wait_until("b", || setup.outbox.join("w/b.png").exists());
    assert_eq!(prompt_of(&server, 1), "two");

    // A broken config file keeps the last good settings (a broken profile waits instead:
    // tests/it/broken_settings.rs).
    let good = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, format!("{good}\nconcurrency = 0\n")).unwrap();
    wait_until("the broken edit is reported", || {
        daemon.output().contains("keeping the last good settings")
    });
    assert!(
        daemon
            .output()
            .contains(&format!("{}:", setup.config.display()))
    );
    // A profile edited meanwhile is not read: the last good settings stay whole.
    setup.profile("w", "prompt = \"three\"\n");
    wait_until("the edit is read with the config still broken", || {
        daemon
            .output()
            .matches("keeping the last good settings")
            .count()
            >= 2
    });
    setup.drop_file("w/c.png", &png(128, 128, 3));
    wait_until("c", || setup.outbox.join("w/c.png").exists());
    assert_eq!(prompt_of(&server, 2), "two", "the last good settings");

    std::fs::write(&setup.config, &good).unwrap();
    wait_until("the fix", || daemon.output().contains("is fixed"));
    setup.profile("sketch", "prompt = \"a sketch\"\n");
    wait_until("the new profile's folder", || {
        setup.inbox.join("sketch").is_dir()
    });
    setup.drop_file("sketch/d.png", &png(128, 128, 4));
    wait_until("d", || setup.outbox.join("sketch/d.png").exists());
    assert_eq!(prompt_of(&server, 3), "a sketch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_settings_reloads_nothing_and_an_edit_reloads_once() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("w", "prompt = \"one\"\n");
    let daemon = setup.start_daemon();
    wait_until("the daemon watching", || {
        daemon.output().contains("watching")
    });
    // `status` and `check` read the config and every profile, as an editor opening them does.
    for command in ["status", "check"] {
        let output = setup.command().arg(command).output().unwrap();
        assert!(output.status.code().is_some(), "{command} ran to its end");
    }
    setup.profile("w", "prompt = \"two\"\n");
    wait_until("the reload", || {
        daemon.output().matches("settings reloaded").count() >= 1
    });
    // A reload reads the files too: were reads counted as edits, reloads would follow each
    // other every few hundred milliseconds from here on.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        daemon.output().matches("settings reloaded").count(),
        1,
        "{}",
        daemon.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_config_once_and_creates_the_folders() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("conf/config.toml");
    let init = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drawdrop"))
            .env("HOME", home.path())
            .arg("init")
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    let output = init(&config);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::common::stderr_of(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("(written)"), "{stdout}");
    assert!(stdout.contains("Next:"), "{stdout}");
    assert!(home.path().join("DrawDrop/Inbox/default").is_dir());
    assert!(home.path().join("DrawDrop/Outbox/originals").is_dir());
    assert!(home.path().join("conf/profiles/default.toml").is_file());

    std::fs::write(&config, "settle_ms = 500\n").unwrap();
    let output = init(&config);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("already there: kept"));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "settle_ms = 500\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_and_lists_the_last_jobs() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.drop_file("good.png", &png(128, 128, 1));
    setup.drop_file("bad.png", b"not a picture");
    assert_eq!(setup.run_once().status.code(), Some(1));
    setup.drop_file("waiting.png", &png(128, 128, 2));

    let status = setup.command().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{stdout}");
    for line in [
        "daemon       not running",
        "pending      1",
        "in progress  0",
        "done         1",
        "failed       1",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(stdout.contains("answers"), "{stdout}");
    assert!(stdout.contains("done    good.png -> good.png"), "{stdout}");
    assert!(stdout.contains("failed  bad.png because"), "{stdout}");
    // A picture that was never sent is no error of the server's.
    assert!(!stdout.contains("last error"), "{stdout}");

    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    let stdout = String::from_utf8(setup.command().arg("status").output().unwrap().stdout).unwrap();
    assert!(
        stdout.contains(&format!("running (process {})", daemon.pid())),
        "{stdout}"
    );
    wait_until("the waiting file", || {
        setup.outbox.join("waiting.png").exists()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_flags_names_draw_things_would_refuse() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile(
        "odd",
        "sampler = \"Euler Ancestral\"\n[extra]\nhr_scale = 2\n",
    );
    let output = setup.command().arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("profile odd: Draw Things has no sampler \"Euler Ancestral\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("`hr_scale` in [extra] is not a Draw Things key"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_the_config_in_use_where_run_writes_the_log_variables_and_exit_codes() {
    let setup = Setup::new("http://127.0.0.1:9", "drawthings");
    let help = |command: &mut std::process::Command| {
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8(output.stdout).unwrap()
    };
    // The platform default, worked out for this environment.
    let home = setup.dir.path().join("home");
    let top = help(
        std::process::Command::new(env!("CARGO_BIN_EXE_drawdrop"))
            .env_remove("DRAWDROP_CONFIG")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .arg("--help"),
    );
    if cfg!(target_os = "linux") {
        let default = home.join(".config/drawdrop/config.toml");
        assert!(
            top.contains(&format!(
                "Config file: {} (the default here",
                default.display()
            )),
            "{top}"
        );
    }
    assert!(
        top.contains("`drawdrop init` writes a commented one"),
        "{top}"
    );
    for needed in [
        "DRAWDROP_LOG=debug",
        "DRAWDROP_STDERR_LOG=warn",
        "logs/drawdrop.log",
        "jobs.jsonl",
        "  check       0 all is well, 1 something to fix",
        "  status      0 the report was printed, 2",
        "  run --once  0 every file done, 1 some failed, 2",
    ] {
        assert!(top.contains(needed), "{needed}: {top}");
    }
    // --config, given before or after the command: that file, and its outbox.
    let run = help(setup.command().args(["run", "--help"]));
    assert!(
        run.contains(&format!(
            "Config file: {} (from --config)",
            setup.config.display()
        )),
        "{run}"
    );
    assert!(
        run.contains(&format!(
            "writes into the outbox, {}:",
            setup.outbox.display()
        )),
        "{run}"
    );
    assert!(
        run.contains("at most 60 s while it has not answered once"),
        "{run}"
    );
    let check = help(setup.command().args(["help", "check"]));
    assert!(check.contains("2 the config cannot be read"), "{check}");
    let from_env = help(
        std::process::Command::new(env!("CARGO_BIN_EXE_drawdrop"))
            .env("DRAWDROP_CONFIG", &setup.config)
            .args(["status", "--help"]),
    );
    assert!(
        from_env.contains(&format!(
            "Config file: {} (from $DRAWDROP_CONFIG",
            setup.config.display()
        )),
        "{from_env}"
    );
}
