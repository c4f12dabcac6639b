//! drawdrop's integration tests, in one binary (`cargo test --test it`; one module's tests:
//! `cargo test --test it daemon::`). Most drive the real `drawdrop` binary as a subprocess
//! against fake servers on 127.0.0.1:0, in real temporary folders.
//!
//! - [`common`]: the harness (a temporary installation, the daemon as a subprocess, polling
//!   with generous deadlines) and the helpers of the crash, fault, hostile-input and gallery
//!   suites;
//! - [`fakes`]: the fake Draw Things / A1111 HTTP server, ComfyUI and Draw Things gRPC;
//! - [`pictures`]: the one builder of test pictures (PNG, JPEG, WebP, TIFF, broken files);
//! - one module per suite, below; `fake_server`, `fake_comfyui` and `fake_grpc` test the fakes.

// Test and tool code: its items are its own (nothing is exported), and a failed
// unwrap() is the test failing.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fakes;
mod pictures;

mod broken_settings;
mod comfyui;
mod config_errors;
mod crash;
mod daemon;
mod fake_comfyui;
mod fake_grpc;
mod fake_server;
mod features;
mod formats;
mod fpzip;
mod gallery;
mod grpc;
mod hostile_input;
mod once;
mod pool;
mod server_faults;
mod service;
mod soak;
