//! A gRPC client of `ImageGenerationService`, written against tonic's generic client (no
//! generated code): `Echo` and `GenerateImage` over one HTTP/2 channel, plain (`http://`) or,
//! with the `tls` feature, TLS (`https://`) trusting Draw Things' own root certificate for the
//! name `localhost` as Draw Things' clients do, or a certificate authority of the user's.
//! `GenerateImage` is called by hand on the channel with a request already framed
//! ([`Framed`]), so that a picture's megabytes go out as they are made, and its answer is
//! read as it arrives ([`AnswerStream`]), so that they come in without being gathered.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use tonic::client::GrpcService;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::{IntoRequest, Status};
use tonic_prost::ProstCodec;

use super::answer::AnswerStream;
use super::messages::{EchoReply, EchoRequest, ImageGenerationRequest};
use super::tensor::TensorToSend;

/// The largest message the client takes. A 4 MiB image slice plus its framing is already over
/// gRPC's customary 4 MiB, and an unchunked answer holds whole images (a 2048x2048 f16 tensor
/// is 24 MiB); Draw Things' own client allows 1 GiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// The largest message the client sends: a request holds the init image (8192x8192 f16 is
/// 384 MiB, but a real picture stays far below this).
const MAX_SENT_BYTES: usize = 512 * 1024 * 1024;

/// HTTP/2 receive windows: 1 MiB in flight, far more than HTTP/2's default 64 KiB (which
/// would stall megabytes of answer on round trips for window updates), little enough that an
/// answer coming faster than it is read waits in the server rather than in drawdrop's memory
/// (on a network of 1 ms round trips this still lets 1 GB/s through).
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// The largest HTTP/2 frame the server may send: megabytes of image come in 1 MiB frames
/// rather than HTTP/2's default 16 KiB ones (fewer frames to read and wake up for).
const MAX_FRAME: u32 = 1024 * 1024;

const ECHO: &str = "/ImageGenerationService/Echo";
const GENERATE_IMAGE: &str = "/ImageGenerationService/GenerateImage";

/// Why a client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a server address drawdrop can reach over gRPC: {1}")]
    BadAddress(String, String),
    #[error("`{0}`: this drawdrop was built without TLS (the `tls` feature); use http://")]
    TlsUnsupported(String),
    #[error("`{0}`: TLS cannot be set up: {1}")]
    Tls(String, String),
}

/// Whom to trust for `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust<'a> {
    /// Draw Things' own root certificate, for the name `localhost` (its servers' default).
    DrawThings,
    /// These PEM certificate authorities, for the URL's own host name.
    Authorities(&'a [u8]),
}

/// A client of one server. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct Client {
    grpc: Grpc<Channel>,
    /// The same connection, for calls made by hand ([`Client::generate_framed`]).
    channel: Channel,
}

/// A request message in its gRPC frame: a byte saying it is not compressed, its length (4
/// bytes, big-endian), then the message, in parts sent as they are (bytes) or as they are made
/// (a tensor, piece by piece).
#[derive(Debug, Clone)]
pub struct Framed {
    parts: Vec<Part>,
}

/// A part of a [`Framed`] message.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    Tensor(TensorToSend),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Bytes(bytes) => bytes.len(),
            Part::Tensor(tensor) => tensor.len(),
        }
    }

    /// The part's bytes, in pieces (a tensor's made as they are taken).
    fn pieces(self) -> Box<dyn Iterator<Item = Bytes> + Send> {
        match self {
            Part::Bytes(bytes) => Box::new(std::iter::once(bytes)),
            Part::Tensor(tensor) => Box::new(tensor.pieces()),
        }
    }
}

impl Framed {
    /// Bytes of the frame before the message.
    pub const HEAD_LEN: usize = 5;

    /// The 5 bytes before a message of `len` bytes (at most 4 GiB: larger ones are refused
    /// when sent, see [`Framed::message_len`]).
    pub fn head(len: usize) -> [u8; Framed::HEAD_LEN] {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let mut head = [0u8; Framed::HEAD_LEN];
        head[1..].copy_from_slice(&len.to_be_bytes());
        head
    }

