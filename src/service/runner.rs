//! The one seam between drawdrop and the service manager: every `launchctl` and `systemctl`
//! call goes through [`Runner`], so tests record the exact commands instead of running them.

use std::io;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunOutput {
    /// The exit status; `None` when a signal ended the command.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Whether the command exited with status 0.
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard error, else standard output (`launchctl` writes some errors to either),
    /// trimmed, for messages.
    pub(crate) fn message(&self) -> String {
        let stderr = self.stderr.trim();
        if stderr.is_empty() {
            self.stdout.trim().to_owned()
        } else {
            stderr.to_owned()
        }
    }

    /// Both streams, for matching an error text wherever the tool put it.
    pub(crate) fn mentions(&self, text: &str) -> bool {
        let text = text.to_ascii_lowercase();
        self.stderr.to_ascii_lowercase().contains(&text)
            || self.stdout.to_ascii_lowercase().contains(&text)
    }
}

/// Runs service-manager commands.
pub(crate) trait Runner {
    /// Runs `program` with `args` to completion, without input, and captures its output.
    fn run(&self, program: &str, args: &[String]) -> io::Result<RunOutput>;

    /// Waits between two polls of the service manager (a job that is still stopping).
    fn pause(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The real thing: `std::process::Command`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[String]) -> io::Result<RunOutput> {
        let output = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(RunOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// A runner for tests: records every command line and answers from a script.
#[cfg(test)]
pub(crate) mod fake {
    use super::{RunOutput, Runner};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io;
    use std::time::Duration;

    /// Answers commands in order: the first scripted answer whose prefix matches the command
    /// line is used (and consumed, unless it is the last one for that prefix); anything
    /// unscripted succeeds with no output.
    #[derive(Default)]
    pub(crate) struct FakeRunner {
        script: RefCell<VecDeque<(String, RunOutput)>>,
        pub(crate) calls: RefCell<Vec<String>>,
        pub(crate) pauses: RefCell<Vec<Duration>>,
    }

    impl FakeRunner {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        /// Answers the next command starting with `prefix` with `code`, `stdout`, `stderr`.
        pub(crate) fn answer(self, prefix: &str, code: i32, stdout: &str, stderr: &str) -> Self {
            self.script.borrow_mut().push_back((
                prefix.to_owned(),
                RunOutput {
                    code: Some(code),
                    stdout: stdout.to_owned(),
                    stderr: stderr.to_owned(),
                },
            ));
            self
        }

        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Runner for FakeRunner {
        fn run(&self, program: &str, args: &[String]) -> io::Result<RunOutput> {
            let line = std::iter::once(program.to_owned())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            self.calls.borrow_mut().push(line.clone());
            let mut script = self.script.borrow_mut();
            let Some(index) = script.iter().position(|(p, _)| line.starts_with(p)) else {
                return Ok(RunOutput {
                    code: Some(0),
                    ..RunOutput::default()
                });
            };
            let prefix = script[index].0.clone();
            let more = script.iter().filter(|(p, _)| *p == prefix).count() > 1;
            let answer = if more {
                script.remove(index).map(|(_, output)| output)
            } else {
                Some(script[index].1.clone())
            };
            Ok(answer.unwrap_or_default())
        }

        fn pause(&self, duration: Duration) {
            self.pauses.borrow_mut().push(duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_runner_captures_status_and_output() {
        let output = SystemRunner
            .run(
                "sh",
                &["-c".into(), "echo out; echo err >&2; exit 3".into()],
            )
            .unwrap();
        assert_eq!(output.code, Some(3));
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.message(), "err");
        assert!(output.mentions("ERR"));
        assert!(!output.success());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let error = SystemRunner.run("/nonexistent/launchctl", &[]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_fake_answers_in_order_and_repeats_its_last_answer() {
        let fake = fake::FakeRunner::new()
            .answer("a x", 1, "", "first")
            .answer("a x", 2, "", "second");
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            fake.run("a", &args).unwrap()
        };
        assert_eq!(run(&["x"]).code, Some(1));
        assert_eq!(run(&["x", "y"]).code, Some(2));
        assert_eq!(run(&["x"]).code, Some(2));
        assert_eq!(run(&["z"]).code, Some(0));
        assert_eq!(fake.calls(), ["a x", "a x y", "a x", "a z"]);
    }
}
