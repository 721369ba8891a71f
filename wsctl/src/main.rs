//! wsctl: the operator's command for blue/green deploys of concurrent-socket (docs/deploy.md).

mod atomic;
mod cli;
mod colour;
mod commands;
mod config;
mod deploy;
mod dry_run;
mod health;
mod host;
mod http;
mod interrupt;
mod loadgate;
mod lock;
mod plan;
mod probe;
mod profile;
mod report;
mod reuseport;
mod routing;
mod state;
mod status;
mod systemd;
mod tls;
mod traefik_api;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let json = cli.json;
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(refusal) => {
            let message = format!("{:#}", refusal.error);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "outcome": "refused", "exitCode": refusal.code, "error": message })
                );
            }
            eprintln!("wsctl: {message}");
            refusal.code
        }
    };
    std::process::exit(code);
}
