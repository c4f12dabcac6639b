//! Broken configs and profiles, each loaded from a temporary folder: every error must name the
//! file, line and column of the culprit and say what is wrong. Also: the repository's example
//! config and profiles load cleanly, and a missing config file behaves as the spec says.

use std::path::{Path, PathBuf};

use drawdrop::config::{
    Config, ConfigError, ConfigSource, DEFAULT_CONFIG_TOML, DEFAULT_PROFILE_TOML, Located,
};
use tempfile::TempDir;

/// Folders inside the temporary folder, so no test depends on the real home folder.
const FOLDERS: &str = "inbox = \"in\"\noutbox = \"out\"\n";

/// A temporary config folder: `config.toml` and `profiles/*.toml`.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        setup.write("config.toml", config.as_bytes());
        setup
    }

    fn with_profile(config: &str, name: &str, profile: &str) -> Setup {
        let setup = Setup::new(config);
        setup.write(&format!("profiles/{name}.toml"), profile.as_bytes());
        setup
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, content: &[u8]) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load_file(&self.path("config.toml"))
    }

    fn error(&self) -> ConfigError {
        match self.load() {
            Ok(config) => panic!("expected an error, loaded {config:?}"),
            Err(error) => error,
        }
    }

    /// The config loads, and profile `name` is broken: its problems (only its own folder waits).
    fn broken(&self, name: &str) -> ConfigError {
        let config = self
            .load()
            .unwrap_or_else(|error| panic!("a broken profile is no error of the config: {error}"));
        assert!(!config.profiles.contains_key(name), "{config:?}");
        config
            .broken
            .get(name)
            .unwrap_or_else(|| panic!("profile {name} should be broken: {config:?}"))
            .clone()
    }
}

/// `error` is `file:line:col: ...` and its message holds `part`.
fn assert_error_at(error: &ConfigError, file: &Path, line: usize, col: usize, part: &str) {
    let text = error.to_string();
    let prefix = format!("{}:{line}:{col}: ", file.display());
    assert!(
        text.starts_with(&prefix),
        "wanted prefix {prefix:?}, got {text:?}"
    );
    assert!(error.message.contains(part), "wanted {part:?} in {text:?}");
    assert!(!error.message.contains('\n'), "one line, got {text:?}");
}

/// A broken config file: the error is at `line:col` of `config.toml`.
fn config_error(config: &str, line: usize, col: usize, part: &str) {
    let setup = Setup::new(config);
    assert_error_at(&setup.error(), &setup.path("config.toml"), line, col, part);
}

/// A broken profile `style.toml`: the error is at `line:col` of that file.
fn profile_error(profile: &str, line: usize, col: usize, part: &str) {
    let setup = Setup::with_profile(FOLDERS, "style", profile);
    assert_error_at(
        &setup.broken("style"),
        &setup.path("profiles/style.toml"),
        line,
        col,
        part,
    );
}

#[test]
fn toml_syntax_error() {
    config_error(
        "inbox = \"in\"\nsettle_ms = \n",
        2,
        13,
        "string values must be quoted",
    );
    config_error("inbox = \"in\"\n[server\nurl = \"x\"\n", 2, 8, "expected");
}

#[test]
fn duplicate_key() {
    config_error(
        "settle_ms = 1\nsettle_ms = 2\n",
        2,
        1,
        "duplicate key `settle_ms`",
    );
}

#[test]
fn unknown_top_level_key() {
    config_error(
        &format!("{FOLDERS}settle = 5\n"),
        3,
        1,
        "unknown key `settle` (allowed: `inbox`, `outbox`, `default_profile`, `settle_ms`, `after`, `max_file_mb`, `notifications`, `gallery`, `server`, `servers`)",
    );
}

#[test]
fn unknown_server_key() {
    config_error(
        "[server]\nport = 7860\n",
        2,
        1,
        "unknown key `port` (allowed: `name`, `profiles`, `url`, `api`",
    );
}

#[test]
fn unknown_profile_key() {
    profile_error(
        "prompt = \"x\"\nhires = true\n",
        2,
        1,
        "unknown key `hires` (allowed: `prompt`",
    );
    profile_error("cfg_scale = 7\n", 1, 1, "set `guidance_scale` instead");
}

#[test]
fn wrong_type() {
    config_error(
        "settle_ms = \"1s\"\n",
        1,
        13,
        "invalid type: string \"1s\", expected an integer",
    );
    config_error("server = \"x\"\n", 1, 10, "expected a table");
    profile_error("steps = 4.5\n", 1, 9, "expected an integer");
    profile_error("strength = \"high\"\n", 1, 12, "expected a number");
    profile_error("prompt = 3\n", 1, 10, "expected a string");
    profile_error("loras = { file = \"x\" }\n", 1, 9, "expected an array");
}

