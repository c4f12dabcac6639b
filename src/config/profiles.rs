//! Profiles: every `NAME.toml` in the `profiles/` folder beside the config file, their names
//! checked, and the lookup of the profile that applies to a file in the inbox.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use super::diagnostic::error_in_file;
use super::files::read_text;
use super::{Config, ConfigError, Profile, Settings};
use crate::outbox;

/// The profile every config has; empty unless `profiles/default.toml` defines it.
pub const DEFAULT_PROFILE_NAME: &str = "default";

/// The built-in `default` profile, for a [`Config`] whose profiles were edited by hand.
static BUILT_IN_DEFAULT: LazyLock<Profile> = LazyLock::new(Profile::built_in_default);

impl Profile {
    /// `default` with no settings: every key is the server's own.
    pub fn built_in_default() -> Profile {
        Profile {
            name: DEFAULT_PROFILE_NAME.to_owned(),
            file: None,
            settings: Settings::default(),
            servers: None,
        }
    }
}

impl Config {
    /// The profile for a file at `relative` (a path inside the inbox): when its first component
    /// is a folder named like a profile, that profile; else `default_profile`.
    pub fn profile_for(&self, relative: &Path) -> &Profile {
        let mut components = relative
            .components()
            .filter(|component| *component != Component::CurDir);
        let folder = match (components.next(), components.next()) {
            (Some(Component::Normal(first)), Some(_)) => first.to_str(),
            _ => None,
        };
        folder
            .and_then(|name| self.profiles.get(name))
            .or_else(|| self.profiles.get(&self.default_profile))
            .or_else(|| self.profiles.get(DEFAULT_PROFILE_NAME))
            .unwrap_or(&BUILT_IN_DEFAULT)
    }

    /// The `profiles/` folder beside the config file.
    pub fn profiles_dir(&self) -> PathBuf {
        profiles_dir_beside(&self.file)
    }
}

/// `profiles/` beside `config_file`.
pub(crate) fn profiles_dir_beside(config_file: &Path) -> PathBuf {
    config_file.with_file_name("profiles")
}

/// Why `name` cannot be a profile name, if it cannot.
pub fn profile_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a profile needs a name: call the file NAME.toml".to_owned());
    }
    if name.starts_with('.') {
        return Some(format!(
            "profile name `{name}` starts with '.', which would make its inbox folder hidden"
        ));
    }
    // Results of profile NAME go to `outbox/NAME/`, beside drawdrop's own folders.
    if outbox::is_reserved(name) {
        return Some(format!(
            "profile name `{name}` is refused: drawdrop keeps its own {} folders in the outbox, \
             where the results of profile NAME go to NAME/; rename the file",
            outbox::RESERVED.join(", ")
        ));
    }
    None
}

/// Every profile in `dir` (non-recursive; hidden files and names not ending in `.toml` are
/// ignored) plus the built-in `default` unless a file defines it. A missing `dir` is no error.
/// With `previous` (a reload), a profile whose file is broken
/// keeps its previous version (or is left out if it is new) and its error goes to `broken`,
/// so one bad edit does not stop every other profile from updating.
/// `servers = [...]` in a profile must name servers in `server_names`.
pub(crate) fn read_profiles_keeping(
    dir: &Path,
    server_names: &[String],
    previous: Option<&BTreeMap<String, Profile>>,
    broken: &mut Vec<ConfigError>,
) -> Result<BTreeMap<String, Profile>, ConfigError> {
    let mut profiles = BTreeMap::new();
    for file in profile_files(dir)? {
        let name = match file.file_stem().map(|stem| stem.to_str()) {
            Some(Some(name)) => name.to_owned(),
            _ => {
                return Err(error_in_file(
                    &file,
                    "the profile's file name is not valid UTF-8",
                ));
            }
        };
        if let Some(problem) = profile_name_problem(&name) {
            return Err(error_in_file(&file, problem));
        }
        if let Some(twin) = profiles
            .values()
            .find(|profile: &&Profile| profile.name.eq_ignore_ascii_case(&name))
        {
            return Err(error_in_file(
                &file,
                format!(
                    "profile `{name}` has the same name as profile `{}` (letter case aside), \
                     and their inbox folders would be one on macOS: rename one",
                    twin.name
                ),
            ));
        }
        // A file removed since the folder was listed is simply not a profile any more.
        let Some(text) = read_text(&file)? else {
            continue;
        };
        let (settings, servers) = match (
            Settings::parse_profile(&text, &file, server_names),
            previous,
        ) {
            (Ok(parsed), _) => parsed,
            (Err(error), Some(previous)) => {
                broken.push(error);
                if let Some(last_good) = previous.get(&name) {
                    profiles.insert(name, last_good.clone());
                }
                continue;
            }
            (Err(error), None) => return Err(error),
        };
        let profile = Profile {
            name: name.clone(),
            file: Some(file),
            settings,
            servers,
        };
        profiles.insert(name, profile);
    }
    profiles
        .entry(DEFAULT_PROFILE_NAME.to_owned())
        .or_insert_with(Profile::built_in_default);
    Ok(profiles)
}

/// The profile files in `dir`, sorted by name.
fn profile_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) if error.kind() == ErrorKind::NotADirectory => {
            return Err(error_in_file(
                dir,
                "should be the folder of profiles, but is a file",
            ));
        }
        Err(error) => {
            return Err(error_in_file(
                dir,
                format!("cannot list the profiles folder: {error}"),
            ));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            error_in_file(dir, format!("cannot list the profiles folder: {error}"))
        })?;
        let path = entry.path();
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        let toml = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("toml"));
        if !hidden && toml && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(profile_name_problem("watercolor"), None);
        assert_eq!(profile_name_problem("default"), None);
        assert!(profile_name_problem("").is_some());
        assert!(profile_name_problem(".x").is_some());
        for name in ["originals", "Failed", "LOGS"] {
            assert!(
                profile_name_problem(name).unwrap().contains("is refused"),
                "{name}"
            );
        }
        assert_eq!(profile_name_problem("logs2"), None);
    }

    #[test]
    fn profiles_dir_is_beside_the_config_file() {
        assert_eq!(
            profiles_dir_beside(Path::new("/c/config.toml")),
            PathBuf::from("/c/profiles")
        );
    }

    #[test]
    fn a_missing_profiles_folder_gives_just_default() {
        let profiles = read_profiles_keeping(
            Path::new("/nonexistent/drawdrop/profiles"),
            &[],
            None,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(profiles.keys().collect::<Vec<_>>(), ["default"]);
    }
}
