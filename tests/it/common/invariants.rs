//! The crash-safety invariants of drawdrop's guarantees (README, "How it keeps its promises"), checked on the
//! final state of an inbox and an outbox after any number of crashes and restarts.
//!
//! Given what was dropped (relative path -> bytes, which inputs are known-bad, how many images
//! each makes) and how the fake server answered, [`check`] verifies that:
//!
//! - every input ends either (a) as exactly one result set (`<stem>.png`, or `<stem>-1..N.png`)
//!   plus exactly one original in `originals/`, byte-identical, or (b) in `failed/`,
//!   byte-identical, with its `.error.txt`; never both, never neither (that is a lost input);
//! - known-bad inputs fail and are never sent; a good input fails only because its retries ran
//!   out (the server faults are random);
//! - no ` (N)` copy of any input's result, original or failed name exists (a result written
//!   twice), and no other file than those appears in the outbox (besides `logs/` and `gallery/`);
//! - every result is a complete PNG (signature, `IEND` last, decodes with `image`) carrying
//!   the fake's tag and the input's pixels (the fake answers an image of the right size with
//!   its own bytes plus a `tEXt` chunk, so inputs whose sides are multiples of 64 come back
//!   pixel for pixel);
//! - nothing is left in `inbox/.drawdrop/jobs/` or `outbox/.drawdrop/staging/`, no hidden
//!   or `.tmp` file anywhere in the outbox, and the inbox holds nothing but its untouched junk;
//! - `logs/jobs.jsonl` has exactly one line per input, with the right outcome;
//! - resends: counting, per input (identified by the init image's bytes), the img2img
//!   requests the fake answered with a real 200, the answers beyond the first add up to at
//!   most the budget given (kills x concurrency: only the jobs in flight at a kill may be
//!   sent again), and no request was sent for a known-bad input or for nothing dropped;
//! - with a fake ComfyUI in the pool ([`check_with_comfyui`]): its inputs' results carry
//!   the workflow in a `prompt` chunk and the pixels each SaveImage node gives (the input's,
//!   or inverted); every prompt it was given finished and loads the bytes of an input of a
//!   workflow profile (never a known-bad one, never a Draw Things one, which in turn never
//!   reaches ComfyUI); each done input was made by exactly one successful prompt and a
//!   failed one by at most one (a kill after queueing finds the prompt again instead of
//!   queueing it twice), the other prompts of an input being the ones that failed in ComfyUI.
//!
//! Every violation is collected (not just the first) together with the figures, so a failing
//! chaos run shows the whole picture.

use super::files_under;
use crate::fakes::comfyui::{PromptState, QueuedPrompt};
use crate::fakes::server::{Answered, TAG_KEYWORD};
use crate::pictures::{SIGNATURE, text_chunk};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::Path;

/// The last 12 bytes of every complete PNG: an empty `IEND` chunk and its CRC.
const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// One input dropped into the inbox.
#[derive(Clone, Debug)]
pub struct Input {
    pub bytes: Vec<u8>,
    /// Not a sane PNG: it must end in `failed/` and never be sent.
    pub bad: bool,
    /// Images per input (the profile's `batch_count`): 1 gives `stem.png`, N `stem-1..N.png`.
    pub images: usize,
    /// The server kind its profile goes to.
    pub made_by: MadeBy,
}

/// Which fake makes an input's results, and what they look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MadeBy {
    /// The fake Draw Things: its tag, the input's pixels.
    DrawThings,
    /// The fake ComfyUI running a workflow: a `prompt` chunk, and per result (in the order of
    /// its SaveImage nodes) the pixels it has.
    ComfyUi(Vec<Look>),
}

/// A ComfyUI result's pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// The input's own.
    Same,
    /// ImageInvert's: each channel 255 - x (or 254 - x: ComfyUI computes in float32).
    Inverted,
}

/// Whether `result` holds `input`'s pixels inverted as ComfyUI's ImageInvert gives them.
pub fn is_inverted(input: &image::RgbImage, result: &image::RgbImage) -> bool {
    input.dimensions() == result.dimensions()
        && input.pixels().zip(result.pixels()).all(|(a, b)| {
            a.0.iter()
                .zip(b.0.iter())
                .all(|(x, y)| (254 - i16::from(*x)..=255 - i16::from(*x)).contains(&i16::from(*y)))
        })
}

