//! Helpers for the server fault suite (`tests/it/server_faults.rs`): a [`Bench`] of one fake
//! server and one running daemon that plays fault after fault, one file at a time, and
//! [`Arrivals`], the time each request reached the fake (for lower bounds on pauses).

use super::{Daemon, Setup, wait_until};
use crate::fakes::server::{FakeServer, Fault, Flavor, Recorded};
use crate::pictures::png;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the fake's observer saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When the fake had handled it and was about to answer. That is at or after the moment
    /// the request arrived, and before the client could read the answer: so the gap between
    /// two of these is at least any pause the client made between reading the first answer
    /// and sending the second request.
    pub at: Instant,
    pub method: String,
    pub route: String,
    /// The status answered; `None` when the connection was dropped or left hanging.
    pub status: Option<u16>,
}

/// Every request the fake handles, timestamped (replaces the fake's observer).
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Vec<Arrival>>>);

impl Arrivals {
    pub fn watch(server: &FakeServer) -> Arrivals {
        let arrivals = Arrivals::default();
        let list = arrivals.0.clone();
        server.set_observer(move |request: &Recorded, status| {
            list.lock().unwrap().push(Arrival {
                at: Instant::now(),
                method: request.method.clone(),
                route: request.route().to_string(),
                status,
            });
        });
        arrivals
    }

    pub fn all(&self) -> Vec<Arrival> {
        self.0.lock().unwrap().clone()
    }

    /// The `POST /sdapi/v1/img2img` requests.
    pub fn img2img(&self) -> Vec<Arrival> {
        self.all()
            .into_iter()
            .filter(|a| a.method == "POST" && a.route == "/sdapi/v1/img2img")
            .collect()
    }

    /// The `GET` requests to `route` (readiness probes).
    pub fn gets(&self, route: &str) -> Vec<Arrival> {
        self.all()
            .into_iter()
            .filter(|a| a.method == "GET" && a.route == route)
            .collect()
    }
}

/// The gaps between consecutive arrivals.
pub fn gaps(arrivals: &[Arrival]) -> Vec<Duration> {
    arrivals
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .collect()
}

/// The `jobs.jsonl` line of `input` (a path relative to the inbox), if written.
pub fn job_line(setup: &Setup, input: &str) -> Option<Value> {
    setup
        .job_lines()
        .into_iter()
        .find(|line| line["input"] == input)
}

/// Waits for the `jobs.jsonl` line of `input`; the outcome is in place when it is written.
pub fn wait_for_job(setup: &Setup, input: &str) -> Value {
    let mut found = None;
    wait_until(&format!("the jobs.jsonl line of {input}"), || {
        found = job_line(setup, input);
        found.is_some()
    });
    found.expect("found")
}

/// `failed/<input>.error.txt`.
pub fn error_text(setup: &Setup, input: &str) -> String {
    String::from_utf8(setup.read_out(&format!("failed/{input}.error.txt"))).expect("UTF-8")
}

/// What one file went through.
pub struct Case {
    pub input: String,
    /// What was dropped.
    pub picture: Vec<u8>,
    /// Its `jobs.jsonl` line.
    pub line: Value,
    /// The img2img requests made for it, in order.
    pub requests: Vec<Recorded>,
    /// When each of them reached the fake.
    pub arrivals: Vec<Arrival>,
}

impl Case {
    pub fn outcome(&self) -> &str {
        self.line["outcome"].as_str().unwrap_or_default()
    }

    pub fn attempts(&self) -> u64 {
        self.line["attempts"].as_u64().unwrap_or_default()
    }

    /// The gaps between the arrivals of its requests.
    pub fn gaps(&self) -> Vec<Duration> {
        gaps(&self.arrivals)
    }
}

/// One fake server and one daemon talking to it, playing faults one file at a time.
pub struct Bench {
    pub server: FakeServer,
    pub setup: Setup,
    pub daemon: Daemon,
    pub arrivals: Arrivals,
    seed: u32,
}

impl Bench {
    /// A fake of `flavor` and a daemon with these `[server]` lines and `settle_ms = 100` (every
    /// file is dropped whole, so a longer settle window would only add waiting).
    pub async fn start(flavor: Flavor, api: &str, server_lines: &str) -> Bench {
        Bench::start_with(flavor, api, server_lines, |setup| setup).await
    }

    /// Like [`Bench::start`], with `prepare` run on the setup (profiles, timing) before the
    /// daemon.
    pub async fn start_with(
        flavor: Flavor,
        api: &str,
        server_lines: &str,
        prepare: impl FnOnce(Setup) -> Setup,
    ) -> Bench {
        let server = FakeServer::start(flavor).await;
        let arrivals = Arrivals::watch(&server);
        let setup = prepare(Setup::with(&server.url(), api, 100, "", server_lines));
        let daemon = setup.start_daemon();
        wait_until("the daemon has created the profile folders", || {
            setup.inbox.join("default").is_dir()
        });
        Bench {
            server,
            setup,
            daemon,
            arrivals,
            seed: 0,
        }
    }

