//! Turning problems into [`ConfigError`]s: byte spans become 1-based `line:col`, and toml's and
//! serde's messages are reworded into plain one-line sentences that say what is allowed.

use std::ops::Range;
use std::path::Path;

use super::ConfigError;

/// A file's text and name, so that a byte span in it can become an error with a position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Source { file, text }
    }

    /// An error pointing at the start of `span`.
    pub(crate) fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: Some(line_col(self.text, span.start)),
            message: message.into(),
        }
    }

    /// An error at `span` when there is one, else about the file as a whole.
    pub(crate) fn error_maybe_at(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        match span {
            Some(span) => self.error_at(span, message),
            None => error_in_file(self.file, message),
        }
    }

    /// A syntax, type or unknown-key error from toml, at toml's span, with toml's message only
    /// (not its multi-line rendering with a snippet).
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let mut message = plain_message(error.message());
        // toml says only "duplicate key"; the span holds the key.
        if message == "duplicate key"
            && let Some(key) = error.span().and_then(|span| self.text.get(span))
        {
            message = format!("duplicate key `{key}`: each key may be set once per table");
        }
        self.error_maybe_at(error.span(), message)
    }
}

/// An error about a file as a whole (missing, unreadable, not UTF-8): no position.
pub(crate) fn error_in_file(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        position: None,
        message: message.into(),
    }
}

/// 1-based line and column of byte `offset` in `text`; the column counts characters, not bytes,
/// so that it matches what an editor shows. An offset past the end points just after the end.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// serde's and toml's wording, made plain: "unknown field `x`, expected one of `a`, `b`"
/// becomes "unknown key `x` (allowed: `a`, `b`)", Rust type names become TOML ones.
pub(crate) fn plain_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return match rest.split_once(", expected ") {
            Some((key, allowed)) => {
                let allowed = allowed.strip_prefix("one of ").unwrap_or(allowed);
                format!(
                    "unknown key {key} (allowed: {})",
                    allowed.replace(" or ", ", ")
                )
            }
            None => format!("unknown key {rest}"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    let mut plain = message.to_owned();
    if let Some(at) = plain.find("expected struct ") {
        plain.replace_range(at.., "expected a table");
    }
    plain
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
}

/// The key an "unknown key" error is about, taken from serde's message.
pub(crate) fn unknown_key(error: &toml::de::Error) -> Option<&str> {
    let rest = error.message().strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 11), (2, 6));
    }

    #[test]
    fn line_col_counts_multibyte_characters_once() {
        // "é" is 2 bytes, "日" is 3, "🎨" is 4: the value after them is still column 9.
        let text = "# x\np = \"é日🎨\" x";
        let offset = text.rfind('x').unwrap_or_default();
        assert_eq!(line_col(text, offset), (2, 11));
        let text = "é日🎨 = 1";
        assert_eq!(line_col(text, text.find('=').unwrap_or_default()), (1, 5));
    }

    #[test]
    fn line_col_handles_crlf_end_and_inside_a_character() {
        assert_eq!(line_col("a\r\nb", 3), (2, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn serde_wording_is_made_plain() {
        assert_eq!(
            plain_message("unknown field `b`, expected one of `a`, `c`, `d`"),
            "unknown key `b` (allowed: `a`, `c`, `d`)"
        );
        assert_eq!(
            plain_message("unknown field `foo`, expected `url` or `n`"),
            "unknown key `foo` (allowed: `url`, `n`)"
        );
        assert_eq!(plain_message("missing field `file`"), "missing key `file`");
        assert_eq!(
            plain_message("invalid type: integer `3`, expected struct Server"),
            "invalid type: integer `3`, expected a table"
        );
        assert_eq!(
            plain_message("invalid type: integer `3`, expected a map"),
            "invalid type: integer `3`, expected a table"
        );
    }
}
