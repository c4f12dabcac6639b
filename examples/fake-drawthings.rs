//! A stand-in for Draw Things (or AUTOMATIC1111) so that drawdrop can be tried without the
//! app or a GPU: `cargo run --example fake-drawthings -- --port 7860 [--a1111] [--delay-ms N]
//! [--models a,b]`. It serves the test fake (tests/it/fakes/server), prints where it
//! listens and one line per request to stderr, and exits on Ctrl-C.

// Test and tool code: its items are its own (nothing is exported), and a failed
// unwrap() is the test failing.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

// The integration tests' fake server and pictures; this example uses a part of them.
#[allow(dead_code)]
#[path = "../tests/it/fakes/outside.rs"]
mod fakes;
#[allow(dead_code)]
#[path = "../tests/it/pictures.rs"]
mod pictures;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fakes::server::{FakeServer, Flavor, Recorded};
use serde_json::Value;

/// Serve a fake Draw Things (or A1111) img2img API on localhost.
#[derive(Parser, Debug)]
#[command(name = "fake-drawthings")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// Play AUTOMATIC1111 instead of Draw Things.
    #[arg(long)]
    a1111: bool,
    /// With --a1111: require HTTP basic auth, as `--api-auth user:pass`.
    #[arg(long, value_name = "USER:PASS", requires = "a1111")]
    api_auth: Option<String>,
    /// Simulated generation time per img2img request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Answer every img2img at once with its own init image, checking nothing (for benchmarks).
    #[arg(long)]
    instant: bool,
    /// Draw Things: the only model files it knows (comma separated); default: any.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let flavor = if args.a1111 {
        let auth = args.api_auth.as_deref().and_then(|pair| {
            let (user, password) = pair.split_once(':')?;
            Some((user.to_string(), password.to_string()))
        });
        Flavor::A1111 { auth }
    } else {
        Flavor::DrawThings
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let fake = match FakeServer::start_on(flavor.clone(), addr).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-drawthings: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.set_delay(Duration::from_millis(args.delay_ms));
    fake.set_instant(args.instant);
    let models: Vec<&str> = args.models.iter().map(String::as_str).collect();
    fake.set_models(&models);
    fake.set_observer(|rec, status| eprintln!("{}", log_line(rec, status)));
    let name = if args.a1111 {
        "AUTOMATIC1111"
    } else {
        "Draw Things"
    };
    eprintln!("fake {name} listening on {} (Ctrl-C to stop)", fake.url());
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("fake-drawthings: cannot wait for Ctrl-C");
    }
    fake.stop().await;
    eprintln!("stopped after {} requests", fake.requests().len());
    ExitCode::SUCCESS
}

/// `POST /sdapi/v1/img2img {prompt, width=512, ..., init_images=1 (512x512)} -> 200`
fn log_line(rec: &Recorded, status: Option<u16>) -> String {
    let answer = status.map_or("no answer".to_string(), |s| s.to_string());
    let summary = match rec.json() {
        Value::Object(map) => {
            let keys: Vec<String> = map.iter().map(|(k, v)| summarize(rec, k, v)).collect();
            format!(" {{{}}}", keys.join(", "))
        }
        _ if rec.body.is_empty() => String::new(),
        _ => format!(" ({} bytes, not JSON)", rec.body.len()),
    };
    format!("{} {}{summary} -> {answer}", rec.method, rec.path)
}

/// One key of a request: small values shown, images counted and measured, text shortened.
fn summarize(rec: &Recorded, key: &str, value: &Value) -> String {
    match value {
        Value::Array(images) if key == "init_images" => {
            let size = rec
                .init_image()
                .filter(|png| png.len() >= 24 && png.starts_with(b"\x89PNG"))
                .map(|png| {
                    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
                    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
                    format!(" ({width}x{height})")
                })
                .unwrap_or_default();
            format!("init_images={}{size}", images.len())
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => format!("{key}={value}"),
        Value::String(text) if text.chars().count() <= 24 => format!("{key}={value}"),
        _ => key.to_string(),
    }
}
