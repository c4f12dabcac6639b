//! Crash safety, end to end through the real binary: `kill -9` (or an abort at one of
//! drawdrop's crash points, `DRAWDROP_CRASH_AT`) at any moment, then a restart, and every
//! input ends as exactly one set of results plus its archived original, or in `failed/`
//! with its reason; nothing lost, nothing written twice, nothing half-written visible,
//! nothing left behind, and at most the job in flight sent again. The invariants are
//! checked by `common::invariants`.
//!
//! - one test per crash point (claimed, staged, committed, input-moved, placed-one,
//!   journaled), for a picture that succeeds and for a known-bad one;
//! - the windows no crash point reaches (between the hard link and the unlink of a
//!   no-replace rename; in the middle of a cross-device copy), recreated on disk as a kill
//!   there leaves them;
//! - `kill -9` while a file is still being written into the inbox;
//! - a seeded chaos run: ~40 files in bursts, 10-15 random kills, random server faults.
//!   `DRAWDROP_CHAOS_SEED=N cargo test --test it crash::chaos` replays a seed.

use crate::common::chaos::{self, Plan};
use crate::common::invariants::{self, Checked, Dropped};
use crate::common::{Daemon, PATIENCE, Setup, runtime, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use crate::pictures::{png, truncated};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CRASH_AT: &str = "DRAWDROP_CRASH_AT";

/// A fake Draw Things and a drawdrop set-up with a `duo` profile (two images per input).
fn start() -> (tokio::runtime::Runtime, FakeServer, Setup) {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::with(&server.url(), "drawthings", 100, "", "");
    setup.profile("duo", "batch_count = 2\n");
    (runtime, server, setup)
}

/// Waits until the daemon aborted by itself at `point` (`name` or `name:n`).
fn wait_for_crash(daemon: &mut Daemon, point: &str) {
    let status = daemon.wait_exit(PATIENCE);
    let name = point.split(':').next().unwrap_or(point);
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "drawdrop should have aborted at {point}: {status:?}\n{}",
        daemon.output()
    );
    assert!(
        daemon
            .output()
            .contains(&format!("crash point {name} reached")),
        "{}",
        daemon.output()
    );
}

/// Restarts drawdrop, waits until everything is finished, stops it and checks the invariants.
fn restart_and_check(
    setup: &Setup,
    server: &FakeServer,
    dropped: &Dropped,
    kills: usize,
    before: &[&Daemon],
) -> Checked {
    let mut daemon = setup.start_daemon();
    wait_until("everything is finished after the restart", || {
        setup.is_finished()
    });
    daemon.wait_for_output("watching");
    let (status, _) = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", daemon.output());
    let checked = invariants::check(
        &setup.inbox,
        &setup.outbox,
        dropped,
        &server.img2img_answers(),
        kills,
    );
    if !checked.is_ok() {
        let mut logs = String::new();
        for (n, earlier) in before.iter().enumerate() {
            logs.push_str(&format!("--- run {} ---\n{}\n", n + 1, earlier.output()));
        }
        logs.push_str(&format!("--- last run ---\n{}\n", daemon.output()));
        panic!("{checked}\n{logs}");
    }
    checked
}

/// Drops one input, lets drawdrop abort at `point`, restarts it, and checks the invariants
/// and that the server answered the input `sends` times in all.
fn crash_at(point: &str, relative: &str, bytes: Vec<u8>, bad: bool, sends: usize) {
    let (_runtime, server, setup) = start();
    let mut dropped = Dropped::default();
    let images = if relative.starts_with("duo/") { 2 } else { 1 };
    if bad {
        dropped.bad(relative, bytes.clone());
    } else {
        dropped.good(relative, bytes.clone(), images);
    }
    dropped.junk("notes.txt", b"left alone".to_vec());
    setup.drop_file("notes.txt", b"left alone");

    let mut first = setup.start_daemon_with(&[(CRASH_AT, point)]);
    setup.drop_file(relative, &bytes);
    wait_for_crash(&mut first, point);
    let half = invariants::incomplete_pictures(&setup.outbox, &mut Default::default());
    assert!(half.is_empty(), "half-written pictures visible: {half:?}");

    let checked = restart_and_check(&setup, &server, &dropped, 1, &[&first]);
    assert_eq!(
        checked.figures.good_answers, sends,
        "answers with images for {relative} after a crash at {point}\n{checked}"
    );
    assert_eq!(
        checked.figures.requests, sends,
        "requests for {relative} after a crash at {point}\n{checked}"
    );
}

fn good_picture() -> Vec<u8> {
    png(256, 192, 7)
}

fn bad_picture() -> Vec<u8> {
    truncated(&png(256, 192, 8))
}

#[test]
fn crash_after_the_claim_sends_once_after_the_restart() {
    crash_at("claimed", "cat.png", good_picture(), false, 1);
}

