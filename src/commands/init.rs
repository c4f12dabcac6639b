//! `drawdrop init`: write a commented config and a `default` profile (never overwriting),
//! create the folders, and say what to do next.

use super::EXIT_START;
use crate::config::{
    COMFYUI_PROFILE_TOML, COMFYUI_WORKFLOW_JSON, Config, DEFAULT_CONFIG_TOML, DEFAULT_PROFILE_TOML,
    locate,
};
use crate::jobs::durable;
use crate::pipeline::folders;
use std::path::Path;
use std::process::ExitCode;

/// The server lines of the annotated config, and what `--comfyui` puts there instead.
const DRAW_THINGS_SERVER: [&str; 2] = ["url = \"http://127.0.0.1:7860\"", "api = \"drawthings\""];
const COMFYUI_SERVER: [&str; 2] = ["url = \"http://127.0.0.1:8188\"", "api = \"comfyui\"    "];

pub(super) fn init(flag: Option<&Path>, comfyui: bool) -> ExitCode {
    let located = match locate(flag) {
        Ok(located) => located,
        Err(error) => {
            eprintln!("drawdrop: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let config_file = located.path.clone();
    let profile_file = config_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("profiles")
        .join("default.toml");
    let mut lines = Vec::new();
    let workflow_file = profile_file.with_extension("json");
    let mut files = vec![
        ("config", &config_file, DEFAULT_CONFIG_TOML.to_owned()),
        ("profile", &profile_file, DEFAULT_PROFILE_TOML.to_owned()),
    ];
    if comfyui {
        let mut config = DEFAULT_CONFIG_TOML.to_owned();
        for (draw_things, comfy) in DRAW_THINGS_SERVER.iter().zip(COMFYUI_SERVER) {
            config = config.replacen(draw_things, comfy, 1);
        }
        files = vec![
            ("config", &config_file, config),
            ("profile", &profile_file, COMFYUI_PROFILE_TOML.to_owned()),
            ("workflow", &workflow_file, COMFYUI_WORKFLOW_JSON.to_owned()),
        ];
    }
    for (what, path, text) in files {
        let text = text.as_str();
        match write_new(path, text) {
            Ok(true) => lines.push(format!("  {what:<8} {} (written)", path.display())),
            Ok(false) => lines.push(format!(
                "  {what:<8} {} (already there: kept)",
                path.display()
            )),
            Err(error) => {
                eprintln!("drawdrop: cannot write {}: {error}", path.display());
                return ExitCode::from(EXIT_START);
            }
        }
    }
    let config = match Config::load(&located) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("drawdrop: {error}\n(fix the file above, then run `drawdrop init` again)");
            return ExitCode::from(EXIT_START);
        }
    };
    for (name, error) in &config.broken {
        eprintln!(
            "drawdrop: profile {name} is broken (its files will wait until it is fixed):\n{error}"
        );
    }
    let existed = (config.inbox.is_dir(), config.outbox.is_dir());
    if let Err(error) = folders::prepare(&config) {
        eprintln!("drawdrop: {error}");
        return ExitCode::from(EXIT_START);
    }
    let state = |existed: bool| if existed { "already there" } else { "created" };
    lines.push(format!(
        "  {:<8} {} ({})",
        "inbox",
        config.inbox.display(),
        state(existed.0)
    ));
    lines.push(format!(
        "  {:<8} {} ({})",
        "outbox",
        config.outbox.display(),
        state(existed.1)
    ));
    println!("drawdrop is set up:\n{}", lines.join("\n"));
    let first = if comfyui {
        "Start ComfyUI (port 8188); replace profiles/default.json by your own workflow, \
         exported with Workflow > Export (API)."
    } else {
        "In Draw Things, switch on the API server: Settings > API Server, HTTP, port 7860."
    };
    println!(
        "\nNext:\n  \
         1. {first}\n  \
         2. `drawdrop check` tells whether everything is in place.\n  \
         3. `drawdrop service install` starts drawdrop at every login (or run `drawdrop run` in a terminal).\n  \
         4. Drop a picture (PNG, JPEG, WebP, HEIC, TIFF) into {} and its result appears in {}.\n  \
         Styles: copy {} to profiles/NAME.toml and drop files into {}/NAME/.",
        config.inbox.display(),
        config.outbox.display(),
        profile_file.display(),
        config.inbox.display()
    );
    ExitCode::SUCCESS
}

/// Writes `text` to `path` unless something is there, whole or not at all. `Ok(false)`
/// when it was kept.
fn write_new(path: &Path, text: &str) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let temporary = path.with_file_name(format!(".drawdrop-init-{}.tmp", std::process::id()));
    let placed = durable::write_new(&temporary, text.as_bytes())
        .and_then(|()| durable::rename_no_replace(&temporary, path));
    let _ = durable::remove_file(&temporary);
    placed
}
