//! Draw Things over gRPC (`api = "drawthings-grpc"`), end to end through the real binary
//! against the fake gRPC server (tests/it/fakes/grpc.rs): results are the inverted
//! picture (pixels checked) at the configured size with the profile's settings as the server
//! read them, pictures needing work sent as the same pixels as over HTTP, `batch_count` looped with the seed moved on, 4 MiB slices reassembled, deflate
//! and fpzip answers, a missing or wrong shared secret told in words to act on, a server
//! down then up, streams cut before and in the middle of the answer, a refusal failing the
//! file at once, `kill -9` mid-job giving one result, a pool of a gRPC and an HTTP server, TLS
//! with a certificate authority made here (`ca_file`), and the sampling signposts as the job's
//! progress (the backend driven directly).

use std::collections::BTreeSet;

use crate::common::{PATIENCE, Setup, runtime, set, stderr_of, wait_until};
use crate::fakes::grpc::{Answering, FakeGrpc, Fault, Options, SLICE};
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::{png, text_chunk};

const API: &str = "drawthings-grpc";

fn rgb(png: &[u8]) -> image::RgbImage {
    image::load_from_memory(png).unwrap().to_rgb8()
}

/// Whether `result` is exactly `input` inverted, at the same size.
fn assert_inverted(input: &[u8], result: &[u8]) {
    let (input, result) = (rgb(input), rgb(result));
    assert_eq!(input.dimensions(), result.dimensions());
    let wrong = input
        .as_raw()
        .iter()
        .zip(result.as_raw())
        .filter(|&(&sent, &got)| got != 255 - sent)
        .count();
    assert_eq!(wrong, 0, "{wrong} bytes are not the inverted picture's");
}

fn start(options: Options) -> (tokio::runtime::Runtime, FakeGrpc) {
    let runtime = runtime();
    let fake = runtime.block_on(FakeGrpc::start(options));
    (runtime, fake)
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn results_are_the_inverted_picture_with_the_profile_settings_as_the_server_read_them() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    setup.profile(
        "paint",
        "prompt = \"a watercolor of {name}\"\nnegative_prompt = \"blurry\"\nsteps = 3\n\
         strength = 0.6\nguidance_scale = 6.5\nseed = 1234\nsampler = \"Euler a\"\n\
         model = \"sd_xl_base_1.0_f16.ckpt\"\n\
         [[loras]]\nfile = \"dmd2_lora_f16.ckpt\"\nweight = 0.5\n\
         [extra]\nsharpness = 2\n",
    );
    let picture = png(192, 128, 3);
    setup.drop_file("paint/cat.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        setup.outbox_files(),
        set(&["paint/cat.png", "originals/paint/cat.png"])
    );
    let result = setup.read_out("paint/cat.png");
    assert_inverted(&picture, &result);

    let received = fake.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert!(got.violations.is_empty(), "{:?}", got.violations);
    assert_eq!((got.width, got.height), (192, 128));
    assert_eq!(got.pixels, rgb(&picture).into_raw(), "the picture sent");
    assert_eq!(got.request.scale_factor, 1);
    assert!(got.request.chunked);
    assert_eq!(got.request.prompt, "a watercolor of cat");
    assert_eq!(got.request.negative_prompt, "blurry");
    assert_eq!(got.request.shared_secret, None);
    let config = &got.config;
    assert_eq!(
        (config.start_width, config.start_height),
        (Some(3), Some(2))
    );
    assert_eq!(config.seed, Some(1234));
    assert_eq!(config.steps, Some(3));
    assert_eq!(config.strength, Some(0.6));
    assert_eq!(config.guidance_scale, Some(6.5));
    assert_eq!(
        config.sampler,
        Some(1),
        "Euler a is EulerA, the schema's second"
    );
    assert_eq!(config.model.as_deref(), Some("sd_xl_base_1.0_f16.ckpt"));
    assert_eq!(
        config.loras,
        vec![("dmd2_lora_f16.ckpt".to_owned(), 0.5, 0)]
    );
    assert_eq!(config.sharpness, Some(2.0));
    assert_eq!(config.batch_count, None, "the server ignores batch_count");

    let parameters = text_chunk(&result, "parameters").unwrap();
    assert!(
        parameters
            .starts_with("a watercolor of cat <lora:dmd2_lora_f16:0.5>\nNegative prompt: blurry\n"),
        "{parameters}"
    );
    assert!(parameters.contains("Seed: 1234"), "{parameters}");
    assert!(parameters.contains("Size: 192x128"), "{parameters}");
    let job = &setup.job_lines()[0];
    assert_eq!(job["outcome"], "done", "{job}");
    assert_eq!(job["settings"]["seed"], 1234);
    assert_eq!(job["settings"]["width"], 192);
    assert_eq!(job["settings"]["sampler"], "Euler a");
}

