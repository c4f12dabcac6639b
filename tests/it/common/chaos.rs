//! A seeded chaos run through the real binary: files dropped in bursts (good pictures in
//! several profile folders, known-bad ones, junk to leave alone) while the daemon is killed
//! with SIGKILL (now and then stopped with SIGTERM) at random moments and the fake server
//! answers with random faults and delays; then a last run until everything is finished, and
//! the invariant check ([`super::invariants`]). With [`Plan::comfyui`] a fake ComfyUI joins
//! the pool, taking the files of two workflow profiles (`invert/`: LoadImage -> ImageInvert
//! -> SaveImage; `pair/`: the same plus a second SaveImage of the picture as it is), with
//! its own random faults: 500s and dropped connections on its job routes (upload, prompt,
//! history, view, the websocket), execution errors, websockets cut after a few messages.
//!
//! Everything random comes from one seed, printed first, so a failure can be replayed (the
//! interleaving with the daemon's own timing cannot be replayed exactly, but the files, the
//! kill schedule and the fault sequence are the same).

use super::invariants::{self, Checked, ComfyUiSeen, Dropped, Look};
use super::{Daemon, PATIENCE, Setup, invert_workflow, wait_until_within};
use crate::fakes::comfyui::{FakeComfyUi, HttpFault, PromptState};
use crate::fakes::server::{FakeServer, Fault, Flavor};
use crate::pictures::{jpeg_bytes, png, truncated, with_text};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that overrides the seed.
pub const SEED_ENV: &str = "DRAWDROP_CHAOS_SEED";

/// What a chaos run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    /// Inputs to drop (one in ten is known-bad).
    pub files: usize,
    /// Requests in flight (`[server] concurrency`).
    pub concurrency: u32,
    /// Chance that an img2img request gets a random fault.
    pub fault_rate: f64,
    /// The fake's generation time is drawn anew after every stop from 0..=this.
    pub max_delay_ms: u64,
    /// A stop comes this long (drawn from the range) after the daemon was started.
    pub stop_after_ms: (u64, u64),
    /// Files per burst (drawn from the range).
    pub burst: (usize, usize),
    /// Kills (SIGKILL) at least this many times, and until every burst is dropped.
    pub min_kills: usize,
    /// Chance that a stop is a SIGTERM (waited for) instead of a SIGKILL.
    pub term_rate: f64,
    /// How long the last run may take to finish everything.
    pub drain_limit: Duration,
    /// A fake ComfyUI in the pool, with this chance of a fault for each request to one of
    /// its job routes; `None`: Draw Things alone.
    pub comfyui: Option<f64>,
}

impl Plan {
    /// The seed from `DRAWDROP_CHAOS_SEED`, else `default`.
    pub fn seed_from_env(default: u64) -> u64 {
        match std::env::var(SEED_ENV) {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a number")),
            Err(_) => default,
        }
    }
}

/// What a chaos run did, and the check of its end state.
pub struct Outcome {
    pub checked: Checked,
    pub kills: usize,
    pub terms: usize,
    pub bursts: usize,
    pub took: Duration,
    pub drain: Duration,
    /// Faults the fake ComfyUI answered with (HTTP ones and execution errors).
    pub comfyui_faults: usize,
    /// Inputs dropped into the workflow profiles' folders (good ones).
    pub comfyui_files: usize,
    /// Kept on failure, so the logs can be read.
    pub kept: Option<std::path::PathBuf>,
}

impl Outcome {
    /// One line of figures.
    pub fn summary(&self, plan: &Plan) -> String {
        let f = &self.checked.figures;
        format!(
            "seed {}: {} files in {} bursts, {} SIGKILLs, {} SIGTERMs, {} requests, {} faults injected, \
             {} resends ({} inputs), done {}, failed {} (known-bad {}, given up {}), lost {}, \
             duplicates {}, duplicate journal lines {}, empty staging folders {}; ComfyUI: {} \
             files, {} prompts ({} failed), {} faults, {} inputs prompted twice; {:.1} s \
             (last run {:.1} s)",
            plan.seed,
            f.files,
            self.bursts,
            self.kills,
            self.terms,
            f.requests,
            f.faults,
            f.resends,
            f.resent_inputs,
            f.done,
            f.failed_bad + f.failed_given_up,
            f.failed_bad,
            f.failed_given_up,
            f.lost,
            f.duplicates,
            f.journal_duplicates,
            f.empty_staging_folders,
            self.comfyui_files,
            f.prompts,
            f.failed_prompts,
            self.comfyui_faults,
            f.inputs_prompted_twice,
            self.took.as_secs_f64(),
            self.drain.as_secs_f64()
        )
    }
}

const WATERCOLOR: &str =
    "prompt = \"a watercolor painting of {name}\"\nstrength = 0.6\nsteps = 4\n";
const DUO: &str = "batch_count = 2\n";

