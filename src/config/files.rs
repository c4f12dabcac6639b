//! Reading a config or profile file as text, telling a missing file from one that cannot be read.

use std::io::ErrorKind;
use std::path::Path;

use super::ConfigError;
use super::diagnostic::error_in_file;

/// The file's text; `Ok(None)` when there is no file at `path`.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) if error.kind() == ErrorKind::IsADirectory => {
            return Err(error_in_file(path, "is a folder, not a TOML file"));
        }
        Err(error) => {
            return Err(error_in_file(
                path,
                format!("cannot read the file: {error}"),
            ));
        }
    };
    String::from_utf8(bytes).map(Some).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        error_in_file(
            path,
            format!("is not valid UTF-8 text (bad byte at offset {at}): save it as UTF-8"),
        )
    })
}
