//! The pipeline: watch -> queue -> workers.

pub mod timing;
