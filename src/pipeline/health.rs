//! Whether the server answers. Workers wait here while it does not; one prober asks
//! `GET /` until it does, so a closed Draw Things pauses the queue instead of failing files.
//! The prober asks often in the first minutes of an outage (a restarting app is back in
//! seconds: pauses grow to 5 s), then every 30 s at most.
//!
//! `run --once` does not wait forever: it gives up after `timeout_s` without an answer, or
//! after at most a minute when the server has not answered once since drawdrop started
//! (Draw Things closed, a wrong URL), and says until when it waits.

use crate::backends::{Backend, Probe};
use crate::mutex::lock;
use crate::pipeline::reload::Live;
use crate::pipeline::timing;
use crate::report::tally::Tally;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// While the server stays down, say so again this often.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// The pauses between probes of a server that does not answer: 250 ms, doubling, at most
/// 5 s for the first two minutes of the outage (a restart is noticed within seconds), then
/// at most 30 s (an app closed for the night costs two requests a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbePauses {
    next: Duration,
}

impl ProbePauses {
    const FIRST: Duration = Duration::from_millis(250);
    const EARLY_LONGEST: Duration = Duration::from_secs(5);
    const EARLY_FOR: Duration = Duration::from_secs(120);
    const LONGEST: Duration = Duration::from_secs(30);

    pub(crate) fn new() -> Self {
        ProbePauses { next: Self::FIRST }
    }

    /// The pause after a probe that found the server down, `outage` into the outage.
    pub(crate) fn after(&mut self, outage: Duration) -> Duration {
        let longest = if outage < Self::EARLY_FOR {
            Self::EARLY_LONGEST
        } else {
            Self::LONGEST
        };
        let pause = self.next.min(longest);
        self.next = (self.next * 2).min(Self::LONGEST);
        pause
    }
}

impl Default for ProbePauses {
    fn default() -> Self {
        Self::new()
    }
}

/// How long `run --once` waits for a server that does not answer before it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Patience {
    /// For a server that answered earlier in this run (it may be restarting): `timeout_s`.
    pub answered: Duration,
    /// For a server that has not answered once since drawdrop started (closed, a wrong URL).
    pub never_answered: Duration,
}

impl Patience {
    /// `timeout_s`, and at most [`timing::never_answered_limit`] (a minute) until the
    /// server first answers.
    pub(crate) fn for_timeout(timeout: Duration) -> Patience {
        Patience {
            answered: timeout,
            never_answered: timeout.min(timing::never_answered_limit()),
        }
    }

    fn limit(&self, answered: bool) -> Duration {
        if answered {
            self.answered
        } else {
            self.never_answered
        }
    }
}

/// What is known about the server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Not probed yet.
    Unknown,
    Up,
    Down {
        reason: String,
    },
}

/// The server's state, shared by the workers and the prober.
#[derive(Debug)]
pub(crate) struct Health {
    state: watch::Sender<State>,
    /// Told about every change (the pool wakes idle workers with it).
    on_change: Option<Arc<Notify>>,
    /// Set when a worker first needs the server; the prober does not probe before that,
    /// so `run --once` on an empty inbox never asks the server anything.
    demand: watch::Sender<bool>,
    /// `run --once`: how long a wait goes on before it gives up; `None`: for ever.
    patience: Option<Patience>,
    /// The server answered at least once in this run.
    answered: AtomicBool,
    /// When the first worker began to wait in this outage; `None` while it answers.
    waiting_since: Mutex<Option<Instant>>,
}

/// The server did not come back in time (`run --once` gives up, see [`Patience`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server did not answer for {} s{}: {reason}",
    waited.as_secs(),
    if *never_answered { " (not once since drawdrop started)" } else { "" }
)]
pub(crate) struct Unreachable {
    pub reason: String,
    pub waited: Duration,
    /// It never answered in this run (so the shorter limit applied).
    pub never_answered: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: watch::Sender::new(State::Unknown),
            on_change: None,
            demand: watch::Sender::new(false),
            patience: None,
            answered: AtomicBool::new(false),
            waiting_since: Mutex::new(None),
        }
    }
}

impl Health {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A health that tells `on_change` about every change of state.
    pub(crate) fn notifying(on_change: Arc<Notify>) -> Self {
        Health {
            on_change: Some(on_change),
            ..Self::default()
        }
    }

    /// Waits give up after `patience` (`run --once`), or never (`None`).
    pub(crate) fn giving_up(self, patience: Option<Patience>) -> Self {
        Health { patience, ..self }
    }

    pub(crate) fn state(&self) -> State {
        self.state.borrow().clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        *self.state.borrow() == State::Up
    }

    /// Sets the state, telling whoever listens.
    fn set(&self, state: State) {
        let up = state == State::Up;
        self.state.send_replace(state);
        if up {
            self.answered.store(true, Ordering::Relaxed);
            // After the state: a waiter that saw it not up has recorded its start already.
            *lock(&self.waiting_since) = None;
        }
        if let Some(on_change) = &self.on_change {
            on_change.notify_waiters();
        }
    }