/// Pictures that need work before they go (a turned JPEG, a 16-bit PNG of another size, an
/// RGBA PNG already at its size) reach the gRPC server as the very pixels the HTTP path sends
/// as a PNG: the gRPC kind is handed pixels, not a PNG it would read back.
#[test]
fn pictures_needing_work_go_as_the_pixels_the_http_path_sends_as_a_png() {
    use crate::pictures::{ColorKind, jpeg, orientation_exif, png_with, quadrants};
    let (runtime, fake) = start(Options::default());
    let http = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let cases = [
        (
            "turned.jpg",
            jpeg(&quadrants(300, 200), Some(&orientation_exif(6))),
        ),
        ("deep.png", png_with(ColorKind::Rgb16, 150, 100, 4)),
        ("alpha.png", png_with(ColorKind::Rgba8, 128, 128, 5)),
    ];
    for (at, (name, bytes)) in cases.iter().enumerate() {
        let over_grpc = Setup::new(&fake.url(), API);
        over_grpc.drop_file(name, bytes);
        let output = over_grpc.run_once();
        assert!(output.status.success(), "{name}: {}", stderr_of(&output));
        let over_http = Setup::new(&http.url(), "drawthings");
        over_http.drop_file(name, bytes);
        let output = over_http.run_once();
        assert!(output.status.success(), "{name}: {}", stderr_of(&output));

        let received = &fake.received()[at];
        assert!(
            received.violations.is_empty(),
            "{name}: {:?}",
            received.violations
        );
        let png = http.img2img_requests()[at].init_image().unwrap();
        let sent_as_png = rgb(&png);
        assert_eq!(
            (received.width, received.height),
            sent_as_png.dimensions(),
            "{name}"
        );
        assert!(
            received.pixels == sent_as_png.into_raw(),
            "{name}: the pixels sent over gRPC are not those of the HTTP path's PNG"
        );
        assert_eq!(
            rgb(&over_grpc.read_out(&name.replace(".jpg", ".png"))).dimensions(),
            (received.width, received.height),
            "{name}: the result has the size sent"
        );
    }
    // The JPEG was turned upright (a quarter turn: 200 wide, 300 high, then sized).
    assert!(fake.received()[0].height > fake.received()[0].width);
}

#[test]
fn the_picture_goes_at_a_size_in_multiples_of_64_and_batch_count_is_looped() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    setup.profile("two", "seed = 7\nbatch_count = 2\nsteps = 2\n");
    // 200x150 is sent as a multiple of 64 on both sides.
    let picture = png(200, 150, 5);
    setup.drop_file("two/dog.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        setup.outbox_files(),
        set(&["two/dog-1.png", "two/dog-2.png", "originals/two/dog.png"])
    );
    let received = fake.received();
    assert_eq!(received.len(), 2, "one generation per image");
    let seeds: Vec<_> = received.iter().map(|got| got.config.seed).collect();
    assert_eq!(seeds, vec![Some(7), Some(8)]);
    for got in &received {
        assert!(got.violations.is_empty(), "{:?}", got.violations);
        assert_eq!(got.width % 64, 0);
        assert_eq!(got.height % 64, 0);
        assert_eq!(
            (got.config.start_width, got.config.start_height),
            (
                Some((got.width / 64) as u16),
                Some((got.height / 64) as u16)
            )
        );
    }
    let first = setup.read_out("two/dog-1.png");
    let size = rgb(&first).dimensions();
    assert_eq!(size, (received[0].width, received[0].height));
    // The result is the inverse of what was sent.
    let sent: Vec<u8> = received[0].pixels.iter().map(|byte| 255 - byte).collect();
    assert_eq!(rgb(&first).into_raw(), sent);
}

