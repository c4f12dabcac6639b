//! The HTTP client the HTTP kinds of server share: posting an img2img request and reading its
//! pictures as they stream in, asking whether the server answers, `GET`ting its lists. Every
//! failure comes back as a [`Trouble`].

use super::Trouble;
use super::sdapi::answer::error_detail;
use super::sdapi::stream::AnswerDecoder;
use crate::config::{BasicAuth, Server};
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
pub(crate) struct Client {
    http: reqwest::Client,
    server: Server,
}

impl Client {
    pub(crate) fn new(server: &Server) -> Result<Client, super::Unusable> {
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
        let builder = trust_ca_file(builder, server)?;
        let http = builder
            .build()
            .map_err(|error| super::Unusable(error.to_string()))?;
        Ok(Client {
            http,
            server: server.clone(),
        })
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    /// Posts one img2img request (`body`, JSON) to `path` and reads a 200 answer's pictures as
    /// they arrive (see [`AnswerDecoder`]): at least `expected`, after a leading grid of the
    /// batch when `grid_first` may come.
    pub(crate) async fn img2img(
        &self,
        path: &str,
        body: Bytes,
        expected: usize,
        grid_first: bool,
        limits: &Limits,
    ) -> Result<Vec<Vec<u8>>, Trouble> {
        let request = self
            .with_auth(self.http.post(self.endpoint(path)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.server.timeout)
            .body(body);
        let mut response = request.send().await.map_err(|e| self.classify(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let retry_after = retry_after(&response);
            let answer = response.bytes().await.map_err(|e| self.classify(&e))?;
            return Err(Trouble::Status {
                code: status.as_u16(),
                detail: error_detail(&answer),
                retry_after,
            });
        }
        let mut decoder = AnswerDecoder::new(response.content_length());
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(&e))? {
            decoder.feed(&chunk)?;
        }
        Ok(decoder.finish(expected, grid_first, limits)?)
    }

    /// Asks whether the server is ready with `GET path`: its JSON answer (if it is JSON), or
    /// why it is not, for a person.
    pub(crate) async fn probe(&self, path: &str) -> Result<Option<serde_json::Value>, String> {
        let request = self
            .with_auth(self.http.get(self.endpoint(path)))
            .timeout(PROBE_TIMEOUT);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(match self.classify(&error) {
                    Trouble::Unreachable(reason) => reason,
                    other => other.to_string(),
                });
            }
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => Ok(serde_json::from_slice(&body).ok()),
            401 | 403 => Err(format!(
                "the server refuses drawdrop's credentials ({status}): check `username` and `password_env` in the config"
            )),
            _ => Err(format!(
                "the server answered {status}: {}",
                error_detail(&body)
            )),
        }
    }

    /// `GET` a JSON document (A1111's model, sampler and LoRA lists, for `check`).
    pub(crate) async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
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

    /// `method` on `path` with `body` (its content type and bytes), within the server's
    /// `timeout_s`: the answer's status and bytes, whatever the status.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(u16, Bytes), Trouble> {
        let mut request = self
            .with_auth(self.http.request(method, self.endpoint(path)))
            .timeout(self.server.timeout);
        if let Some((content_type, body)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let response = request.send().await.map_err(|e| self.classify(&e))?;
        let status = response.status().as_u16();
        let answer = response.bytes().await.map_err(|e| self.classify(&e))?;
        Ok((status, answer))
    }

    /// The server's URL with `path` (and the query after a `?` in it) under its own path.
    pub(crate) fn endpoint(&self, path: &str) -> reqwest::Url {
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

    fn classify(&self, error: &reqwest::Error) -> Trouble {
        let reason = describe(error);
        if error.is_timeout() && !error.is_connect() {
            Trouble::TimedOut(self.server.timeout)
        } else if error.is_connect() {
            Trouble::Unreachable(reason)
        } else {
            Trouble::Lost(reason)
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
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
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

/// The server's `ca_file` authorities, trusted beside the usual ones.
#[cfg(feature = "tls")]
fn trust_ca_file(
    mut builder: reqwest::ClientBuilder,
    server: &Server,
) -> Result<reqwest::ClientBuilder, super::Unusable> {
    if let Some(authorities) = &server.ca_file {
        let certificates =
            reqwest::Certificate::from_pem_bundle(&authorities.pem).map_err(|error| {
                super::Unusable(format!("`ca_file` {}: {error}", authorities.path.display()))
            })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

#[cfg(not(feature = "tls"))]
fn trust_ca_file(
    builder: reqwest::ClientBuilder,
    _: &Server,
) -> Result<reqwest::ClientBuilder, super::Unusable> {
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

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
