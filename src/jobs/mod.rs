//! The durable job store beneath the pipeline: crash-safe file operations (`durable`),
//! claims with the lock and recovery (`claim`), finishing in two phases (`finish`: stage,
//! commit, apply), the outbox's names and `jobs.jsonl` (`outbox`), which inbox names are
//! taken and how they are shown (`names`), a file as seen (`seen`), and crash points for the fault tests (`failpoint`).

pub(crate) mod claim;
pub mod durable;
pub(crate) mod failpoint;
pub(crate) mod finish;
pub(crate) mod names;
pub mod outbox;
pub(crate) mod seen;
