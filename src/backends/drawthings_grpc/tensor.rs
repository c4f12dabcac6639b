//! Image tensors as Draw Things sends and takes them: a 68-byte header, then the values.
//!
//! The header is 17 little-endian u32 words: the codec (0 raw, 0x217 zip, 0xf7217 fpzip),
//! then the tensor's parameters as the tensor library keeps them in memory: memory type
//! (1 = CPU), format (2 = NHWC), data type (0x20000 f16, 0x4000 f32, 0x1000 u8), a reserved
//! word (0), and 12 dimension words, `[1, height, width, 3]` followed by zeros. The values are
//! HWC, RGB, in [-1, 1]: a byte b is sent as `b * 2 / 255 - 1` and a value v read back as
//! `(v + 1) * 127.5`, rounded and clamped.
//!
//! After the header: raw, the values themselves (little-endian); zip, the raw values as a raw
//! deflate stream (no zlib header or checksum); fpzip, an fpzip stream of f32 values (f16
//! tensors widened, see [`crate::backends::drawthings_grpc::fpzip`]) with nx = channels, ny = width, nz = height. drawdrop
//! sends raw f16 and reads all three.

use crate::backends::drawthings_grpc::fpzip::{self, FpzipError};

/// Bytes of the header before the values.
pub const HEADER_LEN: usize = 68;
/// The codec words.
pub const CODEC_RAW: u32 = 0;
pub const CODEC_ZIP: u32 = 0x217;
pub const CODEC_FPZIP: u32 = 0xf7217;
/// The memory type and format words drawdrop sends.
const MEMORY_CPU: u32 = 1;
const FORMAT_NHWC: u32 = 2;
/// How many dimension words the header holds.
const DIMENSION_WORDS: usize = 12;
/// RGB: the only channel count of an image tensor.
const CHANNELS: u32 = 3;

/// The element types of a tensor, by their header word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    F16,
    F32,
    U8,
}

impl DataType {
    pub const fn word(self) -> u32 {
        match self {
            DataType::F16 => 0x20000,
            DataType::F32 => 0x4000,
            DataType::U8 => 0x1000,
        }
    }

    fn from_word(word: u32) -> Option<DataType> {
        [DataType::F16, DataType::F32, DataType::U8]
            .into_iter()
            .find(|kind| kind.word() == word)
    }

    fn size(self) -> usize {
        match self {
            DataType::F16 => 2,
            DataType::F32 => 4,
            DataType::U8 => 1,
        }
    }
}

/// What a tensor's header says, once checked to be an RGB image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorHeader {
    pub codec: u32,
    pub data_type: DataType,
    pub height: u32,
    pub width: u32,
}

impl TensorHeader {
    /// Bytes of the values when raw.
    fn raw_len(self) -> usize {
        self.width as usize * self.height as usize * CHANNELS as usize * self.data_type.size()
    }
}

/// An 8-bit RGB picture, rows top to bottom, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Why a tensor cannot be made or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("the image tensor is cut short: {got} bytes where at least {needed} are needed")]
    Truncated { needed: usize, got: usize },
    #[error("the image tensor's header is not an RGB image's: {0}")]
    BadHeader(String),
    #[error(
        "the image tensor uses codec {0:#x}, which drawdrop cannot read (raw, zip and fpzip it can)"
    )]
    UnknownCodec(u32),
    #[error("the image tensor holds {data_type:?} values; only f16 and f32 images can be read")]
    UnsupportedDataType { data_type: DataType },
    #[error("the image is {width}x{height}, over the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("the image tensor's values take {got} bytes where its header announces {expected}")]
    LengthMismatch { expected: usize, got: usize },
    #[error("the image tensor's zip stream is damaged")]
    BadZip,
    #[error("the image tensor's fpzip stream cannot be read: {0}")]
    Fpzip(#[from] FpzipError),
}

