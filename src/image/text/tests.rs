//! Tests for [`with_text_chunk`] and [`text_chunks`].

use super::super::test_png::*;
use super::super::{Limits, inspect};
use super::*;

fn names(png: &[u8]) -> Vec<String> {
    Chunks::after_signature(png)
        .map(|c| c.unwrap().name.to_string())
        .collect()
}

#[test]
fn latin1_text_goes_into_text_before_iend() {
    let png = gradient_png(16, 16);
    let text = "a caf\u{e9} at night\nNegative prompt: blurry\nSteps: 4, Seed: 42";
    let out = with_text_chunk(&png, "parameters", text).unwrap();
    let names = names(&out);
    assert_eq!(names[names.len() - 2..], ["tEXt", "IEND"]);
    assert_eq!(
        text_chunks(&out),
        [("parameters".to_owned(), text.to_owned())]
    );
    inspect(&out, &Limits::default()).unwrap();

    // Every other byte is kept: the file is the old one with one chunk spliced in.
    let iend = png.len() - 12;
    let added = out.len() - png.len();
    assert_eq!(out[..iend], png[..iend]);
    assert_eq!(out[iend + added..], png[iend..]);
    assert_eq!(
        u32::from_be_bytes(out[iend..iend + 4].try_into().unwrap()) as usize,
        added - 12
    );
    assert_eq!(&out[iend + 8..iend + 19], b"parameters\0");
    assert_eq!(out[iend + 19 + 5], 0xe9);
}

#[test]
fn other_text_goes_into_itxt() {
    let png = gradient_png(4, 4);
    let text = "\u{732b}\u{306e}\u{7d75} \u{1f431}, \u{20ac}5";
    let out = with_text_chunk(&png, "Comment \u{e9}t\u{e9}", text).unwrap();
    assert!(names(&out).contains(&"iTXt".to_owned()));
    assert_eq!(
        text_chunks(&out),
        [("Comment \u{e9}t\u{e9}".to_owned(), text.to_owned())]
    );
    inspect(&out, &Limits::default()).unwrap();
}

#[test]
fn keeps_existing_chunks_and_trailing_bytes() {
    let mut png = gradient_png(4, 4);
    png.extend_from_slice(b"after the end");
    let once = with_text_chunk(&png, "parameters", "first").unwrap();
    let twice = with_text_chunk(&once, "parameters", "second").unwrap();
    assert_eq!(
        text_chunks(&twice),
        [
            ("parameters".to_owned(), "first".to_owned()),
            ("parameters".to_owned(), "second".to_owned())
        ]
    );
    assert!(twice.ends_with(b"IEND\xae\x42\x60\x82after the end"));
    assert_eq!(text_chunks(&twice[..twice.len() - 13 - 12]).len(), 2);
}

#[test]
fn refuses_bad_keywords_and_text() {
    let png = gradient_png(4, 4);
    let long = "k".repeat(80);
    for keyword in [
        "",
        " lead",
        "trail ",
        "two  spaces",
        "\u{30ad}\u{30fc}",
        "tab\there",
        &long,
    ] {
        let err = with_text_chunk(&png, keyword, "x").unwrap_err();
        assert_eq!(err, PngProblem::BadKeyword(keyword.to_owned()));
    }
    assert!(with_text_chunk(&png, &"k".repeat(79), "x").is_ok());
    let err = with_text_chunk(&png, "parameters", "a\0b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the text for \"parameters\" holds a NUL character, which PNG text chunks cannot carry"
    );
}

#[test]
fn refuses_a_broken_png() {
    let png = gradient_png(4, 4);
    let err = with_text_chunk(&png[..png.len() - 12], "parameters", "x").unwrap_err();
    assert!(matches!(err, PngProblem::MissingIend { .. }));
    let err = with_text_chunk(b"GIF89a", "parameters", "x").unwrap_err();
    assert!(matches!(err, PngProblem::OtherFormat(_)));
}

#[test]
fn reads_compressed_text_chunks() {
    let header = ihdr(1, 1, 8, 0, 0);
    let idat = zlib(&[0, 0]);
    let mut ztxt = b"Title\0\0".to_vec();
    ztxt.extend(zlib(
        "caf\u{e9}"
            .chars()
            .map(|c| c as u8)
            .collect::<Vec<_>>()
            .as_slice(),
    ));
    let mut itxt = b"Author\0\x01\0en\0Auteur\0".to_vec();
    itxt.extend(zlib("\u{732b}".as_bytes()));
    let bad = b"Broken\0\x01\0\0\0not zlib".to_vec();
    let png = build(&[
        (b"IHDR", &header),
        (b"zTXt", &ztxt),
        (b"iTXt", &itxt),
        (b"iTXt", &bad),
        (b"tEXt", b"no separator"),
        (b"IDAT", &idat),
        (b"IEND", &[]),
        (b"tEXt", b"After\0the end"),
    ]);
    assert_eq!(
        text_chunks(&png),
        [
            ("Title".to_owned(), "caf\u{e9}".to_owned()),
            ("Author".to_owned(), "\u{732b}".to_owned())
        ]
    );
}

#[test]
fn reads_nothing_from_junk() {
    assert!(text_chunks(b"").is_empty());
    assert!(text_chunks(b"\xff\xd8\xff\xe0").is_empty());
    let png = with_text_chunk(&gradient_png(4, 4), "k", "v").unwrap();
    for end in 0..png.len() {
        let _ = text_chunks(&png[..end]);
    }
}
