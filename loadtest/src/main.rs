//! `loadtest`: runs a scenario and exits 0 (every threshold passed), 1 (a threshold
//! failed) or 2 (usage or setup error).

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, RunSpec};
use loadtest::{html, runner, workers};

const SETUP_ERROR: u8 = 2;

fn main() -> ExitCode {
    // clap exits 2 on usage errors by itself.
    let cli = Cli::parse();
    let spec = match cli.command.into_spec() {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("loadtest: {message}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    match spec {
        None => ExitCode::from(
            u8::try_from(runtime.block_on(workers::worker_main())).unwrap_or(SETUP_ERROR),
        ),
        Some(spec) => runtime.block_on(run(spec)),
    }
}

async fn run(spec: RunSpec) -> ExitCode {
    let outcome = match runner::execute(&spec).await {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("loadtest: {message}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    let report = &outcome.report;
    if spec.json {
        eprint!("{}", report.table());
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialize")
        );
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &spec.html
        && let Err(e) = std::fs::write(path, html::render(report, &outcome.totals))
    {
        eprintln!("loadtest: cannot write {}: {e}", path.display());
        return ExitCode::from(SETUP_ERROR);
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
