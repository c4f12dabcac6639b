//! End to end through the real binary: a pool of fake servers (`[[servers]]`) of different
//! speeds and flavors sharing one queue, losing a member mid-batch, lacking a model, all
//! down, preferences, and the config errors of a pool.

use crate::common::{Setup, stderr_of, wait_until};
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::png;
use std::collections::BTreeSet;
use std::time::Duration;

/// A config with a pool of `servers` (name, url, api, extra lines).
fn pool_config(setup: &Setup, servers: &[(&str, &str, &str, &str)]) {
    let mut text = format!(
        "inbox = {:?}\noutbox = {:?}\nsettle_ms = 200\n",
        setup.inbox.to_string_lossy(),
        setup.outbox.to_string_lossy()
    );
    for (name, url, api, extra) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi = \"{api}\"\ntimeout_s = 30\nmax_attempts = 2\n{extra}\n"
        ));
    }
    std::fs::write(&setup.config, text).unwrap();
}

fn drop_many(setup: &Setup, folder: &str, count: u32) -> BTreeSet<String> {
    (0..count)
        .map(|i| {
            let name = format!("{folder}p{i:02}.png");
            setup.drop_file(&name, &png(128, 128, i + 1));
            name
        })
        .collect()
}

/// Results (not originals) in the outbox, which must be exactly `inputs`, each once.
fn wait_for_results(setup: &Setup, inputs: &BTreeSet<String>) {
    wait_until("every result", || {
        setup.job_lines().len() >= inputs.len()
            && inputs.iter().all(|input| setup.outbox.join(input).exists())
    });
    let lines = setup.job_lines();
    assert_eq!(
        lines.len(),
        inputs.len(),
        "one jobs.jsonl line each: {lines:#?}"
    );
    let expected: BTreeSet<String> = inputs
        .iter()
        .flat_map(|input| [input.clone(), format!("originals/{input}")])
        .collect();
    let outbox: BTreeSet<String> = setup
        .outbox_files()
        .into_iter()
        .filter(|f| !f.starts_with(".drawdrop/"))
        .collect();
    assert_eq!(outbox, expected, "exactly one result and one original each");
}

