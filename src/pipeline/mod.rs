//! The pipeline, one direction: `watch` (events, scans, settle) -> `queue` -> `worker` slots
//! (prepare -> send through a backend -> decide), with `pool` and `health` saying which server
//! takes what and whether it answers, and `outbox_gate` whether results can be written.
//! `daemon` wires it together and shuts it down; `folders` makes the folders it needs;
//! `reload` holds the settings in force (and each server's backend) and follows edits;
//! `natural` is the order files are taken in; `timing` the periods it waits.

pub(crate) mod daemon;
pub(crate) mod folders;
pub(crate) mod health;
pub(crate) mod natural;
pub(crate) mod outbox_gate;
pub(crate) mod pool;
pub(crate) mod queue;
pub(crate) mod reload;
pub(crate) mod timing;
pub(crate) mod watch;
pub(crate) mod worker;