#[test]
fn settle_ms_out_of_range() {
    config_error(
        "settle_ms = 3600001\n",
        1,
        13,
        "`settle_ms` = 3600001 is out of range (allowed: 0 to 3600000)",
    );
    config_error("settle_ms = -1\n", 1, 13, "allowed: 0 to 3600000");
}

#[test]
fn bad_after() {
    config_error(
        "after = \"keep\"\n",
        1,
        9,
        "`after` = \"keep\" is not allowed (allowed: \"archive\", \"delete\")",
    );
}

#[test]
fn bad_api() {
    config_error(
        "[server]\napi = \"comfy\"\n",
        2,
        7,
        "(allowed: \"drawthings\", \"a1111\", \"comfyui\", \"drawthings-grpc\")",
    );
}

#[test]
fn bad_url() {
    config_error(
        "[server]\nurl = \"localhost:7860\"\n",
        2,
        7,
        "must start with http:// or https://",
    );
    config_error("[server]\nurl = \"http://\"\n", 2, 7, "not a valid URL");
    config_error("[server]\nurl = \"file:///tmp/x\"\n", 2, 7, "not file://");
    config_error(
        "[server]\nurl = \"http://me:secret@host\"\n",
        2,
        7,
        "must not hold a user name or password",
    );
    if !cfg!(feature = "tls") {
        config_error(
            "[server]\nurl = \"https://host\"\n",
            2,
            7,
            "built without the `tls` feature",
        );
    }
}

#[test]
fn server_limits() {
    config_error(
        "[server]\nconcurrency = 0\n",
        2,
        15,
        "`concurrency` = 0 is out of range (allowed: 1 to 64)",
    );
    config_error(
        "[server]\nmax_attempts = 0\n",
        2,
        16,
        "`max_attempts` = 0 is out of range (allowed: 1 to 100)",
    );
    config_error("[server]\ntimeout_s = 0\n", 2, 13, "(allowed: 1 to 86400)");
}

#[test]
fn profile_ranges() {
    profile_error(
        "steps = 0\n",
        1,
        9,
        "`steps` = 0 is out of range (allowed: 1 to 150)",
    );
    profile_error(
        "strength = 1.5\n",
        1,
        12,
        "`strength` = 1.5 is out of range (allowed: 0 to 1)",
    );
    profile_error(
        "seed = -2\n",
        1,
        8,
        "`seed` = -2 is out of range (allowed: -1 to 4294967295)",
    );
    profile_error("seed = 4294967296\n", 1, 8, "out of range");
    profile_error("guidance_scale = 51\n", 1, 18, "(allowed: 0 to 50)");
    profile_error("batch_count = 0\n", 1, 15, "(allowed: 1 to 100)");
    profile_error("height = 64\n", 1, 10, "(allowed: 128 to 8192)");
    profile_error("strength = nan\n", 1, 12, "must be a finite number");
    profile_error("sampler = \"\"\n", 1, 11, "`sampler` must not be empty");
    profile_error(
        "steps = 4\nmax_megapixels = 100\n",
        2,
        18,
        "`max_megapixels` = 100 is out of range (allowed: 0.05 to 64)",
    );
    profile_error("max_megapixels = 0\n", 1, 18, "(allowed: 0.05 to 64)");
}

