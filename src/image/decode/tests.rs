//! Tests for [`open`] and [`Picture::init_image`] on small pictures made here: every format,
//! every EXIF orientation, colour conversions and hostile headers.

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::codecs::webp::WebPEncoder;
use ::image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};

use super::super::orientation::exif_block;
use super::super::test_png::encode;
use super::*;

/// 64 x 32, split in four colour blocks (red, green / blue, white): any turn or flip gives
/// another arrangement.
fn quadrants() -> RgbImage {
    RgbImage::from_fn(64, 32, |x, y| match (x < 32, y < 16) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    })
}

fn orientation_exif(value: u32) -> Vec<u8> {
    exif_block(&[(0x0112, 3, 1, value)])
}

fn jpeg(image: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 95);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn webp(image: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = WebPEncoder::new_lossless(&mut out);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png(image: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// A TIFF of `samples` (RGB or CMYK) with an orientation tag when `orientation` is set.
fn tiff<C: tiff::encoder::colortype::ColorType<Inner = u8>>(
    (width, height): (u32, u32),
    samples: &[u8],
    orientation: Option<u16>,
) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let mut encoder = tiff::encoder::TiffEncoder::new(&mut out).unwrap();
    let mut image = encoder.new_image::<C>(width, height).unwrap();
    if let Some(value) = orientation {
        image
            .encoder()
            .write_tag(tiff::tags::Tag::Orientation, value)
            .unwrap();
    }
    image.write_data(samples).unwrap();
    out.into_inner()
}

/// The decoded PNG that `picture` sends at `target`.
fn sent(picture: &Picture<'_>, target: (u32, u32)) -> RgbImage {
    let png = picture.init_image(target).unwrap();
    ::image::load_from_memory_with_format(&png, ::image::ImageFormat::Png)
        .unwrap()
        .into_rgb8()
}

/// The colour blocks of an upright picture, read at the centres of its quarters: what the
/// quadrants picture turned by EXIF `value` must look like once turned back.
fn corners(image: &RgbImage) -> [[u8; 3]; 4] {
    let (w, h) = image.dimensions();
    let at = |x: u32, y: u32| {
        image
            .get_pixel(x, y)
            .0
            .map(|v| if v > 127 { 255 } else { 0 })
    };
    [
        at(w / 4, h / 4),
        at(3 * w / 4, h / 4),
        at(w / 4, 3 * h / 4),
        at(3 * w / 4, 3 * h / 4),
    ]
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

/// The picture a camera stores for an upright `quadrants()` scene with EXIF orientation
/// `value`: the inverse of the turn that orientation asks for.
fn stored_as(value: u8) -> RgbImage {
    let upright = DynamicImage::ImageRgb8(quadrants());
    let inverse = match value {
        6 => Orientation::Rotate270,
        8 => Orientation::Rotate90,
        other => Orientation::from_exif(other).unwrap(),
    };
    let mut stored = upright;
    stored.apply_orientation(inverse);
    stored.into_rgb8()
}

#[test]
fn every_orientation_of_a_jpeg_is_sent_upright() {
    for value in 1..=8u8 {
        let bytes = jpeg(&stored_as(value), Some(orientation_exif(value.into())));
        let picture = open(&bytes, Some(Format::Jpeg), &Limits::default()).unwrap();
        assert_eq!(picture.format, Format::Jpeg);
        assert_eq!(picture.upright_size(), (64, 32), "orientation {value}");
        let image = sent(&picture, (128, 64));
        assert_eq!(image.dimensions(), (128, 64));
        assert_eq!(
            corners(&image),
            [RED, GREEN, BLUE, WHITE],
            "orientation {value}"
        );
    }
}

#[test]
fn webp_tiff_and_png_orientations_are_applied_too() {
    let limits = Limits::default();
    let bytes = webp(&stored_as(6), Some(orientation_exif(6)));
    let picture = open(&bytes, None, &limits).unwrap();
    assert_eq!(
        (picture.format, picture.orientation),
        (Format::WebP, Orientation::Rotate90)
    );
    assert_eq!(
        corners(&sent(&picture, (128, 64))),
        [RED, GREEN, BLUE, WHITE]
    );

    let stored = stored_as(3);
    let bytes =
        tiff::<tiff::encoder::colortype::RGB8>(stored.dimensions(), stored.as_raw(), Some(3));
    let picture = open(&bytes, None, &limits).unwrap();
    assert_eq!(
        (picture.format, picture.orientation),
        (Format::Tiff, Orientation::Rotate180)
    );
    assert_eq!(
        corners(&sent(&picture, (128, 64))),
        [RED, GREEN, BLUE, WHITE]
    );

    // A PNG at the size to send, but stored sideways: turned, so not its own bytes.
    let bytes = png(&stored_as(8), Some(orientation_exif(8)));
    let picture = open(&bytes, None, &limits).unwrap();
    assert_eq!(picture.upright_size(), (64, 32));
    let out = picture.init_image((64, 32)).unwrap();
    assert!(matches!(out, Cow::Owned(_)));
    assert_eq!(
        corners(&sent(&picture, (64, 32))),
        [RED, GREEN, BLUE, WHITE]
    );
}

#[test]
fn an_upright_png_at_the_size_is_sent_as_it_is() {
    for exif in [None, Some(orientation_exif(1)), Some(exif_block(&[]))] {
        let bytes = png(&quadrants(), exif);
        let picture = open(&bytes, Some(Format::Png), &Limits::default()).unwrap();
        let Cow::Borrowed(out) = picture.init_image((64, 32)).unwrap() else {
            panic!("copied")
        };
        assert!(std::ptr::eq(out, bytes.as_slice()));
    }
}

#[test]
fn cmyk_grey_and_alpha_become_8_bit_rgb_or_rgba() {
    let limits = Limits::default();
    // Pure cyan, magenta, yellow and black ink, one block each.
    let cmyk: Vec<u8> = (0..16 * 16)
        .flat_map(|i| match (i % 16 < 8, i / 16 < 8) {
            (true, true) => [255, 0, 0, 0],
            (false, true) => [0, 255, 0, 0],
            (true, false) => [0, 0, 255, 0],
            (false, false) => [0, 0, 0, 255],
        })
        .collect();
    let bytes = tiff::<tiff::encoder::colortype::CMYK8>((16, 16), &cmyk, None);
    let picture = open(&bytes, Some(Format::Tiff), &limits).unwrap();
    let image = sent(&picture, (128, 128));
    assert_eq!(
        corners(&image),
        [[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0]]
    );

    let grey =
        ::image::GrayImage::from_fn(40, 40, |x, _| ::image::Luma([if x < 20 { 0 } else { 255 }]));
    let mut bytes = Vec::new();
    JpegEncoder::new(&mut bytes)
        .write_image(grey.as_raw(), 40, 40, ExtendedColorType::L8)
        .unwrap();
    let picture = open(&bytes, None, &limits).unwrap();
    let out = picture.init_image((128, 128)).unwrap();
    let decoded = ::image::load_from_memory(&out).unwrap();
    assert_eq!(decoded.color(), ::image::ColorType::Rgb8);

    let rgba = ::image::RgbaImage::from_pixel(20, 20, ::image::Rgba([10, 20, 30, 128]));
    let mut bytes = Vec::new();
    WebPEncoder::new_lossless(&mut bytes)
        .write_image(rgba.as_raw(), 20, 20, ExtendedColorType::Rgba8)
        .unwrap();
    let picture = open(&bytes, None, &limits).unwrap();
    let out = picture.init_image((128, 128)).unwrap();
    let decoded = ::image::load_from_memory(&out).unwrap().into_rgba8();
    assert_eq!(decoded.get_pixel(64, 64).0, [10, 20, 30, 128]);

    let sixteen = DynamicImage::ImageRgb16(::image::ImageBuffer::from_pixel(
        30,
        30,
        ::image::Rgb([65535u16, 0, 32896]),
    ));
    let bytes = encode(&sixteen);
    let picture = open(&bytes, None, &limits).unwrap();
    let image = sent(&picture, (128, 128));
    assert_eq!(image.get_pixel(64, 64).0, [255, 0, 128]);
}

#[test]
fn the_bytes_decide_the_format_not_the_name() {
    let bytes = jpeg(&quadrants(), None);
    let picture = open(&bytes, Some(Format::Png), &Limits::default()).unwrap();
    assert_eq!(picture.format, Format::Jpeg);
    let bytes = webp(&quadrants(), None);
    let picture = open(&bytes, Some(Format::Jpeg), &Limits::default()).unwrap();
    assert_eq!(picture.format, Format::WebP);
}

fn problem(bytes: &[u8], named: Format) -> String {
    open(bytes, Some(named), &Limits::default())
        .and_then(|picture| picture.init_image((128, 128)).map(|_| ()))
        .unwrap_err()
        .to_string()
}

#[test]
fn files_that_are_no_picture_get_a_reason() {
    assert_eq!(problem(b"", Format::Jpeg), "the file is empty");
    assert!(problem(&[0; 100], Format::WebP).contains("only zero bytes"));
    assert_eq!(
        problem(b"GIF89a\x01\0\x01\0", Format::Jpeg),
        "this is a GIF image, not a JPEG (drawdrop takes PNG, JPEG, WebP, HEIC and TIFF)"
    );
    assert!(problem(b"\x01\x02\x03\x04binary", Format::Tiff).starts_with("this is not a TIFF"));
    assert!(problem(b"GIF89a\x01\0", Format::Png).contains("a GIF image, not a PNG"));
    assert!(problem(b"\x89PN", Format::Png).contains("truncated"));
}

#[test]
fn hostile_headers_are_refused_before_decoding() {
    // A truncated JPEG.
    let whole = jpeg(&quadrants(), None);
    let cut = &whole[..whole.len() * 2 / 3];
    assert!(problem(cut, Format::Jpeg).contains("the JPEG is truncated"));
    // A JPEG whose frame header claims 60000 x 60000.
    let mut huge = whole.clone();
    let sof = huge.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
    assert!(
        problem(&huge, Format::Jpeg).contains("60000 x 60000 pixels, above the limit"),
        "{}",
        problem(&huge, Format::Jpeg)
    );
    // A TIFF claiming 100000 x 100000 with a few bytes of data.
    let bomb = tiff::<tiff::encoder::colortype::Gray8>((1, 1), &[0], None);
    let bomb = with_tiff_size(&bomb, 100_000, 100_000);
    let reason = problem(&bomb, Format::Tiff);
    assert!(reason.contains("100000 x 100000"), "{reason}");
    // EXIF that is absurd.
    for (exif, words) in [
        (orientation_exif(0), "its EXIF orientation is 0"),
        (orientation_exif(200), "its EXIF orientation is 200"),
        (b"II*\0\xff\xff\0\0".to_vec(), "past its end"),
    ] {
        let bytes = jpeg(&quadrants(), Some(exif));
        let reason = problem(&bytes, Format::Jpeg);
        assert!(
            reason.starts_with("the JPEG cannot be turned upright"),
            "{reason}"
        );
        assert!(reason.contains(words), "{reason}");
    }
}

/// `tiff` (little-endian, as the tiff crate writes it) with its first directory's width and
/// height changed.
fn with_tiff_size(tiff: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = tiff.to_vec();
    let ifd = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(out[ifd..ifd + 2].try_into().unwrap()) as usize;
    for entry in 0..count {
        let at = ifd + 2 + entry * 12;
        let tag = u16::from_le_bytes(out[at..at + 2].try_into().unwrap());
        let value = match tag {
            256 => width,
            257 => height,
            _ => continue,
        };
        out[at + 2..at + 4].copy_from_slice(&4u16.to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&value.to_le_bytes());
    }
    out
}

#[test]
fn a_display_p3_photo_is_sent_in_srgb() {
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let scene = RgbImage::from_pixel(32, 32, Rgb([100, 150, 200]));
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 100);
    encoder.set_icc_profile(p3.clone()).unwrap();
    encoder
        .write_image(scene.as_raw(), 32, 32, ExtendedColorType::Rgb8)
        .unwrap();
    let picture = open(&bytes, None, &Limits::default()).unwrap();
    let [r, g, b] = sent(&picture, (128, 128)).get_pixel(64, 64).0;
    assert!(r < 90 && (140..=165).contains(&g) && b > 200, "{r} {g} {b}");
    // The same values without a profile are taken as sRGB already.
    let picture_bytes = jpeg(&scene, None);
    let picture = open(&picture_bytes, None, &Limits::default()).unwrap();
    let [r, _, _] = sent(&picture, (128, 128)).get_pixel(64, 64).0;
    assert!(r.abs_diff(100) <= 3, "{r}");
}
