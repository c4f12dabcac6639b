//! The fake ComfyUI's HTTP/1.1: reading a request (head parsed by `httparse`, a
//! `Content-Length` or chunked body), writing an answer in one write, and the two body
//! formats ComfyUI reads besides JSON: `multipart/form-data` (uploads) and the query string.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head the fake reads.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the fake reads.
const MAX_BODY: usize = 1 << 30;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The target as sent: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0 without keep-alive, or `Connection: close`.
    pub close: bool,
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query, percent-decoded.
    pub fn path(&self) -> String {
        let raw = self.target.split('?').next().unwrap_or_default();
        percent_decode(raw)
    }

    /// The query's pairs, decoded (`+` is a space).
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The first query value with this name.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether this asks for a websocket (`Upgrade: websocket` with a key).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            && self.header("sec-websocket-key").is_some()
    }
}

/// What reading from a connection gave.
pub enum Incoming {
    Request(Request),
    /// The peer closed, between requests or in the middle of one.
    Closed,
    /// Malformed: answer this status and close.
    Bad(u16, &'static str),
}

/// Reads one request; `buffer` keeps what was read past it.
pub async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Incoming> {
    let (head_len, method, target, headers, version) = loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(buffer) {
            Ok(httparse::Status::Complete(len)) => {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).trim().to_string();
                        (h.name.to_string(), value)
                    })
                    .collect::<Vec<_>>();
                break (
                    len,
                    parsed.method.unwrap_or_default().to_string(),
                    parsed.path.unwrap_or_default().to_string(),
                    headers,
                    parsed.version.unwrap_or(1),
                );
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Ok(Incoming::Bad(400, "malformed request head")),
        }
        if buffer.len() > MAX_HEAD {
            return Ok(Incoming::Bad(431, "request head too large"));
        }
        if stream.read_buf(buffer).await? == 0 {
            return Ok(Incoming::Closed);
        }
    };
    buffer.drain(..head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let connection = find("connection").unwrap_or_default();
    let close = if version == 0 {
        !connection.contains("keep-alive")
    } else {
        connection.contains("close")
    };
    let body = if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        match read_chunked(stream, buffer).await? {
            Some(body) => body,
            None => return Ok(Incoming::Closed),
        }
    } else {
        let length = match find("content-length").map(|l| l.parse::<usize>()) {
            None => 0,
            Some(Ok(length)) if length <= MAX_BODY => length,
            Some(Ok(_)) => return Ok(Incoming::Bad(413, "body too large")),
            Some(Err(_)) => return Ok(Incoming::Bad(400, "bad Content-Length")),
        };
        if find("expect").is_some_and(|e| e == "100-continue") && buffer.len() < length {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        if !fill(stream, buffer, length).await? {
            return Ok(Incoming::Closed);
        }
        let rest = buffer.split_off(length);
        std::mem::replace(buffer, rest)
    };
    Ok(Incoming::Request(Request {
        method,
        target,
        headers,
        body,
        close,
    }))
}

/// Reads until `buffer` holds at least `length` bytes; false if the peer closed first.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) -> io::Result<bool> {
    while buffer.len() < length {
        if stream.read_buf(buffer).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads a chunked body (trailers skipped); `None` if the peer closed first.
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = memchr::memmem::find(buffer, b"\r\n") {
                break at;
            }
            if stream.read_buf(buffer).await? == 0 {
                return Ok(None);
            }
        };
        let line = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"));
        };
        buffer.drain(..line_end + 2);
        if body.len() + size > MAX_BODY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                if let Some(at) = memchr::memmem::find(buffer, b"\r\n") {
                    let empty = at == 0;
                    buffer.drain(..at + 2);
                    if empty {
                        return Ok(Some(body));
                    }
                } else if stream.read_buf(buffer).await? == 0 {
                    return Ok(None);
                }
            }
        }
        if !fill(stream, buffer, size + 2).await? {
            return Ok(None);
        }
        body.extend_from_slice(&buffer[..size]);
        buffer.drain(..size + 2);
    }
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub extra_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `application/json` (aiohttp's `json_response`).
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json; charset=utf-8",
            extra_headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    /// `text/plain`.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_headers: Vec::new(),
            body: text.as_bytes().to_vec(),
        }
    }

    /// aiohttp's answer to a handler that raised: 500 with its plain-text page.
    pub fn internal_error() -> Response {
        Response::text(
            500,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
    }

    /// A status with an empty body (aiohttp's `web.Response(status=...)`).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/octet-stream",
            extra_headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The whole answer as bytes.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nServer: Python/3.12 aiohttp/3.11\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `%XX` decoding of a path (invalid escapes are kept as they are).
fn percent_decode(text: &str) -> String {
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One field of a `multipart/form-data` body.
#[derive(Clone, Debug)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

impl Part {
    /// The field as text (aiohttp gives non-file fields as `str`).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Splits a `multipart/form-data` body; `None` when the content type or the body is not one.
pub fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (key, value) = p.trim().split_once('=')?;
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
    })?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let first = memchr::memmem::find(rest, delimiter.as_bytes())?;
    rest = &rest[first + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = memchr::memmem::find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let end_marker = format!("\r\n{delimiter}");
        let end = memchr::memmem::find(rest, end_marker.as_bytes())?;
        let data = rest[..end].to_vec();
        rest = &rest[end + end_marker.len()..];
        let disposition = head.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then(|| value.to_string())
        })?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        parts.push(Part {
            name: param("name")?,
            filename: param("filename"),
            data,
        });
    }
}
