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
            more: Vec::new(),
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

/// How many refused keys of one file are looked past before giving up on finding more.
const MOST_REFUSED_KEYS: usize = 64;

impl Source<'_> {
    /// The file's keys read into `T`, reporting every key serde refuses (unknown keys, wrong
    /// types), not only the first: the `key = value` line of each is blanked (offsets kept,
    /// so later positions stay true) and the text read again; each refusal goes to `problems`,
    /// worded by `word`. A syntax error, or a refusal that cannot be looked past (a missing
    /// key, a table of the wrong kind), ends the reading with every problem so far.
    pub(crate) fn deserialize_all<T: serde::de::DeserializeOwned>(
        &self,
        problems: &mut Problems,
        word: impl Fn(&toml::de::Error) -> ConfigError,
    ) -> Result<T, ConfigError> {
        let mut text = self.text.to_owned();
        for _ in 0..MOST_REFUSED_KEYS {
            let error = match toml::from_str::<T>(&text) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            problems.push(word(&error));
            match error
                .span()
                .and_then(|span| blank_key_line(&text, span.start))
            {
                Some(blanked) => text = blanked,
                None => break,
            }
        }
        Err(std::mem::take(problems)
            .finish(())
            .err()
            .unwrap_or_else(|| error_in_file(self.file, "cannot be read as TOML")))
    }
}

/// `text` with the `key = value` line holding `offset` made blank, if that leaves valid TOML
/// (a table header, or a value running over several lines, cannot be looked past).
fn blank_key_line(text: &str, offset: usize) -> Option<String> {
    let start = text
        .get(..offset)?
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    let end = text[offset..]
        .find('\n')
        .map_or(text.len(), |newline| offset + newline);
    let line = &text[start..end];
    if line.trim_start().starts_with('[') || !line.contains('=') {
        return None;
    }
    let mut blanked = String::with_capacity(text.len());
    blanked.push_str(&text[..start]);
    blanked.extend(std::iter::repeat_n(' ', line.len()));
    blanked.push_str(&text[end..]);
    blanked.parse::<toml::Table>().ok()?;
    Some(blanked)
}

/// An error about a file as a whole (missing, unreadable, not UTF-8): no position.
pub(crate) fn error_in_file(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        position: None,
        message: message.into(),
        more: Vec::new(),
    }
}

/// The problems found in one file so far: checking goes on past the first, so that the user
/// sees every problem of the file at once, in file order.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    /// The value, or (its problem noted) the type's default, so checking can go on.
    pub(crate) fn keep<T: Default>(&mut self, result: Result<T, ConfigError>) -> T {
        self.or(result, T::default())
    }

    /// The value, or (its problem noted) `fallback`.
    pub(crate) fn or<T>(&mut self, result: Result<T, ConfigError>, fallback: T) -> T {
        match result {
            Ok(value) => value,
            Err(error) => {
                self.0.push(error);
                fallback
            }
        }
    }

    pub(crate) fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// `value` when no problem was noted; else one error holding every problem, in file order.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        match combine(self.0) {
            None => Ok(value),
            Some(error) => Err(error),
        }
    }
}

/// Problems of one file as one error: the first in the file first (problems about the whole
/// file before any at a position), each once, the others in [`ConfigError::more`].
pub(crate) fn combine(errors: Vec<ConfigError>) -> Option<ConfigError> {
    let mut all: Vec<ConfigError> = Vec::new();
    for mut error in errors {
        let more = std::mem::take(&mut error.more);
        all.push(error);
        all.extend(more);
    }
    all.sort_by_key(|error| error.position);
    all.dedup();
    let mut all = all.into_iter();
    let mut first = all.next()?;
    first.more = all.collect();
    Some(first)
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
    fn problems_come_out_in_file_order_each_once() {
        let file = Path::new("/p/style.toml");
        let source = Source::new(file, "a = 1\nb = 2\nc = 3\n");
        let mut problems = Problems::default();
        assert_eq!(problems.keep::<u32>(Ok(7)), 7);
        assert_eq!(problems.keep::<u32>(Err(source.error_at(12..13, "c"))), 0);
        problems.push(source.error_at(0..1, "a"));
        problems.push(source.error_at(12..13, "c"));
        assert_eq!(problems.or(Err(source.error_at(6..7, "b")), 9), 9);
        let error = problems.finish(()).unwrap_err();
        assert_eq!(error.position, Some((1, 1)));
        assert_eq!(
            error.to_string(),
            "/p/style.toml:1:1: a\n/p/style.toml:2:1: b\n/p/style.toml:3:1: c"
        );
        assert_eq!(error.all().count(), 3);
        assert_eq!(Problems::default().finish(5), Ok(5));
    }

    #[test]
    fn every_refused_key_is_reported_and_the_rest_still_read() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            a: Option<u32>,
            b: Option<u32>,
        }
        let text = "x = 1\na = \"one\"\nb = 2\ny = [\n1]\nz = 3\n";
        let source = Source::new(Path::new("/d.toml"), text);
        let mut problems = Problems::default();
        let read: Result<Doc, _> =
            source.deserialize_all(&mut problems, |error| source.toml_error(error));
        // `y` runs over two lines: it cannot be looked past, so `z` is not reached.
        let error = read.unwrap_err();
        let spots: Vec<_> = error.all().map(|e| e.position).collect();
        assert_eq!(spots, [Some((1, 1)), Some((2, 5)), Some((4, 1))], "{error}");

        let text = "x = 1\nb = 2\n";
        let source = Source::new(Path::new("/d.toml"), text);
        let mut problems = Problems::default();
        let doc: Doc = source
            .deserialize_all(&mut problems, |error| source.toml_error(error))
            .unwrap();
        assert_eq!((doc.a, doc.b), (None, Some(2)));
        let error = problems.finish(()).unwrap_err();
        assert!(error.message.starts_with("unknown key `x`"), "{error}");
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