/// Everything put into the inbox during a run.
#[derive(Clone, Debug, Default)]
pub struct Dropped {
    /// Inputs by path relative to the inbox (with `/`).
    pub inputs: BTreeMap<String, Input>,
    /// Files drawdrop must leave alone (not pictures it takes), by relative path.
    pub junk: BTreeMap<String, Vec<u8>>,
}

impl Dropped {
    /// A good picture making `images` results. Its bytes must differ from every other good
    /// input's: requests are matched to inputs by their init image.
    pub fn good(&mut self, relative: &str, bytes: Vec<u8>, images: usize) {
        self.add(relative, bytes, false, MadeBy::DrawThings, images);
    }

    /// A good picture in a workflow profile's folder, making one result per look.
    pub fn good_for_comfyui(&mut self, relative: &str, bytes: Vec<u8>, looks: Vec<Look>) {
        let images = looks.len();
        self.add(relative, bytes, false, MadeBy::ComfyUi(looks), images);
    }

    /// A file named `.png` that is not a sane PNG.
    pub fn bad(&mut self, relative: &str, bytes: Vec<u8>) {
        self.add(relative, bytes, true, MadeBy::DrawThings, 0);
    }

    /// A file that is not a candidate (hidden, temporary, another extension).
    pub fn junk(&mut self, relative: &str, bytes: Vec<u8>) {
        self.junk.insert(relative.to_owned(), bytes);
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    fn add(&mut self, relative: &str, bytes: Vec<u8>, bad: bool, made_by: MadeBy, images: usize) {
        assert!(
            bad || !self
                .inputs
                .values()
                .any(|input| !input.bad && input.bytes == bytes),
            "two good inputs with the same bytes ({relative})"
        );
        let input = Input {
            bytes,
            bad,
            images,
            made_by,
        };
        let previous = self.inputs.insert(relative.to_owned(), input);
        assert!(previous.is_none(), "{relative} dropped twice");
    }
}

/// The figures of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Inputs dropped.
    pub files: usize,
    /// Inputs with their results and archived original.
    pub done: usize,
    /// Known-bad inputs in `failed/`.
    pub failed_bad: usize,
    /// Good inputs in `failed/` because every attempt met a server fault.
    pub failed_given_up: usize,
    /// Inputs that are neither done nor failed.
    pub lost: usize,
    /// Files written twice (` (N)` copies) plus inputs both done and failed.
    pub duplicates: usize,
    /// `jobs.jsonl` lines beyond one per input.
    pub journal_duplicates: usize,
    /// img2img requests the fake answered (or dropped).
    pub requests: usize,
    /// Of those, the ones that got a fault.
    pub faults: usize,
    /// Of those, real 200 answers with the images.
    pub good_answers: usize,
    /// Real 200 answers beyond the first for the same input.
    pub resends: usize,
    /// Inputs that got more than one real 200 answer.
    pub resent_inputs: usize,
    /// Empty job folders left in `outbox/.drawdrop/staging/` (a kill after a finished job
    /// was forgotten and before its staging folder was removed): no file, nothing visible,
    /// so not a violation, but counted.
    pub empty_staging_folders: usize,
    /// Prompts the fake ComfyUI accepted.
    pub prompts: usize,
    /// Of those, the ones that failed in ComfyUI (an execution error).
    pub failed_prompts: usize,
    /// Inputs made by more than one successful prompt.
    pub inputs_prompted_twice: usize,
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default)]
pub struct Checked {
    pub figures: Figures,
    /// Every invariant broken, one readable line each; empty when all hold.
    pub violations: Vec<String>,
}

