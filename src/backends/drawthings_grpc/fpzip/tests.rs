//! Unit tests of the pieces the reference vectors (tests/it/fpzip.rs) cannot reach: headers no
//! fast-mode f32 encoder writes, and the f16 widening for every f16.

use super::range::RangeEncoder;
use super::*;

/// A stream whose header fields are the given ones, followed by nothing.
fn header_stream(magic: [u8; 4], version: (u32, u32), kind: u32, precision: u32) -> Vec<u8> {
    header_claiming(magic, version, kind, precision, Dims::image(8, 8, 3))
}

fn header_claiming(
    magic: [u8; 4],
    version: (u32, u32),
    kind: u32,
    precision: u32,
    dims: Dims,
) -> Vec<u8> {
    let mut encoder = RangeEncoder::new(32);
    for byte in magic {
        encoder.encode_bits(u32::from(byte), 8);
    }
    encoder.encode_bits(version.0, 16);
    encoder.encode_bits(version.1, 8);
    encoder.encode_bits(kind, 1);
    encoder.encode_bits(precision, 7);
    for size in [dims.nx, dims.ny, dims.nz, dims.nf] {
        encoder.encode_bits(size, 32);
    }
    encoder.finish()
}

#[test]
fn a_well_formed_header_reads_back() {
    let stream = header_stream(MAGIC, (FORMAT_MAJOR, FORMAT_MINOR), 0, 19);
    let header = read_header(&stream).unwrap();
    assert_eq!(header.dims, Dims::image(8, 8, 3));
    assert_eq!((header.precision, header.bits()), (19, 19));
}

#[test]
fn headers_of_other_modes_types_and_precisions_are_refused() {
    let version = (FORMAT_MAJOR, FORMAT_MINOR);
    let cases = [
        (
            header_stream(*b"fpy\0", version, 0, 0),
            FpzipError::BadMagic,
        ),
        (
            header_stream(MAGIC, (FORMAT_MAJOR, 4), 0, 0),
            FpzipError::UnsupportedVersion {
                major: FORMAT_MAJOR,
                minor: 4,
            },
        ),
        (
            header_stream(MAGIC, (0x0100, 1), 0, 0),
            FpzipError::UnsupportedVersion {
                major: 0x0100,
                minor: 1,
            },
        ),
        (
            header_stream(MAGIC, version, 1, 64),
            FpzipError::UnsupportedType,
        ),
        (
            header_stream(MAGIC, version, 0, 1),
            FpzipError::UnsupportedPrecision(1),
        ),
        (
            header_stream(MAGIC, version, 0, 33),
            FpzipError::UnsupportedPrecision(33),
        ),
    ];
    for (stream, expected) in cases {
        assert_eq!(read_header(&stream), Err(expected.clone()));
        assert_eq!(decode(&stream, 1 << 20), Err(expected));
    }
}

#[test]
fn encoding_refuses_bad_precisions_and_lengths() {
    let dims = Dims::image(2, 2, 3);
    assert_eq!(
        encode(&[0.0; 12], dims, 1),
        Err(FpzipError::UnsupportedPrecision(1))
    );
    assert_eq!(
        encode(&[0.0; 12], dims, 40),
        Err(FpzipError::UnsupportedPrecision(40))
    );
    assert_eq!(
        encode(&[0.0; 11], dims, 0),
        Err(FpzipError::LengthMismatch {
            expected: 12,
            given: 11
        })
    );
}

/// The f16 value of `half`, computed another way: in f64, from the format's definition.
fn f16_by_definition(half: u16) -> f64 {
    let sign = if half >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((half >> 10) & 0x1f);
    let fraction = f64::from(half & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        0x1f if fraction == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        _ => sign * (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

#[test]
fn every_f16_widens_to_its_exact_value() {
    for half in 0..=u16::MAX {
        let widened = f16_to_f32(half);
        let expected = f16_by_definition(half);
        if expected.is_nan() {
            assert!(widened.is_nan(), "{half:#06x}");
            assert_eq!(widened.to_bits() >> 13 & 0x3ff, u32::from(half & 0x3ff));
        } else {
            assert_eq!(f64::from(widened), expected, "{half:#06x}");
            assert_eq!(widened.is_sign_negative(), half >> 15 == 1, "{half:#06x}");
        }
        // Precision 19 keeps it whole: the 13 bits it drops are zero.
        assert_eq!(widened.to_bits() & 0x1fff, 0, "{half:#06x}");
    }
}

/// A stream whose header claims `dims` at full precision, with no data after it.
fn claiming(dims: Dims) -> Vec<u8> {
    header_claiming(MAGIC, (FORMAT_MAJOR, FORMAT_MINOR), 0, 0, dims)
}

#[test]
fn absurd_sizes_are_refused_before_any_allocation() {
    const LIMIT: usize = 1 << 22;
    let started = std::time::Instant::now();
    let huge = Dims {
        nx: u32::MAX,
        ny: u32::MAX,
        nz: u32::MAX,
        nf: u32::MAX,
    };
    assert_eq!(
        decode(&claiming(huge), LIMIT),
        Err(FpzipError::TooLarge {
            values: huge.count(),
            limit: LIMIT
        })
    );
    // Exactly at the limit is accepted (and then found cut short); one over is refused.
    let at_limit = Dims::image(1024, 1024, 4);
    assert_eq!(
        decode(&claiming(at_limit), LIMIT),
        Err(FpzipError::Truncated)
    );
    assert_eq!(
        decode(&claiming(at_limit), LIMIT - 1),
        Err(FpzipError::TooLarge {
            values: at_limit.count(),
            limit: LIMIT - 1
        })
    );
    // One row longer than the decoder's check interval, with no data: stopped early too.
    let one_row = Dims::image(1, 1, 1 << 22);
    assert_eq!(
        decode(&claiming(one_row), LIMIT),
        Err(FpzipError::Truncated)
    );
    // Sizes of zero make an empty array, whatever the others say.
    let flat = Dims { nz: 0, ..huge };
    assert_eq!(
        decode(&claiming(flat), LIMIT).unwrap().values,
        Vec::<f32>::new()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