/// Reads and checks the header of `tensor`.
pub fn read_header(tensor: &[u8]) -> Result<TensorHeader, TensorError> {
    let Some(header) = tensor.get(..HEADER_LEN) else {
        return Err(TensorError::Truncated {
            needed: HEADER_LEN,
            got: tensor.len(),
        });
    };
    let words: Vec<u32> = header
        .chunks_exact(4)
        .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
        .collect();
    let [codec, _memory, format, data_type, _reserved] = [0, 1, 2, 3, 4].map(|at| words[at]);
    let dims = &words[5..];
    if ![CODEC_RAW, CODEC_ZIP, CODEC_FPZIP].contains(&codec) {
        return Err(TensorError::UnknownCodec(codec));
    }
    if format != FORMAT_NHWC {
        return Err(TensorError::BadHeader(format!(
            "format {format} (an image is NHWC, 2)"
        )));
    }
    let data_type = DataType::from_word(data_type)
        .ok_or_else(|| TensorError::BadHeader(format!("unknown data type {data_type:#x}")))?;
    if dims[0] != 1
        || dims[1] == 0
        || dims[2] == 0
        || dims[3] != CHANNELS
        || dims[4..].iter().any(|&d| d != 0)
    {
        return Err(TensorError::BadHeader(format!(
            "dimensions {:?} (an image is [1, height, width, 3])",
            trimmed_dims(dims)
        )));
    }
    Ok(TensorHeader {
        codec,
        data_type,
        height: dims[1],
        width: dims[2],
    })
}

/// The dimension words up to the last non-zero one, for messages.
fn trimmed_dims(dims: &[u32]) -> &[u32] {
    let used = dims
        .iter()
        .rposition(|&d| d != 0)
        .map_or(0, |last| last + 1);
    &dims[..used]
}

/// Makes the tensor drawdrop sends: `picture` as raw f16, NHWC, in [-1, 1].
pub fn encode_rgb8(picture: &Rgb8) -> Result<Vec<u8>, TensorError> {
    let expected = picture.width as usize * picture.height as usize * 3;
    if picture.pixels.len() != expected {
        return Err(TensorError::LengthMismatch {
            expected,
            got: picture.pixels.len(),
        });
    }
    let pixels = bytes::Bytes::copy_from_slice(&picture.pixels);
    Ok(TensorToSend::new(pixels, picture.width, picture.height)?
        .pieces()
        .flat_map(|piece| piece.to_vec())
        .collect())
}

/// The length of the tensor made of a `width` x `height` picture.
pub fn encoded_len(width: u32, height: u32) -> usize {
    let header = TensorHeader {
        codec: CODEC_RAW,
        data_type: DataType::F16,
        height,
        width,
    };
    HEADER_LEN + header.raw_len()
}

/// Pixels to send as a tensor, made piece by piece as it goes (the tensor, twice the size of
/// the pixels, is never whole in memory).
#[derive(Debug, Clone)]
pub struct TensorToSend {
    /// 8-bit RGB, or RGBA whose alpha is not sent, rows top to bottom.
    pixels: bytes::Bytes,
    width: u32,
    height: u32,
    bytes_per_pixel: usize,
}

/// Pixels in a piece of the tensor sent: 64 KiB of values, small enough to be made in a
/// cache and to be taken from the allocator's free memory each time.
const PIXELS_A_PIECE: usize = 64 * 1024 / 6;

impl TensorToSend {
    /// `pixels` of a `width` x `height` picture, RGB or RGBA (told by their length).
    pub fn new(pixels: bytes::Bytes, width: u32, height: u32) -> Result<TensorToSend, TensorError> {
        let count = width as usize * height as usize;
        let bytes_per_pixel = match count {
            0 => 0,
            count => pixels.len() / count,
        };
        if count == 0 || !(3..=4).contains(&bytes_per_pixel) || !pixels.len().is_multiple_of(count)
        {
            return Err(TensorError::BadHeader(format!(
                "{} bytes are not the RGB or RGBA pixels of a {width}x{height} picture",
                pixels.len()
            )));
        }
        Ok(TensorToSend {
            pixels,
            width,
            height,
            bytes_per_pixel,
        })
    }

