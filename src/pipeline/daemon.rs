//! Putting the pipeline together for `drawdrop run` and `run --once`:
//! folders, lock, recovery, the watch stage, the prober and the workers, and an orderly
//! shutdown that never takes longer than 10 s.

use crate::backends::http::is_loopback;
use crate::config::{Config, ConfigSource, Located};
use crate::image::Limits;
use crate::jobs::claim::{Claims, LockError};
use crate::jobs::finish::Finisher;
use crate::jobs::outbox::Outbox;
use crate::pipeline::folders;
use crate::pipeline::health::{Patience, Unreachable};
use crate::pipeline::outbox_gate::OutboxGate;
use crate::pipeline::pool::Pool;
use crate::pipeline::queue::{Queue, Work};
use crate::pipeline::reload;
use crate::pipeline::reload::Live;
use crate::pipeline::watch::{WatchStage, source};
use crate::pipeline::worker::{self, SHUTDOWN_GRACE, Shared};
use crate::report::desktop::Notifications;
use crate::report::gallery::{Gallery, Keeper};
use crate::report::last_start::LastStart;
use crate::report::live::InFlight;
use crate::report::logging::LogHandle;
use crate::report::tally::Tally;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After a shutdown request, tasks get this long in all before drawdrop exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(9);

/// How `run` should behave.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Process what is in the inbox now, then return.
    pub once: bool,
}

/// Why drawdrop could not start, or (`--once`) could not go on: exit status 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Folders(#[from] folders::FolderError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[from] crate::backends::Unusable),
    #[error("cannot watch the inbox {inbox}: {source}")]
    Watch {
        inbox: String,
        source: notify::Error,
    },
    #[error("cannot read the jobs left by the last run in {path}: {source}")]
    Recover {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}; the files stay in the inbox")]
    Unreachable(#[from] Unreachable),
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub done: usize,
    pub failed: usize,
    /// Files left in the inbox because their profile is broken.
    pub waiting: usize,
}

/// Runs until `shutdown` is cancelled (or, with `once`, until the inbox is done).
/// `located` is where the config came from: the daemon reloads it when it changes.
pub(crate) async fn run(
    config: Config,
    located: Located,
    options: Options,
    logs: &LogHandle,
    tally: Arc<Tally>,
    shutdown: CancellationToken,
) -> Result<Summary, StartError> {
    let inbox = folders::prepare(&config)?;
    let claims = Claims::new(&inbox);
    claims
        .create()
        .map_err(|error| folders::FolderError::create(&inbox, error))?;
    // The lock first: a second daemon, refused, must not write into the first one's log.
    let _lock = claims.lock()?;
    if let Err(error) = logs.log_to_folder(&config.outbox.join(crate::jobs::outbox::LOGS)) {
        tracing::warn!("cannot write the log file in the outbox: {error}");
    }
    if located.source == ConfigSource::Default && !located.path.exists() {
        tracing::info!(
            "no config file at {}; using the defaults (write one with `drawdrop init`)",
            located.path.display()
        );
    }
    warn_about_plain_http(&config);
    let recovered = claims.recover().map_err(|source| StartError::Recover {
        path: inbox.display().to_string(),
        source,
    })?;
    let outbox = Arc::new(Outbox::new(config.outbox.clone()));
    let finisher = Finisher {
        outbox: outbox.clone(),
        claims,
        one_file_system: folders::one_file_system(&inbox, &config.outbox),
    };
    if let Err(error) = finisher.clear_stale_staging(&recovered) {
        tracing::warn!("cannot clear old staged files: {error}");
    }
    let queue = Arc::new(Queue::new());
    tally.add_found(recovered.len());
    let cancel = shutdown.child_token();
    let settle = config.settle;
    let slots: Vec<(usize, usize)> = config
        .servers
        .iter()
        .enumerate()
        .map(|(index, server)| (index, server.concurrency))
        .collect();
    // `--once` gives up when no server answered for the longest of their timeouts (or for a
    // minute when none answered at all).
    let patience = options.once.then(|| {
        Patience::for_timeout(
            config
                .servers
                .iter()
                .map(|s| s.timeout)
                .max()
                .unwrap_or_default(),
        )
    });
    let live = Arc::new(Live::new(
        config.clone(),
        reload::backends(&config)?,
        Notifications::platform(),
    ));
    let keeper = Arc::new(Keeper::new(Gallery::new(&outbox), {
        let live = live.clone();
        move || live.get().config.gallery
    }));
    let in_flight = InFlight::new(&config.outbox);
    let shared = Arc::new(Shared {
        live,
        outbox_gate: Arc::new(OutboxGate::new(outbox.staging_root())),
        finisher,
        queue: queue.clone(),
        pool: Pool::new(config.servers.len(), patience),
        tally: tally.clone(),
        limits: Limits::default(),
        inbox: inbox.clone(),
        cancel: cancel.clone(),
        notifications: Notifications::platform(),
        applying: TaskTracker::new(),
        gallery: keeper.feed(),
        in_flight: in_flight.clone(),
    });
    for job in recovered {
        if job.commit_file().is_file() {
            // Decided before drawdrop stopped: only its files are left to move.
            worker::apply_recovered(&shared, job);
        } else {
            queue.push(Work::Recovered(job));
        }
    }

    let mut stage = WatchStage::new(inbox.clone(), settle, queue.clone(), options.once)
        .on_found(move |count| tally.add_found(count))
        .with_settle_updates(shared.live.subscribe());
    let mut hints = None;
    if !options.once {
        for health in shared.pool.healths() {
            health.want_server();
        }
        let (source, events) = source::channel();
        let watcher = source.watch(&inbox).map_err(|source| StartError::Watch {
            inbox: inbox.display().to_string(),
            source,
        })?;
        stage = stage.with_events(source, watcher);
        hints = Some(events);
    }
    // Edits are followed from before the line saying drawdrop watches, so none made after it is missed.
    let config_watch = if options.once {
        None
    } else {
        shared.live.watch_config(&located)
    };
    let servers: Vec<String> = config.servers.iter().map(|s| s.label()).collect();
    tracing::info!(
        "drawdrop {} watching {} -> {} (server{} {}, profiles: {}{})",
        env!("CARGO_PKG_VERSION"),
        inbox.display(),
        config.outbox.display(),
        if servers.len() == 1 { "" } else { "s" },
        servers.join(", "),
        config
            .profiles
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        match config.broken.keys().cloned().collect::<Vec<_>>() {
            broken if broken.is_empty() => String::new(),
            broken => format!("; waiting until fixed: {}", broken.join(", ")),
        }
    );
    if !options.once {
        LastStart::started(&located.path, &inbox, &config.outbox);
    }

    let mut tasks = JoinSet::new();
    let stage_cancel = cancel.clone();
    tasks.spawn(async move {
        stage.run(hints, stage_cancel).await;
        Ok(())
    });
    let helpers = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let reload = async {
                if let Some(watch) = config_watch {
                    shared
                        .live
                        .clone()
                        .watch_files(watch, located, shared.cancel.clone())
                        .await;
                }
            };
            let probers = shared
                .pool
                .healths()
                .iter()
                .enumerate()
                .map(|(index, health)| {
                    health.run_prober(&shared.live, index, &shared.tally, &shared.cancel)
                });
            tokio::join!(
                futures_join_all(probers),
                shared.outbox_gate.run_prober(&shared.cancel),
                reload,
            );
        })
    };
    // The gallery and the in-flight list stop only once every job is in place.
    let reporters = CancellationToken::new();
    let reporting = {
        let (keeper, reporters) = (keeper.clone(), reporters.clone());
        tokio::spawn(async move {
            tokio::join!(
                keeper.run(reporters.clone()),
                in_flight.run_writer(reporters.clone()),
            );
        })
    };
    for (server, concurrency) in slots {
        for _ in 0..concurrency {
            tasks.spawn(worker::run(shared.clone(), server));
        }
    }

    let outcome = wait(&mut tasks, &shutdown, &cancel).await;
    // Decided jobs still being moved into place are quick to finish: let them (all of them
    // at the end of `--once`; on shutdown within the time left).
    shared.applying.close();
    let limit = if shutdown.is_cancelled() {
        Duration::from_secs(1)
    } else {
        Duration::MAX
    };
    if tokio::time::timeout(limit, shared.applying.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "stopping while results are still being placed; the next start finishes them"
        );
    }
    cancel.cancel();
    reporters.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), reporting).await;
    // What the last jobs added: all of it after `--once`, what a second allows on shutdown.
    let deadline = shutdown
        .is_cancelled()
        .then(|| tokio::time::Instant::now() + Duration::from_secs(1));
    keeper.last_update(deadline).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), helpers).await;
    outcome?;
    Ok(Summary {
        done: shared.tally.done(),
        failed: shared.tally.failed(),
        waiting: if options.once {
            waiting_for_a_fix(&inbox, &shared.live.get().config)
        } else {
            0
        },
    })
}

