//! The `logbook` command: a thin shell over the library.

fn main() -> std::process::ExitCode {
    logbook::cli::main()
}