    /// `message`, encoded and framed.
    pub fn of(message: &impl Message) -> Framed {
        let mut framed = Vec::with_capacity(Framed::HEAD_LEN + message.encoded_len());
        framed.extend_from_slice(&Framed::head(message.encoded_len()));
        message.encode_raw(&mut framed);
        Framed::from_parts(vec![Part::Bytes(Bytes::from(framed))])
    }

    /// The whole frame in one piece (tensors made).
    pub fn to_vec(&self) -> Vec<u8> {
        self.clone()
            .into_pieces()
            .flat_map(|piece| piece.to_vec())
            .collect()
    }

    /// The frame's bytes, in pieces.
    fn into_pieces(self) -> impl Iterator<Item = Bytes> + Send {
        self.parts.into_iter().flat_map(Part::pieces)
    }

    /// The message's length, without its frame.
    pub fn message_len(&self) -> usize {
        let total: usize = self.parts.iter().map(Part::len).sum();
        total.saturating_sub(Framed::HEAD_LEN)
    }

    /// Parts that together are a framed message (the first starting with [`Framed::head`]).
    pub fn from_parts(parts: Vec<Part>) -> Framed {
        Framed { parts }
    }
}

/// Whether `url` is an address a client can be made for (without making one).
pub fn check_address(url: &str) -> Result<(), ClientError> {
    let parsed = url::Url::parse(url)
        .map_err(|failure| ClientError::BadAddress(url.to_string(), failure.to_string()))?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" if cfg!(feature = "tls") => Ok(()),
        "https" => Err(ClientError::TlsUnsupported(url.to_string())),
        other => Err(ClientError::BadAddress(
            url.to_string(),
            format!("the scheme is `{other}`, not http or https"),
        )),
    }
}

impl Client {
    /// A client of the server at `url` (`http://host:port`, or `https://` trusting `trust`).
    /// It connects on first use, so a server that is down shows as an UNAVAILABLE status of
    /// the call, not here. Only on the async runtime.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        trust: Trust<'_>,
    ) -> Result<Client, ClientError> {
        check_address(url)?;
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|failure| ClientError::BadAddress(url.to_string(), failure.to_string()))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            // Answers are megabytes: HTTP/2's default 64 KiB windows would stall them on
            // round trips for window updates.
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME);
        let endpoint = if url.starts_with("https:") {
            with_tls(endpoint, url, trust)?
        } else {
            endpoint
        };
        let channel = endpoint.connect_lazy();
        let grpc = Grpc::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_SENT_BYTES);
        Ok(Client { grpc, channel })
    }

    /// `Echo`: the probe. A server that wants a shared secret and did not get the right one
    /// answers OK with `shared_secret_missing`.
    pub async fn echo(&mut self, request: EchoRequest) -> Result<EchoReply, Status> {
        self.ready().await?;
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let response = self
            .grpc
            .unary(
                request.into_request(),
                PathAndQuery::from_static(ECHO),
                codec,
            )
            .await
            .map_err(connection_lost)?;
        Ok(response.into_inner())
    }

    /// `GenerateImage`: the answer stream, to read with [`super::answer::collect`] or by hand.
    pub async fn generate(
        &mut self,
        request: ImageGenerationRequest,
    ) -> Result<AnswerStream, Status> {
        self.generate_framed(Framed::of(&request)).await
    }

    /// `GenerateImage` with the request already in its frame. Its parts go to the connection
    /// as they are, a tensor made piece by piece as the connection takes it: a picture's
    /// megabytes are neither gathered nor copied into a buffer of the client's (as tonic's own
    /// encoding would).
    pub async fn generate_framed(&mut self, request: Framed) -> Result<AnswerStream, Status> {
        if request.message_len() > MAX_SENT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "a request of {} bytes is over the limit of {MAX_SENT_BYTES}",
                request.message_len()
            )));
        }
        let frames = request
            .into_pieces()
            .map(|piece| Ok::<_, Infallible>(Frame::data(piece)));
        let body = tonic::body::Body::new(StreamBody::new(futures_util::stream::iter(frames)));
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(GENERATE_IMAGE)
            .version(http::Version::HTTP_2)
            .header(http::header::TE, "trailers")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(body)
            .map_err(|failure| Status::internal(failure.to_string()))?;
        let mut channel = self.channel.clone();
        std::future::poll_fn(|context| channel.poll_ready(context))
            .await
            .map_err(cannot_reach)?;
        let response = channel
            .call(request)
            .await
            .map_err(|failure| connection_lost(Status::from_error(Box::new(failure))))?;
        // A status in the headers is a trailers-only answer (a failure, or an empty stream);
        // otherwise the messages come, the status in the trailers. An HTTP failure without a
        // gRPC status is read as gRPC's HTTP mapping says.
        match Status::from_header_map(response.headers()) {
            Some(status) if status.code() != tonic::Code::Ok => Err(status),
            Some(_) => Ok(AnswerStream::new(None)),
            None if response.status() != http::StatusCode::OK => {
                Err(from_http_status(response.status()))
            }
            None => Ok(AnswerStream::new(Some(response.into_body()))),
        }
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc.ready().await.map_err(cannot_reach)
    }
}

