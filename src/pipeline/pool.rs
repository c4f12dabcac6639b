//! The servers of a pool at run time: each one's health, which profiles each has refused,
//! and which server may take which work.
//!
//! One queue feeds every server; each server pulls work up to its own concurrency, so a
//! fast server takes more. A server takes a file only if it accepts its profile (`profiles`
//! in `[[servers]]`) and has not already given it up; a profile's preferred servers
//! (`servers` in the profile) take its files while any of them answers, the others only when
//! none does. A lone `[server]` is a pool of one, and behaves as drawdrop always did.

use crate::config::{Config, Profile};
use crate::mutex::lock;
use crate::pipeline::health::{Health, Patience};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a server that refused a profile (422: the model is missing on that Mac, say)
/// is skipped for it before it is asked again.
pub(crate) const SKIP_FOR: Duration = Duration::from_secs(600);

/// Why servers could not do one job so far; travels with the job when it is handed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Handover {
    /// Attempts made on every server so far.
    pub attempts: u32,
    /// Servers (by index) that gave the job up, with their reasons.
    pub refusals: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub server: usize,
    pub reason: String,
}

impl Handover {
    pub(crate) fn refused_by(&self, server: usize) -> bool {
        self.refusals.iter().any(|refusal| refusal.server == server)
    }

