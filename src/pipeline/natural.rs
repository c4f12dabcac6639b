//! Natural order of inbox paths, as Finder and file managers sort names: numbers compare as
//! numbers (`img_2` before `img_10`), letters without regard to case, folder by folder.
//! Files present together (a scan, a folder copied in) are taken in this order.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::path::Path;

/// Compares two paths component by component in natural order. Total: names that compare
/// equal naturally (`img_02`, `img_2`; `A`, `a`) fall back to byte order.
pub(crate) fn compare_paths(a: &Path, b: &Path) -> Ordering {
    let mut a = a.components();
    let mut b = b.components();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match compare_names(x.as_os_str(), y.as_os_str()) {
                Ordering::Equal => {}
                unequal => return unequal,
            },
        }
    }
}

/// Compares two file names in natural order, then by their bytes.
pub(crate) fn compare_names(a: &OsStr, b: &OsStr) -> Ordering {
    natural(&a.to_string_lossy(), &b.to_string_lossy())
        .then_with(|| a.as_encoded_bytes().cmp(b.as_encoded_bytes()))
}

/// Runs of ASCII digits compare by value; other characters by their lower case.
fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (Some(x), Some(y)) = (a.chars().next(), b.chars().next()) else {
            return a.is_empty().cmp(&b.is_empty()).reverse();
        };
        let order = if x.is_ascii_digit() && y.is_ascii_digit() {
            let (number_a, rest_a) = split_digits(a);
            let (number_b, rest_b) = split_digits(b);
            (a, b) = (rest_a, rest_b);
            compare_numbers(number_a, number_b)
        } else {
            (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            x.to_lowercase().cmp(y.to_lowercase())
        };
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// The leading run of ASCII digits, and what follows.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Two runs of digits by value, however long (no overflow): fewer significant digits is
/// smaller, then digit by digit.
fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut paths: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        paths.sort_by(|a, b| compare_paths(a, b));
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(
            sorted(&[
                "img_10.png",
                "img_2.png",
                "img_1.png",
                "img_100.png",
                "img_9.png"
            ]),
            [
                "img_1.png",
                "img_2.png",
                "img_9.png",
                "img_10.png",
                "img_100.png"
            ]
        );
        assert_eq!(
            sorted(&["IMG_0012.JPG", "IMG_0003.JPG", "IMG_0120.JPG"]),
            ["IMG_0003.JPG", "IMG_0012.JPG", "IMG_0120.JPG"]
        );
        assert_eq!(
            sorted(&["v1.10.png", "v1.9.png", "v1.9a.png"]),
            ["v1.9.png", "v1.9a.png", "v1.10.png"]
        );
    }

    #[test]
    fn case_does_not_split_names_and_the_order_stays_total() {
        assert_eq!(
            sorted(&["b.png", "C.png", "a.png", "A.png"]),
            ["A.png", "a.png", "b.png", "C.png"]
        );
        assert_eq!(
            sorted(&["img_2.png", "img_02.png"]),
            ["img_02.png", "img_2.png"]
        );
        assert_eq!(
            compare_names(OsStr::new("x"), OsStr::new("x")),
            Ordering::Equal
        );
        assert_eq!(sorted(&["ab", "a"]), ["a", "ab"]);
    }

    #[test]
    fn folders_sort_by_their_names_then_their_files() {
        assert_eq!(
            sorted(&[
                "batch10/img_1.png",
                "batch2/img_10.png",
                "batch2/img_9.png",
                "a.png"
            ]),
            [
                "a.png",
                "batch2/img_9.png",
                "batch2/img_10.png",
                "batch10/img_1.png"
            ]
        );
    }

    #[test]
    fn long_numbers_and_other_scripts_neither_overflow_nor_panic() {
        assert_eq!(
            sorted(&[
                "x99999999999999999999999999.png",
                "x100000000000000000000000000.png",
                "x5.png"
            ]),
            [
                "x5.png",
                "x99999999999999999999999999.png",
                "x100000000000000000000000000.png"
            ]
        );
        assert_eq!(
            sorted(&["café 10.png", "café 9.png", "ÉTÉ.png"]),
            ["café 9.png", "café 10.png", "ÉTÉ.png"]
        );
    }
}
