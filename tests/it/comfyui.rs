//! ComfyUI as a server, end to end through the real binary against the fake ComfyUI
//! (tests/it/fakes/comfyui): a profile's workflow gets the picture and the profile's keys
//! in the right nodes, results come back numbered and finished like any other (pixels
//! checked), a refused workflow fails the file at once naming the node, an execution error
//! is retried, a cut websocket falls back to the history, a `kill -9` after the prompt was
//! queued gives one result from one prompt, and a pool sends each profile to its kind.

use crate::common::{
    PATIENCE, Setup, invariants, invert_workflow, runtime, set, stderr_of, wait_until,
};
use crate::fakes::comfyui::FakeComfyUi;
use crate::fakes::server::{FakeServer, Flavor};
use crate::pictures::{png, text_chunk};
use serde_json::{Value, json};
use std::fs;

/// An img2img workflow with a checkpoint, two prompts and a sampler.
fn img2img() -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 8,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": ["4", 0],
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["11", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]},
            "_meta": {"title": "Positive"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    })
}

/// A set-up with one ComfyUI server and profile `name` running `workflow`.
fn comfy_setup(fake: &FakeComfyUi, name: &str, workflow: &Value, keys: &str) -> Setup {
    let setup = Setup::new(&fake.url(), "comfyui");
    setup.workflow_profile(name, workflow, keys);
    setup
}

fn rgb(png: &[u8]) -> image::RgbImage {
    image::load_from_memory(png).unwrap().to_rgb8()
}

/// Whether `result` is `input` inverted (ImageInvert gives 255-x or 254-x).
fn is_inverted(input: &[u8], result: &[u8]) -> bool {
    invariants::is_inverted(&rgb(input), &rgb(result))
}

/// The prompts the fake ran, by id (each prompt's KSampler or first node's inputs).
fn executed_prompts(fake: &FakeComfyUi) -> Vec<String> {
    let mut ids: Vec<String> = fake
        .executed_nodes()
        .into_iter()
        .map(|node| node.prompt_id)
        .collect();
    ids.dedup();
    ids
}

#[test]
fn an_inverting_workflow_returns_the_inverted_picture_finished_like_any_result() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let picture = png(96, 64, 7);
    setup.drop_file("invert/cat.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        setup.outbox_files(),
        set(&["invert/cat.png", "originals/invert/cat.png"])
    );
    let result = setup.read_out("invert/cat.png");
    assert!(
        is_inverted(&picture, &result),
        "the result is not the inverted picture"
    );
    // The workflow that made it, as ComfyUI keeps it, and drawdrop's parameters.
    let graph: Value = serde_json::from_str(&text_chunk(&result, "prompt").unwrap()).unwrap();
    assert_eq!(graph["2"]["class_type"], "ImageInvert");
    let uploaded = graph["1"]["inputs"]["image"].as_str().unwrap().to_owned();
    assert!(uploaded.starts_with("drawdrop-"), "{uploaded}");
    let parameters = text_chunk(&result, "parameters").unwrap();
    assert!(parameters.contains("Size: 96x64"), "{parameters}");
    // The workflow has no sampler to take a seed: none is claimed.
    assert!(!parameters.contains("Seed"), "{parameters}");
    let job = &setup.job_lines()[0];
    assert_eq!(job["outcome"], "done");
    assert_eq!(job["settings"]["workflow"], "invert.json", "{job}");
    assert_eq!(job["settings"]["width"], 96);
    assert!(
        job["settings"].get("seed").is_none(),
        "no sampler took a seed: {job}"
    );

    // The same bytes again are uploaded under a new name, so ComfyUI runs the graph again
    // instead of answering with the cached old output.
    setup.drop_file("invert/cat.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(is_inverted(&picture, &setup.read_out("invert/cat (2).png")));
    assert_eq!(fake.counters().prompts_queued, 2);
    assert_eq!(
        executed_prompts(&fake).len(),
        2,
        "the second prompt ran again"
    );
}

