//! fpzip against the reference library: the vectors in tests/fixtures/fpzip were made by LLNL
//! fpzip (benches/fpzip_vectors.py); our decoder must give back their inputs bit for bit and
//! our encoder must write their streams byte for byte. Then round trips of random arrays, and
//! hostile streams, which must give errors, never panics, and quickly (headers no encoder
//! writes, absurd sizes among them, are tested beside the decoder, in src/backends/drawthings_grpc/fpzip/tests.rs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drawdrop::backends::drawthings_grpc::fpzip::{self, Dims, FpzipError};

const LIMIT: usize = 1 << 22;

struct Case {
    name: String,
    dims: Dims,
    precision: u8,
    input: Vec<f32>,
    stream: Vec<u8>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fpzip")
}

fn cases() -> Vec<Case> {
    let list = std::fs::read_to_string(fixtures().join("cases.txt")).unwrap();
    let cases: Vec<Case> = list
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields[i].parse::<u32>().unwrap();
            let name = fields[0].to_owned();
            let raw = std::fs::read(fixtures().join(format!("{name}.f32"))).unwrap();
            Case {
                dims: Dims {
                    nx: number(1),
                    ny: number(2),
                    nz: number(3),
                    nf: number(4),
                },
                precision: number(5) as u8,
                input: raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                stream: std::fs::read(fixtures().join(format!("{name}.fpz"))).unwrap(),
                name,
            }
        })
        .collect();
    assert!(cases.len() >= 15, "the fixture list is incomplete");
    cases
}

/// The value with the bits below `precision` cleared, as fpzip gives it back.
fn truncated(value: f32, precision: u8) -> u32 {
    let shift = if precision == 0 {
        0
    } else {
        32 - u32::from(precision)
    };
    value.to_bits() >> shift << shift
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn reference_streams_decode_to_their_inputs_bit_for_bit() {
    for case in cases() {
        let decoded =
            fpzip::decode(&case.stream, LIMIT).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(decoded.header.dims, case.dims, "{}", case.name);
        assert_eq!(decoded.header.precision, case.precision, "{}", case.name);
        assert_eq!(decoded.consumed, case.stream.len(), "{}", case.name);
        let expected: Vec<u32> = case
            .input
            .iter()
            .map(|&v| truncated(v, case.precision))
            .collect();
        assert_eq!(bits(&decoded.values), expected, "{}", case.name);
        if case.precision == 0 || case.precision == 32 || case.name.contains("p19") {
            assert_eq!(
                bits(&decoded.values),
                bits(&case.input),
                "{} is lossless",
                case.name
            );
        }
    }
}

#[test]
fn our_encoder_writes_the_reference_streams_byte_for_byte() {
    for case in cases() {
        let ours = fpzip::encode(&case.input, case.dims, case.precision).unwrap();
        assert_eq!(ours, case.stream, "{}", case.name);
    }
}

/// The f16 whose widening is `value` (the p19 fixtures hold only such values).
fn exact_f16(value: f32) -> u16 {
    let half = (0..=u16::MAX)
        .find(|&h| fpzip::f16_to_f32(h).to_bits() == value.to_bits())
        .unwrap_or_else(|| panic!("{value} is no f16"));
    assert_eq!(fpzip::f16_to_f32(half).to_bits(), value.to_bits());
    half
}

#[test]
fn f16_tensors_encode_as_draw_things_sends_them() {
    let mut seen = 0;
    for case in cases().into_iter().filter(|c| c.precision == 19) {
        let mut table = std::collections::HashMap::new();
        let halves: Vec<u16> = case
            .input
            .iter()
            .map(|&v| *table.entry(v.to_bits()).or_insert_with(|| exact_f16(v)))
            .collect();
        assert_eq!(
            fpzip::encode_f16(&halves, case.dims).unwrap(),
            case.stream,
            "{}",
            case.name
        );
        seen += 1;
    }
    assert!(seen >= 4);
}

#[test]
fn the_reference_order_is_draw_things_nhwc_order() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "odd_5x7x3_p19")
        .unwrap();
    // [1, H = 5, W = 7, C = 3]
    assert_eq!(case.dims, Dims::image(5, 7, 3));
    let header = fpzip::read_header(&case.stream).unwrap();
    assert_eq!((header.dims, header.bits()), (Dims::image(5, 7, 3), 19));
}