    /// The server answers (a probe said so).
    #[cfg(test)]
    pub(crate) fn mark_up(&self) {
        self.set(State::Up);
    }

    /// A worker found the server gone; the prober takes over.
    pub(crate) fn mark_down(&self, reason: &str) {
        let changed = self.state.send_if_modified(|state| {
            if *state == State::Up || *state == State::Unknown {
                *state = State::Down {
                    reason: reason.to_owned(),
                };
                true
            } else {
                false
            }
        });
        if changed && let Some(on_change) = &self.on_change {
            on_change.notify_waiters();
        }
    }

    /// Asks the prober to find out whether the server answers.
    pub(crate) fn want_server(&self) {
        self.demand
            .send_if_modified(|wanted| !std::mem::replace(wanted, true));
    }

    /// When waiting for this server gives up (`run --once`, once a wait has begun).
    pub(crate) fn gives_up_at(&self) -> Option<Instant> {
        let patience = self.patience?;
        let since = (*lock(&self.waiting_since))?;
        Some(since + patience.limit(self.has_answered()))
    }

    /// Waits until the server answers; with a [`Patience`], gives up when it runs out. Every
    /// waiter of one outage gives up at the same moment; a wait begun after that starts anew
    /// (a pool's server keeps waiting for its own while another one works).
    pub(crate) async fn wait_up(&self) -> Result<(), Unreachable> {
        let mut states = self.state.subscribe();
        loop {
            let Some(since) = self.begin_wait() else {
                return Ok(());
            };
            // After the wait is recorded: the prober's first words say until when it lasts.
            self.want_server();
            // The limit grows when the server answered meanwhile (and went again).
            let deadline = self
                .patience
                .map(|patience| since + patience.limit(self.has_answered()));
            if deadline.is_some_and(|at| at <= Instant::now()) {
                let unreachable = self.unreachable(since);
                let mut waiting_since = lock(&self.waiting_since);
                if *waiting_since == Some(since) {
                    *waiting_since = None;
                }
                return Err(unreachable);
            }
            tokio::select! {
                up = states.wait_for(|state| *state == State::Up) => {
                    return up.map(|_| ()).map_err(|_| self.unreachable(since));
                }
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// Records when this outage's wait began, and returns it; `None` while the server answers.
    fn begin_wait(&self) -> Option<Instant> {
        let mut since = None;
        // Under the state's lock, so an answer cannot slip in between the look and the record.
        self.state.send_if_modified(|state| {
            if *state != State::Up {
                since = Some(*lock(&self.waiting_since).get_or_insert_with(Instant::now));
            }
            false
        });
        since
    }

    fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    fn unreachable(&self, since: Instant) -> Unreachable {
        Unreachable {
            reason: match self.state() {
                State::Down { reason } => reason,
                _ => "no answer yet".to_owned(),
            },
            waited: since.elapsed(),
            never_answered: !self.has_answered(),
        }
    }

    /// Probes whenever the server is not known to be up, until cancelled.
    /// `server` is the server's index in the pool; `tally` shows a wait on the progress bar.
    pub(crate) async fn run_prober(
        &self,
        live: &Live,
        server: usize,
        tally: &Tally,
        cancel: &CancellationToken,
    ) {
        let mut demand = self.demand.subscribe();
        tokio::select! {
            _ = cancel.cancelled() => return,
            wanted = demand.wait_for(|wanted| *wanted) => if wanted.is_err() { return },
        }
        let mut states = self.state.subscribe();
        loop {
            let not_up = states.wait_for(|state| *state != State::Up);
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = not_up => if changed.is_err() { return },
            }
            if !self.probe_until_up(live, server, tally, cancel).await {
                return;
            }
        }
    }

    /// Returns false when cancelled first.
    async fn probe_until_up(
        &self,
        live: &Live,
        server: usize,
        tally: &Tally,
        cancel: &CancellationToken,
    ) -> bool {
        let outage = Instant::now();
        let mut pauses = ProbePauses::new();
        let mut last_told = None::<Instant>;
        let was_unknown = self.state() == State::Unknown;
        loop {
            // The latest settings: a fixed URL in the config is used at the next probe.
            let current = live.get();
            let backend = current.backend(server);
            let url = backend.server().url.as_str();
            let probe = tokio::select! {
                _ = cancel.cancelled() => return false,
                probe = backend.probe() => probe,
            };
            match probe {
                Probe::Up(_) => {
                    if was_unknown {
                        tracing::info!("server {url} is answering");
                    } else {
                        tracing::info!("server {url} is answering again");
                    }
                    self.set(State::Up);
                    if last_told.is_some() {
                        tally.waiting(None);
                    }
                    return true;
                }
                Probe::Down(reason) => {
                    if last_told.is_none_or(|told| told.elapsed() >= REMIND_EVERY) {
                        let hint = hint(backend, &reason);
                        match self.gives_up_at() {
                            Some(at) => {
                                let waiting = format!(
                                    "waiting for {} at {url} (not answering: {reason}) — giving up at {}",
                                    backend.product(),
                                    wall_clock(at)
                                );
                                let hint = hint.replacen(" — ", "; ", 1);
                                tracing::warn!("{waiting}{hint}");
                                tally.waiting(Some(&waiting));
                            }
                            None => tracing::warn!(
                                "server {url} is not answering ({reason}); files wait until it does{hint}"
                            ),
                        }
                        last_told = Some(Instant::now());
                    } else {
                        tracing::debug!("server {url} still not answering ({reason})");
                    }
                    self.set(State::Down { reason });
                }
            }
            let pause = pauses.after(outage.elapsed());
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// `14:05:10`: the local time at `at`.
fn wall_clock(at: Instant) -> String {
    let ahead = at.saturating_duration_since(Instant::now());
    jiff::ZonedDateTime::now()
        .saturating_add(ahead)
        .strftime("%H:%M:%S")
        .to_string()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What to check, for a person: `" — is Draw Things open ...?"` (empty when the reason says
/// it already: a refusal of credentials).
fn hint(backend: &dyn Backend, reason: &str) -> &'static str {
    if reason.contains("credentials") {
        return "";
    }
    backend.hint_when_down()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn patient(timeout_s: u64) -> Health {
        Health::new().giving_up(Some(Patience::for_timeout(Duration::from_secs(timeout_s))))
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answered_is_given_up_after_a_minute() {
        let health = patient(600);
        health.mark_down("Connection refused");
        let started = Instant::now();
        let error = health.wait_up().await.unwrap_err();
        assert_eq!(error.reason, "Connection refused");
        assert!(error.never_answered);
        assert_eq!(started.elapsed(), timing::never_answered_limit());
        assert_eq!(error.waited, timing::never_answered_limit());
        assert!(error.to_string().contains("not once since"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_timeout_is_kept_when_the_server_never_answered() {
        let health = patient(2);
        let started = Instant::now();
        health.wait_up().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_answered_before_is_waited_for_the_whole_timeout() {
        let health = patient(600);
        health.mark_up();
        health.mark_down("Connection refused");
        let started = Instant::now();
        let error = health.wait_up().await.unwrap_err();
        assert!(!error.never_answered);
        assert_eq!(started.elapsed(), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiter_of_one_outage_shares_its_deadline() {
        let health = Arc::new(patient(600));
        let started = Instant::now();
        let first = {
            let health = health.clone();
            tokio::spawn(async move { health.wait_up().await })
        };
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            health.gives_up_at(),
            Some(started + timing::never_answered_limit()),
            "counted from the first waiter"
        );
        let second = health.wait_up().await;
        assert!(second.is_err());
        assert_eq!(started.elapsed(), timing::never_answered_limit());
        assert!(first.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_begun_after_giving_up_starts_anew() {
        // A pool's server whose wait ran out while another server works waits again.
        let health = patient(600);
        health.wait_up().await.unwrap_err();
        let again = Instant::now();
        let error = health.wait_up().await.unwrap_err();
        assert_eq!(
            again.elapsed(),
            timing::never_answered_limit(),
            "not at once"
        );
        assert_eq!(error.waited, timing::never_answered_limit());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_during_the_wait_grants_the_full_timeout_to_the_next_outage() {
        let health = Arc::new(patient(600));
        let waiter = {
            let health = health.clone();
            tokio::spawn(async move { health.wait_up().await })
        };
        tokio::time::sleep(Duration::from_secs(50)).await;
        health.mark_up();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(health.gives_up_at(), None, "no wait while it answers");
        health.mark_down("gone");
        let started = Instant::now();
        health.wait_up().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn the_daemon_waits_for_ever_and_wakes_when_the_server_is_up() {
        let health = Arc::new(Health::new());
        let waiter = {
            let health = health.clone();
            tokio::spawn(async move { health.wait_up().await })
        };
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!waiter.is_finished());
        assert_eq!(health.gives_up_at(), None);
        health.mark_up();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        health.mark_down("gone");
        assert_eq!(
            health.state(),
            State::Down {
                reason: "gone".into()
            }
        );
    }

    #[test]
    fn probes_come_within_5_s_for_two_minutes_then_every_30_s_at_most() {
        let mut pauses = ProbePauses::new();
        let mut outage = Duration::ZERO;
        let mut early = Vec::new();
        while outage < Duration::from_secs(120) {
            let pause = pauses.after(outage);
            early.push(pause);
            outage += pause;
        }
        assert_eq!(
            early[..6],
            [250, 500, 1000, 2000, 4000, 5000].map(Duration::from_millis)
        );
        assert!(early.iter().all(|pause| *pause <= Duration::from_secs(5)));
        // Cheap: about one probe in 5 s once the first seconds have passed.
        assert!(early.len() < 30, "{} probes", early.len());
        let later: Vec<Duration> = (0..4).map(|_| pauses.after(outage)).collect();
        assert_eq!(later, [Duration::from_secs(30); 4]);
    }
}
