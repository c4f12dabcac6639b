//! The fake servers drawdrop is tested against, each an independent re-implementation of a
//! real server's protocol (none uses the `drawdrop` crate, so each can check it): Draw Things'
//! HTTP API and AUTOMATIC1111 ([`server`]), ComfyUI ([`comfyui`]), Draw Things over gRPC
//! ([`grpc`]); and what the HTTP ones share ([`serving`]).

pub mod comfyui;
pub mod grpc;
pub mod server;
pub mod serving;
