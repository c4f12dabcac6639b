//! A `GenerateImage` answer's bytes as they come off the connection, read without gathering
//! them: the gRPC frames (a byte saying whether the message is compressed, its length in 4
//! big-endian bytes, the message) split into messages, and each message's fields found as
//! they arrive. The bytes of an image (field 1, `generated_images`) are handed on at once,
//! piece by piece, so that megabytes of tensor are never held whole; the preview image and
//! audio (fields 4 and 10), which drawdrop does not use, are passed over; every other field
//! is kept and decoded when its message ends.

use prost::Message;

use super::answer::AnswerError;
use super::messages::ImageGenerationResponse;

/// The field numbers read specially.
const IMAGES: u64 = 1;
const PREVIEW: u64 = 4;
const AUDIO: u64 = 10;
/// Bytes of a gRPC frame before its message.
const FRAME_HEAD: usize = 5;
/// The most bytes a varint takes.
const VARINT_MAX: usize = 10;

/// What the answer's bytes hold, in order.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// Bytes of an image; `starts`: they are the first of an image field (which may be
    /// empty).
    Image { starts: bool, bytes: &'a [u8] },
    /// A message has ended: its fields but the images.
    End(ImageGenerationResponse),
}

/// Where in the stream the reader is.
#[derive(Debug)]
enum At {
    /// In a frame's head, with these of its bytes.
    FrameHead(Vec<u8>),
    /// Before a field (or at a message's end when none of it is left): its key's bytes so far.
    Key(Vec<u8>),
    /// In a length-delimited field's length: its key's bytes (`key_len` of them), then the
    /// length's so far.
    Length {
        field: u64,
        key_len: usize,
        bytes: Vec<u8>,
    },
    /// Inside a field's value: `left` bytes of it to come.
    Value { what: Value, left: usize },
    /// Inside a varint value.
    Varint,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Image,
    Skipped,
    Kept,
}

/// Reads an answer's bytes, given in pieces of any size.
#[derive(Debug)]
pub struct AnswerReader {
    at: At,
    /// Bytes of the current message still to come.
    left: usize,
    /// The kept fields of the current message, as they were sent.
    kept: Vec<u8>,
    max_message: usize,
}

impl AnswerReader {
    /// A reader refusing messages of more than `max_message` bytes.
    pub fn new(max_message: usize) -> AnswerReader {
        AnswerReader {
            at: At::FrameHead(Vec::with_capacity(FRAME_HEAD)),
            left: 0,
            kept: Vec::new(),
            max_message,
        }
    }

    /// Whether the bytes so far end where a message does (an answer may end here).
    pub fn between_messages(&self) -> bool {
        matches!(&self.at, At::FrameHead(head) if head.is_empty())
    }

