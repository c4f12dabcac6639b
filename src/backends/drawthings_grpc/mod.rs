//! The wire of Draw Things' gRPC API (the app's API server in gRPC mode, and gRPCServerCLI):
//! messages, client, generation configuration and image tensors. Not yet a backend of the
//! daemon: these are the pieces one is built from.
//!
//! # The service
//!
//! One proto3 service, `ImageGenerationService`, declared without a package, so its methods are
//! at `/ImageGenerationService/<Method>`. drawdrop uses two of them:
//!
//! - `Echo` (unary): `EchoRequest { name, sharedSecret }` -> `EchoReply`. The probe. A server
//!   with a shared secret answers a wrong or missing one with OK and only
//!   `sharedSecretMissing = true`; otherwise `message` is `"HELLO <name>"`, and `files` lists
//!   the server's models when it lets clients browse them.
//! - `GenerateImage` (server streaming): one `ImageGenerationRequest` -> a stream of
//!   `ImageGenerationResponse`. The request carries the init image as a tensor
//!   ([`tensor`]), `scaleFactor` 1, the prompts, the configuration as a FlatBuffer
//!   ([`config`]), the shared secret and `chunked`. The server generates at the image's own size
//!   (it never compares it with the configuration), so the image must be exactly the configured
//!   size, in multiples of 64. A wrong or missing secret fails the call with INTERNAL
//!   ("unknown error processing request"); a failed generation too.
//!
//! The answer stream: progress messages (`currentSignpost`: text encoded, image encoded,
//! sampling step N counting from 0, image decoded, ...; `signposts` with the whole expected
//! set; an optional preview), then one message with only `downloadSize` (the bytes of all
//! encoded images), then the images, one message each. With `chunked` set and more than 4 MiB
//! of images in all, an image over 4 MiB comes in 4 MiB slices, `chunkState = MORE_CHUNKS`
//! on all but the last (`LAST_CHUNK`). A generation that makes no image (cancelled, missing
//! model) ends with one message holding only `scaleFactor`. Messages can be far larger than
//! gRPC's customary 4 MiB limit, so the client raises it ([`client::MAX_MESSAGE_BYTES`]).
//!
//! Modules: `messages` (the prost messages) · `client` (tonic, without generated code) ·
//! `answer` (an answer stream back into images and progress) · `config` (the
//! `GenerationConfiguration` FlatBuffer) · `tensor` (image tensors: header, f16/f32, zip and
//! fpzip, through [`crate::backends::drawthings_grpc::fpzip`]).

pub mod answer;
pub mod client;
pub mod config;
pub mod fpzip;
pub mod messages;
pub mod tensor;
