//! Whether the outbox can be written. When a write fails (disk full, read-only, unplugged
//! drive), workers stop taking new files, the job at hand stays safely claimed, and a probe
//! tries a small write with growing pauses until the outbox takes files again.

use crate::jobs::durable;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Open while the outbox takes writes; closed with the reason otherwise.
#[derive(Debug)]
pub(crate) struct OutboxGate {
    /// `None`: writable. `Some(reason)`: the last write failed.
    blocked: watch::Sender<Option<String>>,
    /// Where the probe writes (the outbox's staging folder).
    probe_dir: PathBuf,
}

impl OutboxGate {
    pub(crate) fn new(probe_dir: PathBuf) -> Self {
        OutboxGate {
            blocked: watch::Sender::new(None),
            probe_dir,
        }
    }

    /// A write failed: close the gate (and say so once).
    pub(crate) fn close(&self, reason: &str) {
        let newly = self.blocked.send_if_modified(|blocked| {
            if blocked.is_none() {
                *blocked = Some(reason.to_owned());
                true
            } else {
                false
            }
        });
        if newly {
            tracing::error!(
                "cannot write to the outbox ({reason}); no new files are taken until it can be written again (inputs are kept safe)"
            );
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.blocked.borrow().is_none()
    }

    /// Waits until the outbox can be written.
    pub(crate) async fn wait_open(&self) {
        let mut blocked = self.blocked.subscribe();
        let _ = blocked.wait_for(Option::is_none).await;
    }

    /// Probes the outbox whenever the gate is closed, until cancelled.
    pub(crate) async fn run_prober(&self, cancel: &CancellationToken) {
        let mut blocked = self.blocked.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                closed = blocked.wait_for(Option::is_some) => if closed.is_err() { return },
            }
            let mut pause = FIRST_PAUSE;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                if self.probe().await {
                    tracing::info!("the outbox can be written again");
                    self.blocked.send_replace(None);
                    break;
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }

    /// Writes and removes a small file where results are staged.
    async fn probe(&self) -> bool {
        let dir = self.probe_dir.clone();
        tokio::task::spawn_blocking(move || {
            let path = dir.join(format!(".probe-{}", std::process::id()));
            let written = durable::write_whole(&path, &[0u8; 4096]);
            let _ = durable::remove_file(&path);
            written.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_reopens_once_the_folder_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let probe_dir = dir.path().join("staging");
        std::fs::write(&probe_dir, b"a file where a folder should be").unwrap();
        let gate = std::sync::Arc::new(OutboxGate::new(probe_dir.clone()));
        let cancel = CancellationToken::new();
        let prober = {
            let (gate, cancel) = (gate.clone(), cancel.clone());
            tokio::spawn(async move { gate.run_prober(&cancel).await })
        };
        gate.close("No space left on device");
        assert!(!gate.is_open());
        std::fs::remove_file(&probe_dir).unwrap();
        tokio::time::timeout(Duration::from_secs(30), gate.wait_open())
            .await
            .expect("reopened");
        cancel.cancel();
        prober.await.unwrap();
    }
}
