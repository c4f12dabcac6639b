//! Finding the config file: `--config FILE`, else `$DRAWDROP_CONFIG`, else `config.toml` in the
//! platform's config folder (`~/.config/drawdrop/` on Linux, honouring `XDG_CONFIG_HOME`;
//! `~/Library/Application Support/drawdrop/` on macOS).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::diagnostic::error_in_file;
use super::paths::expand_tilde;
use super::{ConfigError, ConfigSource, Located};

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "DRAWDROP_CONFIG";

/// The config file's name in the platform config folder.
pub const CONFIG_FILE_NAME: &str = "config.toml";

/// Finds the config file from the `--config` flag, the process's `$DRAWDROP_CONFIG` and the
/// platform config folder. The file need not exist; the path is made absolute.
pub fn locate(flag: Option<&Path>) -> Result<Located, ConfigError> {
    let platform_config_dir =
        directories::BaseDirs::new().map(|dirs| dirs.config_dir().to_path_buf());
    locate_with(
        flag,
        std::env::var_os(CONFIG_ENV),
        platform_config_dir.as_deref(),
    )
}

/// [`locate`] with its inputs given: `env_value` is `$DRAWDROP_CONFIG` (empty counts as unset),
/// `platform_config_dir` the folder that holds per-user config folders (`~/.config` on Linux,
/// `~/Library/Application Support` on macOS), `None` when it is unknown.
pub fn locate_with(
    flag: Option<&Path>,
    env_value: Option<OsString>,
    platform_config_dir: Option<&Path>,
) -> Result<Located, ConfigError> {
    let (path, source) = if let Some(flag) = flag {
        (flag.to_path_buf(), ConfigSource::Flag)
    } else if let Some(value) = env_value.filter(|value| !value.is_empty()) {
        (PathBuf::from(value), ConfigSource::Env)
    } else if let Some(dir) = platform_config_dir {
        (default_config_path(dir), ConfigSource::Default)
    } else {
        return Err(error_in_file(
            Path::new(CONFIG_FILE_NAME),
            format!(
                "cannot find the platform config folder (is HOME set?): pass --config FILE or set {CONFIG_ENV}"
            ),
        ));
    };
    let path = absolute(&path)?;
    // The platform's own config file stays optional however it is named: the login service
    // runs `drawdrop run --config <that path>` before any config may exist.
    let default = platform_config_dir.map(default_config_path);
    let source = match default {
        Some(default) if source != ConfigSource::Default && path == default => {
            ConfigSource::Default
        }
        _ => source,
    };
    Ok(Located { path, source })
}

/// `drawdrop/config.toml` in the platform config folder.
pub fn default_config_path(platform_config_dir: &Path) -> PathBuf {
    platform_config_dir.join("drawdrop").join(CONFIG_FILE_NAME)
}

/// `path` with `~` expanded (a shell does not expand `--config=~/x`, and launchd never does),
/// then made absolute against the current folder, without touching the file system.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    let expanded = path
        .to_str()
        .map_or_else(|| path.to_path_buf(), expand_tilde);
    std::path::absolute(&expanded).map_err(|error| {
        error_in_file(
            path,
            format!("cannot make the config path absolute: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_config_file_stays_optional_when_named_explicitly() {
        let platform = Some(Path::new("/home/ann/.config"));
        let named = Path::new("/home/ann/.config/drawdrop/config.toml");
        let located = locate_with(Some(named), None, platform).unwrap();
        assert_eq!(located.source, ConfigSource::Default);
        let located = locate_with(Some(Path::new("/srv/c.toml")), None, platform).unwrap();
        assert_eq!(located.source, ConfigSource::Flag);
    }

    #[test]
    fn the_flag_wins_then_the_environment_then_the_platform_folder() {
        let platform = Some(Path::new("/home/ann/.config"));
        let env = || Some(OsString::from("/etc/dd.toml"));

        let located = locate_with(Some(Path::new("/srv/c.toml")), env(), platform).unwrap();
        assert_eq!(
            located,
            Located {
                path: "/srv/c.toml".into(),
                source: ConfigSource::Flag
            }
        );

        let located = locate_with(None, env(), platform).unwrap();
        assert_eq!(
            located,
            Located {
                path: "/etc/dd.toml".into(),
                source: ConfigSource::Env
            }
        );

        let located = locate_with(None, Some(OsString::new()), platform).unwrap();
        assert_eq!(
            located,
            Located {
                path: "/home/ann/.config/drawdrop/config.toml".into(),
                source: ConfigSource::Default
            }
        );
        let mac = locate_with(
            None,
            None,
            Some(Path::new("/Users/ann/Library/Application Support")),
        );
        assert_eq!(
            mac.unwrap().path,
            PathBuf::from("/Users/ann/Library/Application Support/drawdrop/config.toml")
        );
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let located = locate_with(Some(Path::new("my.toml")), None, None).unwrap();
        assert!(located.path.is_absolute());
        assert!(located.path.ends_with("my.toml"));
        let located = locate_with(None, Some(OsString::from("./x/c.toml")), None).unwrap();
        assert!(located.path.is_absolute());
        assert!(located.path.ends_with("x/c.toml"));
    }

    #[test]
    fn without_any_source_the_error_says_what_to_do() {
        let error = locate_with(None, None, None).unwrap_err();
        assert!(error.message.contains("--config"), "{error}");
    }

    #[test]
    fn the_real_locate_finds_something_absolute() {
        if let Ok(located) = locate(Some(Path::new("c.toml"))) {
            assert!(located.path.is_absolute());
            assert_eq!(located.source, ConfigSource::Flag);
        }
    }
}
