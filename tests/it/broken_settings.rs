//! A broken setting never stops the rest, end to end through the real binary: a broken
//! profile (at start, or by an edit) stops only its own folder, whose files wait in the inbox
//! untouched and go through once it is fixed, without a restart; the log, `status` and
//! `check` name the file, line and column; the desktop is told once per breakage; and
//! `status` and `check` answer with a config file that cannot be read, `status` with the
//! error that stopped the daemon's last start.

use crate::common::{Setup, stderr_of, wait_until};
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::png;
use std::path::Path;
use std::process::Output;

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn prompt_of(server: &FakeServer, index: usize) -> serde_json::Value {
    server.img2img_requests()[index].json()["prompt"].clone()
}

/// Saves a profile whole, as editors do (a temporary file renamed over it), so that the
/// daemon never reads it half-written.
fn save_profile(setup: &Setup, name: &str, text: &str) {
    let temporary = setup.dir.path().join(format!(".{name}.toml.saving"));
    std::fs::write(&temporary, text).unwrap();
    let profile = setup.dir.path().join(format!("profiles/{name}.toml"));
    std::fs::rename(&temporary, profile).unwrap();
}

/// `file:line:col:` of a profile of `setup`.
fn spot(setup: &Setup, profile: &str, line: usize, col: usize) -> String {
    let file = setup.dir.path().join(format!("profiles/{profile}.toml"));
    format!("{}:{line}:{col}:", file.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_profile_at_start_waits_beside_a_good_one_and_goes_after_the_fix() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("w", "prompt = \"water\"\n");
    setup.profile("ink", "prompt = \"ink\"\nsteps = 0\nwidth = 1000\n");
    setup.profile("pencil", "steps = 0\n");
    let broken = png(128, 128, 2);
    setup.drop_file("ink/b.png", &broken);
    let daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    // A broken profile's folder is there for its files to wait in, as every profile's is.
    assert!(setup.inbox.join("pencil").is_dir());
    setup.drop_file("w/a.png", &png(128, 128, 1));
    wait_until("a is done", || setup.outbox.join("w/a.png").exists());
    wait_until("b is said to wait", || {
        setup.log_text().contains("waiting: ink/b.png")
    });

    // Untouched in the inbox: not claimed, not failed, never sent.
    assert_eq!(
        std::fs::read(setup.inbox.join("ink/b.png")).unwrap(),
        broken
    );
    assert!(!setup.outbox.join("failed").join("ink").exists());
    assert_eq!(server.img2img_requests().len(), 1);
    let log = setup.log_text();
    assert!(log.contains(&spot(&setup, "ink", 2, 9)), "{log}");
    assert!(
        log.contains(&spot(&setup, "ink", 3, 9)),
        "every problem: {log}"
    );
    assert!(log.contains("files in"), "{log}");
    assert!(!log.contains("keeping the last good settings"), "{log}");

    let status = setup.command().arg("status").output().unwrap();
    let text = stdout_of(&status);
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(text.contains("broken       profile ink"), "{text}");
    assert!(text.contains(&spot(&setup, "ink", 2, 9)), "{text}");
    assert!(text.contains(&spot(&setup, "ink", 3, 9)), "{text}");
    assert!(
        text.contains("1 of them wait for a broken profile"),
        "{text}"
    );
    assert!(text.contains("done         1"), "{text}");

    let check = setup.command().arg("check").output().unwrap();
    let text = stdout_of(&check);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("profile   PROBLEM  ink is broken"), "{text}");
    assert!(text.contains(&spot(&setup, "ink", 3, 9)), "{text}");

    save_profile(&setup, "ink", "prompt = \"ink, fixed\"\n");
    wait_until("b is done after the fix", || {
        setup.outbox.join("ink/b.png").exists()
    });
    assert_eq!(prompt_of(&server, 1), "ink, fixed");
    assert!(daemon.output().contains("profile ink is fixed"));
    assert!(setup.outbox.join("originals/ink/b.png").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_broken_by_an_edit_waits_and_goes_after_the_fix() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("w", "prompt = \"one\"\n");
    setup.profile("other", "prompt = \"other\"\n");
    let daemon = setup.start_daemon();
    wait_until("the profile folder", || setup.inbox.join("w").is_dir());
    setup.drop_file("w/a.png", &png(128, 128, 1));
    wait_until("a", || setup.outbox.join("w/a.png").exists());

    save_profile(&setup, "w", "prompt = \"two\"\nsteps = 0\n");
    let broken_at = spot(&setup, "w", 2, 9);
    wait_until("the broken edit is reported", || {
        daemon.output().contains(&broken_at)
    });
    wait_until("the reload is over", || {
        daemon.output().contains("waiting until fixed: w")
    });
    let output = daemon.output();
    let after_the_error = &output[output.find(&broken_at).unwrap()..];
    // Nothing reads like success, and there were no good settings of its own to keep.
    assert!(!after_the_error.contains("settings reloaded"), "{output}");
    assert!(
        !output.contains("keeping the last good settings"),
        "{output}"
    );
    assert!(after_the_error.contains("profile w is broken"), "{output}");

    let waiting = png(128, 128, 2);
    setup.drop_file("w/b.png", &waiting);
    setup.drop_file("other/c.png", &png(128, 128, 3));
    wait_until("the other profile goes on", || {
        setup.outbox.join("other/c.png").exists()
    });
    wait_until("b is said to wait", || {
        daemon.output().contains("waiting: w/b.png")
    });
    // Written in place (on Linux, a closed file is taken without the settle window): waits too.
    std::fs::write(setup.inbox.join("w/d.png"), png(128, 128, 4)).unwrap();
    wait_until("d is said to wait", || {
        daemon.output().contains("waiting: w/d.png")
    });
    assert_eq!(std::fs::read(setup.inbox.join("w/b.png")).unwrap(), waiting);
    assert_eq!(server.img2img_requests().len(), 2);

    save_profile(&setup, "w", "prompt = \"three\"\n");
    wait_until("b and d after the fix", || {
        setup.outbox.join("w/b.png").exists() && setup.outbox.join("w/d.png").exists()
    });
    assert_eq!(prompt_of(&server, 2), "three");
    assert_eq!(prompt_of(&server, 3), "three");
    let output = daemon.output();
    assert!(
        output.contains("profile w is fixed: its folder goes on"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_default_profile_holds_the_files_dropped_into_the_inbox_itself() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    setup.profile("default", "prompt = \"plain\"\nstrength = 2\n");
    setup.profile("w", "prompt = \"water\"\n");
    let root = png(128, 128, 1);
    setup.drop_file("a.png", &root);
    setup.drop_file("holiday/b.png", &png(128, 128, 2));
    setup.drop_file("w/c.png", &png(128, 128, 3));

    let output = setup.run_once();
    let stdout = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{stdout}{}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains("1 done, 0 failed, 2 waiting for a broken profile"),
        "{stdout}"
    );
    assert!(setup.outbox.join("w/c.png").exists());
    assert_eq!(std::fs::read(setup.inbox.join("a.png")).unwrap(), root);
    assert!(setup.inbox.join("holiday/b.png").exists());
    assert!(stderr_of(&output).contains(&spot(&setup, "default", 2, 12)));

    setup.profile("default", "prompt = \"plain\"\n");
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(setup.outbox.join("a.png").exists());
    assert!(setup.outbox.join("holiday/b.png").exists());
    assert_eq!(prompt_of(&server, 1), "plain");
}

// Linux shows notifications through notify-send, which a stand-in on PATH can play.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_is_told_once_per_breakage() {
    let setup = Setup::with(
        "http://127.0.0.1:9",
        "drawthings",
        300,
        "notifications = true",
        "",
    );
    setup.profile("w", "prompt = \"one\"\n");
    // A stand-in for notify-send that writes down what it was asked to show.
    let bin = setup.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let told = setup.dir.path().join("told.txt");
    let script = bin.join("notify-send");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", told.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let daemon = setup.start_daemon_with(&[("PATH", &path)]);
    daemon.wait_for_output("watching");
    let told_lines = || -> Vec<String> {
        std::fs::read_to_string(&told)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    save_profile(&setup, "w", "steps = 0\n");
    wait_until("told about w", || !told_lines().is_empty());
    // Broken differently, then another reload while it stays broken: logged, not told again.
    save_profile(&setup, "w", "steps = 0\nseed = -5\n");
    wait_until("the second error", || {
        daemon.output().contains(&spot(&setup, "w", 2, 8))
    });
    save_profile(&setup, "x", "prompt = \"x\"\n");
    wait_until("the next reload", || {
        daemon.output().contains("new profile x")
    });
    // A new breakage is told: had w been told again, it would be there before this one.
    save_profile(&setup, "y", "steps = 500\n");
    wait_until("told about y", || told_lines().len() >= 2);
    let lines = told_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("a setting is broken") && lines[0].contains("w.toml"),
        "{lines:?}"
    );
    assert!(lines[1].contains("y.toml"), "{lines:?}");
    // A brand-new broken profile had no good settings to keep: its folder waits.
    let output = daemon.output();
    assert!(output.contains("profile y is broken: files in"), "{output}");
    assert!(setup.inbox.join("y").is_dir(), "its folder, to wait in");
    assert!(
        !output.contains("keeping the last good settings"),
        "{output}"
    );

    // While the daemon runs, a broken config file keeps the last good settings, and
    // `status` still finds the daemon through the folders of its start.
    std::fs::write(
        &setup.config,
        "settle_ms = [
",
    )
    .unwrap();
    wait_until("the broken config is reported", || {
        daemon
            .output()
            .contains("keeping the last good settings until it is fixed")
    });
    let status = setup.command().arg("status").output().unwrap();
    let text = stdout_of(&status);
    assert!(
        text.contains(&format!(
            "running (process {}), with its last good settings",
            daemon.pid()
        )),
        "{text}"
    );
    wait_until("told about the config", || told_lines().len() >= 3);
    assert_eq!(told_lines().len(), 3, "{:?}", told_lines());
    assert!(
        told_lines()[2].contains("config.toml"),
        "{:?}",
        told_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_check_answer_when_the_config_cannot_be_read() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&server.url(), "drawthings");
    // Before the first run: no inbox yet, which is no error.
    let status = setup.command().arg("status").output().unwrap();
    let text = stdout_of(&status);
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(
        text.contains("does not exist yet: `drawdrop run` creates it"),
        "{text}"
    );
    assert!(!text.contains("os error"), "{text}");

    // A good start, one picture done, a clean stop.
    let mut daemon = setup.start_daemon();
    daemon.wait_for_output("watching");
    setup.drop_file("a.png", &png(128, 128, 1));
    wait_until("a", || setup.outbox.join("a.png").exists());
    daemon.terminate(std::time::Duration::from_secs(15));

    // The config breaks; the daemon's next start fails.
    std::fs::write(&setup.config, "inbox = \"in\"\nsettle_ms = \"soon\"\n").unwrap();
    let spot = format!("{}:2:13:", setup.config.display());
    let mut failed = setup.start_daemon();
    let exit = failed.wait_exit(crate::common::PATIENCE);
    assert_eq!(exit.code(), Some(2), "{}", failed.output());

    let status = setup.command().arg("status").output().unwrap();
    let text = stdout_of(&status);
    assert_eq!(status.status.code(), Some(2), "{text}");
    assert!(text.contains("config       cannot be read"), "{text}");
    assert!(text.contains(&spot), "{text}");
    assert!(
        text.contains("daemon       not running: its last start ("),
        "{text}"
    );
    assert!(
        text.contains(&format!("failed: {spot}")),
        "the error that stopped it: {text}"
    );
    assert!(
        text.contains("done         1"),
        "what it still can show: {text}"
    );
    assert!(text.contains("done    a.png -> a.png"), "{text}");

    let check = setup.command().arg("check").output().unwrap();
    let text = stdout_of(&check);
    assert_eq!(check.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("config    PROBLEM  {spot}")),
        "{text}"
    );

    // Every problem of the file, first one first.
    std::fs::write(&setup.config, "after = \"keep\"\nsettle_ms = -1\n").unwrap();
    let check = setup.command().arg("check").output().unwrap();
    let text = stdout_of(&check);
    let first = text.find(&format!("{}:1:9:", setup.config.display()));
    let second = text.find(&format!("{}:2:13:", setup.config.display()));
    assert!(first.is_some() && first < second, "{text}");

    // A config file that is not there: `init` with the same path is what creates it.
    let nope = setup.dir.path().join("nope.toml");
    let check = setup
        .command()
        .arg("check")
        .arg("--config")
        .arg(&nope)
        .output()
        .unwrap();
    let text = stdout_of(&check);
    assert_eq!(check.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("drawdrop init --config {}", nope.display())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_file_the_log_in_the_outbox_says_the_defaults_are_used() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drawdrop"))
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DRAWDROP_CONFIG")
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let log = Path::new(home.path()).join("DrawDrop/Outbox/logs/drawdrop.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("no config file at"), "{text}");
}