    /// A fresh 128 x 128 picture (sent as it is: no resize).
    pub fn picture(&mut self) -> Vec<u8> {
        self.seed += 1;
        png(128, 128, self.seed)
    }

    /// Queues `faults` for the next requests, drops `input`, and waits for its outcome. Checks
    /// that every fault was used, that each request carried the file, and that the daemon
    /// is still running.
    pub fn case(&mut self, input: &str, faults: &[Fault]) -> Case {
        assert_eq!(self.server.pending_faults(), 0, "faults left over");
        let requests_before = self.server.img2img_requests().len();
        let arrivals_before = self.arrivals.img2img().len();
        for fault in faults {
            self.server.push_fault(fault.clone());
        }
        let picture = self.picture();
        self.setup.drop_file(input, &picture);
        let line = wait_for_job(&self.setup, input);
        let requests = self.server.img2img_requests()[requests_before..].to_vec();
        let arrivals = self.arrivals.img2img()[arrivals_before..].to_vec();
        assert_eq!(
            self.server.pending_faults(),
            0,
            "{input}: every fault was played: {line}"
        );
        for request in &requests {
            assert_eq!(
                request.init_image().as_deref(),
                Some(picture.as_slice()),
                "{input}: each request carries the file, untouched"
            );
        }
        self.assert_running();
        Case {
            input: input.to_string(),
            picture,
            line,
            requests,
            arrivals,
        }
    }

    /// Asserts that the file went through after these faults: result, archived original,
    /// `done` in `jobs.jsonl` with this many attempts, nothing failed.
    pub fn assert_done(&self, case: &Case, attempts: u64) {
        assert_eq!(case.outcome(), "done", "{}: {}", case.input, case.line);
        assert_eq!(case.attempts(), attempts, "{}: {}", case.input, case.line);
        let stem = case.input.trim_end_matches(".png");
        let outputs = case.line["outputs"].as_array().expect("outputs");
        assert!(!outputs.is_empty(), "{}", case.line);
        for output in outputs {
            let output = output.as_str().expect("output name");
            assert!(output.starts_with(stem), "{output}");
            let result = self.setup.read_out(output);
            assert!(
                crate::pictures::text_chunk(&result, crate::fakes::server::TAG_KEYWORD).is_some(),
                "{output} is the server's picture"
            );
        }
        assert_eq!(
            self.setup.read_out(&format!("originals/{}", case.input)),
            case.picture
        );
        assert!(
            !self
                .setup
                .outbox
                .join(format!("failed/{}", case.input))
                .exists(),
            "{} did not fail",
            case.input
        );
    }

    /// Asserts that the file failed: in `failed/` byte for byte, `.error.txt` and
    /// `jobs.jsonl` with the reason and the attempts. Returns the `.error.txt` text.
    pub fn assert_failed(&self, case: &Case, attempts: u64, reason: &[&str]) -> String {
        assert_eq!(case.outcome(), "failed", "{}: {}", case.input, case.line);
        assert_eq!(case.attempts(), attempts, "{}: {}", case.input, case.line);
        assert_eq!(
            self.setup.read_out(&format!("failed/{}", case.input)),
            case.picture
        );
        let text = error_text(&self.setup, &case.input);
        let recorded = case.line["error"].as_str().unwrap_or_default();
        for words in reason {
            assert!(text.contains(words), "{words:?} in the .error.txt:\n{text}");
            assert!(
                recorded.contains(words),
                "{words:?} in jobs.jsonl: {}",
                case.line
            );
        }
        assert!(text.contains(&format!("Attempts: {attempts}")), "{text}");
        assert!(
            text.contains("move this file back into the inbox"),
            "{text}"
        );
        assert!(!self.setup.outbox.join(&case.input).exists());
        text
    }

    /// A good file dropped now goes through at the first attempt, with one request.
    pub fn next_good_file_goes_through(&mut self, input: &str) {
        let case = self.case(input, &[]);
        self.assert_done(&case, 1);
        assert_eq!(case.requests.len(), 1, "{input}: one request");
    }

    /// Every file under `failed/`, relative to it.
    pub fn failed_files(&self) -> std::collections::BTreeSet<String> {
        super::files_under(&self.setup.outbox.join("failed"))
    }

    /// The daemon has not exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.daemon.try_exit() {
            panic!("drawdrop exited ({status:?}):\n{}", self.daemon.output());
        }
    }
}
