//! The `hubworker` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: Polars and the expression front end allocate many small objects; it is markedly
/// faster than glibc malloc for both (see the benchmarks in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = hubworker::cli::Cli::parse();
    hubworker::telemetry::init();
    match hubworker::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hubworker: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
