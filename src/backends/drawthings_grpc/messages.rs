//! The protobuf messages of Draw Things' `ImageGenerationService` that drawdrop speaks, derived
//! by hand with prost (no protoc, no build script). Field numbers and types follow the
//! service's proto3 definition (no package); messages drawdrop never sends or reads (file
//! upload, public key, compute hours) are left out.
//!
//! proto3 scalars that are not `optional` have no presence: a zero value is simply absent on
//! the wire. The requests' `Debug` never shows the shared secret.

use std::fmt;

/// `DeviceType`: what kind of device the client is. Draw Things' desktop app says `Laptop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DeviceType {
    Phone = 0,
    Tablet = 1,
    Laptop = 2,
}

/// `ChunkState`: whether an image slice is the last of its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkState {
    LastChunk = 0,
    MoreChunks = 1,
}

/// `EchoRequest`: the probe. `name` comes back as `"HELLO <name>"`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, optional, tag = "2")]
    pub shared_secret: Option<String>,
}

/// `ComputeUnitThreshold`: limits a hosted server imposes.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ComputeUnitThreshold {
    #[prost(double, tag = "1")]
    pub community: f64,
    #[prost(double, tag = "2")]
    pub plus: f64,
    #[prost(int64, tag = "3")]
    pub expire_at: i64,
}

/// `MetadataOverride`: JSON lists of models, LoRAs, ... replacing the server's own.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataOverride {
    #[prost(bytes = "vec", tag = "1")]
    pub models: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub loras: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub control_nets: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub textual_inversions: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub upscalers: Vec<u8>,
}

/// `EchoReply`. With a shared secret set on the server and a wrong or missing one sent, only
/// `shared_secret_missing = true` is filled in. `files` (the server's models) is filled in
/// only when the server browses its models.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(string, repeated, tag = "2")]
    pub files: Vec<String>,
    #[prost(message, optional, tag = "3")]
    pub r#override: Option<MetadataOverride>,
    #[prost(bool, tag = "4")]
    pub shared_secret_missing: bool,
    #[prost(message, optional, tag = "5")]
    pub thresholds: Option<ComputeUnitThreshold>,
    #[prost(uint64, tag = "6")]
    pub server_identifier: u64,
}

/// `TensorAndWeight`: one tensor of a hint (or the sha256 of one in `contents`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorAndWeight {
    #[prost(bytes = "vec", tag = "1")]
    pub tensor: Vec<u8>,
    #[prost(float, tag = "2")]
    pub weight: f32,
}

/// `HintProto`: control inputs of one kind (`hintType`, e.g. "depth").
#[derive(Clone, PartialEq, prost::Message)]
pub struct HintProto {
    #[prost(string, tag = "1")]
    pub hint_type: String,
    #[prost(message, repeated, tag = "2")]
    pub tensors: Vec<TensorAndWeight>,
}

/// `ImageGenerationRequest`: one generation. `image` is the init image as a tensor (see
/// `tensor`); a 32-byte `image` is read as the sha256 of an entry of `contents` instead.
/// `configuration` is the `GenerationConfiguration` FlatBuffer (see `config`).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct ImageGenerationRequest {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub image: Option<bytes::Bytes>,
    /// Always 1 for drawdrop: 0 makes the server crash.
    #[prost(int32, tag = "2")]
    pub scale_factor: i32,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub mask: Option<bytes::Bytes>,
    #[prost(message, repeated, tag = "4")]
    pub hints: Vec<HintProto>,
    #[prost(string, tag = "5")]
    pub prompt: String,
    #[prost(string, tag = "6")]
    pub negative_prompt: String,
    #[prost(bytes = "vec", tag = "7")]
    pub configuration: Vec<u8>,
    #[prost(message, optional, tag = "8")]
    pub r#override: Option<MetadataOverride>,
    #[prost(string, repeated, tag = "9")]
    pub keywords: Vec<String>,
    #[prost(string, tag = "10")]
    pub user: String,
    #[prost(enumeration = "DeviceType", tag = "11")]
    pub device: i32,
    #[prost(bytes = "bytes", repeated, tag = "12")]
    pub contents: Vec<bytes::Bytes>,
    #[prost(string, optional, tag = "13")]
    pub shared_secret: Option<String>,
    /// The client accepts images in 4 MiB slices.
    #[prost(bool, tag = "14")]
    pub chunked: bool,
}

