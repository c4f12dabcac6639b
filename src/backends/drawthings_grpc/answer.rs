//! A `GenerateImage` answer read back into what it says, message by message as the bytes
//! arrive ([`super::incoming`]): the images (slices put together, as tensors or as pictures
//! decoded on the way), the progress seen on the way, the announced download size checked,
//! and the status the server ends with.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::Status;

use super::client::MAX_MESSAGE_BYTES;
use super::incoming::{AnswerReader, Piece};
use super::messages::{ChunkState, ImageGenerationResponse, Signpost};
use super::tensor::{Rgb8, TensorDecoder, TensorError};

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// The images as the server encoded them (tensors), whole ([`Keep::Tensors`]).
    pub images: Vec<Bytes>,
    /// The images decoded ([`Keep::Pictures`]).
    pub pictures: Vec<Rgb8>,
    /// The progress signposts, in the order they came.
    pub signposts: Vec<Signpost>,
    /// What the server announced before sending the images.
    pub download_size: Option<i64>,
}

/// What an answer's images are kept as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The tensors, as they came.
    Tensors,
    /// The pictures, decoded as the bytes come (raw ones never whole), refusing pictures of
    /// more than `max_pixels` pixels.
    Pictures { max_pixels: u64 },
}

/// Why an answer is not whole.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the server failed the generation: {0}")]
    Status(#[from] Status),
    #[error("the connection to the server broke in the middle of the answer: {0}")]
    ConnectionLost(String),
    #[error("the answer ended in the middle of an image ({received} bytes of its slices received)")]
    CutShort { received: usize },
    #[error("the answer's images take {bytes} bytes, over the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the server announced {announced} bytes of images and sent {received}")]
    SizeMismatch { announced: i64, received: u64 },
    #[error("the server's answer is not a valid gRPC answer: {0}")]
    Malformed(String),
    #[error("image {number} of the answer cannot be read: {problem}")]
    Unreadable { number: usize, problem: TensorError },
}

/// An image whose bytes are still coming.
#[derive(Debug)]
enum Forming {
    Tensor(BytesMut),
    Picture(TensorDecoder),
}

/// Puts an answer together as its pieces come.
#[derive(Debug)]
pub struct Assembler {
    answer: Answer,
    keep: Keep,
    /// The image being received, and how many of its bytes came.
    forming: Option<(Forming, usize)>,
    /// The last message said its image goes on in the next one.
    continues: bool,
    received: u64,
    limit: u64,
}

impl Assembler {
    /// An assembler keeping images as `keep` says, refusing answers whose images take more
    /// than `limit` bytes.
    pub fn new(limit: u64, keep: Keep) -> Assembler {
        Assembler {
            answer: Answer::default(),
            keep,
            forming: None,
            continues: false,
            received: 0,
            limit,
        }
    }

    /// Takes the next piece of the answer; gives a message's signpost, if it has one.
    pub fn take(&mut self, piece: &Piece<'_>) -> Result<Option<Signpost>, AnswerError> {
        match piece {
            Piece::Image { starts, bytes } => {
                if *starts && !std::mem::take(&mut self.continues) {
                    self.close_image()?;
                }
                self.image_bytes(bytes)?;
                Ok(None)
            }
            Piece::End(message) => self.end_message(message),
        }
    }

    /// Takes a whole message (its images included).
    #[cfg(test)]
    pub fn push(
        &mut self,
        mut message: ImageGenerationResponse,
    ) -> Result<Option<Signpost>, AnswerError> {
        for image in std::mem::take(&mut message.generated_images) {
            self.take(&Piece::Image {
                starts: true,
                bytes: &[],
            })?;
            self.take(&Piece::Image {
                starts: false,
                bytes: &image,
            })?;
        }
        self.take(&Piece::End(message))
    }

    fn image_bytes(&mut self, bytes: &[u8]) -> Result<(), AnswerError> {
        self.received += bytes.len() as u64;
        if self.received > self.limit {
            return Err(AnswerError::TooLarge {
                bytes: self.received,
                limit: self.limit,
            });
        }
        let number = self.next_number();
        let (forming, got) = match &mut self.forming {
            Some(forming) => forming,
            None => {
                let forming = match self.keep {
                    Keep::Tensors => {
                        // Room for the rest of the announced images at once: one copy of
                        // each slice, no growing (the limit is checked above).
                        let announced = self
                            .answer
                            .download_size
                            .and_then(|n| u64::try_from(n).ok());
                        let left = announced
                            .unwrap_or(0)
                            .saturating_sub(self.received - bytes.len() as u64)
                            .min(self.limit);
                        Forming::Tensor(BytesMut::with_capacity(usize::try_from(left).unwrap_or(0)))
                    }
                    Keep::Pictures { max_pixels } => {
                        Forming::Picture(TensorDecoder::new(max_pixels))
                    }
                };
                self.forming.insert((forming, 0))
            }
        };
        *got += bytes.len();
        match forming {
            Forming::Tensor(tensor) => tensor.extend_from_slice(bytes),
            Forming::Picture(decoder) => decoder
                .push(bytes)
                .map_err(|problem| AnswerError::Unreadable { number, problem })?,
        }
        Ok(())
    }