    /// Every server's reason, for the `.error.txt` of a file no server could do.
    pub(crate) fn reasons(&self, config: &Config) -> String {
        self.refusals
            .iter()
            .map(|refusal| {
                let name = config
                    .servers
                    .get(refusal.server)
                    .map_or("?", |s| s.name.as_str());
                format!("{name}: {}", refusal.reason)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The run-time state of every server.
#[derive(Debug)]
pub(crate) struct Pool {
    healths: Vec<Arc<Health>>,
    /// (server, profile) -> until when, and why.
    skipped: Mutex<HashMap<(usize, String), (Instant, String)>>,
    /// Fired when any server's health changes, so idle workers look at the queue again.
    changed: Arc<Notify>,
}

impl Pool {
    /// `servers` servers; waits for them give up after `patience` (`run --once`), if set.
    pub(crate) fn new(servers: usize, patience: Option<Patience>) -> Pool {
        let changed = Arc::new(Notify::new());
        Pool {
            healths: (0..servers)
                .map(|_| Arc::new(Health::notifying(changed.clone()).giving_up(patience)))
                .collect(),
            skipped: Mutex::new(HashMap::new()),
            changed,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.healths.len()
    }

    /// More than one server: a job a server cannot do goes to another.
    pub(crate) fn is_shared(&self) -> bool {
        self.len() > 1
    }

    pub(crate) fn health(&self, server: usize) -> &Arc<Health> {
        &self.healths[server.min(self.healths.len() - 1)]
    }

    pub(crate) fn healths(&self) -> &[Arc<Health>] {
        &self.healths
    }

    /// Whether any server answers now.
    pub(crate) fn any_up(&self) -> bool {
        self.healths.iter().any(|health| health.is_up())
    }

    /// Waits until some server's health changes.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// `server` refused `profile`: it is not asked for it again for a while.
    pub(crate) fn skip(&self, server: usize, profile: &str, reason: &str) {
        let mut skipped = lock(&self.skipped);
        skipped.insert(
            (server, profile.to_owned()),
            (Instant::now() + SKIP_FOR, reason.to_owned()),
        );
    }

    /// Why `server` skips `profile` now, if it does.
    pub(crate) fn skipping(&self, server: usize, profile: &str) -> Option<String> {
        let skipped = lock(&self.skipped);
        skipped
            .get(&(server, profile.to_owned()))
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, reason)| reason.clone())
    }

    /// Whether `server` may take a job of `profile` that `handover` tells about.
    pub(crate) fn may_take(
        &self,
        config: &Config,
        server: usize,
        profile: &Profile,
        handover: &Handover,
    ) -> bool {
        if !accepts(config, server, profile) || handover.refused_by(server) {
            return false;
        }
        match &profile.servers {
            None => true,
            Some(preferred) => {
                let name = &config.servers[server].name;
                preferred.contains(name)
                    || !preferred.iter().any(|wanted| {
                        config
                            .servers
                            .iter()
                            .position(|s| &s.name == wanted)
                            .is_some_and(|other| {
                                accepts(config, other, profile)
                                    && !handover.refused_by(other)
                                    && self.health(other).is_up()
                            })
                    })
            }
        }
    }

    /// Whether any server is left that may still do a job of `profile`.
    pub(crate) fn anyone_left(
        &self,
        config: &Config,
        profile: &Profile,
        handover: &Handover,
    ) -> bool {
        (0..config.servers.len())
            .any(|server| accepts(config, server, profile) && !handover.refused_by(server))
    }
}

/// Whether `server` takes `profile` at all (`profiles = [...]` of `[[servers]]`).
pub(crate) fn accepts(config: &Config, server: usize, profile: &Profile) -> bool {
    config.servers.get(server).is_some_and(|server| {
        server
            .profiles
            .as_ref()
            .is_none_or(|names| names.contains(&profile.name))
            && runs_its_kind(server, profile)
    })
}

/// A server that runs workflows takes only the profiles that have one, and a profile with a
/// workflow goes only to such servers.
pub(crate) fn runs_its_kind(server: &crate::config::Server, profile: &Profile) -> bool {
    server.api.runs_workflows() == profile.settings.workflow.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::path::Path;

    fn config(servers: &[(&str, Option<&[&str]>)]) -> Config {
        let mut config = Config::defaults(Path::new("/c/config.toml"));
        let template = config.servers[0].clone();
        config.servers = servers
            .iter()
            .map(|(name, profiles)| {
                let mut server = template.clone();
                server.name = (*name).to_owned();
                server.profiles = profiles.map(|p| p.iter().map(|s| s.to_string()).collect());
                server
            })
            .collect();
        config
    }

    fn profile(name: &str, servers: Option<&[&str]>) -> Profile {
        Profile {
            name: name.into(),
            file: None,
            settings: Settings::default(),
            servers: servers.map(|s| s.iter().map(|n| n.to_string()).collect()),
        }
    }

    fn up(pool: &Pool, servers: &[usize]) {
        for &server in servers {
            pool.health(server).mark_up();
        }
    }

    #[test]
    fn servers_take_only_the_profiles_they_accept_and_not_what_they_gave_up() {
        let config = config(&[("mini", Some(&["sketch"])), ("studio", None)]);
        let pool = Pool::new(2, None);
        up(&pool, &[0, 1]);
        let sketch = profile("sketch", None);
        let sdxl = profile("sdxl", None);
        let fresh = Handover::default();
        assert!(pool.may_take(&config, 0, &sketch, &fresh));
        assert!(!pool.may_take(&config, 0, &sdxl, &fresh));
        assert!(pool.may_take(&config, 1, &sdxl, &fresh));
        let refused = Handover {
            attempts: 1,
            refusals: vec![Refusal {
                server: 1,
                reason: "no model".into(),
            }],
        };
        assert!(!pool.may_take(&config, 1, &sdxl, &refused));
        assert!(!pool.anyone_left(&config, &sdxl, &refused));
        assert!(pool.anyone_left(&config, &sketch, &refused));
        assert_eq!(refused.reasons(&config), "studio: no model");
    }

    #[test]
    fn preferred_servers_take_a_profile_while_one_of_them_answers() {
        let config = config(&[("mini", None), ("studio", None)]);
        let pool = Pool::new(2, None);
        let picky = profile("picky", Some(&["studio"]));
        let fresh = Handover::default();
        up(&pool, &[0, 1]);
        assert!(!pool.may_take(&config, 0, &picky, &fresh));
        assert!(pool.may_take(&config, 1, &picky, &fresh));
        pool.health(1).mark_down("gone");
        assert!(
            pool.may_take(&config, 0, &picky, &fresh),
            "the others step in"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_skip_lasts_a_while() {
        let pool = Pool::new(2, None);
        pool.skip(0, "sdxl", "Unrecognized model name");
        assert_eq!(
            pool.skipping(0, "sdxl").as_deref(),
            Some("Unrecognized model name")
        );
        assert_eq!(pool.skipping(1, "sdxl"), None);
        tokio::time::advance(SKIP_FOR).await;
        assert_eq!(pool.skipping(0, "sdxl"), None);
    }
}