#[test]
fn crash_after_staging_sends_again_once() {
    crash_at("staged", "cat.png", good_picture(), false, 2);
}

#[test]
fn crash_after_staging_several_results_sends_again_once() {
    crash_at("staged", "duo/sub/pair.png", good_picture(), false, 2);
}

#[test]
fn crash_after_the_commit_finishes_without_sending_again() {
    crash_at("committed", "cat.png", good_picture(), false, 1);
}

#[test]
fn crash_after_the_input_moved_finishes_without_sending_again() {
    crash_at("input-moved", "cat.png", good_picture(), false, 1);
}

#[test]
fn crash_after_the_first_result_was_placed_places_the_rest_once() {
    crash_at("placed-one", "cat.png", good_picture(), false, 1);
}

#[test]
fn crash_after_the_second_of_three_files_was_placed_places_the_rest_once() {
    crash_at("placed-one:2", "duo/pair.png", good_picture(), false, 1);
}

#[test]
fn crash_after_the_journal_line_writes_no_second_line() {
    crash_at("journaled", "cat.png", good_picture(), false, 1);
}

#[test]
fn a_broken_file_claimed_at_a_crash_fails_once_after_the_restart() {
    crash_at("claimed", "broken.png", bad_picture(), true, 0);
}

#[test]
fn a_broken_file_committed_at_a_crash_fails_once_after_the_restart() {
    crash_at("committed", "broken.png", bad_picture(), true, 0);
}

#[test]
fn a_broken_file_moved_at_a_crash_fails_once_after_the_restart() {
    crash_at("input-moved", "broken.png", bad_picture(), true, 0);
}

#[test]
fn a_broken_file_half_placed_at_a_crash_fails_once_after_the_restart() {
    crash_at("placed-one", "broken.png", bad_picture(), true, 0);
}

#[test]
fn a_broken_file_journaled_at_a_crash_gets_one_journal_line() {
    crash_at("journaled", "broken.png", bad_picture(), true, 0);
}

/// The one folder under `dir` (a job's or its staging folder).
fn only_folder(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}

/// `place` moves a staged file into the outbox with a hard link (which never replaces a
/// file) and then unlinks the staged name. A kill between the two leaves the file under both
/// names; the restart must not place it a second time as `cat (2).png`.
#[test]
fn a_kill_between_link_and_unlink_while_placing_writes_no_second_copy() {
    let (_runtime, server, setup) = start();
    let picture = good_picture();
    let mut dropped = Dropped::default();
    dropped.good("cat.png", picture.clone(), 1);
    let mut first = setup.start_daemon_with(&[(CRASH_AT, "placed-one")]);
    setup.drop_file("cat.png", &picture);
    wait_for_crash(&mut first, "placed-one");
    // Staged in path order: `cat.png` is placed, `originals/cat.png` not yet. Put the
    // placed result's staged name back, as the unlink that a kill prevented would have left it.
    let staging = only_folder(&setup.outbox.join(".drawdrop/staging"));
    assert!(setup.outbox.join("cat.png").is_file());
    std::fs::hard_link(setup.outbox.join("cat.png"), staging.join("cat.png")).unwrap();

    restart_and_check(&setup, &server, &dropped, 1, &[&first]);
}

/// Putting a claimed input back into the inbox (on SIGTERM, or when it changed after it
/// settled) links it into the inbox, then forgets the job. A kill between the two leaves
/// the input both in the inbox and in the job; after the restart it must still be done once.
#[test]
fn a_kill_between_link_and_unlink_while_putting_back_takes_the_file_once() {
    let (runtime, server, setup) = start();
    server.push_fault(Fault::Hang);
    let picture = good_picture();
    let mut dropped = Dropped::default();
    dropped.good("cat.png", picture.clone(), 1);
    let mut first = setup.start_daemon();
    setup.drop_file("cat.png", &picture);
    runtime.block_on(server.wait_in_flight(1, PATIENCE));
    first.kill_hard();
    let job = only_folder(&setup.inbox.join(".drawdrop/jobs"));
    std::fs::hard_link(job.join("in/cat.png"), setup.inbox.join("cat.png")).unwrap();

    let checked = restart_and_check(&setup, &server, &dropped, 1, &[&first]);
    assert_eq!(checked.figures.good_answers, 1, "{checked}");
}

