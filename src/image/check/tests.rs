//! Tests for [`inspect`]: accepted PNGs, and the sentence given for each kind of bad file.

use ::image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgba, RgbaImage};

use super::super::chunks::Chunks;
use super::super::test_png::*;
use super::*;

fn reason(bytes: &[u8]) -> String {
    inspect(bytes, &Limits::default()).unwrap_err().to_string()
}

fn info(bytes: &[u8]) -> PngInfo {
    inspect(bytes, &Limits::default()).unwrap()
}

/// Where the first chunk called `name` starts.
fn offset_of(bytes: &[u8], name: &[u8; 4]) -> usize {
    Chunks::after_signature(bytes)
        .map(Result::unwrap)
        .find(|c| &c.name.0 == name)
        .unwrap()
        .offset
}

fn expect(width: u32, height: u32, bit_depth: u8, color_type: ColorType) -> PngInfo {
    PngInfo {
        width,
        height,
        bit_depth,
        color_type,
        interlaced: false,
    }
}

#[test]
fn accepts_the_common_pixel_formats() {
    let rgb = gradient_png(40, 30);
    assert_eq!(info(&rgb), expect(40, 30, 8, ColorType::Rgb));

    let rgba = RgbaImage::from_pixel(3, 5, Rgba([1, 2, 3, 4]));
    let rgba = encode(&DynamicImage::ImageRgba8(rgba));
    assert_eq!(info(&rgba), expect(3, 5, 8, ColorType::Rgba));

    let gray = encode(&DynamicImage::ImageLuma8(GrayImage::new(7, 2)));
    assert_eq!(info(&gray), expect(7, 2, 8, ColorType::Grayscale));

    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(9, 4, Luma([40000]));
    let gray16 = encode(&DynamicImage::ImageLuma16(gray16));
    assert_eq!(info(&gray16), expect(9, 4, 16, ColorType::Grayscale));

    let palette = indexed_png(5, 3, 4, &[[255, 0, 0], [0, 0, 255]], None, |x, _| {
        (x % 2) as u8
    });
    assert_eq!(info(&palette), expect(5, 3, 4, ColorType::Indexed));

    let interlaced = interlaced_png(&gradient(11, 13));
    let mut want = expect(11, 13, 8, ColorType::Rgb);
    want.interlaced = true;
    assert_eq!(info(&interlaced), want);
}

#[test]
fn tolerates_bytes_after_iend() {
    let mut bytes = gradient_png(8, 8);
    bytes.extend_from_slice(b"trailing garbage \0\x01\x02");
    assert_eq!(info(&bytes).size(), (8, 8));
}