#[test]
fn a_stream_of_doubles_is_refused() {
    let stream = std::fs::read(fixtures().join("doubles_2x2x3.fpz")).unwrap();
    assert_eq!(
        fpzip::read_header(&stream),
        Err(FpzipError::UnsupportedType)
    );
    assert_eq!(
        fpzip::decode(&stream, LIMIT),
        Err(FpzipError::UnsupportedType)
    );
}

#[test]
fn bytes_after_the_stream_are_left_alone() {
    let case = &cases()[3];
    let mut padded = case.stream.clone();
    padded.extend_from_slice(b"not fpzip");
    let decoded = fpzip::decode(&padded, LIMIT).unwrap();
    assert_eq!(decoded.consumed, case.stream.len());
    assert_eq!(bits(&decoded.values), bits(&case.input));
}

/// Random arrays of several kinds: smooth, noisy, and any bit pattern at all (NaN and
/// infinities included), which lossless fpzip must keep exactly too.
fn random_values(rng: &mut fastrand::Rng, count: usize) -> Vec<f32> {
    match rng.u8(0..3) {
        0 => {
            let (a, b) = (rng.f32() * 0.1, rng.f32() * 0.05);
            (0..count)
                .map(|i| (i as f32 * a).sin() + (i as f32 * b).cos() + rng.f32() * 0.01)
                .collect()
        }
        1 => (0..count).map(|_| rng.f32() * 2.0 - 1.0).collect(),
        _ => (0..count).map(|_| f32::from_bits(rng.u32(..))).collect(),
    }
}

#[test]
fn random_arrays_round_trip_at_every_precision() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_f21b);
    for round in 0..200 {
        let dims = Dims {
            nx: rng.u32(1..9),
            ny: rng.u32(1..20),
            nz: rng.u32(1..12),
            nf: rng.u32(1..3),
        };
        let precision = match round % 4 {
            0 => 0,
            1 => 32,
            2 => 19,
            _ => rng.u8(2..=32),
        };
        let values = random_values(&mut rng, dims.count() as usize);
        let stream = fpzip::encode(&values, dims, precision).unwrap();
        let decoded = fpzip::decode(&stream, LIMIT).unwrap();
        let expected: Vec<u32> = values.iter().map(|&v| truncated(v, precision)).collect();
        assert_eq!(
            bits(&decoded.values),
            expected,
            "round {round}: {dims:?} at {precision}"
        );
        assert_eq!(decoded.consumed, stream.len());
    }
}

#[test]
fn empty_arrays_round_trip() {
    for dims in [
        Dims::image(0, 4, 3),
        Dims::image(4, 0, 3),
        Dims::image(4, 4, 0),
    ] {
        let stream = fpzip::encode(&[], dims, 19).unwrap();
        let decoded = fpzip::decode(&stream, LIMIT).unwrap();
        assert_eq!((decoded.header.dims, decoded.values.len()), (dims, 0));
    }
}

#[test]
fn every_cut_of_a_stream_is_an_error() {
    let started = Instant::now();
    for case in cases().into_iter().filter(|c| c.stream.len() < 1000) {
        for cut in 0..case.stream.len() {
            let result = fpzip::decode(&case.stream[..cut], LIMIT);
            assert!(
                matches!(result, Err(FpzipError::Truncated | FpzipError::BadMagic)),
                "{} cut at {cut}: {result:?}",
                case.name
            );
            if cut >= 24 {
                assert_eq!(result, Err(FpzipError::Truncated), "{} at {cut}", case.name);
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn random_and_damaged_bytes_give_errors_or_garbage_never_a_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let cases = cases();
    let started = Instant::now();
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        assert!(fpzip::decode(&junk, LIMIT).is_err());
    }
    let mut refused = 0;
    for round in 0..3000 {
        let case = &cases[round % cases.len()];
        let mut damaged = case.stream.clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..damaged.len());
            damaged[at] = rng.u8(..);
        }
        if rng.bool() {
            damaged.truncate(rng.usize(..=damaged.len()));
        }
        // Damage to the body can decode to other values (fpzip has no checksum); what matters
        // is an answer: an error, or as many values as the header says, from bytes there are.
        match fpzip::decode(&damaged, LIMIT) {
            Ok(decoded) => {
                assert_eq!(decoded.values.len() as u128, decoded.header.dims.count());
                assert!(decoded.consumed <= damaged.len());
            }
            Err(_) => refused += 1,
        }
    }
    // Most damage shows: cut streams, and codes out of the coder's interval.
    assert!(
        refused > 1500,
        "only {refused} of 3000 damaged streams refused"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
