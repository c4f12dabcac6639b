//! What the test fakes' servers share: a listener that can be stopped (closing every
//! connection) and started again, the wait for a condition on the fake's state, and a
//! poison-tolerant lock. Independent of the `drawdrop` crate, like the fakes.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A listening server: cancel the token to close the listener and every connection.
pub struct Running {
    pub token: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    /// Closes the listener and every connection, and waits until they are gone.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

/// Accepts connections on `listener` (with `TCP_NODELAY`), each served by `serve`, until
/// the returned [`Running`] is cancelled.
pub fn spawn_listener<F, Fut>(listener: TcpListener, serve: F) -> Running
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let token = CancellationToken::new();
    let cancelled = token.clone();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = cancelled.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let token = cancelled.clone();
                        let connection = serve(stream);
                        connections.spawn(async move {
                            tokio::select! {
                                () = token.cancelled() => {}
                                () = connection => {}
                            }
                        });
                    }
                    // E.g. too many open files: try again a bit later.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        connections.shutdown().await;
    });
    Running { token, task }
}

/// Waits until `condition` holds, checking it at every bump of `changes`; false if `timeout`
/// passed first.
pub async fn wait_until(
    changes: &watch::Sender<u64>,
    timeout: Duration,
    condition: impl Fn() -> bool,
) -> bool {
    let mut changed = changes.subscribe();
    let wait = async {
        loop {
            if condition() {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.is_ok() && condition()
}

/// Reads (and discards) until the peer closes: a request left hanging.
pub async fn wait_for_eof(stream: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    while let Ok(n) = stream.read(&mut scratch).await {
        if n == 0 {
            return;
        }
    }
}

/// Locks a std mutex, ignoring poisoning (a panicking test must not wedge a fake).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
