//! The `strata` binary: a drop-in replacement for the `thanos` binary.
//!
//! Parses Thanos' command line, sets up logging, runs the chosen component and, if it fails,
//! logs the error chain once and exits non-zero. Usage errors (unknown flags, bad values) are
//! reported by clap with exit code 2, as kingpin does.

mod cli;
mod cmd;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata: starting the async runtime failed: {err}");
            return ExitCode::FAILURE;
        }
    };

    // Tracing first (its exporter runs on the runtime), so that the logger can carry its
    // layer; a bad configuration fails start-up before anything runs.
    let tracing = match cli.global.start_tracing(&runtime) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("strata: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = logging::init(
        cli.global.log_level,
        cli.global.log_format,
        cli.global.debug_name.as_deref(),
        tracing.exporting(),
    ) {
        eprintln!("strata: {err:#}");
        return ExitCode::FAILURE;
    }
    tracing.log_start();

    let code = match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(err = %format_args!("{err:#}"), "running command failed");
            ExitCode::FAILURE
        }
    };
    // The last spans (the shutdown's) are sent while the runtime still runs.
    if let Some(t) = tracing.exporting() {
        t.shutdown();
    }
    code
}
