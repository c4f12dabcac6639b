//! A worker slot in-process on paused time, against a scripted backend: the retry timing
//! (backoff, `Retry-After`), giving up and refusals, asserted on what lands in the outbox
//! and `jobs.jsonl`, without a server or a real clock.

use super::{Shared, run};
use crate::backends::{Backend, BoxFuture, Generation, Init, Offer, Probe, Request, Trouble};
use crate::config::{Config, Server, Settings};
use crate::image::Limits;
use crate::image::test_png::{encode, gradient};
use crate::jobs::claim::Claims;
use crate::jobs::finish::Finisher;
use crate::jobs::outbox::Outbox;
use crate::jobs::seen;
use crate::pipeline::outbox_gate::OutboxGate;
use crate::pipeline::pool::Pool;
use crate::pipeline::queue::{Queue, Work};
use crate::pipeline::reload::Live;
use crate::report::desktop::Notifications;
use crate::report::gallery::{Gallery, Keeper};
use crate::report::live::InFlight;
use crate::report::tally::Tally;
use bytes::Bytes;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A backend that answers each request with the next of its scripted answers, and notes
/// when each came (on the paused clock).
#[derive(Debug)]
struct Scripted {
    server: Server,
    answers: Mutex<Vec<Result<(), Trouble>>>,
    asked_at: Mutex<Vec<Instant>>,
}

impl Backend for Scripted {
    fn server(&self) -> &Server {
        &self.server
    }

    fn product(&self) -> &'static str {
        "the scripted server"
    }

    fn hint_when_down(&self) -> &'static str {
        ""
    }

    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async { Probe::Up(String::new()) })
    }

    fn offer(&self, _answers: bool) -> BoxFuture<'_, Offer> {
        Box::pin(async { Offer::default() })
    }

    fn request(
        &self,
        _settings: &Settings,
        size: (u32, u32),
        seed: u32,
    ) -> Result<Request, String> {
        let settings = serde_json::json!({"seed": seed, "width": size.0, "height": size.1});
        Ok(Request {
            settings: settings.as_object().cloned().unwrap_or_default(),
            model: None,
            expected_images: 1,
            workflow: None,
        })
    }

    fn encode(&self, _request: &Request, init: Init<'_>) -> Result<Bytes, String> {
        Ok(Bytes::from(init.png()?.into_owned()))
    }

    fn generate<'a>(&'a self, job: Generation<'a>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>> {
        Box::pin(async move {
            self.asked_at.lock().unwrap().push(Instant::now());
            let answer = self.answers.lock().unwrap().remove(0);
            // The result is the picture sent back (so it is a complete PNG).
            answer.map(|()| vec![job.body.to_vec()])
        })
    }
}

struct Slot {
    dir: tempfile::TempDir,
    backends: Vec<Arc<Scripted>>,
}

impl Slot {
    /// Runs one slot of a one-server pool over `picture.png` until the job is in place.
    async fn run(answers: Vec<Result<(), Trouble>>, max_attempts: u32) -> Slot {
        Slot::pool(vec![answers], max_attempts).await
    }