/// The empty signpost messages (`TextEncoded`, `ImageEncoded`, ...) share one shape.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct SignpostMark {}

/// `Sampling` and `SecondPassSampling`: the step being sampled, counting from 0.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct SamplingStep {
    #[prost(int32, tag = "1")]
    pub step: i32,
}

/// The `signpost` oneof of `ImageGenerationSignpostProto`: where the generation is.
#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum Signpost {
    #[prost(message, tag = "1")]
    TextEncoded(SignpostMark),
    #[prost(message, tag = "2")]
    ImageEncoded(SignpostMark),
    #[prost(message, tag = "3")]
    Sampling(SamplingStep),
    #[prost(message, tag = "4")]
    ImageDecoded(SignpostMark),
    #[prost(message, tag = "5")]
    SecondPassImageEncoded(SignpostMark),
    #[prost(message, tag = "6")]
    SecondPassSampling(SamplingStep),
    #[prost(message, tag = "7")]
    SecondPassImageDecoded(SignpostMark),
    #[prost(message, tag = "8")]
    FaceRestored(SignpostMark),
    #[prost(message, tag = "9")]
    ImageUpscaled(SignpostMark),
}

/// `ImageGenerationSignpostProto`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ImageGenerationSignpost {
    #[prost(oneof = "Signpost", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub signpost: Option<Signpost>,
}

impl ImageGenerationSignpost {
    pub fn new(signpost: Signpost) -> ImageGenerationSignpost {
        ImageGenerationSignpost {
            signpost: Some(signpost),
        }
    }
}

/// `RemoteDownloadResponse`: the server fetching a model before it can start.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoteDownloadResponse {
    #[prost(int64, tag = "1")]
    pub bytes_received: i64,
    #[prost(int64, tag = "2")]
    pub bytes_expected: i64,
    #[prost(int32, tag = "3")]
    pub item: i32,
    #[prost(int32, tag = "4")]
    pub items_expected: i32,
    #[prost(string, tag = "5")]
    pub tag: String,
}

/// `ImageGenerationResponse`: one message of the answer stream — progress (`current_signpost`,
/// `signposts`, `preview_image`), the announced `download_size`, or an image (or a slice of
/// one, see `chunk_state`) in `generated_images`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageGenerationResponse {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub generated_images: Vec<bytes::Bytes>,
    #[prost(message, optional, tag = "2")]
    pub current_signpost: Option<ImageGenerationSignpost>,
    #[prost(message, repeated, tag = "3")]
    pub signposts: Vec<ImageGenerationSignpost>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub preview_image: Option<bytes::Bytes>,
    #[prost(int32, optional, tag = "5")]
    pub scale_factor: Option<i32>,
    #[prost(string, repeated, tag = "6")]
    pub tags: Vec<String>,
    #[prost(int64, optional, tag = "7")]
    pub download_size: Option<i64>,
    #[prost(enumeration = "ChunkState", tag = "8")]
    pub chunk_state: i32,
    #[prost(message, optional, tag = "9")]
    pub remote_download: Option<RemoteDownloadResponse>,
    #[prost(bytes = "bytes", repeated, tag = "10")]
    pub generated_audio: Vec<bytes::Bytes>,
}

/// How a secret shows in `Debug`: whether there is one, never what it is.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for EchoRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoRequest")
            .field("name", &self.name)
            .field("shared_secret", &redacted(&self.shared_secret))
            .finish()
    }
}

