//! The settings for one picture: its profile's, then `cat.toml` beside it (any profile key,
//! winning over the profile), then `cat.txt` beside it (its trimmed text is the prompt), and
//! finally `{name}` in the prompt (and in `[comfyui.set]` values) replaced by the picture's
//! file stem.

use crate::config::Settings;
use crate::jobs::claim::Job;
use std::path::Path;

/// The placeholder replaced by the file stem.
pub(super) const NAME_PLACEHOLDER: &str = "{name}";

/// Settings for a picture, and which sidecars shaped them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ImageSettings {
    pub settings: Settings,
    /// `cat.txt`, `cat.toml`: the sidecars used, for the log and jobs.jsonl.
    pub sidecars: Vec<String>,
}

/// Resolves the settings of `job`'s picture. `inbox` is only used to name a broken
/// `cat.toml` by the path the person knows in an error (`file:line:col`).
pub(super) fn resolve(
    profile: &Settings,
    job: &Job,
    inbox: &Path,
) -> Result<ImageSettings, String> {
    let mut settings = profile.clone();
    let mut sidecars = Vec::new();
    if let Some(path) = job.sidecar("toml") {
        let text = read_text(&path)?;
        let shown_as = inbox.join(&job.relative).with_extension("toml");
        let overrides = Settings::parse(&text, &shown_as).map_err(|error| error.to_string())?;
        settings = settings.overridden_by(&overrides);
        sidecars.push(file_name(&path));
    }
    if let Some(path) = job.sidecar("txt") {
        let text = read_text(&path)?;
        let prompt = text.trim();
        if !prompt.is_empty() {
            settings.prompt = Some(prompt.to_owned());
        }
        sidecars.push(file_name(&path));
    }
    if let Some(prompt) = &settings.prompt
        && prompt.contains(NAME_PLACEHOLDER)
    {
        let stem = job
            .relative
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        settings.prompt = Some(prompt.replace(NAME_PLACEHOLDER, &stem));
    }
    for value in settings.comfyui_set.values_mut() {
        if let serde_json::Value::String(text) = value
            && text.contains(NAME_PLACEHOLDER)
        {
            let stem = job.relative.file_stem().unwrap_or_default();
            *text = text.replace(NAME_PLACEHOLDER, &stem.to_string_lossy());
        }
    }
    Ok(ImageSettings { settings, sidecars })
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", file_name(path)))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::claim::Claims;
    use std::fs;

    fn claimed(files: &[(&str, &str)]) -> (tempfile::TempDir, Job) {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path());
        claims.create().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let job = claims.claim(Path::new(files[0].0)).unwrap().unwrap();
        (dir, job)
    }

    fn profile() -> Settings {
        Settings {
            prompt: Some("a painting of {name}, {name}".into()),
            steps: Some(20),
            ..Settings::default()
        }
    }

    #[test]
    fn name_is_replaced_by_the_file_stem() {
        let (dir, job) = claimed(&[("w/my cat.png", "png")]);
        let resolved = resolve(&profile(), &job, dir.path()).unwrap();
        assert_eq!(
            resolved.settings.prompt.as_deref(),
            Some("a painting of my cat, my cat")
        );
        assert!(resolved.sidecars.is_empty());
    }

    #[test]
    fn a_text_sidecar_replaces_the_prompt_and_a_toml_one_overrides_keys() {
        let (dir, job) = claimed(&[
            ("cat.png", "png"),
            ("cat.txt", "  a cat in the style of {name}\n"),
            ("cat.toml", "steps = 8\nstrength = 0.3\n"),
        ]);
        let resolved = resolve(&profile(), &job, dir.path()).unwrap();
        assert_eq!(
            resolved.settings.prompt.as_deref(),
            Some("a cat in the style of cat")
        );
        assert_eq!(resolved.settings.steps, Some(8));
        assert_eq!(resolved.settings.strength, Some(0.3));
        assert_eq!(resolved.sidecars, ["cat.toml", "cat.txt"]);
    }

    #[test]
    fn a_broken_toml_sidecar_names_the_file_the_person_knows() {
        let (dir, job) = claimed(&[("w/cat.png", "png"), ("w/cat.toml", "steps = 0\n")]);
        let error = resolve(&profile(), &job, dir.path()).unwrap_err();
        let expected = format!("{}:1:9:", dir.path().join("w/cat.toml").display());
        assert!(error.starts_with(&expected), "{error}");
    }
}
