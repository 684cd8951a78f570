//! File system helpers: error context, directory fsync and atomic small-file writes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::Error;

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Fsyncs a directory, so the entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> crate::Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| io_error(dir, err))
}

/// Creates `dir` and every missing parent, then fsyncs `dir` and its parent so the new
/// entry is durable.
pub(crate) fn create_dir_durable(dir: &Path) -> crate::Result<()> {
    fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `contents` so a crash leaves either the old or the new file:
/// writes a temporary file beside it, fsyncs it, renames it over `path` and fsyncs the
/// directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> crate::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|err| io_error(&tmp, err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| io_error(&tmp, err))?;
    drop(file);

    fs::rename(&tmp, path).map_err(|err| io_error(path, err))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Deletes `*.tmp` files that a crash during [`write_atomic`] left in `dir`.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> crate::Result<()> {
    let entries = fs::read_dir(dir).map_err(|err| io_error(dir, err))?;
    for entry in entries {
        let path = entry.map_err(|err| io_error(dir, err))?.path();
        if path.extension().is_some_and(|ext| ext == "tmp") {
            tracing::debug!(path = %path.display(), "removing temporary file left by a crash");
            fs::remove_file(&path).map_err(|err| io_error(&path, err))?;
        }
    }
    Ok(())
}
