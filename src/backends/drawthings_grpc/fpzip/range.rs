//! fpzip's range coder: a 32-bit, carry-less coder that moves bytes most significant first.
//!
//! The state is an interval `[low, low + range)` of 32-bit integers that never wraps past 2^32.
//! Coding a value narrows the interval; whenever the top byte of both ends agrees it is shifted
//! out (the encoder writes it, the decoder reads the next byte into its window `code`); when the
//! range falls below 2^16 while the top bytes still differ, two bytes are shifted out and the
//! range is cut back to end exactly at 2^32, which is what spares the coder any carry. The
//! encoder ends with the four bytes of `low`, so a decoder reads exactly the bytes the encoder
//! wrote: reading past the end of the input means the stream was cut short.

use super::model::QuasiStaticModel;

/// Writes a range-coded stream into memory.
pub(super) struct RangeEncoder {
    low: u32,
    range: u32,
    out: Vec<u8>,
}

impl RangeEncoder {
    pub(super) fn new(capacity: usize) -> RangeEncoder {
        RangeEncoder {
            low: 0,
            range: u32::MAX,
            out: Vec::with_capacity(capacity),
        }
    }

    /// Encodes `value` (below 2^bits, bits <= 32) as plain bits, 16 at a time, low half first.
    pub(super) fn encode_bits(&mut self, value: u32, bits: u32) {
        if bits > 16 {
            self.encode_shift(value & 0xffff, 16);
            self.encode_shift(value >> 16, bits - 16);
        } else {
            self.encode_shift(value, bits);
        }
    }

    /// Encodes `symbol` with the model's current frequencies, then updates the model.
    #[inline]
    pub(super) fn encode_symbol(&mut self, symbol: u32, model: &mut QuasiStaticModel) {
        let (start, frequency) = model.encode(symbol);
        self.range >>= QuasiStaticModel::TOTAL_BITS;
        self.low = self.low.wrapping_add(self.range * start);
        self.range *= frequency;
        self.normalize();
    }

    /// Writes the final four bytes and hands the stream over.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.put(4);
        self.out
    }

    /// Encodes `value` below 2^bits, bits <= 16.
    #[inline]
    fn encode_shift(&mut self, value: u32, bits: u32) {
        self.range >>= bits;
        self.low = self.low.wrapping_add(self.range * value);
        self.normalize();
    }

    #[inline]
    fn put(&mut self, bytes: u32) {
        for _ in 0..bytes {
            self.out.push((self.low >> 24) as u8);
            self.low <<= 8;
        }
    }

    #[inline]
    fn normalize(&mut self) {
        while (self.low ^ self.low.wrapping_add(self.range)) >> 24 == 0 {
            self.put(1);
            self.range <<= 8;
        }
        if self.range >> 16 == 0 {
            self.put(2);
            self.range = self.low.wrapping_neg();
        }
    }
}

/// Reads a range-coded stream from memory. Past the end of the input it reads zeros and
/// remembers that it did ([`RangeDecoder::overrun`]); a value no encoder could have written
/// (the window outside the interval, as only damaged bytes make it) is clamped into range and
/// remembered too ([`RangeDecoder::corrupt`]), so hostile input can never index out of bounds
/// or loop: it only decodes to garbage that the caller then refuses.
pub(super) struct RangeDecoder<'a> {
    low: u32,
    range: u32,
    code: u32,
    input: &'a [u8],
    position: usize,
    corrupt: bool,
}

impl<'a> RangeDecoder<'a> {
    pub(super) fn new(input: &'a [u8]) -> RangeDecoder<'a> {
        let mut decoder = RangeDecoder {
            low: 0,
            range: u32::MAX,
            code: 0,
            input,
            position: 0,
            corrupt: false,
        };
        decoder.get(4);
        decoder
    }

    /// Decodes a value of `bits` plain bits (bits <= 32), as [`RangeEncoder::encode_bits`] wrote it.
    #[inline]
    pub(super) fn decode_bits(&mut self, bits: u32) -> u32 {
        if bits > 16 {
            let low = self.decode_shift(16);
            let high = self.decode_shift(bits - 16);
            (high << 16) + low
        } else {
            self.decode_shift(bits)
        }
    }

    /// Decodes one symbol with the model's current frequencies, then updates the model.
    #[inline]
    pub(super) fn decode_symbol(&mut self, model: &mut QuasiStaticModel) -> u32 {
        self.range >>= QuasiStaticModel::TOTAL_BITS;
        let mut target = self.code.wrapping_sub(self.low) / self.range;
        if target >= QuasiStaticModel::TOTAL {
            self.corrupt = true;
            target = QuasiStaticModel::TOTAL - 1;
        }
        let (symbol, start, frequency) = model.decode(target);
        self.low = self.low.wrapping_add(self.range * start);
        self.range *= frequency;
        self.normalize();
        symbol
    }

    /// Whether more bytes were read than the input holds.
    #[inline]
    pub(super) fn overrun(&self) -> bool {
        self.position > self.input.len()
    }

    /// Whether a value outside the coder's interval was met (damaged bytes).
    pub(super) fn corrupt(&self) -> bool {
        self.corrupt
    }

    /// How many bytes of the input the stream took so far.
    pub(super) fn consumed(&self) -> usize {
        self.position
    }

    /// Decodes a value below 2^bits, bits <= 16.
    #[inline]
    fn decode_shift(&mut self, bits: u32) -> u32 {
        self.range >>= bits;
        let mut value = self.code.wrapping_sub(self.low) / self.range;
        if value >> bits != 0 {
            self.corrupt = true;
            value = (1 << bits) - 1;
        }
        self.low = self.low.wrapping_add(self.range * value);
        self.normalize();
        value
    }

    #[inline]
    fn get(&mut self, bytes: u32) {
        for _ in 0..bytes {
            let byte = match self.input.get(self.position) {
                Some(&byte) => byte,
                None => 0,
            };
            self.position += 1;
            self.code = (self.code << 8) | u32::from(byte);
            self.low <<= 8;
        }
    }

    #[inline]
    fn normalize(&mut self) {
        while (self.low ^ self.low.wrapping_add(self.range)) >> 24 == 0 {
            self.get(1);
            self.range <<= 8;
        }
        if self.range >> 16 == 0 {
            self.get(2);
            self.range = self.low.wrapping_neg();
        }
    }
}