#[test]
fn width_not_a_multiple_of_64() {
    profile_error(
        "width = 1000\n",
        1,
        9,
        "`width` = 1000 is not a multiple of 64 (try 960 or 1024): Draw Things generates at multiples of 64",
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // In bytes the value would be at column 44: "猫" is 3 bytes, "🎨" 4.
    profile_error(
        "loras = [{ file = \"猫🎨.ckpt\", weight = 11 }]\n",
        1,
        39,
        "(allowed: -10 to 10)",
    );
}

#[test]
fn lora_without_file() {
    profile_error(
        "steps = 4\n[[loras]]\nweight = 0.5\n",
        2,
        1,
        "missing key `file`",
    );
    profile_error(
        "[[loras]]\nfile = \"x\"\nwieght = 1\n",
        3,
        1,
        "unknown key `wieght` (allowed: `file`, `weight`)",
    );
}

#[test]
fn extra_key_drawdrop_sends() {
    profile_error(
        "steps = 4\n[extra]\nsharpness = 2\ncfg_scale = 7\n",
        4,
        1,
        "`cfg_scale` in [extra] is what drawdrop sends for `guidance_scale`: set `guidance_scale` in the profile instead",
    );
    profile_error("[extra]\nsteps = 7\n", 2, 1, "set `steps` in the profile");
    profile_error(
        "[extra]\noverride_settings = { sd_model_checkpoint = \"m\" }\n",
        2,
        1,
        "`model`",
    );
}

#[test]
fn reserved_profile_names() {
    for name in ["originals", "Failed", "LOGS", "Gallery"] {
        let setup = Setup::with_profile(FOLDERS, name, "steps = 4\n");
        let error = setup.broken(name);
        let file = setup.path(&format!("profiles/{name}.toml"));
        assert_eq!(error.file, file);
        assert_eq!(error.position, None);
        assert!(
            error.to_string().starts_with(&format!(
                "{}: profile name `{name}` is refused",
                file.display()
            )),
            "{error}"
        );
    }
}

#[test]
fn profiles_differing_only_in_case() {
    let setup = Setup::with_profile(FOLDERS, "Style", "steps = 4\n");
    setup.write("profiles/style.toml", b"steps = 5\n");
    // The first in name order is the profile; the other one is broken.
    let error = setup.broken("style");
    assert!(error.message.contains("letter case"), "{error}");
    assert!(setup.load().unwrap().profiles.contains_key("Style"));
}

#[test]
fn default_profile_missing() {
    let setup = Setup::with_profile(
        &format!("{FOLDERS}default_profile = \"oil\"\n"),
        "watercolor",
        "",
    );
    assert_error_at(
        &setup.error(),
        &setup.path("config.toml"),
        3,
        19,
        "default_profile = \"oil\" names no profile",
    );
    assert!(
        setup
            .error()
            .message
            .ends_with("(profiles: default, watercolor)")
    );
}

#[test]
fn inbox_inside_outbox() {
    config_error(
        "inbox = \"out/in\"\noutbox = \"out\"\n",
        1,
        9,
        "is inside the outbox",
    );
    config_error(
        "inbox = \"x\"\noutbox = \"x/\"\n",
        2,
        10,
        "inbox and outbox are the same folder",
    );
    config_error(
        "inbox = \"/tmp/a\"\noutbox = \"/tmp/b/../a/out\"\n",
        2,
        10,
        "the outbox (/tmp/a/out) is inside the inbox (/tmp/a)",
    );
}

#[test]
fn folder_with_another_users_home() {
    config_error(
        "inbox = \"~bob/in\"\n",
        1,
        9,
        "only `~` and `~/...` are expanded",
    );
}

#[test]
fn auth_halves() {
    config_error(
        "[server]\nusername = \"me\"\npassword_env = \"DRAWDROP_TEST_SURELY_UNSET_4711\"\n",
        3,
        16,
        "password_env = \"DRAWDROP_TEST_SURELY_UNSET_4711\", but DRAWDROP_TEST_SURELY_UNSET_4711 is not set in drawdrop's environment",
    );
    config_error(
        "[server]\nusername = \"me\"\n",
        2,
        12,
        "`username` needs `password_env` too",
    );
    config_error(
        "[server]\npassword_env = \"PW\"\n",
        2,
        16,
        "`password_env` needs `username` too",
    );
}

#[test]
fn the_password_is_read_and_never_shown() {
    // PATH is set in every test environment; nothing here changes the process environment.
    let Some(path) = std::env::var("PATH").ok().filter(|path| path.len() > 3) else {
        return;
    };
    let setup = Setup::new(&format!(
        "{FOLDERS}[server]\nusername = \"me\"\npassword_env = \"PATH\"\n"
    ));
    let config = setup.load().unwrap();
    let auth = config.servers[0].auth.as_ref().unwrap();
    assert_eq!(auth.password, path);
    assert!(!format!("{config:?}").contains(&path));
}

#[test]
fn files_that_cannot_be_read() {
    let setup = Setup::new("");
    setup.write("config.toml", b"inbox = \"\xff\"\n");
    let error = setup.error();
    assert_eq!(error.position, None);
    assert!(error.message.contains("not valid UTF-8"), "{error}");

    let setup = Setup::with_profile(FOLDERS, "style", "");
    setup.write("profiles/style.toml", b"prompt = \"\xc3\"\n");
    let error = setup.broken("style");
    assert_eq!(error.file, setup.path("profiles/style.toml"));
    assert!(error.message.contains("not valid UTF-8"), "{error}");
}

#[test]
fn the_repository_config_and_profiles_load_cleanly() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load_file(&repo.join("config/drawdrop.toml")).unwrap();
    assert_eq!(
        config.profiles.keys().collect::<Vec<_>>(),
        ["default", "watercolor"]
    );
    assert_eq!(config.default_profile, "default");
    assert_eq!(
        std::fs::read_to_string(repo.join("config/drawdrop.toml")).unwrap(),
        DEFAULT_CONFIG_TOML
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("config/profiles/default.toml")).unwrap(),
        DEFAULT_PROFILE_TOML
    );

    // The default profile `init` writes keeps the app's settings, as having none does.
    let default = &config.profiles["default"].settings;
    assert_eq!(default, &drawdrop::config::Settings::default());
    let watercolor = &config.profiles["watercolor"].settings;
    assert_eq!(watercolor.steps, Some(4));
    assert_eq!(watercolor.strength, Some(0.6));
    assert_eq!(watercolor.model.as_deref(), Some("sd_xl_base_1.0_f16.ckpt"));
    assert_eq!(watercolor.loras.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        config.profile_for(Path::new("watercolor/dog.png")).file,
        Some(repo.join("config/profiles/watercolor.toml"))
    );
}

