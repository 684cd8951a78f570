//! The `hearth` binary: one process runs everything with `serve`; other subcommands load
//! data and rebuild projections.

mod config;
mod load;
mod replay;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "A SMART on FHIR platform: authorization server, FHIR R4 API, bulk export and analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform in one process.
    Serve(config::ServeArgs),
    /// Send FHIR Bundles, resources and NDJSON files to a running Hearth.
    Load(load::LoadArgs),
    /// Delete a projection's store and rebuild it from offset zero of the log.
    Replay(replay::ReplayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Replay(args) => replay::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
