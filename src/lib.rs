//! drawdrop: a hot-folder daemon for img2img.
pub mod config;
pub mod image;
