//! `hearth replay`: rebuilds a projection store from offset zero of the log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hearth_auth_store::AuthProjection;
use hearth_cdr::RepositoryProjection;
use hearth_fhir_core::reference::LocalBases;
use hearth_log::{Log, topics};
use hearth_projection::{Projection, RunnerOptions};

use crate::config::ServeArgs;
use crate::serve::{init_tracing, lock_data_dir, open_log};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The projection to rebuild
    pub projection: ProjectionName,
    /// The settings of `hearth serve`, read the same way so that replay finds the same
    /// data directory and log; of them, replay uses the data directory, the log and the
    /// public URL (which absolute references the repository indexes as local).
    #[command(flatten, next_help_heading = "Settings shared with hearth serve")]
    pub serve: ServeArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProjectionName {
    /// The clinical data repository (repository.db, from hearth.resources)
    Repository,
    /// The auth state store (auth.db, from hearth.auth)
    Auth,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let settings = args.serve.resolve()?;
    // The lock comes first: a running server must never lose its store under it.
    let _lock = lock_data_dir(&settings.data_dir)?;
    let log = open_log(&settings).await?;
    match args.projection {
        ProjectionName::Repository => {
            let path = settings.data_dir.join("repository.db");
            let projection = RepositoryProjection::new(LocalBases::new(&settings.public_url));
            rebuild(log, projection, topics::RESOURCES, path).await
        }
        ProjectionName::Auth => {
            let path = settings.data_dir.join("auth.db");
            rebuild(log, AuthProjection, topics::AUTH, path).await
        }
    }
}

async fn rebuild<P: Projection>(
    log: Arc<dyn Log>,
    projection: P,
    topic: &str,
    path: PathBuf,
) -> anyhow::Result<ExitCode> {
    delete_store(&path)?;
    let ends = log
        .end_offsets(topic)
        .await
        .context("cannot read the end of the log")?;
    let started = std::time::Instant::now();
    let handle = hearth_projection::start(log, projection, RunnerOptions::new(topic, path))
        .await
        .context("cannot start the projection")?;
    handle
        .wait_for_offsets(&ends, Duration::from_secs(24 * 3600))
        .await
        .context("the rebuild did not finish")?;
    handle.stop().await;
    println!(
        "rebuilt from {} records of {topic} in {:.1} s",
        ends.iter().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn delete_store(path: &Path) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    for suffix in ["", "-wal", "-shm"] {
        let file = path.with_file_name(format!("{name}{suffix}"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", file.display())),
        }
    }
    if path.exists() {
        bail!("{} still exists after deleting it", path.display());
    }
    Ok(())
}