impl Checked {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.figures;
        writeln!(
            f,
            "files {}: done {}, failed {} (known-bad {}, given up {}), lost {}, duplicates {}, \
             duplicate jobs.jsonl lines {}; requests {} (faults {}, good answers {}), resends {} \
             ({} inputs); empty staging folders {}",
            g.files,
            g.done,
            g.failed_bad + g.failed_given_up,
            g.failed_bad,
            g.failed_given_up,
            g.lost,
            g.duplicates,
            g.journal_duplicates,
            g.requests,
            g.faults,
            g.good_answers,
            g.resends,
            g.resent_inputs,
            g.empty_staging_folders
        )?;
        if self.violations.is_empty() {
            writeln!(f, "every invariant holds")
        } else {
            writeln!(f, "{} violation(s):", self.violations.len())?;
            for violation in &self.violations {
                writeln!(f, "  - {violation}")?;
            }
            Ok(())
        }
    }
}

/// Checks the final state of `inbox` and `outbox` against what was `dropped` and how the
/// fake `answers`; `resend_budget` is how many real answers beyond the first per input are
/// allowed (kills x concurrency).
pub fn check(
    inbox: &Path,
    outbox: &Path,
    dropped: &Dropped,
    answers: &[Answered],
    resend_budget: usize,
) -> Checked {
    check_with_comfyui(
        inbox,
        outbox,
        dropped,
        answers,
        &ComfyUiSeen::default(),
        resend_budget,
    )
}

/// What a fake ComfyUI was given: its prompts, and its input folder's files by name.
#[derive(Clone, Debug, Default)]
pub struct ComfyUiSeen {
    pub prompts: Vec<QueuedPrompt>,
    pub uploads: HashMap<String, Vec<u8>>,
}

/// [`check`] for a pool with a fake ComfyUI beside the fake Draw Things.
pub fn check_with_comfyui(
    inbox: &Path,
    outbox: &Path,
    dropped: &Dropped,
    answers: &[Answered],
    comfyui: &ComfyUiSeen,
    resend_budget: usize,
) -> Checked {
    let mut checked = Checked::default();
    checked.figures.files = dropped.len();
    let mut checker = Checker {
        outbox,
        remaining: files_under(outbox),
        checked: &mut checked,
    };
    checker.outbox_hygiene();
    let mut outcomes = BTreeMap::new();
    for (relative, input) in &dropped.inputs {
        let outcome = checker.input(relative, input);
        outcomes.insert(relative.clone(), outcome);
    }
    checker.leftovers_in_outbox();
    checked.figures.empty_staging_folders = fs::read_dir(outbox.join(".drawdrop/staging"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    check_inbox(inbox, dropped, &mut checked);
    check_journal(outbox, &outcomes, &mut checked);
    check_answers(dropped, &outcomes, answers, resend_budget, &mut checked);
    check_prompts(dropped, &outcomes, comfyui, &mut checked);
    checked
}

/// What became of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    Lost,
}

struct Checker<'a> {
    outbox: &'a Path,
    /// Outbox files not yet accounted for.
    remaining: std::collections::BTreeSet<String>,
    checked: &'a mut Checked,
}