    /// The number of the image being received, from 1, for messages.
    fn next_number(&self) -> usize {
        self.answer.images.len() + self.answer.pictures.len() + 1
    }

    /// The image being received is whole.
    fn close_image(&mut self) -> Result<(), AnswerError> {
        let number = self.next_number();
        match self.forming.take() {
            None => {}
            Some((Forming::Tensor(tensor), _)) => self.answer.images.push(tensor.freeze()),
            Some((Forming::Picture(decoder), _)) => self.answer.pictures.push(
                decoder
                    .finish()
                    .map_err(|problem| AnswerError::Unreadable { number, problem })?,
            ),
        }
        Ok(())
    }

    fn end_message(
        &mut self,
        message: &ImageGenerationResponse,
    ) -> Result<Option<Signpost>, AnswerError> {
        if let Some(announced) = message.download_size
            && u64::try_from(announced).is_ok_and(|announced| announced > self.limit)
        {
            return Err(AnswerError::TooLarge {
                bytes: announced as u64,
                limit: self.limit,
            });
        }
        self.answer.download_size = message.download_size.or(self.answer.download_size);
        let signpost = message
            .current_signpost
            .as_ref()
            .and_then(|current| current.signpost);
        if let Some(signpost) = signpost {
            self.answer.signposts.push(signpost);
        }
        if self.forming.is_some() {
            self.continues = message.chunk_state() == ChunkState::MoreChunks;
            if !self.continues {
                self.close_image()?;
            }
        }
        Ok(signpost)
    }

    /// The answer, once the stream has ended without an error.
    pub fn finish(self) -> Result<Answer, AnswerError> {
        if let Some((_, received)) = self.forming {
            return Err(AnswerError::CutShort { received });
        }
        if let Some(announced) = self.answer.download_size
            && u64::try_from(announced).ok() != Some(self.received)
        {
            return Err(AnswerError::SizeMismatch {
                announced,
                received: self.received,
            });
        }
        Ok(self.answer)
    }
}

/// The answer to a `GenerateImage` call, to read ([`AnswerStream::read`]).
#[derive(Debug)]
pub struct AnswerStream {
    /// `None`: a trailers-only answer that said OK (no messages).
    body: Option<tonic::body::Body>,
}

impl AnswerStream {
    /// An answer whose messages come in `body` (`None`: none come).
    pub(super) fn new(body: Option<tonic::body::Body>) -> AnswerStream {
        AnswerStream { body }
    }

    /// Reads the answer to its end into `assembler`, telling `on_message` of each message
    /// (its images left out) with its signpost as it comes.
    pub async fn read(
        self,
        assembler: &mut Assembler,
        mut on_message: impl FnMut(&ImageGenerationResponse, Option<&Signpost>),
    ) -> Result<(), AnswerError> {
        let Some(mut body) = self.body else {
            return Ok(());
        };
        let mut reader = AnswerReader::new(MAX_MESSAGE_BYTES);
        let mut on_piece = |piece: Piece<'_>| {
            let signpost = assembler.take(&piece)?;
            if let Piece::End(message) = &piece {
                on_message(message, signpost.as_ref());
            }
            Ok(())
        };
        // The messages, then the trailers (or the body's end, without them). A failure of
        // the body is the connection breaking, or the server resetting the call.
        let trailers = loop {
            let frame = match body.frame().await {
                None => break None,
                Some(Err(failure)) => return Err(AnswerError::ConnectionLost(failure.to_string())),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => reader.read(&data, &mut on_piece)?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        break Some(trailers);
                    }
                }
            }
        };
        if !reader.between_messages() {
            return Err(AnswerError::ConnectionLost(
                "the answer ended in the middle of a message".to_owned(),
            ));
        }
        match trailers.as_ref().and_then(Status::from_header_map) {
            Some(status) if status.code() == tonic::Code::Ok => Ok(()),
            Some(status) => Err(AnswerError::Status(status)),
            None => Err(AnswerError::ConnectionLost(
                "the answer ended without the server's status".to_owned(),
            )),
        }
    }
}