#[test]
fn the_profile_keys_and_the_set_go_into_their_nodes() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let keys = "prompt = \"a watercolor of {name}\"\nnegative_prompt = \"blurry\"\nsteps = 3\n\
                strength = 0.55\nguidance_scale = 6.5\nseed = 1234\nsampler = \"dpmpp_2m\"\n\
                model = \"sd_xl_base_1.0.safetensors\"\n\
                [comfyui.set]\n\"3.scheduler\" = \"karras\"\n\"7.text\" = \"{prompt}, ugly\"\n";
    let setup = comfy_setup(&fake, "paint", &img2img(), keys);
    let picture = png(64, 48, 3);
    setup.drop_file("paint/dog.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let prompt = &executed_prompts(&fake)[0];
    let sampler = fake.node_inputs(prompt, "3").unwrap();
    assert_eq!(sampler["seed"], 1234);
    assert_eq!(sampler["steps"], 3);
    assert_eq!(sampler["cfg"], 6.5);
    assert_eq!(sampler["denoise"], 0.55);
    assert_eq!(sampler["sampler_name"], "dpmpp_2m");
    assert_eq!(sampler["scheduler"], "karras");
    let text = |node| fake.node_inputs(prompt, node).unwrap()["text"].clone();
    assert_eq!(text("6"), "a watercolor of dog");
    assert_eq!(text("7"), "a watercolor of dog, ugly");
    assert_eq!(
        fake.node_inputs(prompt, "4").unwrap()["ckpt_name"],
        "sd_xl_base_1.0.safetensors"
    );
    let result = setup.read_out("paint/dog.png");
    assert_eq!(rgb(&result), rgb(&picture));
    let parameters = text_chunk(&result, "parameters").unwrap();
    assert!(parameters.starts_with("a watercolor of dog\nNegative prompt: blurry\n"));
    assert!(parameters.contains("Steps: 3, Sampler: dpmpp_2m, CFG scale: 6.5, Seed: 1234"));
}