    /// Reads `bytes`, telling `on` what they hold.
    pub fn read(
        &mut self,
        mut bytes: &[u8],
        on: &mut impl FnMut(Piece<'_>) -> Result<(), AnswerError>,
    ) -> Result<(), AnswerError> {
        loop {
            if self.left == 0 && !matches!(self.at, At::FrameHead(_)) {
                self.end_message(on)?;
            }
            let Some(&byte) = bytes.first() else {
                return Ok(());
            };
            match &mut self.at {
                At::FrameHead(head) => {
                    let wanted = (FRAME_HEAD - head.len()).min(bytes.len());
                    head.extend_from_slice(&bytes[..wanted]);
                    bytes = &bytes[wanted..];
                    if head.len() == FRAME_HEAD {
                        self.start_message()?;
                    }
                }
                At::Value { what, left } => {
                    let (what, take) = (*what, (*left).min(bytes.len()));
                    *left -= take;
                    if *left == 0 {
                        self.at = At::Key(Vec::new());
                    }
                    self.left -= take;
                    let (piece, rest) = bytes.split_at(take);
                    bytes = rest;
                    match what {
                        Value::Image => on(Piece::Image {
                            starts: false,
                            bytes: piece,
                        })?,
                        Value::Kept => self.kept.extend_from_slice(piece),
                        Value::Skipped => {}
                    }
                }
                At::Key(key) => {
                    bytes = &bytes[1..];
                    self.left -= 1;
                    key.push(byte);
                    if byte & 0x80 == 0 {
                        let key = std::mem::take(key);
                        self.start_field(key)?;
                    } else if key.len() == VARINT_MAX {
                        return Err(malformed("a field's key is longer than a varint can be"));
                    }
                }
                At::Length {
                    field,
                    key_len,
                    bytes: prefix,
                } => {
                    bytes = &bytes[1..];
                    self.left -= 1;
                    prefix.push(byte);
                    if byte & 0x80 == 0 {
                        let (field, key_len, prefix) = (*field, *key_len, std::mem::take(prefix));
                        self.start_value(field, key_len, &prefix, on)?;
                    } else if prefix.len() - *key_len == VARINT_MAX {
                        return Err(malformed("a field's length is longer than a varint can be"));
                    }
                }
                At::Varint => {
                    bytes = &bytes[1..];
                    self.left -= 1;
                    self.kept.push(byte);
                    if byte & 0x80 == 0 {
                        self.at = At::Key(Vec::new());
                    }
                }
            }
        }
    }

    fn start_message(&mut self) -> Result<(), AnswerError> {
        let At::FrameHead(head) = &self.at else {
            return Ok(());
        };
        if head[0] != 0 {
            return Err(malformed(
                "a message came compressed, though drawdrop asks for none",
            ));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > self.max_message {
            return Err(AnswerError::TooLarge {
                bytes: len as u64,
                limit: self.max_message as u64,
            });
        }
        self.left = len;
        self.at = At::Key(Vec::new());
        Ok(())
    }

    fn end_message(
        &mut self,
        on: &mut impl FnMut(Piece<'_>) -> Result<(), AnswerError>,
    ) -> Result<(), AnswerError> {
        if !matches!(&self.at, At::Key(key) if key.is_empty()) {
            return Err(malformed("a message ends inside a field"));
        }
        let message = ImageGenerationResponse::decode(self.kept.as_slice())
            .map_err(|problem| malformed(&problem.to_string()))?;
        self.kept.clear();
        self.at = At::FrameHead(Vec::with_capacity(FRAME_HEAD));
        on(Piece::End(message))
    }

    /// After a field's key (`key`, its bytes).
    fn start_field(&mut self, key: Vec<u8>) -> Result<(), AnswerError> {
        let key_value = varint(&key)?;
        let (field, wire_type) = (key_value >> 3, key_value & 7);
        if field == 0 {
            return Err(malformed("a field is numbered 0"));
        }
        if wire_type == 2 {
            self.at = At::Length {
                field,
                key_len: key.len(),
                bytes: key,
            };
            return Ok(());
        }
        if field == IMAGES || field == PREVIEW || field == AUDIO {
            return Err(malformed(&format!("field {field} is not length-delimited")));
        }
        self.kept.extend_from_slice(&key);
        let fixed = |left: usize| match left <= self.left {
            true => Ok(At::Value {
                what: Value::Kept,
                left,
            }),
            false => Err(malformed("a field runs past the end of its message")),
        };
        self.at = match wire_type {
            0 => At::Varint,
            1 => fixed(8)?,
            5 => fixed(4)?,
            other => return Err(malformed(&format!("a field of wire type {other}"))),
        };
        Ok(())
    }

    /// After a length-delimited field's key and length (`prefix`: the key's `key_len` bytes,
    /// then the length's).
    fn start_value(
        &mut self,
        field: u64,
        key_len: usize,
        prefix: &[u8],
        on: &mut impl FnMut(Piece<'_>) -> Result<(), AnswerError>,
    ) -> Result<(), AnswerError> {
        let length = varint(&prefix[key_len..])?;
        if length > self.left as u64 {
            return Err(malformed(&format!(
                "field {field} announces {length} bytes where its message has {} left",
                self.left
            )));
        }
        let what = match field {
            IMAGES => Value::Image,
            PREVIEW | AUDIO => Value::Skipped,
            _ => Value::Kept,
        };
        match what {
            Value::Image => on(Piece::Image {
                starts: true,
                bytes: &[],
            })?,
            Value::Kept => self.kept.extend_from_slice(prefix),
            Value::Skipped => {}
        }
        self.at = match length {
            0 => At::Key(Vec::new()),
            left => At::Value {
                what,
                left: left as usize,
            },
        };
        Ok(())
    }
}

/// The value of a whole varint's bytes, as prost reads it.
fn varint(mut bytes: &[u8]) -> Result<u64, AnswerError> {
    prost::encoding::decode_varint(&mut bytes).map_err(|problem| malformed(&problem.to_string()))
}

fn malformed(problem: &str) -> AnswerError {
    AnswerError::Malformed(problem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::drawthings_grpc::client::Framed;
    use crate::backends::drawthings_grpc::messages::{
        ChunkState, ImageGenerationSignpost, SamplingStep, Signpost,
    };
    use bytes::Bytes;

    /// A message as a reader tells it: its images, each put together, and the message
    /// without them.
    type Told = (Vec<Vec<u8>>, ImageGenerationResponse);

    /// What a reader tells of `stream` given in pieces of `slice` bytes.
    fn read_in(stream: &[u8], slice: usize) -> Result<Vec<Told>, AnswerError> {
        let mut reader = AnswerReader::new(1 << 20);
        let mut messages = Vec::new();
        let mut images: Vec<Vec<u8>> = Vec::new();
        for piece in stream.chunks(slice) {
            reader.read(piece, &mut |piece| {
                match piece {
                    Piece::Image {
                        starts: true,
                        bytes,
                    } => images.push(bytes.to_vec()),
                    Piece::Image { bytes, .. } => images
                        .last_mut()
                        .expect("image bytes after the image's start")
                        .extend_from_slice(bytes),
                    Piece::End(message) => messages.push((std::mem::take(&mut images), message)),
                }
                Ok(())
            })?;
        }
        assert!(
            reader.between_messages(),
            "the stream ends between messages"
        );
        Ok(messages)
    }

    fn framed(message: &ImageGenerationResponse) -> Vec<u8> {
        Framed::of(message).to_vec()
    }

    fn signposted(step: i32) -> ImageGenerationResponse {
        ImageGenerationResponse {
            current_signpost: Some(ImageGenerationSignpost::new(Signpost::Sampling(
                SamplingStep { step },
            ))),
            signposts: vec![ImageGenerationSignpost::new(Signpost::Sampling(
                SamplingStep { step: 7 },
            ))],
            tags: vec!["a tag".into()],
            download_size: Some(-3),
            ..Default::default()
        }
    }

    #[test]
    fn messages_read_in_pieces_of_any_size_are_the_messages_sent() {
        let image: Vec<u8> = (0..3000u32).map(|at| (at * 7 % 251) as u8).collect();
        let with_images = ImageGenerationResponse {
            generated_images: vec![Bytes::from(image.clone()), Bytes::new()],
            preview_image: Some(Bytes::from_static(b"a preview, passed over")),
            generated_audio: vec![Bytes::from_static(b"sound, passed over")],
            scale_factor: Some(1),
            chunk_state: ChunkState::MoreChunks as i32,
            ..Default::default()
        };
        let messages = [
            signposted(0),
            ImageGenerationResponse::default(),
            with_images.clone(),
            signposted(300),
        ];
        let stream: Vec<u8> = messages.iter().flat_map(framed).collect();
        for slice in [1, 2, 5, 6, 17, 1000, stream.len()] {
            let read = read_in(&stream, slice).unwrap();
            assert_eq!(read.len(), 4, "slices of {slice}");
            for (at, (images, message)) in read.iter().enumerate() {
                let mut expected = messages[at].clone();
                let sent: Vec<Vec<u8>> = std::mem::take(&mut expected.generated_images)
                    .iter()
                    .map(|image| image.to_vec())
                    .collect();
                expected.preview_image = None;
                expected.generated_audio.clear();
                assert_eq!(images, &sent, "slices of {slice}, message {at}");
                assert_eq!(message, &expected, "slices of {slice}, message {at}");
            }
        }
    }

    #[test]
    fn broken_frames_and_fields_are_refused_with_the_reason() {
        let good = framed(&signposted(1));
        let problem = |stream: &[u8]| {
            let mut reader = AnswerReader::new(64);
            let mut outcome = reader.read(stream, &mut |_| Ok(()));
            if outcome.is_ok() && !reader.between_messages() {
                outcome = Err(AnswerError::CutShort { received: 0 });
            }
            outcome.unwrap_err().to_string()
        };
        let mut compressed = good.clone();
        compressed[0] = 1;
        assert!(
            problem(&compressed).contains("compressed"),
            "{}",
            problem(&compressed)
        );
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&65u32.to_be_bytes());
        assert!(problem(&huge).contains("over the limit of 64"));
        // A field announcing more than its message holds.
        let mut long_field = good.clone();
        long_field[6] = 0x7f;
        assert!(
            problem(&long_field).contains("announces 127 bytes"),
            "{}",
            problem(&long_field)
        );
        // A message shorter than its last field.
        let mut short = good.clone();
        let len = u32::from_be_bytes(short[1..5].try_into().unwrap()) - 1;
        short[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(
            problem(&short).contains("not a valid gRPC answer"),
            "{}",
            problem(&short)
        );
        // An image field of another wire type.
        assert!(problem(&[0, 0, 0, 0, 2, 0x08, 1]).contains("field 1 is not length-delimited"));
        assert!(problem(&[0, 0, 0, 0, 1, 0x13]).contains("wire type 3"));
        // Cut in the middle: not between messages.
        let reader_at = |stream: &[u8]| {
            let mut reader = AnswerReader::new(64);
            reader.read(stream, &mut |_| Ok(())).unwrap();
            reader.between_messages()
        };
        assert!(reader_at(&good));
        assert!(!reader_at(&good[..good.len() - 1]));
        assert!(!reader_at(&good[..3]));
    }
}
