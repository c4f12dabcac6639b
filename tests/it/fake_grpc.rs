//! The fake Draw Things gRPC server against drawdrop's gRPC client: Echo with and without a
//! shared secret, generations round-tripped with their pixels checked (the fake inverts the
//! picture), 4 MiB slices reassembled, signposts in order, compressed answers, refused sizes,
//! and the fault modes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fakes::grpc::{Answering, FakeGrpc, Fault, Options, SECRET_REFUSED, SLICE};
use drawdrop::backends::drawthings_grpc::answer::{self, Answer, AnswerError};
use drawdrop::backends::drawthings_grpc::client::{Client, Trust};
use drawdrop::backends::drawthings_grpc::config::{self, GenerationConfig, Lora, LoraMode};
use drawdrop::backends::drawthings_grpc::messages::{
    DeviceType, EchoRequest, ImageGenerationRequest, SamplingStep, Signpost, SignpostMark,
};
use drawdrop::backends::drawthings_grpc::tensor::{self, Rgb8};
use tonic::Code;

const LIMIT: u64 = 1 << 30;

fn client(fake: &FakeGrpc) -> Client {
    Client::new(&fake.url(), Duration::from_secs(10), Trust::DrawThings).expect("client")
}

/// A picture whose every byte differs from its neighbours'.
fn picture(width: u32, height: u32) -> Rgb8 {
    let pixels = (0..width * height * 3)
        .map(|at| (at.wrapping_mul(31) % 251) as u8)
        .collect();
    Rgb8 {
        width,
        height,
        pixels,
    }
}

fn request(picture: &Rgb8, config: &GenerationConfig) -> ImageGenerationRequest {
    ImageGenerationRequest {
        image: Some(tensor::encode_rgb8(picture).expect("tensor").into()),
        scale_factor: 1,
        prompt: "a watercolor".into(),
        negative_prompt: "blurry".into(),
        configuration: config::encode(config).expect("configuration"),
        user: "drawdrop".into(),
        device: DeviceType::Laptop as i32,
        ..Default::default()
    }
}

fn sized(width: u32, height: u32) -> GenerationConfig {
    GenerationConfig {
        width,
        height,
        seed: 1234,
        steps: Some(3),
        ..Default::default()
    }
}

async fn generate(
    client: &mut Client,
    request: ImageGenerationRequest,
) -> Result<Answer, AnswerError> {
    let stream = client.generate(request).await?;
    answer::collect(stream, LIMIT, |_| {}).await
}

