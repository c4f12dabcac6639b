//! drawdrop's fpzip decode speed on the picture benches/fpzip_reference.py times the reference
//! library on: `cargo run --release --example fpzip-speed -- [--size 1024] [--seconds 3]`.
//!
//! It prints the stream's size and CRC-32 (the same as the script's when our encoder writes the
//! reference's stream) and the decode speed in MB/s of decoded f32 (10^6 bytes per second), of
//! the best run, the mean, and per second of CPU time the decoding thread got (Linux).

// Test and tool code: its items are its own (nothing is exported), and a failed
// unwrap() is the test failing.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::time::Instant;

use drawdrop::backends::drawthings_grpc::fpzip::{self, Dims};

/// The script's picture: 1 x size x size x 3 values (b - 128) / 128 from integer shapes and
/// a hashed noise, HWC order.
fn picture(size: u32) -> Vec<f32> {
    let mut values = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            for c in 0..3u32 {
                let tri1 = ((x * (c + 1) + 2 * y) % 512) as i64 - 256;
                let tri2 = ((x + (3 - c) * y) % 384) as i64 - 192;
                let mut h =
                    x.wrapping_mul(73856093) ^ y.wrapping_mul(19349663) ^ c.wrapping_mul(83492791);
                h ^= h >> 13;
                h = h.wrapping_mul(0x5bd1_e995);
                h ^= h >> 15;
                let noise = (h % 9) as i64 - 4;
                let b = (tri1.abs() / 2 + tri2.abs() / 2 + 16 + noise).clamp(0, 255);
                values.push((b as f32 - 128.0) / 128.0);
            }
        }
    }
    values
}

/// Seconds this (single) thread has run on a CPU so far, from /proc (Linux only).
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds as f64 / 1e9)
}

fn argument(args: &[String], name: &str, default: f64) -> Result<f64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (size, seconds) = match (
        argument(&args, "--size", 1024.0),
        argument(&args, "--seconds", 3.0),
    ) {
        (Ok(size), Ok(seconds)) => (size as u32, seconds),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("fpzip-speed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let values = picture(size);
    let dims = Dims::image(size, size, 3);
    let started = Instant::now();
    let stream = match fpzip::encode(&values, dims, fpzip::F16_PRECISION) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("fpzip-speed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let encode_time = started.elapsed();
    println!(
        "stream: {} bytes, crc32 {:08x} (encoded in {:.1} ms)",
        stream.len(),
        crc32fast::hash(&stream),
        encode_time.as_secs_f64() * 1000.0
    );
    let mut times = Vec::new();
    let cpu_started = cpu_time();
    let started = Instant::now();
    while times.is_empty() || started.elapsed().as_secs_f64() < seconds {
        let run = Instant::now();
        let result = fpzip::decode(&stream, values.len());
        times.push(run.elapsed().as_secs_f64());
        match result {
            Ok(decoded) if decoded.values == values => {}
            Ok(_) => {
                eprintln!("fpzip-speed: the decoded values differ from the picture");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("fpzip-speed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cpu = cpu_started.zip(cpu_time()).map(|(from, to)| to - from);
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let megabytes = (values.len() * 4) as f64 / 1e6;
    let on_cpu = match cpu {
        Some(cpu) => format!(
            ", {:.1} MB/s of CPU time",
            megabytes * times.len() as f64 / cpu
        ),
        None => String::new(),
    };
    println!(
        "drawdrop fpzip decode: {:.1} MB/s best, {:.1} MB/s mean{on_cpu} ({:.1} ms best per \
         {size}x{size}x3 f32 image, {} runs)",
        megabytes / best,
        megabytes / mean,
        best * 1000.0,
        times.len()
    );
    ExitCode::SUCCESS
}
