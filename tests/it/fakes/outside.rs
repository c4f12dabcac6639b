//! The fake Draw Things / A1111 server for the bench and the `fake-drawthings` example,
//! which include this file as their `crate::fakes`: the server with the listener it shares
//! with the other fakes, at the paths its code expects. Not part of the test binary (there,
//! `fakes/mod.rs` is `crate::fakes`).

#[path = "server/mod.rs"]
pub mod server;
#[path = "serving.rs"]
pub mod serving;
