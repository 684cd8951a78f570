//! `hearth load`: sends FHIR files to a running Hearth's `$load` operation.
//!
//! Files are sent in waves so that `urn:uuid:` references across files resolve whatever
//! order the files are named in: a file goes into the first wave after every file that
//! defines a `fullUrl` it references. Files in one wave are sent in parallel.

mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use serde_json::Value;

use plan::{FileKind, Planned};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Base URL of the running Hearth server
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "HEARTH_URL")]
    pub url: String,
    /// Files and directories to load: .json (a Bundle or one resource) and .ndjson
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Largest NDJSON request body in bytes; bigger files are sent in several requests
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub ndjson_chunk_bytes: usize,
    /// Hide the progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Admin credential of the server [default: the contents of ./hearth-data/admin-token]
    #[arg(long, env = "HEARTH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// What the server stored, and which files it rejected.
#[derive(Default)]
struct Summary {
    stored: BTreeMap<String, u64>,
    failures: Vec<(PathBuf, String)>,
    files_loaded: usize,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let files = plan::collect_files(&args.paths)?;
    if files.is_empty() {
        bail!("no .json or .ndjson files found under the given paths");
    }
    let planned = tokio::task::spawn_blocking(move || plan::plan(files))
        .await
        .context("planning the load failed")??;
    let waves = plan::waves(&planned);
    let total_bytes: u64 = planned.iter().map(|p| p.size).sum();

    let endpoint = format!("{}/fhir/$load", args.url.trim_end_matches('/'));
    let token = match &args.admin_token {
        Some(token) => token.clone(),
        None => std::fs::read_to_string("hearth-data/admin-token")
            .map(|t| t.trim().to_string())
            .context("no admin token: pass --admin-token or HEARTH_ADMIN_TOKEN, or run where hearth-data/admin-token exists")?,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .context("cannot create the HTTP client")?;
    let progress = progress_bar(total_bytes, args.quiet);
    let summary = Arc::new(Mutex::new(Summary::default()));
    let started = Instant::now();

    for wave in waves {
        let tasks = wave.into_iter().map(|index| {
            let file = &planned[index];
            let client = &client;
            let endpoint = endpoint.as_str();
            let token = token.as_str();
            let summary = summary.clone();
            let progress = progress.clone();
            let chunk = args.ndjson_chunk_bytes;
            async move {
                let result = send_file(client, endpoint, token, file, chunk).await;
                progress.inc(file.size);
                let mut summary = summary.lock();
                match result {
                    Ok(stored) => {
                        summary.files_loaded += 1;
                        for (resource_type, count) in stored {
                            *summary.stored.entry(resource_type).or_default() += count;
                        }
                    }
                    Err(error) => {
                        progress.suspend(|| eprintln!("{}: {error:#}", file.path.display()));
                        summary
                            .failures
                            .push((file.path.clone(), format!("{error:#}")));
                    }
                }
            }
        });
        futures::stream::iter(tasks)
            .buffer_unordered(args.concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }
    progress.finish_and_clear();

    let summary = summary.lock();
    print_summary(&summary, started.elapsed());
    if summary.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Sends one file and returns the count of resources stored per type.
async fn send_file(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    file: &Planned,
    chunk_bytes: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let body = tokio::fs::read(&file.path)
        .await
        .with_context(|| format!("cannot read {}", file.path.display()))?;
    match file.kind {
        FileKind::Json => post(client, endpoint, token, body, "application/fhir+json").await,
        FileKind::Ndjson => {
            let chunks = plan::ndjson_chunks(&body, chunk_bytes)?;
            let mut stored: BTreeMap<String, u64> = BTreeMap::new();
            let mut any_stored = false;
            for (first_line, range) in chunks {
                let part = body[range].to_vec();
                let result = post(client, endpoint, token, part, "application/fhir+ndjson").await;
                match result {
                    Ok(counts) => {
                        for (resource_type, count) in counts {
                            *stored.entry(resource_type).or_default() += count;
                        }
                        any_stored = true;
                    }
                    Err(error) => {
                        let message = plan::in_file(&format!("{error:#}"), first_line);
                        if !any_stored {
                            bail!("{message}");
                        }
                        return Err(PartialLoad { stored, message }.into());
                    }
                }
            }
            Ok(stored)
        }
    }
}

/// An NDJSON file of several requests that failed after some requests were stored.
#[derive(Debug)]
struct PartialLoad {
    stored: BTreeMap<String, u64>,
    message: String,
}

impl std::fmt::Display for PartialLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.stored.values().sum();
        write!(
            f,
            "{} ({total} resources from earlier parts of the file were stored and stay stored)",
            self.message
        )
    }
}

impl std::error::Error for PartialLoad {}

async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let response = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::ACCEPT, "application/fhir+json")
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("cannot read the server's response")?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let diagnostics = value["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or(text.as_str());
        bail!("rejected ({status}): {diagnostics}");
    }
    let mut stored = BTreeMap::new();
    for parameter in value["parameter"].as_array().into_iter().flatten() {
        if parameter["name"] == "stored" {
            for part in parameter["part"].as_array().into_iter().flatten() {
                if let (Some(name), Some(count)) =
                    (part["name"].as_str(), part["valueInteger"].as_u64())
                {
                    stored.insert(name.to_string(), count);
                }
            }
        }
    }
    Ok(stored)
}

fn print_summary(summary: &Summary, elapsed: Duration) {
    let total: u64 = summary.stored.values().sum();
    let mut rows: Vec<(&String, &u64)> = summary.stored.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("{:<32} {:>10}", "resource type", "stored");
    for (resource_type, count) in rows {
        println!("{resource_type:<32} {count:>10}");
    }
    let seconds = elapsed.as_secs_f64().max(1e-9);
    println!("{:<32} {:>10}", "total", total);
    println!(
        "{} files loaded, {} rejected, {total} resources in {:.2} s ({:.0} resources/s)",
        summary.files_loaded,
        summary.failures.len(),
        seconds,
        total as f64 / seconds
    );
}

/// Returns whether `path` names an NDJSON file by its extension.
fn is_ndjson_path(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("ndjson") | Some("jsonl")
    )
}
