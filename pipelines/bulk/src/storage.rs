//! Where job files live: a local directory or an S3-compatible bucket, through object_store.
//!
//! Every job's files sit under `<prefix>/<job id>/`, so deleting a job's files is one listing
//! and one delete per object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// The absolute directory of a local store, whose job directories are removed with
    /// their files; `None` for other stores, which have no directories.
    local_dir: Option<PathBuf>,
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
            local_dir: Some(dir.clone()),
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
            local_dir: None,
        })
    }

    /// A store over any object_store backend, such as the in-memory one in tests.
    pub fn with_store(store: Arc<dyn ObjectStore>, location: &str) -> Self {
        FileStore {
            store,
            prefix: StorePath::default(),
            location: location.to_string(),
            local_dir: None,
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

    /// Resolves `location`, relative to a local store's directory, through every symbolic
    /// link in it and returns the file's location relative to that directory again, so a
    /// link inside the store cannot make `$import` read a file outside it. Fails when the
    /// file does not exist or resolves outside the store. Other stores have no links, so
    /// their locations are returned as they are.
    // NOTE: a link swapped in between this check and the read is not caught; only
    // someone who can write inside the store could do that.
    pub fn resolve_inside(&self, location: &str) -> std::result::Result<String, String> {
        let Some(root) = &self.local_dir else {
            return Ok(location.to_string());
        };
        let path = root.join(location);
        let resolved = path.canonicalize().map_err(|e| {
            format!("the file '{location}' in the bulk store cannot be opened: {e}")
        })?;
        let outside = || {
            format!(
                "the file '{location}' resolves to a path outside the bulk store at {} through a symbolic link",
                self.location
            )
        };
        let rest = resolved.strip_prefix(root).map_err(|_| outside())?;
        let mut parts = Vec::new();
        for component in rest.components() {
            match component {
                std::path::Component::Normal(part) => match part.to_str() {
                    Some(part) => parts.push(part),
                    None => {
                        return Err(format!(
                            "the file '{location}' has a name that is not UTF-8"
                        ));
                    }
                },
                _ => return Err(outside()),
            }
        }
        if parts.is_empty() || !resolved.is_file() {
            return Err(format!(
                "the location '{location}' in the bulk store is not a file"
            ));
        }
        Ok(parts.join("/"))
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

    /// Deletes every file of a job and returns how many there were. In a local store the
    /// job's emptied directory goes too.
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
        self.remove_job_dir(job_id)?;
        Ok(count)
    }

    /// Removes the directory `<store>/<job id>` of a local store when it is empty. Nothing
    /// else is touched: not a job id that is not one plain path segment, not a directory
    /// that still holds something, and not what a symbolic link in its place points to
    /// (`remove_dir` does not follow links).
    fn remove_job_dir(&self, job_id: &str) -> Result<()> {
        let Some(root) = &self.local_dir else {
            return Ok(());
        };
        let plain_segment =
            !job_id.is_empty() && job_id != "." && job_id != ".." && !job_id.contains(['/', '\\']);
        if !plain_segment {
            return Ok(());
        }
        let dir = root.join(job_id);
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                tracing::warn!(job_id, dir = %dir.display(), "the job's path is not a directory; it stays");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                // A file the job was still finishing landed after the listing; the worker
                // deletes the job's files again when the job stops.
                tracing::warn!(job_id, dir = %dir.display(), "the job directory is not empty yet; it stays");
                Ok(())
            }
            Err(e) => Err(Error::Storage(format!(
                "cannot remove the directory {}: {e}",
                dir.display()
            ))),
        }
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
        let localhost = format!("file://localhost{absolute}/imp/a.ndjson");
        assert_eq!(
            store.relative_location(&localhost).as_deref(),
            Some("imp/a.ndjson")
        );
    }

    #[test]
    fn links_out_of_the_store_do_not_resolve() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.ndjson"), "{}\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let store = FileStore::local(root.path()).unwrap();
        let base = root.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("imp")).unwrap();
        std::fs::write(base.join("imp/a.ndjson"), "{}\n").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, base.join("imp").join(name)).unwrap();
        };
        link(&outside.path().join("secret.ndjson"), "to-file.ndjson");
        link(outside.path(), "to-dir");
        link(&base.join("imp/a.ndjson"), "inside.ndjson");

        assert_eq!(
            store.resolve_inside("imp/a.ndjson").unwrap(),
            "imp/a.ndjson"
        );
        assert_eq!(
            store.resolve_inside("imp/inside.ndjson").unwrap(),
            "imp/a.ndjson"
        );
        let through_file = store.resolve_inside("imp/to-file.ndjson").unwrap_err();
        assert!(through_file.contains("outside"), "{through_file}");
        let through_dir = store
            .resolve_inside("imp/to-dir/secret.ndjson")
            .unwrap_err();
        assert!(through_dir.contains("outside"), "{through_dir}");
        assert!(store.resolve_inside("imp/missing.ndjson").is_err());
        assert!(
            store.resolve_inside("imp").is_err(),
            "a directory is not a file"
        );
    }

    #[tokio::test]
    async fn deleting_a_job_removes_only_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let store = FileStore::local(root.path()).unwrap();
        let base = root.path().canonicalize().unwrap();
        store
            .put("job-a", "Patient-1.ndjson", b"{}\n".to_vec())
            .await
            .unwrap();
        store
            .put("job-a", "Observation-1.ndjson", b"{}\n".to_vec())
            .await
            .unwrap();
        store
            .put("job-b", "Patient-1.ndjson", b"{}\n".to_vec())
            .await
            .unwrap();
        std::fs::create_dir(base.join("empty-other")).unwrap();
        std::fs::write(base.join("unrelated.txt"), "keep").unwrap();

        assert_eq!(store.delete_job("job-a").await.unwrap(), 2);
        assert!(!base.join("job-a").exists(), "the job directory stays");
        assert!(base.join("job-b/Patient-1.ndjson").exists());
        assert!(base.join("empty-other").is_dir());
        assert!(base.join("unrelated.txt").is_file());
        assert!(base.is_dir(), "the store directory itself must stay");

        // A job with no files left, or an id that is not one path segment, removes nothing.
        assert_eq!(store.delete_job("job-a").await.unwrap(), 0);
        assert_eq!(store.delete_job("..").await.unwrap(), 0);
        assert!(base.is_dir());
        assert!(base.join("job-b").is_dir());
    }
}
