//! The soak run: at least 1,000 files through the real binary, in a pool of a fake Draw
//! Things and a fake ComfyUI (workflow profiles), while it is killed with SIGKILL at random
//! moments and both fake servers fault at random, then every invariant of
//! `common::invariants` for both. Ignored by default (it takes minutes); run it on demand:
//!
//! ```sh
//! cargo test --release --test it soak -- --ignored --nocapture
//! DRAWDROP_SOAK_FILES=5000 DRAWDROP_CHAOS_SEED=7 cargo test --release --test it soak -- --ignored --nocapture
//! ```

use crate::common::chaos::{self, Plan};
use std::time::Duration;

/// The environment variable with the number of files (default 1,000).
const FILES_ENV: &str = "DRAWDROP_SOAK_FILES";

#[test]
#[ignore = "minutes long: cargo test --release --test it soak -- --ignored --nocapture"]
fn soak_thousands_of_files_through_random_kills_and_server_faults() {
    let files = match std::env::var(FILES_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{FILES_ENV}={text:?} is not a number")),
        Err(_) => 1000,
    };
    let seed = Plan::seed_from_env(1_000);
    let plan = Plan {
        seed,
        files,
        concurrency: 2,
        fault_rate: 0.15,
        max_delay_ms: 40,
        stop_after_ms: (20, 800),
        burst: (1, 6),
        min_kills: 250,
        term_rate: 0.05,
        drain_limit: Duration::from_secs(600),
        comfyui: Some(0.05),
    };
    let outcome = chaos::run(&plan);
    let f = &outcome.checked.figures;
    let rows = [
        ("seed", seed.to_string()),
        ("files", f.files.to_string()),
        ("kills (SIGKILL)", outcome.kills.to_string()),
        ("graceful stops (SIGTERM)", outcome.terms.to_string()),
        (
            "files for ComfyUI (workflow profiles)",
            outcome.comfyui_files.to_string(),
        ),
        ("faults injected (Draw Things)", f.faults.to_string()),
        (
            "faults injected (ComfyUI)",
            outcome.comfyui_faults.to_string(),
        ),
        ("img2img requests", f.requests.to_string()),
        (
            "ComfyUI prompts queued (failed in ComfyUI)",
            format!("{} ({})", f.prompts, f.failed_prompts),
        ),
        (
            "inputs with two successful prompts",
            f.inputs_prompted_twice.to_string(),
        ),
        (
            "resends (answers beyond the first)",
            format!("{} ({} inputs)", f.resends, f.resent_inputs),
        ),
        ("files done", f.done.to_string()),
        (
            "files failed",
            format!(
                "{} (known-bad {}, given up after retries {})",
                f.failed_bad + f.failed_given_up,
                f.failed_bad,
                f.failed_given_up
            ),
        ),
        ("files lost", f.lost.to_string()),
        ("duplicates", f.duplicates.to_string()),
        (
            "duplicate jobs.jsonl lines",
            f.journal_duplicates.to_string(),
        ),
        (
            "empty job folders left in staging",
            f.empty_staging_folders.to_string(),
        ),
        (
            "invariant violations",
            outcome.checked.violations.len().to_string(),
        ),
        (
            "run time",
            format!(
                "{:.0} s (last run {:.0} s)",
                outcome.took.as_secs_f64(),
                outcome.drain.as_secs_f64()
            ),
        ),
    ];
    let mut table = String::from("| figure | value |\n|---|---|\n");
    for (name, value) in rows {
        table.push_str(&format!("| {name} | {value} |\n"));
    }
    println!("{table}");
    assert!(
        outcome.checked.is_ok(),
        "soak failed; replay with {}={seed} {FILES_ENV}={files}\n{}\n{}\nfolders kept in {:?}",
        chaos::SEED_ENV,
        outcome.summary(&plan),
        outcome.checked,
        outcome.kept
    );
}
