//! The `drawdrop` binary: parse the command line, start logging, run the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = drawdrop::cli::parse();
    let logs = drawdrop::report::logging::init();
    drawdrop::commands::execute(cli, logs)
}
