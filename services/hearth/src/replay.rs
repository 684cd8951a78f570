//! `hearth replay`: rebuilds a projection store from offset zero of the log.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use hearth_cdr::RepositoryProjection;
use hearth_log::topics;
use hearth_projection::RunnerOptions;

use crate::config::ServeArgs;
use crate::serve::{init_tracing, open_log};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The projection to rebuild: `repository`
    pub projection: String,
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    if args.projection != "repository" {
        bail!(
            "unknown projection '{}': the projections are: repository",
            args.projection
        );
    }
    let settings = args.serve.resolve()?;
    let path = settings.data_dir.join("repository.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = path.with_file_name(format!("repository.db{suffix}"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", file.display())),
        }
    }
    let log = open_log(&settings).await?;
    let ends = log
        .end_offsets(topics::RESOURCES)
        .await
        .context("cannot read the end of the log")?;
    let started = std::time::Instant::now();
    let handle = hearth_projection::start(
        log,
        RepositoryProjection,
        RunnerOptions::new(topics::RESOURCES, path),
    )
    .await
    .context("cannot start the repository projection")?;
    handle
        .wait_for_offsets(&ends, Duration::from_secs(24 * 3600))
        .await
        .context("the rebuild did not finish")?;
    handle.stop().await;
    println!(
        "rebuilt the repository from {} records in {:.1} s",
        ends.iter().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
