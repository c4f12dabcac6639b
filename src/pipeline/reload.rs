//! The configuration in force, and hot reload: editing the config file or a profile takes
//! effect for the next file without a restart. A new profile gets its inbox folder at once.
//! A broken config file keeps the last good settings; a broken profile stops only its own
//! folder (its files wait in the inbox) until it is fixed. Each breakage is logged with
//! file:line:col when it appears (and told on the desktop once, with `notifications`), and
//! its fix is logged when it lands.
//!
//! The inbox, the outbox and `concurrency` are fixed for a run: changing them is logged as
//! needing a restart, and the running values stay.

use crate::backends::{self, Backend, Unusable};
use crate::config::{Config, ConfigError, Located, Server};
use crate::report::desktop::Notifications;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Edits come in bursts (an editor writes, renames, touches): wait for quiet first.
const QUIET: Duration = Duration::from_millis(300);

/// One consistent snapshot: the config and a backend for each of its servers.
#[derive(Debug)]
pub(crate) struct Current {
    pub config: Config,
    /// One per server, in the order of `config.servers`.
    pub backends: Vec<Arc<dyn Backend>>,
}

impl Current {
    /// The backend of server `index` (the last one if out of range).
    pub(crate) fn backend(&self, index: usize) -> &dyn Backend {
        &**self.backend_at(index)
    }

    /// [`Current::backend`], to take along into blocking work.
    pub(crate) fn backend_shared(&self, index: usize) -> Arc<dyn Backend> {
        self.backend_at(index).clone()
    }

    fn backend_at(&self, index: usize) -> &Arc<dyn Backend> {
        &self.backends[index.min(self.backends.len() - 1)]
    }

    /// The settings of server `index` (the last one if out of range).
    pub(crate) fn server(&self, index: usize) -> &Server {
        &self.config.servers[index.min(self.config.servers.len() - 1)]
    }
}

/// The snapshot in force; a job takes one at its start and keeps it to its end.
pub(crate) struct Live {
    current: watch::Sender<Arc<Current>>,
    /// Tells the desktop about each breakage once (when `notifications` is on).
    notifications: Notifications,
    /// The config file's problem while it is broken (the last good settings stay in force).
    config_problem: Mutex<Option<ConfigError>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The settings a run starts with; their broken profiles are reported now.
    pub(crate) fn new(
        config: Config,
        backends: Vec<Arc<dyn Backend>>,
        notifications: Notifications,
    ) -> Live {
        let live = Live {
            current: watch::Sender::new(Arc::new(Current { config, backends })),
            notifications,
            config_problem: Mutex::new(None),
        };
        live.report_profiles(&BTreeMap::new(), &live.get().config);
        live
    }

    pub(crate) fn get(&self) -> Arc<Current> {
        self.current.borrow().clone()
    }

    /// Notified whenever a new snapshot is in force.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Current>> {
        self.current.subscribe()
    }

    /// Reads the files again and puts a good result in force. Returns whether it did.
    pub(crate) fn reload(&self, located: &Located) -> bool {
        let old = self.get();
        let mut config = match Config::load(located) {
            Ok(config) => config,
            Err(error) => {
                let mut problem = crate::mutex::lock(&self.config_problem);
                tracing::error!("{error} — keeping the last good settings until it is fixed");
                if problem.is_none() && old.config.notifications {
                    self.notifications
                        .setting_broken(&error.file, "drawdrop keeps its last good settings");
                }
                *problem = Some(error);
                return false;
            }
        };
        if let Some(fixed) = crate::mutex::lock(&self.config_problem).take() {
            tracing::info!("{} is fixed: its settings apply now", fixed.file.display());
        }
        keep_fixed_settings(&old.config, &mut config);
        create_profile_folders(&old.config, &config);
        let backends = match backends_for(&config, &old) {
            Ok(backends) => backends,
            Err(error) => {
                tracing::error!(
                    "cannot set up a client for the new server settings ({error}) — keeping the last good settings"
                );
                return false;
            }
        };
        self.report_profiles(&old.config.broken, &config);
        let names: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
        if config.broken.is_empty() {
            tracing::info!(
                "settings reloaded from {} (profiles: {})",
                config.file.display(),
                names.join(", ")
            );
        } else {
            let waiting: Vec<&str> = config.broken.keys().map(String::as_str).collect();
            tracing::info!(
                "read {}: profiles in use: {}; waiting until fixed: {}",
                config.file.display(),
                names.join(", "),
                waiting.join(", ")
            );
        }
        self.current
            .send_replace(Arc::new(Current { config, backends }));
        true
    }

    /// Logs each profile broken since `before` (or broken differently), and each one fixed;
    /// tells the desktop once about each new breakage.
    fn report_profiles(&self, before: &BTreeMap<String, ConfigError>, config: &Config) {
        for (name, error) in &config.broken {
            if before.get(name) == Some(error) {
                continue;
            }
            let waiting = waiting_line(name, &config.inbox, &config.default_profile);
            tracing::error!("{error}");
            tracing::warn!("{waiting}");
            if !before.contains_key(name) && config.notifications {
                self.notifications.setting_broken(&error.file, &waiting);
            }
        }
        for name in before
            .keys()
            .filter(|name| !config.broken.contains_key(*name))
        {
            if config.profiles.contains_key(name) {
                tracing::info!(
                    "profile {name} is fixed: its folder goes on (files waiting in {} are taken now)",
                    config.inbox.join(name).display()
                );
            } else {
                tracing::info!(
                    "profile {name} was removed: files left in {} are taken with profile {}",
                    config.inbox.join(name).display(),
                    config.default_profile
                );
            }
        }
    }

    /// Starts watching the config file's folder and the profiles folder. Called before the
    /// daemon says it is watching, so an edit made from then on is never missed; `None` (with
    /// a warning) when they cannot be watched, and edits then wait for a restart.
    pub(crate) fn watch_config(&self, located: &Located) -> Option<ConfigWatch> {
        let changed = Arc::new(Notify::new());
        match watch_config_files(&located.path, &self.get().config.profiles_dir(), &changed) {
            Ok(watchers) => Some(ConfigWatch {
                _watchers: watchers,
                changed,
            }),
            Err(error) => {
                tracing::warn!(
                    "cannot watch the config files ({error}); edits take effect after a restart"
                );
                None
            }
        }
    }

    /// Reloads whenever the config file or a profile changes, until cancelled. Reading and
    /// checking the files runs off the async threads.
    pub(crate) async fn watch_files(
        self: Arc<Self>,
        watch: ConfigWatch,
        located: Located,
        cancel: CancellationToken,
    ) {
        let changed = watch.changed.clone();
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
            let (live, located) = (self.clone(), located.clone());
            let reloaded = tokio::task::spawn_blocking(move || live.reload(&located)).await;
            if let Err(error) = reloaded {
                tracing::error!(
                    "reloading the settings failed ({error}); the last ones stay in force"
                );
            }
        }
    }
}

