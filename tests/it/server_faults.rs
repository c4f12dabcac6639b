//! The server fault suite, end to end through the real binary: `drawdrop run` against the
//! fake Draw Things and A1111 servers playing every way a server fails — closed, restarted
//! mid-request, connections dropped, 5xx with and without `Retry-After`, 422 with a detail,
//! 401, a hang past `timeout_s`, and broken answers (cut JSON, no images, bad base64, not a
//! PNG, too few or too many images).
//!
//! For each fault the suite checks what a user sees: whether the file waits, is retried
//! (with the pause between requests at least the backoff or `Retry-After`) or lands in
//! `failed/` with an `.error.txt` quoting the server; its `jobs.jsonl` line; the log; the
//! number and order of requests the fake received; that the daemon keeps running; and that
//! the next good file goes through. Several faults share one daemon, one file at a time.
//! Time bounds are lower bounds only: the machine may be slow, never fast.

use crate::common::faults::{Arrivals, Bench, Case, gaps, job_line, wait_for_job};
use crate::common::{PATIENCE, QUICK_BACKOFF_MS, Setup, set, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use crate::pictures::png;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

fn status(code: u16, detail: &str, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        code,
        detail: detail.to_string(),
        retry_after,
    }
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// Asserts that each gap is at least the matching lower bound.
fn assert_gaps_at_least(gaps: &[Duration], bounds: &[Duration], what: &str) {
    assert_eq!(gaps.len(), bounds.len(), "{what}: gaps {gaps:?}");
    for (gap, bound) in gaps.iter().zip(bounds) {
        assert!(
            gap >= bound,
            "{what}: a pause of {gap:?}, expected >= {bound:?} ({gaps:?})"
        );
    }
}

/// The pause before retry `n` (1, 2, ...) of a [`Setup::quick_backoff`]: the quick first
/// pause, doubled for each further retry (at least; drawdrop adds up to a quarter).
fn quick_pause(n: u32) -> Duration {
    Duration::from_millis(QUICK_BACKOFF_MS << (n - 1))
}

/// Asserts that the log announces retry `n` of `input` with the pause [`quick_pause`] says
/// (up to a quarter longer, written in hundredths of a second) and then `because`.
fn assert_quick_retry_said(log: &str, input: &str, n: u32, because: &str) {
    let announced = format!("retrying {input} in ");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&announced)).collect();
    let Some(line) = lines.get(n as usize - 1) else {
        panic!("no retry {n} of {input} announced in\n{log}");
    };
    let (_, rest) = line.split_once(&announced).expect("announced");
    let (pause, reason) = rest
        .split_once(" s because ")
        .unwrap_or_else(|| panic!("no pause and reason in {line:?}"));
    let pause: f64 = pause
        .parse()
        .unwrap_or_else(|_| panic!("{pause:?} in {line:?} is not a number of seconds"));
    let shortest = quick_pause(n).as_secs_f64();
    assert!(
        (shortest - 0.005..=shortest * 1.25 + 0.005).contains(&pause),
        "retry {n} of {input}: a pause of {pause} s, expected {shortest} s to a quarter more: {line:?}"
    );
    assert!(
        reason.starts_with(because),
        "retry {n} of {input}: {because:?} expected in {line:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_server_pauses_the_queue_and_it_drains_in_natural_order_when_back() {
    let server = FakeServer::start(Flavor::DrawThings).await;
    server.stop().await;
    let setup = Setup::new(&server.url(), "drawthings");
    let mut daemon = setup.start_daemon();
    daemon.wait_for_output("is not answering");

    // A folder moved in whole: its files are present together. Neither their modification
    // times nor the order they were written in is the order of their names.
    let written = ["batch/img_10.png", "batch/img_2.png", "batch/img_1.png"];
    let order = ["batch/img_1.png", "batch/img_2.png", "batch/img_10.png"];
    let pictures: Vec<Vec<u8>> = (1..=3).map(|seed| png(128, 128, seed)).collect();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let outside = setup.dir.path().join("outside");
    for (n, name) in written.iter().enumerate() {
        let path = outside.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let seed = order.iter().position(|o| o == name).unwrap();
        std::fs::write(&path, &pictures[seed]).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(an_hour_ago + Duration::from_secs(n as u64))
            .unwrap();
    }
    std::fs::rename(outside.join("batch"), setup.inbox.join("batch")).unwrap();
    // Two more probes: at least 500 ms more of waiting, longer than the settle window.
    let probes = || daemon.output().matches("still not answering").count();
    let probes_before = probes();
    wait_until("two more probes of the closed server", || {
        probes() >= probes_before + 2
    });

    assert!(daemon.try_exit().is_none(), "{}", daemon.output());
    assert_eq!(
        setup.inbox_files(),
        set(&order),
        "the files wait in the inbox, unclaimed"
    );
    assert!(setup.outbox_files().is_empty(), "nothing failed");
    assert!(setup.job_lines().is_empty());
    assert!(server.img2img_requests().is_empty());
    let log = setup.log_text();
    assert!(log.contains("files wait until it does"), "{log}");
    assert!(log.contains("is Draw Things open"), "{log}");

    server.restart().await.expect("restart the fake");
    wait_until("three jobs.jsonl lines", || setup.job_lines().len() == 3);
    let lines = setup.job_lines();
    let inputs: Vec<&str> = lines.iter().map(|l| l["input"].as_str().unwrap()).collect();
    assert_eq!(inputs, order, "finished in natural order");
    for line in &lines {
        assert_eq!(line["outcome"], "done", "{line}");
        assert_eq!(line["attempts"], 1, "waiting is not an attempt: {line}");
    }
    let sent: Vec<Vec<u8>> = server
        .img2img_requests()
        .iter()
        .map(|r| r.init_image().expect("init image"))
        .collect();
    assert_eq!(sent, pictures, "sent once each, in natural order");
    assert_eq!(server.max_in_flight(), 1);
    let mut expected: BTreeSet<String> = set(&order);
    expected.extend(order.iter().map(|name| format!("originals/{name}")));
    assert_eq!(setup.outbox_files(), expected);
    assert_eq!(setup.inbox_files(), BTreeSet::new());
    assert!(setup.log_text().contains("is answering"));
    assert!(daemon.try_exit().is_none(), "{}", daemon.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_request_costs_one_attempt_and_the_file_goes_through() {
    let mut bench = Bench::start(Flavor::DrawThings, "drawthings", "max_attempts = 3").await;
    bench.server.set_delay(Duration::from_secs(600));
    let picture = bench.picture();
    bench.setup.drop_file("mid.png", &picture);
    bench.server.wait_in_flight(1, PATIENCE).await;

    // The app quits mid-generation, and stays closed for a while.
    bench.server.stop().await;
    bench.server.set_delay(Duration::ZERO);
    bench.daemon.wait_for_output("is not answering");
    bench.assert_running();
    assert!(bench.setup.job_lines().is_empty(), "nothing failed");
    assert!(bench.failed_files().is_empty(), "nothing failed");

    bench.server.restart().await.expect("restart the fake");
    let line = wait_for_job(&bench.setup, "mid.png");
    let requests = bench.server.img2img_requests();
    let case = Case {
        input: "mid.png".into(),
        picture: picture.clone(),
        line,
        requests,
        arrivals: Vec::new(), // the lost request was never answered, so never observed
    };
    // The lost request is an attempt; the refused connections while it was closed are not.
    bench.assert_done(&case, 2);
    assert_eq!(case.requests.len(), 2, "sent again once, after the restart");
    for request in &case.requests {
        assert_eq!(request.init_image().unwrap(), picture);
    }
    let log = bench.setup.log_text();
    assert!(
        log.contains(
            "retrying mid.png in 1 s because the connection was lost before the answer came"
        ),
        "{log}"
    );
    assert!(log.contains("is answering again"), "{log}");
    bench.assert_running();
    bench.next_good_file_goes_through("after-restart.png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_quit_and_reopened_between_files_costs_no_attempt() {
    let mut bench = Bench::start(Flavor::DrawThings, "drawthings", "max_attempts = 2").await;
    bench.next_good_file_goes_through("before.png");

    // Quit and reopened while idle: the daemon's kept-alive connection is gone.
    bench.server.stop().await;
    bench.server.restart().await.expect("restart the fake");
    bench.next_good_file_goes_through("reopened.png");

    // Quit while idle and a file comes: it is taken, finds the app closed, and waits.
    bench.server.stop().await;
    let picture = bench.picture();
    bench.setup.drop_file("waiting.png", &picture);
    bench.daemon.wait_for_output("is not answering");
    let probes = || bench.daemon.output().matches("still not answering").count();
    let probes_before = probes();
    wait_until("two more probes of the closed app", || {
        probes() >= probes_before + 2
    });
    bench.assert_running();
    assert!(
        job_line(&bench.setup, "waiting.png").is_none(),
        "nothing failed"
    );
    assert!(bench.failed_files().is_empty(), "nothing failed");

    let requests_before = bench.server.requests().len();
    bench.server.restart().await.expect("restart the fake");
    let line = wait_for_job(&bench.setup, "waiting.png");
    let since: Vec<String> = bench.server.requests()[requests_before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.route()))
        .collect();
    assert_eq!(
        since,
        ["GET /", "POST /sdapi/v1/img2img"],
        "probed, then sent once"
    );
    let requests = bench.server.img2img_requests();
    let case = Case {
        input: "waiting.png".into(),
        picture,
        line,
        requests: requests[requests.len() - 1..].to_vec(),
        arrivals: Vec::new(),
    };
    bench.assert_done(&case, 1);
    bench.next_good_file_goes_through("after.png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_a_hang_past_timeout_s_are_retried_with_backoff() {
    let mut bench = Bench::start(
        Flavor::DrawThings,
        "drawthings",
        "timeout_s = 2\nmax_attempts = 3",
    )
    .await;

    // The connection closes without an answer, then half way through one.
    let case = bench.case(
        "dropped.png",
        &[Fault::CloseWithoutAnswer, Fault::CloseMidBody],
    );
    bench.assert_done(&case, 3);
    assert_eq!(case.requests.len(), 3);
    assert_gaps_at_least(&case.gaps(), &[secs(1.0), secs(2.0)], "backoff 1 s, 2 s");
    let log = bench.setup.log_text();
    for pause in ["in 1 s", "in 2 s"] {
        let line = format!(
            "retrying dropped.png {pause} because the connection was lost before the answer came"
        );
        assert!(log.contains(&line), "{line:?} in\n{log}");
    }
    bench.next_good_file_goes_through("after-dropped.png");

    // No answer at all: given up on after timeout_s, then retried.
    let case = bench.case("hung.png", &[Fault::Hang]);
    bench.assert_done(&case, 2);
    assert_eq!(case.requests.len(), 2);
    // 2 s of timeout plus 1 s of backoff, counted from before the request was on its way
    // (so minus the time it took to arrive): at least 2 s between the arrivals.
    assert_gaps_at_least(&case.gaps(), &[secs(2.0)], "timeout and backoff");
    assert_eq!(
        case.arrivals[0].status, None,
        "the first one was never answered"
    );
    let log = bench.setup.log_text();
    assert!(
        log.contains("retrying hung.png in 1 s because no answer within 2 s"),
        "{log}"
    );
    bench.server.wait_in_flight(0, PATIENCE).await;
    bench.next_good_file_goes_through("after-hung.png");
}

/// 5xx with and without `Retry-After`, giving up after `max_attempts`, 422 at once, and a
/// 401 on img2img that is not counted as an attempt. With the quick backoff: the real one's
/// schedule is checked by the dropped-connection test, and `Retry-After` still counts whole.
async fn server_errors_play_out(flavor: Flavor, api: &str) {
    let mut bench = Bench::start_with(flavor, api, "max_attempts = 2", Setup::quick_backoff).await;

    let case = bench.case("busy.png", &[status(500, "warming up", None)]);
    bench.assert_done(&case, 2);
    assert_eq!(case.requests.len(), 2);
    assert_gaps_at_least(&case.gaps(), &[quick_pause(1)], "backoff");
    assert_quick_retry_said(
        &bench.setup.log_text(),
        "busy.png",
        1,
        "the server answered 500: warming up (attempt 1 of 2)",
    );
    bench.next_good_file_goes_through("after-500.png");

    let case = bench.case(
        "later.png",
        &[status(503, "busy, come back later", Some(3))],
    );
    bench.assert_done(&case, 2);
    assert_eq!(case.requests.len(), 2);
    assert_gaps_at_least(&case.gaps(), &[secs(3.0)], "Retry-After: 3");
    assert!(
        bench.setup.log_text().contains(
            "retrying later.png in 3 s because the server answered 503: busy, come back later"
        ),
        "{}",
        bench.setup.log_text()
    );
    bench.next_good_file_goes_through("after-503.png");

    let oom = "CUDA out of memory. Tried to allocate 2.00 GiB";
    let case = bench.case(
        "oom.png",
        &[
            status(503, "loading the model", None),
            status(500, oom, None),
        ],
    );
    bench.assert_failed(
        &case,
        2,
        &[
            "gave up after 2 attempts",
            &format!("the server answered 500: {oom}"),
        ],
    );
    assert_eq!(case.requests.len(), 2);
    // The log line may come a moment after the jobs.jsonl line.
    let failed = format!(
        "failed oom.png because gave up after 2 attempts; the last one: the server answered 500: {oom}"
    );
    wait_until(&format!("the log says {failed:?}"), || {
        bench.setup.log_text().contains(&failed)
    });
    bench.next_good_file_goes_through("after-oom.png");

    let detail = r#"Unrecognized keys: ["sharpnes"]"#;
    let case = bench.case("rejected.png", &[status(422, detail, None)]);
    let text = bench.assert_failed(
        &case,
        1,
        &[&format!(
            "refused the request (HTTP 422): {detail} (settings from "
        )],
    );
    assert!(!text.contains("gave up"), "failed at once: {text}");
    assert_eq!(case.requests.len(), 1, "a 422 is never retried");
    bench.next_good_file_goes_through("after-422.png");

    // A 401 means "wait for the server" and is not an attempt: with max_attempts = 2, a
    // 500 after it still leaves one more try.
    let case = bench.case(
        "unauthorized.png",
        &[
            status(401, "Not authenticated", None),
            status(500, "warming up", None),
        ],
    );
    bench.assert_done(&case, 2);
    assert_eq!(case.requests.len(), 3);
    bench.next_good_file_goes_through("after-401.png");

    assert!(
        !bench.setup.log_text().contains("iVBOR"),
        "no image data in the log"
    );
    bench.setup.wait_for_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draw_things_server_errors_are_retried_or_failed_with_the_detail() {
    server_errors_play_out(Flavor::DrawThings, "drawthings").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111_server_errors_are_retried_or_failed_with_the_detail() {
    server_errors_play_out(Flavor::A1111 { auth: None }, "a1111").await;
}

/// The broken answers, each with what the log and `.error.txt` say about it. `pair/` asks
/// for two images.
fn broken_answers() -> Vec<(&'static str, Fault, &'static str)> {
    vec![
        (
            "truncated.png",
            Fault::TruncatedJson,
            "the answer is not the JSON that was expected",
        ),
        (
            "empty.png",
            Fault::EmptyImages,
            "the answer holds no images",
        ),
        (
            "garbled.png",
            Fault::BadBase64,
            "image 1 of the answer is not valid base64",
        ),
        (
            "jpeg.png",
            Fault::NotPng,
            "image 1 of the answer is not a usable PNG",
        ),
        (
            "none.png",
            Fault::ImageCount(0),
            "the answer holds no images",
        ),
        (
            "pair/few.png",
            Fault::ImageCount(1),
            "the server sent 1 image, 2 were asked for",
        ),
    ]
}

/// A bench with the quick backoff (these tests are about what is retried and why) and a
/// `pair/` folder asking for two images.
async fn bench_with_a_pair_profile() -> Bench {
    let bench = Bench::start_with(
        Flavor::DrawThings,
        "drawthings",
        "max_attempts = 2",
        |setup| {
            setup.profile("pair", "batch_count = 2\n");
            setup.quick_backoff()
        },
    )
    .await;
    wait_until("the pair folder exists", || {
        bench.setup.inbox.join("pair").is_dir()
    });
    bench
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_answer_is_retried_and_more_images_than_asked_are_all_kept() {
    let mut bench = bench_with_a_pair_profile().await;
    for (n, (input, fault, reason)) in broken_answers().into_iter().enumerate() {
        let case = bench.case(input, &[fault]);
        bench.assert_done(&case, 2);
        assert_eq!(case.requests.len(), 2, "{input}");
        assert_gaps_at_least(&case.gaps(), &[quick_pause(1)], input);
        assert_quick_retry_said(&bench.setup.log_text(), input, 1, reason);
        bench.next_good_file_goes_through(&format!("good-{n}.png"));
    }
    let few = bench.setup.job_lines();
    let few = few.iter().find(|l| l["input"] == "pair/few.png").unwrap();
    assert_eq!(
        few["outputs"],
        serde_json::json!(["pair/few-1.png", "pair/few-2.png"])
    );

    let case = bench.case("more.png", &[Fault::ImageCount(3)]);
    bench.assert_done(&case, 1);
    assert_eq!(
        case.line["outputs"],
        serde_json::json!(["more-1.png", "more-2.png", "more-3.png"])
    );
    let results: BTreeSet<Vec<u8>> = ["more-1.png", "more-2.png", "more-3.png"]
        .iter()
        .map(|name| bench.setup.read_out(name))
        .collect();
    assert_eq!(results.len(), 3, "three different pictures");
    assert!(!bench.setup.outbox.join("more.png").exists());
    bench.next_good_file_goes_through("after-more.png");
    assert!(bench.failed_files().is_empty(), "nothing failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_broken_at_every_attempt_fails_with_a_readable_reason() {
    let mut bench = bench_with_a_pair_profile().await;
    for (n, (input, fault, reason)) in broken_answers().into_iter().enumerate() {
        let case = bench.case(input, &[fault.clone(), fault]);
        let text = bench.assert_failed(
            &case,
            2,
            &[&format!("gave up after 2 attempts; the last one: {reason}")],
        );
        assert_eq!(case.requests.len(), 2, "{input}");
        assert_gaps_at_least(&case.gaps(), &[quick_pause(1)], input);
        assert!(!text.contains("iVBOR"), "no image data: {text}");
        bench.next_good_file_goes_through(&format!("good-{n}.png"));
    }
    assert!(
        !bench.setup.log_text().contains("iVBOR"),
        "no image data in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111_refusing_the_credentials_is_waited_for_and_nothing_fails() {
    const VARIABLE: &str = "DRAWDROP_FAULTS_TEST_PASSWORD";
    let server = FakeServer::start(Flavor::A1111 {
        auth: Some(("me".into(), "right-horse-battery".into())),
    })
    .await;
    let arrivals = Arrivals::watch(&server);
    let setup = Setup::with(
        &server.url(),
        "a1111",
        300,
        "",
        &format!("username = \"me\"\npassword_env = \"{VARIABLE}\""),
    );
    let mut daemon = setup.start_daemon_with(&[(VARIABLE, "wrong-staple")]);
    daemon.wait_for_output("refuses drawdrop's credentials");
    let picture = png(128, 128, 1);
    setup.drop_file("cat.png", &picture);

    // GET /sdapi/v1/options is probed with growing pauses: 250 ms, 500 ms, 1 s ...
    let options = "/sdapi/v1/options";
    wait_until("four probes", || arrivals.gets(options).len() >= 4);
    let probes = arrivals.gets(options);
    assert!(probes.iter().all(|p| p.status == Some(401)), "{probes:?}");
    assert_gaps_at_least(
        &gaps(&probes[..4]),
        &[secs(0.25), secs(0.5), secs(1.0)],
        "probe backoff",
    );
    assert!(daemon.try_exit().is_none(), "{}", daemon.output());
    assert_eq!(setup.inbox_files(), set(&["cat.png"]), "the file waits");
    assert!(setup.outbox_files().is_empty(), "nothing failed");
    assert!(setup.job_lines().is_empty());
    assert!(server.img2img_requests().is_empty(), "nothing is sent");
    let log = setup.log_text();
    assert!(
        log.contains("the server refuses drawdrop's credentials (401 Unauthorized): check `username` and `password_env` in the config"),
        "{log}"
    );

    // With the right password the waiting file goes through.
    let (status, _) = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let first_stderr = daemon.output();
    let mut daemon = setup.start_daemon_with(&[(VARIABLE, "right-horse-battery")]);
    let line = wait_for_job(&setup, "cat.png");
    assert_eq!(line["outcome"], "done", "{line}");
    assert_eq!(line["attempts"], 1, "{line}");
    assert_eq!(setup.outbox_files(), set(&["cat.png", "originals/cat.png"]));
    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].header("authorization").is_some());
    assert!(daemon.try_exit().is_none(), "{}", daemon.output());
    let everything = format!(
        "{first_stderr}{}{}{}",
        daemon.output(),
        setup.log_text(),
        std::fs::read_to_string(setup.outbox.join("logs/jobs.jsonl")).unwrap()
    );
    for secret in ["wrong-staple", "right-horse-battery"] {
        assert!(!everything.contains(secret), "a password reached a log");
    }
}