/// Runs the plan. Panics only on harness trouble; the invariants are in the outcome.
pub fn run(plan: &Plan) -> Outcome {
    eprintln!(
        "chaos: seed {} (replay with {SEED_ENV}={})",
        plan.seed, plan.seed
    );
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let mut faults = fastrand::Rng::with_seed(plan.seed ^ 0x5EED_FA17);
    let fault_rate = plan.fault_rate;
    server.set_fault_source(move || {
        if faults.f64() >= fault_rate {
            return None;
        }
        Some(match faults.u32(0..6) {
            0 => Fault::Status {
                code: 500,
                detail: "chaos: internal error".into(),
                retry_after: None,
            },
            1 => Fault::Status {
                code: 503,
                detail: "chaos: busy".into(),
                retry_after: Some(1),
            },
            2 => Fault::CloseWithoutAnswer,
            3 => Fault::TruncatedJson,
            4 => Fault::EmptyImages,
            _ => Fault::NotPng,
        })
    });

    let setup = Setup::with(
        &server.url(),
        "drawthings",
        150,
        "",
        &format!("concurrency = {}\nmax_attempts = 3\n", plan.concurrency),
    );
    setup.profile("watercolor", WATERCOLOR).profile("duo", DUO);
    let comfyui_faults = Arc::new(AtomicUsize::new(0));
    let comfyui = plan.comfyui.map(|rate| {
        let fake = runtime.block_on(FakeComfyUi::start());
        let mut faults = fastrand::Rng::with_seed(plan.seed ^ 0xC0F_FEE);
        let counted = comfyui_faults.clone();
        fake.set_fault_source(move |method, path| {
            let job_route = matches!(
                (method, path),
                ("POST", "/upload/image" | "/prompt") | ("GET", "/view" | "/ws")
            ) || path.starts_with("/history/");
            if !job_route || faults.f64() >= rate {
                return None;
            }
            counted.fetch_add(1, Ordering::Relaxed);
            Some(if faults.bool() {
                HttpFault::Status(500)
            } else {
                HttpFault::Drop
            })
        });
        setup
            .add_comfyui_server("comfy", &fake.url(), "max_attempts = 3\ntimeout_s = 60\n")
            .workflow_profile("invert", &invert_workflow(), "")
            .workflow_profile("pair", &pair_workflow(), "");
        fake
    });

    let mut dropped = Dropped::default();
    for (relative, bytes) in [
        ("notes.txt", b"not a picture".to_vec()),
        (".hidden.png", png(128, 128, 999_999)),
        ("photo.png.part", truncated(&png(128, 128, 999_998))),
        ("watercolor/readme.md", b"# styles".to_vec()),
    ] {
        setup.drop_file(relative, &bytes);
        dropped.junk(relative, bytes);
    }
    let planned = plan_files(plan, &mut rng);
    let mut bursts: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    let mut queue = planned.into_iter().peekable();
    while queue.peek().is_some() {
        let size = rng.usize(plan.burst.0..=plan.burst.1);
        let mut burst = Vec::new();
        for _ in 0..size {
            let Some((relative, bytes, kind)) = queue.next() else {
                break;
            };
            match kind {
                Kind::Good(images) => dropped.good(&relative, bytes.clone(), images),
                Kind::Workflow(looks) => dropped.good_for_comfyui(&relative, bytes.clone(), looks),
                Kind::Bad => dropped.bad(&relative, bytes.clone()),
            }
            burst.push((relative, bytes));
        }
        bursts.push(burst);
    }
    let burst_count = bursts.len();
    let mut bursts = bursts.into_iter();
    let drop_burst = |burst: Vec<(String, Vec<u8>)>| {
        for (relative, bytes) in burst {
            setup.drop_file(&relative, &bytes);
        }
    };

    let mut verified = std::collections::HashSet::new();
    let mut seen_half_written = Vec::new();
    let (mut kills, mut terms) = (0, 0);
    let mut daemon = setup.start_daemon();
    let mut stops = 0;
    loop {
        let remaining = bursts.len();
        if kills >= plan.min_kills && remaining == 0 {
            break;
        }
        if let Some(burst) = bursts.next() {
            drop_burst(burst);
        }
        // The one deliberate sleep: a stop at a random moment.
        let wait = rng.u64(plan.stop_after_ms.0..=plan.stop_after_ms.1);
        std::thread::sleep(Duration::from_millis(wait));
        if rng.f64() < plan.term_rate {
            stop_gracefully(&mut daemon);
            terms += 1;
        } else {
            daemon.kill_hard();
            kills += 1;
        }
        stops += 1;
        for file in invariants::incomplete_pictures(&setup.outbox, &mut verified) {
            seen_half_written.push(format!(
                "a half-written picture was visible after stop {stops}: {file}"
            ));
        }
        server.set_delay(Duration::from_millis(rng.u64(0..=plan.max_delay_ms)));
        if let Some(fake) = &comfyui {
            if rng.f64() < 0.1 {
                fake.fail_next_prompts(1, "chaos: CUDA out of memory");
                comfyui_faults.fetch_add(1, Ordering::Relaxed);
            }
            // Websockets cut after a few messages now and then (the history is polled).
            let cut = (rng.f64() < 0.2).then(|| rng.usize(1..=8));
            fake.cut_websockets_after(cut);
        }
        if rng.bool()
            && let Some(burst) = bursts.next()
        {
            // Dropped while no daemon runs: found by the start-up scan.
            drop_burst(burst);
        }
        daemon = setup.start_daemon();
    }

    let drain_started = Instant::now();
    wait_until_within(
        "everything dropped is finished (inbox empty, no claimed job)",
        plan.drain_limit,
        || setup.is_finished(),
    );
    let drain = drain_started.elapsed();
    stop_gracefully(&mut daemon);
    drop(daemon);
    let answers = server.img2img_answers();
    let budget = (kills + terms) * plan.concurrency as usize;
    let seen = comfyui.as_ref().map(seen_by).unwrap_or_default();
    let mut checked = invariants::check_with_comfyui(
        &setup.inbox,
        &setup.outbox,
        &dropped,
        &answers,
        &seen,
        budget,
    );
    checked.violations.extend(seen_half_written);
    let kept = if checked.is_ok() {
        None
    } else {
        let Setup { dir, .. } = setup;
        Some(dir.keep())
    };
    let comfyui_files = dropped
        .inputs
        .values()
        .filter(|input| matches!(input.made_by, invariants::MadeBy::ComfyUi(_)))
        .count();
    drop(comfyui);
    drop(runtime);
    Outcome {
        checked,
        kills,
        terms,
        bursts: burst_count,
        took: started.elapsed(),
        drain,
        comfyui_faults: comfyui_faults.load(Ordering::Relaxed),
        comfyui_files,
        kept,
    }
}