/// The status for an HTTP failure that carries no gRPC status (gRPC's HTTP-to-gRPC mapping).
fn from_http_status(status: http::StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => tonic::Code::Internal,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::Unimplemented,
        429 | 502 | 503 | 504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    };
    Status::new(
        code,
        format!("the server answered HTTP {status} without a gRPC status"),
    )
}

/// A channel that cannot get ready (no connection can be made) as UNAVAILABLE.
fn cannot_reach(failure: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the gRPC server cannot be reached: {failure}"))
}

#[cfg(feature = "tls")]
fn with_tls(endpoint: Endpoint, url: &str, trust: Trust<'_>) -> Result<Endpoint, ClientError> {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let config = match trust {
        Trust::DrawThings => ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(super::root_ca::PEM))
            .domain_name(super::root_ca::SERVER_NAME),
        Trust::Authorities(pem) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
    };
    endpoint
        .tls_config(config)
        .map_err(|failure| ClientError::Tls(url.to_string(), failure.to_string()))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_: Endpoint, url: &str, _: Trust<'_>) -> Result<Endpoint, ClientError> {
    Err(ClientError::TlsUnsupported(url.to_string()))
}

/// A call that failed on a connection that broke before any answer (the server went away
/// while the channel still held its connection) is UNAVAILABLE, as a refused one is; tonic
/// reports it as UNKNOWN "transport error" or CANCELLED "connection closed", with the
/// transport error as its source.
fn connection_lost(status: Status) -> Status {
    let transport = std::error::Error::source(&status)
        .is_some_and(|source| source.is::<tonic::transport::Error>());
    let code = status.code();
    if transport && (code == tonic::Code::Unknown || code == tonic::Code::Cancelled) {
        let cause = std::error::Error::source(&status)
            .and_then(std::error::Error::source)
            .map(|cause| format!(": {cause}"))
            .unwrap_or_default();
        Status::unavailable(format!("the connection to the gRPC server broke{cause}"))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_and_with_tls_https_addresses_make_a_client() {
        let second = Duration::from_secs(1);
        let new = |url: &str| Client::new(url, second, Trust::DrawThings);
        assert!(new("http://127.0.0.1:7859").is_ok());
        let https = new("https://127.0.0.1:7859");
        if cfg!(feature = "tls") {
            assert!(https.is_ok(), "{https:?}");
        } else {
            assert!(matches!(https, Err(ClientError::TlsUnsupported(_))));
        }
        let message = new("ftp://host").unwrap_err().to_string();
        assert!(message.contains("`ftp`"), "{message}");
        assert!(matches!(new("not a url"), Err(ClientError::BadAddress(..))));
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_unavailable_at_the_call() {
        // A port that was just free: nothing listens there once the listener is dropped.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let mut client = Client::new(
            &format!("http://{address}"),
            Duration::from_secs(5),
            Trust::DrawThings,
        )
        .unwrap();
        let status = client.echo(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
}
