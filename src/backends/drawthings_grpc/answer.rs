//! A `GenerateImage` answer stream read back into what it says: the images (slices
//! reassembled), the progress seen on the way, and the announced download size checked.

use bytes::{Bytes, BytesMut};
use tonic::Status;
use tonic::codec::Streaming;

use super::messages::{ChunkState, ImageGenerationResponse, Signpost};

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// The encoded images (tensors), whole.
    pub images: Vec<Bytes>,
    /// The progress signposts, in the order they came.
    pub signposts: Vec<Signpost>,
    /// What the server announced before sending the images.
    pub download_size: Option<i64>,
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
}

/// Puts an answer together, one message at a time.
#[derive(Debug)]
pub struct Assembler {
    answer: Answer,
    /// Slices of an image still coming.
    pending: BytesMut,
    in_slices: bool,
    received: u64,
    limit: u64,
}

impl Assembler {
    /// An assembler refusing answers whose images take more than `limit` bytes.
    pub fn new(limit: u64) -> Assembler {
        Assembler {
            answer: Answer::default(),
            pending: BytesMut::new(),
            in_slices: false,
            received: 0,
            limit,
        }
    }

    /// Takes the next message; gives its signpost, if it has one.
    pub fn push(
        &mut self,
        message: ImageGenerationResponse,
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
            .and_then(|current| current.signpost);
        if let Some(signpost) = signpost {
            self.answer.signposts.push(signpost);
        }
        let more = message.chunk_state() == ChunkState::MoreChunks;
        for image in message.generated_images {
            self.received += image.len() as u64;
            if self.received > self.limit {
                return Err(AnswerError::TooLarge {
                    bytes: self.received,
                    limit: self.limit,
                });
            }
            if more || self.in_slices {
                if !self.in_slices {
                    // Room for the rest of the announced images at once: one copy of each
                    // slice, no growing (the limit is checked above).
                    let announced = self
                        .answer
                        .download_size
                        .and_then(|n| u64::try_from(n).ok());
                    let left = announced
                        .unwrap_or(0)
                        .saturating_sub(self.received - image.len() as u64);
                    self.pending
                        .reserve(usize::try_from(left.min(self.limit)).unwrap_or(0));
                }
                self.pending.extend_from_slice(&image);
                self.in_slices = true;
            } else {
                self.answer.images.push(image);
            }
        }
        if self.in_slices && !more {
            self.answer.images.push(self.pending.split().freeze());
            self.in_slices = false;
        }
        Ok(signpost)
    }

    /// The answer, once the stream has ended without an error.
    pub fn finish(self) -> Result<Answer, AnswerError> {
        if self.in_slices {
            return Err(AnswerError::CutShort {
                received: self.pending.len(),
            });
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

/// Reads a whole answer stream, telling `on_signpost` of each signpost as it comes.
pub async fn collect(
    mut stream: Streaming<ImageGenerationResponse>,
    limit: u64,
    mut on_signpost: impl FnMut(&Signpost),
) -> Result<Answer, AnswerError> {
    let mut assembler = Assembler::new(limit);
    while let Some(message) = stream.message().await.map_err(broken_or_failed)? {
        if let Some(signpost) = assembler.push(message)? {
            on_signpost(&signpost);
        }
    }
    assembler.finish()
}

/// A stream error that comes from the connection (the server went away, or cut it), not
/// from the server: statuses the server sends are read from its trailers and have no source
/// error, those of a broken connection carry the transport's error.
pub fn broken_or_failed(status: Status) -> AnswerError {
    match std::error::Error::source(&status) {
        Some(cause) => AnswerError::ConnectionLost(format!("{}: {cause}", status.message())),
        None => AnswerError::Status(status),
    }
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
        let mut assembler = Assembler::new(limit);
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
