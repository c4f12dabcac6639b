//! The size rule: what width and height drawdrop sends for an input and a profile.
//!
//! Draw Things wants the init image exactly at the requested size, in multiples of 64 within
//! 128..=8192 (see docs/protocols.md), so every size drawdrop sends follows this rule.

/// Smallest side drawdrop sends.
pub(crate) const MIN_SIDE: u32 = 128;
/// Largest side drawdrop sends.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Every side drawdrop sends is a multiple of this.
pub(crate) const SIDE_STEP: u32 = 64;
/// One megapixel as `max_megapixels` counts it: 1024 x 1024 pixels, so that 1.0 is SDXL's
/// 1024 x 1024 and 0.25 is SD 1.5's 512 x 512.
pub(crate) const MEGAPIXEL: u64 = 1024 * 1024;
/// `max_megapixels` when a profile does not set it.
pub(crate) const DEFAULT_MAX_MEGAPIXELS: f64 = 1.0;

/// The pixel count `megapixels` stands for (see [`MEGAPIXEL`]).
pub(crate) fn pixels_for_megapixels(megapixels: f64) -> u64 {
    (megapixels * MEGAPIXEL as f64).round() as u64
}

/// The size to send for an input of `input` = (width, height) pixels (upright).
///
/// `wanted` is the profile's (width, height), each optional (and normally already a multiple of
/// 64 in 128..=8192; other values are snapped the same way). `max_pixels` is the profile's
/// `max_megapixels` as a pixel count.
/// - neither set: the input's width and height, first scaled down keeping the aspect ratio
///   when the input has more than `max_pixels`, then each rounded to the nearest multiple of
///   64 (halves round up) and clamped to 128..=8192;
/// - both set: those;
/// - one set: the other follows the input's aspect ratio, rounded to the nearest multiple of 64
///   and clamped.
///
/// The init image is then center-cropped to the result's aspect ratio and resized
/// ([`init_image`](super::init_image)).
pub(crate) fn target_size(
    input: (u32, u32),
    wanted: (Option<u32>, Option<u32>),
    max_pixels: u64,
) -> (u32, u32) {
    let (in_w, in_h) = (u64::from(input.0.max(1)), u64::from(input.1.max(1)));
    match wanted {
        (None, None) if in_w * in_h > max_pixels.max(1) => {
            // Scaled sides as fractions of 1/1024 pixel, snapped like the input's.
            let scale = (max_pixels.max(1) as f64 / (in_w * in_h) as f64).sqrt() * 1024.0;
            let scaled = |side: u64| (side as f64 * scale).round() as u64;
            (snap(scaled(in_w), 1024), snap(scaled(in_h), 1024))
        }
        (None, None) => (snap(in_w, 1), snap(in_h, 1)),
        (Some(w), Some(h)) => (snap(w.into(), 1), snap(h.into(), 1)),
        (Some(w), None) => {
            let w = snap(w.into(), 1);
            (w, snap(u64::from(w) * in_h, in_w))
        }
        (None, Some(h)) => {
            let h = snap(h.into(), 1);
            (snap(u64::from(h) * in_w, in_h), h)
        }
    }
}

/// The multiple of 64 nearest to `numerator / denominator` (halves up), within 128..=8192.
/// `denominator` is at least 1; both are far below 2^57, so nothing overflows.
fn snap(numerator: u64, denominator: u64) -> u32 {
    let step = u64::from(SIDE_STEP);
    let steps = (2 * numerator + step * denominator) / (2 * step * denominator);
    let side = (steps * step).clamp(MIN_SIDE.into(), MAX_SIDE.into());
    u32::try_from(side).unwrap_or(MAX_SIDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input size, profile's (width, height), expected size.
    type Case = ((u32, u32), (Option<u32>, Option<u32>), (u32, u32));

    #[test]
    fn follows_the_size_rule() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ((1024, 1024), (None, None), (1024, 1024)),
            ((1000, 750), (None, None), (1024, 768)),
            ((100, 100), (None, None), (128, 128)),
            ((9000, 300), (None, None), (8192, 320)),
            ((4032, 3024), (None, None), (4032, 3008)),
            ((1, 1), (None, None), (128, 128)),
            ((u32::MAX, u32::MAX), (None, None), (8192, 8192)),
            // Halves round up, just below a half rounds down.
            ((1056, 1055), (None, None), (1088, 1024)),
            ((160, 159), (None, None), (192, 128)),
            // The profile's size wins.
            ((1000, 750), (Some(512), Some(512)), (512, 512)),
            ((20, 20000), (Some(1024), Some(768)), (1024, 768)),
            // One side set: the other follows the aspect ratio.
            ((1600, 1200), (Some(1024), None), (1024, 768)),
            ((1600, 1200), (None, Some(768)), (1024, 768)),
            ((1000, 750), (Some(512), None), (512, 384)),
            ((3000, 2000), (Some(1024), None), (1024, 704)),   // 682.67 -> 704
            ((1024, 608), (Some(1024), None), (1024, 640)),    // exactly 608 = 9.5 x 64 -> up
            ((1000, 10), (Some(8192), None), (8192, 128)),     // clamped up
            ((10, 1000), (Some(1024), None), (1024, 8192)),    // clamped down
            // Values off the grid are snapped like the input's.
            ((1000, 750), (Some(1000), Some(8500)), (1024, 8192)),
            ((0, 0), (None, Some(512)), (512, 512)),
        ];
        for &(input, wanted, want) in cases {
            assert_eq!(
                target_size(input, wanted, u64::MAX),
                want,
                "{input:?} {wanted:?}"
            );
        }
    }

    #[test]
    fn larger_pictures_are_scaled_down_to_max_megapixels_first() {
        let one = pixels_for_megapixels(DEFAULT_MAX_MEGAPIXELS);
        #[rustfmt::skip]
        let cases: &[(u32, u32, u64, (u32, u32))] = &[
            // A 12 MP phone photo, upright or sideways.
            (4032, 3024, one, (1152, 896)),
            (3024, 4032, one, (896, 1152)),
            // SDXL's own size is exactly one megapixel: untouched.
            (1024, 1024, one, (1024, 1024)),
            (1000, 750, one, (1024, 768)),
            // SD 1.5's quarter.
            (4000, 4000, pixels_for_megapixels(0.25), (512, 512)),
            (1920, 1080, pixels_for_megapixels(0.25), (704, 384)),
            // A larger limit lets more through.
            (4032, 3024, pixels_for_megapixels(16.0), (4032, 3008)),
            // A panorama keeps its aspect, within the side limits.
            (20000, 1000, one, (4608, 256)),
        ];
        for &(w, h, max, want) in cases {
            assert_eq!(
                target_size((w, h), (None, None), max),
                want,
                "{w}x{h} {max}"
            );
        }
        // The profile's width or height still wins.
        assert_eq!(
            target_size((4032, 3024), (Some(2048), None), one),
            (2048, 1536)
        );
        assert_eq!(
            target_size((4032, 3024), (Some(4032), Some(3008)), one),
            (4032, 3008)
        );
    }

    #[test]
    fn results_are_always_on_the_grid() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..10_000 {
            let input = (rng.u32(..), rng.u32(..));
            let pick = |rng: &mut fastrand::Rng| rng.bool().then(|| rng.u32(..));
            let wanted = (pick(&mut rng), pick(&mut rng));
            let (w, h) = target_size(input, wanted, rng.u64(..));
            for side in [w, h] {
                assert!((MIN_SIDE..=MAX_SIDE).contains(&side) && side % SIDE_STEP == 0);
            }
        }
    }
}
