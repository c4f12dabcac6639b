//! Value checks shared by the config file and profiles: ranges, choices, non-empty strings.
//! Every failure points at the value and says what is allowed.

use std::fmt::Display;
use std::ops::RangeInclusive;

use toml::Spanned;

use super::ConfigError;
use super::diagnostic::Source;
use super::raw::{Integer, Number};

/// An integer within `range`, converted to the type the config uses.
pub(crate) fn integer_in<T: TryFrom<i64>>(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<Integer>,
    range: RangeInclusive<i64>,
) -> Result<T, ConfigError> {
    let Integer(number) = *value.get_ref();
    let out_of_range = || out_of_range(source, key, value, number, &range);
    if !range.contains(&number) {
        return Err(out_of_range());
    }
    T::try_from(number).map_err(|_| out_of_range())
}

/// A finite number within `range`.
pub(crate) fn number_in(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<Number>,
    range: RangeInclusive<f64>,
) -> Result<f64, ConfigError> {
    let Number(number) = *value.get_ref();
    if !number.is_finite() {
        return Err(source.error_at(
            value.span(),
            format!(
                "`{key}` must be a finite number (allowed: {} to {}), not {number}",
                range.start(),
                range.end()
            ),
        ));
    }
    if !range.contains(&number) {
        return Err(out_of_range(source, key, value, number, &range));
    }
    Ok(number)
}

fn out_of_range<V, N: Display>(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<V>,
    number: N,
    range: &RangeInclusive<N>,
) -> ConfigError {
    source.error_at(
        value.span(),
        format!(
            "`{key}` = {number} is out of range (allowed: {} to {})",
            range.start(),
            range.end()
        ),
    )
}

/// One of a fixed set of words; the index into `allowed` of the one given.
pub(crate) fn choice(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
    allowed: &[&str],
) -> Result<usize, ConfigError> {
    allowed
        .iter()
        .position(|word| word == value.get_ref())
        .ok_or_else(|| {
            let allowed: Vec<String> = allowed.iter().map(|word| format!("\"{word}\"")).collect();
            source.error_at(
                value.span(),
                format!(
                    "`{key}` = \"{}\" is not allowed (allowed: {})",
                    value.get_ref(),
                    allowed.join(", ")
                ),
            )
        })
}

/// A string with something in it besides spaces; `advice` (if any) ends the error message.
pub(crate) fn non_empty(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
    advice: Option<&str>,
) -> Result<String, ConfigError> {
    if value.get_ref().trim().is_empty() {
        let message = match advice {
            Some(advice) => format!("`{key}` must not be empty: {advice}"),
            None => format!("`{key}` must not be empty"),
        };
        return Err(source.error_at(value.span(), message));
    }
    Ok(value.get_ref().clone())
}
