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

    if let Err(err) = logging::init(cli.global.log_level, cli.global.log_format) {
        eprintln!("strata: {err:#}");
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(err = %err, "starting the async runtime failed");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(err = %format_args!("{err:#}"), "running command failed");
            ExitCode::FAILURE
        }
    }
}