#[test]
fn two_save_nodes_give_numbered_results() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let mut workflow = invert_workflow();
    workflow["4"] = json!({"class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "plain"}});
    let setup = comfy_setup(&fake, "both", &workflow, "");
    let picture = png(40, 30, 5);
    setup.drop_file("both/cat.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        setup.outbox_files(),
        set(&["both/cat-1.png", "both/cat-2.png", "originals/both/cat.png"])
    );
    assert!(is_inverted(&picture, &setup.read_out("both/cat-1.png")));
    assert_eq!(rgb(&setup.read_out("both/cat-2.png")), rgb(&picture));
}

#[test]
fn a_workflow_comfyui_refuses_fails_the_file_at_once_naming_the_node() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let mut workflow = img2img();
    workflow["6"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("clip");
    let setup = comfy_setup(&fake, "broken", &workflow, "");
    setup.drop_file("broken/cat.png", &png(32, 32, 1));
    let output = setup.run_once();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let reason = fs::read_to_string(setup.outbox.join("failed/broken/cat.png.error.txt")).unwrap();
    assert!(
        reason.contains("ComfyUI refused the request (HTTP 400): node 6 (CLIPTextEncode, \"Positive\"): Required input is missing: clip"),
        "{reason}"
    );
    assert_eq!(setup.job_lines()[0]["attempts"], 1);
}

#[test]
fn an_execution_error_is_retried_then_the_file_succeeds() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    fake.fail_next_prompts(1, "CUDA out of memory");
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let picture = png(32, 32, 2);
    setup.drop_file("invert/cat.png", &picture);
    let output = setup.run_once_with(&[("DRAWDROP_BACKOFF_MS", "50")]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(is_inverted(&picture, &setup.read_out("invert/cat.png")));
    assert!(
        stderr_of(&output)
            .contains("ComfyUI failed at node 1 (LoadImage): RuntimeError: CUDA out of memory"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(setup.job_lines()[0]["attempts"], 2);

    // Failing every time: the file fails with ComfyUI's message.
    fake.fail_next_prompts(3, "CUDA out of memory");
    setup.drop_file("invert/dog.png", &picture);
    let output = setup.run_once_with(&[("DRAWDROP_BACKOFF_MS", "50")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let reason = fs::read_to_string(setup.outbox.join("failed/invert/dog.png.error.txt")).unwrap();
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    assert!(
        reason.contains("RuntimeError: CUDA out of memory"),
        "{reason}"
    );
}

#[test]
fn a_cut_websocket_falls_back_to_the_history() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    fake.cut_websockets_after(Some(1));
    fake.set_step_delay(std::time::Duration::from_millis(200));
    let setup = comfy_setup(&fake, "paint", &img2img(), "steps = 3\n");
    let picture = png(32, 32, 4);
    setup.drop_file("paint/cat.png", &picture);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(rgb(&setup.read_out("paint/cat.png")), rgb(&picture));
    assert_eq!(fake.counters().prompts_queued, 1);
}

#[test]
fn a_profile_key_with_nowhere_to_go_breaks_the_profile_with_its_place() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "steps = 4\n");
    fs::write(
        setup.dir.path().join("profiles/bad.json"),
        "{\n  \"1\": {,\n}",
    )
    .unwrap();
    setup.profile("bad", "workflow = \"bad.json\"\n");
    let output = setup.command().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr_of(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(
            "invert.toml:1:12: `steps` has nowhere to go: invert.json has no KSampler node"
        ),
        "{text}"
    );
    assert!(text.contains("bad.json:2:9: not valid JSON"), "{text}");
    // Its files wait in the inbox; the rest goes on.
    setup.drop_file("invert/cat.png", &png(16, 16, 1));
    let _ = setup.run_once();
    assert_eq!(setup.inbox_files(), set(&["invert/cat.png"]));
    assert_eq!(fake.counters().prompts_queued, 0);
}

#[test]
fn check_names_each_node_the_server_cannot_run() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let mut workflow = img2img();
    workflow["12"] = json!({"class_type": "FancyUpscaler", "inputs": {"image": ["10", 0]},
        "_meta": {"title": "Upscale"}});
    workflow["7"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("clip");
    let setup = comfy_setup(&fake, "paint", &workflow, "model = \"nope.safetensors\"\n");
    setup.profile("default", "workflow = \"paint.json\"\n");
    let output = setup.command().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{text}");
    for expected in [
        "profile paint: node 4 (CheckpointLoaderSimple): `ckpt_name` = \"nope.safetensors\" is not one the server has (it has: sd_xl_base_1.0.safetensors, v1-5-pruned-emaonly.safetensors)",
        "profile paint: node 7 (CLIPTextEncode): the required input `clip` is missing",
        "profile paint: node 12 (FancyUpscaler, \"Upscale\"): the server has no node type FancyUpscaler",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn an_exif_rotated_jpeg_reaches_comfyui_as_an_upright_png() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let scene = crate::pictures::quadrants(48, 32);
    // Stored sideways with orientation 6 (turn 90° clockwise to show it).
    let stored = image::imageops::rotate270(&scene);
    let jpeg = crate::pictures::jpeg(&stored, Some(&crate::pictures::orientation_exif(6)));
    setup.drop_file("invert/photo.jpg", &jpeg);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let uploads = fake.files("input");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let sent = fake.file("input", "", &uploads[0]).unwrap();
    assert!(sent.starts_with(b"\x89PNG"), "sent as PNG");
    assert_eq!(rgb(&sent).dimensions(), (48, 32), "sent upright");
    let result = setup.read_out("invert/photo.png");
    assert_eq!(rgb(&result).dimensions(), (48, 32));
    wait_until("the original is archived", || {
        setup.outbox.join("originals/invert/photo.jpg").exists()
    });
    let _ = PATIENCE;
}

#[test]
fn a_pool_sends_workflows_to_comfyui_and_the_rest_to_draw_things() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let draw_things = runtime.block_on(FakeServer::start(Flavor::DrawThings));
    let setup = Setup::new(&draw_things.url(), "drawthings");
    setup
        .add_comfyui_server("comfy", &fake.url(), "")
        .workflow_profile("invert", &invert_workflow(), "");
    setup.profile("plain", "prompt = \"a dog\"\nsteps = 2\n");
    for index in 0..3 {
        setup.drop_file(&format!("invert/{index}.png"), &png(32, 32, index));
        setup.drop_file(&format!("plain/{index}.png"), &png(32, 32, index + 10));
    }
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(fake.counters().prompts_queued, 3);
    assert_eq!(draw_things.img2img_answers().len(), 3);
    for line in setup.job_lines() {
        let profile = line["profile"].as_str().unwrap();
        let server = line["server"].as_str().unwrap_or_default();
        let expected = if profile == "invert" { "comfy" } else { "mac" };
        assert!(server.contains(expected), "{line}");
    }
    let check = setup.command().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        text.contains("comfy takes the profiles with a workflow: invert"),
        "{text}"
    );
    assert!(
        text.contains("mac takes the profiles without a workflow: default, plain"),
        "{text}"
    );
}

#[test]
fn a_kill_after_the_prompt_was_queued_finds_it_again_and_queues_nothing_twice() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    fake.hang_next_prompts(1);
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let picture = png(32, 24, 9);
    setup.drop_file("invert/cat.png", &picture);
    let mut daemon = setup.start_daemon();
    wait_until("the prompt is queued", || {
        fake.counters().prompts_queued == 1
    });
    daemon.kill_hard();
    fake.release_hung();
    let mut daemon = setup.start_daemon();
    wait_until("everything is finished after the restart", || {
        setup.is_finished()
    });
    let (status, _) = daemon.terminate(std::time::Duration::from_secs(20));
    assert!(status.success(), "{}", daemon.output());
    assert_eq!(fake.counters().prompts_queued, 1, "{}", daemon.output());
    assert_eq!(fake.counters().uploads, 1);
    assert_eq!(
        setup.outbox_files(),
        set(&["invert/cat.png", "originals/invert/cat.png"])
    );
    assert!(is_inverted(&picture, &setup.read_out("invert/cat.png")));
    assert!(setup.leftovers().is_empty(), "{:?}", setup.leftovers());
}

