//! fpzip's predictive coder for one field (a 3D array of f32): the Lorenzo predictor over a
//! front of already coded values, the map of floats onto ordered integers, and the residual
//! code, shared by encoder and decoder so that both walk the array the same way.

use super::model::QuasiStaticModel;
use super::range::{RangeDecoder, RangeEncoder};

/// Precisions up to this many bits code the residual as one symbol; wider ones code its
/// bit length as a symbol and the bits below the leading one verbatim.
const NARROW_BITS: u32 = 8;

/// How many values the decoder runs between checks that the input has not run out.
const CHECK_EVERY: usize = 4096;

/// The order-preserving map between f32 (truncated to `bits` bits) and `bits`-bit integers.
///
/// The float's bits are inverted and shifted down to `bits` bits; for values that were positive
/// (top bit now set) the bits below the top are inverted back. Negative values then map below
/// positive ones and every float maps in order, so a difference of integers measures how far a
/// prediction is off.
#[derive(Clone, Copy)]
pub(super) struct Map {
    bits: u32,
    shift: u32,
}

impl Map {
    /// A map keeping `bits` (2..=32) bits of each float.
    pub(super) fn new(bits: u32) -> Map {
        Map {
            bits,
            shift: 32 - bits,
        }
    }

    /// The mask of the low `bits - 1` bits if `r`'s top bit (at `bits - 1`) is set, else 0.
    #[inline]
    fn flip(self, r: u32) -> u32 {
        0u32.wrapping_sub(r >> (self.bits - 1)) >> (self.shift + 1)
    }

    #[inline]
    fn forward(self, value: f32) -> u32 {
        let r = !value.to_bits() >> self.shift;
        r ^ self.flip(r)
    }

    #[inline]
    fn inverse(self, r: u32) -> f32 {
        f32::from_bits(!(r ^ self.flip(r)) << self.shift)
    }

    /// The float with the bits below the precision cleared.
    #[inline]
    fn truncate(self, value: f32) -> f32 {
        f32::from_bits(value.to_bits() >> self.shift << self.shift)
    }
}

/// The recently coded values, in a ring laid out like the array padded with one zero before
/// each row, each plane and the whole field, so that every neighbour of the value being coded
/// — one back along x, y and z, and the diagonals — is a fixed distance behind it.
struct Front {
    ring: Vec<f32>,
    mask: usize,
    next: usize,
    row: usize,
    plane: usize,
}

impl Front {
    fn new(nx: usize, ny: usize) -> Front {
        let row = nx + 1;
        let plane = row * (ny + 1);
        let size = (1 + row + plane).next_power_of_two();
        Front {
            ring: vec![0.0; size],
            mask: size - 1,
            next: 0,
            row,
            plane,
        }
    }

    #[inline]
    fn back(&self, distance: usize) -> f32 {
        self.ring[self.next.wrapping_sub(distance) & self.mask]
    }

    /// The Lorenzo prediction: the value that makes the 2x2x2 cube ending here sum to zero
    /// with alternating signs. Evaluated left to right in f32, exactly as the reference does.
    #[inline]
    fn predict(&self) -> f32 {
        let (x, y, z) = (1, self.row, self.plane);
        self.back(x) - self.back(y + z) + self.back(y) - self.back(x + z) + self.back(z)
            - self.back(x + y)
            + self.back(x + y + z)
    }

    #[inline]
    fn push(&mut self, value: f32) {
        let at = self.next & self.mask;
        self.ring[at] = value;
        self.next = self.next.wrapping_add(1);
    }

    fn push_zeros(&mut self, count: usize) {
        for _ in 0..count {
            self.push(0.0);
        }
    }
}

/// One side of the coder: turns a prediction into the value to keep in the front.
trait Step {
    fn value(&mut self, prediction: f32) -> f32;
    /// Whether to go on (the decoder stops once its input has run out).
    fn keep_going(&self) -> bool;
}

/// Walks a field of nx * ny * nz values in storage order (x fastest). False if stopped early.
fn walk(nx: usize, ny: usize, nz: usize, step: &mut impl Step) -> bool {
    let mut front = Front::new(nx, ny);
    front.push_zeros(front.plane);
    for _ in 0..nz {
        front.push_zeros(front.row);
        for _ in 0..ny {
            front.push(0.0);
            let mut x = 0;
            while x < nx {
                let end = nx.min(x + CHECK_EVERY);
                for _ in x..end {
                    let value = step.value(front.predict());
                    front.push(value);
                }
                if !step.keep_going() {
                    return false;
                }
                x = end;
            }
        }
    }
    true
}