impl Checker<'_> {
    fn violation(&mut self, text: String) {
        self.checked.violations.push(text);
    }

    /// No hidden, temporary or staged file anywhere in the outbox; only known logs.
    fn outbox_hygiene(&mut self) {
        let files: Vec<String> = self.remaining.iter().cloned().collect();
        for file in files {
            if let Some(own) = file.strip_prefix("gallery/") {
                // The gallery's pages, thumbnails and state; never a temporary.
                if own.ends_with(".tmp") {
                    self.violation(format!("temporary file in the gallery: {file}"));
                }
                self.remaining.remove(&file);
            } else if file == ".drawdrop/in-flight.json" {
                // The jobs in flight, for `status`: no job's file.
                self.remaining.remove(&file);
            } else if file.starts_with(".drawdrop/") {
                self.violation(format!("left in the outbox's staging area: {file}"));
                self.remaining.remove(&file);
            } else if file.split('/').any(|part| part.starts_with('.')) || file.ends_with(".tmp") {
                self.violation(format!("hidden or temporary file in the outbox: {file}"));
                self.remaining.remove(&file);
            } else if let Some(log) = file.strip_prefix("logs/") {
                if !(log == "jobs.jsonl" || log.starts_with("drawdrop.log")) {
                    self.violation(format!("unexpected file in the outbox's logs: {file}"));
                }
                self.remaining.remove(&file);
            }
        }
    }

    fn take(&mut self, name: &str) -> Option<Vec<u8>> {
        if self.remaining.remove(name) {
            fs::read(self.outbox.join(name)).ok()
        } else {
            None
        }
    }

    /// ` (N)` copies of `name` in the outbox: each one is a file written twice. `numbered`
    /// is the name the number goes into (`name` itself, or a failed input for its reason).
    fn copies_of(&mut self, numbered: &str, name: &str) {
        for n in 2..=50 {
            let copy = format!("{}{}", with_number(numbered, n), &name[numbered.len()..]);
            if self.remaining.remove(&copy) {
                self.checked.figures.duplicates += 1;
                self.violation(format!("written twice: {copy} (beside {name})"));
            }
        }
    }

    fn input(&mut self, relative: &str, input: &Input) -> Outcome {
        let results = result_names(relative, input.images.max(1));
        let original_name = format!("originals/{relative}");
        let failed_name = format!("failed/{relative}");
        let error_name = format!("{failed_name}.error.txt");
        for name in results.iter().chain([&original_name, &failed_name]) {
            self.copies_of(name, name);
        }
        // `failed/cat (2).png.error.txt` goes with `failed/cat (2).png`.
        self.copies_of(&failed_name, &error_name);
        let found_results: Vec<(String, Option<Vec<u8>>)> = results
            .iter()
            .map(|name| (name.clone(), self.take(name)))
            .collect();
        let original = self.take(&original_name);
        let failed = self.take(&failed_name);
        let error = self.take(&error_name);

        let result_count = found_results.iter().filter(|(_, b)| b.is_some()).count();
        let done = !input.bad && result_count == results.len() && original.is_some();
        let is_failed = failed.is_some() && error.is_some();
        if result_count > 0 && result_count < results.len() {
            self.violation(format!(
                "{relative}: {result_count} of {} results present",
                results.len()
            ));
        }
        if result_count > 0 && input.bad {
            self.violation(format!("{relative}: a known-bad input has results"));
        }
        if original.is_some() != (result_count > 0) {
            self.violation(format!(
                "{relative}: results and archived original do not go together (results {result_count}, original {})",
                original.is_some()
            ));
        }
        if failed.is_some() != error.is_some() {
            self.violation(format!(
                "{relative}: failed input and its .error.txt do not go together (input {}, reason {})",
                failed.is_some(),
                error.is_some()
            ));
        }
        if let Some(bytes) = &original
            && *bytes != input.bytes
        {
            self.violation(format!("{original_name} differs from the input dropped"));
        }
        if let Some(bytes) = &failed
            && *bytes != input.bytes
        {
            self.violation(format!("{failed_name} differs from the input dropped"));
        }
        for (number, (name, bytes)) in found_results.iter().enumerate() {
            if let Some(bytes) = bytes {
                self.result_is_complete(name, bytes, input, number);
            }
        }
        let given_up = error
            .as_deref()
            .map(|text| String::from_utf8_lossy(text).contains("gave up after"))
            .unwrap_or(false);
        if is_failed && !input.bad && !given_up {
            let reason = error
                .as_deref()
                .map(|text| String::from_utf8_lossy(text).into_owned())
                .unwrap_or_default();
            let reason = reason
                .lines()
                .find(|line| line.starts_with("Reason:"))
                .unwrap_or("")
                .to_owned();
            self.violation(format!(
                "{relative}: a good input failed for another reason than a server fault: {reason}"
            ));
        }
        if let Some(text) = &error
            && text.is_empty()
        {
            self.violation(format!("{error_name} is empty"));
        }
        let done_side = result_count > 0 || original.is_some();
        let failed_side = failed.is_some() || error.is_some();
        match (done_side, failed_side) {
            (true, true) => {
                self.checked.figures.duplicates += 1;
                self.violation(format!("{relative}: both done and failed"));
                Outcome::Failed
            }
            (true, false) => {
                // A half-done input is reported above.
                if done {
                    self.checked.figures.done += 1;
                }
                Outcome::Done
            }
            (false, true) => {
                if is_failed && input.bad {
                    self.checked.figures.failed_bad += 1;
                } else if is_failed {
                    self.checked.figures.failed_given_up += 1;
                }
                Outcome::Failed
            }
            (false, false) => {
                self.checked.figures.lost += 1;
                self.violation(format!(
                    "{relative}: lost (neither results nor a failed copy in the outbox)"
                ));
                Outcome::Lost
            }
        }
    }

    /// Result `number` (from 0) of `input`.
    fn result_is_complete(&mut self, name: &str, bytes: &[u8], input: &Input, number: usize) {
        if !bytes.starts_with(SIGNATURE) || !bytes.ends_with(&IEND) {
            self.violation(format!(
                "{name}: not a complete PNG (signature or IEND missing)"
            ));
            return;
        }
        let decoded = match image::load_from_memory_with_format(bytes, image::ImageFormat::Png) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.violation(format!("{name}: does not decode: {error}"));
                return;
            }
        };
        let original =
            match image::load_from_memory_with_format(&input.bytes, image::ImageFormat::Png) {
                Ok(original) => original,
                Err(error) => {
                    self.violation(format!("{name}: its input does not decode: {error}"));
                    return;
                }
            };
        let look = match &input.made_by {
            MadeBy::DrawThings => {
                if text_chunk(bytes, TAG_KEYWORD).is_none() {
                    self.violation(format!("{name}: not made by the fake server (no tag)"));
                }
                Look::Same
            }
            MadeBy::ComfyUi(looks) => {
                if text_chunk(bytes, "prompt").is_none() {
                    self.violation(format!("{name}: no `prompt` chunk (the workflow)"));
                }
                looks.get(number).copied().unwrap_or(Look::Same)
            }
        };
        let (original, decoded) = (original.to_rgb8(), decoded.to_rgb8());
        let right = match look {
            Look::Same => original == decoded,
            Look::Inverted => is_inverted(&original, &decoded),
        };
        if !right {
            self.violation(format!(
                "{name}: its pixels are not those of the input it is named after ({look:?})"
            ));
        }
    }

    /// Whatever no input accounts for.
    fn leftovers_in_outbox(&mut self) {
        let left: Vec<String> = std::mem::take(&mut self.remaining).into_iter().collect();
        for file in left {
            self.violation(format!("unexpected file in the outbox: {file}"));
        }
    }
}

