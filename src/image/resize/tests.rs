//! Tests for [`init_image`]: the no-copy path, crop and resize, pixel formats, bad data.

use ::image::{DynamicImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

use super::super::chunks::{ChunkName, Chunks, SIGNATURE, write_chunk};
use super::super::test_png::*;
use super::super::{ColorType, Limits, inspect};
use super::*;

/// Inspects, makes the init image at `target`, checks it is a valid 8-bit PNG of that size and
/// decodes it.
fn init(bytes: &[u8], target: (u32, u32)) -> (PngInfo, DynamicImage) {
    let info = inspect(bytes, &Limits::default()).unwrap();
    let out = init_image(bytes, &info, target).unwrap();
    assert!(matches!(out, Cow::Owned(_)));
    let out_info = inspect(&out, &Limits::default()).unwrap();
    assert_eq!((out_info.size(), out_info.bit_depth), (target, 8));
    let decoded = ::image::load_from_memory_with_format(&out, ::image::ImageFormat::Png).unwrap();
    (out_info, decoded)
}

fn close(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= 2)
}

#[test]
fn same_size_is_the_input_itself() {
    let bytes = gradient_png(128, 192);
    let info = inspect(&bytes, &Limits::default()).unwrap();
    let out = init_image(&bytes, &info, (128, 192)).unwrap();
    let Cow::Borrowed(out) = out else {
        panic!("copied")
    };
    assert!(std::ptr::eq(out, bytes.as_slice()));
}

#[test]
fn another_aspect_gives_exactly_the_target() {
    let bytes = gradient_png(300, 170);
    for target in [(256, 256), (128, 512), (1024, 128), (320, 192)] {
        let (info, image) = init(&bytes, target);
        assert_eq!(info.color_type, ColorType::Rgb);
        assert_eq!((image.width(), image.height()), target);
    }
}

#[test]
fn center_crop_keeps_the_center() {
    let red = Rgb([255, 0, 0]);
    let blue = Rgb([0, 0, 255]);
    let wide = RgbImage::from_fn(
        300,
        100,
        |x, _| if (100..200).contains(&x) { red } else { blue },
    );
    let tall = RgbImage::from_fn(
        100,
        300,
        |_, y| if (100..200).contains(&y) { red } else { blue },
    );
    for source in [wide, tall] {
        let bytes = encode(&DynamicImage::ImageRgb8(source));
        let (_, image) = init(&bytes, (128, 128));
        for pixel in image.to_rgb8().pixels() {
            assert!(close(&pixel.0, &red.0), "{pixel:?}");
        }
    }
}

#[test]
fn a_crop_alone_is_exact() {
    let source = gradient(200, 130);
    let bytes = encode(&DynamicImage::ImageRgb8(source.clone()));
    let (_, image) = init(&bytes, (200, 120));
    let image = image.to_rgb8();
    for (x, y, pixel) in image.enumerate_pixels() {
        assert_eq!(pixel, source.get_pixel(x, y + 5));
    }
}

#[test]
fn sixteen_bit_becomes_eight_bit() {
    let source: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(90, 60, Rgb([65535, 32896, 0]));
    let bytes = encode(&DynamicImage::ImageRgb16(source));
    let (info, image) = init(&bytes, (128, 128));
    assert_eq!(info.color_type, ColorType::Rgb);
    assert!(close(&image.to_rgb8().get_pixel(64, 64).0, &[255, 128, 0]));
}

#[test]
fn palette_becomes_rgb_or_rgba() {
    let colors = [[255, 0, 0], [0, 255, 0]];
    let opaque = indexed_png(50, 40, 2, &colors, None, |x, _| u8::from(x >= 25));
    let (info, image) = init(&opaque, (128, 128));
    assert_eq!(info.color_type, ColorType::Rgb);
    let image = image.to_rgb8();
    assert!(close(&image.get_pixel(10, 64).0, &[255, 0, 0]));
    assert!(close(&image.get_pixel(120, 64).0, &[0, 255, 0]));

    let see_through = indexed_png(50, 40, 1, &colors, Some(&[255, 0]), |x, _| {
        u8::from(x >= 25)
    });
    let (info, image) = init(&see_through, (128, 128));
    assert_eq!(info.color_type, ColorType::Rgba);
    let image = image.to_rgba8();
    assert_eq!(image.get_pixel(10, 64).0[3], 255);
    assert_eq!(image.get_pixel(120, 64).0[3], 0);
}

