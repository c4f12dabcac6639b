//! Profiles: every `NAME.toml` in the `profiles/` folder beside the config file, their names
//! checked, and the lookup of the profile that applies to a file in the inbox.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use super::diagnostic::error_in_file;
use super::files::read_text;
use super::{Config, ConfigError, Profile, Settings};
use crate::config::paths as outbox;

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
    /// is a folder named like a profile, that profile; else `default_profile`. (A file whose
    /// profile is broken waits instead: see [`Config::waits_for`].)
    pub fn profile_for(&self, relative: &Path) -> &Profile {
        profile_folder(relative)
            .and_then(|name| self.profiles.get(name))
            .or_else(|| self.profiles.get(&self.default_profile))
            .or_else(|| self.profiles.get(DEFAULT_PROFILE_NAME))
            .unwrap_or(&BUILT_IN_DEFAULT)
    }

    /// When the profile of a file at `relative` is broken: its name and problems. Such a
    /// file waits in the inbox until the profile's file is fixed.
    pub fn waits_for(&self, relative: &Path) -> Option<(&str, &ConfigError)> {
        let name = match profile_folder(relative) {
            Some(folder) if self.profiles.contains_key(folder) => return None,
            Some(folder) if self.broken.contains_key(folder) => folder,
            _ => self.default_profile.as_str(),
        };
        self.broken
            .get_key_value(name)
            .map(|(name, error)| (name.as_str(), error))
    }

    /// The `profiles/` folder beside the config file.
    pub fn profiles_dir(&self) -> PathBuf {
        profiles_dir_beside(&self.file)
    }
}