impl fmt::Debug for ImageGenerationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageGenerationRequest")
            .field("image_bytes", &self.image.as_ref().map(|image| image.len()))
            .field("scale_factor", &self.scale_factor)
            .field("mask_bytes", &self.mask.as_ref().map(|mask| mask.len()))
            .field("hints", &self.hints.len())
            .field("prompt", &self.prompt)
            .field("negative_prompt", &self.negative_prompt)
            .field("configuration_bytes", &self.configuration.len())
            .field("keywords", &self.keywords)
            .field("user", &self.user)
            .field("device", &self.device)
            .field("contents", &self.contents.len())
            .field("shared_secret", &redacted(&self.shared_secret))
            .field("chunked", &self.chunked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_request_puts_each_field_at_its_number_with_its_wire_type() {
        let request = ImageGenerationRequest {
            image: Some(bytes::Bytes::from_static(&[0xAA, 0xBB])),
            scale_factor: 1,
            prompt: "cat".into(),
            configuration: vec![7],
            user: "dd".into(),
            device: DeviceType::Laptop as i32,
            shared_secret: Some("s".into()),
            chunked: true,
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        // Fields in number order: key = number << 3 | wire type (0 varint, 2 length-delimited).
        let expected: Vec<u8> = [
            &[0x0A, 2, 0xAA, 0xBB][..],   // 1 image, bytes
            &[0x10, 1],                   // 2 scaleFactor, varint
            &[0x2A, 3, b'c', b'a', b't'], // 5 prompt
            &[0x3A, 1, 7],                // 7 configuration
            &[0x52, 2, b'd', b'd'],       // 10 user
            &[0x58, 2],                   // 11 device = LAPTOP
            &[0x6A, 1, b's'],             // 13 sharedSecret
            &[0x70, 1],                   // 14 chunked
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(ImageGenerationRequest::decode(&bytes[..]).unwrap(), request);
    }

    #[test]
    fn an_empty_optional_image_is_sent_while_a_missing_one_is_not() {
        let present = ImageGenerationRequest {
            image: Some(bytes::Bytes::new()),
            ..Default::default()
        };
        assert_eq!(present.encode_to_vec(), vec![0x0A, 0]);
        assert!(ImageGenerationRequest::default().encode_to_vec().is_empty());
    }

    #[test]
    fn a_response_reads_signposts_download_size_and_chunks() {
        // Hand-made: currentSignpost { sampling { step: 3 } }, downloadSize 300,
        // chunkState MORE_CHUNKS, generatedImages [01 02], generatedAudio [09].
        let wire = [
            0x12, 4, 0x1A, 2, 0x08, 3, // 2 currentSignpost -> 3 sampling -> 1 step
            0x38, 0xAC, 0x02, // 7 downloadSize = 300
            0x40, 1, // 8 chunkState
            0x0A, 2, 1, 2, // 1 generatedImages
            0x52, 1, 9, // 10 generatedAudio
        ];
        let response = ImageGenerationResponse::decode(&wire[..]).unwrap();
        assert_eq!(
            response.current_signpost,
            Some(ImageGenerationSignpost::new(Signpost::Sampling(
                SamplingStep { step: 3 }
            )))
        );
        assert_eq!(response.download_size, Some(300));
        assert_eq!(response.chunk_state(), ChunkState::MoreChunks);
        assert_eq!(
            response.generated_images,
            vec![bytes::Bytes::from_static(&[1, 2])]
        );
        assert_eq!(response.generated_audio.len(), 1);
    }

    #[test]
    fn every_signpost_round_trips_at_its_number() {
        let mark = SignpostMark {};
        let step = SamplingStep { step: 7 };
        let all = [
            (1, Signpost::TextEncoded(mark)),
            (2, Signpost::ImageEncoded(mark)),
            (3, Signpost::Sampling(step)),
            (4, Signpost::ImageDecoded(mark)),
            (5, Signpost::SecondPassImageEncoded(mark)),
            (6, Signpost::SecondPassSampling(step)),
            (7, Signpost::SecondPassImageDecoded(mark)),
            (8, Signpost::FaceRestored(mark)),
            (9, Signpost::ImageUpscaled(mark)),
        ];
        for (number, signpost) in all {
            let bytes = ImageGenerationSignpost::new(signpost).encode_to_vec();
            assert_eq!(bytes[0], (number << 3) | 2, "{signpost:?}");
            assert_eq!(
                ImageGenerationSignpost::decode(&bytes[..])
                    .unwrap()
                    .signpost,
                Some(signpost)
            );
        }
    }

    #[test]
    fn echo_messages_use_the_proto_numbers() {
        let request = EchoRequest {
            name: "a".into(),
            shared_secret: Some("b".into()),
        };
        assert_eq!(request.encode_to_vec(), vec![0x0A, 1, b'a', 0x12, 1, b'b']);
        let reply =
            EchoReply::decode(&[0x0A, 1, b'H', 0x12, 1, b'm', 0x20, 1, 0x30, 5][..]).unwrap();
        assert_eq!(reply.message, "H");
        assert_eq!(reply.files, vec!["m".to_string()]);
        assert!(reply.shared_secret_missing);
        assert_eq!(reply.server_identifier, 5);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let request = ImageGenerationRequest {
            shared_secret: Some("hunter2".into()),
            ..Default::default()
        };
        let echo = EchoRequest {
            name: "x".into(),
            shared_secret: Some("hunter2".into()),
        };
        for shown in [format!("{request:?}"), format!("{echo:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