/// The inbox holds its junk, untouched, and nothing else but drawdrop's lock.
fn check_inbox(inbox: &Path, dropped: &Dropped, checked: &mut Checked) {
    let mut files = files_under(inbox);
    for (relative, bytes) in &dropped.junk {
        match fs::read(inbox.join(relative)) {
            Ok(now) if now == *bytes => {}
            Ok(_) => checked
                .violations
                .push(format!("junk file changed in the inbox: {relative}")),
            Err(error) => checked.violations.push(format!(
                "junk file gone from the inbox: {relative} ({error})"
            )),
        }
        files.remove(relative);
    }
    files.remove(".drawdrop/lock");
    for file in files {
        let what = if file.starts_with(".drawdrop/jobs/") {
            "still claimed"
        } else if dropped.inputs.contains_key(&file) {
            "input still in the inbox"
        } else {
            "unexpected file in the inbox"
        };
        checked.violations.push(format!("{what}: {file}"));
    }
}

/// One `jobs.jsonl` line per input, with its outcome.
fn check_journal(outbox: &Path, outcomes: &BTreeMap<String, Outcome>, checked: &mut Checked) {
    let text = fs::read_to_string(outbox.join("logs/jobs.jsonl")).unwrap_or_default();
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let json: serde_json::Value = match serde_json::from_str(line) {
            Ok(json) => json,
            Err(error) => {
                checked.violations.push(format!(
                    "jobs.jsonl line {} is not JSON ({error}): {line:.120}",
                    number + 1
                ));
                continue;
            }
        };
        let input = json["input"].as_str().unwrap_or_default().to_owned();
        let outcome = json["outcome"].as_str().unwrap_or_default().to_owned();
        lines.entry(input).or_default().push(outcome);
    }
    for (relative, outcome) in outcomes {
        let found = lines.remove(relative).unwrap_or_default();
        if found.is_empty() {
            if *outcome != Outcome::Lost {
                checked
                    .violations
                    .push(format!("{relative}: no line in jobs.jsonl"));
            }
            continue;
        }
        if found.len() > 1 {
            checked.figures.journal_duplicates += found.len() - 1;
            checked.violations.push(format!(
                "{relative}: {} lines in jobs.jsonl ({})",
                found.len(),
                found.join(", ")
            ));
        }
        let expected = match outcome {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Lost => continue,
        };
        if found.iter().any(|o| o != expected) {
            checked.violations.push(format!(
                "{relative}: jobs.jsonl says {} but the outbox says {expected}",
                found.join(", ")
            ));
        }
    }
    for (input, found) in lines {
        checked.violations.push(format!(
            "jobs.jsonl has {} line(s) for {input:?}, which was never dropped",
            found.len()
        ));
    }
}

