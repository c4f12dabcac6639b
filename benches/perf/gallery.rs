//! The gallery's figures: the time to bring it up to date after one job with 10, 1,000 and
//! 100,000 jobs before it (flat: pages of a bounded size), a thumbnail per 1 MB result, and
//! what keeping the gallery costs `run --once` (gallery = true against gallery = false).

use crate::harness::{Row, Server, Setup, copy_all, median, megabyte_pictures, noise_png, quick};
use drawdrop::jobs::outbox::Outbox;
use drawdrop::report::gallery::{Gallery, thumbs};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

pub async fn gallery() -> Vec<Row> {
    let mut rows = Vec::new();
    let picture = noise_png(576, 576, 7);
    let megabytes = picture.len() as f64 / 1e6;

    let histories: &[usize] = if quick() {
        &[10, 1_000, 10_000]
    } else {
        &[10, 1_000, 100_000]
    };
    let mut times = Vec::new();
    for &earlier in histories {
        let took = update_after_one_job(earlier, &picture);
        rows.push(Row::new(
            &format!("gallery update after one job, {earlier} before it"),
            format!("{took:.1} ms"),
            "",
            None,
        ));
        times.push(took);
    }
    let spread =
        times.iter().copied().fold(0.0, f64::max) / times.iter().copied().fold(f64::MAX, f64::min);
    rows.push(Row::new(
        &format!(
            "gallery update: {} against {} jobs before",
            histories[2], histories[0]
        ),
        format!("{spread:.2} x"),
        "<= 2 x",
        Some(spread <= 2.0),
    ));

    let mut thumb = Vec::new();
    for _ in 0..if quick() { 5 } else { 20 } {
        let started = Instant::now();
        let jpeg = thumbs::thumbnail_jpeg(&picture).expect("thumbnail");
        thumb.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(jpeg);
    }
    rows.push(Row::new(
        &format!("thumbnail of a {megabytes:.1} MB result (decode, scale, JPEG)"),
        format!("{:.1} ms", median(&mut thumb)),
        "",
        None,
    ));

    rows.push(once_with_and_without().await);
    rows
}

/// Milliseconds for the update that takes one new job (a 1 MB result and its original,
/// both thumbnailed) into a gallery that has `earlier` jobs already.
fn update_after_one_job(earlier: usize, picture: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path().join("out"));
    outbox.create().unwrap();
    let mut lines = String::new();
    for n in 0..earlier {
        lines.push_str(&record(n, &format!("earlier/p{n}.png")));
        lines.push('\n');
    }
    std::fs::write(outbox.jobs_log(), lines).unwrap();
    let gallery = Gallery::new(&outbox);
    gallery.update(&|| false).unwrap();
    let mut times = Vec::new();
    for i in 0..if quick() { 5 } else { 15 } {
        let name = format!("new/p{i}.png");
        write(&outbox.root().join(&name), picture);
        write(&outbox.root().join("originals").join(&name), picture);
        outbox.append_job_line(&record(earlier + i, &name)).unwrap();
        let started = Instant::now();
        let updated = gallery.update(&|| false).unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(updated.added, 1);
    }
    median(&mut times)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A `jobs.jsonl` line as the daemon writes it.
fn record(n: usize, name: &str) -> String {
    let mut line = String::new();
    let _ = write!(
        line,
        r#"{{"time":"2026-11-25T22:15:03.123+01:00","job":"1764100000000-{n:06}-1","input":"{name}","outcome":"done","profile":"default","server":"server","url":"http://127.0.0.1:7860/","api":"drawthings","settings":{{"prompt":"a watercolor painting of a dog","steps":4,"seed":{n},"model":"sd_xl_base_1.0_f16.ckpt","width":576,"height":576}},"input_size":[576,576],"resized":false,"sidecars":[],"attempts":1,"server_ms":900,"total_ms":1000,"error":null,"outputs":["{name}"],"original":"originals/{name}"}}"#
    );
    line
}

/// `run --once` over the same pictures with the gallery on and off.
async fn once_with_and_without() -> Row {
    let server = Server::start().await;
    let count = if quick() { 40 } else { 200 };
    let sources = megabyte_pictures(count);
    let mut best = [f64::MAX, f64::MAX];
    for _ in 0..3 {
        for (side, top) in ["gallery = false", "gallery = true"].iter().enumerate() {
            let setup = Setup::with(&server.fake.url(), 1000, top);
            copy_all(sources.path(), &setup.inbox, true);
            best[side] = best[side].min(setup.run_once().as_secs_f64());
            assert_eq!(setup.results(), count);
            if side == 1 {
                assert!(setup.outbox.join("gallery/index.html").is_file());
            }
        }
    }
    let cost = best[1] / best[0] - 1.0;
    Row::new(
        &format!("run --once, {count} x 1 MB PNGs: gallery on against off"),
        format!(
            "{:.2} s vs {:.2} s = {:+.0} %",
            best[1],
            best[0],
            cost * 100.0
        ),
        "< +10 %",
        Some(cost < 0.10),
    )
}
