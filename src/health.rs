//! Whether the server answers. Workers wait here while it does not; one prober asks
//! `GET /` with growing pauses (up to 30 s) until it does, so a closed Draw Things pauses
//! the queue instead of failing files.

use crate::api::Probe;
use crate::reload::Live;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// While the server stays down, say so again this often.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// What is known about the server.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not probed yet.
    Unknown,
    Up,
    Down {
        reason: String,
    },
}

/// The server's state, shared by the workers and the prober.
#[derive(Debug)]
pub struct Health {
    state: watch::Sender<State>,
    /// Told about every change (the pool wakes idle workers with it).
    on_change: Option<Arc<Notify>>,
    /// Set when a worker first needs the server; the prober does not probe before that,
    /// so `run --once` on an empty inbox never asks the server anything.
    demand: watch::Sender<bool>,
}

/// The server did not come back in time (`run --once` gives up after `timeout_s`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server did not answer for {} s: {reason}", waited.as_secs())]
pub struct Unreachable {
    pub reason: String,
    pub waited: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: watch::Sender::new(State::Unknown),
            on_change: None,
            demand: watch::Sender::new(false),
        }
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// A health that tells `on_change` about every change of state.
    pub fn notifying(on_change: Arc<Notify>) -> Self {
        Health {
            on_change: Some(on_change),
            ..Self::default()
        }
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    pub fn is_up(&self) -> bool {
        *self.state.borrow() == State::Up
    }

    /// Sets the state, telling whoever listens.
    fn set(&self, state: State) {
        self.state.send_replace(state);
        if let Some(on_change) = &self.on_change {
            on_change.notify_waiters();
        }
    }

    /// The server answers (a probe said so).
    pub fn mark_up(&self) {
        self.set(State::Up);
    }

    /// A worker found the server gone; the prober takes over.
    pub fn mark_down(&self, reason: &str) {
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
    pub fn want_server(&self) {
        self.demand
            .send_if_modified(|wanted| !std::mem::replace(wanted, true));
    }

    /// Waits until the server answers, or gives up after `give_up_after` (when set).
    pub async fn wait_up(&self, give_up_after: Option<Duration>) -> Result<(), Unreachable> {
        self.want_server();
        let mut states = self.state.subscribe();
        let started = Instant::now();
        let up = states.wait_for(|state| *state == State::Up);
        let result = match give_up_after {
            Some(limit) => tokio::time::timeout(limit, up).await.ok(),
            None => Some(up.await),
        };
        match result {
            Some(Ok(_)) => Ok(()),
            _ => Err(Unreachable {
                reason: match self.state() {
                    State::Down { reason } => reason,
                    _ => "no answer yet".to_owned(),
                },
                waited: started.elapsed(),
            }),
        }
    }

    /// Probes whenever the server is not known to be up, until cancelled.
    /// `server` is the server's index in the pool.
    pub async fn run_prober(&self, live: &Live, server: usize, cancel: &CancellationToken) {
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
            if !self.probe_until_up(live, server, cancel).await {
                return;
            }
        }
    }

    /// Returns false when cancelled first.
    async fn probe_until_up(&self, live: &Live, server: usize, cancel: &CancellationToken) -> bool {
        let mut pause = FIRST_PAUSE;
        let mut last_told = None::<Instant>;
        let was_unknown = self.state() == State::Unknown;
        loop {
            // The latest settings: a fixed URL in the config is used at the next probe.
            let current = live.get();
            let client = current.client(server);
            let url = client.server().url.as_str();
            let probe = tokio::select! {
                _ = cancel.cancelled() => return false,
                probe = client.probe() => probe,
            };
            match probe {
                Probe::Up(_) => {
                    if was_unknown {
                        tracing::info!("server {url} is answering");
                    } else {
                        tracing::info!("server {url} is answering again");
                    }
                    self.set(State::Up);
                    return true;
                }
                Probe::Down(reason) => {
                    if last_told.is_none_or(|told| told.elapsed() >= REMIND_EVERY) {
                        // A refusal of credentials has its own hint in the reason.
                        let hint = if reason.contains("credentials") {
                            ""
                        } else {
                            hint(client)
                        };
                        tracing::warn!(
                            "server {url} is not answering ({reason}); files wait until it does{hint}"
                        );
                        last_told = Some(Instant::now());
                    } else {
                        tracing::debug!("server {url} still not answering ({reason})");
                    }
                    self.set(State::Down { reason });
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

fn hint(client: &crate::api::Client) -> &'static str {
    match client.server().api {
        crate::config::Api::DrawThings => {
            " — is Draw Things open, with its API server switched on (HTTP, same port)?"
        }
        crate::config::Api::A1111 => " — is the server started with --api?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn waiting_gives_up_after_the_limit_with_the_reason() {
        let health = Health::new();
        health.mark_down("Connection refused");
        let error = health
            .wait_up(Some(Duration::from_secs(600)))
            .await
            .unwrap_err();
        assert_eq!(error.reason, "Connection refused");
        assert!(error.waited >= Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_when_the_server_is_up() {
        let health = Arc::new(Health::new());
        let waiter = {
            let health = health.clone();
            tokio::spawn(async move { health.wait_up(None).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
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
}
