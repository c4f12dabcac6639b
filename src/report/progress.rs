//! The terminal progress bar of `run --once`.

use crate::report::tally::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar on stderr: files finished out of files found, failures, the last file.
pub(crate) fn terminal_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}

/// Feeds a progress bar from the tally.
pub(crate) struct BarProgress(pub ProgressBar);

impl Progress for BarProgress {
    fn found(&self, total: usize) {
        self.0.set_length(total as u64);
    }

    fn finished(&self, done: usize, failed: usize, last: &str) {
        self.0.set_position((done + failed) as u64);
        let failed = if failed > 0 {
            format!("{failed} failed, ")
        } else {
            String::new()
        };
        self.0.set_message(format!("{failed}last: {last}"));
    }

    fn waiting(&self, what: Option<&str>) {
        self.0.set_message(what.unwrap_or_default().to_owned());
    }
}
