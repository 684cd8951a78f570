//! Where job files live: a local directory or an S3-compatible bucket, through object_store.
//!
//! Every job's files sit under `<prefix>/<job id>/`, so deleting a job's files is one listing
//! and one delete per object.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{GetResult, ObjectStore, ObjectStoreExt};

use crate::{Error, Result};

/// Size of each part of a multipart upload, and of the buffer of one file being written.
/// S3 needs parts of at least 5 MiB, except the last.
const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// The object store of job files.
#[derive(Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// Where the files are, for logs: a directory or the store URL.
    location: String,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("location", &self.location)
            .finish()
    }
}

impl FileStore {
    /// A store of files in `dir`, created when missing. The store keeps the directory's
    /// absolute path, so `file://` import URLs name it the same way whatever directory
    /// the server was started in.
    pub fn local(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Storage(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
        let dir = &dir.canonicalize().map_err(|e| {
            Error::Storage(format!(
                "cannot resolve the directory {}: {e}",
                dir.display()
            ))
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", dir.display())))?;
        Ok(FileStore {
            store: Arc::new(store),
            prefix: StorePath::default(),
            location: dir.display().to_string(),
        })
    }

    /// A store at a URL such as `s3://bucket/prefix`, with object_store options such as
    /// `aws_endpoint`, `aws_region`, `aws_access_key_id`, `aws_secret_access_key` and
    /// `aws_allow_http`.
    pub fn from_url(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::Storage(format!("invalid store URL '{url}': {e}")))?;
        let (store, prefix) = object_store::parse_url_opts(&parsed, options.iter())
            .map_err(|e| Error::Storage(format!("cannot open the store at {url}: {e}")))?;
        Ok(FileStore {
            store: Arc::from(store),
            prefix,
            location: url.to_string(),
        })
    }

    /// A store over any object_store backend, such as the in-memory one in tests.
    pub fn with_store(store: Arc<dyn ObjectStore>, location: &str) -> Self {
        FileStore {
            store,
            prefix: StorePath::default(),
            location: location.to_string(),
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, job_id: &str, name: &str) -> StorePath {
        self.prefix.clone().join(job_id).join(name)
    }

    /// Opens a writer of one file that uploads in parts as it fills, so a file of any size
    /// needs at most a few parts in memory. The file appears only when the writer is shut
    /// down; a writer dropped before that leaves nothing behind.
    pub fn writer(&self, job_id: &str, name: &str) -> BufWriter {
        BufWriter::with_capacity(
            self.store.clone(),
            self.path(job_id, name),
            UPLOAD_PART_BYTES,
        )
        .with_max_concurrency(2)
    }

    /// Writes a small file in one request.
    pub async fn put(&self, job_id: &str, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(job_id, name), bytes.into())
            .await
            .map_err(|e| storage_error("write", &self.path(job_id, name), e))?;
        Ok(())
    }

    /// Opens a file for reading, or returns `None` when it does not exist.
    pub async fn get(&self, job_id: &str, name: &str) -> Result<Option<GetResult>> {
        let path = self.path(job_id, name);
        match self.store.get(&path).await {
            Ok(result) => Ok(Some(result)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("read", &path, e)),
        }
    }

    /// Returns the location of `url` relative to this store, when it points inside it: a
    /// URL that starts with the store URL (`s3://bucket/prefix/...`), or for a local
    /// directory a `file:///absolute/path` URL under it. A `file://` URL with a host
    /// (other than `localhost`) names no local file and is rejected.
    pub fn relative_location(&self, url: &str) -> Option<String> {
        if self.location.contains("://") {
            let base = self.location.trim_end_matches('/');
            let rest = url.strip_prefix(base)?.strip_prefix('/')?;
            let safe = rest.split('/').all(|part| !part.is_empty() && part != "..");
            return safe.then(|| rest.to_string());
        }
        let parsed = url::Url::parse(url).ok()?;
        if parsed.scheme() != "file" {
            return None;
        }
        // `to_file_path` fails for a URL with a host other than `localhost`.
        let path = parsed.to_file_path().ok()?;
        let rest = path.strip_prefix(Path::new(&self.location)).ok()?;
        let mut parts = Vec::new();
        for component in rest.components() {
            match component {
                std::path::Component::Normal(part) => parts.push(part.to_str()?.to_string()),
                _ => return None,
            }
        }
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// Reads a file at a location relative to the store's prefix, for `$import` sources.
    pub async fn get_relative(&self, location: &str) -> Result<GetResult> {
        let mut path = self.prefix.clone();
        for part in location.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        self.store
            .get(&path)
            .await
            .map_err(|e| storage_error("read", &path, e))
    }

    /// Deletes every file of a job and returns how many there were.
    pub async fn delete_job(&self, job_id: &str) -> Result<usize> {
        let prefix = self.prefix.clone().join(job_id);
        let locations: Vec<StorePath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| storage_error("list", &prefix, e))?;
        let count = locations.len();
        let mut deletions = futures::stream::iter(locations)
            .map(|path| {
                let store = self.store.clone();
                async move {
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(storage_error("delete", &path, e)),
                    }
                }
            })
            .buffer_unordered(8);
        while let Some(result) = deletions.next().await {
            result?;
        }
        Ok(count)
    }
}

fn storage_error(action: &str, path: &StorePath, error: object_store::Error) -> Error {
    Error::Storage(format!("cannot {action} {path}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_urls_need_absolute_path() {
        // A store opened with a relative directory, as `hearth serve` without
        // `--data-dir` opens `hearth-data/bulk`.
        let parent = tempfile::tempdir_in(".").unwrap();
        let relative = parent.path().file_name().unwrap().to_owned();
        let relative = Path::new(&relative).join("bulk");
        let store = FileStore::local(&relative).unwrap();
        let absolute = std::fs::canonicalize(&relative).unwrap();
        let absolute = absolute.to_str().unwrap();

        let inside = format!("file://{absolute}/imp/a.ndjson");
        assert_eq!(
            store.relative_location(&inside).as_deref(),
            Some("imp/a.ndjson")
        );
        let with_host = format!("file://{}/imp/a.ndjson", relative.display());
        assert_eq!(store.relative_location(&with_host), None);
        let outside = "file:///etc/passwd";
        assert_eq!(store.relative_location(outside), None);
        let escaping = format!("file://{absolute}/../x.ndjson");
        assert_eq!(store.relative_location(&escaping), None);
        assert_eq!(store.relative_location(&format!("file://{absolute}")), None);
    }
}