/// The residual code's parameters for a precision.
#[derive(Clone, Copy)]
struct Residual {
    map: Map,
    /// The symbol of a perfect prediction.
    bias: u32,
    wide: bool,
}

impl Residual {
    fn new(bits: u32) -> Residual {
        let wide = bits > NARROW_BITS;
        Residual {
            map: Map::new(bits),
            bias: if wide { bits } else { (1 << bits) - 1 },
            wide,
        }
    }

    /// Wide: 2 * bits + 1 symbols (a sign and a bit length, or exact); narrow: every residual.
    fn symbols(self) -> u32 {
        2 * self.bias + 1
    }
}

struct Decoding<'d, 'i, O> {
    decoder: &'d mut RangeDecoder<'i>,
    model: QuasiStaticModel,
    residual: Residual,
    emit: O,
}

impl<O: FnMut(f32)> Step for Decoding<'_, '_, O> {
    #[inline]
    fn value(&mut self, prediction: f32) -> f32 {
        let Residual { map, bias, wide } = self.residual;
        let symbol = self.decoder.decode_symbol(&mut self.model);
        let value = if !wide {
            map.inverse(
                map.forward(prediction)
                    .wrapping_add(symbol)
                    .wrapping_sub(bias),
            )
        } else if symbol > bias {
            let k = symbol - bias - 1;
            let difference = (1u32 << k).wrapping_add(self.decoder.decode_bits(k));
            map.inverse(map.forward(prediction).wrapping_add(difference))
        } else if symbol < bias {
            let k = bias - 1 - symbol;
            let difference = (1u32 << k).wrapping_add(self.decoder.decode_bits(k));
            map.inverse(map.forward(prediction).wrapping_sub(difference))
        } else {
            map.truncate(prediction)
        };
        (self.emit)(value);
        value
    }

    #[inline]
    fn keep_going(&self) -> bool {
        !self.decoder.overrun()
    }
}

struct Encoding<'e, 'i> {
    encoder: &'e mut RangeEncoder,
    model: QuasiStaticModel,
    residual: Residual,
    input: std::slice::Iter<'i, f32>,
}

impl Step for Encoding<'_, '_> {
    #[inline]
    fn value(&mut self, prediction: f32) -> f32 {
        let Residual { map, bias, wide } = self.residual;
        let real = self.input.next().copied().unwrap_or(0.0);
        let r = map.forward(real);
        let p = map.forward(prediction);
        if !wide {
            self.encoder
                .encode_symbol(bias.wrapping_add(r).wrapping_sub(p), &mut self.model);
        } else if p != r {
            let difference = r.abs_diff(p);
            let k = difference.ilog2();
            let symbol = if p < r { bias + 1 + k } else { bias - 1 - k };
            self.encoder.encode_symbol(symbol, &mut self.model);
            self.encoder.encode_bits(difference - (1 << k), k);
        } else {
            self.encoder.encode_symbol(bias, &mut self.model);
        }
        map.inverse(r)
    }

    fn keep_going(&self) -> bool {
        true
    }
}

/// Decodes one field of nx * ny * nz values kept at `bits` bits, giving each to `emit` in
/// storage order. Returns false if the input ran out (the decoder tells how:
/// [`RangeDecoder::overrun`]).
pub(super) fn decode_field(
    decoder: &mut RangeDecoder<'_>,
    emit: impl FnMut(f32),
    (nx, ny, nz): (usize, usize, usize),
    bits: u32,
) -> bool {
    let residual = Residual::new(bits);
    let mut step = Decoding {
        decoder,
        model: QuasiStaticModel::new(residual.symbols(), true),
        residual,
        emit,
    };
    walk(nx, ny, nz, &mut step)
}

/// Encodes one field of `input.len()` = nx * ny * nz values at `bits` bits.
pub(super) fn encode_field(
    encoder: &mut RangeEncoder,
    input: &[f32],
    (nx, ny, nz): (usize, usize, usize),
    bits: u32,
) {
    let residual = Residual::new(bits);
    let mut step = Encoding {
        encoder,
        model: QuasiStaticModel::new(residual.symbols(), false),
        residual,
        input: input.iter(),
    };
    walk(nx, ny, nz, &mut step);
}