/// Requests per input: never for a known-bad one, at least one real answer for a done one,
/// and real answers beyond the first within the budget.
fn check_answers(
    dropped: &Dropped,
    outcomes: &BTreeMap<String, Outcome>,
    answers: &[Answered],
    resend_budget: usize,
    checked: &mut Checked,
) {
    let by_bytes: HashMap<&[u8], (&str, &MadeBy)> = dropped
        .inputs
        .iter()
        .filter(|(_, input)| !input.bad)
        .map(|(relative, input)| (input.bytes.as_slice(), (relative.as_str(), &input.made_by)))
        .collect();
    let bad: Vec<&[u8]> = dropped
        .inputs
        .values()
        .filter(|input| input.bad)
        .map(|input| input.bytes.as_slice())
        .collect();
    let mut good: BTreeMap<&str, usize> = BTreeMap::new();
    for answer in answers {
        checked.figures.requests += 1;
        if answer.fault.is_some() {
            checked.figures.faults += 1;
        }
        let Some(init) = answer.request.init_image() else {
            checked
                .violations
                .push("an img2img request without an init image".to_owned());
            continue;
        };
        match by_bytes.get(init.as_slice()) {
            Some((relative, MadeBy::ComfyUi(_))) => checked.violations.push(format!(
                "{relative}, an input of a workflow profile, was sent to Draw Things"
            )),
            Some((relative, MadeBy::DrawThings)) => {
                if answer.is_good() {
                    checked.figures.good_answers += 1;
                    *good.entry(relative).or_default() += 1;
                }
            }
            None if bad.contains(&init.as_slice()) => checked
                .violations
                .push("a known-bad input was sent to the server".to_owned()),
            None => checked
                .violations
                .push("a request whose init image is no input dropped".to_owned()),
        }
    }
    for (relative, outcome) in outcomes {
        let for_draw_things = dropped
            .inputs
            .get(relative)
            .is_some_and(|input| input.made_by == MadeBy::DrawThings);
        let count = good.get(relative.as_str()).copied().unwrap_or(0);
        if *outcome == Outcome::Done && for_draw_things && count == 0 {
            checked.violations.push(format!(
                "{relative}: done, but the server never answered it with images"
            ));
        }
        if count > 1 {
            checked.figures.resends += count - 1;
            checked.figures.resent_inputs += 1;
        }
    }
    if checked.figures.resends > resend_budget {
        let many: Vec<String> = good
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(relative, count)| format!("{relative} x{count}"))
            .collect();
        checked.violations.push(format!(
            "{} answers beyond the first, more than the {resend_budget} allowed (kills x concurrency): {}",
            checked.figures.resends,
            many.join(", ")
        ));
    }
}

