//! A gRPC client of `ImageGenerationService`, written against tonic's generic client (no
//! generated code): `Echo` and `GenerateImage` over one HTTP/2 channel, plain (`http://`) or,
//! with the `tls` feature, TLS (`https://`) trusting Draw Things' own root certificate for the
//! name `localhost` as Draw Things' clients do, or a certificate authority of the user's.
//! `GenerateImage` is called by hand on the channel with a request already framed
//! ([`Framed`]), so that a picture's megabytes go out without being copied; its answer is read
//! by tonic's own decoder.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use tonic::client::GrpcService;
use tonic::codec::Codec;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint};
use tonic::{IntoRequest, Status};
use tonic_prost::ProstCodec;

use super::messages::{EchoReply, EchoRequest, ImageGenerationRequest, ImageGenerationResponse};

/// The largest message the client takes. A 4 MiB image slice plus its framing is already over
/// gRPC's customary 4 MiB, and an unchunked answer holds whole images (a 2048x2048 f16 tensor
/// is 24 MiB); Draw Things' own client allows 1 GiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// The largest message the client sends: a request holds the init image (8192x8192 f16 is
/// 384 MiB, but a real picture stays far below this).
const MAX_SENT_BYTES: usize = 512 * 1024 * 1024;

/// HTTP/2 receive windows: a whole 4 MiB slice (and then some) in flight.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
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
/// bytes, big-endian), then the message, in pieces sent as they are.
#[derive(Debug, Clone)]
pub struct Framed {
    pieces: Vec<Bytes>,
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
        Framed::from_pieces(vec![Bytes::from(framed)])
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The message's length, without its frame.
    pub fn message_len(&self) -> usize {
        let total: usize = self.pieces.iter().map(Bytes::len).sum();
        total.saturating_sub(Framed::HEAD_LEN)
    }

    /// Pieces that together are a framed message (the first starting with [`Framed::head`]).
    pub fn from_pieces(pieces: Vec<Bytes>) -> Framed {
        Framed { pieces }
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
    ) -> Result<Streaming<ImageGenerationResponse>, Status> {
        self.generate_framed(Framed::of(&request)).await
    }

    /// `GenerateImage` with the request already in its frame. Its pieces go to the
    /// connection as they are: a picture's megabytes are not copied into a buffer of the
    /// client's (as tonic's own encoding would), so a request is in memory once.
    pub async fn generate_framed(
        &mut self,
        request: Framed,
    ) -> Result<Streaming<ImageGenerationResponse>, Status> {
        if request.message_len() > MAX_SENT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "a request of {} bytes is over the limit of {MAX_SENT_BYTES}",
                request.message_len()
            )));
        }
        let frames = request
            .pieces
            .into_iter()
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
        // As tonic reads an answer: a status in the headers is a trailers-only answer (a
        // failure, or an empty stream); otherwise the messages, the status in the trailers.
        let decoder =
            ProstCodec::<ImageGenerationRequest, ImageGenerationResponse>::default().decoder();
        let http_status = response.status();
        match Status::from_header_map(response.headers()) {
            Some(status) if status.code() != tonic::Code::Ok => Err(status),
            Some(_) => Ok(Streaming::new_empty(decoder, response.into_body())),
            None => Ok(Streaming::new_response(
                decoder,
                response.into_body(),
                http_status,
                None,
                Some(MAX_MESSAGE_BYTES),
            )),
        }
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc.ready().await.map_err(cannot_reach)
    }
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
