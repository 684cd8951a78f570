//! The `hearth` binary: one process runs everything with `serve`; other subcommands load
//! data and rebuild projections.

mod admin;
mod analytics;
mod audit;
mod config;
mod ehr_context;
mod http_server;
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
    /// Register and govern apps (OAuth2 clients) through a running server
    Apps {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::AppsCommand,
    },
    /// Create, show, change and list sites through a running server
    Sites {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::SitesCommand,
    },
    /// Add and list users who sign in to Hearth
    Users {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// List and revoke grants
    Grants {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::GrantsCommand,
    },
    /// Usage analytics in ClickHouse: migrations, the sink and reports
    Analytics {
        #[command(flatten)]
        args: analytics::AnalyticsArgs,
        #[command(subcommand)]
        command: analytics::AnalyticsCommand,
    },
    /// Add console administrators through a running server
    Console {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::ConsoleCommand,
    },
    /// Rotate the server's signing keys
    Keys {
        #[command(flatten)]
        connection: admin::Connection,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
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
            Command::Apps {
                connection,
                command,
            } => admin::apps(connection, command).await,
            Command::Sites {
                connection,
                command,
            } => admin::sites(connection, command).await,
            Command::Users {
                connection,
                command,
            } => admin::users(connection, command).await,
            Command::Grants {
                connection,
                command,
            } => admin::grants(connection, command).await,
            Command::Keys {
                connection,
                command,
            } => admin::keys(connection, command).await,
            Command::Analytics { args, command } => analytics::run(args, command).await,
            Command::Console {
                connection,
                command,
            } => admin::console(connection, command).await,
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
