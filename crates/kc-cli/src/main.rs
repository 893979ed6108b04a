//! `kc`: the command line of keycontacts. It talks only to the gateway's public API
//! (`keycontacts.gateway.v1.GatewayService` and `AuthorizationService`); see the crate's
//! README for the commands, the token file and the exit codes.

mod client;
mod commands;
mod error;
mod output;
mod session;
mod values;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}
