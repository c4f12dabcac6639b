//! The gRPC path beside the HTTP path: per-job time of `run --once` for one 1024 x 1024
//! picture against an instant fake Draw Things over HTTP and the fake gRPC server (raw f16
//! answers, then fpzip ones as the real server sends by default), less `run --once` with
//! nothing to do. Both include everything drawdrop does for a job (the gRPC one: the tensor
//! encoded, sent, the answer decoded, the PNG written).

use std::sync::Arc;

use crate::fake_grpc::{Answering, FakeGrpc, Options};
use crate::harness::{Row, Server, Setup, age, median, noise_png, quick};
use drawdrop::backends::drawthings_grpc::fpzip::{self, Dims};

const SIDE: u32 = 1024;

pub async fn grpc() -> Vec<Row> {
    let runs = if quick() { 3 } else { 9 };
    let picture = noise_png(SIDE, SIDE, 4);
    let http = Server::start().await;
    let http_ms = per_job(&Setup::new(&http.fake.url(), 1000), &picture, runs);

    let fake = FakeGrpc::start(Options::default()).await;
    let grpc_setup = || {
        let setup = Setup::new(&fake.url(), 1000);
        let mut config = std::fs::read_to_string(&setup.config).unwrap();
        config.push_str("api = \"drawthings-grpc\"\n");
        std::fs::write(&setup.config, config).unwrap();
        setup
    };
    let raw_ms = per_job(&grpc_setup(), &picture, runs);
    fake.set_answering(Answering::With(Arc::new(|raw: &[u8]| {
        let halves: Vec<u16> = raw[68..]
            .chunks_exact(2)
            .map(|half| u16::from_le_bytes([half[0], half[1]]))
            .collect();
        let stream = fpzip::encode_f16(&halves, Dims::image(SIDE, SIDE, 3)).unwrap();
        let mut out = raw[..68].to_vec();
        out[..4].copy_from_slice(&0xf7217u32.to_le_bytes());
        out.extend(stream);
        out
    })));
    let fpzip_ms = per_job(&grpc_setup(), &picture, runs);
    vec![
        Row::new(
            "HTTP path per 1024x1024 job (drawdrop's whole work)",
            format!("{http_ms:.1} ms"),
            "",
            None,
        ),
        Row::new(
            "gRPC path per 1024x1024 job, raw f16 answer",
            format!("{raw_ms:.1} ms = {:.2} x HTTP", raw_ms / http_ms),
            "<= HTTP",
            Some(raw_ms <= http_ms),
        ),
        Row::new(
            "gRPC path per 1024x1024 job, fpzip answer (the fake's encoding included)",
            format!("{fpzip_ms:.1} ms = {:.2} x HTTP", fpzip_ms / http_ms),
            "",
            None,
        ),
    ]
}

/// Median `run --once` time with one settled picture less that with none, in ms.
fn per_job(setup: &Setup, picture: &[u8], runs: usize) -> f64 {
    let mut empty = Vec::new();
    let mut one = Vec::new();
    for at in 0..runs + 1 {
        empty.push(setup.run_once().as_secs_f64() * 1000.0);
        let path = setup.inbox.join(format!("p{at}.png"));
        std::fs::write(&path, picture).unwrap();
        age(&path);
        one.push(setup.run_once().as_secs_f64() * 1000.0);
    }
    assert_eq!(setup.results(), runs + 1, "every picture went through");
    median(&mut one[1..]) - median(&mut empty[1..])
}