    /// Runs one slot per server (each answering with its script) over `picture.png` until
    /// the job is in place.
    async fn pool(scripts: Vec<Vec<Result<(), Trouble>>>, max_attempts: u32) -> Slot {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, outbox) = (dir.path().join("in"), dir.path().join("out"));
        std::fs::create_dir_all(&inbox).unwrap();
        let mut config = Config::defaults(&dir.path().join("config.toml"));
        config.inbox = inbox.clone();
        config.outbox = outbox.clone();
        config.servers[0].max_attempts = max_attempts;
        let first = config.servers[0].clone();
        config.servers = (0..scripts.len())
            .map(|index| Server {
                name: format!("server{index}"),
                ..first.clone()
            })
            .collect();
        let backends: Vec<Arc<Scripted>> = scripts
            .into_iter()
            .zip(&config.servers)
            .map(|(answers, server)| {
                Arc::new(Scripted {
                    server: server.clone(),
                    answers: Mutex::new(answers),
                    asked_at: Mutex::new(Vec::new()),
                })
            })
            .collect();
        let outbox = Arc::new(Outbox::new(outbox));
        outbox.create().unwrap();
        let claims = Claims::new(&inbox);
        claims.create().unwrap();
        let picture = inbox.join("picture.png");
        std::fs::write(&picture, encode(&gradient(64, 64).into())).unwrap();
        let pool = Pool::new(backends.len(), None);
        for health in pool.healths() {
            health.mark_up();
        }
        let queue = Arc::new(Queue::new());
        queue.push(Work::Settled {
            relative: "picture.png".into(),
            seen: seen::observe(&picture).unwrap(),
        });
        queue.close();
        let shared = Arc::new(Shared {
            live: Arc::new(Live::new(
                config,
                backends
                    .iter()
                    .map(|backend| backend.clone() as Arc<dyn Backend>)
                    .collect(),
                Notifications::platform(),
            )),
            outbox_gate: Arc::new(OutboxGate::new(outbox.staging_root())),
            finisher: Finisher {
                outbox: outbox.clone(),
                claims,
                one_file_system: true,
            },
            queue,
            pool,
            tally: Arc::new(Tally::new()),
            limits: Limits::default(),
            inbox,
            cancel: CancellationToken::new(),
            notifications: Notifications::platform(),
            applying: TaskTracker::new(),
            gallery: Keeper::new(Gallery::new(&outbox), || false).feed(),
            in_flight: InFlight::new(outbox.root()),
        });
        let mut slots = tokio::task::JoinSet::new();
        for server in 0..backends.len() {
            slots.spawn(run(shared.clone(), server));
        }
        while let Some(ran) = slots.join_next().await {
            ran.unwrap().unwrap();
        }
        shared.applying.close();
        shared.applying.wait().await;
        Slot { dir, backends }
    }

    fn out(&self, relative: &str) -> std::path::PathBuf {
        self.dir.path().join("out").join(relative)
    }

    fn job_line(&self) -> Value {
        let lines = std::fs::read_to_string(self.out("logs/jobs.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        serde_json::from_str(lines.trim()).unwrap()
    }

    /// How many requests server `index` had.
    fn asked(&self, index: usize) -> usize {
        self.backends[index].asked_at.lock().unwrap().len()
    }

    /// The pauses between the requests (of the first server).
    fn gaps(&self) -> Vec<Duration> {
        let asked = self.backends[0].asked_at.lock().unwrap();
        asked.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }
}

fn status(code: u16, retry_after: Option<u64>) -> Result<(), Trouble> {
    Err(Trouble::Status {
        code,
        detail: "busy".into(),
        retry_after: retry_after.map(Duration::from_secs),
    })
}

#[tokio::test(start_paused = true)]
async fn retries_wait_out_the_backoff_and_a_longer_retry_after() {
    let slot = Slot::run(vec![status(500, None), status(503, Some(7)), Ok(())], 3).await;
    let gaps = slot.gaps();
    assert_eq!(gaps.len(), 2);
    // The first pause: 1 s, up to a quarter more; the second: the server's 7 s, above the 2 s.
    assert!(
        gaps[0] >= Duration::from_secs(1) && gaps[0] < Duration::from_millis(1250),
        "{gaps:?}"
    );
    assert_eq!(gaps[1], Duration::from_secs(7));
    assert!(slot.out("picture.png").is_file());
    assert!(slot.out("originals/picture.png").is_file());
    let line = slot.job_line();
    assert_eq!(line["outcome"], "done");
    assert_eq!(line["attempts"], 3);
    assert_eq!(line["error_kind"], Value::Null);
}

#[tokio::test(start_paused = true)]
async fn the_last_attempt_fails_the_file_with_its_reason() {
    let slot = Slot::run(
        vec![status(500, None), Err(Trouble::Lost("reset".into()))],
        2,
    )
    .await;
    assert_eq!(slot.gaps().len(), 1);
    assert!(slot.out("failed/picture.png").is_file());
    let text = std::fs::read_to_string(slot.out("failed/picture.png.error.txt")).unwrap();
    assert!(
        text.contains(
            "Reason:   gave up after 2 attempts; the last one: the connection was lost before the answer came (reset)"
        ),
        "{text}"
    );
    let line = slot.job_line();
    assert_eq!(line["error_kind"], "gave_up");
    assert_eq!(line["attempts"], 2);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_fails_at_once_without_a_retry() {
    let started = Instant::now();
    let slot = Slot::run(vec![status(422, None)], 5).await;
    assert_eq!(slot.asked(0), 1);
    assert!(started.elapsed() < Duration::from_secs(1), "no pause");
    let text = std::fs::read_to_string(slot.out("failed/picture.png.error.txt")).unwrap();
    assert!(
        text.contains("the scripted server refused the request (HTTP 422): busy"),
        "{text}"
    );
    assert_eq!(slot.job_line()["error_kind"], "refused");
}

#[tokio::test(start_paused = true)]
async fn in_a_pool_a_refused_job_goes_to_the_other_server() {
    let slot = Slot::pool(vec![vec![status(422, None)], vec![Ok(())]], 3).await;
    assert_eq!((slot.asked(0), slot.asked(1)), (1, 1));
    assert!(slot.out("picture.png").is_file());
    let line = slot.job_line();
    assert_eq!(line["outcome"], "done");
    assert_eq!(line["server"], "server1");
}

#[tokio::test(start_paused = true)]
async fn in_a_pool_a_job_no_server_can_do_fails_with_every_reason() {
    let slot = Slot::pool(vec![vec![status(422, None)], vec![status(400, None)]], 3).await;
    let text = std::fs::read_to_string(slot.out("failed/picture.png.error.txt")).unwrap();
    assert!(text.contains("no server could do it: "), "{text}");
    assert!(
        text.contains("server0") && text.contains("server1"),
        "{text}"
    );
    assert_eq!(slot.job_line()["error_kind"], "no_server");
}
