//! The HTTP client for one image server: sending img2img requests and probing readiness.
//!
//! Errors are sorted by what drawdrop should do about them: wait for the server (it is
//! closed or refuses our credentials), retry (5xx, timeouts, dropped connections, broken
//! answers), or fail the file (any other 4xx: the request itself is wrong).

use super::answer::{BadAnswer, error_detail};
use super::stream::AnswerDecoder;
use crate::config::{Api, BasicAuth, Server};
use crate::image::Limits;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use std::time::Duration;

/// How long to wait for a TCP connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: Server,
}

/// Why a request did not produce an answer to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection (refused, no route, DNS): the server is closed or starting.
    #[error("cannot reach the server ({0})")]
    Unreachable(String),
    /// The connection broke before the answer was complete (the server crashed or restarted).
    #[error("the connection was lost before the answer came ({0})")]
    Lost(String),
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// An error status with the reason the server gave.
    #[error("the server answered {code}: {detail}")]
    Status {
        code: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Not the file's fault and not an attempt: wait until the server answers again.
    WaitForServer,
    /// May pass: count an attempt and try again after a pause (at least this long).
    Retry(Option<Duration>),
    /// The request itself is wrong: the file fails now.
    Fail,
}

impl SendError {
    pub fn disposition(&self) -> Disposition {
        match self {
            SendError::Unreachable(_) => Disposition::WaitForServer,
            SendError::Lost(_) | SendError::TimedOut(_) => Disposition::Retry(None),
            SendError::Status {
                code, retry_after, ..
            } => Disposition::of_status(*code, *retry_after),
        }
    }
}

impl Disposition {
    /// What an error status (with its `Retry-After`) means for the file.
    pub fn of_status(code: u16, retry_after: Option<Duration>) -> Disposition {
        match code {
            401 | 403 | 407 => Disposition::WaitForServer,
            408 | 425 | 429 | 500..=599 => Disposition::Retry(retry_after),
            _ => Disposition::Fail,
        }
    }
}

/// What a readiness probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The server answers; Draw Things also tells its current settings.
    Up(Option<serde_json::Value>),
    /// It does not (yet): why, for a person.
    Down(String),
}

impl Client {
    pub fn new(server: &Server) -> Result<Client, reqwest::Error> {
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("drawdrop/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&server.url) {
            // A proxy from the environment must not get between us and a local app.
            builder = builder.no_proxy();
        }
        Ok(Client {
            http: builder.build()?,
            server: server.clone(),
        })
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Sends one img2img request and reads a 200 answer's images as they arrive (see
    /// [`AnswerDecoder`]). The outer error is the request's; the inner one an answer that
    /// came but cannot be used.
    pub async fn img2img(
        &self,
        body: Bytes,
        expected: usize,
        limits: &Limits,
    ) -> Result<Result<Vec<Vec<u8>>, BadAnswer>, SendError> {
        let url = self.endpoint("sdapi/v1/img2img");
        let request = self
            .with_auth(self.http.post(url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.server.timeout)
            .body(body);
        let mut response = request.send().await.map_err(|e| self.classify(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let retry_after = retry_after(&response);
            let answer = response.bytes().await.map_err(|e| self.classify(&e))?;
            return Err(SendError::Status {
                code: status.as_u16(),
                detail: error_detail(&answer),
                retry_after,
            });
        }
        let mut decoder = AnswerDecoder::new(response.content_length());
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(&e))? {
            if let Err(bad) = decoder.feed(&chunk) {
                return Ok(Err(bad));
            }
        }
        Ok(decoder.finish(self.server.api, expected, limits))
    }

    /// Asks whether the server is ready: `GET /` for Draw Things (which answers its current
    /// settings), `GET /sdapi/v1/options` for A1111-compatible servers.
    pub async fn probe(&self) -> Probe {
        let path = match self.server.api {
            Api::DrawThings => "",
            Api::A1111 => "sdapi/v1/options",
        };
        let request = self
            .with_auth(self.http.get(self.endpoint(path)))
            .timeout(PROBE_TIMEOUT);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Probe::Down(match self.classify(&error) {
                    SendError::Unreachable(reason) => reason,
                    other => other.to_string(),
                });
            }
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => Probe::Up(serde_json::from_slice(&body).ok()),
            401 | 403 => Probe::Down(format!(
                "the server refuses drawdrop's credentials ({status}): check `username` and `password_env` in the config"
            )),
            _ => Probe::Down(format!(
                "the server answered {status}: {}",
                error_detail(&body)
            )),
        }
    }

    /// `GET` a JSON document (A1111's model, sampler and LoRA lists, for `check`).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let request = self
            .with_auth(self.http.get(self.endpoint(path)))
            .timeout(PROBE_TIMEOUT);
        let response = request
            .send()
            .await
            .map_err(|error| self.classify(&error).to_string())?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.classify(&error).to_string())?;
        if !status.is_success() {
            return Err(format!("{status}"));
        }
        serde_json::from_slice(&body).map_err(|error| error.to_string())
    }

    /// The server's URL with `path` (and the query after a `?` in it) under its own path.
    fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.server.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        url.set_path(&format!("{base}/{path}"));
        url.set_query(query);
        url
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.server.auth {
            Some(BasicAuth { username, password }) => request.basic_auth(username, Some(password)),
            None => request,
        }
    }

    fn classify(&self, error: &reqwest::Error) -> SendError {
        let reason = describe(error);
        if error.is_timeout() && !error.is_connect() {
            SendError::TimedOut(self.server.timeout)
        } else if error.is_connect() {
            SendError::Unreachable(reason)
        } else {
            SendError::Lost(reason)
        }
    }
}

/// The innermost cause of a reqwest error, which is the readable one ("Connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    let text = source.to_string();
    // Strip an OS error code suffix for readability: "Connection refused (os error 111)".
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Whether the server is on this machine (no proxy, and no warning about plain HTTP).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(feature = "tls")]
fn install_tls_provider() {
    // Fails only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(not(feature = "tls"))]
fn install_tls_provider() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> SendError {
        SendError::Status {
            code,
            detail: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            SendError::Unreachable("x".into()).disposition(),
            Disposition::WaitForServer
        );
        assert_eq!(
            SendError::Lost("x".into()).disposition(),
            Disposition::Retry(None)
        );
        assert_eq!(
            SendError::TimedOut(Duration::from_secs(1)).disposition(),
            Disposition::Retry(None)
        );
        assert_eq!(status(500, None).disposition(), Disposition::Retry(None));
        assert_eq!(
            status(503, Some(7)).disposition(),
            Disposition::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(status(429, None).disposition(), Disposition::Retry(None));
        assert_eq!(status(401, None).disposition(), Disposition::WaitForServer);
        assert_eq!(status(422, None).disposition(), Disposition::Fail);
        assert_eq!(status(404, None).disposition(), Disposition::Fail);
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:7860",
            "http://localhost:1",
            "http://[::1]:7860",
        ] {
            assert!(is_loopback(&url.parse().unwrap()), "{url}");
        }
        for url in ["http://192.168.1.5:7860", "http://studio.local:7860"] {
            assert!(!is_loopback(&url.parse().unwrap()), "{url}");
        }
    }
}
