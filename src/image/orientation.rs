//! Which way is up: the EXIF orientation tag (cameras and phones store pictures as the sensor
//! saw them and say, in this tag, how to turn them), read strictly from a TIFF-structured EXIF
//! block, and the size a picture has once turned.
//!
//! The reader looks only at the first directory (IFD0, where the tag lives), checks every
//! offset against the block's length before following it, and never allocates: a block with
//! absurd offsets or counts is a [`ExifProblem`], never a crash or a long loop.

pub(crate) use ::image::metadata::Orientation;

/// The TIFF tag number of the orientation.
const ORIENTATION_TAG: u16 = 0x0112;
/// TIFF field types that can hold the orientation: SHORT (the standard) and LONG.
const SHORT: u16 = 3;
const LONG: u16 = 4;
/// Bytes of one directory entry: tag, type, count, value.
const ENTRY_LEN: usize = 12;

/// Why the orientation of a picture cannot be told. `Display` is a reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExifProblem {
    /// The block's structure is broken.
    #[error(
        "its EXIF data is damaged ({0}), so which way is up cannot be told; \
         save the picture again with any photo editor"
    )]
    Damaged(String),
    /// A tag value that is no orientation.
    #[error(
        "its EXIF orientation is {0}, which is none of the eight orientations (1 to 8), so which \
         way is up cannot be told; save the picture again with any photo editor"
    )]
    BadOrientation(u32),
}

/// The orientation an EXIF block gives: [`Orientation::NoTransforms`] when it has no
/// orientation tag. `exif` is the TIFF structure (`II*\0` or `MM\0*` first), optionally after
/// an `Exif\0\0` header (as some writers leave it in PNG and WebP chunks).
pub(super) fn exif_orientation(exif: &[u8]) -> Result<Orientation, ExifProblem> {
    let exif = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let damaged = |reason: String| Err(ExifProblem::Damaged(reason));
    let big_endian = match exif.get(..4) {
        Some(b"II*\0") => false,
        Some(b"MM\0*") => true,
        _ => return damaged("it does not start with a TIFF header".into()),
    };
    let read = Reader { exif, big_endian };
    let Some(directory) = read.u32(4) else {
        return damaged(format!("it is only {} bytes long", exif.len()));
    };
    let Some(count) = usize::try_from(directory).ok().and_then(|at| read.u16(at)) else {
        return damaged(format!(
            "its first directory would start at byte {directory}, past its end at byte {}",
            exif.len()
        ));
    };
    let entries = directory as usize + 2;
    let room = (exif.len() - entries) / ENTRY_LEN;
    if usize::from(count) > room {
        return damaged(format!(
            "its first directory claims {count} entries, but only {room} fit in the {} bytes after it",
            exif.len() - entries
        ));
    }
    for index in 0..usize::from(count) {
        let at = entries + index * ENTRY_LEN;
        if read.u16(at) != Some(ORIENTATION_TAG) {
            continue;
        }
        let value = match read.u16(at + 2) {
            Some(SHORT) => read.u16(at + 8).map(u32::from),
            Some(LONG) => read.u32(at + 8),
            _ => None,
        };
        let value = match (value, read.u32(at + 4)) {
            (Some(value), Some(1)) => value,
            _ => return damaged("its orientation tag is not a single number".into()),
        };
        return u8::try_from(value)
            .ok()
            .and_then(Orientation::from_exif)
            .ok_or(ExifProblem::BadOrientation(value));
    }
    Ok(Orientation::NoTransforms)
}

/// Whether turning by `orientation` swaps width and height (the quarter turns).
pub(super) fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The size of a picture stored at `stored` once turned upright by `orientation`.
pub(super) fn upright((width, height): (u32, u32), orientation: Orientation) -> (u32, u32) {
    if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Bounds-checked reads in the block's byte order.
struct Reader<'a> {
    exif: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let bytes: [u8; 2] = self.exif.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let bytes: [u8; 4] = self.exif.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }
}

/// An EXIF block (TIFF structure, little-endian) whose first directory holds `entries`
/// (tag, type, count, value): for tests here and in the rest of the crate.
#[cfg(test)]
pub(crate) fn exif_block(entries: &[(u16, u16, u32, u32)]) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for &(tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        if kind == SHORT {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orientation_block(value: u32) -> Vec<u8> {
        exif_block(&[(0x010f, 2, 4, 0), (ORIENTATION_TAG, SHORT, 1, value)])
    }

    #[test]
    fn reads_each_orientation_in_both_byte_orders() {
        for value in 1..=8u8 {
            let want = Orientation::from_exif(value).unwrap();
            assert_eq!(exif_orientation(&orientation_block(value.into())), Ok(want));
            let mut big = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0".to_vec();
            big.extend_from_slice(&[value, 0, 0, 0, 0, 0, 0]);
            assert_eq!(exif_orientation(&big), Ok(want));
            let mut prefixed = b"Exif\0\0".to_vec();
            prefixed.extend_from_slice(&orientation_block(value.into()));
            assert_eq!(exif_orientation(&prefixed), Ok(want));
        }
        let long = exif_block(&[(ORIENTATION_TAG, LONG, 1, 6)]);
        assert_eq!(exif_orientation(&long), Ok(Orientation::Rotate90));
    }

    #[test]
    fn no_tag_is_upright() {
        let block = exif_block(&[(0x010f, 2, 4, 0)]);
        assert_eq!(exif_orientation(&block), Ok(Orientation::NoTransforms));
        assert_eq!(
            exif_orientation(&exif_block(&[])),
            Ok(Orientation::NoTransforms)
        );
    }

    #[test]
    fn absurd_values_are_problems() {
        for value in [0, 9, 200, 70_000] {
            assert_eq!(
                exif_orientation(&exif_block(&[(ORIENTATION_TAG, LONG, 1, value)])),
                Err(ExifProblem::BadOrientation(value))
            );
        }
        let problem = |bytes: &[u8]| match exif_orientation(bytes) {
            Err(ExifProblem::Damaged(reason)) => reason,
            other => panic!("{other:?} for {bytes:?}"),
        };
        assert!(problem(b"").contains("TIFF header"));
        assert!(problem(b"II*\0\x08").contains("only 5 bytes"));
        assert!(problem(b"II*\0\xff\xff\xff\xff\0\0").contains("past its end"));
        // A directory that claims 65535 entries in a block of a few bytes.
        let mut huge = orientation_block(6);
        huge[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(problem(&huge).contains("claims 65535 entries"));
        let twice = exif_block(&[(ORIENTATION_TAG, SHORT, 2, 6)]);
        assert!(problem(&twice).contains("not a single number"));
        let text = exif_block(&[(ORIENTATION_TAG, 2, 1, 6)]);
        assert!(problem(&text).contains("not a single number"));
    }

    #[test]
    fn quarter_turns_swap_the_sides() {
        for value in 1..=8u8 {
            let orientation = Orientation::from_exif(value).unwrap();
            let want = if value >= 5 { (3, 4) } else { (4, 3) };
            assert_eq!(upright((4, 3), orientation), want, "{value}");
        }
    }
}
