//! The `hubworker` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: Polars and the expression front end allocate many small objects; it is markedly
/// faster than glibc malloc for both (see the benchmarks in the README). Wrapped so that
/// running out of memory is a distinct exit code (see `hubworker::alloc`).
#[global_allocator]
static GLOBAL: hubworker::alloc::Allocator = hubworker::alloc::Allocator;

/// Configures the allocator before the Rust runtime's first allocation (which comes before
/// `main`): an ELF constructor, run by the loader.
// SAFETY: `.init_array` holds plain `extern "C" fn()` pointers the loader calls once, before
// `main`, on the main thread; `configure` only stores integers in mimalloc's option table and
// touches nothing the runtime has yet to set up.
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn configure() {
        hubworker::alloc::configure();
    }
    configure
};

fn main() -> ExitCode {
    // A sandboxed run child confines itself before anything else happens in the process: no
    // argument parsing beyond its own, no logging setup, no threads.
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == hubworker::sandbox::TEMPLATE_COMMAND)
    {
        let rest: Vec<_> = args.collect();
        let code = hubworker::sandbox::template::main(&rest);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = hubworker::cli::Cli::parse();
    let json = cli.log_format() == hubworker::telemetry::LogFormat::Json;
    if let Err(e) = hubworker::telemetry::init(cli.log_format(), cli.is_service()) {
        // No subscriber: the line is written here, in the format asked for.
        let e = hubworker::Error::Usage(e.to_string());
        let message = format!("hubworker: {e}");
        if json {
            let line = serde_json::json!({"level": "ERROR", "message": message, "exit_code": e.exit_code()});
            eprintln!("{line}");
        } else {
            eprintln!("{message}");
        }
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    match hubworker::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e, json),
    }
}

/// Reports the error that ends the process (a log line in JSON mode, so that the log stream
/// stays JSON) and its exit code.
fn fail(e: &hubworker::Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if json {
        tracing::error!(exit_code = code, "hubworker: {e}");
    } else {
        eprintln!("hubworker: {e}");
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
