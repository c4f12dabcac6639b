//! The pipeline, one direction: `watch` (events, scans, settle) -> `queue` -> `worker` slots
//! (prepare -> send through a backend -> decide), with `pool` and `health` saying which server
//! takes what and whether it answers, and `outbox_gate` whether results can be written.
//! `daemon` wires it together and shuts it down; `folders` makes the folders it needs;
//! `reload` holds the settings in force (and each server's backend) and follows edits;
//! `natural` is the order files are taken in; `timing` the periods it waits.

pub mod daemon;
pub mod folders;
pub mod health;
pub mod natural;
pub mod outbox_gate;
pub mod pool;
pub mod queue;
pub mod reload;
pub mod timing;
pub mod watch;
pub mod worker;