/// Reads a whole answer, keeping its tensors, telling `on_signpost` of each signpost as it
/// comes.
pub async fn collect(
    stream: AnswerStream,
    limit: u64,
    mut on_signpost: impl FnMut(&Signpost),
) -> Result<Answer, AnswerError> {
    let mut assembler = Assembler::new(limit, Keep::Tensors);
    stream
        .read(&mut assembler, |_, signpost| {
            if let Some(signpost) = signpost {
                on_signpost(signpost);
            }
        })
        .await?;
    assembler.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::drawthings_grpc::messages::{
        ImageGenerationSignpost, SamplingStep, SignpostMark,
    };

    fn image(bytes: &'static [u8], state: ChunkState) -> ImageGenerationResponse {
        ImageGenerationResponse {
            generated_images: vec![Bytes::from_static(bytes)],
            chunk_state: state as i32,
            scale_factor: Some(1),
            ..Default::default()
        }
    }

    fn announce(size: i64) -> ImageGenerationResponse {
        ImageGenerationResponse {
            download_size: Some(size),
            ..Default::default()
        }
    }

    fn signpost(signpost: Signpost) -> ImageGenerationResponse {
        ImageGenerationResponse {
            current_signpost: Some(ImageGenerationSignpost::new(signpost)),
            ..Default::default()
        }
    }

    fn assemble(messages: Vec<ImageGenerationResponse>, limit: u64) -> Result<Answer, AnswerError> {
        let mut assembler = Assembler::new(limit, Keep::Tensors);
        for message in messages {
            assembler.push(message)?;
        }
        assembler.finish()
    }

    #[test]
    fn whole_images_and_slices_come_back_whole_in_order() {
        let answer = assemble(
            vec![
                signpost(Signpost::TextEncoded(SignpostMark {})),
                signpost(Signpost::Sampling(SamplingStep { step: 0 })),
                announce(9),
                image(b"ab", ChunkState::MoreChunks),
                image(b"cd", ChunkState::MoreChunks),
                image(b"e", ChunkState::LastChunk),
                image(b"fghi", ChunkState::LastChunk),
            ],
            100,
        )
        .unwrap();
        assert_eq!(
            answer.images,
            vec![Bytes::from_static(b"abcde"), Bytes::from_static(b"fghi")]
        );
        assert_eq!(answer.download_size, Some(9));
        assert_eq!(
            answer.signposts,
            vec![
                Signpost::TextEncoded(SignpostMark {}),
                Signpost::Sampling(SamplingStep { step: 0 })
            ]
        );
    }

    #[test]
    fn pictures_are_decoded_from_their_slices_as_they_come() {
        use crate::backends::drawthings_grpc::tensor;
        let picture = tensor::Rgb8 {
            width: 8,
            height: 4,
            pixels: (0..96).map(|at| at as u8 * 2).collect(),
        };
        let whole = tensor::encode_rgb8(&picture).unwrap();
        let mut assembler = Assembler::new(10_000, Keep::Pictures { max_pixels: 32 });
        let (first, rest) = whole.split_at(101);
        for (slice, state) in [
            (first, ChunkState::MoreChunks),
            (rest, ChunkState::LastChunk),
        ] {
            let message = ImageGenerationResponse {
                generated_images: vec![Bytes::copy_from_slice(slice)],
                chunk_state: state as i32,
                ..Default::default()
            };
            assembler.push(message).unwrap();
        }
        // Two whole images in one message.
        assembler
            .push(ImageGenerationResponse {
                generated_images: vec![Bytes::from(whole.clone()), Bytes::from(whole.clone())],
                ..Default::default()
            })
            .unwrap();
        let answer = assembler.finish().unwrap();
        assert_eq!(
            answer.pictures,
            vec![picture.clone(), picture.clone(), picture]
        );
        assert!(answer.images.is_empty());
        // A picture over the limit is refused by its header, naming the image.
        let mut small = Assembler::new(10_000, Keep::Pictures { max_pixels: 31 });
        let refused = small.push(ImageGenerationResponse {
            generated_images: vec![Bytes::from(whole)],
            ..Default::default()
        });
        let message = refused.unwrap_err().to_string();
        assert!(
            message.starts_with("image 1 of the answer cannot be read: the image is 8x4"),
            "{message}"
        );
    }

    #[test]
    fn an_answer_ending_inside_an_image_is_cut_short() {
        let cut = assemble(vec![announce(4), image(b"ab", ChunkState::MoreChunks)], 100);
        assert!(matches!(cut, Err(AnswerError::CutShort { received: 2 })));
    }

    #[test]
    fn an_answer_without_images_is_empty_not_an_error() {
        let answer = assemble(
            vec![ImageGenerationResponse {
                scale_factor: Some(1),
                ..Default::default()
            }],
            100,
        )
        .unwrap();
        assert!(answer.images.is_empty());
    }

    #[test]
    fn sizes_over_the_limit_or_unlike_the_announcement_are_refused() {
        assert!(matches!(
            assemble(vec![announce(101)], 100),
            Err(AnswerError::TooLarge {
                bytes: 101,
                limit: 100
            })
        ));
        assert!(matches!(
            assemble(vec![image(b"abc", ChunkState::LastChunk)], 2),
            Err(AnswerError::TooLarge { bytes: 3, limit: 2 })
        ));
        assert!(matches!(
            assemble(vec![announce(5), image(b"abc", ChunkState::LastChunk)], 100),
            Err(AnswerError::SizeMismatch {
                announced: 5,
                received: 3
            })
        ));
    }
}