/// The fake ComfyUI's prompts, once none waits or runs (a prompt of an input that was given
/// up may still be running when its file failed), and its uploads.
fn seen_by(fake: &FakeComfyUi) -> ComfyUiSeen {
    let settled = |fake: &FakeComfyUi| {
        fake.prompts()
            .iter()
            .all(|p| matches!(p.state, PromptState::Succeeded | PromptState::Failed))
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while !settled(fake) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let uploads = fake
        .files("input")
        .into_iter()
        .filter_map(|name| Some((name.clone(), fake.file("input", "", &name)?)))
        .collect();
    ComfyUiSeen {
        prompts: fake.prompts(),
        uploads,
    }
}

/// The invert workflow plus a second SaveImage (node 4) of the picture as it is: results
/// `-1` inverted, `-2` the same.
fn pair_workflow() -> serde_json::Value {
    let mut workflow = invert_workflow();
    workflow["4"] = serde_json::json!({"class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "plain"}});
    workflow
}

/// SIGTERM, once drawdrop is up (a SIGTERM in its first milliseconds, before it has set up
/// its handler, ends it like a kill), and waits for it to exit.
fn stop_gracefully(daemon: &mut Daemon) {
    daemon.wait_for_output("watching");
    let (status, _) = daemon.terminate(Duration::from_secs(30));
    assert!(
        status.success() || status.signal() == Some(libc::SIGTERM),
        "drawdrop did not stop cleanly on SIGTERM: {status:?}\n{}",
        daemon.output()
    );
}

enum Kind {
    /// For Draw Things, making this many images.
    Good(usize),
    /// For ComfyUI, one result per look.
    Workflow(Vec<Look>),
    Bad,
}

/// The inputs: names unique across folders, sides multiples of 64 (so the fake answers with
/// the input's own pixels), one in ten known-bad.
fn plan_files(plan: &Plan, rng: &mut fastrand::Rng) -> Vec<(String, Vec<u8>, Kind)> {
    const SIDES: [u32; 3] = [128, 192, 256];
    let mut files = Vec::with_capacity(plan.files);
    // With ComfyUI, about one file in four goes to a workflow profile.
    let kinds = if plan.comfyui.is_some() { 26 } else { 20 };
    for i in 0..plan.files {
        let (folder, images) = match rng.u32(0..kinds) {
            0..=9 => ("", 1),
            10..=14 => ("watercolor/", 1),
            15..=17 => ("duo/", 2),
            18..=19 => ("watercolor/sub/", 1),
            20..=22 => ("invert/", 1),
            23 => ("invert/sub/", 1),
            _ => ("pair/", 2),
        };
        let extension = if rng.u32(0..8) == 0 { "PNG" } else { "png" };
        let relative = format!("{folder}f{i:04}.{extension}");
        if i % 10 == 7 {
            let bytes = match rng.u32(0..4) {
                0 => jpeg_bytes(),
                1 => truncated(&png(128, 128, 1_000_000 + i as u32)),
                2 => format!("not a picture #{i}").into_bytes(),
                _ => Vec::new(),
            };
            files.push((relative, bytes, Kind::Bad));
        } else {
            let (width, height) = (SIDES[rng.usize(0..3)], SIDES[rng.usize(0..3)]);
            // The pixels repeat every 256 seeds; a text chunk makes every file unique.
            let bytes = with_text(&png(width, height, i as u32 + 1), "chaos", &relative);
            let kind = match folder {
                "invert/" | "invert/sub/" => Kind::Workflow(vec![Look::Inverted]),
                "pair/" => Kind::Workflow(vec![Look::Inverted, Look::Same]),
                _ => Kind::Good(images),
            };
            files.push((relative, bytes, kind));
        }
    }
    files
}
