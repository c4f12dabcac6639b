//! The configuration in force, and hot reload: editing the config file or a profile takes
//! effect for the next file without a restart. A broken edit keeps the last good settings
//! and logs the error with file:line:col. A new profile gets its inbox folder at once.
//!
//! The inbox, the outbox and `concurrency` are fixed for a run: changing them is logged as
//! needing a restart, and the running values stay.

use crate::api::Client;
use crate::config::{Config, Located, Server};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Edits come in bursts (an editor writes, renames, touches): wait for quiet first.
const QUIET: Duration = Duration::from_millis(300);

/// One consistent snapshot: the config and a client for each of its servers.
#[derive(Debug)]
pub struct Current {
    pub config: Config,
    /// One per server, in the order of `config.servers`.
    pub clients: Vec<Client>,
}

impl Current {
    /// The client of server `index` (the last one if out of range).
    pub fn client(&self, index: usize) -> &Client {
        &self.clients[index.min(self.clients.len() - 1)]
    }

    /// The settings of server `index` (the last one if out of range).
    pub fn server(&self, index: usize) -> &Server {
        &self.config.servers[index.min(self.config.servers.len() - 1)]
    }
}

/// The snapshot in force; a job takes one at its start and keeps it to its end.
#[derive(Debug)]
pub struct Live {
    current: watch::Sender<Arc<Current>>,
}

impl Live {
    pub fn new(config: Config, clients: Vec<Client>) -> Live {
        Live {
            current: watch::Sender::new(Arc::new(Current { config, clients })),
        }
    }

    pub fn get(&self) -> Arc<Current> {
        self.current.borrow().clone()
    }

    /// Notified whenever a new snapshot is in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Current>> {
        self.current.subscribe()
    }

    /// Reads the files again and puts a good result in force. Returns whether it did.
    pub fn reload(&self, located: &Located) -> bool {
        let old = self.get();
        let mut config = match Config::reload(located, &old.config) {
            Ok((config, broken)) => {
                for error in broken {
                    tracing::error!("{error} — keeping the last good settings of this profile");
                }
                config
            }
            Err(error) => {
                tracing::error!("{error} — keeping the last good settings");
                return false;
            }
        };
        keep_fixed_settings(&old.config, &mut config);
        create_profile_folders(&old.config, &config);
        let clients = match clients_for(&config, &old) {
            Ok(clients) => clients,
            Err(error) => {
                tracing::error!(
                    "cannot set up a client for the new server settings ({error}) — keeping the last good settings"
                );
                return false;
            }
        };
        let names: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
        tracing::info!(
            "settings reloaded from {} (profiles: {})",
            config.file.display(),
            names.join(", ")
        );
        self.current
            .send_replace(Arc::new(Current { config, clients }));
        true
    }

    /// Reloads whenever the config file or a profile changes, until cancelled.
    pub async fn watch_files(&self, located: Located, cancel: CancellationToken) {
        let changed = Arc::new(Notify::new());
        let _watchers =
            match watch_config_files(&located.path, &self.get().config.profiles_dir(), &changed) {
                Ok(watchers) => watchers,
                Err(error) => {
                    tracing::warn!(
                        "cannot watch the config files ({error}); edits take effect after a restart"
                    );
                    return;
                }
            };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changed.notified() => {}
            }
            // Let the burst end.
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = changed.notified() => continue,
                    _ = tokio::time::sleep(QUIET) => break,
                }
            }
            self.reload(&located);
        }
    }
}

/// A client per server: the old one where its settings did not change.
fn clients_for(config: &Config, old: &Current) -> Result<Vec<Client>, reqwest::Error> {
    config
        .servers
        .iter()
        .enumerate()
        .map(|(index, server)| match old.config.servers.get(index) {
            Some(before) if before == server => Ok(old.client(index).clone()),
            _ => Client::new(server),
        })
        .collect()
}

/// Builds a client for every server of `config`.
pub fn clients(config: &Config) -> Result<Vec<Client>, reqwest::Error> {
    config.servers.iter().map(Client::new).collect()
}

/// The inbox, outbox and the servers' names and concurrency of a running daemon cannot
/// change under it.
fn keep_fixed_settings(old: &Config, new: &mut Config) {
    if new.inbox != old.inbox || new.outbox != old.outbox {
        tracing::warn!(
            "a new inbox or outbox takes effect after a restart; still using {} and {}",
            old.inbox.display(),
            old.outbox.display()
        );
        new.inbox = old.inbox.clone();
        new.outbox = old.outbox.clone();
    }
    let shape = |config: &Config| -> Vec<(String, usize)> {
        config
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.concurrency))
            .collect()
    };
    if shape(new) != shape(old) {
        tracing::warn!(
            "new servers or a new concurrency take effect after a restart; the other settings of the servers apply now"
        );
        if new.servers.len() != old.servers.len()
            || new
                .servers
                .iter()
                .zip(&old.servers)
                .any(|(a, b)| a.name != b.name)
        {
            new.servers = old.servers.clone();
        } else {
            for (server, before) in new.servers.iter_mut().zip(&old.servers) {
                server.concurrency = before.concurrency;
            }
        }
    }
}

fn create_profile_folders(old: &Config, new: &Config) {
    for name in new
        .profiles
        .keys()
        .filter(|name| !old.profiles.contains_key(*name))
    {
        let folder = new.inbox.join(name);
        match crate::durable::create_dir_all(&folder) {
            Ok(()) => tracing::info!("new profile {name}: drop files into {}", folder.display()),
            Err(error) => tracing::warn!("cannot create {}: {error}", folder.display()),
        }
    }
}

/// Watches the config file's folder and the profiles folder (each without descending).
fn watch_config_files(
    config_file: &Path,
    profiles: &Path,
    changed: &Arc<Notify>,
) -> notify::Result<Vec<RecommendedWatcher>> {
    let mut watchers = Vec::new();
    for folder in [config_file.parent(), Some(profiles)].into_iter().flatten() {
        if !folder.is_dir() {
            continue;
        }
        let config_file = config_file.to_path_buf();
        let changed = changed.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    // Reading the files (`status`, `check`, this very reload) changes nothing:
                    // counting it would reload forever.
                    Ok(event) if matches!(event.kind, EventKind::Access(_)) => false,
                    Ok(event) => event.paths.iter().any(|path| {
                        *path == config_file || path.extension().is_some_and(|e| e == "toml")
                    }),
                    Err(_) => true,
                };
                if relevant {
                    changed.notify_one();
                }
            })?;
        watcher.watch(folder, RecursiveMode::NonRecursive)?;
        watchers.push(watcher);
    }
    Ok(watchers)
}
