//! The `drawdrop` binary; everything is in the library (`drawdrop::main`).

fn main() -> std::process::ExitCode {
    drawdrop::main()
}
