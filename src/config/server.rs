//! The `[server]` table checked: the URL drawdrop can reach, the request dialect, timeouts and
//! limits, and HTTP basic auth whose password is read from the environment.

use std::ffi::OsString;
use std::time::Duration;

use reqwest::Url;
use toml::Spanned;

use super::checks::{choice, integer_in, non_empty};
use super::diagnostic::{Problems, Source};
use super::paths::resolve_folder;
use super::raw::RawServer;
use super::{Api, BasicAuth, CaFile, ConfigError, Secret, Server};

/// Where Draw Things' API server listens by default (as does A1111's).
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:7860";
/// Seconds per request: one generation may take minutes.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Draw Things runs one request at a time.
pub const DEFAULT_CONCURRENCY: usize = 1;

/// Looks up an environment variable; injectable so tests need not change the process's.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The name of a lone `[server]` that names none.
pub(super) const DEFAULT_SERVER_NAME: &str = "server";

/// The built-in server: Draw Things on this machine.
pub(crate) fn default_server() -> Server {
    Server {
        name: DEFAULT_SERVER_NAME.to_owned(),
        profiles: None,
        url: default_url(),
        api: Api::DrawThings,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_S),
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        concurrency: DEFAULT_CONCURRENCY,
        auth: None,
        shared_secret: None,
        ca_file: None,
    }
}

fn default_url() -> Url {
    match Url::parse(DEFAULT_SERVER_URL) {
        Ok(url) => url,
        // A constant that a unit test parses; `Url` has no constructor that cannot fail.
        Err(error) => unreachable!("{DEFAULT_SERVER_URL} does not parse: {error}"),
    }
}