#[test]
fn what_init_writes_loads_and_matches_the_defaults() {
    let setup = Setup::with_profile(DEFAULT_CONFIG_TOML, "default", DEFAULT_PROFILE_TOML);
    let config = setup.load().unwrap();
    let defaults = Config::defaults(&setup.path("config.toml"));
    assert_eq!(config.inbox, defaults.inbox);
    assert_eq!(config.outbox, defaults.outbox);
    assert_eq!(config.settle, defaults.settle);
    assert_eq!(config.after, defaults.after);
    assert_eq!(
        format!("{:?}", config.servers),
        format!("{:?}", defaults.servers)
    );
    assert_eq!(
        config.profiles["default"].settings,
        drawdrop::config::Settings::parse(DEFAULT_PROFILE_TOML, Path::new("d.toml")).unwrap()
    );
}

#[test]
fn profiles_folder_skips_hidden_and_other_files() {
    let setup = Setup::with_profile(FOLDERS, "style", "steps = 4\n");
    setup.write("profiles/.hidden.toml", b"nonsense = ");
    setup.write("profiles/notes.txt", b"nonsense = ");
    setup.write("profiles/style.toml.bak", b"nonsense = ");
    setup.write("profiles/sub/deep.toml", b"nonsense = ");
    setup.write("profiles/Upper.TOML", b"steps = 5\n");
    let config = setup.load().unwrap();
    assert_eq!(
        config.profiles.keys().collect::<Vec<_>>(),
        ["Upper", "default", "style"]
    );
    assert_eq!(
        config.profiles["style"].file,
        Some(setup.path("profiles/style.toml"))
    );
    assert_eq!(config.profiles_dir(), setup.path("profiles"));
}

#[test]
fn a_profile_file_can_define_default() {
    let setup = Setup::with_profile(FOLDERS, "default", "steps = 9\n");
    let config = setup.load().unwrap();
    assert_eq!(
        config.profile_for(Path::new("cat.png")).settings.steps,
        Some(9)
    );
}

#[test]
fn a_missing_default_located_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawdrop/config.toml");
    let located = Located {
        path: path.clone(),
        source: ConfigSource::Default,
    };
    let config = Config::load(&located).unwrap();
    assert_eq!(
        format!("{config:?}"),
        format!("{:?}", Config::defaults(&path))
    );
    assert!(
        !dir.path().join("drawdrop").exists(),
        "loading must not create anything"
    );

    // Profiles beside a missing config file still count.
    std::fs::create_dir_all(dir.path().join("drawdrop/profiles")).unwrap();
    std::fs::write(dir.path().join("drawdrop/profiles/ink.toml"), "steps = 3\n").unwrap();
    let config = Config::load(&located).unwrap();
    assert_eq!(
        config.profiles.keys().collect::<Vec<_>>(),
        ["default", "ink"]
    );
}

#[test]
fn a_missing_named_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    for source in [ConfigSource::Flag, ConfigSource::Env] {
        let error = Config::load(&Located {
            path: path.clone(),
            source,
        })
        .unwrap_err();
        assert_eq!(error.position, None);
        assert_eq!(
            error.to_string(),
            format!(
                "{}: no config file at this path (create one with `drawdrop init --config {}`)",
                path.display(),
                path.display()
            )
        );
    }
    assert!(Config::load_file(&path).is_err());
    let error = Config::load_file(dir.path()).unwrap_err();
    assert!(error.message.contains("is a folder"), "{error}");
}

/// Every problem of `error`, as `(line, col)` in the order reported.
fn spots(error: &ConfigError) -> Vec<(usize, usize)> {
    error.all().map(|e| e.position.unwrap()).collect()
}

