//! The fake's HTTP/1.1: reading one request off a connection (keep-alive, pipelining,
//! `Content-Length` bodies, `Expect: 100-continue`; malformed heads get a status) and writing
//! one answer in one buffer.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head (request line and headers) the fake reads.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the fake reads.
const MAX_BODY: usize = 1 << 30;

/// One parsed request.
pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    version: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Request {
    /// Whether the connection closes after this request.
    pub(super) fn wants_close(&self) -> bool {
        let connection = header_value(&self.headers, "connection").map(str::to_ascii_lowercase);
        let has = |token: &str| {
            connection
                .as_deref()
                .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
        };
        if self.version == "HTTP/1.0" {
            !has("keep-alive")
        } else {
            has("close")
        }
    }
}

/// What reading from a connection gave.
pub(super) enum Incoming {
    Request(Request),
    /// The peer closed (between requests or mid-request).
    Closed,
    /// A malformed request: answer this status and close.
    Bad(u16, &'static str),
}

/// Reads one request; `buffer` keeps bytes read past it (pipelining).
pub(super) async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> io::Result<Incoming> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Ok(Incoming::Bad(431, "request head too large"));
        }
        if stream.read_buf(buffer).await? == 0 {
            return Ok(Incoming::Closed);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let (method, target, version, headers) = match parse_head(&head) {
        Ok(parsed) => parsed,
        Err(message) => return Ok(Incoming::Bad(400, message)),
    };
    if header_value(&headers, "transfer-encoding").is_some() {
        return Ok(Incoming::Bad(411, "chunked bodies are not supported"));
    }
    let length = match content_length(&headers) {
        Ok(length) => length,
        Err(message) => return Ok(Incoming::Bad(400, message)),
    };
    if length > MAX_BODY {
        return Ok(Incoming::Bad(413, "body too large"));
    }
    let expects_continue =
        header_value(&headers, "expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects_continue && buffer.len() < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    buffer.reserve(length.saturating_sub(buffer.len()).min(64 << 20));
    while buffer.len() < length {
        if stream.read_buf(buffer).await? == 0 {
            return Ok(Incoming::Closed);
        }
    }
    // The body is taken without copying it; only what follows it (rarely anything) moves.
    let rest = buffer.split_off(length);
    let body = std::mem::replace(buffer, rest);
    Ok(Incoming::Request(Request {
        method,
        target,
        version,
        headers,
        body,
    }))
}

type Head = (String, String, String, Vec<(String, String)>);

/// Parses the request line and headers.
fn parse_head(head: &str) -> Result<Head, &'static str> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err("malformed request line");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("malformed header");
        };
        if name.is_empty() || name.contains(' ') {
            return Err("malformed header");
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((method.into(), target.into(), version.into(), headers))
}

/// The body length: `Content-Length`, 0 when absent; repeated values must agree.
fn content_length(headers: &[(String, String)]) -> Result<usize, &'static str> {
    let mut length = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if length.is_some_and(|l| l != parsed) {
                return Err("conflicting Content-Length");
            }
            length = Some(parsed);
        }
    }
    Ok(length.unwrap_or(0))
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

pub(super) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) fn route_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// One answer.
pub(super) struct Response {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// Close the connection after it.
    pub(super) close: bool,
}

impl Response {
    pub(super) fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            close: false,
        }
    }

    pub(super) fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    pub(super) fn text(status: u16, message: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: message.as_bytes().to_vec(),
            close: true,
        }
    }

    pub(super) fn with_header(mut self, name: &str, value: String) -> Response {
        self.headers.push((name.to_string(), value));
        self
    }

    /// The whole answer in one buffer, so it goes out in one write.
    pub(super) fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = Vec::with_capacity(head.len() + self.body.len());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
