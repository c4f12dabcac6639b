//! `drawdrop run [--once]`: the daemon in the foreground, or one pass over the inbox.

use super::{EXIT_START, load_config, runtime};
use crate::config::ConfigSource;
use crate::daemon::{self, Options};
use crate::logging::LogHandle;
use crate::progress::{BarProgress, terminal_bar};
use crate::tally::Tally;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub fn run(flag: Option<&Path>, once: bool, logs: LogHandle) -> ExitCode {
    let (located, config) = match load_config(flag) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(EXIT_START);
        }
    };
    if located.source == ConfigSource::Default && !located.path.exists() {
        tracing::info!(
            "no config file at {}; using the defaults (write one with `drawdrop init`)",
            located.path.display()
        );
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let tally = Arc::new(Tally::new());
        let bar = (once && std::io::stderr().is_terminal()).then(terminal_bar);
        if let Some(bar) = &bar {
            logs.set_progress_bar(Some(bar.clone()));
            tally.show_progress(Box::new(BarProgress(bar.clone())));
        }
        let started = Instant::now();
        let result = daemon::run(
            config,
            located.clone(),
            Options { once },
            &logs,
            tally,
            shutdown,
        )
        .await;
        logs.set_progress_bar(None);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(summary) if once => {
                println!(
                    "drawdrop: {} done, {} failed in {:.1} s",
                    summary.done,
                    summary.failed,
                    started.elapsed().as_secs_f64()
                );
                ExitCode::from(u8::from(summary.failed > 0))
            }
            Ok(_) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::from(EXIT_START)
            }
        }
    })
}

/// Cancels `shutdown` on SIGINT (Ctrl-C) or SIGTERM (what launchd and systemd send). The
/// handlers are installed before this returns, so a signal at any moment after start-up is
/// a clean stop, not a kill.
fn cancel_on_signal(shutdown: CancellationToken) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut terminate, mut interrupt) = signals;
            let terminated = async {
                match terminate.as_mut() {
                    Some(terminate) => terminate.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupted = async {
                match interrupt.as_mut() {
                    Some(interrupt) => interrupt.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = terminated => {}
                _ = interrupted => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    }
}