#[test]
fn large_answers_come_in_4_mib_slices_and_are_put_back_together() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    // 1024x1024 raw f16 is 6 MiB: two slices.
    let picture = png(1024, 1024, 9);
    setup.drop_file("big.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        fake.image_messages(),
        (1024 * 1024 * 6usize).div_ceil(SLICE)
    );
    assert_inverted(&picture, &setup.read_out("big.png"));
}

#[test]
fn deflate_and_fpzip_answers_are_read() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    let picture = png(128, 128, 4);

    fake.set_answering(Answering::Deflate);
    setup.drop_file("zip.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_inverted(&picture, &setup.read_out("zip.png"));

    // fpzip as the server makes it: f16 widened, precision 19, nx = C, ny = W, nz = H.
    fake.set_answering(Answering::Fpzip);
    setup.drop_file("fpzip.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_inverted(&picture, &setup.read_out("fpzip.png"));
}

#[test]
fn a_missing_or_wrong_shared_secret_is_told_in_words_to_act_on() {
    let (_runtime, fake) = start(Options {
        shared_secret: Some("open sesame".into()),
        models: vec![
            "sd_xl_base_1.0_f16.ckpt".into(),
            "flux_1_dev_q8p.ckpt".into(),
        ],
    });
    let setup = Setup::new(&fake.url(), API);
    let check = setup.command().arg("check").output().unwrap();
    let text = stdout_of(&check);
    assert!(
        text.contains("it wants a shared secret: set `shared_secret_env`"),
        "{text}"
    );
    assert!(!text.contains("flux_1_dev_q8p.ckpt"), "{text}");

    setup.write_config(
        &fake.url(),
        API,
        300,
        "",
        "shared_secret_env = \"DT_SECRET\"",
    );
    let check = setup
        .command()
        .arg("check")
        .env("DT_SECRET", "wrong")
        .output()
        .unwrap();
    let text = stdout_of(&check);
    assert!(
        text.contains("it refuses the shared secret drawdrop sends"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "the secret is never shown: {text}");

    // With the wrong secret a daemon waits (nothing fails) and says why.
    let picture = png(128, 128, 2);
    let mut daemon = setup.start_daemon_with(&[("DT_SECRET", "wrong")]);
    setup.drop_file("cat.png", &picture);
    daemon.wait_for_output("refuses the shared secret");
    assert!(!setup.outbox.join("failed/cat.png").exists());
    daemon.terminate(PATIENCE);
    assert!(!daemon.output().contains("open sesame"));

    let check = setup
        .command()
        .arg("check")
        .env("DT_SECRET", "open sesame")
        .output()
        .unwrap();
    let text = stdout_of(&check);
    assert!(
        text.contains("answers: its 2 models are sd_xl_base_1.0_f16.ckpt, flux_1_dev_q8p.ckpt"),
        "the models: {text}"
    );
    let output = setup.run_once_with(&[("DT_SECRET", "open sesame")]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_inverted(&picture, &setup.read_out("cat.png"));
    let last = fake.received().pop().unwrap();
    assert_eq!(last.request.shared_secret.as_deref(), Some("open sesame"));
    assert!(!setup.log_text().contains("open sesame"));
}

#[test]
fn a_server_down_then_up_gets_the_file_once_it_answers() {
    let (runtime, fake) = start(Options::default());
    let addr = fake.addr();
    runtime.block_on(fake.stop());
    let setup = Setup::new(&format!("http://{addr}"), API);
    let mut daemon = setup.start_daemon();
    let picture = png(128, 192, 6);
    setup.drop_file("late.png", &picture);
    daemon.wait_for_output("is not answering");
    assert!(!setup.outbox.join("failed/late.png").exists());
    let fake = runtime
        .block_on(FakeGrpc::start_on(Options::default(), addr))
        .unwrap();
    wait_until("the result", || setup.outbox.join("late.png").exists());
    assert_inverted(&picture, &setup.read_out("late.png"));
    assert_eq!(fake.received().len(), 1);
    daemon.terminate(PATIENCE);
}

#[test]
fn streams_cut_before_or_in_the_middle_of_the_answer_are_retried() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    fake.push_fault(Fault::CutBeforeImages);
    fake.push_fault(Fault::CutAfterFirstImage);
    // 1024x768: in two slices, cut after the first.
    let picture = png(1024, 768, 8);
    setup.drop_file("cut.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_inverted(&picture, &setup.read_out("cut.png"));
    assert_eq!(fake.received().len(), 3);
    let job = &setup.job_lines()[0];
    assert_eq!(job["outcome"], "done", "{job}");
    // The cut after the images began is an attempt; the cut before them may come before the
    // answer's headers, which looks like a server gone away (a wait, then sent again).
    let attempts = job["attempts"].as_u64().unwrap_or(0);
    assert!((2..=3).contains(&attempts), "{job}\n{}", stderr_of(&output));

    // Cut every time: it fails after max_attempts with the reason.
    for _ in 0..3 {
        fake.push_fault(Fault::CutAfterFirstImage);
    }
    setup.drop_file("again.png", &picture);
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let error = std::fs::read_to_string(setup.outbox.join("failed/again.png.error.txt")).unwrap();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(error.contains("the connection was lost"), "{error}");
    assert!(setup.outbox.join("failed/again.png").exists());
}

#[test]
fn a_refused_request_fails_the_file_at_once_and_a_wrong_extra_key_is_not_sent() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    // The fake, like the real server's limits, takes batch_size 1 to 4 only.
    setup.profile("many", "[extra]\nbatch_size = 9\n");
    setup.profile("typo", "[extra]\nhires_fixx = true\n");
    let picture = png(64, 64, 1);
    setup.drop_file("many/a.png", &picture);
    setup.drop_file("typo/b.png", &picture);
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(fake.received().len(), 1, "refused once, not retried");
    let error = std::fs::read_to_string(setup.outbox.join("failed/many/a.png.error.txt")).unwrap();
    assert!(
        error.contains("Draw Things refused the request (gRPC INVALID_ARGUMENT): batch_size"),
        "{error}"
    );
    let error = std::fs::read_to_string(setup.outbox.join("failed/typo/b.png.error.txt")).unwrap();
    assert!(
        error.contains(
            "[extra]: `hires_fixx` is not a field of Draw Things' generation configuration"
        ),
        "{error}"
    );
    let kinds: BTreeSet<String> = setup
        .job_lines()
        .iter()
        .map(|line| line["error_kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(kinds, set(&["refused", "settings"]));
}

#[test]
fn a_kill_mid_job_gives_one_result_after_the_restart() {
    let (_runtime, fake) = start(Options::default());
    let setup = Setup::new(&fake.url(), API);
    fake.push_fault(Fault::Hang);
    let picture = png(128, 128, 12);
    let mut first = setup.start_daemon();
    setup.drop_file("cat.png", &picture);
    wait_until("the job is at the server", || fake.received().len() == 1);
    first.kill_hard();
    let mut second = setup.start_daemon();
    wait_until("the result", || {
        setup.is_finished() && !setup.job_lines().is_empty()
    });
    second.terminate(PATIENCE);
    assert_eq!(setup.outbox_files(), set(&["cat.png", "originals/cat.png"]));
    assert_inverted(&picture, &setup.read_out("cat.png"));
    assert_eq!(setup.job_lines().len(), 1);
    assert_eq!(fake.received().len(), 2);
}

#[test]
fn a_pool_of_a_grpc_and_an_http_server_shares_the_work() {
    let (runtime, fake) = start(Options::default());
    let http = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::new(&fake.url(), API);
    let text = format!(
        "inbox = {:?}\noutbox = {:?}\nsettle_ms = 200\n\n\
         [[servers]]\nname = \"grpc\"\nurl = \"{}\"\napi = \"{API}\"\n\n\
         [[servers]]\nname = \"http\"\nurl = \"{}\"\napi = \"drawthings\"\n",
        setup.inbox.to_string_lossy(),
        setup.outbox.to_string_lossy(),
        fake.url(),
        http.url()
    );
    std::fs::write(&setup.config, text).unwrap();
    let inputs: BTreeSet<String> = (0..8)
        .map(|at| {
            let name = format!("p{at}.png");
            setup.drop_file(&name, &png(128, 128, at + 1));
            name
        })
        .collect();
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let lines = setup.job_lines();
    assert_eq!(lines.len(), 8, "{lines:#?}");
    assert!(
        lines.iter().all(|line| line["outcome"] == "done"),
        "{lines:#?}"
    );
    for input in &inputs {
        assert!(setup.outbox.join(input).exists(), "{input}");
    }
    let by_grpc = lines.iter().filter(|line| line["server"] == "grpc").count();
    assert_eq!(by_grpc, fake.received().len());
    for line in lines.iter().filter(|line| line["server"] == "grpc") {
        let input = line["input"].as_str().unwrap_or_default();
        let name = input.rsplit('/').next().unwrap_or(input);
        let at: u32 = name[1..2].parse().unwrap();
        assert_inverted(&png(128, 128, at + 1), &setup.read_out(name));
    }
    assert!(
        by_grpc > 0 && by_grpc < 8,
        "both servers worked: {by_grpc} by gRPC"
    );
}

/// A certificate authority made for the test, and a server certificate it signed for
/// `127.0.0.1` and `localhost`: (CA PEM, server certificate PEM, server key PEM).
#[cfg(feature = "tls")]
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "drawdrop test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

#[cfg(feature = "tls")]
#[test]
fn over_tls_a_server_signed_by_the_ca_file_is_trusted_and_others_are_not() {
    let runtime = runtime();
    let (ca, certificate, key) = certificates();
    let fake = runtime.block_on(FakeGrpc::start_tls(Options::default(), &certificate, &key));
    let url = format!("https://{}", fake.addr());
    let setup = Setup::with(&url, API, 300, "", "ca_file = \"ca.pem\"");
    std::fs::write(setup.dir.path().join("ca.pem"), &ca).unwrap();
    let picture = png(128, 128, 21);
    setup.drop_file("tls.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_inverted(&picture, &setup.read_out("tls.png"));
    assert_eq!(fake.received().len(), 1);

    // Without the CA, the server's certificate is not Draw Things' and is refused: the file
    // waits, nothing is sent.
    setup.write_config(&url, API, 300, "", "");
    let check = setup.command().arg("check").output().unwrap();
    let text = stdout_of(&check);
    assert!(text.contains("does not answer"), "{text}");
    assert_eq!(fake.received().len(), 1);
}

/// A job's notebook that notes nothing (a gRPC job notes nothing).
struct NoNotes;

impl drawdrop::backends::Journal for NoNotes {
    fn noted(&self) -> Option<String> {
        None
    }
    fn note<'a>(&'a self, _: &'a str) -> drawdrop::backends::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampling_signposts_are_the_jobs_progress() {
    use drawdrop::backends::{Backend, Generation, Init, drawthings_grpc::DrawThingsGrpc};
    use drawdrop::config::{Api, Server, Settings};
    use drawdrop::report::live::InFlight;

    let fake = FakeGrpc::start(Options::default()).await;
    let server = Server {
        name: "grpc".into(),
        profiles: None,
        url: fake.url().parse().unwrap(),
        api: Api::DrawThingsGrpc,
        timeout: std::time::Duration::from_secs(60),
        max_attempts: 1,
        concurrency: 1,
        auth: None,
        shared_secret: None,
        ca_file: None,
    };
    let backend = DrawThingsGrpc::new(&server).unwrap();
    let settings = Settings::parse("steps = 5\n", std::path::Path::new("p.toml")).unwrap();
    let request = backend.request(&settings, (128, 128), 9).unwrap();
    let picture = png(128, 128, 30);
    let body = backend.encode(&request, Init::Png(&picture)).unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let in_flight = InFlight::new(outbox.path());
    let reporter = in_flight.start(std::path::Path::new("cat.png"), "grpc");
    let limits = drawdrop::backends::Limits::default();
    let images = backend
        .generate(Generation {
            request: &request,
            body,
            limits: &limits,
            progress: &reporter,
            journal: &NoNotes,
        })
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_inverted(&picture, &images[0]);
    // The fake signposts steps 0 to 4 and lists step 4 as the last it expects.
    let job = in_flight.snapshot().jobs.pop().unwrap();
    assert_eq!((job.step, job.steps), (Some(5), Some(5)));
}
