//! Paths in the config file: `~` expansion, paths relative to the config file's folder, lexical
//! normalization, the rule that inbox and outbox must not contain each other, and the names of
//! the outbox's own folders (which no profile may take).

use std::path::{Component, Path, PathBuf};

/// The outbox's own folders, beside the results.
pub const ORIGINALS: &str = "originals";
pub const FAILED: &str = "failed";
pub const LOGS: &str = "logs";
pub const GALLERY: &str = "gallery";
/// Top-level outbox folders that belong to drawdrop, not to results.
pub const RESERVED: [&str; 4] = [ORIGINALS, FAILED, LOGS, GALLERY];

/// Whether `name` is one of [`RESERVED`], in any case (macOS folders ignore case).
pub fn is_reserved(name: &str) -> bool {
    RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// The user's home folder: `$HOME` when set (as on every Unix), else the account's home.
pub fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf())
}

/// `~` and `~/...` with the home folder put in; anything else (and everything when the home
/// folder is unknown) unchanged.
pub fn expand_tilde(path: &str) -> PathBuf {
    let home = home_dir();
    expand_tilde_with(path, home.as_deref()).unwrap_or_else(|| PathBuf::from(path))
}

/// `~` expansion against a given home folder; `None` when `path` needs a home that is unknown.
pub(crate) fn expand_tilde_with(path: &str, home: Option<&Path>) -> Option<PathBuf> {
    let rest = match path.strip_prefix('~') {
        None => return Some(PathBuf::from(path)),
        Some(rest) => rest,
    };
    if rest.is_empty() {
        return home.map(Path::to_path_buf);
    }
    match rest.strip_prefix('/') {
        Some(below) => home.map(|home| home.join(below)),
        // `~name/...` is another user's home: not expanded, taken literally.
        None => Some(PathBuf::from(path)),
    }
}

/// A folder named in the config file, made absolute: `~` expanded, then a relative path taken
/// relative to `base` (the config file's folder), then `.` and `..` resolved lexically.
pub(crate) fn resolve_folder(
    value: &str,
    base: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, String> {
    if value.trim().is_empty() {
        return Err("must name a folder, not be empty".to_owned());
    }
    if value.starts_with('~') && !(value == "~" || value.starts_with("~/")) {
        return Err(format!(
            "\"{value}\": only `~` and `~/...` are expanded (to your home folder); write the full path"
        ));
    }
    let expanded = expand_tilde_with(value, home).ok_or_else(|| {
        format!(
            "\"{value}\": cannot expand `~` because the home folder is unknown (HOME is not set)"
        )
    })?;
    Ok(normalize(&base.join(expanded)))
}

/// `path` with `.` removed and `..` applied to the component before it, without asking the file
/// system (the folders may not exist yet). `..` at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match normal.components().next_back() {
                Some(Component::Normal(_)) => {
                    normal.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => normal.push(".."),
            },
            other => normal.push(other),
        }
    }
    normal
}

/// Which of two folders lies inside the other, if either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nesting {
    Apart,
    Same,
    InboxInsideOutbox,
    OutboxInsideInbox,
}

/// Compares lexically normalized absolute paths, component by component.
pub(crate) fn nesting(inbox: &Path, outbox: &Path) -> Nesting {
    if inbox == outbox {
        Nesting::Same
    } else if inbox.starts_with(outbox) {
        Nesting::InboxInsideOutbox
    } else if outbox.starts_with(inbox) {
        Nesting::OutboxInsideInbox
    } else {
        Nesting::Apart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home/ann";

    fn expand(path: &str) -> Option<PathBuf> {
        expand_tilde_with(path, Some(Path::new(HOME)))
    }

    #[test]
    fn tilde_is_expanded_only_alone_or_before_a_slash() {
        assert_eq!(expand("~"), Some(PathBuf::from(HOME)));
        assert_eq!(expand("~/"), Some(PathBuf::from("/home/ann/")));
        assert_eq!(
            expand("~/DrawDrop/Inbox"),
            Some(PathBuf::from("/home/ann/DrawDrop/Inbox"))
        );
        assert_eq!(expand("~bob/x"), Some(PathBuf::from("~bob/x")));
        assert_eq!(expand("/abs/~/x"), Some(PathBuf::from("/abs/~/x")));
        assert_eq!(expand("rel"), Some(PathBuf::from("rel")));
        assert_eq!(expand_tilde_with("~/x", None), None);
        assert_eq!(expand_tilde_with("/x", None), Some(PathBuf::from("/x")));
    }

    #[test]
    fn expand_tilde_uses_the_real_home() {
        match home_dir() {
            Some(home) => assert_eq!(expand_tilde("~/a"), home.join("a")),
            None => assert_eq!(expand_tilde("~/a"), PathBuf::from("~/a")),
        }
        assert_eq!(expand_tilde("/a"), PathBuf::from("/a"));
    }

    #[test]
    fn folders_are_resolved_against_the_config_folder() {
        let home = Some(Path::new(HOME));
        let base = Path::new("/etc/drawdrop");
        let resolve = |value| resolve_folder(value, base, home);
        assert_eq!(resolve("in"), Ok(PathBuf::from("/etc/drawdrop/in")));
        assert_eq!(
            resolve("./in/../out/."),
            Ok(PathBuf::from("/etc/drawdrop/out"))
        );
        assert_eq!(resolve("../x"), Ok(PathBuf::from("/etc/x")));
        assert_eq!(resolve("/srv/in"), Ok(PathBuf::from("/srv/in")));
        assert_eq!(resolve("~/in"), Ok(PathBuf::from("/home/ann/in")));
        assert!(resolve("").is_err());
        assert!(resolve("~bob/in").unwrap_err().contains("only `~`"));
        assert!(
            resolve_folder("~/in", base, None)
                .unwrap_err()
                .contains("HOME")
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("../../b")), PathBuf::from("../../b"));
    }

    #[test]
    fn nesting_compares_whole_components() {
        let p = Path::new;
        assert_eq!(nesting(p("/d/in"), p("/d/in")), Nesting::Same);
        assert_eq!(
            nesting(p("/d/out/in"), p("/d/out")),
            Nesting::InboxInsideOutbox
        );
        assert_eq!(
            nesting(p("/d/in"), p("/d/in/out")),
            Nesting::OutboxInsideInbox
        );
        assert_eq!(nesting(p("/d/in"), p("/d/inbox")), Nesting::Apart);
        assert_eq!(nesting(p("/d/in"), p("/d/out")), Nesting::Apart);
    }
}