#[test]
fn a_stop_while_comfyui_runs_the_prompt_keeps_the_job_and_the_next_start_takes_its_results() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    fake.hang_next_prompts(1);
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let picture = png(32, 24, 11);
    setup.drop_file("invert/cat.png", &picture);
    let mut daemon = setup.start_daemon();
    wait_until("the prompt is queued", || {
        fake.counters().prompts_queued == 1
    });
    let (status, _) = daemon.terminate(std::time::Duration::from_secs(30));
    assert!(status.success(), "{}", daemon.output());
    assert!(
        daemon
            .output()
            .contains("kept invert/cat.png claimed: its request is queued at"),
        "{}",
        daemon.output()
    );
    // Not put back into the inbox: it stays claimed, for the next start.
    assert!(setup.inbox_files().is_empty(), "{:?}", setup.inbox_files());
    assert!(!setup.is_finished());
    // ComfyUI goes on with it meanwhile.
    fake.release_hung();
    runtime.block_on(fake.wait_executed(1, PATIENCE));
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("was done in ComfyUI: taking its results"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(fake.counters().prompts_queued, 1);
    assert_eq!(fake.counters().uploads, 1);
    assert!(is_inverted(&picture, &setup.read_out("invert/cat.png")));
    assert!(setup.leftovers().is_empty(), "{:?}", setup.leftovers());
}

#[test]
fn a_crash_after_noting_the_prompt_but_before_queueing_it_queues_it_once() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let setup = comfy_setup(&fake, "invert", &invert_workflow(), "");
    let picture = png(24, 24, 3);
    setup.drop_file("invert/cat.png", &picture);
    let output = setup.run_once_with(&[("DRAWDROP_CRASH_AT", "noted")]);
    assert!(
        stderr_of(&output).contains("crash point noted reached"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(fake.counters().prompts_queued, 0);
    let output = setup.run_once();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(fake.counters().prompts_queued, 1);
    assert!(is_inverted(&picture, &setup.read_out("invert/cat.png")));
}

#[test]
fn init_writes_a_comfyui_profile_and_workflow_that_run() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("drawdrop/config.toml");
    let drawdrop = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drawdrop"))
            .env("HOME", home.path())
            .env_remove("DRAWDROP_CONFIG")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let output = drawdrop(&["init", "--comfyui"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("url = \"http://127.0.0.1:8188\""), "{text}");
    assert!(home.path().join("drawdrop/profiles/default.json").is_file());
    // Pointed at the fake, a picture dropped into the inbox goes through the workflow.
    fs::write(&config, text.replace("http://127.0.0.1:8188", &fake.url())).unwrap();
    let inbox = home.path().join("DrawDrop/Inbox");
    let picture = png(64, 64, 8);
    fs::write(inbox.join("cat.png"), &picture).unwrap();
    let output = drawdrop(&["run", "--once"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let result = fs::read(home.path().join("DrawDrop/Outbox/cat.png")).unwrap();
    assert_eq!(rgb(&result), rgb(&picture));
    let prompt = &executed_prompts(&fake)[0];
    assert_eq!(fake.node_inputs(prompt, "3").unwrap()["denoise"], 0.6);
    let check = drawdrop(&["check"]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "{report}");
}

#[test]
fn status_shows_the_workflows_sampling_step_while_it_runs() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeComfyUi::start());
    fake.set_step_delay(std::time::Duration::from_millis(400));
    let setup = comfy_setup(&fake, "paint", &img2img(), "steps = 20\n");
    let _daemon = setup.start_daemon();
    setup.drop_file("paint/owl.png", &png(64, 48, 7));
    let status = || {
        let output = setup.command().arg("status").output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut line = String::new();
    wait_until("status shows the step of the job in flight", || {
        line = status()
            .lines()
            .find(|line| line.contains("in flight") && line.contains("paint/owl.png on "))
            .unwrap_or_default()
            .to_owned();
        line.contains(", step ") && line.contains("/20")
    });
    let step: u32 = line
        .rsplit("step ")
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|step| step.parse().ok())
        .unwrap_or_else(|| panic!("a step in {line:?}"));
    assert!((1..=20).contains(&step), "{line}");
    wait_until("the result is in the outbox", || {
        setup.outbox.join("paint/owl.png").is_file()
    });
    wait_until("nothing is in flight any more", || {
        !status().contains("in flight")
    });
}