fn assert_inverted(image: &[u8], sent: &Rgb8) {
    let back = tensor::decode_rgb8(image, u64::MAX).expect("answer tensor");
    assert_eq!((back.width, back.height), (sent.width, sent.height));
    let wrong = back
        .pixels
        .iter()
        .zip(&sent.pixels)
        .filter(|&(&got, &sent)| got != 255 - sent)
        .count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes are not the inverse of the sent ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_says_hello_and_lists_the_models() {
    let fake = FakeGrpc::start(Options {
        models: vec!["sd_xl_base_1.0_f16.ckpt".into()],
        ..Default::default()
    })
    .await;
    let reply = client(&fake)
        .echo(EchoRequest {
            name: "drawdrop".into(),
            shared_secret: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.message, "HELLO drawdrop");
    assert_eq!(reply.files, vec!["sd_xl_base_1.0_f16.ckpt".to_string()]);
    assert!(!reply.shared_secret_missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_secret_tells_echo_and_refuses_generations_without_it() {
    let fake = FakeGrpc::start(Options {
        shared_secret: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    let mut client = client(&fake);
    for wrong in [None, Some("guess".to_string())] {
        let reply = client
            .echo(EchoRequest {
                name: "drawdrop".into(),
                shared_secret: wrong.clone(),
            })
            .await
            .unwrap();
        assert!(reply.shared_secret_missing, "{wrong:?}");
        assert_eq!(reply.message, "");

        let sent = picture(64, 64);
        let mut without = request(&sent, &sized(64, 64));
        without.shared_secret = wrong;
        let status = client.generate(without).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Internal, SECRET_REFUSED)
        );
    }
    let reply = client
        .echo(EchoRequest {
            name: "drawdrop".into(),
            shared_secret: Some("s3cret".into()),
        })
        .await
        .unwrap();
    assert!(!reply.shared_secret_missing);
    assert_eq!(reply.message, "HELLO drawdrop");

    let sent = picture(64, 64);
    let mut with = request(&sent, &sized(64, 64));
    with.shared_secret = Some("s3cret".into());
    let answer = generate(&mut client, with).await.unwrap();
    assert_inverted(&answer.images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64x64_generation_comes_back_inverted_with_its_settings_received() {
    let fake = FakeGrpc::start(Options::default()).await;
    let sent = picture(64, 64);
    let config = GenerationConfig {
        guidance_scale: Some(7.5),
        strength: Some(0.6),
        model: Some("sd_xl_base_1.0_f16.ckpt".into()),
        sampler: Some("Euler a".into()),
        batch_count: Some(1),
        loras: vec![Lora {
            file: "dmd2_sdxl_4_step_lora_f16.ckpt".into(),
            weight: 1.0,
            mode: LoraMode::All,
        }],
        extra: BTreeMap::from([("sharpness".to_string(), serde_json::json!(2))]),
        ..sized(64, 64)
    };
    let mut client = client(&fake);
    let mut seen = Vec::new();
    let stream = client.generate(request(&sent, &config)).await.unwrap();
    let answer = answer::collect(stream, LIMIT, |signpost| seen.push(*signpost))
        .await
        .unwrap();
    assert_eq!(answer.images.len(), 1);
    assert_inverted(&answer.images[0], &sent);
    assert_eq!(answer.download_size, Some(answer.images[0].len() as i64));

    let mark = SignpostMark {};
    let expected = vec![
        Signpost::TextEncoded(mark),
        Signpost::ImageEncoded(mark),
        Signpost::Sampling(SamplingStep { step: 0 }),
        Signpost::Sampling(SamplingStep { step: 1 }),
        Signpost::Sampling(SamplingStep { step: 2 }),
        Signpost::ImageDecoded(mark),
    ];
    assert_eq!(seen, expected);
    assert_eq!(answer.signposts, expected);

    let received = fake.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert!(got.violations.is_empty(), "{:?}", got.violations);
    assert_eq!(
        got.pixels, sent.pixels,
        "the fake reads the pixels drawdrop sent"
    );
    let seen = &got.config;
    assert_eq!((seen.start_width, seen.start_height), (Some(1), Some(1)));
    assert_eq!((seen.seed, seen.steps), (Some(1234), Some(3)));
    assert_eq!((seen.guidance_scale, seen.strength), (Some(7.5), Some(0.6)));
    assert_eq!(seen.model.as_deref(), Some("sd_xl_base_1.0_f16.ckpt"));
    assert_eq!(seen.sampler, Some(1), "Euler a is the schema's EulerA, 1");
    assert_eq!(seen.batch_count, Some(1));
    assert_eq!(seen.batch_size, None, "left out: the server's default");
    assert_eq!(
        seen.loras,
        vec![("dmd2_sdxl_4_step_lora_f16.ckpt".to_string(), 1.0, 0)]
    );
    assert_eq!(seen.sharpness, Some(2.0));
    assert_eq!(
        (
            got.request.prompt.as_str(),
            got.request.negative_prompt.as_str()
        ),
        ("a watercolor", "blurry")
    );
    assert_eq!((got.request.scale_factor, got.request.device), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1024x1024_answer_over_4_mib_comes_whole_in_one_message() {
    let fake = FakeGrpc::start(Options::default()).await;
    let sent = picture(1024, 1024);
    let answer = generate(&mut client(&fake), request(&sent, &sized(1024, 1024)))
        .await
        .unwrap();
    assert_eq!(answer.images.len(), 1);
    assert!(
        answer.images[0].len() > SLICE,
        "the tensor is {} bytes",
        answer.images[0].len()
    );
    assert_eq!(fake.image_messages(), 1);
    assert_inverted(&answer.images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_answers_come_in_4_mib_slices_and_are_put_back_together() {
    let fake = FakeGrpc::start(Options::default()).await;
    let sent = picture(1024, 1024);
    let mut chunked = request(
        &sent,
        &GenerationConfig {
            batch_size: Some(2),
            ..sized(1024, 1024)
        },
    );
    chunked.chunked = true;
    let answer = generate(&mut client(&fake), chunked).await.unwrap();
    // 1024 * 1024 * 3 f16 values + 68 bytes = 6 MiB + 68: a 4 MiB slice and the rest, twice.
    assert_eq!(fake.image_messages(), 4);
    assert_eq!(answer.images.len(), 2);
    for image in &answer.images {
        assert_eq!(image.len(), 1024 * 1024 * 6 + 68);
        assert_inverted(image, &sent);
    }
    assert_eq!(answer.download_size, Some(2 * (1024 * 1024 * 6 + 68)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_under_4_mib_in_all_is_not_sliced() {
    let fake = FakeGrpc::start(Options::default()).await;
    let sent = picture(512, 512);
    let mut chunked = request(&sent, &sized(512, 512));
    chunked.chunked = true;
    let answer = generate(&mut client(&fake), chunked).await.unwrap();
    assert_eq!(fake.image_messages(), 1);
    assert_inverted(&answer.images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_and_fpzip_answers_decode_to_the_same_pixels() {
    let fake = FakeGrpc::start(Options::default()).await;
    let sent = picture(128, 64);
    let mut client = client(&fake);

    fake.set_answering(Answering::Deflate);
    let answer = generate(&mut client, request(&sent, &sized(128, 64)))
        .await
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(answer.images[0][..4].try_into().unwrap()),
        0x217
    );
    assert_inverted(&answer.images[0], &sent);

    // fpzip as the server makes it: f16 widened, precision 19, nx = C, ny = W, nz = H.
    fake.set_answering(Answering::Fpzip);
    let answer = generate(&mut client, request(&sent, &sized(128, 64)))
        .await
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(answer.images[0][..4].try_into().unwrap()),
        0xf7217
    );
    assert_inverted(&answer.images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_the_real_server_cannot_take_are_refused_and_recorded() {
    let fake = FakeGrpc::start(Options::default()).await;
    let mut client = client(&fake);

    // A tensor 96 wide under a configuration of 64: off the grid and unlike the configuration.
    let status = client
        .generate(request(&picture(96, 64), &sized(64, 64)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("not in multiples of 64"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("is not the image's 96x64"),
        "{}",
        status.message()
    );

    let mut zero = request(&picture(64, 64), &sized(64, 64));
    zero.scale_factor = 0;
    let status = client.generate(zero).await.unwrap_err();
    assert!(
        status.message().contains("scaleFactor is 0"),
        "{}",
        status.message()
    );

    let received = fake.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|got| !got.violations.is_empty()));
    assert_eq!(fake.image_messages(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_error_after_the_progress_is_the_servers_internal_status() {
    let fake = FakeGrpc::start(Options::default()).await;
    fake.push_fault(Fault::Internal("model not found".into()));
    let mut client = client(&fake);
    let stream = client
        .generate(request(&picture(64, 64), &sized(64, 64)))
        .await
        .unwrap();
    let mut seen = 0;
    let result = answer::collect(stream, LIMIT, |_| seen += 1).await;
    match result {
        Err(AnswerError::Status(status)) => assert_eq!(
            (status.code(), status.message()),
            (Code::Internal, "model not found")
        ),
        other => panic!("not the server's status: {other:?}"),
    }
    assert_eq!(seen, 6, "the signposts came before the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_before_the_images_is_an_error_not_an_empty_answer() {
    let fake = FakeGrpc::start(Options::default()).await;
    fake.push_fault(Fault::CutBeforeImages);
    let mut client = client(&fake);
    let result = generate(&mut client, request(&picture(64, 64), &sized(64, 64))).await;
    // Cut after the answer began, or (on a loaded machine) before its headers got out.
    let broken = match &result {
        Err(AnswerError::ConnectionLost(_)) => true,
        Err(AnswerError::Status(status)) => status.code() == Code::Unavailable,
        _ => false,
    };
    assert!(broken, "{result:?}");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.image_messages(), 0);
    // A new connection serves the next call; the first may still meet the cut one, which is
    // UNAVAILABLE (a wait and a retry), never something else.
    let sent = picture(64, 64);
    let answer = match generate(&mut client, request(&sent, &sized(64, 64))).await {
        Err(AnswerError::Status(status)) if status.code() == Code::Unavailable => {
            generate(&mut client, request(&sent, &sized(64, 64))).await
        }
        other => other,
    };
    assert_inverted(&answer.unwrap().images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_sends_nothing() {
    let fake = FakeGrpc::start(Options::default()).await;
    fake.push_fault(Fault::Hang);
    let mut client = client(&fake);
    let call = generate(&mut client, request(&picture(64, 64), &sized(64, 64)));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), call)
            .await
            .is_err()
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_unavailable_then_answers_once_back_up() {
    let fake = FakeGrpc::start(Options::default()).await;
    let addr = fake.addr();
    let mut client = client(&fake);
    assert!(client.echo(EchoRequest::default()).await.is_ok());
    fake.stop().await;
    drop(fake);
    // Whether the call meets the broken connection or a refused new one, it is UNAVAILABLE.
    for _ in 0..2 {
        let status = client.echo(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    let _back = FakeGrpc::start_on(Options::default(), addr)
        .await
        .expect("the port again");
    let sent = picture(64, 64);
    let answer = generate(&mut client, request(&sent, &sized(64, 64)))
        .await
        .unwrap();
    assert_inverted(&answer.images[0], &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_after_the_first_slice_breaks_the_answer() {
    let fake = FakeGrpc::start(Options::default()).await;
    fake.push_fault(Fault::CutAfterFirstImage);
    let mut client = client(&fake);
    // 1024x768 raw f16 is 4.5 MiB: two slices, cut after the first.
    let mut chunked = request(&picture(1024, 768), &sized(1024, 768));
    chunked.chunked = true;
    let result = generate(&mut client, chunked).await;
    assert!(
        matches!(result, Err(AnswerError::ConnectionLost(_))),
        "{result:?}"
    );
    assert_eq!(fake.image_messages(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instant_fake_checks_and_answers_alike_but_keeps_no_pixels() {
    let fake = FakeGrpc::start(Options::default()).await;
    fake.set_instant(true);
    let mut client = client(&fake);
    let sent = picture(128, 64);
    let answer = generate(&mut client, request(&sent, &sized(128, 64)))
        .await
        .unwrap();
    assert_inverted(&answer.images[0], &sent);
    fake.set_answering(Answering::Fpzip);
    for _ in 0..2 {
        // The second fpzip answer is the first one again, for the same picture.
        let answer = generate(&mut client, request(&sent, &sized(128, 64)))
            .await
            .unwrap();
        assert_inverted(&answer.images[0], &sent);
    }
    let refused = generate(&mut client, request(&sent, &sized(64, 64))).await;
    assert!(
        matches!(refused, Err(AnswerError::Status(_))),
        "{refused:?}"
    );
    let received = fake.received();
    assert_eq!(received.len(), 4);
    assert!(received[..3].iter().all(|got| got.violations.is_empty()));
    assert!(
        !received[3].violations.is_empty(),
        "a wrong size is still refused"
    );
    for got in &received {
        assert_eq!((got.width, got.height), (128, 64));
        assert!(
            got.pixels.is_empty() && got.request.image.is_none(),
            "no pixels kept"
        );
        assert_eq!(got.config.seed, Some(1234));
    }
}
