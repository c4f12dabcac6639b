//! `drawdrop gallery [--open]`: makes `outbox/gallery/` again from `logs/jobs.jsonl` and
//! what is in the outbox now, and opens it in the default browser (macOS `open`, elsewhere
//! `xdg-open`).

use super::{EXIT_START, load_config};
use crate::jobs::outbox::Outbox;
use crate::report::gallery::Gallery;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

pub(super) fn gallery(flag: Option<&Path>, open: bool) -> ExitCode {
    let (_, config) = match load_config(flag) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("drawdrop: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let outbox = Outbox::new(config.outbox.clone());
    if !outbox.root().is_dir() {
        eprintln!(
            "drawdrop: there is no outbox at {} yet: nothing was made",
            outbox.root().display()
        );
        return ExitCode::FAILURE;
    }
    let gallery = Gallery::new(&outbox);
    let updated = match gallery.rebuild() {
        Ok(updated) => updated,
        Err(error) => {
            eprintln!(
                "drawdrop: cannot write the gallery in {}: {error}",
                outbox.gallery().display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!(
        "gallery: {} job{} in {}",
        updated.total,
        if updated.total == 1 { "" } else { "s" },
        gallery.index().display()
    );
    if !config.gallery {
        println!(
            "(gallery = false in {}: the daemon does not keep it up to date)",
            config.file.display()
        );
    }
    if open && let Err(error) = open_in_browser(&gallery.index()) {
        eprintln!("drawdrop: cannot open the gallery: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The system's opener for the page: `open` on macOS, `xdg-open` elsewhere.
fn open_in_browser(page: &Path) -> Result<(), String> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = Command::new(opener)
        .arg(page)
        .stdin(Stdio::null())
        .status()
        .map_err(|error| format!("{opener}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{opener} ended with {status}"))
    }
}
