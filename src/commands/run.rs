//! `drawdrop run [--once]`: the daemon in the foreground, or one pass over the inbox.

use super::{EXIT_START, runtime};
use crate::config::{Config, locate};
use crate::pipeline::daemon::{self, Options};
use crate::report::last_start::LastStart;
use crate::report::logging::LogHandle;
use crate::report::progress::{BarProgress, terminal_bar};
use crate::report::tally::Tally;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub(super) fn run(flag: Option<&Path>, once: bool, logs: LogHandle) -> ExitCode {
    let located = match locate(flag) {
        Ok(located) => located,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(EXIT_START);
        }
    };
    // A failed start of the daemon is noted for `drawdrop status` (not one of `--once`).
    let failed = |error: &dyn std::fmt::Display| {
        tracing::error!("{error}");
        if !once {
            LastStart::failed(&located.path, &error.to_string());
        }
        ExitCode::from(EXIT_START)
    };
    let config = match Config::load(&located) {
        Ok(config) => config,
        Err(error) => return failed(&error),
    };
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
                let waiting = match summary.waiting {
                    0 => String::new(),
                    count => format!(", {count} waiting for a broken profile (see above)"),
                };
                println!(
                    "drawdrop: {} done, {} failed{waiting} in {:.1} s",
                    summary.done,
                    summary.failed,
                    started.elapsed().as_secs_f64()
                );
                // Files left untouched for a broken profile: a config error, as documented.
                if summary.waiting > 0 {
                    ExitCode::from(EXIT_START)
                } else {
                    ExitCode::from(u8::from(summary.failed > 0))
                }
            }
            Ok(_) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            // Another daemon holds the inbox: that one runs, so this start stopped nothing.
            Err(error @ daemon::StartError::Lock(_)) => {
                tracing::error!("{error}");
                ExitCode::from(EXIT_START)
            }
            Err(error) => failed(&error),
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