/// `[server]` (or a `[[servers]]` entry) checked; `env` supplies the password named by
/// `password_env`. Profile names are checked once the profiles are read. Every problem goes
/// to `problems` (the server is then unused).
pub(crate) fn server(
    source: &Source<'_>,
    raw: &RawServer,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Server {
    let defaults = default_server();
    Server {
        name: match &raw.name {
            Some(name) => problems.or(non_empty(source, "name", name, None), defaults.name),
            None => defaults.name,
        },
        profiles: raw
            .profiles
            .as_ref()
            .map(|names| names.iter().map(|name| name.get_ref().clone()).collect()),
        url: match &raw.url {
            Some(url) => problems.or(self::url(source, url), defaults.url),
            None => defaults.url,
        },
        api: match &raw.api {
            Some(api) => problems.or(
                choice(source, "api", api, &Api::ALL.map(Api::name)).map(|at| Api::ALL[at]),
                defaults.api,
            ),
            None => defaults.api,
        },
        timeout: match &raw.timeout_s {
            Some(seconds) => Duration::from_secs(problems.keep(integer_in(
                source,
                "timeout_s",
                seconds,
                1..=86_400,
            ))),
            None => defaults.timeout,
        },
        max_attempts: match &raw.max_attempts {
            Some(attempts) => problems.or(
                integer_in(source, "max_attempts", attempts, 1..=100),
                defaults.max_attempts,
            ),
            None => defaults.max_attempts,
        },
        concurrency: match &raw.concurrency {
            Some(requests) => problems.or(
                integer_in(source, "concurrency", requests, 1..=64),
                defaults.concurrency,
            ),
            None => defaults.concurrency,
        },
        auth: problems.keep(auth(source, raw, env)),
        shared_secret: match &raw.shared_secret_env {
            Some(variable)
                if raw
                    .api
                    .as_ref()
                    .is_none_or(|api| api.get_ref() != Api::DrawThingsGrpc.name()) =>
            {
                problems.push(source.error_at(
                    variable.span(),
                    "`shared_secret_env` is Draw Things' gRPC shared secret: it needs \
                     api = \"drawthings-grpc\" (HTTP servers take `username` and `password_env`)",
                ));
                None
            }
            Some(variable) => problems.keep(
                from_env(source, "shared_secret_env", variable, env)
                    .map(|value| Some(Secret(value))),
            ),
            None => None,
        },
        ca_file: match &raw.ca_file {
            Some(path) => problems.keep(ca_file(source, path, raw.url.as_ref()).map(Some)),
            None => None,
        },
    }
}

/// `ca_file`: a PEM file of certificates (relative to the config file's folder), for an
/// https `url`.
fn ca_file(
    source: &Source<'_>,
    value: &Spanned<String>,
    url: Option<&Spanned<String>>,
) -> Result<CaFile, ConfigError> {
    let error = |message: String| source.error_at(value.span(), message);
    if !url.is_some_and(|url| url.get_ref().trim().starts_with("https://")) {
        return Err(error(
            "`ca_file` is the certificate authority to trust for https: `url` must start with https://"
                .to_owned(),
        ));
    }
    let base = source.file.parent().unwrap_or(std::path::Path::new("."));
    let home = super::paths::home_dir();
    let path = resolve_folder(value.get_ref(), base, home.as_deref())
        .map_err(|problem| error(format!("`ca_file` {problem}")))?;
    let pem = std::fs::read(&path).map_err(|problem| {
        error(format!(
            "`ca_file`: cannot read {}: {problem}",
            path.display()
        ))
    })?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|window| window == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(error(format!(
            "`ca_file`: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(CaFile { path, pem })
}

/// An http(s) URL with a host. The value is never quoted back: it might hold a password.
fn url(source: &Source<'_>, value: &Spanned<String>) -> Result<Url, ConfigError> {
    let error = |message: String| Err(source.error_at(value.span(), message));
    let url = match Url::parse(value.get_ref().trim()) {
        Ok(url) => url,
        Err(problem) => {
            return error(format!(
                "`url` is not a valid URL ({problem}): write it like \"{DEFAULT_SERVER_URL}\""
            ));
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return error(format!(
            "`url` must start with http:// or https://, not {}://",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return error(format!(
            "`url` must name a host, like \"{DEFAULT_SERVER_URL}\""
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return error(
            "`url` must not hold a user name or password: set `username`, and `password_env` \
             to the environment variable that holds the password"
                .to_owned(),
        );
    }
    if url.scheme() == "https" && !cfg!(feature = "tls") {
        return error(
            "`url` uses https, but this drawdrop was built without the `tls` feature: use http:// \
             or a build with TLS"
                .to_owned(),
        );
    }
    Ok(url)
}

/// `username` and `password_env` come together; the password is read from the environment.
fn auth(
    source: &Source<'_>,
    raw: &RawServer,
    env: EnvLookup<'_>,
) -> Result<Option<BasicAuth>, ConfigError> {
    let (username, password_env) = match (&raw.username, &raw.password_env) {
        (None, None) => return Ok(None),
        (Some(username), None) => {
            return Err(source.error_at(
                username.span(),
                "`username` needs `password_env` too: the name of the environment variable that \
                 holds the password (passwords are never read from this file)",
            ));
        }
        (None, Some(password_env)) => {
            return Err(source.error_at(
                password_env.span(),
                "`password_env` needs `username` too: HTTP basic auth sends both",
            ));
        }
        (Some(username), Some(password_env)) => (username, password_env),
    };
    let username = non_empty(source, "username", username, None)?;
    let password = from_env(source, "password_env", password_env, env)?;
    Ok(Some(BasicAuth { username, password }))
}

/// The value of the environment variable that `key` (`password_env`, `shared_secret_env`)
/// names: set, UTF-8 and not empty. The value is never shown.
fn from_env(
    source: &Source<'_>,
    key: &str,
    name: &Spanned<String>,
    env: EnvLookup<'_>,
) -> Result<String, ConfigError> {
    let variable = non_empty(source, key, name, None)?;
    let problem = |what: &str| {
        source.error_at(
            name.span(),
            format!("{key} = \"{variable}\", but {variable} {what}"),
        )
    };
    let value = env(&variable)
        .ok_or_else(|| problem("is not set in drawdrop's environment"))?
        .into_string()
        .map_err(|_| problem("is not valid UTF-8"))?;
    if value.is_empty() {
        return Err(problem("is empty in drawdrop's environment"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str, env: EnvLookup<'_>) -> Result<Server, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            server: RawServer,
        }
        let doc: Doc = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        let server = server(
            &Source::new(Path::new("c.toml"), text),
            &doc.server,
            env,
            &mut problems,
        );
        problems.finish(server)
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn the_default_url_parses() {
        assert_eq!(default_url().as_str(), "http://127.0.0.1:7860/");
    }

    #[test]
    fn a_full_server_table_is_read() {
        let server = check(
            "[server]\nurl = \"http://gpu.local:7861\"\napi = \"a1111\"\ntimeout_s = 60\n\
             max_attempts = 2\nconcurrency = 3\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(server.url.as_str(), "http://gpu.local:7861/");
        assert_eq!(server.api, Api::A1111);
        assert_eq!(server.timeout, Duration::from_secs(60));
        assert_eq!((server.max_attempts, server.concurrency), (2, 3));
        assert!(server.auth.is_none());
    }

    #[test]
    fn urls_are_checked_without_quoting_them() {
        let message = |url: &str| {
            check(&format!("[server]\nurl = \"{url}\""), &no_env)
                .unwrap_err()
                .message
        };
        assert!(message("127.0.0.1:7860").contains("http://"));
        assert!(message("ftp://host").contains("not ftp://"));
        assert!(message("not a url").contains("not a valid URL"));
        let leaked = message("http://me:hunter2@host");
        assert!(leaked.contains("must not hold a user name"), "{leaked}");
        assert!(!leaked.contains("hunter2"));
        let https = check("[server]\nurl = \"https://host\"", &no_env);
        assert_eq!(https.is_ok(), cfg!(feature = "tls"));
    }

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_shown() {
        let env = |name: &str| (name == "PW").then(|| OsString::from("hunter2"));
        let server = check("[server]\nusername = \"me\"\npassword_env = \"PW\"", &env).unwrap();
        let auth = server.auth.clone().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("me", "hunter2")
        );
        assert!(!format!("{server:?}").contains("hunter2"));

        let error =
            check("[server]\nusername = \"me\"\npassword_env = \"NOPE\"", &env).unwrap_err();
        assert_eq!(error.position, Some((3, 16)));
        assert_eq!(
            error.message,
            "password_env = \"NOPE\", but NOPE is not set in drawdrop's environment"
        );
        let error = check("[server]\nusername = \"me\"", &env).unwrap_err();
        assert!(error.message.contains("needs `password_env`"));
        let error = check("[server]\npassword_env = \"PW\"", &env).unwrap_err();
        assert!(error.message.contains("needs `username`"));
        let empty = |_: &str| Some(OsString::new());
        let error =
            check("[server]\nusername = \"me\"\npassword_env = \"PW\"", &empty).unwrap_err();
        assert!(error.message.contains("is empty"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn ca_file_is_read_for_https_only() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = |url: &str, file: &str| {
            format!("[server]\nurl = \"{url}\"\napi = \"drawthings-grpc\"\nca_file = {file:?}")
        };
        let https = check(&text("https://gpu:7859", &pem.to_string_lossy()), &no_env);
        assert_eq!(https.unwrap().ca_file.unwrap().path, pem);
        let plain = check(&text("http://gpu:7859", &pem.to_string_lossy()), &no_env).unwrap_err();
        assert!(
            plain.message.contains("must start with https://"),
            "{}",
            plain.message
        );
        let missing = dir.path().join("nope.pem");
        let error = check(&text("https://gpu", &missing.to_string_lossy()), &no_env).unwrap_err();
        assert!(error.message.contains("cannot read"), "{}", error.message);
        std::fs::write(&pem, "not a certificate").unwrap();
        let error = check(&text("https://gpu", &pem.to_string_lossy()), &no_env).unwrap_err();
        assert!(
            error.message.contains("holds no PEM certificate"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_shared_secret_comes_from_the_environment_and_is_never_shown() {
        let env = |name: &str| (name == "DT").then(|| OsString::from("s3cret"));
        let text = "[server]\napi = \"drawthings-grpc\"\nshared_secret_env = \"DT\"";
        let server = check(text, &env).unwrap();
        assert_eq!(server.api, Api::DrawThingsGrpc);
        assert_eq!(server.shared_secret.as_ref().unwrap().0, "s3cret");
        assert!(!format!("{server:?}").contains("s3cret"));
        let missing = "[server]\napi = \"drawthings-grpc\"\nshared_secret_env = \"MISSING\"";
        let error = check(missing, &env).unwrap_err();
        assert_eq!(error.position, Some((3, 21)));
        assert_eq!(
            error.message,
            "shared_secret_env = \"MISSING\", but MISSING is not set in drawdrop's environment"
        );
        let error = check("[server]\nshared_secret_env = \"DT\"", &env).unwrap_err();
        assert!(
            error.message.contains("needs api = \"drawthings-grpc\""),
            "{}",
            error.message
        );
    }
}