fn served_by(setup: &Setup, server: &str) -> usize {
    setup
        .job_lines()
        .iter()
        .filter(|line| line["server"] == server && line["outcome"] == "done")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faster_server_takes_more_of_the_work() {
    let fast = FakeServer::start(Flavor::DrawThings).await;
    let slow = FakeServer::start(Flavor::A1111 { auth: None }).await;
    fast.set_delay(Duration::from_millis(50));
    slow.set_delay(Duration::from_millis(600));
    let setup = Setup::new(&fast.url(), "drawthings");
    pool_config(
        &setup,
        &[
            ("fast", &fast.url(), "drawthings", ""),
            ("slow", &slow.url(), "a1111", ""),
        ],
    );
    let _daemon = setup.start_daemon();
    let inputs = drop_many(&setup, "", 24);
    wait_for_results(&setup, &inputs);
    let (by_fast, by_slow) = (served_by(&setup, "fast"), served_by(&setup, "slow"));
    assert_eq!(by_fast + by_slow, 24);
    assert!(by_fast > by_slow * 2, "fast {by_fast}, slow {by_slow}");
    assert!(by_slow >= 1, "the slow one helped too");
    // Each got its own dialect.
    assert!(
        slow.img2img_requests()
            .iter()
            .all(|r| r.json().get("strength").is_none())
    );
    assert_eq!(fast.img2img_requests().len(), by_fast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_mid_batch_hands_its_work_over_and_nothing_is_lost_or_doubled() {
    let servers = [
        FakeServer::start(Flavor::DrawThings).await,
        FakeServer::start(Flavor::DrawThings).await,
        FakeServer::start(Flavor::A1111 { auth: None }).await,
    ];
    for server in &servers {
        server.set_delay(Duration::from_millis(300));
    }
    let setup = Setup::new(&servers[0].url(), "drawthings");
    pool_config(
        &setup,
        &[
            ("a", &servers[0].url(), "drawthings", ""),
            ("b", &servers[1].url(), "drawthings", ""),
            ("c", &servers[2].url(), "a1111", ""),
        ],
    );
    let daemon = setup.start_daemon();
    let inputs = drop_many(&setup, "", 30);
    wait_until("a few results", || setup.job_lines().len() >= 5);
    servers[1].wait_in_flight(1, crate::common::PATIENCE).await;
    servers[1].stop().await;
    wait_for_results(&setup, &inputs);
    assert!(
        daemon.output().contains("goes to another server"),
        "{}",
        daemon.output()
    );
    // drawdrop itself never stopped: a handed-over job is not counted as left by a crash.
    assert!(
        !daemon.output().contains("claimed before drawdrop stopped"),
        "{}",
        daemon.output()
    );
    assert!(
        setup
            .job_lines()
            .iter()
            .all(|line| line["outcome"] == "done")
    );
    setup.wait_for_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_goes_where_its_model_is_and_fails_only_when_no_server_has_it() {
    let mini = FakeServer::start(Flavor::DrawThings).await;
    let studio = FakeServer::start(Flavor::DrawThings).await;
    mini.set_models(&["sd_v1.5_f16.ckpt"]);
    studio.set_models(&["sd_v1.5_f16.ckpt", "sd_xl_base_1.0_f16.ckpt"]);
    let setup = Setup::new(&mini.url(), "drawthings");
    setup.profile("sdxl", "model = \"sd_xl_base_1.0_f16.ckpt\"\n");
    setup.profile("flux", "model = \"flux_1_dev_q8p.ckpt\"\n");
    pool_config(
        &setup,
        &[
            ("mini", &mini.url(), "drawthings", ""),
            ("studio", &studio.url(), "drawthings", ""),
        ],
    );
    let _daemon = setup.start_daemon();
    wait_until("the profile folders", || setup.inbox.join("sdxl").is_dir());
    let inputs = drop_many(&setup, "sdxl/", 6);
    wait_for_results(&setup, &inputs);
    assert_eq!(
        served_by(&setup, "studio"),
        6,
        "only the studio has the SDXL model"
    );

    setup.drop_file("flux/moon.png", &png(128, 128, 99));
    wait_until("the failure", || {
        setup.outbox.join("failed/flux/moon.png.error.txt").exists()
    });
    let error = String::from_utf8(setup.read_out("failed/flux/moon.png.error.txt")).unwrap();
    assert!(error.contains("no server could do it"), "{error}");
    assert!(
        error.contains(
            "mini: Draw Things refused the request (HTTP 422): Unrecognized model name (model sent: \"flux_1_dev_q8p.ckpt\""
        ),
        "{error}"
    );
    assert!(
        error.contains(
            "studio: Draw Things refused the request (HTTP 422): Unrecognized model name (model sent: \"flux_1_dev_q8p.ckpt\""
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_down_nothing_fails_and_everything_waits() {
    let one = FakeServer::start(Flavor::DrawThings).await;
    let two = FakeServer::start(Flavor::A1111 { auth: None }).await;
    one.stop().await;
    two.stop().await;
    let setup = Setup::new(&one.url(), "drawthings");
    pool_config(
        &setup,
        &[
            ("one", &one.url(), "drawthings", ""),
            ("two", &two.url(), "a1111", ""),
        ],
    );
    let daemon = setup.start_daemon();
    let inputs = drop_many(&setup, "", 4);
    wait_until("both are reported down", || {
        daemon.output().matches("is not answering").count() >= 2
    });
    assert_eq!(setup.inbox_files(), inputs, "every file waits in the inbox");
    assert!(
        setup
            .outbox_files()
            .iter()
            .all(|f| !f.starts_with("failed/"))
    );
    two.restart().await.unwrap();
    one.restart().await.unwrap();
    wait_for_results(&setup, &inputs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_take_only_their_profiles_and_preferred_servers_come_first() {
    let mini = FakeServer::start(Flavor::DrawThings).await;
    let studio = FakeServer::start(Flavor::DrawThings).await;
    let setup = Setup::new(&mini.url(), "drawthings");
    setup.profile("sketch", "steps = 4\n");
    setup.profile("fine", "steps = 30\nservers = [\"studio\"]\n");
    pool_config(
        &setup,
        &[
            (
                "mini",
                &mini.url(),
                "drawthings",
                "profiles = [\"sketch\", \"default\"]",
            ),
            ("studio", &studio.url(), "drawthings", ""),
        ],
    );
    let _daemon = setup.start_daemon();
    wait_until("the profile folders", || setup.inbox.join("fine").is_dir());
    let mut inputs = drop_many(&setup, "fine/", 5);
    wait_for_results(&setup, &inputs);
    assert_eq!(
        served_by(&setup, "studio"),
        5,
        "fine prefers the studio, which answers"
    );

    studio.stop().await;
    inputs.extend(drop_many(&setup, "sketch/", 3));
    wait_for_results(&setup, &inputs);
    assert_eq!(served_by(&setup, "mini"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_finishes_with_one_server_down_and_status_shows_each_server() {
    let up = FakeServer::start(Flavor::DrawThings).await;
    let down = FakeServer::start(Flavor::DrawThings).await;
    down.stop().await;
    let setup = Setup::new(&up.url(), "drawthings");
    pool_config(
        &setup,
        &[
            ("up", &up.url(), "drawthings", ""),
            ("down", &down.url(), "drawthings", ""),
        ],
    );
    let inputs = drop_many(&setup, "", 5);
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    wait_for_results(&setup, &inputs);

    let status = setup.command().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains(&format!("up ({}/): answers; 5 done", up.url())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("down ({}/): does not answer", down.url())),
        "{stdout}"
    );
    let check = setup.command().arg("check").output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("up: ") && stdout.contains("down: "),
        "{stdout}"
    );
}

#[test]
fn a_pool_config_names_its_mistakes_with_file_line_and_column() {
    let setup = Setup::new("http://127.0.0.1:9", "drawthings");
    let cases = [
        (
            "[server]\nurl = \"http://a:1\"\n[[servers]]\nname = \"b\"\n",
            "3:1",
            "use either `[server]`",
        ),
        (
            "[[servers]]\nurl = \"http://a:1\"\n",
            "1:1",
            "needs a `name`",
        ),
        (
            "[[servers]]\nname = \"a\"\n[[servers]]\nname = \"a\"\n",
            "4:8",
            "two servers named \"a\"",
        ),
        (
            "[[servers]]\nname = \"a\"\nprofiles = [\"nope\"]\n",
            "3:13",
            "there is no profile \"nope\"",
        ),
    ];
    for (text, spot, message) in cases {
        std::fs::write(&setup.config, text).unwrap();
        let output = setup.command().arg("check").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{text}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = format!("{}:{spot}:", setup.config.display());
        assert!(
            stdout.contains(&expected) && stdout.contains(message),
            "{text}\n{stdout}"
        );
    }
    std::fs::write(&setup.config, "[[servers]]\nname = \"a\"\n").unwrap();
    setup.profile("w", "servers = [\"b\"]\n");
    let stdout = String::from_utf8(setup.command().arg("check").output().unwrap().stdout).unwrap();
    assert!(
        stdout.contains("w.toml:1:12:") && stdout.contains("there is no server \"b\""),
        "{stdout}"
    );
}