/// The first folder of a path inside the inbox, which may name a profile (`w` of `w/a.png`).
fn profile_folder(relative: &Path) -> Option<&str> {
    let mut components = relative
        .components()
        .filter(|component| *component != Component::CurDir);
    match (components.next(), components.next()) {
        (Some(Component::Normal(first)), Some(_)) => first.to_str(),
        _ => None,
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

/// The profiles of a config: the usable ones, and the broken ones with their problems.
pub(crate) type ReadProfiles = (BTreeMap<String, Profile>, BTreeMap<String, ConfigError>);

/// Every profile in `dir` (non-recursive; hidden files and names not ending in `.toml` are
/// ignored) plus the built-in `default` unless a file defines it (or tries to). A missing
/// `dir` is no error. A profile whose file cannot be used (unreadable, invalid, a refused
/// name) is broken: it is listed apart with its problems, so that only its own folder waits.
/// `servers = [...]` in a profile must name servers in `server_names`. Only a profiles folder
/// that cannot be listed is an error.
pub(crate) fn read_profiles(
    dir: &Path,
    server_names: &[String],
) -> Result<ReadProfiles, ConfigError> {
    let mut profiles = BTreeMap::new();
    let mut broken = BTreeMap::new();
    for file in profile_files(dir)? {
        let name = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_profile(&file, &name, &profiles, server_names) {
            Ok(Some(profile)) => {
                profiles.insert(name, profile);
            }
            // A file removed since the folder was listed is simply not a profile any more.
            Ok(None) => {}
            Err(error) => {
                broken.insert(name, error);
            }
        }
    }
    if !broken.contains_key(DEFAULT_PROFILE_NAME) {
        profiles
            .entry(DEFAULT_PROFILE_NAME.to_owned())
            .or_insert_with(Profile::built_in_default);
    }
    Ok((profiles, broken))
}

/// The profiles no server can run set aside as broken (their files wait, and the log and
/// `check` say why): one with a workflow when no server runs workflows (ComfyUI), one
/// without when every server does.
pub(crate) fn set_aside_homeless(
    mut profiles: BTreeMap<String, Profile>,
    mut broken: BTreeMap<String, ConfigError>,
    servers: &[super::Server],
    dir: &Path,
) -> ReadProfiles {
    let homeless: Vec<String> = profiles
        .values()
        .filter(|profile| {
            let wants_workflows = profile.settings.workflow.is_some();
            !servers
                .iter()
                .any(|server| server.api.runs_workflows() == wants_workflows)
        })
        .map(|profile| profile.name.clone())
        .collect();
    for name in homeless {
        let Some(profile) = profiles.remove(&name) else {
            continue;
        };
        let file = profile
            .file
            .clone()
            .unwrap_or_else(|| dir.join(format!("{name}.toml")));
        let message = match &profile.settings.workflow {
            Some(workflow) => format!(
                "profile `{name}` runs the ComfyUI workflow {}, and no server is a ComfyUI \
                 server (api = \"comfyui\"): its files wait until one is configured",
                workflow.name()
            ),
            None if profile.file.is_none() => format!(
                "every server is a ComfyUI server, and the built-in `{name}` profile has no \
                 workflow: write {} with `workflow = \"NAME.json\"`, or drop pictures into \
                 the folder of a profile that has one",
                file.display()
            ),
            None => format!(
                "profile `{name}` has no `workflow`, and every server is a ComfyUI server, \
                 which runs workflows: add `workflow = \"NAME.json\"` (Workflow > Export (API))"
            ),
        };
        broken.insert(name, error_in_file(&file, message));
    }
    (profiles, broken)
}

/// One profile file, named `name`, beside the `earlier` ones; `None` when it is gone.
fn read_profile(
    file: &Path,
    name: &str,
    earlier: &BTreeMap<String, Profile>,
    server_names: &[String],
) -> Result<Option<Profile>, ConfigError> {
    if file.file_stem().and_then(|stem| stem.to_str()).is_none() {
        return Err(error_in_file(
            file,
            "the profile's file name is not valid UTF-8",
        ));
    }
    if let Some(problem) = profile_name_problem(name) {
        return Err(error_in_file(file, problem));
    }
    if let Some(twin) = earlier
        .values()
        .find(|profile| profile.name.eq_ignore_ascii_case(name))
    {
        return Err(error_in_file(
            file,
            format!(
                "profile `{name}` has the same name as profile `{}` (letter case aside), \
                 and their inbox folders would be one on macOS: rename one",
                twin.name
            ),
        ));
    }
    let Some(text) = read_text(file)? else {
        return Ok(None);
    };
    let (settings, servers) = Settings::parse_profile(&text, file, server_names)?;
    Ok(Some(Profile {
        name: name.to_owned(),
        file: Some(file.to_path_buf()),
        settings,
        servers,
    }))
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
        let (profiles, broken) =
            read_profiles(Path::new("/nonexistent/drawdrop/profiles"), &[]).unwrap();
        assert_eq!(profiles.keys().collect::<Vec<_>>(), ["default"]);
        assert!(broken.is_empty());
    }

    #[test]
    fn files_of_a_broken_profile_wait_and_the_others_go() {
        let mut config = Config::defaults(Path::new("/c/config.toml"));
        let problem = error_in_file(Path::new("/c/profiles/ink.toml"), "broken");
        config.broken.insert("ink".into(), problem.clone());
        let waits = |config: &Config, path: &str| {
            config
                .waits_for(Path::new(path))
                .map(|(name, _)| name.to_owned())
        };
        assert_eq!(waits(&config, "ink/a.png"), Some("ink".into()));
        assert_eq!(waits(&config, "ink/deeper/a.png"), Some("ink".into()));
        assert_eq!(waits(&config, "a.png"), None);
        assert_eq!(waits(&config, "holiday/a.png"), None);
        assert_eq!(waits(&config, "default/a.png"), None);
        // The profile for the inbox itself is broken: its files wait, and so do those in
        // folders that name no profile; other profiles' folders go on.
        config.profiles.remove("default");
        config.broken.insert("default".into(), problem);
        config
            .profiles
            .insert("ink".into(), Profile::built_in_default());
        config.broken.remove("ink");
        assert_eq!(waits(&config, "a.png"), Some("default".into()));
        assert_eq!(waits(&config, "holiday/a.png"), Some("default".into()));
        assert_eq!(waits(&config, "default/a.png"), Some("default".into()));
        assert_eq!(waits(&config, "ink/a.png"), None);
    }
}
