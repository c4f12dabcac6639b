//! Loading the config file: its keys checked and turned into a [`Config`], folders resolved,
//! profiles read, and built-in defaults for everything left out. Loading never writes anything.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::checks::{choice, integer_in};
use super::diagnostic::{Problems, Source, error_in_file};
use super::files::read_text;
use super::location::absolute;
use super::paths::{Nesting, expand_tilde, home_dir, nesting, normalize, resolve_folder};
use super::profiles::{
    DEFAULT_PROFILE_NAME, profiles_dir_beside, read_profiles, set_aside_homeless,
};
use super::raw::RawConfig;
use super::server::{EnvLookup, default_server, server};
use super::{After, Config, ConfigError, ConfigSource, Located, Profile, Server};
use std::collections::BTreeMap;

/// The watched folder when the config names none.
pub const DEFAULT_INBOX: &str = "~/DrawDrop/Inbox";
/// The results folder when the config names none.
pub const DEFAULT_OUTBOX: &str = "~/DrawDrop/Outbox";
/// How long a file must stay unchanged before it is taken, when the config does not say.
pub const DEFAULT_SETTLE_MS: u64 = 1000;
/// Inputs larger than this many megabytes fail instead of being sent.
pub const DEFAULT_MAX_FILE_MB: u64 = 100;
const MEGABYTE: u64 = 1024 * 1024;

impl Config {
    /// Loads the located config file and its profiles. A missing file is an error when it was
    /// named (`--config`, `$DRAWDROP_CONFIG`); in the platform config folder it means built-in
    /// defaults (profiles beside it are still read), so drawdrop runs without any config.
    pub fn load(located: &Located) -> Result<Config, ConfigError> {
        let file = absolute(&located.path)?;
        match read_text(&file)? {
            Some(text) => Config::from_text(&text, &file, &process_env),
            None if located.source == ConfigSource::Default => {
                Config::from_text("", &file, &process_env)
            }
            None => Err(error_in_file(
                &file,
                format!(
                    "no config file at this path (create one with `drawdrop init --config {}`)",
                    located.path.display()
                ),
            )),
        }
    }

    /// Loads the config file at `path`, which must exist, and the profiles beside it.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let file = absolute(path)?;
        match read_text(&file)? {
            Some(text) => Config::from_text(&text, &file, &process_env),
            None => Err(error_in_file(&file, "no such file")),
        }
    }

    /// The built-in configuration for a config file at `path` (which is not read): the
    /// defaults of every key and just the built-in, empty `default` profile.
    pub fn defaults(path: &Path) -> Config {
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = config_folder(&file);
        let default_folder = |value: &str| normalize(&base.join(expand_tilde(value)));
        Config {
            inbox: default_folder(DEFAULT_INBOX),
            outbox: default_folder(DEFAULT_OUTBOX),
            default_profile: DEFAULT_PROFILE_NAME.to_owned(),
            settle: Duration::from_millis(DEFAULT_SETTLE_MS),
            after: After::Archive,
            max_file_bytes: DEFAULT_MAX_FILE_MB * MEGABYTE,
            notifications: false,
            gallery: true,
            servers: vec![default_server()],
            profiles: [(DEFAULT_PROFILE_NAME.to_owned(), Profile::built_in_default())].into(),
            broken: BTreeMap::new(),
            file,
        }
    }

    /// A config file's text checked, with the profiles beside `file` (absolute). Every
    /// problem of the config file is reported, in file order; a broken profile is no error
    /// of the config (it is listed in [`Config::broken`]).
    fn from_text(text: &str, file: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let source = Source::new(file, text);
        let mut problems = Problems::default();
        let raw: RawConfig =
            source.deserialize_all(&mut problems, |error| source.toml_error(error))?;
        let home = home_dir();
        let base = config_folder(file);
        let mut folder = |key: &str, value: &Option<Spanned<String>>, default: &str| {
            let text = value
                .as_ref()
                .map_or(default, |value| value.get_ref().as_str());
            let resolved = resolve_folder(text, &base, home.as_deref()).map_err(|problem| {
                source.error_maybe_at(span(value), format!("`{key}` {problem}"))
            });
            resolved.map_err(|error| problems.push(error)).ok()
        };
        let inbox = folder("inbox", &raw.inbox, DEFAULT_INBOX);
        let outbox = folder("outbox", &raw.outbox, DEFAULT_OUTBOX);
        if let (Some(inbox), Some(outbox)) = (&inbox, &outbox) {
            problems.keep(check_apart(&source, &raw, inbox, outbox));
        }

        let settle = Duration::from_millis(match &raw.settle_ms {
            Some(millis) => problems.or(
                integer_in(&source, "settle_ms", millis, 0..=3_600_000),
                DEFAULT_SETTLE_MS,
            ),
            None => DEFAULT_SETTLE_MS,
        });
        let after = match &raw.after {
            Some(after) => problems.or(
                choice(&source, "after", after, &["archive", "delete"])
                    .map(|at| [After::Archive, After::Delete][at]),
                After::Archive,
            ),
            None => After::Archive,
        };
        let max_file_bytes = match &raw.max_file_mb {
            Some(mb) => problems.or(
                integer_in::<u64>(&source, "max_file_mb", mb, 1..=4096),
                DEFAULT_MAX_FILE_MB,
            ),
            None => DEFAULT_MAX_FILE_MB,
        } * MEGABYTE;
        let servers = servers(&source, &raw, env, &mut problems);
        let server_names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();

        let profiles_dir = profiles_dir_beside(file);
        let (profiles, broken) = read_profiles(&profiles_dir, &server_names)?;
        let (profiles, broken) = set_aside_homeless(profiles, broken, &servers, &profiles_dir);
        let known = |name: &str| profiles.contains_key(name) || broken.contains_key(name);
        check_server_profiles(&source, &raw, &known, &profiles, &mut problems);
        let default_profile = match &raw.default_profile {
            None => DEFAULT_PROFILE_NAME.to_owned(),
            Some(name) if known(name.get_ref()) => name.get_ref().clone(),
            Some(name) => {
                let existing: Vec<&str> = profiles.keys().map(String::as_str).collect();
                problems.push(source.error_at(
                    name.span(),
                    format!(
                        "default_profile = \"{}\" names no profile: there is no {} (profiles: {})",
                        name.get_ref(),
                        profiles_dir.join(format!("{}.toml", name.get_ref())).display(),
                        existing.join(", ")
                    ),
                ));
                DEFAULT_PROFILE_NAME.to_owned()
            }
        };
        let (Some(inbox), Some(outbox)) = (inbox, outbox) else {
            return Err(problems
                .finish(())
                .err()
                .unwrap_or_else(|| error_in_file(file, "the inbox or the outbox cannot be used")));
        };
        problems.finish(Config {
            file: file.to_path_buf(),
            inbox,
            outbox,
            default_profile,
            settle,
            after,
            max_file_bytes,
            notifications: raw.notifications.unwrap_or(false),
            gallery: raw.gallery.unwrap_or(true),
            servers,
            profiles,
            broken,
        })
    }
}

