//! drawdrop's performance figures: `cargo bench --bench perf [-- SCENARIO ...]`.
//!
//! Each scenario drives the real (release) binary against an instant fake Draw Things on
//! loopback and prints one row per figure: the measurement, its target, and whether it is met.
//! Ratios are taken within one run on the same machine (the floor and the Python baseline are
//! measured beside drawdrop), so a noisy machine moves both sides together.
//!
//! Scenarios: overhead, comfyui, python, latency, idle, burst, scan, large, photo, gallery, grpc
//! (default: all). `comfyui` runs against an instant fake ComfyUI beside the fake Draw Things.
//! Sizes can be scaled down for a quick look: DRAWDROP_BENCH_QUICK=1.

// Test and tool code: its items are its own (nothing is exported), and a failed
// unwrap() is the test failing.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

// The test suite's fake server and pictures; the bench uses a part of them.
#[allow(dead_code)]
#[path = "../../tests/it/fakes/outside.rs"]
mod fakes;
// The fake gRPC server is the tests' own; the bench uses a part of it.
#[allow(dead_code)]
#[path = "../../tests/it/fakes/grpc.rs"]
mod fake_grpc;
mod gallery;
mod grpc;
mod harness;
#[allow(dead_code)]
#[path = "../../tests/it/pictures.rs"]
mod pictures;
mod scenarios;

use harness::Row;

const ALL: [&str; 11] = [
    "overhead", "comfyui", "python", "latency", "idle", "burst", "scan", "large", "photo",
    "gallery", "grpc",
];

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let chosen: Vec<&str> = if wanted.is_empty() {
        ALL.to_vec()
    } else {
        ALL.iter()
            .copied()
            .filter(|s| wanted.iter().any(|w| w == s))
            .collect()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Row> = Vec::new();
    for scenario in chosen {
        eprintln!("== {scenario}");
        let found = runtime.block_on(async {
            match scenario {
                "overhead" => scenarios::overhead().await,
                "comfyui" => scenarios::comfyui().await,
                "python" => scenarios::python().await,
                "latency" => scenarios::latency().await,
                "idle" => scenarios::idle().await,
                "burst" => scenarios::burst().await,
                "scan" => scenarios::scan().await,
                "large" => scenarios::large().await,
                "photo" => scenarios::photo().await,
                "gallery" => gallery::gallery().await,
                "grpc" => grpc::grpc().await,
                _ => Vec::new(),
            }
        });
        for row in &found {
            eprintln!("   {}", row.line());
        }
        rows.extend(found);
    }
    println!("\n{}", Row::header());
    for row in &rows {
        println!("{}", row.line());
    }
}
