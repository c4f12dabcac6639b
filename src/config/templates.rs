//! The annotated files `drawdrop init` writes; the repository's `config/` folder holds the same
//! text, so that there is one copy and the tests load exactly what users get.

/// The annotated default config file (`config/drawdrop.toml` in the repository).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/drawdrop.toml");

/// The annotated `default` profile (`config/profiles/default.toml` in the repository).
pub const DEFAULT_PROFILE_TOML: &str = include_str!("../../config/profiles/default.toml");

/// The annotated ComfyUI `default` profile `drawdrop init --comfyui` writes
/// (`config/profiles/comfyui.toml` in the repository).
pub const COMFYUI_PROFILE_TOML: &str = include_str!("../../config/profiles/comfyui.toml");

/// The example workflow beside it, in ComfyUI's API format: an img2img graph
/// (`config/profiles/comfyui.json`).
pub const COMFYUI_WORKFLOW_JSON: &str = include_str!("../../config/profiles/comfyui.json");