#[test]
fn every_problem_of_a_config_file_is_reported_first_one_first() {
    let setup = Setup::new(
        "max_file_mb = 0\nafter = \"keep\"\ninbox = \"in\"\noutbox = \"out\"\n[server]\n\
         timeout_s = 0\napi = \"comfy\"\n",
    );
    let error = setup.error();
    assert_eq!(spots(&error), [(1, 15), (2, 9), (6, 13), (7, 7)], "{error}");
    let text = error.to_string();
    let file = setup.path("config.toml").display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with(&format!("{file}:1:15: `max_file_mb` = 0")),
        "{text}"
    );
    assert!(
        lines[3].starts_with(&format!("{file}:7:7: `api`")),
        "{text}"
    );
}

#[test]
fn every_problem_of_a_profile_is_reported_in_file_order() {
    let setup = Setup::with_profile(
        FOLDERS,
        "style",
        "prompt = \"x\"\nwidth = 1000\nsteps = 0\n[[loras]]\nfile = \"a\"\nweight = 20\n\
         [extra]\nsteps = 2\n",
    );
    let error = setup.broken("style");
    assert_eq!(spots(&error), [(2, 9), (3, 9), (6, 10), (8, 1)], "{error}");
    assert!(error.message.contains("not a multiple of 64"), "{error}");
    assert!(
        error.more[2].message.contains("set `steps` in the profile"),
        "{error}"
    );
}

#[test]
fn a_broken_profile_stops_only_its_own_folder() {
    let setup = Setup::with_profile(FOLDERS, "ink", "steps = 0\n");
    setup.write("profiles/oil.toml", b"steps = 4\n");
    let config = setup.load().unwrap();
    assert_eq!(
        config.profiles.keys().collect::<Vec<_>>(),
        ["default", "oil"]
    );
    let waits = |path: &str| {
        config
            .waits_for(Path::new(path))
            .map(|(name, _)| name.to_owned())
    };
    assert_eq!(waits("ink/a.png"), Some("ink".to_owned()));
    assert_eq!(waits("oil/a.png"), None);
    assert_eq!(waits("a.png"), None);
    let (_, error) = config.waits_for(Path::new("ink/a.png")).unwrap();
    assert_error_at(error, &setup.path("profiles/ink.toml"), 1, 9, "`steps` = 0");
}

#[test]
fn a_broken_default_profile_holds_the_inbox_itself() {
    let setup = Setup::with_profile(FOLDERS, "default", "prompt = \n");
    setup.write("profiles/oil.toml", b"steps = 4\n");
    let config = setup.load().unwrap();
    assert!(
        !config.profiles.contains_key("default"),
        "no built-in stand-in"
    );
    for path in ["a.png", "holiday/a.png", "default/a.png"] {
        assert_eq!(
            config.waits_for(Path::new(path)).map(|(name, _)| name),
            Some("default"),
            "{path}"
        );
    }
    assert!(config.waits_for(Path::new("oil/a.png")).is_none());
}

#[test]
fn a_broken_profile_may_still_be_named_by_the_config() {
    let setup = Setup::with_profile(
        &format!("{FOLDERS}default_profile = \"ink\"\n[server]\nprofiles = [\"ink\"]\n"),
        "ink",
        "steps = 0\n",
    );
    let config = setup.load().unwrap();
    assert_eq!(config.default_profile, "ink");
    assert_eq!(
        config.waits_for(Path::new("a.png")).map(|(name, _)| name),
        Some("ink")
    );
}

#[test]
fn refused_keys_and_bad_values_are_reported_together_in_file_order() {
    let setup = Setup::new(&format!(
        "{FOLDERS}settle_ms = 99999999\nsettle = 5\n[server]\nport = 7860\nconcurrency = 0\n"
    ));
    let error = setup.error();
    assert_eq!(spots(&error), [(3, 13), (4, 1), (6, 1), (7, 15)], "{error}");
    assert!(
        error.more[0].message.starts_with("unknown key `settle`"),
        "{error}"
    );
    assert!(
        error.more[1].message.starts_with("unknown key `port`"),
        "{error}"
    );

    let setup = Setup::with_profile(
        FOLDERS,
        "style",
        "steps = 4.5\ncfg_scale = 7\nstrength = 3\n",
    );
    let error = setup.broken("style");
    assert_eq!(spots(&error), [(1, 9), (2, 1), (3, 12)], "{error}");
    assert!(
        error.more[0]
            .message
            .ends_with("set `guidance_scale` instead"),
        "{error}"
    );
}