/// `[server]`, or the `[[servers]]` of a pool (each named, names unique), or the built-in one.
fn servers(
    source: &Source<'_>,
    raw: &RawConfig,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Vec<Server> {
    match (&raw.server, &raw.servers) {
        (Some(single), pool) => {
            if let Some(pool) = pool {
                problems.push(source.error_at(
                    pool.span(),
                    "use either `[server]` (one server) or `[[servers]]` (a pool), not both",
                ));
            }
            vec![server(source, single.get_ref(), env, problems)]
        }
        (None, None) => vec![default_server()],
        (None, Some(pool)) => {
            if pool.get_ref().is_empty() {
                problems.push(source.error_at(pool.span(), "`servers` lists no server"));
                return vec![default_server()];
            }
            let mut servers: Vec<Server> = Vec::new();
            for entry in pool.get_ref() {
                match &entry.get_ref().name {
                    None => problems.push(source.error_at(
                        entry.span(),
                        "each [[servers]] entry needs a `name` (how logs and `status` call it)",
                    )),
                    Some(name) if servers.iter().any(|s| &s.name == name.get_ref()) => problems
                        .push(source.error_at(
                            name.span(),
                            format!(
                                "there are two servers named \"{}\": names must differ",
                                name.get_ref()
                            ),
                        )),
                    Some(_) => {}
                }
                servers.push(server(source, entry.get_ref(), env, problems));
            }
            servers
        }
    }
}

/// Every `profiles = [...]` of a server names an existing profile (working or broken).
fn check_server_profiles(
    source: &Source<'_>,
    raw: &RawConfig,
    known: &dyn Fn(&str) -> bool,
    profiles: &BTreeMap<String, Profile>,
    problems: &mut Problems,
) {
    let entries = raw.server.iter().map(|single| single.get_ref()).chain(
        raw.servers
            .iter()
            .flat_map(|pool| pool.get_ref().iter().map(|e| e.get_ref())),
    );
    for entry in entries {
        for name in entry.profiles.iter().flatten() {
            if !known(name.get_ref()) {
                let existing: Vec<&str> = profiles.keys().map(String::as_str).collect();
                problems.push(source.error_at(
                    name.span(),
                    format!(
                        "there is no profile \"{}\" (profiles: {})",
                        name.get_ref(),
                        existing.join(", ")
                    ),
                ));
            }
        }
    }
}

/// The real process environment, for `password_env`.
fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The folder relative paths in the config file are relative to.
fn config_folder(file: &Path) -> PathBuf {
    file.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// Inbox and outbox must be apart: neither inside the other, nor the same folder, or drawdrop
/// would take its own results as new input. The error points at the key that causes it, or at
/// the other one when the culprit is a default.
fn check_apart(
    source: &Source<'_>,
    raw: &RawConfig,
    inbox: &Path,
    outbox: &Path,
) -> Result<(), ConfigError> {
    let (first, second, message) = match nesting(inbox, outbox) {
        Nesting::Apart => return Ok(()),
        Nesting::Same => (
            &raw.outbox,
            &raw.inbox,
            format!("inbox and outbox are the same folder ({})", inbox.display()),
        ),
        Nesting::InboxInsideOutbox => (
            &raw.inbox,
            &raw.outbox,
            format!(
                "the inbox ({}) is inside the outbox ({})",
                inbox.display(),
                outbox.display()
            ),
        ),
        Nesting::OutboxInsideInbox => (
            &raw.outbox,
            &raw.inbox,
            format!(
                "the outbox ({}) is inside the inbox ({})",
                outbox.display(),
                inbox.display()
            ),
        ),
    };
    Err(source.error_maybe_at(
        span(first).or_else(|| span(second)),
        format!(
            "{message}: they must be apart, or drawdrop would take its own results as new input"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn from_text(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(
            text,
            Path::new("/nonexistent/drawdrop/config.toml"),
            &no_env,
        )
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = Config::defaults(Path::new("/etc/drawdrop/config.toml"));
        assert_eq!(config.file, PathBuf::from("/etc/drawdrop/config.toml"));
        assert!(config.inbox.is_absolute() && config.inbox.ends_with("DrawDrop/Inbox"));
        assert!(config.outbox.is_absolute() && config.outbox.ends_with("DrawDrop/Outbox"));
        assert_eq!(config.default_profile, "default");
        assert_eq!(config.settle, Duration::from_millis(1000));
        assert_eq!(config.after, After::Archive);
        assert_eq!(config.servers[0].url.as_str(), "http://127.0.0.1:7860/");
        assert_eq!(config.servers[0].api, crate::config::Api::DrawThings);
        assert_eq!(config.servers[0].timeout, Duration::from_secs(600));
        assert_eq!(
            (
                config.servers[0].max_attempts,
                config.servers[0].concurrency
            ),
            (5, 1)
        );
        assert!(config.servers[0].auth.is_none());
        assert_eq!(config.profiles.keys().collect::<Vec<_>>(), ["default"]);
        assert_eq!(config.profiles["default"].settings, Settings::default());
        assert_eq!(
            config.profiles_dir(),
            PathBuf::from("/etc/drawdrop/profiles")
        );
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let file = Path::new("/nonexistent/drawdrop/config.toml");
        let loaded = from_text("").unwrap();
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", Config::defaults(file))
        );
    }

    #[test]
    fn relative_folders_are_beside_the_config_file() {
        let config = from_text("inbox = \"in\"\noutbox = \"../out\"\n").unwrap();
        assert_eq!(config.inbox, PathBuf::from("/nonexistent/drawdrop/in"));
        assert_eq!(config.outbox, PathBuf::from("/nonexistent/out"));
    }

    #[test]
    fn nesting_errors_point_at_the_key_in_the_file() {
        let error = from_text("outbox = \"/d/in/out\"\ninbox = \"/d/in\"\n").unwrap_err();
        assert_eq!(error.position, Some((1, 10)));
        assert!(
            error
                .message
                .starts_with("the outbox (/d/in/out) is inside the inbox (/d/in)")
        );
        let error = from_text("inbox = \"/d/x\"\noutbox = \"/d/./x\"\n").unwrap_err();
        assert_eq!(error.position, Some((2, 10)));
        assert!(error.message.contains("same folder"));
        // Only the outbox is in the file; the default inbox is inside it.
        let error = from_text("outbox = \"~\"\n").unwrap_err();
        assert_eq!(error.position, Some((1, 10)));
        assert!(error.message.starts_with("the inbox"), "{error}");
    }

    #[test]
    fn every_problem_of_the_file_is_reported_first_one_first() {
        let error = from_text(
            "after = \"keep\"\nsettle_ms = -1\ninbox = \"~bob/x\"\n[server]\nconcurrency = 0\n\
             url = \"ftp://x\"\n",
        )
        .unwrap_err();
        let spots: Vec<_> = error.all().map(|e| e.position).collect();
        assert_eq!(
            spots,
            [
                Some((1, 9)),
                Some((2, 13)),
                Some((3, 9)),
                Some((5, 15)),
                Some((6, 7))
            ],
            "{error}"
        );
        assert!(error.message.contains("`after`"), "{error}");
    }

    #[test]
    fn profile_for_uses_the_first_folder() {
        fn profile(config: &Config, path: &str) -> String {
            config.profile_for(Path::new(path)).name.clone()
        }
        let mut config = Config::defaults(Path::new("/c/config.toml"));
        let style = Profile {
            name: "style".into(),
            file: None,
            settings: Settings::default(),
            servers: None,
        };
        config.profiles.insert("style".into(), style);
        assert_eq!(profile(&config, "cat.png"), "default");
        assert_eq!(profile(&config, "style/cat.png"), "style");
        assert_eq!(profile(&config, "./style/deeper/cat.png"), "style");
        assert_eq!(profile(&config, "holiday/cat.png"), "default");
        assert_eq!(profile(&config, "style"), "default");
        assert_eq!(profile(&config, "Style/cat.png"), "default");

        config.default_profile = "style".into();
        assert_eq!(profile(&config, "cat.png"), "style");
        assert_eq!(profile(&config, "default/cat.png"), "default");
        config.profiles.clear();
        assert_eq!(profile(&config, "cat.png"), "default");
    }
}