#[test]
fn rgba_keeps_alpha_and_gray_becomes_rgb() {
    let source = RgbaImage::from_pixel(70, 70, Rgba([10, 20, 30, 100]));
    let (info, image) = init(&encode(&DynamicImage::ImageRgba8(source)), (128, 128));
    assert_eq!(info.color_type, ColorType::Rgba);
    assert!(close(
        &image.to_rgba8().get_pixel(5, 5).0,
        &[10, 20, 30, 100]
    ));

    let gray = ::image::GrayImage::from_pixel(70, 70, ::image::Luma([77]));
    let (info, image) = init(&encode(&DynamicImage::ImageLuma8(gray)), (128, 128));
    assert_eq!(info.color_type, ColorType::Rgb);
    assert!(close(&image.to_rgb8().get_pixel(5, 5).0, &[77, 77, 77]));
}

#[test]
fn interlaced_input_is_decoded() {
    let source = RgbImage::from_pixel(33, 21, Rgb([9, 99, 199]));
    let (_, image) = init(&interlaced_png(&source), (128, 128));
    assert!(close(&image.to_rgb8().get_pixel(70, 70).0, &[9, 99, 199]));
}

#[test]
fn refuses_impossible_targets() {
    let bytes = gradient_png(10, 10);
    let info = inspect(&bytes, &Limits::default()).unwrap();
    let err = init_image(&bytes, &info, (0, 128)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot make an image of 0 x 128 pixels: each side must be 1 to 8192"
    );
    assert!(init_image(&bytes, &info, (8193, 128)).is_err());
}

#[test]
fn undecodable_data_is_an_error() {
    let header = ihdr(16, 16, 8, 2, 0);
    let bytes = build(&[
        (b"IHDR", &header),
        (b"IDAT", b"not zlib at all"),
        (b"IEND", &[]),
    ]);
    let info = inspect(&bytes, &Limits::default()).unwrap();
    let err = init_image(&bytes, &info, (128, 128)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the PNG's image data cannot be decoded: "),
        "{err}"
    );
}

#[test]
fn a_header_bigger_than_info_says_is_refused() {
    let bytes = gradient_png(300, 300);
    let mut info = inspect(&bytes, &Limits::default()).unwrap();
    info.width = 30;
    assert!(matches!(
        init_image(&bytes, &info, (128, 128)),
        Err(ImageError::Decode(_))
    ));
}

/// Rebuilds `bytes` with the data of every IDAT passed through `damage` (CRCs recomputed).
fn damage_idat(bytes: &[u8], damage: &mut impl FnMut(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    for chunk in Chunks::after_signature(bytes) {
        let chunk = chunk.unwrap();
        let mut data = chunk.data.to_vec();
        if chunk.name == ChunkName::IDAT {
            damage(&mut data);
        }
        write_chunk(&mut out, chunk.name, &data);
    }
    out
}

#[test]
fn damaged_image_data_never_panics() {
    let sources = [
        gradient_png(40, 30),
        interlaced_png(&gradient(19, 23)),
        indexed_png(21, 9, 4, &[[1, 2, 3]; 16], None, |x, y| {
            ((x + y) % 16) as u8
        }),
    ];
    let mut rng = fastrand::Rng::with_seed(11);
    for source in &sources {
        for _ in 0..300 {
            let damaged = damage_idat(source, &mut |data| {
                if rng.bool() {
                    let at = rng.usize(..data.len());
                    data[at] = rng.u8(..);
                } else {
                    data.truncate(rng.usize(..data.len()));
                }
            });
            if let Ok(info) = inspect(&damaged, &Limits::default()) {
                let _ = init_image(&damaged, &info, (128, 64));
            }
        }
    }
}

#[test]
fn center_crop_rectangles() {
    let cases = [
        ((300, 100), (128, 128), (100, 0, 100, 100)),
        ((100, 300), (128, 128), (0, 100, 100, 100)),
        ((1000, 750), (1024, 768), (0, 0, 1000, 750)),
        ((4032, 3024), (4032, 3008), (0, 8, 4032, 3008)),
        ((9000, 300), (8192, 320), (660, 0, 7680, 300)),
        ((1, 1), (8192, 128), (0, 0, 1, 1)),
        ((1000, 1), (128, 8192), (499, 0, 1, 1)),
    ];
    for (source, target, want) in cases {
        assert_eq!(
            center_crop(source, target),
            want,
            "{source:?} -> {target:?}"
        );
    }
}

#[test]
fn a_picture_many_times_the_target_is_shrunk_in_two_steps_to_nearly_the_same_pixels() {
    let big = RgbImage::from_fn(1200, 900, |x, y| {
        Rgb([
            (x * 255 / 1200) as u8,
            (y * 255 / 900) as u8,
            ((x / 40 + y / 40) % 2 * 200) as u8,
        ])
    });
    let two_steps = fit(&big, (128, 96));
    let direct = imageops::resize(&big, 128, 96, FilterType::Lanczos3);
    assert_eq!(two_steps.dimensions(), (128, 96));
    let total: u64 = two_steps
        .as_raw()
        .iter()
        .zip(direct.as_raw())
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let mean = total as f64 / two_steps.as_raw().len() as f64;
    assert!(mean < 2.0, "mean difference {mean}");
}