/// What waits for broken profile `name`: its folder (and, for the profile of the inbox itself,
/// the files dropped there).
fn waiting_line(name: &str, inbox: &Path, default_profile: &str) -> String {
    let folder = inbox.join(name);
    if name == default_profile {
        format!(
            "profile {name} is broken: files dropped into {} (and into {}) wait there until it is fixed; the other profiles go on",
            inbox.display(),
            folder.display()
        )
    } else {
        format!(
            "profile {name} is broken: files in {} wait there until it is fixed; the other profiles go on",
            folder.display()
        )
    }
}

/// A backend per server: the old one where its settings did not change.
fn backends_for(config: &Config, old: &Current) -> Result<Vec<Arc<dyn Backend>>, Unusable> {
    config
        .servers
        .iter()
        .enumerate()
        .map(|(index, server)| match old.config.servers.get(index) {
            Some(before) if before == server => Ok(old.backend_shared(index)),
            _ => backends::for_server(server),
        })
        .collect()
}

/// Builds a backend for every server of `config`.
pub(crate) fn backends(config: &Config) -> Result<Vec<Arc<dyn Backend>>, Unusable> {
    config.servers.iter().map(backends::for_server).collect()
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

/// Creates the inbox folder of each profile new to `new`, or fixed in it (a profile never
/// seen before is announced), and of each profile newly broken in it: its files wait there.
fn create_profile_folders(old: &Config, new: &Config) {
    for name in new.broken.keys().filter(|name| {
        !old.profiles.contains_key(*name)
            && !old.broken.contains_key(*name)
            && crate::pipeline::folders::waits_in_a_folder(name)
    }) {
        let folder = new.inbox.join(name);
        if let Err(error) = crate::jobs::durable::create_dir_all(&folder) {
            tracing::warn!("cannot create {}: {error}", folder.display());
        }
    }
    for name in new
        .profiles
        .keys()
        .filter(|name| !old.profiles.contains_key(*name))
    {
        let folder = new.inbox.join(name);
        match crate::jobs::durable::create_dir_all(&folder) {
            Ok(()) if !old.broken.contains_key(name) => {
                tracing::info!("new profile {name}: drop files into {}", folder.display())
            }
            Ok(()) => {}
            Err(error) => tracing::warn!("cannot create {}: {error}", folder.display()),
        }
    }
}

/// The watchers of the config files, and the signal they raise on a change.
pub(crate) struct ConfigWatch {
    _watchers: Vec<RecommendedWatcher>,
    changed: Arc<Notify>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn broken_config(broken: &[&str]) -> Config {
        let mut config = Config::defaults(Path::new("/c/config.toml"));
        config.notifications = true;
        for name in broken {
            let file = PathBuf::from(format!("/c/profiles/{name}.toml"));
            let error = ConfigError {
                file,
                position: Some((1, 9)),
                message: "`steps` = 0 is out of range".into(),
                more: Vec::new(),
            };
            config.broken.insert((*name).to_owned(), error);
        }
        config
    }

    #[test]
    fn each_breakage_is_told_once() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        let notifications = Notifications::with(Box::new(move |_, message| {
            sink.lock().unwrap().push(message.to_owned());
        }));
        let config = broken_config(&["ink"]);
        let live = Live::new(config.clone(), backends(&config).unwrap(), notifications);
        assert_eq!(told.lock().unwrap().len(), 1, "told at start");
        // Still broken (the same way, or another way): not told again.
        live.report_profiles(&config.broken, &config);
        let mut other_way = config.clone();
        if let Some(error) = other_way.broken.get_mut("ink") {
            error.position = Some((2, 1));
        }
        live.report_profiles(&config.broken, &other_way);
        assert_eq!(told.lock().unwrap().len(), 1);
        // Fixed, then broken again; and a second profile broken: each is a new breakage.
        live.report_profiles(&other_way.broken, &broken_config(&[]));
        live.report_profiles(&BTreeMap::new(), &broken_config(&["ink", "oil"]));
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 3, "{told:?}");
        assert!(told[0].starts_with("ink.toml cannot be used"), "{told:?}");
        assert!(told[2].starts_with("oil.toml"), "{told:?}");
    }

    #[test]
    fn what_waits_is_named_by_folder() {
        let inbox = Path::new("/in");
        assert!(waiting_line("ink", inbox, "default").contains("files in /in/ink wait"));
        let root = waiting_line("default", inbox, "default");
        assert!(
            root.contains("dropped into /in (and into /in/default)"),
            "{root}"
        );
    }
}
