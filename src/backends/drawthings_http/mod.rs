//! Draw Things' HTTP API.

pub mod known;