    /// Bytes of the tensor (never none: a picture has pixels, and the tensor a header).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        encoded_len(self.width, self.height)
    }

    /// The tensor in order: its header, then its values a piece at a time, each made when it
    /// is asked for.
    pub fn pieces(&self) -> impl Iterator<Item = bytes::Bytes> + Send + 'static {
        let mut header = Vec::with_capacity(HEADER_LEN);
        let mut dims = [0u32; DIMENSION_WORDS];
        dims[..4].copy_from_slice(&[1, self.height, self.width, CHANNELS]);
        for word in [CODEC_RAW, MEMORY_CPU, FORMAT_NHWC, DataType::F16.word(), 0]
            .into_iter()
            .chain(dims)
        {
            header.extend_from_slice(&word.to_le_bytes());
        }
        let (pixels, bytes_per_pixel) = (self.pixels.clone(), self.bytes_per_pixel);
        let table = byte_to_half_table();
        let piece_len = PIXELS_A_PIECE * bytes_per_pixel;
        let values = (0..pixels.len().div_ceil(piece_len)).map(move |at| {
            let end = (at * piece_len + piece_len).min(pixels.len());
            let source = &pixels[at * piece_len..end];
            let mut piece = vec![0u8; source.len() / bytes_per_pixel * 6];
            for (value, pixel) in piece
                .chunks_exact_mut(6)
                .zip(source.chunks_exact(bytes_per_pixel))
            {
                for channel in 0..3 {
                    let half = table[usize::from(pixel[channel])].to_le_bytes();
                    value[2 * channel..2 * channel + 2].copy_from_slice(&half);
                }
            }
            bytes::Bytes::from(piece)
        });
        std::iter::once(bytes::Bytes::from(header)).chain(values)
    }
}

/// The f16 bits each byte value is sent as.
fn byte_to_half_table() -> [u16; 256] {
    std::array::from_fn(|byte| f32_to_f16(byte as f32 * 2.0 / 255.0 - 1.0))
}

/// Reads an answer tensor back into an RGB picture, refusing pictures of more than
/// `max_pixels` pixels before allocating them.
pub fn decode_rgb8(tensor: &[u8], max_pixels: u64) -> Result<Rgb8, TensorError> {
    let mut decoder = TensorDecoder::new(max_pixels);
    decoder.push(tensor)?;
    decoder.finish()
}

/// An answer tensor read as its bytes arrive: raw values are turned into pixels slice by
/// slice (the tensor is never whole in memory, only the picture), compressed ones (zip,
/// fpzip) are gathered and read at the end.
#[derive(Debug)]
pub struct TensorDecoder {
    max_pixels: u64,
    state: Decoding,
}

#[derive(Debug)]
enum Decoding {
    /// The header's first bytes.
    Header(Vec<u8>),
    /// Raw values, read as they come.
    Raw(RawValues),
    /// A compressed tensor's body (after its header), to read whole.
    Compressed { header: TensorHeader, body: Vec<u8> },
}

impl TensorDecoder {
    /// A decoder refusing pictures of more than `max_pixels` pixels.
    pub fn new(max_pixels: u64) -> TensorDecoder {
        TensorDecoder {
            max_pixels,
            state: Decoding::Header(Vec::with_capacity(HEADER_LEN)),
        }
    }

    /// The tensor's next bytes.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), TensorError> {
        if let Decoding::Header(head) = &mut self.state {
            let wanted = (HEADER_LEN - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..wanted]);
            bytes = &bytes[wanted..];
            if head.len() < HEADER_LEN {
                return Ok(());
            }
            let header = read_header(head)?;
            let pixels = u64::from(header.width) * u64::from(header.height);
            if pixels > self.max_pixels {
                return Err(TensorError::TooLarge {
                    width: header.width,
                    height: header.height,
                    limit: self.max_pixels,
                });
            }
            if header.data_type == DataType::U8 {
                return Err(TensorError::UnsupportedDataType {
                    data_type: header.data_type,
                });
            }
            self.state = match header.codec {
                CODEC_RAW => Decoding::Raw(RawValues::new(header)),
                _ => Decoding::Compressed {
                    header,
                    body: Vec::new(),
                },
            };
        }
        match &mut self.state {
            Decoding::Header(_) => Ok(()),
            Decoding::Compressed { body, .. } => {
                body.extend_from_slice(bytes);
                Ok(())
            }
            Decoding::Raw(values) => values.push(bytes),
        }
    }

    /// The picture, once every byte of the tensor is in.
    pub fn finish(self) -> Result<Rgb8, TensorError> {
        match self.state {
            Decoding::Header(head) => Err(TensorError::Truncated {
                needed: HEADER_LEN,
                got: head.len(),
            }),
            Decoding::Raw(values) => values.finish(),
            Decoding::Compressed { header, body } => {
                let pixels = match header.codec {
                    CODEC_FPZIP => from_fpzip(header, &body)?,
                    _ => from_zip(header, &body)?,
                };
                Ok(Rgb8 {
                    width: header.width,
                    height: header.height,
                    pixels,
                })
            }
        }
    }
}