/// When the inbox and the outbox are on different file systems, archiving the input copies
/// it into the job's staging folder under a hidden temporary name, then renames it. A kill
/// during the copy leaves that temporary behind; the restart must neither place it into the
/// outbox (a hidden `.tmp` file in `originals/`) nor leave it in staging.
#[test]
fn a_kill_during_a_cross_device_copy_leaves_no_temporary_behind() {
    let (_runtime, server, setup) = start();
    let picture = good_picture();
    let mut dropped = Dropped::default();
    dropped.good("cat.png", picture.clone(), 1);
    let mut first = setup.start_daemon_with(&[(CRASH_AT, "committed")]);
    setup.drop_file("cat.png", &picture);
    wait_for_crash(&mut first, "committed");
    // What a kill in the middle of `fs::copy` into staging leaves (the copy is named after
    // the process that made it).
    let staging = only_folder(&setup.outbox.join(".drawdrop/staging"));
    std::fs::create_dir_all(staging.join("originals")).unwrap();
    std::fs::write(
        staging.join("originals/.cat.png.drawdrop-4242.tmp"),
        &picture[..picture.len() / 2],
    )
    .unwrap();

    restart_and_check(&setup, &server, &dropped, 1, &[&first]);
}

/// `kill -9` while a file is still being written into the inbox (settling), a restart
/// while the writer goes on: the file is taken once, complete.
#[test]
fn a_kill_while_a_file_is_settling_takes_it_once_complete() {
    let runtime = runtime();
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::with(&server.url(), "drawthings", 1000, "", "");
    let picture = png(512, 384, 11);
    let mut dropped = Dropped::default();
    dropped.good("slow.png", picture.clone(), 1);
    let mut first = setup.start_daemon();
    first.wait_for_output("watching");

    let chunks: Vec<&[u8]> = picture.chunks(picture.len().div_ceil(24)).collect();
    let mut file = std::fs::File::create(setup.inbox.join("slow.png")).unwrap();
    let mut second = None;
    for (n, chunk) in chunks.iter().enumerate() {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        // A slow copier: pauses well below settle_ms.
        std::thread::sleep(Duration::from_millis(100));
        if n == 8 {
            first.kill_hard();
        }
        if n == 12 {
            second = Some(setup.start_daemon());
        }
    }
    drop(file);
    let second = second.expect("restarted");
    wait_until("the slow file is finished", || {
        setup.is_finished() && setup.outbox.join("slow.png").exists()
    });
    drop(second);
    let checked = invariants::check(
        &setup.inbox,
        &setup.outbox,
        &dropped,
        &server.img2img_answers(),
        0,
    );
    assert!(checked.is_ok(), "{checked}");
    let requests = server.img2img_requests();
    assert_eq!(requests.len(), 1, "taken once");
    assert_eq!(requests[0].init_image().unwrap(), picture, "taken complete");
}

/// ~40 files, some known-bad, some in profile folders (one making two images), dropped in
/// bursts while drawdrop is killed 10-15 times at random moments and the server faults at
/// random; then a last run until everything is finished, and every invariant.
#[test]
fn chaos_random_kills_and_server_faults_lose_and_duplicate_nothing() {
    let seed = Plan::seed_from_env(20_251_126);
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = Plan {
        seed,
        files: 40,
        concurrency: 2,
        fault_rate: 0.3,
        max_delay_ms: 60,
        stop_after_ms: (20, 600),
        burst: (2, 6),
        min_kills: rng.usize(10..=15),
        term_rate: 0.1,
        drain_limit: Duration::from_secs(120),
        comfyui: None,
    };
    let outcome = chaos::run(&plan);
    let summary = outcome.summary(&plan);
    eprintln!("{summary}");
    assert!(
        outcome.checked.is_ok(),
        "chaos failed; replay with {}={seed}\n{summary}\n{}\nfolders kept in {:?}",
        chaos::SEED_ENV,
        outcome.checked,
        outcome.kept
    );
    assert!(outcome.kills >= 1, "{summary}");
}

/// A file that makes drawdrop crash at every start is set aside after ten restarts,
/// instead of keeping the daemon (and launchd's restarts) busy forever.
#[test]
fn a_file_that_crashes_drawdrop_every_time_is_failed_after_ten_restarts() {
    let (_runtime, server, setup) = start();
    let picture = good_picture();
    setup.drop_file("poison.png", &picture);
    // The first run claims it; each run after that resumes it; every run dies after staging.
    for _ in 0..11 {
        let mut daemon = setup.start_daemon_with(&[(CRASH_AT, "staged")]);
        wait_for_crash(&mut daemon, "staged");
    }
    let mut daemon = setup.start_daemon_with(&[(CRASH_AT, "staged")]);
    wait_until("the file is set aside", || {
        setup.outbox.join("failed/poison.png.error.txt").exists()
    });
    let (status, _) = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "the fifth run did not crash: {status:?}");
    let reason = String::from_utf8(setup.read_out("failed/poison.png.error.txt")).unwrap();
    assert!(reason.contains("drawdrop stopped 11 times"), "{reason}");
    assert_eq!(setup.read_out("failed/poison.png"), picture);
    assert_eq!(
        server.img2img_requests().len(),
        11,
        "never sent after the tenth restart"
    );
    wait_until("nothing left", || setup.leftovers().is_empty());
}
