//! The fake Draw Things / A1111 server and the fake ComfyUI for the bench and the
//! `fake-drawthings` example, which include this file as their `crate::fakes`: the servers
//! with the listener they share with the other fakes, at the paths their code expects. Not
//! part of the test binary (there, `fakes/mod.rs` is `crate::fakes`).

#[path = "comfyui/mod.rs"]
pub mod comfyui;
#[path = "server/mod.rs"]
pub mod server;
#[path = "serving.rs"]
pub mod serving;