/// Raw values (after the header) turned into pixels as they come, in pieces of any length.
#[derive(Debug)]
struct RawValues {
    header: TensorHeader,
    /// The picture so far.
    pixels: Vec<u8>,
    /// For f16 values; f32 ones are computed.
    table: Option<Box<HalfToByte>>,
    /// The bytes of a value cut by a piece's end.
    partial: Vec<u8>,
    received: usize,
}

impl RawValues {
    fn new(header: TensorHeader) -> RawValues {
        RawValues {
            header,
            pixels: Vec::with_capacity(header.raw_len() / header.data_type.size()),
            table: (header.data_type == DataType::F16).then(half_to_byte_table),
            partial: Vec::new(),
            received: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<(), TensorError> {
        let expected = self.header.raw_len();
        self.received += bytes.len();
        if self.received > expected {
            return Err(TensorError::LengthMismatch {
                expected,
                got: self.received,
            });
        }
        let size = self.header.data_type.size();
        let table = self.table.as_deref();
        if !self.partial.is_empty() {
            let wanted = (size - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..wanted]);
            bytes = &bytes[wanted..];
            if self.partial.len() < size {
                return Ok(());
            }
            values_to_bytes(&self.partial, table, &mut self.pixels);
            self.partial.clear();
        }
        let whole = bytes.len() - bytes.len() % size;
        values_to_bytes(&bytes[..whole], table, &mut self.pixels);
        self.partial.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    fn finish(self) -> Result<Rgb8, TensorError> {
        let expected = self.header.raw_len();
        if self.received < expected {
            return Err(TensorError::Truncated {
                needed: HEADER_LEN + expected,
                got: HEADER_LEN + self.received,
            });
        }
        Ok(Rgb8 {
            width: self.header.width,
            height: self.header.height,
            pixels: self.pixels,
        })
    }
}

/// Whole raw values (f16 when `table` is given, else f32) as bytes, at the end of `pixels`.
fn values_to_bytes(values: &[u8], table: Option<&HalfToByte>, pixels: &mut Vec<u8>) {
    match table {
        Some(table) => pixels.extend(
            values
                .chunks_exact(2)
                .map(|half| table[usize::from(u16::from_le_bytes([half[0], half[1]]))]),
        ),
        None => {
            pixels.extend(values.chunks_exact(4).map(|word| {
                value_to_byte(f32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            }))
        }
    }
}

fn from_zip(header: TensorHeader, body: &[u8]) -> Result<Vec<u8>, TensorError> {
    let raw = miniz_oxide::inflate::decompress_to_vec_with_limit(body, header.raw_len()).map_err(
        |failure| match failure.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => TensorError::LengthMismatch {
                expected: header.raw_len(),
                got: failure.output.len().saturating_add(1),
            },
            _ => TensorError::BadZip,
        },
    )?;
    let mut values = RawValues::new(header);
    values.push(&raw)?;
    Ok(values.finish()?.pixels)
}

fn from_fpzip(header: TensorHeader, stream: &[u8]) -> Result<Vec<u8>, TensorError> {
    let count = header.width as usize * header.height as usize * CHANNELS as usize;
    let stream_header = fpzip::read_header(stream)?;
    let expected = fpzip::Dims::image(header.height, header.width, CHANNELS);
    let got = stream_header.dims;
    if got.count() != expected.count() {
        return Err(TensorError::LengthMismatch {
            expected: count,
            got: usize::try_from(got.count()).unwrap_or(usize::MAX),
        });
    }
    if got != expected {
        return Err(TensorError::BadHeader(format!(
            "its fpzip stream holds {} x {} x {} x {} values (x fastest), not the {} x {} x {} \
             x 1 of a {}x{} picture",
            got.nx,
            got.ny,
            got.nz,
            got.nf,
            expected.nx,
            expected.ny,
            expected.nz,
            header.width,
            header.height
        )));
    }
    let mut pixels = Vec::new();
    fpzip::decode_with(stream, count, |_| {
        pixels.reserve_exact(count);
        |value| pixels.push(value_to_byte(value))
    })?;
    Ok(pixels)
}

/// The byte each f16 value reads back as, indexed by its bits (every index is in range: no
/// bounds are checked).
type HalfToByte = [u8; 1 << 16];

/// The [`HalfToByte`] table.
fn half_to_byte_table() -> Box<HalfToByte> {
    let mut table = Box::new([0u8; 1 << 16]);
    for (half, byte) in table.iter_mut().enumerate() {
        *byte = value_to_byte(fpzip::f16_to_f32(half as u16));
    }
    table
}

/// `(v + 1) * 127.5`, rounded (halves away from zero), clamped to 0..=255 (NaN reads as 0).
/// Rounded by hand: `f32::round` is a call into the C library on the baseline x86-64, and an
/// fpzip answer rounds millions of values.
fn value_to_byte(value: f32) -> u8 {
    let scaled = (value + 1.0) * 127.5;
    if scaled.is_nan() || scaled <= 0.0 {
        return 0;
    }
    if scaled >= 255.0 {
        return 255;
    }
    // 0 < scaled < 255: its whole part and what is left are exact.
    let whole = scaled as u32;
    (whole + u32::from(scaled - whole as f32 >= 0.5)) as u8
}

/// The f16 nearest to `value` (ties to even), infinities and NaN kept.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        let quiet = if mantissa != 0 { 0x200 } else { 0 };
        return sign | 0x7c00 | quiet;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    let (kept, dropped_bits, full) = if half_exponent <= 0 {
        if half_exponent < -10 {
            return sign;
        }
        let shift = (14 - half_exponent) as u32;
        (0u32, shift, mantissa | 0x80_0000)
    } else {
        ((half_exponent as u32) << 10, 13, mantissa)
    };
    let truncated = kept | (full >> dropped_bits);
    let rest = full & ((1 << dropped_bits) - 1);
    let halfway = 1 << (dropped_bits - 1);
    let round_up = rest > halfway || (rest == halfway && truncated & 1 == 1);
    // A carry out of the significand moves into the exponent, up to infinity: still right.
    sign | (truncated + u32::from(round_up)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Rgb8 {
        let pixels = (0..width * height * 3)
            .map(|at| (at * 7 % 256) as u8)
            .collect();
        Rgb8 {
            width,
            height,
            pixels,
        }
    }

    fn words(tensor: &[u8]) -> Vec<u32> {
        tensor[..HEADER_LEN]
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    /// A tensor with `codec`, `data_type` and the dims of a `width` x `height` image, then `body`.
    fn tensor_with(
        codec: u32,
        data_type: DataType,
        width: u32,
        height: u32,
        body: &[u8],
    ) -> Vec<u8> {
        let mut tensor = encode_rgb8(&Rgb8 {
            width,
            height,
            pixels: vec![0; (width * height * 3) as usize],
        })
        .unwrap();
        tensor.truncate(HEADER_LEN);
        tensor[0..4].copy_from_slice(&codec.to_le_bytes());
        tensor[12..16].copy_from_slice(&data_type.word().to_le_bytes());
        tensor.extend_from_slice(body);
        tensor
    }

    #[test]
    fn the_header_is_68_bytes_of_codec_type_format_datatype_reserved_and_dims() {
        let tensor = encode_rgb8(&gradient(64, 128)).unwrap();
        assert_eq!(tensor.len(), 68 + 64 * 128 * 3 * 2);
        let mut expected = vec![0, 1, 2, 0x20000, 0, 1, 128, 64, 3];
        expected.resize(17, 0);
        assert_eq!(words(&tensor), expected);
    }

    #[test]
    fn bytes_are_sent_as_f16_in_minus_one_to_one() {
        let picture = Rgb8 {
            width: 1,
            height: 1,
            pixels: vec![0, 255, 128],
        };
        let tensor = encode_rgb8(&picture).unwrap();
        let halves: Vec<u16> = tensor[HEADER_LEN..]
            .chunks_exact(2)
            .map(|h| u16::from_le_bytes([h[0], h[1]]))
            .collect();
        // -1.0, 1.0, and 128 * 2 / 255 - 1 = 0.00392 (nearest f16: 0x1c04).
        assert_eq!(halves, vec![0xbc00, 0x3c00, 0x1c04]);
    }

    #[test]
    fn every_byte_survives_the_round_trip_through_f16() {
        let picture = Rgb8 {
            width: 256,
            height: 1,
            pixels: (0..=255u8).flat_map(|b| [b, 255 - b, b]).collect(),
        };
        let back = decode_rgb8(&encode_rgb8(&picture).unwrap(), u64::MAX).unwrap();
        assert_eq!(back, picture);
    }

    #[test]
    fn f32_to_f16_inverts_the_widening_of_every_f16() {
        for half in 0..=u16::MAX {
            let wide = fpzip::f16_to_f32(half);
            if wide.is_nan() {
                assert!(fpzip::f16_to_f32(f32_to_f16(wide)).is_nan());
            } else {
                assert_eq!(f32_to_f16(wide), half, "{half:#06x}");
            }
        }
    }

    #[test]
    fn f32_to_f16_rounds_to_nearest_even_and_saturates() {
        // 1 + 2^-11 is halfway between 1 and the next f16: ties to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(70000.0), 0x7c00);
        assert_eq!(f32_to_f16(-1e-9), 0x8000);
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
    }

    #[test]
    fn values_are_rounded_as_f32_round_would() {
        let reference = |value: f32| ((value + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        for half in 0..=u16::MAX {
            let value = fpzip::f16_to_f32(half);
            assert_eq!(value_to_byte(value), reference(value), "{half:#x}: {value}");
        }
        // A sweep of the range, and the floats around each value that scales to a half.
        for step in 0..=200_000 {
            let value = -1.01 + 2.02 * step as f32 / 200_000.0;
            assert_eq!(value_to_byte(value), reference(value), "{value}");
        }
        for half in 0..=255 {
            let value = (half as f32 + 0.5) / 127.5 - 1.0;
            for ulps in -3i32..=3 {
                let near = f32::from_bits(value.to_bits().wrapping_add_signed(ulps));
                assert_eq!(value_to_byte(near), reference(near), "{near}");
            }
        }
        for value in [f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0, 0.0] {
            assert_eq!(value_to_byte(value), reference(value), "{value}");
        }
    }

    #[test]
    fn f32_answers_are_read_rounded_and_clamped() {
        let values = [-1.0f32, 1.0, 0.0, 2.5, -3.0, f32::NAN];
        let body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = tensor_with(CODEC_RAW, DataType::F32, 2, 1, &body);
        let picture = decode_rgb8(&tensor, 2).unwrap();
        assert_eq!(picture.pixels, vec![0, 255, 128, 255, 0, 0]);
    }

    #[test]
    fn a_tensor_read_in_slices_of_any_length_is_the_tensor_read_whole() {
        let picture = gradient(16, 8);
        let half = encode_rgb8(&picture).unwrap();
        let values: Vec<u8> = half[HEADER_LEN..]
            .chunks_exact(2)
            .flat_map(|h| fpzip::f16_to_f32(u16::from_le_bytes([h[0], h[1]])).to_le_bytes())
            .collect();
        let single = tensor_with(CODEC_RAW, DataType::F32, 16, 8, &values);
        let zip = tensor_with(
            CODEC_ZIP,
            DataType::F16,
            16,
            8,
            &miniz_oxide::deflate::compress_to_vec(&half[HEADER_LEN..], 6),
        );
        for tensor in [&half, &single, &zip] {
            for slice in [1, 3, 7, 67, 69, 1000] {
                let mut decoder = TensorDecoder::new(128);
                for piece in tensor.chunks(slice) {
                    decoder.push(piece).unwrap();
                }
                assert_eq!(decoder.finish().unwrap(), picture, "slices of {slice}");
            }
            // One byte short, in slices: cut short, as when read whole.
            let mut decoder = TensorDecoder::new(128);
            for piece in tensor[..tensor.len() - 1].chunks(5) {
                decoder.push(piece).unwrap();
            }
            assert!(decoder.finish().is_err());
        }
        // One byte too many is refused as it comes.
        let mut decoder = TensorDecoder::new(128);
        decoder.push(&half).unwrap();
        assert!(matches!(
            decoder.push(&[0]),
            Err(TensorError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn zip_answers_are_raw_deflate_of_the_raw_values() {
        let picture = gradient(64, 64);
        let raw = encode_rgb8(&picture).unwrap();
        let zipped = miniz_oxide::deflate::compress_to_vec(&raw[HEADER_LEN..], 6);
        let tensor = tensor_with(CODEC_ZIP, DataType::F16, 64, 64, &zipped);
        assert_eq!(decode_rgb8(&tensor, 4096).unwrap(), picture);
        // A zlib stream (with its 2-byte header) is not what the server sends.
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&raw[HEADER_LEN..], 6);
        let tensor = tensor_with(CODEC_ZIP, DataType::F16, 64, 64, &zlib);
        assert!(decode_rgb8(&tensor, 4096).is_err());
    }

    #[test]
    fn a_zip_answer_inflating_past_its_size_is_refused() {
        let too_much = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 64 * 64 * 6 + 10], 6);
        let tensor = tensor_with(CODEC_ZIP, DataType::F16, 64, 64, &too_much);
        assert!(matches!(
            decode_rgb8(&tensor, 4096),
            Err(TensorError::LengthMismatch { .. })
        ));
        let tensor = tensor_with(CODEC_ZIP, DataType::F16, 64, 64, &[0xff; 40]);
        assert_eq!(decode_rgb8(&tensor, 4096), Err(TensorError::BadZip));
    }

    #[test]
    fn fpzip_answers_of_f16_and_f32_tensors_decode() {
        let picture = gradient(8, 4);
        let raw = encode_rgb8(&picture).unwrap();
        let halves: Vec<u16> = raw[HEADER_LEN..]
            .chunks_exact(2)
            .map(|h| u16::from_le_bytes([h[0], h[1]]))
            .collect();
        let dims = fpzip::Dims::image(4, 8, 3);
        let stream = fpzip::encode_f16(&halves, dims).unwrap();
        let tensor = tensor_with(CODEC_FPZIP, DataType::F16, 8, 4, &stream);
        assert_eq!(decode_rgb8(&tensor, 32).unwrap(), picture);

        let wide: Vec<f32> = halves.iter().map(|&h| fpzip::f16_to_f32(h)).collect();
        let stream = fpzip::encode(&wide, dims, 32).unwrap();
        let tensor = tensor_with(CODEC_FPZIP, DataType::F32, 8, 4, &stream);
        assert_eq!(decode_rgb8(&tensor, 32).unwrap(), picture);
    }

    #[test]
    fn an_fpzip_stream_of_other_sizes_than_the_header_is_refused() {
        let stream = fpzip::encode(&[0.0; 12], fpzip::Dims::image(2, 2, 3), 32).unwrap();
        let tensor = tensor_with(CODEC_FPZIP, DataType::F32, 4, 2, &stream);
        assert_eq!(
            decode_rgb8(&tensor, 100),
            Err(TensorError::LengthMismatch {
                expected: 24,
                got: 12
            })
        );
        let tensor = tensor_with(
            CODEC_FPZIP,
            DataType::F32,
            2,
            2,
            &stream[..stream.len() / 2],
        );
        assert!(matches!(
            decode_rgb8(&tensor, 100),
            Err(TensorError::Fpzip(_))
        ));
        // As many values, another shape: a 4x1 picture's stream for a 1x4 picture.
        let stream = fpzip::encode(&[0.0; 12], fpzip::Dims::image(1, 4, 3), 32).unwrap();
        let tensor = tensor_with(CODEC_FPZIP, DataType::F32, 1, 4, &stream);
        let Err(TensorError::BadHeader(problem)) = decode_rgb8(&tensor, 100) else {
            panic!("another shape is not refused");
        };
        assert!(
            problem
                .contains("holds 3 x 4 x 1 x 1 values (x fastest), not the 3 x 1 x 4 x 1 of a 1x4"),
            "{problem}"
        );
    }

    #[test]
    fn damaged_tensors_get_typed_errors() {
        let good = encode_rgb8(&gradient(4, 4)).unwrap();
        assert_eq!(
            decode_rgb8(&good[..40], 100),
            Err(TensorError::Truncated {
                needed: 68,
                got: 40
            })
        );
        assert_eq!(
            decode_rgb8(&good[..good.len() - 1], 100),
            Err(TensorError::Truncated {
                needed: good.len(),
                got: good.len() - 1
            })
        );
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            decode_rgb8(&longer, 100),
            Err(TensorError::LengthMismatch { .. })
        ));
        let mut unknown = good.clone();
        unknown[0..4].copy_from_slice(&0x511u32.to_le_bytes());
        assert_eq!(
            decode_rgb8(&unknown, 100),
            Err(TensorError::UnknownCodec(0x511))
        );
        let mut nchw = good.clone();
        nchw[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            decode_rgb8(&nchw, 100),
            Err(TensorError::BadHeader(_))
        ));
        let mut four_channels = good.clone();
        four_channels[32..36].copy_from_slice(&4u32.to_le_bytes());
        let message = decode_rgb8(&four_channels, 100).unwrap_err().to_string();
        assert!(message.contains("[1, 4, 4, 4]"), "{message}");
        let mut bytes = good.clone();
        bytes[12..16].copy_from_slice(&DataType::U8.word().to_le_bytes());
        assert_eq!(
            decode_rgb8(&bytes, 100),
            Err(TensorError::UnsupportedDataType {
                data_type: DataType::U8
            })
        );
    }

    #[test]
    fn a_picture_over_the_limit_is_refused_before_reading_it() {
        // The header claims 100000 x 100000; nothing after it.
        let mut huge = encode_rgb8(&gradient(1, 1)).unwrap();
        huge.truncate(HEADER_LEN);
        huge[24..28].copy_from_slice(&100_000u32.to_le_bytes());
        huge[28..32].copy_from_slice(&100_000u32.to_le_bytes());
        assert_eq!(
            decode_rgb8(&huge, 4096 * 4096),
            Err(TensorError::TooLarge {
                width: 100_000,
                height: 100_000,
                limit: 4096 * 4096
            })
        );
    }

    #[test]
    fn rgba_pixels_make_the_tensor_of_their_rgb_in_pieces_of_64_kib() {
        let picture = gradient(300, 100);
        let rgba: Vec<u8> = picture
            .pixels
            .chunks_exact(3)
            .flat_map(|rgb| [rgb[0], rgb[1], rgb[2], 9])
            .collect();
        let tensor = TensorToSend::new(bytes::Bytes::from(rgba), 300, 100).unwrap();
        let pieces: Vec<bytes::Bytes> = tensor.pieces().collect();
        assert_eq!(pieces[0].len(), HEADER_LEN);
        assert!(pieces[1..].iter().all(|piece| piece.len() <= 64 * 1024));
        assert_eq!(pieces.concat(), encode_rgb8(&picture).unwrap());
        assert_eq!(tensor.len(), pieces.concat().len());
        for wrong in [0, 2 * 30_000, 5 * 30_000, 3 * 30_000 + 1] {
            let refused = TensorToSend::new(bytes::Bytes::from(vec![0; wrong]), 300, 100);
            assert!(
                matches!(refused, Err(TensorError::BadHeader(_))),
                "{wrong} bytes"
            );
        }
        assert!(TensorToSend::new(bytes::Bytes::new(), 0, 0).is_err());
    }

    #[test]
    fn a_picture_whose_bytes_do_not_match_its_size_is_not_encoded() {
        let picture = Rgb8 {
            width: 2,
            height: 2,
            pixels: vec![0; 11],
        };
        assert_eq!(
            encode_rgb8(&picture),
            Err(TensorError::LengthMismatch {
                expected: 12,
                got: 11
            })
        );
    }
}
