//! Colours into sRGB, which is what the servers assume of the pixels they get: a picture
//! that carries an RGB ICC profile (the Display P3 of phone photos, a camera's Adobe RGB) has
//! its 8-bit values converted from it. Pictures without a profile are taken as sRGB. A
//! profile that cannot be read, or that is not an RGB one (a CMYK JPEG's, whose pixels the
//! decoder has already turned into RGB), leaves the values as they are.

use ::image::DynamicImage;
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// Converts `image` (8-bit RGB or RGBA; other kinds are left alone) from the colour space of
/// the ICC profile `icc` into sRGB, in place.
pub(super) fn into_srgb(image: &mut DynamicImage, icc: Option<&[u8]>) {
    let Some(profile) = icc.and_then(|icc| ColorProfile::new_from_slice(icc).ok()) else {
        return;
    };
    if profile.color_space != DataColorSpace::Rgb {
        return;
    }
    let srgb = ColorProfile::new_srgb();
    let (layout, pixels) = match image {
        DynamicImage::ImageRgb8(pixels) => (Layout::Rgb, pixels.as_mut()),
        DynamicImage::ImageRgba8(pixels) => (Layout::Rgba, pixels.as_mut()),
        _ => return,
    };
    let Ok(transform) =
        profile.create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
    else {
        return;
    };
    let mut converted = vec![0u8; pixels.len()];
    if transform.transform(pixels, &mut converted).is_ok() {
        pixels.copy_from_slice(&converted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::{Rgb, RgbImage, Rgba, RgbaImage};

    #[test]
    fn display_p3_values_become_srgb_values() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let mut image = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([100, 150, 200])));
        into_srgb(&mut image, Some(&p3));
        let [r, g, b] = image.into_rgb8().get_pixel(0, 0).0;
        // P3's gamut is wider: in sRGB the same colour has less red and more blue.
        assert!(r < 90 && (145..=160).contains(&g) && b > 200, "{r} {g} {b}");

        let mut image =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(1, 1, Rgba([128, 128, 128, 77])));
        into_srgb(&mut image, Some(&p3));
        let [r, g, b, a] = image.into_rgba8().get_pixel(0, 0).0;
        assert!(r.abs_diff(128) <= 1 && g.abs_diff(128) <= 1 && b.abs_diff(128) <= 1);
        assert_eq!(a, 77, "alpha is kept");
    }

    #[test]
    fn no_profile_or_an_unreadable_one_leaves_the_values() {
        for icc in [None, Some(&b"not an ICC profile"[..]), Some(&[][..])] {
            let mut image =
                DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([100, 150, 200])));
            into_srgb(&mut image, icc);
            assert_eq!(image.into_rgb8().get_pixel(0, 0).0, [100, 150, 200]);
        }
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        let mut image = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([100, 150, 200])));
        into_srgb(&mut image, Some(&srgb));
        let [r, g, b] = image.into_rgb8().get_pixel(0, 0).0;
        assert!(r.abs_diff(100) <= 1 && g.abs_diff(150) <= 1 && b.abs_diff(200) <= 1);
    }
}
