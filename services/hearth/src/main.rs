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
    if matches!(cli.command, Command::Serve(_)) {
        fix_malloc_mmap_threshold();
    }
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

/// The size from which glibc's malloc serves a block with its own `mmap` and unmaps it on
/// free, in bytes, as the value of the `MALLOC_MMAP_THRESHOLD_` environment variable.
const MALLOC_MMAP_THRESHOLD_BYTES: &str = "1048576";

/// Runs `hearth serve` again, in the same process, with a fixed glibc mmap threshold,
/// unless the environment sets one already.
///
/// By default glibc raises the threshold each time it frees an mmapped block, up to 32 MiB.
/// After a resource of several MB has been written once, its buffers come from the
/// per-thread arenas instead, and freed arena memory stays with the process. Repeated
/// exports of a 9.6 MB resource grew a debug build's RSS from 113 MB to 135-162 MB. With
/// the threshold fixed at 1 MiB it stayed at 48-51 MB (30 exports, 2-core Debian 12 VM,
/// glibc 2.36). Setting it through `mallopt` needs unsafe code, so the variable is set for
/// a new image of this process instead. glibc reads it at process start only.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_malloc_mmap_threshold() {
    use std::os::unix::process::CommandExt;

    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only when it fails; the server then runs with glibc's defaults.
    let error = std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .env("MALLOC_MMAP_THRESHOLD_", MALLOC_MMAP_THRESHOLD_BYTES)
        .exec();
    eprintln!("warning: cannot restart with a fixed malloc mmap threshold: {error}");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}
