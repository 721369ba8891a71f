//! The `concurrent-socket` binary: parse the command line, validate the configuration, then
//! serve (or, for `check-config`, print the effective configuration). The crate map is in
//! `lib.rs`.

use std::process::ExitCode;

use clap::Parser;
use concurrent_socket::config::{Cli, CliCommand, Config};
use concurrent_socket::logging;
use concurrent_socket::server::{self, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_raw(&cli.settings) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!(
                "invalid configuration ({} bad variable{}):",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for error in errors {
                eprintln!("  {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.command == Some(CliCommand::CheckConfig) {
        print!("{config}");
        return ExitCode::SUCCESS;
    }
    logging::init(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config)) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        // The unit restarts on it (docs/handover.md).
        Ok(Exit::HandedOver) => ExitCode::from(Exit::HANDOVER_STATUS),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}
