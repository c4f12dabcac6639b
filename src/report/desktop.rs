//! Desktop notifications: when a batch finishes (the queue ran dry), when a file fails, and
//! when a config file or profile breaks (once per breakage: the caller tells only new ones).
//! Off unless `notifications = true`. macOS shows them through `osascript`, Linux through
//! `notify-send`; where neither exists this is a no-op. Notifications never block a job:
//! the command runs in the background.

use crate::mutex::lock;
use std::sync::Mutex;

/// Shows one notification (title, message); the real one starts a command.
pub(crate) type Show = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Collects outcomes into batch summaries.
pub(crate) struct Notifications {
    show: Show,
    /// Done and failed since the last summary.
    batch: Mutex<(usize, usize)>,
}

impl Notifications {
    /// Notifications through the platform's command.
    pub(crate) fn platform() -> Notifications {
        Notifications::with(Box::new(show_with_platform_command))
    }

    pub(crate) fn with(show: Show) -> Notifications {
        Notifications {
            show,
            batch: Mutex::new((0, 0)),
        }
    }

    /// A job ended. `drained`: nothing else is queued or being worked on, so the batch is
    /// over and its summary is shown.
    pub(crate) fn job_finished(&self, failure: Option<(&str, &str)>, drained: bool) {
        if let Some((name, reason)) = failure {
            (self.show)("drawdrop: a file failed", &format!("{name}: {reason}"));
        }
        let mut batch = lock(&self.batch);
        match failure {
            Some(_) => batch.1 += 1,
            None => batch.0 += 1,
        }
        if drained {
            let (done, failed) = std::mem::take(&mut *batch);
            drop(batch);
            let mut message = format!("{done} done");
            if failed > 0 {
                message.push_str(&format!(
                    ", {failed} failed (see the outbox's failed folder)"
                ));
            }
            (self.show)("drawdrop: all pictures are done", &message);
        }
    }
}

impl Notifications {
    /// A config file or profile became unusable: `file` names it, `consequence` says what
    /// waits or what stays in force.
    pub(crate) fn setting_broken(&self, file: &std::path::Path, consequence: &str) {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        (self.show)(
            "drawdrop: a setting is broken",
            &format!("{name} cannot be used (see drawdrop status): {consequence}"),
        );
    }
}

fn show_with_platform_command(title: &str, message: &str) {
    let (program, args) = platform_command(cfg!(target_os = "macos"), title, message);
    match std::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reap it in the background so no zombie stays.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(error) => tracing::debug!("no desktop notification ({program}: {error})"),
    }
}

/// The command that shows a notification on this platform.
fn platform_command(macos: bool, title: &str, message: &str) -> (&'static str, Vec<String>) {
    if macos {
        let script = format!(
            "display notification {} with title {}",
            applescript_string(message),
            applescript_string(title)
        );
        ("osascript", vec!["-e".to_owned(), script])
    } else {
        (
            "notify-send",
            vec![
                "--app-name=drawdrop".to_owned(),
                title.to_owned(),
                message.to_owned(),
            ],
        )
    }
}

/// A string literal for AppleScript: quotes and backslashes escaped, one line.
fn applescript_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    type Shown = Arc<Mutex<Vec<(String, String)>>>;

    fn recording() -> (Notifications, Shown) {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let sink = shown.clone();
        let notifications = Notifications::with(Box::new(move |title, message| {
            sink.lock()
                .unwrap()
                .push((title.to_owned(), message.to_owned()));
        }));
        (notifications, shown)
    }

    #[test]
    fn a_failure_is_told_at_once_and_the_batch_when_the_queue_runs_dry() {
        let (notifications, shown) = recording();
        notifications.job_finished(None, false);
        notifications.job_finished(Some(("bad.png", "the file is empty")), false);
        assert_eq!(shown.lock().unwrap().len(), 1);
        notifications.job_finished(None, true);
        let shown = shown.lock().unwrap();
        assert_eq!(
            shown[0],
            (
                "drawdrop: a file failed".into(),
                "bad.png: the file is empty".into()
            )
        );
        assert_eq!(
            shown[1],
            (
                "drawdrop: all pictures are done".into(),
                "2 done, 1 failed (see the outbox's failed folder)".into()
            )
        );
    }

    #[test]
    fn the_next_batch_counts_from_zero() {
        let (notifications, shown) = recording();
        notifications.job_finished(None, true);
        notifications.job_finished(None, true);
        let shown = shown.lock().unwrap();
        assert_eq!(shown[1].1, "1 done");
    }

    #[test]
    fn commands_for_each_platform_quote_safely() {
        let (program, args) = platform_command(true, "drawdrop", "say \"hi\" \\ now\nplease");
        assert_eq!(program, "osascript");
        assert_eq!(
            args,
            [
                "-e",
                "display notification \"say \\\"hi\\\" \\\\ now please\" with title \"drawdrop\""
            ]
        );
        let (program, args) = platform_command(false, "drawdrop", "a; rm -rf /");
        assert_eq!(program, "notify-send");
        assert_eq!(args, ["--app-name=drawdrop", "drawdrop", "a; rm -rf /"]);
    }
}