/// The files in the inbox whose profile is broken (what `--once` leaves behind for them).
fn waiting_for_a_fix(inbox: &std::path::Path, config: &Config) -> usize {
    if config.broken.is_empty() {
        return 0;
    }
    crate::pipeline::watch::scan::scan(inbox, |_| {})
        .map(|found| {
            found
                .iter()
                .filter(|file| config.waits_for(&file.relative).is_some())
                .count()
        })
        .unwrap_or(0)
}

/// Waits for every task; stops them all on shutdown or when one gives up.
async fn wait(
    tasks: &mut JoinSet<Result<(), Unreachable>>,
    shutdown: &CancellationToken,
    cancel: &CancellationToken,
) -> Result<(), StartError> {
    let mut gave_up = None;
    loop {
        let next = tokio::select! {
            next = tasks.join_next() => next,
            _ = shutdown.cancelled() => break,
        };
        match next {
            None => return gave_up.map_or(Ok(()), |e| Err(StartError::Unreachable(e))),
            Some(Ok(Err(unreachable))) => {
                cancel.cancel();
                gave_up.get_or_insert(unreachable);
            }
            Some(Ok(Ok(()))) => {}
            Some(Err(panic)) => {
                tracing::error!("a drawdrop task stopped unexpectedly: {panic}");
                cancel.cancel();
            }
        }
    }
    tracing::info!(
        "stopping: no new files are taken; a request in flight gets {} s",
        SHUTDOWN_GRACE.as_secs()
    );
    cancel.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "stopping without waiting further; unfinished jobs are resumed at the next start"
        );
        tasks.abort_all();
    }
    gave_up.map_or(Ok(()), |e| Err(StartError::Unreachable(e)))
}

fn warn_about_plain_http(config: &Config) {
    for server in &config.servers {
        let url = &server.url;
        if url.scheme() == "http" && !is_loopback(url) {
            tracing::warn!(
                "the server {url} is on another machine over plain HTTP: pictures and prompts travel unencrypted"
            );
        }
    }
}

/// Runs every future to its end, together (one per server: the probers).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = futures.map(Box::pin).collect::<Vec<_>>();
    std::future::poll_fn(|context| {
        set.retain_mut(|future| future.as_mut().poll(context).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