/// ComfyUI's prompts per input: each finished, each loading an upload of a workflow
/// profile's good input; one successful prompt per done input, at most one per failed one.
fn check_prompts(
    dropped: &Dropped,
    outcomes: &BTreeMap<String, Outcome>,
    comfyui: &ComfyUiSeen,
    checked: &mut Checked,
) {
    let by_bytes: HashMap<&[u8], (&str, &Input)> = dropped
        .inputs
        .iter()
        .map(|(relative, input)| (input.bytes.as_slice(), (relative.as_str(), input)))
        .collect();
    let mut succeeded: BTreeMap<&str, usize> = BTreeMap::new();
    for prompt in &comfyui.prompts {
        checked.figures.prompts += 1;
        let id = &prompt.prompt_id;
        match prompt.state {
            PromptState::Succeeded => {}
            PromptState::Failed => checked.figures.failed_prompts += 1,
            PromptState::Pending | PromptState::Running => checked.violations.push(format!(
                "prompt {id} is still in ComfyUI's queue at the end"
            )),
        }
        let loaded = prompt
            .loaded_image()
            .and_then(|name| comfyui.uploads.get(name));
        let Some(bytes) = loaded else {
            checked
                .violations
                .push(format!("prompt {id} loads no picture that was uploaded"));
            continue;
        };
        match by_bytes.get(bytes.as_slice()) {
            Some((relative, input)) if input.bad => checked.violations.push(format!(
                "{relative}, a known-bad input, reached ComfyUI (prompt {id})"
            )),
            Some((relative, input)) if input.made_by == MadeBy::DrawThings => {
                checked.violations.push(format!(
                    "{relative}, an input of a profile without a workflow, reached ComfyUI"
                ));
            }
            Some((relative, _)) => {
                if prompt.state == PromptState::Succeeded {
                    *succeeded.entry(relative).or_default() += 1;
                }
            }
            None => checked.violations.push(format!(
                "prompt {id} loads a picture that is no input dropped"
            )),
        }
    }
    for (name, bytes) in &comfyui.uploads {
        if let Some((relative, input)) = by_bytes.get(bytes.as_slice())
            && input.bad
        {
            checked.violations.push(format!(
                "{relative}, a known-bad input, was uploaded to ComfyUI as {name}"
            ));
        }
    }
    for (relative, input) in &dropped.inputs {
        if input.bad || input.made_by == MadeBy::DrawThings {
            continue;
        }
        let count = succeeded.get(relative.as_str()).copied().unwrap_or(0);
        let done = outcomes.get(relative) == Some(&Outcome::Done);
        if count > 1 {
            checked.figures.inputs_prompted_twice += 1;
        }
        if done && count != 1 || !done && count > 1 {
            checked.violations.push(format!(
                "{relative}: {} in ComfyUI by {count} successful prompts",
                if done { "done" } else { "failed" }
            ));
        }
    }
}

/// The result names of the input at `relative` making `images` pictures.
pub fn result_names(relative: &str, images: usize) -> Vec<String> {
    let (parent, name) = match relative.rsplit_once('/') {
        Some((parent, name)) => (format!("{parent}/"), name),
        None => (String::new(), relative),
    };
    let stem = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if images <= 1 {
        vec![format!("{parent}{stem}.png")]
    } else {
        (1..=images)
            .map(|i| format!("{parent}{stem}-{i}.png"))
            .collect()
    }
}

/// `name` with ` (n)` before its extension, as drawdrop names a second file of one name.
pub fn with_number(name: &str, n: u32) -> String {
    let (dir, file) = match name.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), name),
    };
    match file.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => format!("{dir}{stem} ({n}).{extension}"),
        _ => format!("{dir}{file} ({n})"),
    }
}

/// Visible pictures in the outbox (outside `failed/`, where broken inputs belong, and
/// drawdrop's hidden staging) that are not complete PNGs: what a reader could see half
/// written at any moment. Names in `verified` were found complete before and are skipped
/// (a placed file never changes); complete ones are added.
pub fn incomplete_pictures(
    outbox: &Path,
    verified: &mut std::collections::HashSet<String>,
) -> Vec<String> {
    let mut incomplete = Vec::new();
    for file in files_under(outbox) {
        let hidden = file.split('/').any(|part| part.starts_with('.'));
        if hidden
            || file.starts_with("failed/")
            || file.starts_with("logs/")
            || !file.to_ascii_lowercase().ends_with(".png")
            || verified.contains(&file)
        {
            continue;
        }
        let Ok(bytes) = fs::read(outbox.join(&file)) else {
            continue; // moved on meanwhile
        };
        let complete = bytes.starts_with(SIGNATURE)
            && bytes.ends_with(&IEND)
            && image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).is_ok();
        if complete {
            verified.insert(file);
        } else {
            incomplete.push(file);
        }
    }
    incomplete
}