#[test]
fn names_empty_and_other_formats() {
    assert_eq!(reason(b""), "the file is empty");
    let cases: &[(&[u8], &str)] = &[
        (
            b"\xff\xd8\xff\xe0\0\x10JFIF\0",
            "this is a JPEG image, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
        (
            b"GIF89a\x10\0\x10\0",
            "this is a GIF image, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
        (
            b"RIFF\x24\0\0\0WEBPVP8 ",
            "this is a WebP image, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
        (
            b"\0\0\0\x18ftypheic\0\0\0\0mif1",
            "this is a HEIC/HEIF image, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
        (
            b"just some notes\nsecond line\n",
            "this is a text file, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
        (
            b"%PDF-1.4\n%\xe2\xe3",
            "this is a PDF document, not a PNG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)",
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(reason(bytes), *want);
    }
    assert_eq!(
        reason(&[0; 4096]),
        "the file holds only zero bytes (4096 of them), not an image: an unfinished copy or download?"
    );
    assert_eq!(
        reason(b"\x01\x02\x03\x04\x05\x06\x07"),
        "this is not a PNG: the file does not start with the PNG signature"
    );
}

#[test]
fn names_truncation_where_it_happens() {
    let bytes = gradient_png(64, 64);
    assert_eq!(
        reason(&bytes[..7]),
        "the PNG is truncated: the file has only 7 bytes and ends inside the PNG signature"
    );
    assert_eq!(
        reason(&bytes[..8]),
        "no IEND chunk: the file is incomplete (it ends after 8 bytes)"
    );
    assert_eq!(
        reason(&bytes[..12]),
        "the PNG is truncated: it ends inside the chunk header at byte 8 (the file has 12 bytes)"
    );
    let idat = offset_of(&bytes, b"IDAT");
    let idat_len = u32::from_be_bytes(bytes[idat..idat + 4].try_into().unwrap()) as usize;
    let cut = idat + 8 + idat_len / 2;
    assert_eq!(
        reason(&bytes[..cut]),
        format!(
            "the PNG is truncated: it ends inside the IDAT chunk at byte {idat} \
             (the file has {cut} bytes, the chunk would end at byte {})",
            idat + 12 + idat_len
        )
    );
    let iend = offset_of(&bytes, b"IEND");
    assert_eq!(
        reason(&bytes[..iend]),
        format!("no IEND chunk: the file is incomplete (it ends after {iend} bytes)")
    );
}

#[test]
fn names_a_damaged_chunk() {
    let mut bytes = gradient_png(32, 32);
    let idat = offset_of(&bytes, b"IDAT");
    bytes[idat + 8 + 5] ^= 0x10;
    assert_eq!(
        reason(&bytes),
        format!("chunk IDAT at byte {idat} is damaged (CRC mismatch)")
    );
}

#[test]
fn names_structural_faults() {
    let header = ihdr(4, 4, 8, 2, 0);
    let idat = zlib(&[0; 52]);
    let text = b"Comment\0hi".as_slice();
    let first_text = build(&[
        (b"tEXt", text),
        (b"IHDR", &header),
        (b"IDAT", &idat),
        (b"IEND", &[]),
    ]);
    assert_eq!(
        reason(&first_text),
        "the first chunk is tEXt, not IHDR: the file is damaged"
    );

    let cgbi = build(&[
        (b"CgBI", &[0x50, 0, 0x20, 6]),
        (b"IHDR", &header),
        (b"IEND", &[]),
    ]);
    assert!(reason(&cgbi).starts_with("this is an Apple-optimized PNG (CgBI"));

    let twice = build(&[
        (b"IHDR", &header),
        (b"IHDR", &header),
        (b"IDAT", &idat),
        (b"IEND", &[]),
    ]);
    assert_eq!(
        reason(&twice),
        "there is a second IHDR chunk at byte 33: the file is damaged"
    );

    let no_data = build(&[(b"IHDR", &header), (b"IEND", &[])]);
    assert_eq!(
        reason(&no_data),
        "no IDAT chunk: the PNG holds no image data"
    );

    let indexed = ihdr(4, 4, 8, 3, 0);
    let no_palette = build(&[(b"IHDR", &indexed), (b"IDAT", &idat), (b"IEND", &[])]);
    assert_eq!(
        reason(&no_palette),
        "the PNG uses a palette but has no PLTE chunk before its image data"
    );

    let mut text_mode = gradient_png(4, 4);
    text_mode.remove(4);
    assert_eq!(
        reason(&text_mode),
        "the PNG signature is damaged (was the file converted as text?)"
    );

    let mut bad_type = gradient_png(4, 4);
    bad_type[33 + 4] = b'#';
    assert!(
        reason(&bad_type).starts_with("there is no valid chunk at byte 33 (its type reads \"#"),
        "{}",
        reason(&bad_type)
    );
}

#[test]
fn names_bad_header_fields() {
    let idat = zlib(&[0; 4]);
    let with_header = |header: &[u8]| build(&[(b"IHDR", header), (b"IDAT", &idat), (b"IEND", &[])]);
    let cases: &[(Vec<u8>, &str)] = &[
        (
            ihdr(4, 4, 4, 2, 0),
            "the PNG header (IHDR) is invalid: bit depth 4 is not allowed with color type 2 (RGB), only 8 or 16",
        ),
        (
            ihdr(4, 4, 16, 3, 0),
            "the PNG header (IHDR) is invalid: bit depth 16 is not allowed with color type 3 (indexed (palette)), only 1, 2, 4 or 8",
        ),
        (
            ihdr(4, 4, 8, 5, 0),
            "the PNG header (IHDR) is invalid: color type 5 does not exist",
        ),
        (
            ihdr(4, 4, 8, 2, 2),
            "the PNG header (IHDR) is invalid: interlace method 2 does not exist (only 0 and 1)",
        ),
        (
            ihdr(0x8000_0000, 4, 8, 2, 0),
            "the PNG header (IHDR) is invalid: its size 2147483648 x 4 is above the PNG maximum of 2147483647 per side",
        ),
        (
            ihdr(0, 600, 8, 2, 0),
            "width or height is 0 (the header says 0 x 600)",
        ),
        (
            ihdr(4, 4, 8, 2, 0)[..12].to_vec(),
            "the PNG header (IHDR) is invalid: it is 12 bytes long instead of 13",
        ),
    ];
    for (header, want) in cases {
        assert_eq!(reason(&with_header(header)), *want);
    }
}

#[test]
fn refuses_a_huge_declared_size_without_reading_on() {
    // A correct header and a tiny, bogus IDAT: only the header is needed to refuse it.
    let header = ihdr(100_000, 100_000, 8, 6, 0);
    let bytes = build(&[
        (b"IHDR", &header),
        (b"IDAT", &zlib(&[0; 16])),
        (b"IEND", &[]),
    ]);
    let start = std::time::Instant::now();
    assert_eq!(
        reason(&bytes),
        "the image is 100000 x 100000 pixels, above the limit of 8192 x 8192"
    );
    assert_eq!(reason(&bytes[..33]), reason(&bytes));
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn applies_both_limits() {
    let long = handmade_png(40_000, 2);
    assert_eq!(
        reason(&long),
        "the image is 40000 x 2 pixels, and sides longer than 32768 pixels are not taken"
    );
    let small = Limits {
        max_pixels: 1000,
        max_side: 100,
    };
    let err = inspect(&handmade_png(50, 50), &small).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the image is 50 x 50 pixels, above the limit of 1000 pixels"
    );
    assert!(inspect(&handmade_png(8192, 1), &Limits::default()).is_ok());
}

#[test]
fn every_prefix_is_refused_without_panic() {
    let bytes = interlaced_png(&gradient(20, 20));
    for end in 0..bytes.len() {
        assert!(
            inspect(&bytes[..end], &Limits::default()).is_err(),
            "prefix {end}"
        );
    }
    assert!(inspect(&bytes, &Limits::default()).is_ok());
}

#[test]
fn random_damage_is_refused_or_harmless() {
    let bytes = gradient_png(24, 24);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2000 {
        let mut damaged = bytes.clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..damaged.len());
            damaged[at] = rng.u8(..);
        }
        // Anything goes except a panic; an intact walk must still describe a sane image.
        if let Ok(info) = inspect(&damaged, &Limits::default()) {
            assert!(info.width > 0 && info.height > 0);
        }
    }
}
