//! AUTOMATIC1111-compatible servers.

pub mod progress;
